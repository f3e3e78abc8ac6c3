// gpu_check: the project's CUDA kernels run on a GPU and compared with its CPU loops, without
// MXNet.
//
// What it checks. Forward and backward of all four operators -
//   DeformableConvolution           1 and 4 offset groups, stride 2 and dilation 2, weight groups,
//                                   batch chunks (im2col_step) and output-row chunks (workspace)
//   ModulatedDeformableConvolution  an asymmetric kernel / stride / pad / dilation case, 4 groups
//   PSROIPooling                    group_size = pooled_size and pooled_size > group_size
//   DeformablePSROIPooling          with per-class offsets, without offsets, and wide bins (the
//                                   point-by-point sampling path)
// - on random float32 inputs that sample outside the image (offsets of several pixels, NaN and
// huge offsets, rois partly or wholly outside the feature map), once on the GPU (cuda/*.cu
// launchers, cuBLAS) and once on the CPU (cpu/*.cc loops, OpenBLAS), and compares every output
// and gradient: |gpu - cpu| <= 1e-4 * |cpu| + 1e-5 * max(1, max |cpu|) per element (float32
// rounding and the GPU's atomic scatter order; an indexing error is far larger). That tolerance
// is itself checked on the CPU, with or without a GPU: the float32 CPU results must stay within
// a quarter of it from float64 ones. Outputs start as NaN on both devices, so an element an op
// leaves unwritten fails. The convolutions go through the same drivers as the MXNet op
// (dcn/deform_conv_driver.h); nothing of MXNet or lib_api.h is linked. Then it times each
// operator on the GPU at detection-network sizes against a dense cuBLAS GEMM of the same size and
// prints a Markdown table (for the README).
//
// How to run (from the repository root, after `sh init.sh`):
//   make -C operator_cxx gpu-check     builds for the GPU present (nvidia-smi's compute
//                                      capability, else nvcc -arch=native) and runs the check
//   make -C operator_cxx gpu-check GPU_CHECK_ARGS=--no-bench      comparisons only
//   operator_cxx/build/gpu-check/gpu_check [--no-bench] [--full-size] [--seed N] [--dump DIR]
// --full-size also compares the timing table's network-sized cases (grids, chunking and atomics
// of real layers); --seed N draws other random inputs for the same cases.
// --dump DIR writes every case's inputs, output gradient and CPU results as raw float32 files
// with a manifest.json (tests/ops/test_gpu_check.py compares them with the MXNet op library).
// cuBLAS is loaded at run time (tests/cublas_dlopen.h says where it is searched; DCN_CUBLAS=path
// overrides), so the check builds and its CPU side runs where cuBLAS is not installed.
//
// Exit status: 0 when every comparison passed, or when no CUDA device is present (the CPU side
// ran, the GPU side is skipped and says so); 1 on a mismatch or a CUDA error; 2 on bad arguments
// or when a GPU is present but cuBLAS cannot be loaded.
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <list>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cublas_dlopen.h"
#include "dcn/deform_conv_driver.h"
#include "dcn/geometry.h"
#include "dcn/psroi_launchers.h"

#ifndef DCN_GPU_ARCH
#define DCN_GPU_ARCH "?"
#endif

namespace {

using dcn::index_t;

constexpr double kRtol = 1e-4;  // per element, relative to |cpu|
constexpr double kAtol = 1e-5;  // times max(1, max |cpu|) of the tensor
// The float32 CPU results must be this close to the float64 ones (as a share of the tolerance):
// GPU and CPU float32 results then differ by rounding only well inside the tolerance.
constexpr double kRoundingShare = 0.25;

// ---------------------------------------------------------------------------------------------
// Cases

enum class Kind { kConv, kPsroi, kDpsroi };

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> v;
};

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
  return r;
}

struct Case {
  std::string name;
  std::string op;  // the MXNet op name
  Kind kind = Kind::kConv;
  // Attributes as JSON values; for the convolutions also the strings parse_conv_geom reads.
  std::vector<std::pair<std::string, std::string>> attrs;
  dcn::ConvGeom geom;  // kConv
  dcn::ConvShape shape;
  dcn::PsroiDims pd{};   // kPsroi
  dcn::DpsroiDims dd{};  // kDpsroi
  float scale = 0, trans_std = 0;
  int64_t num_rois = 0;
  std::vector<Tensor> inputs;  // in the op's input order
  std::vector<int64_t> out_shape;
  Tensor head;                                 // gradient of the output
  int64_t gemm_m = 0, gemm_n = 0, gemm_k = 0;  // the dense GEMM it is timed against
};

// Added to every case's seed (--seed): other random inputs, the same cases.
unsigned g_seed_offset = 0;

class Random {
 public:
  explicit Random(unsigned seed) : rng_(seed + g_seed_offset) {}
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng_); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  Tensor tensor(const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
    Tensor t{name, shape, std::vector<float>(static_cast<size_t>(numel(shape)))};
    for (float& x : t.v) x = uniform(lo, hi);
    return t;
  }

 private:
  std::mt19937 rng_;
};

using Attrs = std::vector<std::pair<std::string, std::string>>;

