// cuBLAS GEMM for the GPU drivers, on MXNet's stream.
//
// MXNet hands an external library no BLAS handle, so we create one cuBLAS handle per (host
// thread, device) on first use and bind it to the caller's stream before every call (MXNet may
// run ops of one device from several worker threads, each with its own stream; a thread-local
// handle needs no locking). Handles live until the process ends.
//
// cuBLAS headers are optional at compile time: without <cublas_v2.h> (e.g. a CUDA toolkit that
// lacks the cuBLAS dev package, where only `make cuda-check` runs) we declare the few entry points
// used here; the ABI is cuBLAS v2's.
#include <cuda_runtime.h>

#include <unordered_map>

#include "dcn/deform_conv_launchers.h"

#if __has_include(<cublas_v2.h>)
#include <cublas_v2.h>
#else
extern "C" {
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;
typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc);
cublasStatus_t cublasDgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const double* alpha,
                              const double* A, int lda, const double* B, int ldb,
                              const double* beta, double* C, int ldc);
}
#endif

namespace dcn {
namespace cuda {
namespace {

const char* status_text(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return nullptr;
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "cuBLAS: not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "cuBLAS: allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "cuBLAS: invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "cuBLAS: architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "cuBLAS: execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "cuBLAS: internal error";
    default:
      return "cuBLAS: error";
  }
}

// The calling thread's handle for the current device, bound to `stream`.
const char* handle_for(void* stream, cublasHandle_t* out) {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  auto it = handles.find(device);
  if (it == handles.end()) {
    cublasHandle_t h = nullptr;
    if (const char* err = status_text(cublasCreate_v2(&h))) return err;
    it = handles.emplace(device, h).first;
  }
  if (const char* err =
          status_text(cublasSetStream_v2(it->second, static_cast<cudaStream_t>(stream)))) {
    return err;
  }
  *out = it->second;
  return nullptr;
}

inline cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

}  // namespace

// Row-major C = op(A) . op(B) is column-major C^T = op(B)^T . op(A)^T: swap the operands.
template <>
const char* gemm<float>(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                        const float* B, int ldb, float beta, float* C, int ldc, void* stream) {
  cublasHandle_t h;
  if (const char* err = handle_for(stream, &h)) return err;
  return status_text(
      cublasSgemm_v2(h, op(tb), op(ta), N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
}

template <>
const char* gemm<double>(bool ta, bool tb, int M, int N, int K, double alpha, const double* A,
                         int lda, const double* B, int ldb, double beta, double* C, int ldc,
                         void* stream) {
  cublasHandle_t h;
  if (const char* err = handle_for(stream, &h)) return err;
  return status_text(
      cublasDgemm_v2(h, op(tb), op(ta), N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
}

}  // namespace cuda
}  // namespace dcn
