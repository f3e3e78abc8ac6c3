// Shape and dtype helpers for the op drivers' checks and messages (host only: ops/*.cc).
#pragma once

#include <string>
#include <vector>

#include "dcn/common.h"

namespace dcn {

// MXNet passes an unknown dimension as (unsigned)-1 and an unknown shape as an empty vector.
constexpr unsigned kUnknownDim = 0xFFFFFFFFu;

// Names of MXNet's dtype codes (mshadow order), for error messages.
inline const char* dtype_name(int t) {
  switch (t) {
    case 0: return "float32";
    case 1: return "float64";
    case 2: return "float16";
    case 3: return "uint8";
    case 4: return "int32";
    case 5: return "int8";
    case 6: return "int64";
    default: return "unknown";
  }
}

// "(2, 3, ?, 5)" with unknown dimensions as "?".
inline std::string dims_str(const std::vector<unsigned>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    r += (i ? ", " : "") + (s[i] == kUnknownDim ? std::string("?") : std::to_string(s[i]));
  }
  return r + (s.size() == 1 ? ",)" : ")");
}

// True when the shape and every one of its dimensions are known.
inline bool fully_known(const std::vector<unsigned>& s) {
  if (s.empty()) return false;
  for (unsigned d : s) {
    if (d == kUnknownDim) return false;
  }
  return true;
}

// inferType of every op here: one float dtype for all inputs and the output, decided by the first
// known one (inputs first, then the output). Inputs of another dtype, or a non-float dtype, fail
// with a message naming the op and the input.
inline mxnet::ext::MXReturnValue infer_float_dtype(const std::string& op,
                                                    const std::vector<std::string>& names,
                                                    std::vector<int>* in_types,
                                                    std::vector<int>* out_types) {
  DCN_CHECK(in_types->size() == names.size())
      << op << ": expected " << names.size() << " inputs, got " << in_types->size();
  int dtype = -1;
  for (int t : *in_types) {
    if (dtype == -1 && t != -1) dtype = t;
  }
  if (dtype == -1 && !out_types->empty()) dtype = (*out_types)[0];
  if (dtype == -1) return mxnet::ext::MX_SUCCESS;  // nothing known yet
  for (size_t k = 0; k < names.size(); ++k) {
    const int t = (*in_types)[k];
    DCN_CHECK(t == -1 || t == dtype)
        << op << ": " << names[k] << " dtype " << dtype_name(t) << " differs from "
        << dtype_name(dtype);
  }
  DCN_CHECK(dtype == mxnet::ext::kFloat32 || dtype == mxnet::ext::kFloat64)
      << op << ": supports float32 and float64, got " << dtype_name(dtype);
  for (int& t : *in_types) t = dtype;
  out_types->assign(1, dtype);
  return mxnet::ext::MX_SUCCESS;
}

}  // namespace dcn
