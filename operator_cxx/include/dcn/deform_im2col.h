// Deformable im2col / col2im / col2im_coord, one element at a time, shared by the CPU loops
// (cpu/deform_conv.cc) and the CUDA kernels (cuda/deform_conv.cu).
//
// Deformable convolution (Dai et al., "Deformable Convolutional Networks", ICCV 2017) and its
// modulated form (Zhu et al., "Deformable ConvNets v2", CVPR 2019):
//   out[n, f, ho, wo] = bias[f] + sum_{c in group(f), i, j} weight[f, c, i, j] * m * x(h, w)
//   h = ho*sh - ph + i*dh + dy,  w = wo*sw - pw + j*dw + dx
// where (dy, dx) = offset[n, g*2*kh*kw + 2*(i*kw+j) + {0, 1}, ho, wo] for the deformable group g
// of channel c (offset layout [y0, x0, y1, x1, ...] per group), m = mask[n, g*kh*kw + i*kw + j,
// ho, wo] (1 without a mask), and x(h, w) is the bilinear sample of sampling.h.
//
// Layouts of one chunk: images [n0, n0 + S), output rows [r0, r0 + rows), P = rows * Wo
// positions per image, p = (ho - r0) * Wo + wo, K = kh * kw taps, tap = i * kw + j,
// Cg = C / num_group channels per weight group, cc = c - gi * Cg:
//   padded   (S, Hp * Wp, C)  zero-padded channels-last copy of the chunk's images (sampling.h)
//   col      (S * P, C * K)   row s*P + p: the transpose of the classic im2col buffer. Within
//                             weight group gi (columns gi*K*Cg ...) the channels come in blocks
//                             of kColBlock, each block's columns ordered (tap, channel): a
//                             sample's channels are contiguous, and so are all taps of a block
//                             (what one CPU thread reads in col2im)
//   weight'  (F, K * Cg)      weight[f, cc, tap] permuted to the same column order, so that
//                             out[n, group gi] (Fg x P) = weight'[gi] . col[rows of n, gi]^T
//   samples  [s][p][tap][g]   the CPU's table of Sample (one per group, tap and position)
#pragma once

#include "dcn/common.h"
#include "dcn/sampling.h"

namespace dcn {

template <typename T>
struct DeformArgs {
  const T* padded;  // (S, Hp * Wp, C): the chunk's images, zero-padded, channels last
  const T* offset;  // (N, dg * 2 * kh * kw, Ho, Wo), whole batch
  const T* mask;    // (N, dg * kh * kw, Ho, Wo), or nullptr for the unmodulated op
  int C, H, W, Ho, Wo;
  int kh, kw, sh, sw, ph, pw, dh, dw;
  int dg;        // deformable groups
  int groups;    // weight groups
  index_t n0;    // first image of the chunk
  int S;         // images in the chunk
  int r0, rows;  // output rows of the chunk

