// Shared by the CPU (g++) and CUDA (nvcc) halves of the operator library.
//
// Per-element math lives in headers as DCN_HOST_DEVICE_INLINE templates on T, so the float64 CPU
// tests exercise exactly the arithmetic the CUDA kernels run. Under nvcc this header stays free of
// lib_api.h (which pulls in curand there); the g++ side additionally gets DCN_CHECK, except with
// -DDCN_STANDALONE (tests/gpu_check.cc and the CPU loops it links, built without MXNet).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DCN_HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#define DCN_DEVICE_INLINE __device__ __forceinline__
#else
#define DCN_HOST_DEVICE_INLINE inline
#define DCN_DEVICE_INLINE inline
#endif

#if defined(__CUDA_ARCH__)
#define DCN_UNROLL _Pragma("unroll")
#else
#define DCN_UNROLL
#endif

namespace dcn {

// Flat indices are 64-bit everywhere: N*C*H*W of a detection feature map passes INT_MAX easily.
using index_t = int64_t;

#if defined(__CUDACC__)
// Scatter-add used by the CUDA backward kernels. The CPU code never needs it: it partitions the
// work so that no two threads write the same element (deterministic, race free).
template <typename T>
DCN_DEVICE_INLINE void atomic_add(T* address, T val) {
  atomicAdd(address, val);
}

namespace cuda {
// Threads per block of every kernel here.
constexpr int kThreads = 256;

// Blocks for n elements. Grid-stride loops cover any n; more blocks than this only adds
// scheduling overhead.
inline unsigned int grid_for(index_t n) {
  const index_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < (1 << 16) ? blocks : (1 << 16));
}
}  // namespace cuda
#endif

}  // namespace dcn

#if !defined(__CUDACC__) && !defined(DCN_STANDALONE)
#include <sstream>
#include <vector>

#include "lib_api.h"

namespace dcn {

// MXNet appends every message of MX_ERROR_MSG to a process-wide list that is never cleared, and
// prints the whole list with each failure. A new failure therefore first drops the messages of
// earlier (already reported) failures, so that an error shows only its own cause. MXerrorMsgs is
// a standard-layout class whose only member is that vector, hence the cast.
inline std::stringstream& fresh_error_msg(const char* file, int line) {
  auto* msgs = reinterpret_cast<std::vector<std::stringstream*>*>(mxnet::ext::MXerrorMsgs::get());
  for (std::stringstream* m : *msgs) delete m;
  msgs->clear();
  return mxnet::ext::MXerrorMsgs::get()->add(file, line);
}

// Collects an error message for MXNet and converts to MX_FAIL, so that a check reads
//   DCN_CHECK(c % groups == 0) << "channels " << c << " not divisible by num_group " << groups;
class FailStream {
 public:
  explicit FailStream(std::stringstream& s) : s_(s) {}
  template <typename V>
  FailStream& operator<<(const V& v) {
    s_ << v;
    return *this;
  }
  operator mxnet::ext::MXReturnValue() const { return mxnet::ext::MX_FAIL; }  // NOLINT

 private:
  std::stringstream& s_;
};

}  // namespace dcn

// Returns MX_FAIL from the enclosing function (with the streamed message) when cond is false.
#define DCN_CHECK(cond) \
  if (cond) {           \
  } else                \
    return ::dcn::FailStream(::dcn::fresh_error_msg(__FILE__, __LINE__))
#endif
