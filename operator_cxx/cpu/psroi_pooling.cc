// CPU drivers of PSROIPooling and DeformablePSROIPooling: OpenMP loops around the per-bin math
// of include/dcn/psroi.h (layouts there).
//
// Loop order. Output column j = (ctop, ph, pw) reads exactly one score map c(j) of the roi's
// image. Threads take blocks of score maps (that stay in cache) and run all rois over them,
// instead of running each roi over all maps (which would stream the whole feature map through
// the cache once per roi). PSROIPooling blocks 16 consecutive maps; DeformablePSROIPooling blocks
// the maps of (a chunk of one trans class's channels, one score-map cell gh, gw), so that a bin's
// sampling weights, which depend on the roi, the bin and the class's offset but not on the map,
// are built once and reused for the whole chunk.
//
// Determinism. In the backward, the thread that owns a block of score maps is the only writer of
// those maps' gradient planes (in every image), so data gradients need no atomics and are summed
// in a fixed order. The trans gradient of column (r, j) goes to a scratch buffer; a second pass,
// parallel over (roi, class), sums the buffer into trans_grad in a fixed order. Results do not
// depend on the number of threads.
//
// Threads: OpenMP's default team, i.e. what MXNet sets for its own operators (on x86 MXNet halves
// the core count unless OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS is set).
#include <algorithm>
#include <memory>
#include <vector>

#include "dcn/psroi_launchers.h"

