// Elementwise kernels: fill, cast, unary and binary maps (binary and select over broadcast views),
// and the fused tanh-GELU. Semantics follow the tfjs cpu backend (NaN propagation in max/min,
// floor division and modulo with the divisor's sign, round half to even). Float operands may be
// stored as float32 or bfloat16 (each operand its own type): values are computed in float32.
#include "ops.h"
#include "storage.cuh"

namespace wan {

namespace {

constexpr int THREADS = 256;

template <typename E>
__global__ void fillKernel(E* dst, int64_t n, E bits) {
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

/** Element-for-element conversion: floats round to the target (bf16: nearest even), float → int32 as JavaScript's ToInt32. */
template <typename TI, typename TO>
__global__ void castKernel(const TI* x, TO* y, int64_t n, bool toBool) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same<TI, int32_t>::value) {
      TI v = x[i];
      if constexpr (std::is_same<TO, int32_t>::value) y[i] = toBool ? int32_t(v != 0) : v;
      else y[i] = fromFloat<TO>(float(v));
    } else {
      float v = toFloat(x[i]);
      if constexpr (std::is_same<TO, int32_t>::value) y[i] = toBool ? int32_t(v != 0.0f) : toInt32(v);
      else y[i] = fromFloat<TO>(v);
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
    if constexpr (std::is_same<TI, int32_t>::value) {
      y[i] = TO(unaryI(op, x[i], a, b));
    } else if constexpr (std::is_same<TO, int32_t>::value) {
      y[i] = TO(unaryF(op, toFloat(x[i]), a, b));
    } else {
      y[i] = fromFloat<TO>(unaryF(op, toFloat(x[i]), a, b));
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

/** Stores a float result as TO (a bool / int32 result of a comparison is exact in float). */
template <typename TO>
__device__ __forceinline__ TO storeResult(float v) {
  if constexpr (std::is_same<TO, int32_t>::value) return TO(v);
  else return fromFloat<TO>(v);
}

// Both operands contiguous over the output (stride 1) or scalars (stride 0): no index arithmetic.
template <typename TA, typename TB, typename TO>
__global__ void binaryFlatKernel(int op, const TA* a, const TB* b, TO* y, int64_t n, int64_t sa, int64_t sb) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same<TA, int32_t>::value) y[i] = TO(binaryI(op, a[i * sa], b[i * sb]));
    else y[i] = storeResult<TO>(binaryF(op, toFloat(a[i * sa]), toFloat(b[i * sb])));
  }
}

template <typename TA, typename TB, typename TO>
__global__ void binaryViewKernel(int op, const TA* a, const TB* b, TO* y, View v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    viewOffsets<2>(v, i, off);
    if constexpr (std::is_same<TA, int32_t>::value) y[i] = TO(binaryI(op, a[off[0]], b[off[1]]));
    else y[i] = storeResult<TO>(binaryF(op, toFloat(a[off[0]]), toFloat(b[off[1]])));
  }
}

template <typename E>
__global__ void selectKernel(const int32_t* c, const E* a, const E* b, E* y, View v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    viewOffsets<3>(v, i, off);
    y[i] = c[off[0]] != 0 ? a[off[1]] : b[off[2]];
  }
}

template <typename TI, typename TO>
__global__ void geluTanhKernel(const TI* x, TO* y, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = toFloat(x[i]);
    y[i] = fromFloat<TO>(0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v))));
  }
}

// One block per row: the row's gate is found once, the columns are read and written coalesced.
template <typename TX, typename TY>
__global__ void gatedResidualKernel(const TX* x, const TY* y, const float* gate, float* out, int64_t cols, int64_t rowsPerMod, int64_t modCount) {
  const int64_t r = blockIdx.x;
  const int64_t base = r * cols;
  const float* g = gate ? gate + ((r / rowsPerMod) % modCount) * cols : nullptr;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = toFloat(y[base + j]);
    out[base + j] = __fadd_rn(toFloat(x[base + j]), g ? __fmul_rn(v, g[j]) : v);
  }
}

template <typename I, typename TY, typename TB, typename TR, typename TO>
__global__ void biasResidualKernel(const TY* y, const TB* bias, const TR* res, TO* out, I n, I cols) {
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    float v = toFloat(y[i]);
    if (bias) v += toFloat(bias[i % cols]);
    if (res) v += toFloat(res[i]);
    out[i] = fromFloat<TO>(v);
  }
}

}  // namespace

void fill(void* dst, int64_t n, uint32_t bits, int width) {
  if (n == 0) return;
  withWidth(width, [&](auto e) {
    using E = decltype(e);
    fillKernel<E><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<E*>(dst), n, E(bits));
  });
  checkLaunch("fill");
}

namespace {

/** Calls f with the C++ type of any stored type (int32 for I32, float, bf16, half for F16). */
template <typename F>
void withStoredType(DType t, F&& f) {
  if (t == I32) f(int32_t{});
  else if (t == F16) f(__half{});
  else withFloatType(t, f);
}

}  // namespace

void cast(const void* src, void* dst, int64_t n, DType from, int to) {
  if (n == 0) return;
  unsigned g = gridFor(n, THREADS);
  bool toBool = to == 2;
  DType target = toBool ? I32 : DType(to);
  if (target == F16) throw CudaFailure("cast: float16 is an upload format only, not a cast target");
  withStoredType(from, [&](auto in) {
    using TI = decltype(in);
    withStoredType(target, [&](auto out) {
      using TO = decltype(out);
      if constexpr (!std::is_same<TO, __half>::value) {
        castKernel<TI, TO><<<g, THREADS, 0, stream()>>>(static_cast<const TI*>(src), static_cast<TO*>(dst), n, toBool);
      }
    });
  });
  checkLaunch("cast");
}

