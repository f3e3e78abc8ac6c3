// Per-output-bin math of PSROIPooling and DeformablePSROIPooling, shared by the CPU (OpenMP
// loops in cpu/psroi_pooling.cc) and CUDA (grid-stride kernels in cuda/psroi_pooling.cu) paths.
//
// Position-sensitive RoI pooling, R-FCN (Dai et al., arXiv:1605.06409); deformable variant with
// per-part offsets, Deformable ConvNets (Dai et al., arXiv:1703.06211). Semantics follow
// MXNet's contrib operators exactly (same coordinate rounding, each coordinate computed in T in
// contrib's order; only the order of the final sums differs, so float32 results agree with
// contrib to rounding):
//
//   data  (N, C, H, W) with C = output_dim * group * group (position-sensitive score maps)
//   rois  (R, 5)       [batch_index, x1, y1, x2, y2] in image pixels; corners are rounded and the
//                      end corner is inclusive (+1) before scaling by spatial_scale
//   trans (R, 2 * num_classes, part, part)   DeformablePSROIPooling only; channel 2k is the x
//                      (width) offset and 2k+1 the y (height) offset of class k - the opposite
//                      order to DeformableConvolution's (dy, dx) offsets. Output channel ctop
//                      uses class ctop / (output_dim / num_classes).
//   out   (R, output_dim, pooled, pooled); column j = (ctop * pooled + ph) * pooled + pw reads
//                      score map c = (ctop * group + gh) * group + gw, gh = floor(ph*group/pooled).
//
// Robustness (contrib aborts or reads out of bounds instead): every float -> integer conversion
// below is preceded by a range check on the float, so NaN/inf rois or trans can only make a bin
// empty (value 0, zero gradient), never produce an out-of-range index.
#pragma once

#include <math.h>

#include "dcn/common.h"