  DCN_HOST_DEVICE_INLINE int taps() const { return kh * kw; }
  DCN_HOST_DEVICE_INLINE int Wp() const { return padded_width(W); }
  DCN_HOST_DEVICE_INLINE index_t px() const { return C; }  // pixel stride of a padded image
  DCN_HOST_DEVICE_INLINE index_t row() const { return static_cast<index_t>(Wp()) * C; }
  DCN_HOST_DEVICE_INLINE index_t image_size() const {
    return static_cast<index_t>(padded_height(H)) * Wp() * C;
  }
  DCN_HOST_DEVICE_INLINE index_t P() const { return static_cast<index_t>(rows) * Wo; }
  DCN_HOST_DEVICE_INLINE index_t SP() const { return S * P(); }
  DCN_HOST_DEVICE_INLINE int channels_per_dg() const { return C / dg; }
  DCN_HOST_DEVICE_INLINE int Cg() const { return C / groups; }
  DCN_HOST_DEVICE_INLINE index_t CK() const { return static_cast<index_t>(C) * taps(); }
  DCN_HOST_DEVICE_INLINE index_t out_plane() const { return static_cast<index_t>(Ho) * Wo; }
  DCN_HOST_DEVICE_INLINE index_t col_size() const { return SP() * CK(); }
  DCN_HOST_DEVICE_INLINE index_t sample_count() const {
    return SP() * taps() * static_cast<index_t>(dg);
  }
};

constexpr int kColBlock = 64;  // channels per column block (see the layout above)

// Column of (channel cc of a weight group, tap) within the group's K*Cg columns.
DCN_HOST_DEVICE_INLINE index_t group_column(int cc, int tap, int Cg, int K) {
  const int base = cc / kColBlock * kColBlock;
  const int size = Cg - base < kColBlock ? Cg - base : kColBlock;
  return static_cast<index_t>(base) * K + static_cast<index_t>(tap) * size + (cc - base);
}

// Column of (channel c, tap) in a row of the column buffer.
template <typename T>
DCN_HOST_DEVICE_INLINE index_t col_column(const DeformArgs<T>& a, int c, int tap) {
  const int Cg = a.Cg(), gi = c / Cg;
  return static_cast<index_t>(gi) * a.taps() * Cg + group_column(c - gi * Cg, tap, Cg, a.taps());
}

// Sampling location (h, w) and mask m of kernel tap (i, j) (tap = i*kw + j) at output (ho, wo)
// of batch image n, deformable group g.
template <typename T>
DCN_HOST_DEVICE_INLINE void sample_location(const DeformArgs<T>& a, int g, int i, int j, index_t n,
                                            int ho, int wo, T* h, T* w, T* m) {
  const int tap = i * a.kw + j;
  const index_t pos = static_cast<index_t>(ho) * a.Wo + wo;
  const index_t plane = a.out_plane();
  const T* off = a.offset + ((n * a.dg + g) * 2 * a.taps() + 2 * tap) * plane + pos;
  *h = static_cast<T>(static_cast<index_t>(ho) * a.sh - a.ph + static_cast<index_t>(i) * a.dh) +
       off[0];
  *w = static_cast<T>(static_cast<index_t>(wo) * a.sw - a.pw + static_cast<index_t>(j) * a.dw) +
       off[plane];
  *m = a.mask ? a.mask[((n * a.dg + g) * a.taps() + tap) * plane + pos] : T(1);
}

// Bilinear corners of one sample, mask folded into the weights. The CPU computes these once per
// (image, position, tap, group) into a table and reuses them for every channel of the group.
template <typename T>
DCN_HOST_DEVICE_INLINE Sample<T> sample_at(const DeformArgs<T>& a, int g, int i, int j, index_t n,
                                           int ho, int wo) {
  T h, w, m;
  sample_location(a, g, i, j, n, ho, wo, &h, &w, &m);
  return bilinear_sample(h, w, a.H, a.W, m);
}

// The same for tap `tap` at position p of chunk image s.
template <typename T>
DCN_HOST_DEVICE_INLINE Sample<T> sample_at(const DeformArgs<T>& a, int g, int tap, int s,
                                           index_t p) {
  return sample_at(a, g, tap / a.kw, tap % a.kw, a.n0 + s, a.r0 + static_cast<int>(p / a.Wo),
                   static_cast<int>(p % a.Wo));
}

// Splits a sample index e in [0, sample_count) laid out as [s][p][tap][g].
template <typename T>
DCN_HOST_DEVICE_INLINE void split_sample(const DeformArgs<T>& a, index_t e, int* g, int* tap,
                                         int* s, index_t* p) {
  *g = static_cast<int>(e % a.dg);
  e /= a.dg;
  *tap = static_cast<int>(e % a.taps());
  e /= a.taps();
  *p = e % a.P();
  *s = static_cast<int>(e / a.P());
}

// Splits a column-buffer index i in [0, col_size) (layout above).
template <typename T>
DCN_HOST_DEVICE_INLINE void split_col(const DeformArgs<T>& a, index_t i, int* c, int* tap, int* s,
                                      index_t* p) {
  const index_t r = i / a.CK(), j = i % a.CK();
  const int Cg = a.Cg(), KCg = a.taps() * Cg;
  *s = static_cast<int>(r / a.P());
  *p = r % a.P();
  const int gi = static_cast<int>(j / KCg), t = static_cast<int>(j % KCg);
  const int block = t / (a.taps() * kColBlock), base = block * kColBlock;  // earlier blocks full
  const int size = Cg - base < kColBlock ? Cg - base : kColBlock;
  const int rem = t - base * a.taps();
  *tap = rem / size;
  *c = gi * Cg + base + rem % size;
}

// Padded-image element of pixel i of the chunk (i over S*C*H*W in (s, c, y, x) order).
template <typename T>
DCN_HOST_DEVICE_INLINE index_t padded_offset(const DeformArgs<T>& a, index_t i) {
  const index_t x = i % a.W, y = (i / a.W) % a.H, c = (i / (static_cast<index_t>(a.H) * a.W)) % a.C;
  const index_t s = i / (static_cast<index_t>(a.C) * a.H * a.W);
  return s * a.image_size() +
         static_cast<index_t>(padded_index(static_cast<int>(y), static_cast<int>(x), a.Wp())) *
             a.C +
         c;
}

// padded := pixel i of the chunk's images in data (N, C, H, W). The padding is zeroed apart.
template <typename T>
DCN_HOST_DEVICE_INLINE void pad_elem(index_t i, const DeformArgs<T>& a, const T* data, T* padded) {
  padded[padded_offset(a, i)] = data[a.n0 * a.C * a.H * a.W + i];
}

// grad_data pixel i of the chunk := the padded gradient there.
template <typename T>
DCN_HOST_DEVICE_INLINE void unpad_elem(index_t i, const DeformArgs<T>& a, const T* padded,
                                       T* grad_data) {
  grad_data[a.n0 * a.C * a.H * a.W + i] = padded[padded_offset(a, i)];
}

// Index in weight' (F, K * Cg, column order above) of element i of weight (F, Cg, K).
DCN_HOST_DEVICE_INLINE index_t permuted_weight_index(index_t i, int Cg, int K) {
  const int tap = static_cast<int>(i % K), cc = static_cast<int>((i / K) % Cg);
  const index_t f = i / (static_cast<index_t>(K) * Cg);
  return f * K * Cg + group_column(cc, tap, Cg, K);
}

// col[i] for column-buffer index i.
template <typename T>
DCN_HOST_DEVICE_INLINE T im2col_elem(index_t i, const DeformArgs<T>& a) {
  int c, tap, s;
  index_t p;
  split_col(a, i, &c, &tap, &s, &p);
  const Sample<T> k = sample_at(a, c / a.channels_per_dg(), tap, s, p);
  return gather(k, a.padded + s * a.image_size() + c, a.px(), a.row());
}

// Scatters gcol[i] into the padded data gradient (layout of `padded`) through the sample.
template <typename T, typename Add>
DCN_HOST_DEVICE_INLINE void col2im_elem(index_t i, const DeformArgs<T>& a, const T* gcol,
                                        T* grad_padded, const Add& add) {
  int c, tap, s;
  index_t p;
  split_col(a, i, &c, &tap, &s, &p);
  const Sample<T> k = sample_at(a, c / a.channels_per_dg(), tap, s, p);
  scatter(k, gcol[i], grad_padded + s * a.image_size() + c, a.px(), a.row(), add);
}

// Offset / mask gradients of one sample, in steps that the CPU vectorizes over channels:
//   d/d dy = m * sum_c gcol * dx(h,w)/dh,   d/d dx = m * sum_c gcol * dx(h,w)/dw,
//   d/d m  = sum_c gcol * x(h, w).
template <typename T>
DCN_HOST_DEVICE_INLINE CoordSample<T> coord_sample_at(const DeformArgs<T>& a, int g, int i, int j,
                                                      index_t n, int ho, int wo) {
  T h, w, m;
  sample_location(a, g, i, j, n, ho, wo, &h, &w, &m);
  return coord_sample(h, w, m, a.H, a.W);
}

// Writes (=) the gradients of one sample from the channel sums (acc_h, acc_w, acc_m); exact
// zeros outside the band, even for a NaN mask.
template <typename T>
DCN_HOST_DEVICE_INLINE void coord_write(const DeformArgs<T>& a, const CoordSample<T>& cs, T acc_h,
                                        T acc_w, T acc_m, int g, int tap, int s, index_t p,
                                        T* grad_offset, T* grad_mask) {
  const int ho = a.r0 + static_cast<int>(p / a.Wo), wo = static_cast<int>(p % a.Wo);
  const index_t n = a.n0 + s;
  const index_t plane = a.out_plane();
  const index_t pos = static_cast<index_t>(ho) * a.Wo + wo;
  T* go = grad_offset + ((n * a.dg + g) * 2 * a.taps() + 2 * tap) * plane + pos;
  go[0] = cs.valid ? cs.m * acc_h : T(0);
  go[plane] = cs.valid ? cs.m * acc_w : T(0);
  if (grad_mask) {
    grad_mask[((n * a.dg + g) * a.taps() + tap) * plane + pos] = cs.valid ? acc_m : T(0);
  }
}

// All steps for sample e in [0, sample_count): one writer per sample, race free.
template <typename T>
DCN_HOST_DEVICE_INLINE void col2im_coord_elem(index_t e, const DeformArgs<T>& a, const T* gcol,
                                              T* grad_offset, T* grad_mask) {
  int g, tap, s;
  index_t p;
  split_sample(a, e, &g, &tap, &s, &p);
  const CoordSample<T> cs =
      coord_sample_at(a, g, tap / a.kw, tap % a.kw, a.n0 + s, a.r0 + static_cast<int>(p / a.Wo),
                      static_cast<int>(p % a.Wo));
  T acc_h = T(0), acc_w = T(0), acc_m = T(0);
  if (cs.valid) {
    const int cpg = a.channels_per_dg();
    const T* image = a.padded + s * a.image_size();
    const T* grow = gcol + (s * a.P() + p) * a.CK();
    for (int c = g * cpg; c < (g + 1) * cpg; ++c) {
      T dvh, dvw, v;
      coord_terms(cs, image + c, a.px(), a.row(), &dvh, &dvw, &v);
      const T gv = grow[col_column(a, c, tap)];
      acc_h += gv * dvh;
      acc_w += gv * dvw;
      acc_m += gv * v;
    }
  }
  coord_write(a, cs, acc_h, acc_w, acc_m, g, tap, s, p, grad_offset, grad_mask);
}

}  // namespace dcn
