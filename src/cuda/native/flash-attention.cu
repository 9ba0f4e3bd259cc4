// Flash attention forward in bfloat16 on tensor cores (FlashAttention-2, Dao 2023, Algorithm 1):
// out = softmax(scale · Q·Kᵀ) · V per (batch, head), q/k/v [B, L, H, D] bf16 (BSHD, row stride H·D).
//
// A CTA of WARPS warps owns BM = 16·WARPS query rows of one (batch, head); warp w owns rows 16w..16w+15
// and keeps their Q as mma A fragments in registers for the whole key loop. Keys come in tiles of
// BN = 64: K and V tiles are double-buffered in shared memory with cp.async (tile j+1 loads while tile j
// is used), rows padded by 16 bytes so the 8 rows an ldmatrix phase reads fall on distinct banks.
// Per tile, with s = scale·log2(e) folded into the scores so exp2 replaces exp:
//   S = s · Q·Kᵀ                        mma.sync m16n8k16 bf16 → fp32, K fragments by ldmatrix
//   m' = max(m, rowmax S),  c = 2^(m − m'),  P = 2^(S − m'),  ℓ = c·ℓ + rowsum P,  O = c·O
//   O += P·V                            P rounded to bf16 in registers: the m16n8k16 C fragments of two
//                                       adjacent 8-key blocks are exactly the A fragment of a 16-key step;
//                                       V fragments by ldmatrix.trans
// and at the end out = O / ℓ. Key columns ≥ Lk are −∞ before the max; K/V rows ≥ Lk and Q rows ≥ Lq are
// zero-filled by cp.async (src-size 0); rows ≥ Lq are not stored.
//
// Tiling: 64 query rows × 4 warps (the default; WAN_CUDA_FLASH_WARPS=8 selects 128 rows × 8 warps at
// D = 128). Both read the same shared memory per mma (each warp streams whole K and V tiles through
// ldmatrix for its 16 rows); 8 warps halve the cp.async traffic, but at D = 128 a thread holds O (64
// registers), Q (32) and S (32): 4-warp CTAs capped at 168 registers fit three per SM (12 warps, 3 × 68 KB
// of shared memory; no spills), 8-warp CTAs need ~196 and fit one (8 warps, all idle at each barrier).
#include "flash-attention.h"

#include <cuda_bf16.h>

#include <cstdlib>
#include <string>

