// What the standalone GEMM checks (gemm-lt-check.cu, gemm-fp8-check.cu) share: the addon's runtime hooks, simply
// (one non-blocking stream and its stream-ordered pool, with a count of live allocations), and the PASS/FAIL tally.
// Include it once, in the check's one translation unit.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common.cuh"

namespace wan {
static cudaStream_t gStream = nullptr;
static int gSms = 0;
static int gLiveAllocs = 0;
cudaStream_t stream() { return gStream; }
int smCount() { return gSms; }
void* deviceAlloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMallocAsync(&p, bytes, gStream), "deviceAlloc");
  gLiveAllocs++;
  return p;
}
void deviceFree(void* p) {
  if (!p) return;
  gLiveAllocs--;
  check(cudaFreeAsync(p, gStream), "deviceFree");
}
}  // namespace wan

namespace {

int passed = 0, failed = 0;

void report(bool ok, const std::string& line) {
  (ok ? passed : failed)++;
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", line.c_str());
  std::fflush(stdout);
}

/** Harness CUDA calls: a failure here is the harness's, and a sticky one ends the run. */
void cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::printf("FAIL harness: %s: %s (%s)\n", what, cudaGetErrorName(e), cudaGetErrorString(e));
  std::printf("%d passed, %d failed\n", passed, failed + 1);
  std::exit(1);
}

/** The check's start: its stream and the device's SM count (the runtime hooks above); returns the device's properties. */
cudaDeviceProp startHarness() {
  cuda(cudaStreamCreateWithFlags(&wan::gStream, cudaStreamNonBlocking), "cudaStreamCreate");
  int device = 0;
  cuda(cudaGetDevice(&device), "cudaGetDevice");
  cuda(cudaDeviceGetAttribute(&wan::gSms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  cudaDeviceProp prop{};
  cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop;
}

}  // namespace
