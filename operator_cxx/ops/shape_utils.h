// Shape and dtype helpers for the op drivers' checks and messages (host only, no lib_api.h).
#pragma once

#include <string>
#include <vector>

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

}  // namespace dcn