namespace wan {

namespace {

using bf16 = __nv_bfloat16;

constexpr float LOG2E = 1.4426950408889634f;
constexpr int BN = 64;  // keys per tile

/** Tile geometry for head size D and WARPS warps. Shared memory: [K0 | V0 | K1 | V1], Q staged over stage 1 before the loop. */
template <int D, int WARPS>
struct Geometry {
  static constexpr int NT = WARPS * 32;
  static constexpr int BM = WARPS * 16;        // query rows per CTA
  static constexpr int ROW = (D + 8) * 2;      // shared row stride in bytes: D bf16 + 16 bytes of padding
  static constexpr int TILE = BN * ROW;        // one K or V tile in bytes
  static constexpr int BYTES = 4 * TILE;
  // CTAs per SM the registers are capped for (65,536 / (MIN_BLOCKS · NT) a thread): 3 at D = 128 (168), 4 at D = 64 (128),
  // 5 at D = 32 (102); 8-warp CTAs fit only 1 at D = 128 whatever the cap.
  static constexpr int MIN_BLOCKS = WARPS == 8 ? 1 : D == 128 ? 3 : D == 64 ? 4 : 5;
  static_assert(D % 16 == 0 && NT % (D / 8) == 0, "head size");
  static_assert(BM * ROW <= 2 * TILE, "the Q tile must fit in stage 1");
};

__device__ __forceinline__ void cpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

/** 2^x by the SFU (MUFU.EX2), subnormal results flushed to 0; 2^−∞ = 0. */
__device__ __forceinline__ float exp2Ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }

/** Waits until at most N of this thread's newest cp.async groups are still pending. */
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrixX4Trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/** c[16×8] += a[16×16] · b[16×8]: a as 4 registers of bf16 pairs (row-major), b as 2 (column-major), c fp32. */
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** Two floats as one register of bf16 (round to nearest even), lo in the low half (cvt puts its first source in the high half). */
__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

/**
 * Queues cp.async copies of rows [0, ROWS) × [0, D) of g (row stride rs elements) into shared memory at
 * `dst` (rows of ROW bytes); rows ≥ valid are zero-filled without reading global memory (their source
 * address is g, a valid one). Thread t copies 16-byte chunk t % (D/8) of rows t / (D/8) + i·STEP.
 */
template <int ROWS, int D, int NT, int ROW>
__device__ __forceinline__ void loadTile(uint32_t dst, const bf16* g, int64_t rs, int valid) {
  constexpr int CHUNKS = D / 8;
  constexpr int STEP = NT / CHUNKS;
  static_assert(ROWS % STEP == 0, "tile rows");
  const int r0 = threadIdx.x / CHUNKS, c = threadIdx.x % CHUNKS;
  dst += r0 * ROW + c * 16;
  const bf16* src = g + r0 * rs + c * 8;
  if (valid >= ROWS) {
#pragma unroll
    for (int i = 0; i < ROWS / STEP; i++) cpAsync16(dst + i * STEP * ROW, src + i * STEP * rs, true);
  } else {
#pragma unroll
    for (int i = 0; i < ROWS / STEP; i++) {
      const bool ok = r0 + i * STEP < valid;
      cpAsync16(dst + i * STEP * ROW, ok ? src + i * STEP * rs : g, ok);
    }
  }
}

/**
 * q [B, Lq, H, D], k/v [B, Lk, H, D] bf16; o [B, Lq, H, D] bf16 or fp32 (outF32). Grid (⌈Lq / BM⌉, B·H), WARPS·32 threads,
 * Geometry::BYTES of dynamic shared memory. scaleLog2 = scale·log2(e).
 */
template <int D, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, Geometry<D, WARPS>::MIN_BLOCKS)
    flashAttentionKernel(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v, void* __restrict__ o, int Lq,
                         int Lk, int H, float scaleLog2, bool outF32) {
  using G = Geometry<D, WARPS>;
  constexpr int KD = D / 16;  // 16-wide steps over the head dimension
  constexpr int NB = BN / 8;  // 8-key blocks of a tile
  constexpr int ND = D / 8;   // 8-column blocks of the output
  extern __shared__ __align__(16) unsigned char smem[];
  const uint32_t base = uint32_t(__cvta_generic_to_shared(smem));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.y / H, h = blockIdx.y % H;
  const int q0 = blockIdx.x * G::BM;
  const int64_t rs = int64_t(H) * D;
  const bf16* qTile = q + (int64_t(b) * Lq + q0) * rs + int64_t(h) * D;
  const bf16* kHead = k + int64_t(b) * Lk * rs + int64_t(h) * D;
  const bf16* vHead = v + int64_t(b) * Lk * rs + int64_t(h) * D;

  // Groups in flight, in order: Q, K0, V0; then per tile j: K(j+1), V(j+1) (empty past the last tile).
  loadTile<G::BM, D, G::NT, G::ROW>(base + 2 * G::TILE, qTile, rs, Lq - q0);
  cpAsyncCommit();
  loadTile<BN, D, G::NT, G::ROW>(base, kHead, rs, Lk);
  cpAsyncCommit();
  loadTile<BN, D, G::NT, G::ROW>(base + G::TILE, vHead, rs, Lk);
  cpAsyncCommit();
  cpAsyncWait<2>();
  __syncthreads();

  // A fragments of this warp's 16 × D slice of Q: matrices (rows 0-7 | 8-15) × (columns 0-7 | 8-15) of each 16-wide step.
  uint32_t qf[KD][4];
  {
    const uint32_t addr = base + 2 * G::TILE + (warp * 16 + (lane & 15)) * G::ROW + (lane >> 4) * 16;
#pragma unroll
    for (int kk = 0; kk < KD; kk++) ldmatrixX4(qf[kk], addr + kk * 32);
  }

  // This lane's ldmatrix row address within a tile: K as (keys 0-7, d 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15), the B
  // fragments of two 8-key blocks; V transposed as (keys 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15), the B
  // fragments of two 8-column blocks.
  const uint32_t kLane = ((lane >> 4) * 8 + (lane & 7)) * G::ROW + ((lane >> 3) & 1) * 16;
  const uint32_t vLane = (((lane >> 3) & 1) * 8 + (lane & 7)) * G::ROW + (lane >> 4) * 16;

  // Accumulator rows: r = 0 is row lane/4 of the warp's 16, r = 1 is row lane/4 + 8; columns 2·(lane%4) + {0, 1} of each 8-block.
  float acc[ND][4];
#pragma unroll
  for (int n = 0; n < ND; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  float rowMax[2] = {-INFINITY, -INFINITY};
  float rowSum[2] = {0.0f, 0.0f};  // this lane's partial ℓ (its 2 columns of each 8-block); summed over the quad at the end

  const int tiles = (Lk + BN - 1) / BN;
  for (int j = 0; j < tiles; j++) {
    const uint32_t kTile = base + (j & 1) * 2 * G::TILE;
    const uint32_t vTile = kTile + G::TILE;
    cpAsyncWait<1>();  // K(j) is in
    __syncthreads();   // for every thread; and every warp is past tile j − 1 (and the Q fragments), so stage (j + 1) & 1 is free
    {
      const int k1 = (j + 1) * BN;
      const uint32_t next = base + ((j + 1) & 1) * 2 * G::TILE;
      if (k1 < Lk) loadTile<BN, D, G::NT, G::ROW>(next, kHead + k1 * rs, rs, Lk - k1);
      cpAsyncCommit();
      if (k1 < Lk) loadTile<BN, D, G::NT, G::ROW>(next + G::TILE, vHead + k1 * rs, rs, Lk - k1);
      cpAsyncCommit();
    }

    // S = Q·Kᵀ for the warp's 16 rows × 64 keys.
    float s[NB][4];
#pragma unroll
    for (int n = 0; n < NB; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KD; kk++) {
#pragma unroll
      for (int np = 0; np < NB / 2; np++) {
        uint32_t f[4];
        ldmatrixX4(f, kTile + kLane + np * 16 * G::ROW + kk * 32);
        mma(s[2 * np], qf[kk], f[0], f[1]);
        mma(s[2 * np + 1], qf[kk], f[2], f[3]);
      }
    }

    // Online softmax in the log2 domain: S·s, −∞ past Lk, running max over the quad that shares a row.
    const int k0 = j * BN;
    const bool partial = k0 + BN > Lk;
#pragma unroll
    for (int n = 0; n < NB; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        s[n][e] *= scaleLog2;
        if (partial && k0 + n * 8 + 2 * (lane & 3) + (e & 1) >= Lk) s[n][e] = -INFINITY;
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float mx = rowMax[r];
#pragma unroll
      for (int n = 0; n < NB; n++) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      corr[r] = exp2Ftz(rowMax[r] - mx);  // 0 on the first tile (rowMax = −∞; mx is finite: every tile holds a key < Lk)
      rowMax[r] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < NB; n++) {
        s[n][2 * r] = exp2Ftz(s[n][2 * r] - mx);
        s[n][2 * r + 1] = exp2Ftz(s[n][2 * r + 1] - mx);
        sum += s[n][2 * r] + s[n][2 * r + 1];
      }
      rowSum[r] = rowSum[r] * corr[r] + sum;
    }
#pragma unroll
    for (int n = 0; n < ND; n++) {
      acc[n][0] *= corr[0];
      acc[n][1] *= corr[0];
      acc[n][2] *= corr[1];
      acc[n][3] *= corr[1];
    }

    cpAsyncWait<2>();  // V(j) is in
    __syncthreads();

    // O += P·V, 16 keys per step: the C fragments of key blocks 2c and 2c + 1 are the A fragment (rows g | g + 8) × (keys 0-7 | 8-15).
#pragma unroll
    for (int c = 0; c < NB / 2; c++) {
      const uint32_t p[4] = {packBf16(s[2 * c][0], s[2 * c][1]), packBf16(s[2 * c][2], s[2 * c][3]), packBf16(s[2 * c + 1][0], s[2 * c + 1][1]),
                             packBf16(s[2 * c + 1][2], s[2 * c + 1][3])};
#pragma unroll
      for (int np = 0; np < ND / 2; np++) {
        uint32_t f[4];
        ldmatrixX4Trans(f, vTile + vLane + c * 16 * G::ROW + np * 32);
        mma(acc[2 * np], p, f[0], f[1]);
        mma(acc[2 * np + 1], p, f[2], f[3]);
      }
    }
  }

  // out = O / ℓ for rows < Lq.
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float l = rowSum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = 1.0f / l;
    const int row = q0 + warp * 16 + (lane >> 2) + 8 * r;
    if (row >= Lq) continue;
    const int64_t at = (int64_t(b) * Lq + row) * rs + int64_t(h) * D + 2 * (lane & 3);
    if (outF32) {
      float* dst = static_cast<float*>(o) + at;
#pragma unroll
      for (int n = 0; n < ND; n++) *reinterpret_cast<float2*>(dst + n * 8) = make_float2(acc[n][2 * r] * inv, acc[n][2 * r + 1] * inv);
    } else {
      bf16* dst = static_cast<bf16*>(o) + at;
#pragma unroll
      for (int n = 0; n < ND; n++)
        *reinterpret_cast<__nv_bfloat162*>(dst + n * 8) = __floats2bfloat162_rn(acc[n][2 * r] * inv, acc[n][2 * r + 1] * inv);
    }
  }
}

