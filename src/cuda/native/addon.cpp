// N-API binding of the wan_cuda addon. Device pointers cross into JavaScript as numbers (device
// addresses fit in 48 bits); every function checks its CUDA calls and throws a JavaScript Error
// naming the failing step. Memory comes from CUDA's stream-ordered pool on the addon's compute stream,
// so a free right after queueing a kernel that reads the buffer is safe; copies to and from pinned
// host memory run on a second stream (host-offload.cu), ordered against it by events.
#define NAPI_VERSION 8
#include <node_api.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "attention-bf16.h"
#include "common.cuh"
#include "cudnn-conv.h"
#include "cudnn-loader.h"
#include "gemm-fp8.h"
#include "gemm-lt.h"
#include "host-offload.h"
#include "ops.h"

namespace wan {

namespace {

struct State {
  bool ready = false;
  int device = 0;
  int multiprocessors = 0;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  std::unordered_map<void*, size_t> sizes;
  size_t inUse = 0, peak = 0;
};

State& state() {
  static State s;
  return s;
}

State& ready() {
  State& s = state();
  if (!s.ready) throw CudaFailure("the CUDA backend is not initialised (call init() first)");
  return s;
}

}  // namespace

cudaStream_t stream() { return ready().stream; }
int smCount() { return ready().multiprocessors; }

void* deviceAlloc(size_t bytes) {
  State& s = ready();
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t e = cudaMallocAsync(&p, bytes, s.stream);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    check(cudaStreamSynchronize(s.stream), "alloc: synchronize before retry");
    check(cudaMemPoolTrimTo(s.pool, 0), "alloc: trim pool");
    e = cudaMallocAsync(&p, bytes, s.stream);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t freeBytes = 0, total = 0;
    cudaMemGetInfo(&freeBytes, &total);
    throw CudaFailure("out of GPU memory: could not allocate " + std::to_string(bytes >> 20) + " MiB (" + std::to_string(s.inUse >> 20) +
                      " MiB held by tensors, " + std::to_string(freeBytes >> 20) + " MiB free of " + std::to_string(total >> 20) +
                      " MiB): " + cudaGetErrorString(e));
  }
  s.sizes[p] = bytes;
  s.inUse += bytes;
  if (s.inUse > s.peak) s.peak = s.inUse;
  return p;
}

void deviceFree(void* p) {
  if (!p) return;
  State& s = ready();
  auto it = s.sizes.find(p);
  if (it == s.sizes.end()) throw CudaFailure("free: not a pointer this addon allocated");
  s.inUse -= it->second;
  s.sizes.erase(it);
  check(cudaFreeAsync(p, s.stream), "free");
}

namespace {

/** The arguments of one call, with typed accessors that throw on a wrong type. */
struct Args {
  napi_env env;
  napi_value v[24];
  size_t n = 24;

