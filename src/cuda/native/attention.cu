// Flash-style attention in float32: out = softmax(scale · q·kᵀ) · v per (batch, head), computed
// tile by tile with an online softmax, so no [Lq, Lk] matrix exists at any time.
// q: [B, Lq, H, D], k: [B, Lk, H, D], v: [B, Lk, H, Dv], out: [B, Lq, H, Dv], all contiguous.
//
// A block owns BQ query rows of one (batch, head) and DV output columns (a "slice"; heads wider
// than DV use several blocks, each recomputing the scores). It walks the keys BK at a time:
// S = Q·Kᵀ accumulated over D in chunks of DCH (Q stays in shared memory when D ≤ DCH), then the
// running max / sum update, P = exp2(S − max) to shared memory, and O += P·V.
// Threads form CG column groups × (NT/CG) row groups; a row's reductions stay inside CG lanes of a warp.
#include <cstdlib>

#include "common.cuh"

namespace wan {

namespace {

constexpr float LOG2E = 1.4426950408889634f;

/** smem[r·STRIDE + c] = g[r·rowStride + c] for r < rows, c < cols, zero elsewhere in ROWS × COLS. */
template <int ROWS, int COLS, int STRIDE, int NT>
__device__ __forceinline__ void loadTile(float* smem, const float* g, int64_t rowStride, int rows, int cols, bool vec) {
  if (vec) {
    constexpr int C4 = COLS / 4;
    for (int idx = threadIdx.x; idx < ROWS * C4; idx += NT) {
      int r = idx / C4, c = (idx % C4) * 4;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (r < rows && c < cols) v = *reinterpret_cast<const float4*>(g + r * rowStride + c);
      *reinterpret_cast<float4*>(smem + r * STRIDE + c) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * COLS; idx += NT) {
      int r = idx / COLS, c = idx % COLS;
      smem[r * STRIDE + c] = (r < rows && c < cols) ? g[r * rowStride + c] : 0.0f;
    }
  }
}

template <int BQ, int BK, int DCH, int DV, int NT, int CG>
struct Tiles {
  static constexpr int RG = NT / CG;    // row groups
  static constexpr int TM = BQ / RG;    // query rows per thread
  static constexpr int TN = BK / CG;    // keys per thread
  static constexpr int TV = DV / CG;    // output columns per thread
  static constexpr int QS = DCH + 4;    // row strides in shared memory (floats), padded for banks
  static constexpr int KS = DCH + 4;
  static constexpr int PS = BK + 4;
  static constexpr int Q_FLOATS = BQ * QS;
  static constexpr int K_FLOATS = BK * KS;
  static constexpr int V_FLOATS = BK * DV;
  static constexpr int P_FLOATS = BQ * PS;
  static constexpr size_t BYTES = size_t(Q_FLOATS + K_FLOATS + V_FLOATS + P_FLOATS) * sizeof(float);
  static_assert(BQ % RG == 0 && BK % CG == 0 && DV % (4 * CG) == 0 && DCH % 4 == 0 && BK % 4 == 0, "tile shape");
};

template <int BQ, int BK, int DCH, int DV, int NT, int CG>
__global__ void __launch_bounds__(NT) attentionKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                                      float* __restrict__ out, int Lq, int Lk, int H, int D, int Dv, int slices,
                                                      float scaleLog2) {
  using T = Tiles<BQ, BK, DCH, DV, NT, CG>;
  extern __shared__ float4 smem4[];
  float* Qs = reinterpret_cast<float*>(smem4);
  float* Ks = Qs + T::Q_FLOATS;
  float* Vs = Ks + T::K_FLOATS;
  float* Ps = Vs + T::V_FLOATS;

  const int tid = threadIdx.x;
  const int rg = tid / CG, cg = tid % CG;
  const int q0 = blockIdx.x * BQ;
  const int h = blockIdx.y;
  const int b = blockIdx.z / slices;
  const int c0 = (blockIdx.z % slices) * DV;
  const int64_t qkRow = int64_t(H) * D;
  const int64_t vRow = int64_t(H) * Dv;
  const float* qBase = q + (int64_t(b) * Lq * H + h) * D + int64_t(q0) * qkRow;
  const float* kBase = k + (int64_t(b) * Lk * H + h) * D;
  const float* vBase = v + (int64_t(b) * Lk * H + h) * Dv + c0;
  const bool qkVec = (D % 4) == 0;
  const bool vVec = (Dv % 4) == 0;
  const bool qResident = D <= DCH;
  const int qRows = min(BQ, Lq - q0);

  float m[T::TM], l[T::TM], o[T::TM][T::TV];
#pragma unroll
  for (int i = 0; i < T::TM; i++) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < T::TV; j++) o[i][j] = 0.0f;
  }

  if (qResident) loadTile<BQ, DCH, T::QS, NT>(Qs, qBase, qkRow, qRows, D, qkVec);

  for (int k0 = 0; k0 < Lk; k0 += BK) {
    const int kRows = min(BK, Lk - k0);
    loadTile<BK, DV, DV, NT>(Vs, vBase + int64_t(k0) * vRow, vRow, kRows, min(DV, Dv - c0), vVec);

    float s[T::TM][T::TN];
#pragma unroll
    for (int i = 0; i < T::TM; i++)
#pragma unroll
      for (int j = 0; j < T::TN; j++) s[i][j] = 0.0f;

    for (int dc = 0; dc < D; dc += DCH) {
      if (!qResident) loadTile<BQ, DCH, T::QS, NT>(Qs, qBase + dc, qkRow, qRows, min(DCH, D - dc), qkVec);
      loadTile<BK, DCH, T::KS, NT>(Ks, kBase + int64_t(k0) * qkRow + dc, qkRow, kRows, min(DCH, D - dc), qkVec);
      __syncthreads();
#pragma unroll 4
      for (int d = 0; d < DCH; d += 4) {
        float4 qv[T::TM], kv[T::TN];
#pragma unroll
        for (int i = 0; i < T::TM; i++) qv[i] = *reinterpret_cast<const float4*>(Qs + (rg + i * T::RG) * T::QS + d);
#pragma unroll
        for (int j = 0; j < T::TN; j++) kv[j] = *reinterpret_cast<const float4*>(Ks + (cg + j * CG) * T::KS + d);
#pragma unroll
        for (int i = 0; i < T::TM; i++)
#pragma unroll
          for (int j = 0; j < T::TN; j++) {
            s[i][j] = fmaf(qv[i].x, kv[j].x, s[i][j]);
            s[i][j] = fmaf(qv[i].y, kv[j].y, s[i][j]);
            s[i][j] = fmaf(qv[i].z, kv[j].z, s[i][j]);
            s[i][j] = fmaf(qv[i].w, kv[j].w, s[i][j]);
          }
      }
      __syncthreads();
    }

    // Online softmax over this key tile; each row's BK scores live in CG adjacent lanes.
#pragma unroll
    for (int i = 0; i < T::TM; i++) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < T::TN; j++) {
        int key = k0 + cg + j * CG;
        s[i][j] = key < Lk ? s[i][j] * scaleLog2 : -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
#pragma unroll
      for (int off = CG / 2; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      float mNew = fmaxf(m[i], mx);
      float corr = exp2f(m[i] - mNew);
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < T::TN; j++) {
        float p = exp2f(s[i][j] - mNew);
        sum += p;
        Ps[(rg + i * T::RG) * T::PS + cg + j * CG] = p;
      }
#pragma unroll
      for (int off = CG / 2; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      l[i] = l[i] * corr + sum;
      m[i] = mNew;
#pragma unroll
      for (int j = 0; j < T::TV; j++) o[i][j] *= corr;
    }
    __syncthreads();

#pragma unroll 2
    for (int kk = 0; kk < BK; kk += 4) {
      float4 pv[T::TM];
#pragma unroll
      for (int i = 0; i < T::TM; i++) pv[i] = *reinterpret_cast<const float4*>(Ps + (rg + i * T::RG) * T::PS + kk);
#pragma unroll
      for (int e = 0; e < 4; e++) {
#pragma unroll
        for (int g = 0; g < T::TV / 4; g++) {
          float4 vv = *reinterpret_cast<const float4*>(Vs + (kk + e) * DV + g * 4 * CG + cg * 4);
#pragma unroll
          for (int i = 0; i < T::TM; i++) {
            float p = e == 0 ? pv[i].x : e == 1 ? pv[i].y : e == 2 ? pv[i].z : pv[i].w;
            o[i][g * 4 + 0] = fmaf(p, vv.x, o[i][g * 4 + 0]);
            o[i][g * 4 + 1] = fmaf(p, vv.y, o[i][g * 4 + 1]);
            o[i][g * 4 + 2] = fmaf(p, vv.z, o[i][g * 4 + 2]);
            o[i][g * 4 + 3] = fmaf(p, vv.w, o[i][g * 4 + 3]);
          }
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < T::TM; i++) {
    int row = q0 + rg + i * T::RG;
    if (row >= Lq) continue;
    float inv = 1.0f / l[i];
    float* dst = out + ((int64_t(b) * Lq + row) * H + h) * Dv;
#pragma unroll
    for (int g = 0; g < T::TV / 4; g++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int c = c0 + g * 4 * CG + cg * 4 + e;
        if (c < Dv) dst[c] = o[i][g * 4 + e] * inv;
      }
  }
}

template <int BQ, int BK, int DCH, int DV, int NT, int CG>
void launch(const float* q, const float* k, const float* v, float* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale) {
  using T = Tiles<BQ, BK, DCH, DV, NT, CG>;
  auto kernel = attentionKernel<BQ, BK, DCH, DV, NT, CG>;
  static bool configured = false;
  if (!configured) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(T::BYTES)), "attention: shared memory limit");
    configured = true;
  }
  int slices = (Dv + DV - 1) / DV;
  if (int64_t(B) * slices > 65535 || H > 65535) throw CudaFailure("attention: batch × value slices or heads exceed the grid limit (65535)");
  dim3 grid(unsigned((Lq + BQ - 1) / BQ), unsigned(H), unsigned(B * slices));
  kernel<<<grid, NT, T::BYTES, stream()>>>(q, k, v, o, Lq, Lk, H, D, Dv, slices, scale * LOG2E);
  checkLaunch("attention");
}

}  // namespace