// A (modulated) deformable convolution on (N, C, H, W) data. Offsets are a random integer in
// [-3, 2] plus U(0.1, 0.9) (never on a grid line, often outside the image); `odd` also plants
// NaN, +-1e30 and +-20-pixel offsets (a zero sample with zero gradient, see sampling.h).
Case conv_case(const std::string& name, bool modulated, int64_t N, int64_t C, int64_t H, int64_t W,
               const Attrs& attrs, unsigned seed, bool odd = false) {
  Case c;
  c.name = name;
  c.kind = Kind::kConv;
  c.op = modulated ? "ModulatedDeformableConvolution" : "DeformableConvolution";
  c.attrs = attrs;
  dcn::AttrMap map(attrs.begin(), attrs.end());
  dcn::ConvShapes sh;
  std::string err;
  if (!dcn::parse_conv_geom(map, modulated, &c.geom, &err) ||
      !dcn::conv_shapes(c.geom, {N, C, H, W}, &sh, &err)) {
    std::fprintf(stderr, "gpu_check: bad case %s: %s\n", name.c_str(), err.c_str());
    std::exit(2);
  }
  c.shape = sh.s;
  Random r(seed);
  c.inputs.push_back(r.tensor("data", sh.data, -1, 1));
  Tensor offset{"offset", sh.offset, std::vector<float>(static_cast<size_t>(numel(sh.offset)))};
  for (float& x : offset.v) x = static_cast<float>(r.integer(-3, 2)) + r.uniform(0.1f, 0.9f);
  if (odd) {
    const float special[] = {std::numeric_limits<float>::quiet_NaN(), 1e30f, -1e30f, 20.5f, -20.5f};
    for (size_t k = 0; k < sizeof(special) / sizeof(float); ++k) {
      offset.v[(k * 7919 + 3) % offset.v.size()] = special[k];
    }
  }
  c.inputs.push_back(offset);
  if (modulated) c.inputs.push_back(r.tensor("mask", sh.mask, 0.2f, 1.8f));
  c.inputs.push_back(r.tensor("weight", sh.weight, -1, 1));
  if (!c.geom.no_bias) c.inputs.push_back(r.tensor("bias", sh.bias, -1, 1));
  c.out_shape = sh.out;
  c.head = r.tensor("head", sh.out, -1, 1);
  c.gemm_m = c.shape.F;
  c.gemm_n = N * c.shape.Ho * c.shape.Wo;
  c.gemm_k = C / c.geom.groups * c.geom.taps();
  return c;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// R rois [batch, x1, y1, x2, y2] in image pixels over an H x W map at `scale`, reaching 24 image
// pixels outside it; roi 0 lies wholly outside (empty bins), roi 1 has x2 < x1 (the 0.1-pixel
// minimum extent).
Tensor make_rois(Random& r, int64_t R, int64_t N, int64_t H, int64_t W, float scale) {
  Tensor t{"rois", {R, 5}, std::vector<float>(static_cast<size_t>(R * 5))};
  for (int64_t i = 0; i < R; ++i) {
    float x1 = r.uniform(-24, W / scale + 24), x2 = r.uniform(-24, W / scale + 24);
    float y1 = r.uniform(-24, H / scale + 24), y2 = r.uniform(-24, H / scale + 24);
    if (x2 < x1) std::swap(x1, x2);
    if (y2 < y1) std::swap(y1, y2);
    float* roi = &t.v[static_cast<size_t>(i * 5)];
    roi[0] = static_cast<float>(i % N);
    roi[1] = x1;
    roi[2] = y1;
    roi[3] = x2;
    roi[4] = y2;
  }
  if (R > 1) {
    const float outside[4] = {-60, -50, -30, -28}, inverted[4] = {30, 20, 10, 5};
    std::copy(outside, outside + 4, &t.v[1]);
    std::copy(inverted, inverted + 4, &t.v[6]);
  }
  return t;
}

// PSROIPooling. Pooled sizes are powers of two and the scale too, so every bin edge is exact in
// float32: the two devices' rounding (the GPU fuses multiply-adds) cannot move a pixel into
// another bin, which would change a bin's mean by far more than rounding.
Case psroi_case(const std::string& name, int64_t N, int64_t H, int64_t W, int64_t od,
                int64_t pooled, int64_t group, float scale, int64_t R, unsigned seed) {
  Case c;
  c.name = name;
  c.kind = Kind::kPsroi;
  c.op = "PSROIPooling";
  c.attrs = {{"spatial_scale", num(scale)},
             {"output_dim", std::to_string(od)},
             {"pooled_size", std::to_string(pooled)},
             {"group_size", std::to_string(group)}};
  c.pd = {N, od * group * group, H, W, od, group, pooled};
  c.scale = scale;
  c.num_rois = R;
  Random r(seed);
  c.inputs.push_back(r.tensor("data", {N, c.pd.channels, H, W}, -1, 1));
  c.inputs.push_back(make_rois(r, R, N, H, W, scale));
  c.out_shape = {R, od, pooled, pooled};
  c.head = r.tensor("head", c.out_shape, -1, 1);
  c.gemm_m = c.pd.channels;  // the 1x1 convolution (1024 channels in) producing the score maps
  c.gemm_n = N * H * W;
  c.gemm_k = 1024;
  return c;
}

// DeformablePSROIPooling with `ncls` offset classes (0: no_trans). With offsets the sample
// positions move continuously with the random trans, so none sits exactly on the border test;
// without, the sizes and scale below are powers of two (exact, as for PSROIPooling).
Case dpsroi_case(const std::string& name, int64_t N, int64_t H, int64_t W, int64_t od,
                 int64_t group, int64_t pooled, int64_t part, int64_t spp, int64_t ncls,
                 float trans_std, float scale, int64_t R, unsigned seed, bool wide = false) {
  Case c;
  c.name = name;
  c.kind = Kind::kDpsroi;
  c.op = "DeformablePSROIPooling";
  c.attrs = {{"spatial_scale", num(scale)},         {"output_dim", std::to_string(od)},
             {"group_size", std::to_string(group)}, {"pooled_size", std::to_string(pooled)},
             {"part_size", std::to_string(part)},   {"sample_per_part", std::to_string(spp)},
             {"trans_std", num(trans_std)},         {"no_trans", ncls == 0 ? "true" : "false"}};
  const int64_t p = part ? part : pooled;
  // DpsroiDims in declaration order: images, channels, height, width, output_dim, group, pooled,
  // part, sample_per_part, num_classes, channels_each_class, no_trans.
  const int64_t classes = ncls ? ncls : 1;
  c.dd = {N, od * group * group, H, W, od, group, pooled, p, spp, classes, od / classes, !ncls};
  c.scale = scale;
  c.trans_std = trans_std;
  c.num_rois = R;
  Random r(seed);
  c.inputs.push_back(r.tensor("data", {N, c.dd.channels, H, W}, -1, 1));
  Tensor rois = make_rois(r, R, N, H, W, scale);
  if (wide) {  // bins of several pixels: samples too spread for the weight window (psroi.h)
    for (int64_t i = 0; i < R; ++i) {
      float* roi = &rois.v[static_cast<size_t>(i * 5)];
      roi[1] = roi[2] = -1;
      roi[3] = 2 * W / scale + 1;
      roi[4] = 2 * H / scale + 1;
    }
  }
  c.inputs.push_back(rois);
  if (ncls) c.inputs.push_back(r.tensor("trans", {R, 2 * ncls, p, p}, -1, 1));
  c.out_shape = {R, od, pooled, pooled};
  c.head = r.tensor("head", c.out_shape, -1, 1);
  c.gemm_m = c.dd.channels;
  c.gemm_n = N * H * W;
  c.gemm_k = 1024;
  return c;
}

// Small cases, compared GPU vs CPU (and dumped for the test against the MXNet op library).
std::vector<Case> check_cases() {
  std::vector<Case> cs;
  cs.push_back(conv_case("dcn_dg1", false, 2, 8, 9, 11,
                         {{"kernel", "[3, 3]"}, {"num_filter", "6"}, {"pad", "[1, 1]"}}, 1, true));
  cs.push_back(conv_case("dcn_dg4_stride2_dilate2", false, 4, 8, 13, 10,
                         {{"kernel", "[3, 3]"},
                          {"num_filter", "6"},
                          {"stride", "[2, 2]"},
                          {"dilate", "[2, 2]"},
                          {"pad", "[2, 2]"},
                          {"num_group", "2"},
                          {"num_deformable_group", "4"},
                          {"im2col_step", "2"}},
                         2));
  // workspace 1 MB: one image and a few output rows per chunk.
  cs.push_back(conv_case("dcn_row_chunks_no_bias", false, 2, 64, 24, 20,
                         {{"kernel", "[3, 3]"},
                          {"num_filter", "16"},
                          {"pad", "[1, 1]"},
                          {"num_deformable_group", "2"},
                          {"workspace", "1"},
                          {"no_bias", "true"}},
                         3));
  cs.push_back(conv_case("mdcn_asymmetric", true, 3, 6, 7, 9,
                         {{"kernel", "[3, 2]"},
                          {"num_filter", "4"},
                          {"stride", "[2, 1]"},
                          {"pad", "[1, 2]"},
                          {"dilate", "[2, 1]"},
                          {"num_group", "2"},
                          {"num_deformable_group", "3"},
                          {"im2col_step", "1"}},
                         4, true));
  cs.push_back(conv_case("mdcn_dg4_stride2_dilate2", true, 2, 16, 11, 12,
                         {{"kernel", "[3, 3]"},
                          {"num_filter", "8"},
                          {"stride", "[2, 2]"},
                          {"dilate", "[2, 2]"},
                          {"pad", "[2, 2]"},
                          {"num_deformable_group", "4"}},
                         5));
  cs.push_back(psroi_case("psroi_pooled4_group4", 2, 12, 15, 3, 4, 4, 0.25f, 8, 6));
  cs.push_back(psroi_case("psroi_pooled4_group2", 2, 9, 11, 2, 4, 2, 0.5f, 6, 7));
  cs.push_back(dpsroi_case("dpsroi_trans", 2, 12, 15, 4, 3, 3, 3, 2, 2, 0.1f, 0.25f, 8, 8));
  cs.push_back(dpsroi_case("dpsroi_no_trans", 2, 12, 15, 3, 2, 4, 4, 2, 0, 0.1f, 0.25f, 8, 9));
  cs.push_back(dpsroi_case("dpsroi_wide_bins", 2, 7, 9, 2, 2, 2, 2, 5, 2, 0.2f, 1.0f, 4, 10, true));
  return cs;
}

// Detection-network sizes for the timing table (batch 1, 600 x 1000 input, stride 16 unless
// noted; COCO's 81 classes for the R-FCN heads).
std::vector<std::pair<std::string, Case>> bench_cases() {
  const Attrs res5 = {{"kernel", "[3, 3]"},
                      {"num_filter", "512"},
                      {"pad", "[2, 2]"},
                      {"dilate", "[2, 2]"},
                      {"num_deformable_group", "4"}};
  std::vector<std::pair<std::string, Case>> bs;
  bs.emplace_back("res5 3x3, dilate 2, 4 offset groups",
                  conv_case("bench", false, 1, 512, 38, 63, res5, 11));
  bs.emplace_back("FPN res3 3x3 at stride 8 (800 x 1216)",
                  conv_case("bench", false, 1, 128, 100, 152,
                            {{"kernel", "[3, 3]"}, {"num_filter", "128"}, {"pad", "[1, 1]"}}, 12));
  bs.emplace_back("res5 3x3, dilate 2, 4 offset groups",
                  conv_case("bench", true, 1, 512, 38, 63, res5, 13));
  bs.emplace_back("R-FCN cls head, 300 rois, 7x7",
                  psroi_case("bench", 1, 38, 63, 81, 7, 7, 1.0f / 16, 300, 14));
  bs.emplace_back("R-FCN cls head, 300 rois, 7x7, 4x4 samples",
                  dpsroi_case("bench", 1, 38, 63, 81, 7, 7, 7, 4, 1, 0.1f, 1.0f / 16, 300, 15));
  return bs;
}

// ---------------------------------------------------------------------------------------------
// Devices: where buffers live and which launchers run. Outputs start as NaN.

// The CPU loops in precision T (float: the results the GPU is compared with; double: their
// float32 rounding, shown against the tolerance).
template <typename T>
class CpuDevice {
 public:
  using Scalar = T;
  dcn::CpuBackend be;

  const T* input(const Tensor& t) {
    bufs_.emplace_back(t.v.begin(), t.v.end());
    return bufs_.back().data();
  }
  T* output(size_t n) {
    bufs_.emplace_back(n, std::numeric_limits<T>::quiet_NaN());
    return bufs_.back().data();
  }
  std::vector<float> fetch(const T* p, size_t n) { return std::vector<float>(p, p + n); }
  void* workspace(size_t bytes) {
    ws_.resize(bytes / sizeof(double) + 1);
    return ws_.data();
  }
  std::string finish() { return std::string(); }

  const char* psroi_forward(const Case& c, const T* data, const T* rois, T* out) {
    dcn::cpu::psroi_forward(c.pd, T(c.scale), c.num_rois, data, rois, out);
    return nullptr;
  }
  // Rois get no gradient: the op driver (ops/psroi_pooling.cc) zero-fills it.
  const char* psroi_backward(const Case& c, const T* head, const T* rois, T* gdata, T* grois) {
    std::fill(grois, grois + c.num_rois * 5, T(0));
    dcn::cpu::psroi_backward(c.pd, T(c.scale), c.num_rois, head, rois, gdata);
    return nullptr;
  }
  const char* dpsroi_forward(const Case& c, const T* data, const T* rois, const T* trans, T* out) {
    dcn::cpu::dpsroi_forward(c.dd, T(c.scale), T(c.trans_std), c.num_rois, data, rois, trans, out);
    return nullptr;
  }
  const char* dpsroi_backward(const Case& c, const T* head, const T* data, const T* rois,
                              const T* trans, T* gdata, T* grois, T* gtrans) {
    std::fill(grois, grois + c.num_rois * 5, T(0));
    dcn::cpu::dpsroi_backward(c.dd, T(c.scale), T(c.trans_std), c.num_rois, head, data, rois, trans,
                              gdata, gtrans);
    return nullptr;
  }

 private:
  std::list<std::vector<T>> bufs_;
  std::vector<double> ws_;
};

class CudaDevice {
 public:
  using Scalar = float;
  explicit CudaDevice(cudaStream_t stream) : be{stream}, stream_(stream) {}
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;
  ~CudaDevice() {
    for (void* p : bufs_) cudaFree(p);
    if (ws_) cudaFree(ws_);
  }

  dcn::CudaBackend be;

  const float* input(const Tensor& t) {
    float* p = alloc(t.v.size());
    if (p) note(cudaMemcpy(p, t.v.data(), t.v.size() * sizeof(float), cudaMemcpyHostToDevice));
    return p;
  }
  float* output(size_t n) {
    float* p = alloc(n);
    if (p) note(cudaMemset(p, 0xFF, n * sizeof(float)));  // all bits set: NaN
    return p;
  }
  std::vector<float> fetch(const float* p, size_t n) {
    std::vector<float> v(n, std::numeric_limits<float>::quiet_NaN());
    note(cudaStreamSynchronize(stream_));
    if (p) note(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
    return v;
  }
  // Grows only, like MXNet's workspace: no allocation inside the timed loops.
  void* workspace(size_t bytes) {
    if (bytes > ws_bytes_) {
      note(cudaStreamSynchronize(stream_));
      if (ws_) cudaFree(ws_);
      ws_ = nullptr;
      ws_bytes_ = 0;
      if (note(cudaMalloc(&ws_, bytes))) ws_bytes_ = bytes;
    }
    return ws_;
  }
  // Waits for the stream; the first CUDA error seen, or "".
  std::string finish() {
    note(cudaStreamSynchronize(stream_));
    note(cudaGetLastError());
    return error_;
  }

  const char* psroi_forward(const Case& c, const float* data, const float* rois, float* out) {
    return dcn::cuda::psroi_forward(c.pd, c.scale, c.num_rois, data, rois, out, stream_);
  }
  const char* psroi_backward(const Case& c, const float* head, const float* rois, float* gdata,
                             float* grois) {
    return dcn::cuda::psroi_backward(c.pd, c.scale, c.num_rois, head, rois, gdata, grois, stream_);
  }
  const char* dpsroi_forward(const Case& c, const float* data, const float* rois,
                             const float* trans, float* out) {
    return dcn::cuda::dpsroi_forward(c.dd, c.scale, c.trans_std, c.num_rois, data, rois, trans, out,
                                     stream_);
  }
  const char* dpsroi_backward(const Case& c, const float* head, const float* data,
                              const float* rois, const float* trans, float* gdata, float* grois,
                              float* gtrans) {
    return dcn::cuda::dpsroi_backward(c.dd, c.scale, c.trans_std, c.num_rois, head, data, rois,
                                      trans, gdata, grois, gtrans, stream_);
  }

 private:
  float* alloc(size_t n) {
    void* p = nullptr;
    if (!note(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)))) return nullptr;
    bufs_.push_back(p);
    return static_cast<float*>(p);
  }
  bool note(cudaError_t e) {
    if (e != cudaSuccess && error_.empty()) error_ = cudaGetErrorString(e);
    return e == cudaSuccess;
  }

  cudaStream_t stream_;
  std::vector<void*> bufs_;
  void* ws_ = nullptr;
  size_t ws_bytes_ = 0;
  std::string error_;
};