  Args(napi_env e, napi_callback_info info) : env(e) {
    if (napi_get_cb_info(env, info, &n, v, nullptr, nullptr) != napi_ok) throw CudaFailure("could not read the arguments");
  }
  napi_value at(size_t i) const {
    if (i >= n) throw CudaFailure("missing argument " + std::to_string(i));
    return v[i];
  }
  double num(size_t i) const {
    double d;
    if (napi_get_value_double(env, at(i), &d) != napi_ok) throw CudaFailure("argument " + std::to_string(i) + " must be a number");
    return d;
  }
  int64_t i64(size_t i) const { return int64_t(num(i)); }
  int i32(size_t i) const { return int(num(i)); }
  bool flag(size_t i) const {
    bool b;
    if (napi_get_value_bool(env, at(i), &b) != napi_ok) throw CudaFailure("argument " + std::to_string(i) + " must be a boolean");
    return b;
  }
  void* ptr(size_t i) const { return reinterpret_cast<void*>(uintptr_t(num(i))); }
  float* fptr(size_t i) const { return static_cast<float*>(ptr(i)); }
  std::vector<int64_t> list(size_t i) const {
    uint32_t len;
    if (napi_get_array_length(env, at(i), &len) != napi_ok) throw CudaFailure("argument " + std::to_string(i) + " must be an array");
    std::vector<int64_t> out(len);
    for (uint32_t j = 0; j < len; j++) {
      napi_value e;
      double d;
      napi_get_element(env, at(i), j, &e);
      if (napi_get_value_double(env, e, &d) != napi_ok) throw CudaFailure("argument " + std::to_string(i) + " must hold numbers");
      out[j] = int64_t(d);
    }
    return out;
  }
  /** A typed array's data and byte length. */
  std::pair<void*, size_t> bytes(size_t i) const {
    napi_typedarray_type type;
    size_t length;
    void* data;
    napi_value buffer;
    size_t offset;
    if (napi_get_typedarray_info(env, at(i), &type, &length, &data, &buffer, &offset) != napi_ok)
      throw CudaFailure("argument " + std::to_string(i) + " must be a typed array");
    size_t width = (type == napi_int8_array || type == napi_uint8_array || type == napi_uint8_clamped_array) ? 1
                   : (type == napi_int16_array || type == napi_uint16_array)                                   ? 2
                   : (type == napi_float64_array || type == napi_bigint64_array || type == napi_biguint64_array) ? 8
                                                                                                                 : 4;
    return {data, length * width};
  }
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value number(napi_env env, double d) {
  napi_value r;
  napi_create_double(env, d, &r);
  return r;
}

void setNumber(napi_env env, napi_value obj, const char* key, double d) { napi_set_named_property(env, obj, key, number(env, d)); }

View viewOf(const std::vector<int64_t>& shape, const std::vector<std::vector<int64_t>>& strides) {
  if (shape.size() > size_t(MAX_RANK)) throw CudaFailure("rank " + std::to_string(shape.size()) + " exceeds " + std::to_string(MAX_RANK));
  View v{};
  v.rank = int(shape.size());
  for (size_t d = 0; d < shape.size(); d++) {
    v.shape[d] = shape[d];
    for (size_t k = 0; k < strides.size(); k++) {
      if (strides[k].size() != shape.size()) throw CudaFailure("strides and shape differ in rank");
      v.strides[k][d] = strides[k][d];
    }
  }
  return v;
}

int64_t product(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

using Body = napi_value (*)(Args&);

template <Body F>
napi_value entry(napi_env env, napi_callback_info info) {
  try {
    Args a(env, info);
    return F(a);
  } catch (const std::exception& e) {
    napi_throw_error(env, "WAN_CUDA", e.what());
    return nullptr;
  }
}

napi_value init(Args& a) {
  State& s = state();
  if (!s.ready) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) throw CudaFailure(std::string("no usable CUDA driver or GPU: ") + cudaGetErrorString(e));
    if (count == 0) throw CudaFailure("no CUDA GPU found");
    check(cudaSetDevice(s.device), "cudaSetDevice");
    check(cudaDeviceGetAttribute(&s.multiprocessors, cudaDevAttrMultiProcessorCount, s.device), "multiprocessor count");
    check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaDeviceGetDefaultMemPool(&s.pool, s.device), "default memory pool");
    uint64_t keep = UINT64_MAX;
    check(cudaMemPoolSetAttribute(s.pool, cudaMemPoolAttrReleaseThreshold, &keep), "pool release threshold");
    check(cudaEventCreate(&s.start), "cudaEventCreate");
    check(cudaEventCreate(&s.stop), "cudaEventCreate");
    s.ready = true;
  }
  cudaDeviceProp p;
  check(cudaGetDeviceProperties(&p, s.device), "cudaGetDeviceProperties");
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  napi_value o;
  napi_create_object(a.env, &o);
  napi_value name;
  napi_create_string_utf8(a.env, p.name, NAPI_AUTO_LENGTH, &name);
  napi_set_named_property(a.env, o, "name", name);
  setNumber(a.env, o, "totalMemory", double(p.totalGlobalMem));
  setNumber(a.env, o, "multiprocessors", p.multiProcessorCount);
  setNumber(a.env, o, "computeCapability", p.major * 10 + p.minor);
  setNumber(a.env, o, "runtimeVersion", runtime);
  setNumber(a.env, o, "driverVersion", driver);
  return o;
}

