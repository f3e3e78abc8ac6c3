// Greedy NMS with a bitmask (py-faster-rcnn's nms_kernel.cu, cleaned up).
//
// Boxes are (x1, y1, x2, y2) float32, pre-sorted by descending score, with "+1 pixel" areas.
// The kernel runs a (col_blocks, col_blocks) grid of 64-thread blocks: thread t of block (c, r)
// compares box r*64+t with the 64 boxes of column block c and writes one 64-bit word of
// "this box suppresses those" bits to mask[(r*64+t) * col_blocks + c]. The host then walks
// the boxes in score order and ORs in the rows of the boxes it keeps.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_nms.hpp"

namespace {

constexpr int kThreadsPerBlock = 64;  // bits in the mask word

inline int div_up(int m, int n) { return (m + n - 1) / n; }

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("gpu_nms: ") + what + ": " + cudaGetErrorString(err));
  }
}

// Frees on scope exit, so an exception thrown mid-way leaks no device memory.
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  explicit DeviceBuffer(size_t count) {
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&ptr), count * sizeof(T)), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Restores the caller's current device (MXNet may be using another one).
struct DeviceGuard {
  int previous = 0;
  explicit DeviceGuard(int device_id) {
    check_cuda(cudaGetDevice(&previous), "cudaGetDevice");
    if (previous != device_id) check_cuda(cudaSetDevice(device_id), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous); }
};

__device__ inline float dev_iou(const float* a, const float* b) {
  const float left = fmaxf(a[0], b[0]), right = fminf(a[2], b[2]);
  const float top = fmaxf(a[1], b[1]), bottom = fminf(a[3], b[3]);
  const float width = fmaxf(right - left + 1.f, 0.f), height = fmaxf(bottom - top + 1.f, 0.f);
  const float inter = width * height;
  const float area_a = (a[2] - a[0] + 1.f) * (a[3] - a[1] + 1.f);
  const float area_b = (b[2] - b[0] + 1.f) * (b[3] - b[1] + 1.f);
  return inter / (area_a + area_b - inter);
}

__global__ void nms_kernel(const int n_boxes, const float nms_overlap_thresh,
                           const float* __restrict__ dev_boxes,
                           unsigned long long* __restrict__ dev_mask) {
  const int row_start = blockIdx.y;
  const int col_start = blockIdx.x;
  // The host only reads mask words at or right of the diagonal block.
  if (row_start > col_start) return;

  const int row_size = min(n_boxes - row_start * kThreadsPerBlock, kThreadsPerBlock);
  const int col_size = min(n_boxes - col_start * kThreadsPerBlock, kThreadsPerBlock);

  __shared__ float block_boxes[kThreadsPerBlock * 4];
  if (threadIdx.x < col_size) {
    const int64_t src = (int64_t(kThreadsPerBlock) * col_start + threadIdx.x) * 4;
    for (int k = 0; k < 4; ++k) block_boxes[threadIdx.x * 4 + k] = dev_boxes[src + k];
  }
  __syncthreads();

  if (threadIdx.x < row_size) {
    const int cur_box_idx = kThreadsPerBlock * row_start + threadIdx.x;
    const float* cur_box = dev_boxes + int64_t(cur_box_idx) * 4;
    unsigned long long t = 0;
    const int start = (row_start == col_start) ? threadIdx.x + 1 : 0;
    for (int i = start; i < col_size; i++) {
      if (dev_iou(cur_box, block_boxes + i * 4) > nms_overlap_thresh) t |= 1ULL << i;
    }
    const int col_blocks = (n_boxes + kThreadsPerBlock - 1) / kThreadsPerBlock;
    dev_mask[int64_t(cur_box_idx) * col_blocks + col_start] = t;
  }
}

}  // namespace

void _nms(int* keep_out, int* num_out, const float* boxes_host, int boxes_num,
          float nms_overlap_thresh, int device_id) {
  *num_out = 0;
  if (boxes_num <= 0) return;
  DeviceGuard guard(device_id);

  const int col_blocks = div_up(boxes_num, kThreadsPerBlock);
  const size_t mask_words = size_t(boxes_num) * col_blocks;
  DeviceBuffer<float> boxes_dev(size_t(boxes_num) * 4);
  DeviceBuffer<unsigned long long> mask_dev(mask_words);
  check_cuda(cudaMemcpy(boxes_dev.ptr, boxes_host, size_t(boxes_num) * 4 * sizeof(float),
                        cudaMemcpyHostToDevice),
             "copy boxes to device");

  const dim3 blocks(col_blocks, col_blocks);
  const dim3 threads(kThreadsPerBlock);
  nms_kernel<<<blocks, threads>>>(boxes_num, nms_overlap_thresh, boxes_dev.ptr, mask_dev.ptr);
  check_cuda(cudaGetLastError(), "nms_kernel launch");

  std::vector<unsigned long long> mask_host(mask_words);
  check_cuda(cudaMemcpy(mask_host.data(), mask_dev.ptr, mask_words * sizeof(unsigned long long),
                        cudaMemcpyDeviceToHost),
             "copy mask to host");

  std::vector<unsigned long long> removed(col_blocks, 0ULL);
  int num_to_keep = 0;
  for (int i = 0; i < boxes_num; i++) {
    const int nblock = i / kThreadsPerBlock;
    const int inblock = i % kThreadsPerBlock;
    if (removed[nblock] & (1ULL << inblock)) continue;
    keep_out[num_to_keep++] = i;
    const unsigned long long* row = mask_host.data() + size_t(i) * col_blocks;
    for (int j = nblock; j < col_blocks; j++) removed[j] |= row[j];
  }
  *num_out = num_to_keep;
}