// ---------------------------------------------------------------------------------------------
// Running a case on a device

// A case's buffers on one device: inputs, output gradient, output and one gradient per input.
template <typename T>
struct Bound {
  std::vector<const T*> in;
  const T* head = nullptr;
  T* out = nullptr;
  std::vector<T*> grad;
};

template <typename Dev, typename T = typename Dev::Scalar>
Bound<T> bind(Dev& dev, const Case& c) {
  Bound<T> b;
  for (const Tensor& t : c.inputs) b.in.push_back(dev.input(t));
  b.head = dev.input(c.head);
  b.out = dev.output(static_cast<size_t>(numel(c.out_shape)));
  for (const Tensor& t : c.inputs) b.grad.push_back(dev.output(t.v.size()));
  return b;
}

template <typename T>
dcn::DeformOperands<T> conv_operands(const Case& c, const Bound<T>& b) {
  dcn::DeformOperands<T> in;
  in.data = b.in[0];
  in.offset = b.in[1];
  if (c.geom.modulated) in.mask = b.in[c.geom.mask_index()];
  in.weight = b.in[c.geom.weight_index()];
  if (!c.geom.no_bias) in.bias = b.in[c.geom.bias_index()];
  return in;
}

std::string text(const char* err) { return err ? err : ""; }

