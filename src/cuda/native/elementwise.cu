// Elementwise kernels: fill, cast, unary and binary maps (binary and select over broadcast views),
// and the fused tanh-GELU. Semantics follow the tfjs cpu backend (NaN propagation in max/min,
// floor division and modulo with the divisor's sign, round half to even).
#include "common.cuh"
#include "ops.h"

namespace wan {

namespace {

constexpr int THREADS = 256;

__global__ void fillKernel(uint32_t* dst, int64_t n, uint32_t bits) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) dst[i] = bits;
}

__device__ __forceinline__ int32_t toInt32(float x) {
  if (isnan(x) || isinf(x)) return 0;
  double t = trunc(double(x));
  // JavaScript ToInt32: wrap modulo 2^32.
  double m = fmod(t, 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return int32_t(uint32_t(m));
}

template <typename TI, typename TO>
__global__ void castKernel(const TI* x, TO* y, int64_t n, bool toBool) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    TI v = x[i];
    if (toBool) {
      y[i] = TO(v != TI(0) ? 1 : 0);
    } else if constexpr (sizeof(TI) == 4 && std::is_same<TI, float>::value && std::is_same<TO, int32_t>::value) {
      y[i] = toInt32(v);
    } else {
      y[i] = TO(v);
    }
  }
}

__device__ __forceinline__ float unaryF(int op, float x, float a, float b) {
  switch (op) {
    case un::Abs: return fabsf(x);
    case un::Neg: return -x;
    case un::Exp: return expf(x);
    case un::Expm1: return expm1f(x);
    case un::Log: return logf(x);
    case un::Log1p: return log1pf(x);
    case un::Sqrt: return sqrtf(x);
    case un::Rsqrt: return 1.0f / sqrtf(x);
    case un::Square: return x * x;
    case un::Reciprocal: return 1.0f / x;
    case un::Sin: return sinf(x);
    case un::Cos: return cosf(x);
    case un::Tan: return tanf(x);
    case un::Asin: return asinf(x);
    case un::Acos: return acosf(x);
    case un::Atan: return atanf(x);
    case un::Sinh: return sinhf(x);
    case un::Cosh: return coshf(x);
    case un::Tanh: return tanhf(x);
    case un::Asinh: return asinhf(x);
    case un::Acosh: return acoshf(x);
    case un::Atanh: return atanhf(x);
    case un::Sigmoid: return 1.0f / (1.0f + expf(-x));
    case un::Softplus: {
      // tfjs: thresholds at log(float32 epsilon) + 2.
      const float threshold = -15.942385152878742f;
      if (x < threshold) return expf(x);
      if (x > -threshold) return x;
      return log1pf(expf(x));
    }
    case un::Relu: return isnan(x) ? x : (x > 0.0f ? x : 0.0f);
    case un::Relu6: return isnan(x) ? x : fminf(fmaxf(x, 0.0f), 6.0f);
    case un::Elu: return x >= 0.0f ? x : expm1f(x);
    case un::Selu: {
      const float scaleAlpha = 1.7580993408473768f, scale = 1.0507009873554805f;
      return x >= 0.0f ? scale * x : scaleAlpha * expm1f(x);
    }
    case un::Erf: return erff(x);
    case un::Floor: return floorf(x);
    case un::Ceil: return ceilf(x);
    case un::Round: return rintf(x);
    case un::Sign: return isnan(x) ? 0.0f : (x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f));
    case un::IsNan: return isnan(x) ? 1.0f : 0.0f;
    case un::IsInf: return isinf(x) ? 1.0f : 0.0f;
    case un::IsFinite: return isfinite(x) ? 1.0f : 0.0f;
    case un::LogicalNot: return x == 0.0f ? 1.0f : 0.0f;
    case un::Step: return isnan(x) ? NAN : (x > 0.0f ? 1.0f : a);
    case un::LeakyRelu: return x < 0.0f ? a * x : x;
    case un::ClipByValue: return isnan(x) ? x : fminf(fmaxf(x, a), b);
    default: return x;
  }
}

__device__ __forceinline__ int32_t unaryI(int op, int32_t x, float a, float b) {
  switch (op) {
    case un::Abs: return x < 0 ? -x : x;
    case un::Neg: return -x;
    case un::Square: return x * x;
    case un::Sign: return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case un::Relu: return x > 0 ? x : 0;
    case un::LogicalNot: return x == 0 ? 1 : 0;
    case un::ClipByValue: return int32_t(fminf(fmaxf(float(x), a), b));
    default: return x;
  }
}