template <int D, int WARPS>
void launch(const void* q, const void* k, const void* v, void* o, int B, int Lq, int Lk, int H, float scale, DType outType) {
  using G = Geometry<D, WARPS>;
  auto kernel = flashAttentionKernel<D, WARPS>;
  static bool configured = false;
  if (!configured) {
    if (G::BYTES > 48 * 1024)
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, G::BYTES), "flash attention: shared memory limit");
    configured = true;
  }
  dim3 grid(unsigned((Lq + G::BM - 1) / G::BM), unsigned(B * H));
  kernel<<<grid, G::NT, G::BYTES, stream()>>>(static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v), o, Lq,
                                              Lk, H, scale * LOG2E, outType == F32);
  checkLaunch("flash attention");
}

}  // namespace

bool flashAttentionBf16(const void* q, const void* k, const void* v, void* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale,
                        DType outType) {
  if (D != Dv || (D != 32 && D != 64 && D != 128)) return false;
  if (outType != BF16 && outType != F32) throw CudaFailure("flash attention: output type must be BF16 or F32");
  const uintptr_t in = reinterpret_cast<uintptr_t>(q) | reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v);
  if (in % 16 != 0 || reinterpret_cast<uintptr_t>(o) % (outType == F32 ? 8 : 4) != 0) return false;
  if (int64_t(B) * Lq * H == 0) return true;
  if (Lk <= 0) throw CudaFailure("flash attention: no keys (Lk = 0)");
  if (int64_t(B) * H > 65535) throw CudaFailure("flash attention: batch × heads exceeds the grid limit (65535)");
  if (D == 32) launch<32, 4>(q, k, v, o, B, Lq, Lk, H, scale, outType);
  else if (D == 64) launch<64, 4>(q, k, v, o, B, Lq, Lk, H, scale, outType);
  else {
    const char* warps = std::getenv("WAN_CUDA_FLASH_WARPS");
    if (warps && std::string(warps) == "8") launch<128, 8>(q, k, v, o, B, Lq, Lk, H, scale, outType);
    else launch<128, 4>(q, k, v, o, B, Lq, Lk, H, scale, outType);
  }
  return true;
}

}  // namespace wan
