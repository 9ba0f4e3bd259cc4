// Data movement on 2- or 4-byte elements (bfloat16, float32 and int32 alike; the element type E is
// an unsigned integer of that width): strided gathers (transpose, slice, strided slice, tile,
// broadcast, reverse), block copies (concat), padding, gather along an axis, nearest resize; and
// float32 bilinear resize and the im2col expansion behind conv2d / conv3d.
#include "storage.cuh"

namespace wan {

namespace {

constexpr int THREADS = 256;

template <typename E>
__global__ void copyStridedKernel(const E* src, E* dst, View v, int64_t n, int64_t srcOffset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    viewOffsets<1>(v, i, off);
    dst[i] = src[srcOffset + off[0]];
  }
}

template <typename E>
__global__ void copyBlockKernel(const E* src, E* dst, int64_t rows, int64_t cols, int64_t srcStride, int64_t dstStride,
                                int64_t srcOffset, int64_t dstOffset) {
  int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / cols, c = i % cols;
    dst[dstOffset + r * dstStride + c] = src[srcOffset + r * srcStride + c];
  }
}

template <typename E>
__global__ void padKernel(const E* src, E* dst, PadDesc p, E value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, off = 0, stride = 1;
    bool inside = true;
    for (int d = p.rank - 1; d >= 0; d--) {
      int64_t c = rest % p.out[d] - p.before[d];
      rest /= p.out[d];
      int64_t len = p.in[d];
      if (c < 0 || c >= len) {
        if (p.mode == 0) {
          inside = false;
          break;
        }
        int64_t shift = p.mode == 1 ? 0 : 1;  // reflect excludes the edge, symmetric repeats it
        c = c < 0 ? -c - shift : 2 * (len - 1) - c + shift;
      }
      off += c * stride;
      stride *= len;
    }
    dst[i] = inside ? src[off] : value;
  }
}

template <typename E>
__global__ void gatherKernel(const E* src, const int32_t* idx, E* dst, int64_t batch, int64_t outer, int64_t numIdx,
                             int64_t axisSize, int64_t inner) {
  int64_t n = batch * outer * numIdx * inner;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = i % inner;
    int64_t t = i / inner;
    int64_t k = t % numIdx;
    t /= numIdx;
    int64_t o = t % outer;
    int64_t b = t / outer;
    int64_t at = idx[b * numIdx + k];
    dst[i] = (at >= 0 && at < axisSize) ? src[((b * outer + o) * axisSize + at) * inner + j] : E(0);
  }
}

template <typename E>
__global__ void resizeNearestKernel(const E* src, E* dst, int64_t batch, int64_t inH, int64_t inW, int64_t ch, int64_t outH,
                                    int64_t outW, double scaleH, double scaleW, bool alignCorners, bool halfPixel) {
  int64_t n = batch * outH * outW * ch;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t c = i % ch;
    int64_t t = i / ch;
    int64_t x = t % outW;
    t /= outW;
    int64_t y = t % outH;
    int64_t b = t / outH;
    double fy = halfPixel ? scaleH * (double(y) + 0.5) : scaleH * double(y);
    double fx = halfPixel ? scaleW * (double(x) + 0.5) : scaleW * double(x);
    int64_t sy = int64_t(alignCorners ? floor(fy + 0.5) : floor(fy));
    int64_t sx = int64_t(alignCorners ? floor(fx + 0.5) : floor(fx));
    sy = sy < inH - 1 ? sy : inH - 1;
    sx = sx < inW - 1 ? sx : inW - 1;
    if (halfPixel) {
      sy = sy > 0 ? sy : 0;
      sx = sx > 0 ? sx : 0;
    }
    dst[i] = src[((b * inH + sy) * inW + sx) * ch + c];
  }
}

__global__ void resizeBilinearKernel(const float* src, float* dst, int64_t batch, int64_t inH, int64_t inW, int64_t ch, int64_t outH,
                                     int64_t outW, double scaleH, double scaleW, bool halfPixel) {
  int64_t n = batch * outH * outW * ch;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t c = i % ch;
    int64_t t = i / ch;
    int64_t x = t % outW;
    t /= outW;
    int64_t y = t % outH;
    int64_t b = t / outH;
    double fy = halfPixel ? scaleH * (double(y) + 0.5) - 0.5 : scaleH * double(y);
    double fx = halfPixel ? scaleW * (double(x) + 0.5) - 0.5 : scaleW * double(x);
    int64_t y0 = int64_t(fmax(0.0, floor(fy)));
    int64_t x0 = int64_t(fmax(0.0, floor(fx)));
    int64_t y1 = int64_t(fmin(double(inH - 1), ceil(fy)));
    int64_t x1 = int64_t(fmin(double(inW - 1), ceil(fx)));
    float ry = float(fy - double(y0)), rx = float(fx - double(x0));
    const float* base = src + b * inH * inW * ch + c;
    float tl = base[(y0 * inW + x0) * ch], tr = base[(y0 * inW + x1) * ch];
    float bl = base[(y1 * inW + x0) * ch], br = base[(y1 * inW + x1) * ch];
    float top = tl + (tr - tl) * rx;
    float bottom = bl + (br - bl) * rx;
    dst[i] = top + (bottom - top) * ry;
  }
}