namespace dcn {
namespace cpu {
namespace {

// Score maps per work block: 16 maps of 38x63 floats stay in L2, 3 in L1.
constexpr index_t kMapsPerBlock = 16;    // PSROIPooling
constexpr index_t kDpsroiBlockMaps = 3;  // DeformablePSROIPooling: output channels per chunk

struct PlainAdd {
  template <typename T>
  void operator()(T* p, T v) const {
    *p += v;
  }
};

// Output columns grouped by the score map they read (CSR: columns of map c are
// cols[ptr[c] .. ptr[c + 1]), in increasing order); maps no column reads (pooled < group) have
// none.
struct ColumnsByMap {
  std::vector<index_t> ptr, cols;
};

ColumnsByMap columns_by_map(const std::vector<index_t>& map_of, index_t channels) {
  const index_t num_cols = static_cast<index_t>(map_of.size());
  ColumnsByMap m;
  m.ptr.assign(channels + 1, 0);
  m.cols.resize(num_cols);
  for (index_t j = 0; j < num_cols; ++j) ++m.ptr[map_of[j] + 1];
  for (index_t c = 0; c < channels; ++c) m.ptr[c + 1] += m.ptr[c];
  std::vector<index_t> next(m.ptr.begin(), m.ptr.end() - 1);
  for (index_t j = 0; j < num_cols; ++j) m.cols[next[map_of[j]]++] = j;
  return m;
}

template <typename T>
ColumnsByMap psroi_columns_by_map(const PsroiDims& d) {
  std::vector<index_t> map_of(d.output_dim * d.pooled * d.pooled);
  for (index_t j = 0; j < static_cast<index_t>(map_of.size()); ++j) {
    map_of[j] = ps_channel<T>(j, d.pooled, d.group);
  }
  return columns_by_map(map_of, d.channels);
}

template <typename T>
std::vector<DpsroiColumn> dpsroi_columns(const DpsroiDims& d) {
  std::vector<DpsroiColumn> cols(d.output_dim * d.pooled * d.pooled);
  for (index_t j = 0; j < static_cast<index_t>(cols.size()); ++j) cols[j] = dpsroi_column<T>(j, d);
  return cols;
}

index_t num_blocks(index_t channels) { return (channels + kMapsPerBlock - 1) / kMapsPerBlock; }

}  // namespace

template <typename T>
void psroi_forward(const PsroiDims& d, T spatial_scale, index_t num_rois, const T* data,
                       const T* rois, T* out) {
  const index_t bins = d.pooled * d.pooled;
  const index_t num_cols = d.output_dim * bins;
  const index_t plane = d.height * d.width;
  std::vector<index_t> batch(num_rois);
  std::vector<PixelBin> bin_table(num_rois * bins);
  for (index_t r = 0; r < num_rois; ++r) {
    const PsroiRoi<T> g = psroi_roi(rois + r * 5, d, spatial_scale);
    batch[r] = g.batch;
    for (index_t k = 0; k < bins; ++k) {
      bin_table[r * bins + k] = psroi_bin(g, k / d.pooled, k % d.pooled, d);
    }
  }
  const ColumnsByMap m = psroi_columns_by_map<T>(d);
#pragma omp parallel for schedule(dynamic, 1)
  for (index_t blk = 0; blk < num_blocks(d.channels); ++blk) {
    const index_t c0 = blk * kMapsPerBlock;
    const index_t c1 = std::min(c0 + kMapsPerBlock, d.channels);
    for (index_t r = 0; r < num_rois; ++r) {
      T* out_r = out + r * num_cols;
      if (batch[r] < 0) {
        for (index_t k = m.ptr[c0]; k < m.ptr[c1]; ++k) out_r[m.cols[k]] = T(0);
        continue;
      }
      const T* img = data + batch[r] * d.channels * plane;
      for (index_t c = c0; c < c1; ++c) {
        for (index_t k = m.ptr[c]; k < m.ptr[c + 1]; ++k) {
          const index_t j = m.cols[k];
          out_r[j] = psroi_fwd_elem(img + c * plane, d.width, bin_table[r * bins + j % bins]);
        }
      }
    }
  }
}

template <typename T>
void psroi_backward(const PsroiDims& d, T spatial_scale, index_t num_rois, const T* top_grad,
                        const T* rois, T* data_grad) {
  const index_t bins = d.pooled * d.pooled;
  const index_t num_cols = d.output_dim * bins;
  const index_t plane = d.height * d.width;
  std::vector<index_t> batch(num_rois);
  std::vector<PixelBin> bin_table(num_rois * bins);
  for (index_t r = 0; r < num_rois; ++r) {
    const PsroiRoi<T> g = psroi_roi(rois + r * 5, d, spatial_scale);
    batch[r] = g.batch;
    for (index_t k = 0; k < bins; ++k) {
      bin_table[r * bins + k] = psroi_bin(g, k / d.pooled, k % d.pooled, d);
    }
  }
  const ColumnsByMap m = psroi_columns_by_map<T>(d);
#pragma omp parallel for schedule(dynamic, 1)
  for (index_t blk = 0; blk < num_blocks(d.channels); ++blk) {
    const index_t c0 = blk * kMapsPerBlock;
    const index_t c1 = std::min(c0 + kMapsPerBlock, d.channels);
    for (index_t n = 0; n < d.num_images; ++n) {
      T* maps = data_grad + n * d.channels * plane;
      std::fill(maps + c0 * plane, maps + c1 * plane, T(0));
    }
    for (index_t r = 0; r < num_rois; ++r) {
      if (batch[r] < 0) continue;
      const T* top_r = top_grad + r * num_cols;
      T* img_grad = data_grad + batch[r] * d.channels * plane;
      for (index_t c = c0; c < c1; ++c) {
        for (index_t k = m.ptr[c]; k < m.ptr[c + 1]; ++k) {
          const index_t j = m.cols[k];
          psroi_bwd_elem(img_grad + c * plane, d.width, bin_table[r * bins + j % bins], top_r[j],
                         PlainAdd());
        }
      }
    }
  }
}

// Work blocks of DeformablePSROIPooling: (trans class, chunk of its output channels ctop, score
// map row gh, score map column gw). A block owns the score maps (ctop * group + gh) * group + gw of
// its channels: the blocks partition the maps, and every bin (ph, pw) with gh(ph) = gh and
// gw(pw) = gw of those channels reads one of them. The chunk's few maps stay in L1 while all rois
// run over them, and all channels of a chunk share each bin's offset, so each bin's sampling
// weights are built once per roi and reused `chunk` times.
struct DpsroiBlocks {
  index_t chunk, chunks_per_class, group;
  std::vector<index_t> p_ptr, p_list;  // bin rows / columns p with g(p) == g: p_list[p_ptr[g]..]