template <typename Dev, typename T = typename Dev::Scalar>
std::string forward(Dev& dev, const Case& c, const Bound<T>& b) {
  auto alloc = [&dev](size_t bytes) { return dev.workspace(bytes); };
  const T* trans = b.in.size() > 2 ? b.in[2] : nullptr;
  switch (c.kind) {
    case Kind::kConv:
      return dcn::deform_conv_forward(dev.be, alloc, c.geom, c.shape, conv_operands(c, b), b.out);
    case Kind::kPsroi:
      return text(dev.psroi_forward(c, b.in[0], b.in[1], b.out));
    case Kind::kDpsroi:
      return text(dev.dpsroi_forward(c, b.in[0], b.in[1], trans, b.out));
  }
  return "unknown case kind";
}

template <typename Dev, typename T = typename Dev::Scalar>
std::string backward(Dev& dev, const Case& c, const Bound<T>& b) {
  auto alloc = [&dev](size_t bytes) { return dev.workspace(bytes); };
  const T* trans = b.in.size() > 2 ? b.in[2] : nullptr;
  T* gtrans = b.grad.size() > 2 ? b.grad[2] : nullptr;
  switch (c.kind) {
    case Kind::kConv: {
      dcn::DeformGradients<T> gr;
      gr.data = b.grad[0];
      gr.offset = b.grad[1];
      if (c.geom.modulated) gr.mask = b.grad[c.geom.mask_index()];
      gr.weight = b.grad[c.geom.weight_index()];
      if (!c.geom.no_bias) gr.bias = b.grad[c.geom.bias_index()];
      return dcn::deform_conv_backward(dev.be, alloc, c.geom, c.shape, b.head, conv_operands(c, b),
                                       gr);
    }
    case Kind::kPsroi:
      return text(dev.psroi_backward(c, b.head, b.in[1], b.grad[0], b.grad[1]));
    case Kind::kDpsroi:
      return text(
          dev.dpsroi_backward(c, b.head, b.in[0], b.in[1], trans, b.grad[0], b.grad[1], gtrans));
  }
  return "unknown case kind";
}