void attention(const float* q, const float* k, const float* v, float* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale) {
  if (int64_t(B) * Lq * H * Dv == 0) return;
  if (Lk == 0) throw CudaFailure("attention: no keys (Lk = 0)");
  if (D <= 64 && Dv <= 64) launch<64, 32, 64, 64, 256, 16>(q, k, v, o, B, Lq, Lk, H, D, Dv, scale);
  else if (D <= 128 && Dv <= 128) {
    // Query × key tile of the D ≤ 128 path (64 × 32, 8 column groups: 33.9 TFLOP/s at 32,760 tokens on
    // an H100); WAN_CUDA_ATTENTION_TILE=64x32 or 128x64c8 selects the runners-up for tuning.
    const char* tile = std::getenv("WAN_CUDA_ATTENTION_TILE");
    std::string t = tile ? tile : "";
    if (t == "64x32") launch<64, 32, 128, 128, 256, 16>(q, k, v, o, B, Lq, Lk, H, D, Dv, scale);
    else if (t == "128x64c8") launch<128, 64, 128, 128, 256, 8>(q, k, v, o, B, Lq, Lk, H, D, Dv, scale);
    else launch<64, 32, 128, 128, 128, 8>(q, k, v, o, B, Lq, Lk, H, D, Dv, scale);
  }
  else launch<64, 32, 32, 64, 256, 16>(q, k, v, o, B, Lq, Lk, H, D, Dv, scale);
}

}  // namespace wan
