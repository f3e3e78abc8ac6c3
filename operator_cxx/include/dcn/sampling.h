// Bilinear sampling of one (H, W) plane at a fractional location, with the UPDATED (DCNv2) border
// rule, and its derivatives. Shared by the CPU loops and the CUDA kernels.
//
// Rule: a sample at (h, w) counts when -1 < h < H and -1 < w < W. Its four corners are
// (h0, w0), (h0, w1), (h1, w0), (h1, w1) with h0 = floor(h), h1 = h0 + 1 (same for w); a corner
// outside [0, H-1] x [0, W-1] reads as 0, i.e. the plane is zero-padded by one row/column on every
// side. Outside the band the sample is 0 and so are its gradients. (The OLD rule of MXNet's
// _contrib_DeformableConvolution used 0 <= h < H and replicated the last row for h in [H-1, H).)
//
// Padded images: the kernels read (and scatter to) zero-padded, channels-last copies of the images,
// so that the four corners of any sample need no bounds tests and the channels of one pixel are
// contiguous (the CPU vectorizes over them, the GPU coalesces over them). A padded image has
// Hp = H + 3 rows and Wp = W + 2 columns of pixels; image pixel (y, x) is pixel (y+1)*Wp + (x+1);
// padded rows H+1 and H+2 are zeros, and a sample outside the band points at that 2x2 zero block
// with weights 0 (so its value is an exact 0 whatever the data holds). Pixel q, channel c of a
// padded image is element q * px + c with px = the channel count; `row` = Wp * px below.
//
// Non-finite or huge coordinates: the range test comes first and is false for NaN and for any
// |h| >= H + 1, so floor() is only ever converted to int for values in (-1, H): no float->int
// overflow and no out-of-range read, whatever the offsets hold. Such a sample is 0 with gradient 0.
#pragma once

#include "dcn/common.h"

namespace dcn {

DCN_HOST_DEVICE_INLINE int padded_height(int H) { return H + 3; }
DCN_HOST_DEVICE_INLINE int padded_width(int W) { return W + 2; }
// Padded index of image pixel (y, x), for y in [-1, H + 1] and x in [-1, W].
DCN_HOST_DEVICE_INLINE int padded_index(int y, int x, int Wp) { return (y + 1) * Wp + (x + 1); }
// Top-left of the all-zero 2x2 block (padded rows H+1, H+2, columns 0, 1).
DCN_HOST_DEVICE_INLINE int zero_block(int H, int Wp) { return (H + 1) * Wp; }

// One sample: its corner pixels in the padded image (idx, idx+1, idx+Wp, idx+Wp+1), weights.
template <typename T>
struct Sample {
  int idx;
  T w[4];
};

template <typename T>
DCN_HOST_DEVICE_INLINE bool in_sampling_range(T h, T w, int H, int W) {
  return h > T(-1) && h < T(H) && w > T(-1) && w < T(W);  // false for NaN
}

// floor() of a coordinate already known to lie in (-1, INT_MAX): truncation, minus one below 0
// (cheaper than a libm call on CPUs without SSE4.1 rounding).
template <typename T>
DCN_HOST_DEVICE_INLINE int floor_in_range(T x) {
  const int t = static_cast<int>(x);
  return t - (x < static_cast<T>(t) ? 1 : 0);
}

// Bilinear corners and weights of (h, w), every weight multiplied by `scale` (the DCNv2 mask, or
// 1). These are also the weights of the data gradient (col2im scatters grad * w[k]).
template <typename T>
DCN_HOST_DEVICE_INLINE Sample<T> bilinear_sample(T h, T w, int H, int W, T scale) {
  Sample<T> s;
  const int Wp = padded_width(W);
  if (!in_sampling_range(h, w, H, W)) {
    s.idx = zero_block(H, Wp);
    s.w[0] = s.w[1] = s.w[2] = s.w[3] = T(0);
    return s;
  }
  const int h0 = floor_in_range(h), w0 = floor_in_range(w);  // in [-1, H-1] x [-1, W-1]
  s.idx = padded_index(h0, w0, Wp);
  const T lh = h - static_cast<T>(h0), lw = w - static_cast<T>(w0);
  const T hh = T(1) - lh, hw = T(1) - lw;
  s.w[0] = hh * hw * scale;
  s.w[1] = hh * lw * scale;
  s.w[2] = lh * hw * scale;
  s.w[3] = lh * lw * scale;
  return s;
}

// Value of the sample for one channel; `channel` points at that channel of pixel 0 of a padded
// image (pixel stride px, row stride row = Wp * px).
template <typename T>
DCN_HOST_DEVICE_INLINE T gather(const Sample<T>& s, const T* channel, index_t px, index_t row) {
  const T* q = channel + s.idx * px;
  return s.w[0] * q[0] + s.w[1] * q[px] + s.w[2] * q[row] + s.w[3] * q[row + px];
}

// Data gradient of one sample for one channel: corner k += grad * w[k]. Add is a functor (plain
// += on the CPU, where a channel block belongs to one thread; atomic on the GPU).
template <typename T, typename Add>
DCN_HOST_DEVICE_INLINE void scatter(const Sample<T>& s, T grad, T* channel, index_t px, index_t row,
                                    const Add& add) {
  T* q = channel + s.idx * px;
  add(q, s.w[0] * grad);
  add(q + px, s.w[1] * grad);
  add(q + row, s.w[2] * grad);
  add(q + row + px, s.w[3] * grad);
}

// What the coordinate (offset / mask) gradients of one sample need: corner index, fractional
// parts and the mask; `valid` is false outside the band (every gradient is then 0).
template <typename T>
struct CoordSample {
  int idx;
  T lh, lw, m;
  bool valid;
};

template <typename T>
DCN_HOST_DEVICE_INLINE CoordSample<T> coord_sample(T h, T w, T m, int H, int W) {
  CoordSample<T> s;
  const int Wp = padded_width(W);
  s.m = m;
  s.valid = in_sampling_range(h, w, H, W);
  if (!s.valid) {
    s.idx = zero_block(H, Wp);
    s.lh = s.lw = T(0);
    return s;
  }
  const int h0 = floor_in_range(h), w0 = floor_in_range(w);
  s.idx = padded_index(h0, w0, Wp);
  s.lh = h - static_cast<T>(h0);
  s.lw = w - static_cast<T>(w0);
  return s;
}

// For one channel (as in gather): d value / dh, d value / dw and the (unmasked) value at the
// sample. value = hh*hw*v0 + hh*lw*v1 + lh*hw*v2 + lh*lw*v3 with hh = 1 - lh, hw = 1 - lw.
template <typename T>
DCN_HOST_DEVICE_INLINE void coord_terms(const CoordSample<T>& s, const T* channel, index_t px,
                                        index_t row, T* dvh, T* dvw, T* v) {
  const T* q = channel + s.idx * px;
  const T v0 = q[0], v1 = q[px], v2 = q[row], v3 = q[row + px];
  const T hh = T(1) - s.lh, hw = T(1) - s.lw;
  *dvh = hw * (v2 - v0) + s.lw * (v3 - v1);
  *dvw = hh * (v1 - v0) + s.lh * (v3 - v2);
  *v = hh * (hw * v0 + s.lw * v1) + s.lh * (hw * v2 + s.lw * v3);
}

}  // namespace dcn