// Forward and backward of case c on dev: "out", then "grad_<input>" for every input.
template <typename Dev>
std::string run(Dev& dev, const Case& c, std::vector<Tensor>* results) {
  const auto b = bind(dev, c);
  std::string err = dev.finish();
  if (err.empty()) err = forward(dev, c, b);
  if (err.empty()) err = backward(dev, c, b);
  if (err.empty()) err = dev.finish();
  if (!err.empty()) return err;
  results->clear();
  results->push_back({"out", c.out_shape, dev.fetch(b.out, numel(c.out_shape))});
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    const Tensor& t = c.inputs[k];
    results->push_back({"grad_" + t.name, t.shape, dev.fetch(b.grad[k], t.v.size())});
  }
  return dev.finish();
}

// ---------------------------------------------------------------------------------------------
// Comparison

struct Diff {
  double max_abs = 0;   // max |got - want|
  double max_want = 0;  // max |want|
  double worst = 0;     // max of |got - want| / allowed (> 1: mismatch; NaN counts as mismatch)
  int64_t bad = 0;      // elements over the tolerance (or the share of it asked for)
  int64_t at = -1;      // the worst element's flat index
};

// Elements with |got - want| over `share` of the tolerance count as bad.
Diff compare(const std::vector<float>& want, const std::vector<float>& got, double share) {
  Diff d;
  for (float w : want) d.max_want = std::max(d.max_want, std::fabs(static_cast<double>(w)));
  const double atol = kAtol * std::max(1.0, d.max_want);
  bool nan = false;
  for (size_t i = 0; i < want.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double ratio = diff / (kRtol * std::fabs(static_cast<double>(want[i])) + atol);
    d.bad += !(ratio <= share);  // NaN too
    nan = nan || std::isnan(ratio);
    d.max_abs = std::max(d.max_abs, diff);
    if (!(ratio <= d.worst)) d.at = static_cast<int64_t>(i);
    d.worst = std::max(d.worst, ratio);
  }
  if (nan) d.max_abs = d.worst = std::numeric_limits<double>::quiet_NaN();
  return d;
}