  index_t count(const DpsroiDims& d) const {
    return d.num_classes * chunks_per_class * group * group;
  }
};

template <typename T>
DpsroiBlocks dpsroi_blocks(const DpsroiDims& d) {
  DpsroiBlocks b;
  b.group = d.group;
  b.chunk = std::min(d.channels_each_class, kDpsroiBlockMaps);
  b.chunks_per_class = (d.channels_each_class + b.chunk - 1) / b.chunk;
  b.p_ptr.assign(d.group + 1, 0);
  std::vector<index_t> g_of(d.pooled);
  for (index_t p = 0; p < d.pooled; ++p) {
    g_of[p] = ps_group_index<T>(p, d.group, d.pooled);
    ++b.p_ptr[g_of[p] + 1];
  }
  for (index_t g = 0; g < d.group; ++g) b.p_ptr[g + 1] += b.p_ptr[g];
  b.p_list.resize(d.pooled);
  std::vector<index_t> next(b.p_ptr.begin(), b.p_ptr.end() - 1);
  for (index_t p = 0; p < d.pooled; ++p) b.p_list[next[g_of[p]]++] = p;
  return b;
}

struct DpsroiBlock {
  index_t ctop0, ctop1, gh, gw;
};

DpsroiBlock decode_block(const DpsroiBlocks& b, const DpsroiDims& d, index_t blk) {
  DpsroiBlock k;
  k.gw = blk % b.group;
  k.gh = (blk / b.group) % b.group;
  const index_t cm = blk / (b.group * b.group);
  const index_t cls = cm / b.chunks_per_class;
  k.ctop0 = cls * d.channels_each_class + (cm % b.chunks_per_class) * b.chunk;
  k.ctop1 = std::min(k.ctop0 + b.chunk, (cls + 1) * d.channels_each_class);
  return k;
}

template <typename T>
void dpsroi_forward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                    const T* data, const T* rois, const T* trans, T* out) {
  const index_t bins = d.pooled * d.pooled;
  const index_t num_cols = d.output_dim * bins;
  const index_t plane = d.height * d.width;
  if (plane == 0) {  // no sample is ever counted on an empty map
    std::fill(out, out + num_rois * num_cols, T(0));
    return;
  }
  std::vector<DpsroiRoi<T>> geom(num_rois);
  for (index_t r = 0; r < num_rois; ++r) geom[r] = dpsroi_roi(rois + r * 5, d, spatial_scale);
  const std::vector<DpsroiColumn> cols = dpsroi_columns<T>(d);
  const DpsroiBlocks blocks = dpsroi_blocks<T>(d);
#pragma omp parallel for schedule(dynamic, 1)
  for (index_t blk = 0; blk < blocks.count(d); ++blk) {
    const DpsroiBlock k = decode_block(blocks, d, blk);
    for (index_t r = 0; r < num_rois; ++r) {
      const DpsroiRoi<T>& g = geom[r];
      T* out_r = out + r * num_cols;
      const T* img = data + (g.batch < 0 ? 0 : g.batch) * d.channels * plane;
      for (index_t qh = blocks.p_ptr[k.gh]; qh < blocks.p_ptr[k.gh + 1]; ++qh) {
        for (index_t qw = blocks.p_ptr[k.gw]; qw < blocks.p_ptr[k.gw + 1]; ++qw) {
          const index_t j0 =
              (k.ctop0 * d.pooled + blocks.p_list[qh]) * d.pooled + blocks.p_list[qw];
          const index_t j1 = j0 + (k.ctop1 - k.ctop0) * bins;
          if (g.batch < 0) {
            for (index_t j = j0; j < j1; j += bins) out_r[j] = T(0);
            continue;
          }
          const DpsroiBin<T> b = dpsroi_bin(g, r, cols[j0], trans, trans_std, d);
          DpsroiTaps<T> taps;
          dpsroi_taps<false>(g, b, d, &taps);
          for (index_t j = j0; j < j1; j += bins) {
            out_r[j] = dpsroi_fwd_elem(img + cols[j].channel * plane, g, b, taps, d);
          }
        }
      }
    }
  }
}

template <typename T>
void dpsroi_backward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                     const T* top_grad, const T* data, const T* rois, const T* trans, T* data_grad,
                     T* trans_grad) {
  const index_t bins = d.pooled * d.pooled;
  const index_t num_cols = d.output_dim * bins;
  const index_t plane = d.height * d.width;
  const index_t parts = d.part * d.part;
  const index_t trans_per_roi = d.num_classes * 2 * parts;
  if (plane == 0) {
    if (!d.no_trans) std::fill(trans_grad, trans_grad + num_rois * trans_per_roi, T(0));
    return;
  }
  std::vector<DpsroiRoi<T>> geom(num_rois);
  for (index_t r = 0; r < num_rois; ++r) geom[r] = dpsroi_roi(rois + r * 5, d, spatial_scale);
  const std::vector<DpsroiColumn> cols = dpsroi_columns<T>(d);
  const DpsroiBlocks blocks = dpsroi_blocks<T>(d);
  // (x, y) trans gradient of every (roi, column), each written by exactly one thread.
  std::unique_ptr<T[]> col_tgrad(d.no_trans ? nullptr : new T[num_rois * num_cols * 2]);

#pragma omp parallel for schedule(dynamic, 1)
  for (index_t blk = 0; blk < blocks.count(d); ++blk) {
    const DpsroiBlock k = decode_block(blocks, d, blk);
    for (index_t n = 0; n < d.num_images; ++n) {
      for (index_t ctop = k.ctop0; ctop < k.ctop1; ++ctop) {
        T* map = data_grad + (n * d.channels + (ctop * d.group + k.gh) * d.group + k.gw) * plane;
        std::fill(map, map + plane, T(0));
      }
    }
    for (index_t r = 0; r < num_rois; ++r) {
      const DpsroiRoi<T>& g = geom[r];
      const T* top_r = top_grad + r * num_cols;
      T* tgrad_r = d.no_trans ? nullptr : col_tgrad.get() + r * num_cols * 2;
      const index_t offset = (g.batch < 0 ? 0 : g.batch) * d.channels * plane;
      for (index_t qh = blocks.p_ptr[k.gh]; qh < blocks.p_ptr[k.gh + 1]; ++qh) {
        for (index_t qw = blocks.p_ptr[k.gw]; qw < blocks.p_ptr[k.gw + 1]; ++qw) {
          const index_t j0 =
              (k.ctop0 * d.pooled + blocks.p_list[qh]) * d.pooled + blocks.p_list[qw];
          const index_t j1 = j0 + (k.ctop1 - k.ctop0) * bins;
          if (g.batch < 0) {
            for (index_t j = j0; tgrad_r && j < j1; j += bins) {
              tgrad_r[2 * j] = tgrad_r[2 * j + 1] = T(0);
            }
            continue;
          }
          const DpsroiBin<T> b = dpsroi_bin(g, r, cols[j0], trans, trans_std, d);
          DpsroiTaps<T> taps;
          dpsroi_taps<true>(g, b, d, &taps);
          for (index_t j = j0; j < j1; j += bins) {
            const index_t map = offset + cols[j].channel * plane;
            T tx, ty;
            dpsroi_bwd_elem(data + map, data_grad + map, g, b, taps, d, top_r[j], trans_std,
                            PlainAdd(), &tx, &ty);
            if (tgrad_r) {
              tgrad_r[2 * j] = tx;
              tgrad_r[2 * j + 1] = ty;
            }
          }
        }
      }
    }
  }
  if (d.no_trans) return;

  // trans_grad of (roi r, class k) = sum, in column order, over the columns of class k (output
  // channels [k * channels_each_class, (k + 1) * channels_each_class)) of their bin's gradient,
  // added to the bin's part. One thread per (r, k): its slots are written by no other.
  const index_t cols_per_class = d.channels_each_class * bins;
#pragma omp parallel for schedule(static)
  for (index_t rk = 0; rk < num_rois * d.num_classes; ++rk) {
    const index_t r = rk / d.num_classes;
    const index_t cls = rk % d.num_classes;
    T* tg = trans_grad + r * trans_per_roi;
    std::fill(tg + cls * 2 * parts, tg + (cls + 1) * 2 * parts, T(0));
    const T* src = col_tgrad.get() + r * num_cols * 2;
    for (index_t j = cls * cols_per_class; j < (cls + 1) * cols_per_class; ++j) {
      tg[cols[j].trans_slot] += src[2 * j];
      tg[cols[j].trans_slot + parts] += src[2 * j + 1];
    }
  }
}

#define DCN_INSTANTIATE_PSROI_CPU(T)                                                               \
  template void psroi_forward<T>(const PsroiDims&, T, index_t, const T*, const T*, T*);       \
  template void psroi_backward<T>(const PsroiDims&, T, index_t, const T*, const T*, T*);      \
  template void dpsroi_forward<T>(const DpsroiDims&, T, T, index_t, const T*, const T*,        \
                                      const T*, T*);                                               \
  template void dpsroi_backward<T>(const DpsroiDims&, T, T, index_t, const T*, const T*,       \
                                       const T*, const T*, T*, T*);
DCN_INSTANTIATE_PSROI_CPU(float)
DCN_INSTANTIATE_PSROI_CPU(double)
#undef DCN_INSTANTIATE_PSROI_CPU

}  // namespace cpu
}  // namespace dcn