__global__ void im2colKernel(const float* x, float* col, Conv c, int64_t p0, int64_t count) {
  int64_t kTotal = c.kd * c.kh * c.kw * c.c;
  int64_t n = count * kTotal;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t k = i % kTotal;
    int64_t p = p0 + i / kTotal;
    int64_t ci = k % c.c;
    int64_t t = k / c.c;
    int64_t kx = t % c.kw;
    t /= c.kw;
    int64_t ky = t % c.kh;
    int64_t kz = t / c.kh;
    int64_t ox = p % c.ow;
    t = p / c.ow;
    int64_t oy = t % c.oh;
    t /= c.oh;
    int64_t oz = t % c.od;
    int64_t b = t / c.od;
    int64_t iz = oz * c.sd - c.pd + kz * c.dd;
    int64_t iy = oy * c.sh - c.ph + ky * c.dh;
    int64_t ix = ox * c.sw - c.pw + kx * c.dw;
    bool inside = iz >= 0 && iz < c.d && iy >= 0 && iy < c.h && ix >= 0 && ix < c.w;
    col[i] = inside ? x[(((b * c.d + iz) * c.h + iy) * c.w + ix) * c.c + ci] : 0.0f;
  }
}

}  // namespace

void copyStrided(const void* src, void* dst, const View& v, int64_t n, int64_t srcOffset, int width) {
  if (n == 0) return;
  withWidth(width, [&](auto e) {
    using E = decltype(e);
    copyStridedKernel<E><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<const E*>(src), static_cast<E*>(dst), v, n, srcOffset);
  });
  checkLaunch("copyStrided");
}

void copyBlock(const void* src, void* dst, int64_t rows, int64_t cols, int64_t srcStride, int64_t dstStride, int64_t srcOffset,
               int64_t dstOffset, int width) {
  if (rows * cols == 0) return;
  withWidth(width, [&](auto e) {
    using E = decltype(e);
    if (srcStride == cols && dstStride == cols) {
      check(cudaMemcpyAsync(static_cast<E*>(dst) + dstOffset, static_cast<const E*>(src) + srcOffset, size_t(rows * cols) * sizeof(E),
                            cudaMemcpyDeviceToDevice, stream()),
            "copyBlock");
      return;
    }
    copyBlockKernel<E><<<gridFor(rows * cols, THREADS), THREADS, 0, stream()>>>(static_cast<const E*>(src), static_cast<E*>(dst), rows, cols,
                                                                              srcStride, dstStride, srcOffset, dstOffset);
  });
  checkLaunch("copyBlock");
}

void pad(const void* src, void* dst, const PadDesc& p, uint32_t value, int64_t n, int width) {
  if (n == 0) return;
  withWidth(width, [&](auto e) {
    using E = decltype(e);
    padKernel<E><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<const E*>(src), static_cast<E*>(dst), p, E(value), n);
  });
  checkLaunch("pad");
}

void gather(const void* src, const int32_t* idx, void* dst, int64_t batch, int64_t outer, int64_t numIdx, int64_t axisSize, int64_t inner,
            int width) {
  int64_t n = batch * outer * numIdx * inner;
  if (n == 0) return;
  withWidth(width, [&](auto e) {
    using E = decltype(e);
    gatherKernel<E><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<const E*>(src), idx, static_cast<E*>(dst), batch, outer, numIdx,
                                                                  axisSize, inner);
  });
  checkLaunch("gather");
}

void resizeNearest(const void* src, void* dst, int64_t batch, int64_t inH, int64_t inW, int64_t ch, int64_t outH, int64_t outW,
                   double scaleH, double scaleW, bool alignCorners, bool halfPixel, int width) {
  int64_t n = batch * outH * outW * ch;
  if (n == 0) return;
  withWidth(width, [&](auto e) {
    using E = decltype(e);
    resizeNearestKernel<E><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<const E*>(src), static_cast<E*>(dst), batch, inH, inW, ch,
                                                                         outH, outW, scaleH, scaleW, alignCorners, halfPixel);
  });
  checkLaunch("resizeNearest");
}

void resizeBilinear(const float* src, float* dst, int64_t batch, int64_t inH, int64_t inW, int64_t ch, int64_t outH, int64_t outW,
                    double scaleH, double scaleW, bool halfPixel) {
  int64_t n = batch * outH * outW * ch;
  if (n == 0) return;
  resizeBilinearKernel<<<gridFor(n, THREADS), THREADS, 0, stream()>>>(src, dst, batch, inH, inW, ch, outH, outW, scaleH, scaleW, halfPixel);
  checkLaunch("resizeBilinear");
}

void im2col(const float* x, float* col, const Conv& c, int64_t p0, int64_t count) {
  int64_t n = count * c.kd * c.kh * c.kw * c.c;
  if (n == 0) return;
  im2colKernel<<<gridFor(n, THREADS), THREADS, 0, stream()>>>(x, col, c, p0, count);
  checkLaunch("im2col");
}

}  // namespace wan
