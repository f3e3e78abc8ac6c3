// cuBLAS loaded with dlopen at run time, for tests/gpu_check.cc.
//
// cuda/blas.cu calls cublasCreate_v2 / cublasSetStream_v2 / cublas{S,D}gemm_v2. The operator
// library links libcublas; the standalone check instead defines those four entry points in
// cublas_dlopen.cc as forwarders to a libcublas found at run time, so that it links (and its CPU
// side runs) on machines without cuBLAS, e.g. a CUDA toolkit without the cuBLAS package.
#pragma once

#include <string>

namespace gpu_check {

// Loads libcublas once and returns its path, or "" with the places tried in *tried. Searched in
// order: $DCN_CUBLAS (a file); the toolkit's lib64 ($CUDA_HOME, the toolkit the check was built
// with, /usr/local/cuda); the dynamic loader's path (libcublas.so.13 / .12 / .11); the
// nvidia-cublas-cu12 / -cu11 (nvidia/cublas/lib) and CUDA 13 (nvidia/cu13/lib) pip wheels
// under the Python site directories the check was built with, and $DCN_SITE_DIRS.
std::string load_cublas(std::string* tried);

// "major.minor.patch" of the loaded cuBLAS, or "" if unknown.
std::string cublas_version();

}  // namespace gpu_check