napi_value alloc(Args& a) { return number(a.env, double(uintptr_t(deviceAlloc(size_t(a.i64(0)))))); }

napi_value release(Args& a) {
  deviceFree(a.ptr(0));
  return undefined(a.env);
}

napi_value upload(Args& a) {
  auto [data, bytes] = a.bytes(1);
  if (bytes) check(cudaMemcpyAsync(a.ptr(0), data, bytes, cudaMemcpyHostToDevice, stream()), "upload");
  return undefined(a.env);
}

napi_value download(Args& a) {
  auto [data, bytes] = a.bytes(1);
  if (bytes) {
    check(cudaMemcpyAsync(data, a.ptr(0), bytes, cudaMemcpyDeviceToHost, stream()), "download");
    check(cudaStreamSynchronize(stream()), "download: synchronize (an earlier kernel may have failed)");
  }
  return undefined(a.env);
}

napi_value synchronize(Args& a) {
  check(cudaStreamSynchronize(stream()), "synchronize");
  synchronizeCopies();
  return undefined(a.env);
}

// hostAlloc(bytes) → a pinned host buffer's address; hostFree(ptr) after the copies queued so far.
napi_value hostAllocFn(Args& a) { return number(a.env, double(uintptr_t(hostAlloc(size_t(a.i64(0)))))); }

napi_value hostFreeFn(Args& a) {
  hostFree(a.ptr(0));
  return undefined(a.env);
}

// copyAsync(dst, src, bytes, direction) → the copy's event id; direction 0 device → host, 1 host → device.
napi_value copyAsyncFn(Args& a) {
  int direction = a.i32(3);
  if (direction != DEVICE_TO_HOST && direction != HOST_TO_DEVICE) throw CudaFailure("copyAsync: direction must be 0 (device to host) or 1 (host to device)");
  return number(a.env, double(copyAsync(a.ptr(0), a.ptr(1), size_t(a.i64(2)), CopyDirection(direction))));
}

napi_value waitEventFn(Args& a) {
  waitEvent(uint64_t(a.i64(0)));
  return undefined(a.env);
}

napi_value eventDoneFn(Args& a) {
  napi_value b;
  napi_get_boolean(a.env, eventDone(uint64_t(a.i64(0))), &b);
  return b;
}

napi_value memory(Args& a) {
  State& s = ready();
  uint64_t reserved = 0;
  cudaMemPoolGetAttribute(s.pool, cudaMemPoolAttrReservedMemCurrent, &reserved);
  size_t freeBytes = 0, total = 0;
  cudaMemGetInfo(&freeBytes, &total);
  napi_value o;
  napi_create_object(a.env, &o);
  setNumber(a.env, o, "inUse", double(s.inUse));
  setNumber(a.env, o, "peak", double(s.peak));
  setNumber(a.env, o, "reserved", double(reserved));
  setNumber(a.env, o, "deviceFree", double(freeBytes));
  setNumber(a.env, o, "deviceTotal", double(total));
  return o;
}

napi_value resetPeak(Args& a) {
  State& s = ready();
  s.peak = s.inUse;
  return undefined(a.env);
}

napi_value timerStart(Args& a) {
  check(cudaEventRecord(ready().start, stream()), "timer start");
  return undefined(a.env);
}