void unary(int op, DType in, DType out, const void* x, void* y, int64_t n, float a, float b) {
  if (n == 0) return;
  unsigned g = gridFor(n, THREADS);
  if (in == I32) {
    unaryKernel<int32_t, int32_t><<<g, THREADS, 0, stream()>>>(op, static_cast<const int32_t*>(x), static_cast<int32_t*>(y), n, a, b);
  } else {
    withFloatType(in, [&](auto ti) {
      using TI = decltype(ti);
      if (out == I32) {
        unaryKernel<TI, int32_t><<<g, THREADS, 0, stream()>>>(op, static_cast<const TI*>(x), static_cast<int32_t*>(y), n, a, b);
      } else {
        withFloatType(out, [&](auto to) {
          using TO = decltype(to);
          unaryKernel<TI, TO><<<g, THREADS, 0, stream()>>>(op, static_cast<const TI*>(x), static_cast<TO*>(y), n, a, b);
        });
      }
    });
  }
  checkLaunch("unary");
}

void binary(int op, DType inA, DType inB, DType out, const void* a, const void* b, void* y, const View& v, int64_t n) {
  if (n == 0) return;
  unsigned g = gridFor(n, THREADS);
  bool flat = v.rank == 1 && v.strides[0][0] <= 1 && v.strides[0][0] >= 0 && v.strides[1][0] <= 1 && v.strides[1][0] >= 0;
  int64_t sa = v.rank == 1 ? v.strides[0][0] : 0, sb = v.rank == 1 ? v.strides[1][0] : 0;
  auto launch = [&](auto ta, auto tb, auto to) {
    using TA = decltype(ta);
    using TB = decltype(tb);
    using TO = decltype(to);
    auto pa = static_cast<const TA*>(a);
    auto pb = static_cast<const TB*>(b);
    auto py = static_cast<TO*>(y);
    if (flat) binaryFlatKernel<TA, TB, TO><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, n, sa, sb);
    else binaryViewKernel<TA, TB, TO><<<g, THREADS, 0, stream()>>>(op, pa, pb, py, v, n);
  };
  if (inA == I32 || inB == I32) {
    if (inA != I32 || inB != I32 || out != I32) throw CudaFailure("binary: int32 operands must both be int32 with an int32 result");
    launch(int32_t{}, int32_t{}, int32_t{});
  } else {
    withFloatType(inA, [&](auto ta) {
      withFloatType(inB, [&](auto tb) {
        if (out == I32) launch(ta, tb, int32_t{});
        else withFloatType(out, [&](auto to) { launch(ta, tb, to); });
      });
    });
  }
  checkLaunch("binary");
}

void select(const int32_t* cond, const void* a, const void* b, void* y, const View& v, int64_t n, int width) {
  if (n == 0) return;
  withWidth(width, [&](auto e) {
    using E = decltype(e);
    selectKernel<E><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(cond, static_cast<const E*>(a), static_cast<const E*>(b), static_cast<E*>(y), v, n);
  });
  checkLaunch("select");
}

void geluTanh(const void* x, void* y, int64_t n, DType in, DType out) {
  if (n == 0) return;
  withFloatType(in, [&](auto ti) {
    withFloatType(out, [&](auto to) {
      using TI = decltype(ti);
      using TO = decltype(to);
      geluTanhKernel<TI, TO><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<const TI*>(x), static_cast<TO*>(y), n);
    });
  });
  checkLaunch("geluTanh");
}

void gatedResidual(const void* x, const void* y, const float* gate, float* out, int64_t rows, int64_t cols, int64_t rowsPerMod, int64_t modCount,
                   DType typeX, DType typeY) {
  if (rows == 0 || cols == 0) return;
  if (rows > int64_t(INT32_MAX)) throw CudaFailure("gatedResidual: more than 2^31 - 1 rows");
  if (rowsPerMod < 1 || modCount < 1) throw CudaFailure("gatedResidual: rowsPerMod and modCount must be ≥ 1");
  withFloatType(typeX, [&](auto tx) {
    withFloatType(typeY, [&](auto ty) {
      using TX = decltype(tx);
      using TY = decltype(ty);
      gatedResidualKernel<TX, TY><<<unsigned(rows), THREADS, 0, stream()>>>(static_cast<const TX*>(x), static_cast<const TY*>(y), gate, out, cols,
                                                                             rowsPerMod, modCount);
    });
  });
  checkLaunch("gatedResidual");
}

void biasResidual(const void* y, const void* bias, const void* res, void* out, int64_t rows, int64_t cols, DType typeY, DType typeBias,
                  DType typeRes, DType typeOut) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  // Absent inputs take the output's type so that the dispatch below stays four types deep.
  if (!bias) typeBias = typeOut;
  if (!res) typeRes = typeOut;
  withFloatType(typeY, [&](auto ty) {
    withFloatType(typeBias, [&](auto tb) {
      withFloatType(typeRes, [&](auto tr) {
        withFloatType(typeOut, [&](auto to) {
          using TY = decltype(ty);
          using TB = decltype(tb);
          using TR = decltype(tr);
          using TO = decltype(to);
          auto launch = [&](auto index) {
            using I = decltype(index);
            biasResidualKernel<I, TY, TB, TR, TO><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(
                static_cast<const TY*>(y), static_cast<const TB*>(bias), static_cast<const TR*>(res), static_cast<TO*>(out), I(n), I(cols));
          };
          if (n <= int64_t(UINT32_MAX)) launch(uint32_t{});
          else launch(uint64_t{});
        });
      });
    });
  });
  checkLaunch("biasResidual");
}

}  // namespace wan