template <typename TI, typename TO>
__global__ void unaryKernel(int op, const TI* x, TO* y, int64_t n, float a, float b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same<TI, float>::value) {
      y[i] = TO(unaryF(op, x[i], a, b));
    } else {
      y[i] = TO(unaryI(op, x[i], a, b));
    }
  }
}

__device__ __forceinline__ float binaryF(int op, float a, float b) {
  switch (op) {
    case bin::Add: return a + b;
    case bin::Sub: return a - b;
    case bin::Multiply: return a * b;
    case bin::RealDiv: return a / b;
    case bin::FloorDiv: return floorf(a / b);
    case bin::Mod: {
      float r = fmodf(a, b);
      return ((a < 0 && b < 0) || (a >= 0 && b >= 0)) ? r : fmodf(r + b, b);
    }
    case bin::Maximum: return (isnan(a) || isnan(b)) ? NAN : fmaxf(a, b);
    case bin::Minimum: return (isnan(a) || isnan(b)) ? NAN : fminf(a, b);
    case bin::Pow: return powf(a, b);
    case bin::SquaredDifference: return (a - b) * (a - b);
    case bin::Atan2: return atan2f(a, b);
    case bin::Equal: return a == b ? 1.0f : 0.0f;
    case bin::NotEqual: return a != b ? 1.0f : 0.0f;
    case bin::Less: return a < b ? 1.0f : 0.0f;
    case bin::LessEqual: return a <= b ? 1.0f : 0.0f;
    case bin::Greater: return a > b ? 1.0f : 0.0f;
    case bin::GreaterEqual: return a >= b ? 1.0f : 0.0f;
    case bin::LogicalAnd: return (a != 0.0f && b != 0.0f) ? 1.0f : 0.0f;
    case bin::LogicalOr: return (a != 0.0f || b != 0.0f) ? 1.0f : 0.0f;
    case bin::LogicalXor: return ((a != 0.0f) != (b != 0.0f)) ? 1.0f : 0.0f;
    case bin::Prelu: return a < 0.0f ? b * a : a;
    default: return a;
  }
}

__device__ __forceinline__ int32_t binaryI(int op, int32_t a, int32_t b) {
  switch (op) {
    case bin::Add: return int32_t(uint32_t(a) + uint32_t(b));
    case bin::Sub: return int32_t(uint32_t(a) - uint32_t(b));
    case bin::Multiply: return int32_t(uint32_t(a) * uint32_t(b));
    case bin::RealDiv:
    case bin::FloorDiv: {
      if (b == 0) return 0;
      int32_t q = a / b;
      if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
      return q;
    }
    case bin::Mod: {
      if (b == 0) return 0;
      int32_t r = a % b;
      return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
    }
    case bin::Maximum: return a > b ? a : b;
    case bin::Minimum: return a < b ? a : b;
    case bin::Pow: {
      double p = pow(double(a), double(b));
      if (!isfinite(p)) return 0;
      double m = fmod(trunc(p), 4294967296.0);
      if (m < 0) m += 4294967296.0;
      return int32_t(uint32_t(m));
    }
    case bin::SquaredDifference: return (a - b) * (a - b);
    case bin::Atan2: return int32_t(atan2(double(a), double(b)));
    case bin::Equal: return a == b;
    case bin::NotEqual: return a != b;
    case bin::Less: return a < b;
    case bin::LessEqual: return a <= b;
    case bin::Greater: return a > b;
    case bin::GreaterEqual: return a >= b;
    case bin::LogicalAnd: return (a != 0 && b != 0);
    case bin::LogicalOr: return (a != 0 || b != 0);
    case bin::LogicalXor: return ((a != 0) != (b != 0));
    case bin::Prelu: return a < 0 ? b * a : a;
    default: return a;
  }
}

template <typename T>
__device__ __forceinline__ T binaryOp(int op, T a, T b) {
  if constexpr (std::is_same<T, float>::value) {
    return binaryF(op, a, b);
  } else {
    return binaryI(op, a, b);
  }
}

// Both operands contiguous over the output (stride 1) or scalars (stride 0): no index arithmetic.
template <typename TI, typename TO>
__global__ void binaryFlatKernel(int op, const TI* a, const TI* b, TO* y, int64_t n, int64_t sa, int64_t sb) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    y[i] = TO(binaryOp<TI>(op, a[i * sa], b[i * sb]));
  }
}

template <typename TI, typename TO>
__global__ void binaryViewKernel(int op, const TI* a, const TI* b, TO* y, View v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    viewOffsets<2>(v, i, off);
    y[i] = TO(binaryOp<TI>(op, a[off[0]], b[off[1]]));
  }
}

__global__ void selectKernel(const int32_t* c, const uint32_t* a, const uint32_t* b, uint32_t* y, View v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    viewOffsets<3>(v, i, off);
    y[i] = c[off[0]] != 0 ? a[off[1]] : b[off[2]];
  }
}