int64_t count_nonfinite(const std::vector<float>& v) {
  int64_t n = 0;
  for (float x : v) n += !std::isfinite(x);
  return n;
}

// Compares got[i][k] with want[i][k] for every case i and tensor k (want / got hold "out" and
// the gradients), one line per tensor; a tensor passes when its worst element uses at most
// `share` of the tolerance. Cases with an error are listed with it, not counted here. Returns
// the number of failed tensors.
int report(const std::vector<Case>& cases, const std::vector<std::vector<Tensor>>& want,
           const std::vector<std::vector<Tensor>>& got, const std::vector<std::string>& errors,
           const char* label, double share) {
  std::printf("  %-26s %-12s %9s %11s %13s %13s  %s\n", "case", "tensor", "elements", "max|ref|",
              ("max|" + std::string(label) + "|").c_str(), "worst/allowed", "result");
  int failed = 0, compared = 0;
  double worst = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (!errors[i].empty()) {
      std::printf("  %-26s FAILED: %s\n", cases[i].name.c_str(), errors[i].c_str());
      continue;
    }
    for (size_t k = 0; k < want[i].size(); ++k) {
      const Diff d = compare(want[i][k].v, got[i][k].v, share);
      const bool ok = d.bad == 0;
      failed += !ok;
      ++compared;
      worst = std::isnan(d.worst) || std::isnan(worst) ? NAN : std::max(worst, d.worst);
      std::printf("  %-26s %-12s %9zu %11.4g %13.3g %13.3g  %s\n", k ? "" : cases[i].name.c_str(),
                  want[i][k].name.c_str(), want[i][k].v.size(), d.max_want, d.max_abs, d.worst,
                  ok ? "ok" : ("MISMATCH (" + std::to_string(d.bad) + " elements)").c_str());
      if (!ok && d.at >= 0) {
        std::printf("  %-26s   worst at flat index %lld: ref %.9g, %s %.9g\n", "",
                    static_cast<long long>(d.at), want[i][k].v[d.at], "got", got[i][k].v[d.at]);
      }
    }
  }
  std::printf("  %d tensors compared, worst %.3g of the tolerance: %s\n", compared, worst,
              failed ? "FAILED" : "all passed");
  return failed;
}

// ---------------------------------------------------------------------------------------------
// --dump: raw float32 files and a manifest for tests/ops/test_gpu_check.py

std::string json_str(const std::string& s) { return "\"" + s + "\""; }

std::string json_shape(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

bool write_tensor(const std::string& dir, const std::string& file, const std::vector<float>& v) {
  FILE* f = std::fopen((dir + "/" + file).c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(v.data(), sizeof(float), v.size(), f) == v.size();
  return std::fclose(f) == 0 && ok;
}

// Writes <dir>/<stem>.f32 and returns the manifest entry {"name", "shape", "file"}.
std::string json_tensor(const std::string& dir, const std::string& stem, const Tensor& t,
                        bool* ok) {
  const std::string file = stem + ".f32";
  *ok = write_tensor(dir, file, t.v) && *ok;
  return "{\"name\": " + json_str(t.name) + ", \"shape\": " + json_shape(t.shape) +
         ", \"file\": " + json_str(file) + "}";
}

bool dump(const std::string& dir, const std::vector<Case>& cases,
          const std::vector<std::vector<Tensor>>& cpu) {
  mkdir(dir.c_str(), 0755);
  bool ok = true;
  std::string m = "{\"dtype\": \"float32\", \"cases\": [\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    m += std::string(i ? ",\n" : "") + "  {\"name\": " + json_str(c.name) +
         ", \"op\": " + json_str(c.op) + ",\n   \"attrs\": {";
    for (size_t k = 0; k < c.attrs.size(); ++k) {
      m += (k ? ", " : "") + json_str(c.attrs[k].first) + ": " + c.attrs[k].second;
    }
    m += "},\n   \"inputs\": [";
    for (size_t k = 0; k < c.inputs.size(); ++k) {
      m += (k ? ", " : "") + json_tensor(dir, c.name + "." + c.inputs[k].name, c.inputs[k], &ok);
    }
    m += "],\n   \"head\": " + json_tensor(dir, c.name + ".head", c.head, &ok) + ",\n   \"cpu\": [";
    for (size_t k = 0; k < cpu[i].size(); ++k) {
      m += (k ? ", " : "") + json_tensor(dir, c.name + ".cpu." + cpu[i][k].name, cpu[i][k], &ok);
    }
    m += "]}";
  }
  m += "\n]}\n";
  FILE* f = std::fopen((dir + "/manifest.json").c_str(), "w");
  ok = f && std::fputs(m.c_str(), f) >= 0 && ok;
  if (f) ok = std::fclose(f) == 0 && ok;
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Timing

// Milliseconds per call of fn (already warmed up), by CUDA events on `stream`.
double time_ms(cudaStream_t stream, int reps, const std::function<std::string()>& fn,
               std::string* err) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int i = 0; i < 2 && err->empty(); ++i) *err = fn();  // warm-up
  cudaEventRecord(start, stream);
  for (int i = 0; i < reps && err->empty(); ++i) *err = fn();
  cudaEventRecord(stop, stream);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / reps;
}

int bench(cudaStream_t stream) {
  std::printf(
      "\nTiming on the GPU (float32, ms per call, CUDA events; GEMM = cuBLAS sgemm of the same "
      "size):\n\n");
  std::printf(
      "| operator | case | input | forward ms | backward ms | GEMM M x N x K | GEMM ms | "
      "forward / GEMM | backward / GEMM |\n");
  std::printf("|---|---|---|---:|---:|---|---:|---:|---:|\n");
  int failures = 0;
  for (const auto& named : bench_cases()) {
    const Case& c = named.second;
    CudaDevice dev(stream);
    const auto b = bind(dev, c);
    std::string err = dev.finish();
    const int reps = 20;
    const double fwd =
        err.empty() ? time_ms(stream, reps, [&] { return forward(dev, c, b); }, &err) : 0;
    const double bwd =
        err.empty() ? time_ms(stream, reps, [&] { return backward(dev, c, b); }, &err) : 0;
    // A dense GEMM C (M x N) = A (M x K) . B (K x N): for a convolution the im2col GEMM of a
    // dense convolution of the same shape; for the poolings the 1x1 convolution (1024 channels
    // in) that produces their score maps.
    Random r(99);
    const Tensor A = r.tensor("A", {c.gemm_m, c.gemm_k}, -1, 1);
    const Tensor B = r.tensor("B", {c.gemm_k, c.gemm_n}, -1, 1);
    const float* a = dev.input(A);
    const float* bb = dev.input(B);
    float* out = dev.output(static_cast<size_t>(c.gemm_m * c.gemm_n));
    const int M = static_cast<int>(c.gemm_m), N = static_cast<int>(c.gemm_n),
              K = static_cast<int>(c.gemm_k);
    auto dense = [&] {
      return text(
          dcn::cuda::gemm<float>(false, false, M, N, K, 1.f, a, K, bb, N, 0.f, out, N, stream));
    };
    if (err.empty()) err = dev.finish();
    const double gemm = err.empty() ? time_ms(stream, reps, dense, &err) : 0;
    if (err.empty()) err = dev.finish();
    if (!err.empty()) {
      std::printf("| %s | %s | FAILED: %s |\n", c.op.c_str(), named.first.c_str(), err.c_str());
      ++failures;
      continue;
    }
    std::printf("| %s | %s | %s | %.3f | %.3f | %lld x %lld x %lld | %.3f | %.2f | %.2f |\n",
                c.op.c_str(), named.first.c_str(), shape_text(c.inputs[0].shape).c_str(), fwd, bwd,
                static_cast<long long>(c.gemm_m), static_cast<long long>(c.gemm_n),
                static_cast<long long>(c.gemm_k), gemm, fwd / gemm, bwd / gemm);
  }
  std::printf(
      "\nforward / GEMM: the cost of one call in dense GEMMs of the same size (a dense "
      "convolution costs about 1 forward and 2 backward).\n");
  return failures;
}

// ---------------------------------------------------------------------------------------------

bool driver_present() {
  void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h) dlclose(h);
  return h != nullptr;
}