napi_value timerStop(Args& a) {
  State& s = ready();
  check(cudaEventRecord(s.stop, s.stream), "timer stop");
  check(cudaEventSynchronize(s.stop), "timer synchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, s.start, s.stop), "timer elapsed");
  return number(a.env, ms);
}

napi_value fillFn(Args& a) {
  fill(a.ptr(0), a.i64(1), uint32_t(a.num(2)), a.i32(3));
  return undefined(a.env);
}

napi_value castFn(Args& a) {
  cast(a.ptr(0), a.ptr(1), a.i64(2), DType(a.i32(3)), a.i32(4));
  return undefined(a.env);
}

// dequantFp8(src, dst, n, format, scale, outType): dst = decode(src) · scale, format F8_E4M3 or F8_E5M2, outType F32 or BF16.
napi_value dequantFp8Fn(Args& a) {
  dequantFp8(static_cast<const uint8_t*>(a.ptr(0)), a.ptr(1), a.i64(2), DType(a.i32(3)), float(a.num(4)), DType(a.i32(5)));
  return undefined(a.env);
}

napi_value unaryFn(Args& a) {
  unary(a.i32(0), DType(a.i32(1)), DType(a.i32(2)), a.ptr(3), a.ptr(4), a.i64(5), float(a.num(6)), float(a.num(7)));
  return undefined(a.env);
}

// binary(op, typeA, typeB, typeOut, a, b, y, shape, stridesA, stridesB)
napi_value binaryFn(Args& a) {
  auto shape = a.list(7);
  View v = viewOf(shape, {a.list(8), a.list(9)});
  binary(a.i32(0), DType(a.i32(1)), DType(a.i32(2)), DType(a.i32(3)), a.ptr(4), a.ptr(5), a.ptr(6), v, product(shape));
  return undefined(a.env);
}

napi_value selectFn(Args& a) {
  auto shape = a.list(4);
  View v = viewOf(shape, {a.list(5), a.list(6), a.list(7)});
  select(static_cast<const int32_t*>(a.ptr(0)), a.ptr(1), a.ptr(2), a.ptr(3), v, product(shape), a.i32(8));
  return undefined(a.env);
}

napi_value reduceFn(Args& a) {
  reduce(a.i32(0), DType(a.i32(1)), DType(a.i32(2)), a.ptr(3), a.ptr(4), a.i64(5), a.i64(6));
  return undefined(a.env);
}

napi_value argReduceFn(Args& a) {
  argReduce(a.i32(0), DType(a.i32(1)), a.ptr(2), static_cast<int32_t*>(a.ptr(3)), a.i64(4), a.i64(5));
  return undefined(a.env);
}

napi_value softmaxFn(Args& a) {
  softmax(a.ptr(0), a.ptr(1), a.i64(2), a.i64(3), a.flag(4), DType(a.i32(5)), DType(a.i32(6)));
  return undefined(a.env);
}

napi_value cumsumFn(Args& a) {
  cumsum(DType(a.i32(0)), a.ptr(1), a.ptr(2), a.i64(3), a.i64(4), a.i64(5), a.flag(6), a.flag(7));
  return undefined(a.env);
}

napi_value copyStridedFn(Args& a) {
  auto shape = a.list(2);
  View v = viewOf(shape, {a.list(3)});
  copyStrided(a.ptr(0), a.ptr(1), v, product(shape), a.i64(4), a.i32(5));
  return undefined(a.env);
}

napi_value copyBlockFn(Args& a) {
  copyBlock(a.ptr(0), a.ptr(1), a.i64(2), a.i64(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), a.i32(8));
  return undefined(a.env);
}

napi_value padFn(Args& a) {
  auto in = a.list(2), out = a.list(3), before = a.list(4);
  if (in.size() > size_t(MAX_RANK) || out.size() != in.size() || before.size() != in.size()) throw CudaFailure("pad: inconsistent ranks");
  PadDesc p{};
  p.rank = int(in.size());
  p.mode = a.i32(5);
  for (size_t d = 0; d < in.size(); d++) {
    p.in[d] = in[d];
    p.out[d] = out[d];
    p.before[d] = before[d];
  }
  pad(a.ptr(0), a.ptr(1), p, uint32_t(a.num(6)), product(out), a.i32(7));
  return undefined(a.env);
}

napi_value gatherFn(Args& a) {
  gather(a.ptr(0), static_cast<const int32_t*>(a.ptr(1)), a.ptr(2), a.i64(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), a.i32(8));
  return undefined(a.env);
}

napi_value resizeNearestFn(Args& a) {
  resizeNearest(a.ptr(0), a.ptr(1), a.i64(2), a.i64(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), a.num(8), a.num(9), a.flag(10), a.flag(11),
                a.i32(12));
  return undefined(a.env);
}

napi_value resizeBilinearFn(Args& a) {
  resizeBilinear(a.fptr(0), a.fptr(1), a.i64(2), a.i64(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), a.num(8), a.num(9), a.flag(10));
  return undefined(a.env);
}

napi_value rmsNormFn(Args& a) {
  rmsNorm(a.ptr(0), a.fptr(1), a.ptr(2), a.i64(3), a.i64(4), float(a.num(5)), a.i32(8) != 0, DType(a.i32(6)), DType(a.i32(7)));
  return undefined(a.env);
}

napi_value layerNormFn(Args& a) {
  layerNorm(a.ptr(0), a.fptr(1), a.fptr(2), a.ptr(3), a.i64(4), a.i64(5), float(a.num(6)), DType(a.i32(7)), DType(a.i32(8)));
  return undefined(a.env);
}

// layerNormModulate(x, scale, shift, y, rows, cols, eps, rowsPerMod, modCount, typeIn, typeOut)
napi_value layerNormModulateFn(Args& a) {
  layerNormModulate(a.ptr(0), a.fptr(1), a.fptr(2), a.ptr(3), a.i64(4), a.i64(5), float(a.num(6)), a.i64(7), a.i64(8), DType(a.i32(9)),
                    DType(a.i32(10)));
  return undefined(a.env);
}

// rope(x, cos, sin, y, rows, L, H, D, typeIn, typeOut)
napi_value ropeFn(Args& a) {
  rope(a.ptr(0), a.fptr(1), a.fptr(2), a.ptr(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), DType(a.i32(8)), DType(a.i32(9)));
  return undefined(a.env);
}

napi_value geluTanhFn(Args& a) {
  geluTanh(a.ptr(0), a.ptr(1), a.i64(2), DType(a.i32(3)), DType(a.i32(4)));
  return undefined(a.env);
}

// gatedResidual(x, y, gate, out, rows, cols, rowsPerMod, modCount, typeX, typeY)
napi_value gatedResidualFn(Args& a) {
  gatedResidual(a.ptr(0), a.ptr(1), a.fptr(2), a.fptr(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), DType(a.i32(8)), DType(a.i32(9)));
  return undefined(a.env);
}

napi_value biasResidualFn(Args& a) {
  biasResidual(a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), a.i64(4), a.i64(5), DType(a.i32(6)), DType(a.i32(7)), DType(a.i32(8)), DType(a.i32(9)));
  return undefined(a.env);
}