__global__ void geluTanhKernel(const float* x, float* y, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
  }
}

}  // namespace

void fill(void* dst, int64_t n, uint32_t bits) {
  if (n == 0) return;
  fillKernel<<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<uint32_t*>(dst), n, bits);
  checkLaunch("fill");
}

void cast(const void* src, void* dst, int64_t n, DType from, int to) {
  if (n == 0) return;
  unsigned g = gridFor(n, THREADS);
  if (to == 2 && from == F32) {
    castKernel<float, int32_t><<<g, THREADS, 0, stream()>>>(static_cast<const float*>(src), static_cast<int32_t*>(dst), n, true);
  } else if (from == F32 && to == F32) {
    castKernel<float, float><<<g, THREADS, 0, stream()>>>(static_cast<const float*>(src), static_cast<float*>(dst), n, false);
  } else if (from == F32 && to == I32) {
    castKernel<float, int32_t><<<g, THREADS, 0, stream()>>>(static_cast<const float*>(src), static_cast<int32_t*>(dst), n, false);
  } else if (from == I32 && to == F32) {
    castKernel<int32_t, float><<<g, THREADS, 0, stream()>>>(static_cast<const int32_t*>(src), static_cast<float*>(dst), n, false);
  } else {
    castKernel<int32_t, int32_t><<<g, THREADS, 0, stream()>>>(static_cast<const int32_t*>(src), static_cast<int32_t*>(dst), n, to == 2);
  }
  checkLaunch("cast");
}

void unary(int op, DType in, DType out, const void* x, void* y, int64_t n, float a, float b) {
  if (n == 0) return;
  unsigned g = gridFor(n, THREADS);
  if (in == F32 && out == F32) {
    unaryKernel<float, float><<<g, THREADS, 0, stream()>>>(op, static_cast<const float*>(x), static_cast<float*>(y), n, a, b);
  } else if (in == F32 && out == I32) {
    unaryKernel<float, int32_t><<<g, THREADS, 0, stream()>>>(op, static_cast<const float*>(x), static_cast<int32_t*>(y), n, a, b);
  } else {
    unaryKernel<int32_t, int32_t><<<g, THREADS, 0, stream()>>>(op, static_cast<const int32_t*>(x), static_cast<int32_t*>(y), n, a, b);
  }
  checkLaunch("unary");
}

void binary(int op, DType in, DType out, const void* a, const void* b, void* y, const View& v, int64_t n) {
  if (n == 0) return;
  unsigned g = gridFor(n, THREADS);
  bool flat = v.rank == 1 && v.strides[0][0] <= 1 && v.strides[0][0] >= 0 && v.strides[1][0] <= 1 && v.strides[1][0] >= 0;
  int64_t sa = v.rank == 1 ? v.strides[0][0] : 0, sb = v.rank == 1 ? v.strides[1][0] : 0;
  if (in == F32 && out == F32) {
    auto pa = static_cast<const float*>(a);
    auto pb = static_cast<const float*>(b);
    auto py = static_cast<float*>(y);
    if (flat) binaryFlatKernel<float, float><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, n, sa, sb);
    else binaryViewKernel<float, float><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, v, n);
  } else if (in == F32 && out == I32) {
    auto pa = static_cast<const float*>(a);
    auto pb = static_cast<const float*>(b);
    auto py = static_cast<int32_t*>(y);
    if (flat) binaryFlatKernel<float, int32_t><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, n, sa, sb);
    else binaryViewKernel<float, int32_t><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, v, n);
  } else {
    auto pa = static_cast<const int32_t*>(a);
    auto pb = static_cast<const int32_t*>(b);
    auto py = static_cast<int32_t*>(y);
    if (flat) binaryFlatKernel<int32_t, int32_t><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, n, sa, sb);
    else binaryViewKernel<int32_t, int32_t><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, v, n);
  }
  checkLaunch("binary");
}

void select(const int32_t* cond, const void* a, const void* b, void* y, const View& v, int64_t n) {
  if (n == 0) return;
  selectKernel<<<gridFor(n, THREADS), THREADS, 0, stream()>>>(cond, static_cast<const uint32_t*>(a), static_cast<const uint32_t*>(b),
                                                             static_cast<uint32_t*>(y), v, n);
  checkLaunch("select");
}

void geluTanh(const float* x, float* y, int64_t n) {
  if (n == 0) return;
  geluTanhKernel<<<gridFor(n, THREADS), THREADS, 0, stream()>>>(x, y, n);
  checkLaunch("geluTanh");
}

}  // namespace wan