std::string version_text(int v) {  // 12080 -> "12.8"
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// The timing table's network-sized cases, run once on each device and compared (float32): the
// grid sizes, chunking and atomics of real layers, which the small cases do not reach.
int compare_full_size(cudaStream_t stream) {
  std::vector<Case> cases;
  for (auto& named : bench_cases()) {
    cases.push_back(named.second);
    cases.back().name = "full_" + std::to_string(cases.size());
    std::printf("  %s: %s %s, %s\n", cases.back().name.c_str(), cases.back().op.c_str(),
                shape_text(cases.back().inputs[0].shape).c_str(), named.first.c_str());
  }
  const size_t n = cases.size();
  std::vector<std::vector<Tensor>> cpu(n), gpu(n);
  std::vector<std::string> errors(n);
  for (size_t i = 0; i < n; ++i) {
    CpuDevice<float> host;
    errors[i] = run(host, cases[i], &cpu[i]);
    if (!errors[i].empty()) continue;
    CudaDevice dev(stream);
    errors[i] = run(dev, cases[i], &gpu[i]);
    cudaGetLastError();
  }
  std::printf("\nGPU vs CPU at network sizes, float32 (pass: within the tolerance):\n");
  return report(cases, cpu, gpu, errors, "gpu-cpu", 1.0);
}

void usage(FILE* f) {
  std::fprintf(f,
               "usage: gpu_check [--no-bench] [--full-size] [--seed N] [--dump DIR]\n"
               "  --no-bench  comparisons only, no timing table\n"
               "  --full-size also compare the timing table's network-sized cases, GPU vs CPU\n"
               "  --seed N    add N to every case's random seed (other inputs, same cases)\n"
               "  --dump DIR  write inputs, output gradients and CPU results (float32) with a "
               "manifest.json\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool run_bench = true, full_size = false;
  std::string dump_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-bench") {
      run_bench = false;
    } else if (a == "--full-size") {
      full_size = true;
    } else if (a == "--seed" && i + 1 < argc) {
      char* end = nullptr;
      const unsigned long v = std::strtoul(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0') {
        usage(stderr);
        return 2;
      }
      g_seed_offset = static_cast<unsigned>(v);
    } else if (a == "--dump" && i + 1 < argc) {
      dump_dir = argv[++i];
    } else if (a.compare(0, 7, "--dump=") == 0) {
      dump_dir = a.substr(7);
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }

  std::printf(
      "gpu_check: CUDA kernels (cuda/*.cu, cuBLAS) vs CPU loops (cpu/*.cc, OpenBLAS), "
      "float32, no MXNet\n");
  std::printf("tolerance per element, b the reference: |a - b| <= %g * |b| + %g * max(1, max|b|)\n",
              kRtol, kAtol);
  const std::vector<Case> cases = check_cases();
  const size_t n = cases.size();

  // CPU side: every case in float32 (what the GPU is compared with) and float64. Outputs start
  // as NaN, so an unwritten element fails; the float32 rounding must stay well inside the
  // tolerance, or a GPU comparison with it would say nothing.
  std::vector<std::vector<Tensor>> cpu(n), cpu64(n);
  std::vector<std::string> errors(n);
  int failures = 0;
  std::printf("\nCPU side (float32 and float64):\n");
  for (size_t i = 0; i < n; ++i) {
    const Case& c = cases[i];
    CpuDevice<float> dev;
    CpuDevice<double> dev64;
    errors[i] = run(dev, c, &cpu[i]);
    if (errors[i].empty()) errors[i] = run(dev64, c, &cpu64[i]);
    int64_t nonfinite = 0, elements = 0;
    for (const Tensor& t : cpu[i]) {
      nonfinite += count_nonfinite(t.v);
      elements += static_cast<int64_t>(t.v.size());
    }
    if (errors[i].empty() && nonfinite) errors[i] = "unwritten or non-finite values";
    failures += !errors[i].empty();
    std::printf("  %-26s %-31s data %-12s %7lld values  %s\n", c.name.c_str(), c.op.c_str(),
                shape_text(c.inputs[0].shape).c_str(), static_cast<long long>(elements),
                errors[i].empty() ? "ok" : ("FAILED: " + errors[i]).c_str());
  }
  if (!dump_dir.empty()) {
    if (!dump(dump_dir, cases, cpu)) {
      std::printf("gpu_check: could not write the dump to %s\n", dump_dir.c_str());
      return 1;
    }
    std::printf("  inputs and float32 CPU results written to %s/manifest.json\n", dump_dir.c_str());
  }
  std::printf(
      "\nCPU float32 vs CPU float64 (the float32 rounding alone; pass: within %g of the "
      "tolerance):\n",
      kRoundingShare);
  failures += report(cases, cpu64, cpu, errors, "f32-f64", kRoundingShare);

  // GPU side.
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e == cudaErrorNoDevice || (e == cudaSuccess && devices == 0) ||
      (e != cudaSuccess && !driver_present())) {
    std::printf(
        "\nno CUDA device is present (%s): ran the CPU side only; the GPU comparisons and "
        "timings are skipped\n",
        e == cudaSuccess         ? "no devices"
        : e == cudaErrorNoDevice ? cudaGetErrorString(e)
                                 : "no NVIDIA driver: libcuda.so.1 not found");
    std::printf(failures ? "gpu_check: FAILED (CPU side)\n" : "gpu_check: CPU side ok\n");
    return failures ? 1 : 0;
  }
  if (e != cudaSuccess) {
    std::printf(
        "\ngpu_check: the CUDA runtime cannot use the device: %s\n"
        "(an NVIDIA driver is installed; 'CUDA driver version is insufficient' means it is "
        "older than the CUDA runtime of the nvcc this was built with: build with an older "
        "toolkit, e.g. make -C operator_cxx gpu-check NVCC=/usr/local/cuda-12.4/bin/nvcc "
        "CUDA_HOME=/usr/local/cuda-12.4)\n",
        cudaGetErrorString(e));
    return 1;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::string tried;
  const std::string cublas = gpu_check::load_cublas(&tried);
  std::printf("\nGPU: %s (sm_%d%d), driver CUDA %s, runtime %s; kernels built with %s\n", prop.name,
              prop.major, prop.minor, version_text(driver).c_str(), version_text(runtime).c_str(),
              DCN_GPU_ARCH);
  if (cublas.empty()) {
    std::printf(
        "\ngpu_check: a GPU is present but cuBLAS could not be loaded (the deformable "
        "convolutions and the timing need it). Tried:\n%s"
        "Install it into the project's environment (`.venv/bin/pip install nvidia-cublas` "
        "for CUDA 13, nvidia-cublas-cu12 for a CUDA 12 driver), or point DCN_CUBLAS at a "
        "libcublas.so (DCN_SITE_DIRS at other site-packages directories).\n",
        tried.c_str());
    return 2;
  }
  const std::string cublas_version = gpu_check::cublas_version();
  std::printf("cuBLAS %s: %s\n",
              cublas_version.empty() ? "(version unknown)" : cublas_version.c_str(),
              cublas.c_str());
  cudaStream_t stream;
  if (cudaStreamCreate(&stream) != cudaSuccess) {
    std::printf("gpu_check: cudaStreamCreate failed: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 1;
  }

  std::vector<std::vector<Tensor>> gpu(n);
  std::vector<std::string> gpu_errors(n);
  bool no_image = false;
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i].empty()) {  // counted above
      gpu_errors[i] = "not run: the CPU side failed";
      continue;
    }
    CudaDevice dev(stream);
    gpu_errors[i] = run(dev, cases[i], &gpu[i]);
    cudaGetLastError();  // a failed launch is reported once; go on with the next case
    failures += !gpu_errors[i].empty();
    no_image = no_image || gpu_errors[i].find("no kernel image") != std::string::npos;
  }
  std::printf("\nGPU vs CPU, float32 (pass: within the tolerance):\n");
  failures += report(cases, cpu, gpu, gpu_errors, "gpu-cpu", 1.0);
  if (full_size) failures += compare_full_size(stream);
  if (no_image) {
    std::printf(
        "the kernels were built with %s, which has no code for this GPU: rebuild with "
        "GPU_ARCH='-gencode arch=compute_%d%d,code=sm_%d%d'\n",
        DCN_GPU_ARCH, prop.major, prop.minor, prop.major, prop.minor);
  }
  if (run_bench) failures += bench(stream);
  cudaStreamDestroy(stream);
  std::printf(failures ? "\ngpu_check: FAILED\n" : "\ngpu_check: ok\n");
  return failures ? 1 : 0;
}