napi_value attentionFn(Args& a) {
  attention(a.fptr(0), a.fptr(1), a.fptr(2), a.fptr(3), a.i32(4), a.i32(5), a.i32(6), a.i32(7), a.i32(8), a.i32(9), float(a.num(10)));
  return undefined(a.env);
}

// attentionBf16(q, k, v, out, B, Lq, Lk, H, D, Dv, scale, typeOut, mode) → the path that ran (0: none could)
napi_value attentionBf16Fn(Args& a) {
  int path = attentionBf16(a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), a.i32(4), a.i32(5), a.i32(6), a.i32(7), a.i32(8), a.i32(9),
                           float(a.num(10)), DType(a.i32(11)), AttentionMode(a.i32(12)));
  return number(a.env, path);
}

napi_value attentionNoteFn(Args& a) {
  napi_value s;
  const std::string& note = attentionNote();
  napi_create_string_utf8(a.env, note.c_str(), note.size(), &s);
  return s;
}

// matmul(a, b, c, batch, m, n, k, transA, transB, strideA, strideB, strideC, offsetA, offsetB, offsetC,
//        typeAB, typeC, bias, typeBias, epilogue); offsets count elements of each buffer's type.
napi_value matmulFn(Args& a) {
  DType ab = DType(a.i32(15)), c = DType(a.i32(16));
  int epilogue = a.i32(19);
  if (ab == F32) {
    if (c != F32 || epilogue != 0) throw CudaFailure("matmul: float32 operands take a float32 result and no epilogue");
    gemm(a.fptr(0) + a.i64(12), a.fptr(1) + a.i64(13), a.fptr(2) + a.i64(14), a.i64(3), a.i64(4), a.i64(5), a.i64(6), a.flag(7), a.flag(8),
         a.i64(9), a.i64(10), a.i64(11));
  } else if (ab == BF16) {
    auto at = [](void* p, int64_t offset, DType t) { return static_cast<void*>(static_cast<char*>(p) + offset * elemBytes(t)); };
    gemmLt(at(a.ptr(0), a.i64(12), BF16), at(a.ptr(1), a.i64(13), BF16), at(a.ptr(2), a.i64(14), c), a.i64(3), a.i64(4), a.i64(5), a.i64(6),
           a.flag(7), a.flag(8), a.i64(9), a.i64(10), a.i64(11), c, a.ptr(17), DType(a.i32(18)), Epilogue(epilogue));
  } else {
    throw CudaFailure("matmul: operands must be float32 or bfloat16");
  }
  return undefined(a.env);
}

