// cuBLAS loaded with dlopen at run time (see cublas_dlopen.h): the cuBLAS v2 entry points that
// cuda/blas.cu calls, defined here as forwarders, plus the search for libcublas.
//
// Build-time defines (the Makefile's gpu-check rules): DCN_BUILD_CUDA_HOME, the toolkit the
// check was built with; DCN_BUILD_SITE_DIRS, ':'-separated Python site directories that may hold
// the nvidia-cublas-* wheels.
#include "cublas_dlopen.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#ifndef DCN_BUILD_CUDA_HOME
#define DCN_BUILD_CUDA_HOME ""
#endif
#ifndef DCN_BUILD_SITE_DIRS
#define DCN_BUILD_SITE_DIRS ""
#endif

// The C ABI of the few cuBLAS v2 functions used (cublas_api.h): opaque handle, int status.
extern "C" {
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;
typedef int cublasStatus_t;
typedef int cublasOperation_t;
struct CUstream_st;
}

namespace {

constexpr cublasStatus_t kNotInitialized = 1;  // CUBLAS_STATUS_NOT_INITIALIZED

struct Api {
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*set_stream)(cublasHandle_t, CUstream_st*) = nullptr;
  cublasStatus_t (*sgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                          const float*, const float*, int, const float*, int, const float*, float*,
                          int) = nullptr;
  cublasStatus_t (*dgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                          const double*, const double*, int, const double*, int, const double*,
                          double*, int) = nullptr;
  cublasStatus_t (*get_property)(int, int*) = nullptr;  // optional
  std::string path;
};

Api& api() {
  static Api a;
  return a;
}

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = s.find(sep, b);
    const std::string item = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
    if (!item.empty()) out.push_back(item);
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Opens `lib` (a path or a bare soname) and resolves the entry points; notes failures in *tried.
bool open_one(const std::string& lib, std::string* tried) {
  const size_t slash = lib.rfind('/');
  if (slash != std::string::npos) {
    if (!is_file(lib)) return false;
    // A wheel's libcublas needs the libcublasLt beside it: load that first, globally, in case
    // the library's own search path does not reach it.
    const std::string name = lib.substr(slash + 1);
    if (name.compare(0, 12, "libcublas.so") == 0) {
      const std::string lt = lib.substr(0, slash + 1) + "libcublasLt" + name.substr(9);
      if (is_file(lt)) dlopen(lt.c_str(), RTLD_NOW | RTLD_GLOBAL);
    }
  }
  void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    if (slash != std::string::npos) *tried += "  " + lib + ": " + dlerror() + "\n";
    return false;
  }
  Api a;
  a.create = reinterpret_cast<decltype(a.create)>(dlsym(h, "cublasCreate_v2"));
  a.set_stream = reinterpret_cast<decltype(a.set_stream)>(dlsym(h, "cublasSetStream_v2"));
  a.sgemm = reinterpret_cast<decltype(a.sgemm)>(dlsym(h, "cublasSgemm_v2"));
  a.dgemm = reinterpret_cast<decltype(a.dgemm)>(dlsym(h, "cublasDgemm_v2"));
  a.get_property = reinterpret_cast<decltype(a.get_property)>(dlsym(h, "cublasGetProperty"));
  if (!a.create || !a.set_stream || !a.sgemm || !a.dgemm) {
    *tried += "  " + lib + ": lacks the cuBLAS v2 entry points\n";
    dlclose(h);
    return false;
  }
  Dl_info info;
  a.path =
      dladdr(reinterpret_cast<void*>(a.create), &info) && info.dli_fname ? info.dli_fname : lib;
  api() = a;
  return true;
}

}  // namespace

namespace gpu_check {

std::string load_cublas(std::string* tried) {
  if (api().create) return api().path;
  const std::vector<std::string> sonames = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11",
                                            "libcublas.so"};
  std::vector<std::string> roots, sites, candidates;
  auto add = [](std::vector<std::string>* v, const std::string& s) {
    if (!s.empty() && std::find(v->begin(), v->end(), s) == v->end()) v->push_back(s);
  };
  for (const std::string& r : {env("CUDA_HOME"), env("CUDA_PATH"), std::string(DCN_BUILD_CUDA_HOME),
                               std::string("/usr/local/cuda")}) {
    add(&roots, r);
  }
  for (const std::string& s : split(env("DCN_SITE_DIRS"), ':')) add(&sites, s);
  for (const std::string& s : split(DCN_BUILD_SITE_DIRS, ':')) add(&sites, s);

  const std::string explicit_path = env("DCN_CUBLAS");
  add(&candidates, explicit_path);
  for (const std::string& root : roots) {
    for (const char* sub :
         {"/lib64/", "/lib/", "/targets/x86_64-linux/lib/", "/targets/sbsa-linux/lib/"}) {
      for (const std::string& so : sonames) add(&candidates, root + sub + so);
    }
  }
  for (const std::string& so : sonames) add(&candidates, so);  // the dynamic loader's path
  for (const std::string& site : sites) {
    for (const char* sub : {"/nvidia/cublas/lib/", "/nvidia/cu13/lib/", "/nvidia/cu12/lib/"}) {
      for (const std::string& so : sonames) add(&candidates, site + sub + so);
    }
  }
  std::string failed;
  for (const std::string& c : candidates) {
    if (open_one(c, &failed)) return api().path;
  }
  auto joined = [](const std::vector<std::string>& v) {
    std::string all;
    for (const std::string& s : v) all += (all.empty() ? "" : ", ") + s;
    return all.empty() ? std::string("(none)") : all;
  };
  *tried =
      failed + "  $DCN_CUBLAS: " +
      (explicit_path.empty() ? std::string("unset")
                             : explicit_path + (is_file(explicit_path) ? "" : " (no such file)")) +
      "\n  toolkits (lib64, lib, targets/*/lib): " + joined(roots) +
      "\n  the dynamic loader's path: libcublas.so.13, .12, .11, libcublas.so" +
      "\n  pip wheels (nvidia/cublas/lib, nvidia/cu13/lib, nvidia/cu12/lib) under: " +
      joined(sites) + "\n";
  return std::string();
}

std::string cublas_version() {
  int major = 0, minor = 0, patch = 0;
  if (!api().get_property || api().get_property(0, &major) != 0 ||
      api().get_property(1, &minor) != 0 || api().get_property(2, &patch) != 0) {
    return std::string();
  }
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace gpu_check

// The entry points cuda/blas.cu links against, forwarded to the loaded library (NOT_INITIALIZED
// before load_cublas succeeded; gpu_check never calls a GEMM then).
extern "C" {
cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  return api().create ? api().create(handle) : kNotInitialized;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, CUstream_st* stream) {
  return api().set_stream ? api().set_stream(handle, stream) : kNotInitialized;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb,
                              int m, int n, int k, const float* alpha, const float* A, int lda,
                              const float* B, int ldb, const float* beta, float* C, int ldc) {
  return api().sgemm ? api().sgemm(handle, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
                     : kNotInitialized;
}

cublasStatus_t cublasDgemm_v2(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb,
                              int m, int n, int k, const double* alpha, const double* A, int lda,
                              const double* B, int ldb, const double* beta, double* C, int ldc) {
  return api().dgemm ? api().dgemm(handle, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
                     : kNotInitialized;
}
}