namespace dcn {

DCN_HOST_DEVICE_INLINE float round_half_away(float v) { return roundf(v); }
DCN_HOST_DEVICE_INLINE double round_half_away(double v) { return round(v); }

// Batch image of a roi, or -1 unless rois[0] is an integer in [0, num_images) (NaN fails).
template <typename T>
DCN_HOST_DEVICE_INLINE index_t roi_batch_index(T v, index_t num_images) {
  if (!(v >= T(0) && v < static_cast<T>(num_images))) return -1;
  const index_t b = static_cast<index_t>(v);
  return static_cast<T>(b) == v ? b : -1;
}

// Score-map row/column of bin p: floor(p * group / pooled) evaluated in T as contrib does,
// clamped to [0, group - 1]. The value is >= 0, so truncation is floor.
template <typename T>
DCN_HOST_DEVICE_INLINE index_t ps_group_index(index_t p, index_t group, index_t pooled) {
  const index_t g = static_cast<index_t>(static_cast<T>(p) * group / pooled);
  return g < 0 ? 0 : (g > group - 1 ? group - 1 : g);
}

// Offset part of bin p: floor(p / pooled * part) in T (contrib's order), clamped.
template <typename T>
DCN_HOST_DEVICE_INLINE index_t dpsroi_part_index(index_t p, index_t pooled, index_t part) {
  const index_t q = static_cast<index_t>(static_cast<T>(p) / pooled * part);
  return q < 0 ? 0 : (q > part - 1 ? part - 1 : q);
}

// Score map read by output column j = (ctop * pooled + ph) * pooled + pw.
template <typename T>
DCN_HOST_DEVICE_INLINE index_t ps_channel(index_t j, index_t pooled, index_t group) {
  const index_t pw = j % pooled;
  const index_t ph = (j / pooled) % pooled;
  const index_t ctop = j / (pooled * pooled);
  return (ctop * group + ps_group_index<T>(ph, group, pooled)) * group +
         ps_group_index<T>(pw, group, pooled);
}

// ------------------------------------------------------------------------------------------
// PSROIPooling: average of the whole pixels of each bin.

struct PsroiDims {
  index_t num_images, channels, height, width;
  index_t output_dim, group, pooled;
};

template <typename T>
struct PsroiRoi {
  index_t batch;  // -1: invalid batch index (the CPU driver rejects it, CUDA zeroes the roi)
  T start_w, start_h, bin_w, bin_h;
};

template <typename T>
DCN_HOST_DEVICE_INLINE PsroiRoi<T> psroi_roi(const T* roi, const PsroiDims& d, T spatial_scale) {
  PsroiRoi<T> g;
  g.batch = roi_batch_index(roi[0], d.num_images);
  g.start_w = round_half_away(roi[1]) * spatial_scale;
  g.start_h = round_half_away(roi[2]) * spatial_scale;
  const T end_w = (round_half_away(roi[3]) + T(1)) * spatial_scale;
  const T end_h = (round_half_away(roi[4]) + T(1)) * spatial_scale;
  // Degenerate rois (x2 < x1) still get a 0.1-pixel extent, as in contrib.
  T roi_w = end_w - g.start_w;
  T roi_h = end_h - g.start_h;
  roi_w = roi_w > T(0.1) ? roi_w : T(0.1);
  roi_h = roi_h > T(0.1) ? roi_h : T(0.1);
  g.bin_w = roi_w / static_cast<T>(d.pooled);
  g.bin_h = roi_h / static_cast<T>(d.pooled);
  return g;
}

// floor / ceil of v clamped to [0, n]; NaN -> 0. Clamping before converting keeps the integer
// in range for any float, and equals contrib's convert-then-clamp for finite values.
template <typename T>
DCN_HOST_DEVICE_INLINE index_t floor_clamped(T v, index_t n) {
  if (!(v > T(0))) return 0;
  if (v >= static_cast<T>(n)) return n;
  return static_cast<index_t>(v);
}

template <typename T>
DCN_HOST_DEVICE_INLINE index_t ceil_clamped(T v, index_t n) {
  if (!(v > T(0))) return 0;
  if (v >= static_cast<T>(n)) return n;
  const index_t i = static_cast<index_t>(v);
  return static_cast<T>(i) < v ? i + 1 : i;
}

// Pixel range [hstart, hend) x [wstart, wend) of bin (ph, pw); empty when hend <= hstart etc.
struct PixelBin {
  index_t hstart, hend, wstart, wend;
};

template <typename T>
DCN_HOST_DEVICE_INLINE PixelBin psroi_bin(const PsroiRoi<T>& g, index_t ph, index_t pw,
                                          const PsroiDims& d) {
  PixelBin b;
  b.hstart = floor_clamped(static_cast<T>(ph) * g.bin_h + g.start_h, d.height);
  b.hend = ceil_clamped(static_cast<T>(ph + 1) * g.bin_h + g.start_h, d.height);
  b.wstart = floor_clamped(static_cast<T>(pw) * g.bin_w + g.start_w, d.width);
  b.wend = ceil_clamped(static_cast<T>(pw + 1) * g.bin_w + g.start_w, d.width);
  return b;
}

// Mean of the bin's pixels in `plane` (one H x W score map); 0 for an empty bin.
template <typename T>
DCN_HOST_DEVICE_INLINE T psroi_fwd_elem(const T* plane, index_t width, const PixelBin& b) {
  if (b.hend <= b.hstart || b.wend <= b.wstart) return T(0);
  T sum = 0;
  for (index_t h = b.hstart; h < b.hend; ++h) {
    for (index_t w = b.wstart; w < b.wend; ++w) sum += plane[h * width + w];
  }
  return sum / static_cast<T>((b.hend - b.hstart) * (b.wend - b.wstart));
}

// Adds top_grad / area to every pixel of the bin in `grad_plane`; `add(T* p, T v)` is a plain
// += on the CPU (race-free by partitioning) and an atomic add on the GPU.
template <typename T, typename Add>
DCN_HOST_DEVICE_INLINE void psroi_bwd_elem(T* grad_plane, index_t width, const PixelBin& b,
                                           T top_grad, Add add) {
  if (b.hend <= b.hstart || b.wend <= b.wstart) return;
  const T g = top_grad / static_cast<T>((b.hend - b.hstart) * (b.wend - b.wstart));
  for (index_t h = b.hstart; h < b.hend; ++h) {
    for (index_t w = b.wstart; w < b.wend; ++w) add(grad_plane + h * width + w, g);
  }
}

// ------------------------------------------------------------------------------------------
// DeformablePSROIPooling: mean of sample_per_part^2 bilinear samples per bin.

struct DpsroiDims {
  index_t num_images, channels, height, width;
  index_t output_dim, group, pooled, part, sample_per_part;
  index_t num_classes;          // trans classes (trans.shape[1] / 2); 1 without trans
  index_t channels_each_class;  // output_dim / num_classes
  bool no_trans;
};

template <typename T>
struct DpsroiRoi {
  index_t batch;  // -1: invalid batch index
  T start_w, start_h, width, height, bin_w, bin_h, sub_w, sub_h;
};

template <typename T>
DCN_HOST_DEVICE_INLINE DpsroiRoi<T> dpsroi_roi(const T* roi, const DpsroiDims& d,
                                               T spatial_scale) {
  DpsroiRoi<T> g;
  g.batch = roi_batch_index(roi[0], d.num_images);
  // -0.5: pixel centres sit at integer coordinates of the feature map.
  g.start_w = round_half_away(roi[1]) * spatial_scale - T(0.5);
  g.start_h = round_half_away(roi[2]) * spatial_scale - T(0.5);
  const T end_w = (round_half_away(roi[3]) + T(1)) * spatial_scale - T(0.5);
  const T end_h = (round_half_away(roi[4]) + T(1)) * spatial_scale - T(0.5);
  T w = end_w - g.start_w;
  T h = end_h - g.start_h;
  g.width = w > T(0.1) ? w : T(0.1);
  g.height = h > T(0.1) ? h : T(0.1);
  g.bin_w = g.width / static_cast<T>(d.pooled);
  g.bin_h = g.height / static_cast<T>(d.pooled);
  g.sub_w = g.bin_w / static_cast<T>(d.sample_per_part);
  g.sub_h = g.bin_h / static_cast<T>(d.sample_per_part);
  return g;
}

// Static geometry of output column j = (ctop * pooled + ph) * pooled + pw, the same for every
// roi (the CPU driver tabulates it once per call; the integer divisions would otherwise dominate).
struct DpsroiColumn {
  index_t ph, pw;
  index_t channel;      // score map read: (ctop * group + gh) * group + gw
  index_t trans_slot;   // (cls * 2 * part + part_h) * part + part_w: x offset of the bin's part
};

template <typename T>
DCN_HOST_DEVICE_INLINE DpsroiColumn dpsroi_column(index_t j, const DpsroiDims& d) {
  DpsroiColumn col;
  col.pw = j % d.pooled;
  col.ph = (j / d.pooled) % d.pooled;
  col.channel = ps_channel<T>(j, d.pooled, d.group);
  const index_t cls = j / (d.pooled * d.pooled) / d.channels_each_class;
  col.trans_slot = ((cls * 2) * d.part + dpsroi_part_index<T>(col.ph, d.pooled, d.part)) * d.part +
                   dpsroi_part_index<T>(col.pw, d.pooled, d.part);
  return col;
}

// First sample point of a bin (the top-left corners of the sub-bins are sampled, not their
// centres), shifted by the bin's part offset, and where that offset lives in trans.
template <typename T>
struct DpsroiBin {
  index_t trans_index;  // x offset at trans[trans_index], y at trans_index + part * part
  T wstart, hstart;
};

template <typename T>
DCN_HOST_DEVICE_INLINE DpsroiBin<T> dpsroi_bin(const DpsroiRoi<T>& g, index_t r,
                                               const DpsroiColumn& col, const T* trans,
                                               T trans_std, const DpsroiDims& d) {
  DpsroiBin<T> b;
  b.wstart = static_cast<T>(col.pw) * g.bin_w + g.start_w;
  b.hstart = static_cast<T>(col.ph) * g.bin_h + g.start_h;
  b.trans_index = 0;
  if (!d.no_trans) {
    b.trans_index = r * d.num_classes * 2 * d.part * d.part + col.trans_slot;
    const T trans_x = trans[b.trans_index] * trans_std;
    const T trans_y = trans[b.trans_index + d.part * d.part] * trans_std;
    b.wstart += trans_x * g.width;
    b.hstart += trans_y * g.height;
  }
  return b;
}

// One coordinate of a sample point on an axis of `size` pixels. A point more than half a pixel
// outside the map is not counted; a counted one is clamped onto the map. Written as a positive
// range test so NaN (and +-inf) points are not counted, and clamped before the conversion, so
// lo / hi are always in [0, size - 1]. hi = ceil (not floor + 1), as in contrib: at whole-pixel
// coordinates lo == hi, which makes the offset gradient there 0 - also at the clamped border,
// where the true derivative is 0. Requires size >= 1 (the drivers skip empty maps).
template <typename T>
struct AxisSample {
  index_t lo, hi;
  T frac;  // v - lo: weight of hi
};

template <typename T>
DCN_HOST_DEVICE_INLINE bool axis_sample(T v, index_t size, AxisSample<T>* s) {
  if (!(v >= T(-0.5) && v <= static_cast<T>(size) - T(0.5))) return false;
  const T vmax = static_cast<T>(size - 1);
  v = v > T(0) ? (v < vmax ? v : vmax) : T(0);
  s->lo = static_cast<index_t>(v);  // v >= 0: truncation is floor
  s->hi = static_cast<T>(s->lo) < v ? s->lo + 1 : s->lo;
  s->frac = v - static_cast<T>(s->lo);
  return true;
}

// A sample (h, w) counts iff both coordinates do, so the counted samples of a bin are the
// product of its counted rows and columns (count = rows * columns) and the bilinear sum
// separates into per-axis weights: sum = sum_y wy[y] * sum_x wx[x] * plane[y, x], where wx[x]
// adds up (1 - frac) at lo and frac at hi over the counted columns (wy likewise). The weights
// depend on the bin only, not on the score map, so they are built once per bin and reused for
// every output channel that shares the bin's offset; and a window of a few pixels replaces the
// 4 * sample_per_part^2 corner reads of sampling point by point. With sample_per_part 4 and
// 7x7 bins, rois up to about 50 feature-map pixels (800 image pixels at stride 16) fit.
constexpr int kWindow = 8;

template <typename T>
struct AxisWindow {
  index_t start;  // first pixel of the window
  int n;          // pixels in use: [start, start + n)
  index_t count;  // counted samples on this axis
  T w[kWindow];   // summed interpolation weights per pixel
  T dw[kWindow];  // their derivative w.r.t. the sample coordinate (-1 at lo, +1 at hi; so 0
                  // where lo == hi, matching contrib's ceil rule)
};

// Window of the samples first + i * step, i < samples, on an axis of `size` pixels (dw only
// with kGrad). Returns false when the counted samples spread over more than kWindow pixels (wide
// bins: more than about 2 pixels between samples); the caller then samples point by point.
template <bool kGrad, typename T>
DCN_HOST_DEVICE_INLINE bool axis_window(T first, T step, index_t samples, index_t size,
                                        AxisWindow<T>* a) {
  a->start = 0;
  a->n = 0;
  a->count = 0;
  index_t last = -1;  // hi of the last counted sample, relative to start
  for (int k = 0; k < kWindow; ++k) a->w[k] = a->dw[k] = T(0);
  for (index_t i = 0; i < samples; ++i) {
    AxisSample<T> s;
    if (!axis_sample(first + static_cast<T>(i) * step, size, &s)) continue;
    if (a->count == 0) a->start = s.lo;
    ++a->count;
    const index_t lo = s.lo - a->start;
    last = s.hi - a->start;
    // Samples increase with i (step > 0), so 0 <= lo <= hi; the unsigned test also keeps any
    // other order from writing outside the window.
    if (static_cast<uint64_t>(last) >= static_cast<uint64_t>(kWindow) ||
        static_cast<uint64_t>(lo) >= static_cast<uint64_t>(kWindow)) {
      return false;
    }
    a->w[lo] += 1 - s.frac;
    a->w[last] += s.frac;
    if (kGrad) {
      a->dw[lo] -= T(1);
      a->dw[last] += T(1);
    }
  }
  a->n = static_cast<int>(last + 1);
  return true;
}

// Sampling weights of one bin; `windowed` is false when a window overflowed.
template <typename T>
struct DpsroiTaps {
  AxisWindow<T> y, x;
  bool windowed;
};

// kGrad: also the weight derivatives (for the backward).
template <bool kGrad, typename T>
DCN_HOST_DEVICE_INLINE void dpsroi_taps(const DpsroiRoi<T>& g, const DpsroiBin<T>& b,
                                        const DpsroiDims& d, DpsroiTaps<T>* t) {
  const bool rows = axis_window<kGrad>(b.hstart, g.sub_h, d.sample_per_part, d.height, &t->y);
  const bool cols = axis_window<kGrad>(b.wstart, g.sub_w, d.sample_per_part, d.width, &t->x);
  t->windowed = rows && cols;
}

// Mean of the counted samples of bin b in `plane` (its H x W score map), 0 if none counted.
// t = dpsroi_taps<false>(g, b, d).
template <typename T>
DCN_HOST_DEVICE_INLINE T dpsroi_fwd_elem(const T* plane, const DpsroiRoi<T>& g,
                                         const DpsroiBin<T>& b, const DpsroiTaps<T>& t,
                                         const DpsroiDims& d) {
  if (t.windowed) {
    T sum = 0;
    for (int a = 0; a < t.y.n; ++a) {
      const T* row = plane + (t.y.start + a) * d.width + t.x.start;
      T rx = 0;
      for (int k = 0; k < t.x.n; ++k) rx += t.x.w[k] * row[k];
      sum += t.y.w[a] * rx;
    }
    const index_t count = t.y.count * t.x.count;
    return count == 0 ? T(0) : sum / static_cast<T>(count);
  }
  // Point by point, row-separated: sum over counted rows of (1 - fy) * R(lo) + fy * R(hi).
  T sum = 0;
  index_t rows = 0, cols = 0;
  for (index_t ih = 0; ih < d.sample_per_part; ++ih) {
    AxisSample<T> y;
    if (!axis_sample(b.hstart + static_cast<T>(ih) * g.sub_h, d.height, &y)) continue;
    ++rows;
    const T* row0 = plane + y.lo * d.width;
    const T* row1 = plane + y.hi * d.width;
    T r0 = 0, r1 = 0;
    cols = 0;
    for (index_t iw = 0; iw < d.sample_per_part; ++iw) {
      AxisSample<T> x;
      if (!axis_sample(b.wstart + static_cast<T>(iw) * g.sub_w, d.width, &x)) continue;
      ++cols;
      r0 += (1 - x.frac) * row0[x.lo] + x.frac * row0[x.hi];
      r1 += (1 - x.frac) * row1[x.lo] + x.frac * row1[x.hi];
    }
    sum += (1 - y.frac) * r0 + y.frac * r1;
  }
  const index_t count = rows * cols;
  return count == 0 ? T(0) : sum / static_cast<T>(count);
}

// Backward of one bin: scatters top_grad / count bilinearly into `grad_plane` through `add` and,
// unless no_trans, returns the gradient of this bin w.r.t. its (x, y) trans entries in *grad_tx,
// *grad_ty (already multiplied by trans_std * roi size; 0 when nothing is counted):
// d sum / d w = sum_y wy[y] * sum_x dwx[x] * plane[y, x], d sum / d h likewise with dwy, wx.
// t = dpsroi_taps<true>(g, b, d).
template <typename T, typename Add>
DCN_HOST_DEVICE_INLINE void dpsroi_bwd_elem(const T* plane, T* grad_plane, const DpsroiRoi<T>& g,
                                            const DpsroiBin<T>& b, const DpsroiTaps<T>& t,
                                            const DpsroiDims& d, T top_grad, T trans_std, Add add,
                                            T* grad_tx, T* grad_ty) {
  *grad_tx = T(0);
  *grad_ty = T(0);
  T sum_dw = 0, sum_dh = 0;
  T diff;
  if (t.windowed) {
    if (t.y.count * t.x.count == 0) return;
    diff = top_grad / static_cast<T>(t.y.count * t.x.count);
    for (int a = 0; a < t.y.n; ++a) {
      const T gy = t.y.w[a] * diff;
      T* grow = grad_plane + (t.y.start + a) * d.width + t.x.start;
      for (int k = 0; k < t.x.n; ++k) add(grow + k, gy * t.x.w[k]);
      if (d.no_trans) continue;
      const T* row = plane + (t.y.start + a) * d.width + t.x.start;
      T rx = 0, drx = 0;
      for (int k = 0; k < t.x.n; ++k) {
        rx += t.x.w[k] * row[k];
        drx += t.x.dw[k] * row[k];
      }
      sum_dw += t.y.w[a] * drx;
      sum_dh += t.y.dw[a] * rx;
    }
  } else {
    // Point by point (see dpsroi_fwd_elem).
    index_t rows = 0, cols = 0;
    for (index_t i = 0; i < d.sample_per_part; ++i) {
      AxisSample<T> s;
      rows += axis_sample(b.hstart + static_cast<T>(i) * g.sub_h, d.height, &s);
      cols += axis_sample(b.wstart + static_cast<T>(i) * g.sub_w, d.width, &s);
    }
    if (rows * cols == 0) return;
    diff = top_grad / static_cast<T>(rows * cols);
    for (index_t ih = 0; ih < d.sample_per_part; ++ih) {
      AxisSample<T> y;
      if (!axis_sample(b.hstart + static_cast<T>(ih) * g.sub_h, d.height, &y)) continue;
      const T g0 = (1 - y.frac) * diff;
      const T g1 = y.frac * diff;
      T* grow0 = grad_plane + y.lo * d.width;
      T* grow1 = grad_plane + y.hi * d.width;
      const T* row0 = plane + y.lo * d.width;
      const T* row1 = plane + y.hi * d.width;
      T r0 = 0, r1 = 0, d0 = 0, d1 = 0;
      for (index_t iw = 0; iw < d.sample_per_part; ++iw) {
        AxisSample<T> x;
        if (!axis_sample(b.wstart + static_cast<T>(iw) * g.sub_w, d.width, &x)) continue;
        add(grow0 + x.lo, (1 - x.frac) * g0);
        add(grow0 + x.hi, x.frac * g0);
        add(grow1 + x.lo, (1 - x.frac) * g1);
        add(grow1 + x.hi, x.frac * g1);
        if (d.no_trans) continue;
        const T u00 = row0[x.lo], u01 = row0[x.hi], u10 = row1[x.lo], u11 = row1[x.hi];
        r0 += (1 - x.frac) * u00 + x.frac * u01;
        r1 += (1 - x.frac) * u10 + x.frac * u11;
        d0 += u01 - u00;
        d1 += u11 - u10;
      }
      sum_dw += (1 - y.frac) * d0 + y.frac * d1;
      sum_dh += r1 - r0;
    }
  }
  if (d.no_trans) return;
  *grad_tx = sum_dw * trans_std * diff * g.width;
  *grad_ty = sum_dh * trans_std * diff * g.height;
}

}  // namespace dcn