// gemmFp8(x, xType, w, wScale, d, m, n, k, bias, epilogue, fastAccum, scratch) → "" when the fp8 GEMM was queued, else why
// not (nothing queued): d[m, n] bf16 = epilogue(s_x·s_w·(e4m3(x / s_x)·q_wᵀ)), see gemm-fp8.h; bias bf16 [n] or 0.
napi_value gemmFp8Fn(Args& a) {
  std::string why = gemmFp8(a.ptr(0), DType(a.i32(1)), static_cast<const uint8_t*>(a.ptr(2)), float(a.num(3)), a.ptr(4), a.i64(5), a.i64(6), a.i64(7),
                            a.ptr(8), Epilogue(a.i32(9)), a.flag(10), a.ptr(11));
  napi_value s;
  napi_create_string_utf8(a.env, why.c_str(), why.size(), &s);
  return s;
}

Conv convOf(const std::vector<int64_t>& p) {
  if (p.size() != 21) throw CudaFailure("conv: expected 21 geometry numbers");
  return Conv{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20]};
}

// conv(x, w, y, [n,d,h,w,c, kd,kh,kw,o, od,oh,ow, sd,sh,sw, pd,ph,pw, dd,dh,dw]); float32, filter [kd,kh,kw,c,o].
napi_value convFn(Args& a) {
  Conv c = convOf(a.list(3));
  const float* x = a.fptr(0);
  const float* w = a.fptr(1);
  float* y = a.fptr(2);
  int64_t positions = c.n * c.od * c.oh * c.ow;
  int64_t kTotal = c.kd * c.kh * c.kw * c.c;
  bool pointwise = c.kd == 1 && c.kh == 1 && c.kw == 1 && c.sd == 1 && c.sh == 1 && c.sw == 1 && c.pd == 0 && c.ph == 0 && c.pw == 0 &&
                   c.od == c.d && c.oh == c.h && c.ow == c.w;
  if (pointwise) {
    gemm(x, w, y, 1, positions, c.o, c.c, false, false, 0, 0, 0);
    return undefined(a.env);
  }
  const int64_t budget = int64_t(1) << 26;  // floats per im2col chunk (256 MiB)
  int64_t chunk = budget / (kTotal > 0 ? kTotal : 1);
  if (chunk < 1) chunk = 1;
  if (chunk > positions) chunk = positions;
  float* col = static_cast<float*>(deviceAlloc(size_t(chunk * kTotal) * sizeof(float)));
  try {
    for (int64_t p0 = 0; p0 < positions; p0 += chunk) {
      int64_t count = positions - p0 < chunk ? positions - p0 : chunk;
      im2col(x, col, c, p0, count);
      gemm(col, w, y + p0 * c.o, 1, count, c.o, kTotal, false, false, 0, 0, 0);
    }
  } catch (...) {
    deviceFree(col);
    throw;
  }
  deviceFree(col);
  return undefined(a.env);
}

// convCudnn(x, w, y, geometry, type, bias, biasType, residual) with filter [o,kd,kh,kw,c], bias and residual 0 when absent:
// y = conv + bias + residual → "" when it ran, else why cuDNN did not take it.
napi_value convCudnnFn(Args& a) {
  std::string why;
  ConvEpilogue epilogue;
  epilogue.bias = a.ptr(5);
  epilogue.biasType = DType(a.i32(6));
  epilogue.residual = a.ptr(7);
  bool ran = cudnnConv(a.ptr(0), a.ptr(1), a.ptr(2), convOf(a.list(3)), DType(a.i32(4)), epilogue, &why);
  napi_value s;
  if (ran) why.clear();
  napi_create_string_utf8(a.env, why.c_str(), why.size(), &s);
  return s;
}

// convPlans() → the cuDNN convolution plans made so far, one line each.
napi_value convPlansFn(Args& a) {
  const std::string plans = cudnnConvPlans();
  napi_value s;
  napi_create_string_utf8(a.env, plans.c_str(), plans.size(), &s);
  return s;
}

// cudnnLoad(candidates) → { available, version, library, error }
napi_value cudnnLoadFn(Args& a) {
  uint32_t len;
  if (napi_get_array_length(a.env, a.at(0), &len) != napi_ok) throw CudaFailure("cudnnLoad: argument 0 must be an array of strings");
  std::vector<std::string> candidates;
  for (uint32_t j = 0; j < len; j++) {
    napi_value e;
    napi_get_element(a.env, a.at(0), j, &e);
    size_t n = 0;
    if (napi_get_value_string_utf8(a.env, e, nullptr, 0, &n) != napi_ok) throw CudaFailure("cudnnLoad: candidates must be strings");
    std::string str(n, '\0');
    napi_get_value_string_utf8(a.env, e, str.data(), n + 1, &n);
    candidates.push_back(str);
  }
  const CudnnInfo& info = cudnnLoad(candidates);
  napi_value o;
  napi_create_object(a.env, &o);
  napi_value available;
  napi_get_boolean(a.env, info.available, &available);
  napi_set_named_property(a.env, o, "available", available);
  setNumber(a.env, o, "version", info.version);
  napi_value library, error;
  napi_create_string_utf8(a.env, info.library.c_str(), info.library.size(), &library);
  napi_create_string_utf8(a.env, info.error.c_str(), info.error.size(), &error);
  napi_set_named_property(a.env, o, "library", library);
  napi_set_named_property(a.env, o, "error", error);
  return o;
}

#define WAN_NAME_ITEM(name) #name,
const char* const kUnaryNames[] = {WAN_UNARY_OPS(WAN_NAME_ITEM)};
const char* const kBinaryNames[] = {WAN_BINARY_OPS(WAN_NAME_ITEM)};
const char* const kReduceNames[] = {WAN_REDUCE_OPS(WAN_NAME_ITEM)};
#undef WAN_NAME_ITEM

napi_value nameList(napi_env env, const char* const* names, size_t count) {
  napi_value arr;
  napi_create_array_with_length(env, count, &arr);
  for (size_t i = 0; i < count; i++) {
    napi_value s;
    napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, uint32_t(i), s);
  }
  return arr;
}

}  // namespace

}  // namespace wan

#define WAN_METHOD(js, fn) napi_property_descriptor{js, nullptr, wan::entry<wan::fn>, nullptr, nullptr, nullptr, napi_default, nullptr}

NAPI_MODULE_INIT() {
  napi_property_descriptor methods[] = {
      WAN_METHOD("init", init),
      WAN_METHOD("alloc", alloc),
      WAN_METHOD("free", release),
      WAN_METHOD("upload", upload),
      WAN_METHOD("download", download),
      WAN_METHOD("synchronize", synchronize),
      WAN_METHOD("hostAlloc", hostAllocFn),
      WAN_METHOD("hostFree", hostFreeFn),
      WAN_METHOD("copyAsync", copyAsyncFn),
      WAN_METHOD("waitEvent", waitEventFn),
      WAN_METHOD("eventDone", eventDoneFn),
      WAN_METHOD("memory", memory),
      WAN_METHOD("resetPeak", resetPeak),
      WAN_METHOD("timerStart", timerStart),
      WAN_METHOD("timerStop", timerStop),
      WAN_METHOD("fill", fillFn),
      WAN_METHOD("cast", castFn),
      WAN_METHOD("dequantFp8", dequantFp8Fn),
      WAN_METHOD("unary", unaryFn),
      WAN_METHOD("binary", binaryFn),
      WAN_METHOD("select", selectFn),
      WAN_METHOD("reduce", reduceFn),
      WAN_METHOD("argReduce", argReduceFn),
      WAN_METHOD("softmax", softmaxFn),
      WAN_METHOD("cumsum", cumsumFn),
      WAN_METHOD("copyStrided", copyStridedFn),
      WAN_METHOD("copyBlock", copyBlockFn),
      WAN_METHOD("pad", padFn),
      WAN_METHOD("gather", gatherFn),
      WAN_METHOD("resizeNearest", resizeNearestFn),
      WAN_METHOD("resizeBilinear", resizeBilinearFn),
      WAN_METHOD("rmsNorm", rmsNormFn),
      WAN_METHOD("layerNorm", layerNormFn),
      WAN_METHOD("layerNormModulate", layerNormModulateFn),
      WAN_METHOD("rope", ropeFn),
      WAN_METHOD("geluTanh", geluTanhFn),
      WAN_METHOD("gatedResidual", gatedResidualFn),
      WAN_METHOD("biasResidual", biasResidualFn),
      WAN_METHOD("attention", attentionFn),
      WAN_METHOD("attentionBf16", attentionBf16Fn),
      WAN_METHOD("attentionNote", attentionNoteFn),
      WAN_METHOD("matmul", matmulFn),
      WAN_METHOD("gemmFp8", gemmFp8Fn),
      WAN_METHOD("conv", convFn),
      WAN_METHOD("convCudnn", convCudnnFn),
      WAN_METHOD("convPlans", convPlansFn),
      WAN_METHOD("cudnnLoad", cudnnLoadFn),
  };
  napi_define_properties(env, exports, sizeof(methods) / sizeof(methods[0]), methods);
  napi_set_named_property(env, exports, "unaryOps", wan::nameList(env, wan::kUnaryNames, sizeof(wan::kUnaryNames) / sizeof(char*)));
  napi_set_named_property(env, exports, "binaryOps", wan::nameList(env, wan::kBinaryNames, sizeof(wan::kBinaryNames) / sizeof(char*)));
  napi_set_named_property(env, exports, "reduceOps", wan::nameList(env, wan::kReduceNames, sizeof(wan::kReduceNames) / sizeof(char*)));
  return exports;
}
