// Attributes and shapes of DeformableConvolution / ModulatedDeformableConvolution.
//
// MXNet hands a library op its attributes as the Python str() of each value: kernel='(3, 3)' or
// '[3, 3]', no_bias='True' / 'False' / '1' / '0'. They are parsed once into ConvGeom; the shapes
// of the actual tensors are checked once into ConvShape. Both are plain structs usable on the host
// only (the CUDA launchers receive DeformArgs, see deform_im2col.h).
//
// Attribute table (mirrored in the docstrings of lib/ops/__init__.py):
//
//   name                  default   meaning
//   kernel                required  (kh, kw) kernel size; a single int k means (k, k)
//   num_filter            required  F, number of output channels
//   stride                (1, 1)    (sh, sw)
//   dilate                (1, 1)    (dh, dw) dilation of the kernel taps
//   pad                   (0, 0)    (ph, pw) implicit zero padding
//   num_group             1         weight groups; C and F must be divisible by it
//   num_deformable_group  1         offset (and mask) groups; C must be divisible by it
//   no_bias               False     drop the bias input
//   workspace             1024      cap in MB on the temporary memory of one call (padded images,
//                                   column buffer); the op then processes fewer images / output
//                                   rows at a time, and reports an error if one row does not fit
//   layout                None      None or 'NCHW' (the only layout implemented)
//   im2col_step           64        most images per im2col + GEMM chunk; S = min(im2col_step, N)
//                                   must divide N (as in the original); large images are
//                                   processed one image and a few output rows at a time anyway
//
// Offsets: (N, dg * 2 * kh * kw, Ho, Wo); for deformable group g and tap (i, j), channel
// g*2*kh*kw + 2*(i*kw + j) is dy and the next channel dx, i.e. [y0, x0, y1, x1, ...] per group.
// Mask (modulated op only): (N, dg * kh * kw, Ho, Wo), channel g*kh*kw + i*kw + j.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace dcn {

using AttrMap = std::unordered_map<std::string, std::string>;

struct AttrSpec {
  const char* name;
  const char* default_value;  // nullptr: required
  const char* doc;
};

// The one table of attributes; parse_conv_geom rejects names that are not in it.
static const AttrSpec kConvAttrs[] = {
    {"kernel", nullptr, "(kh, kw) kernel size"},
    {"num_filter", nullptr, "number of output channels"},
    {"stride", "(1, 1)", "(sh, sw)"},
    {"dilate", "(1, 1)", "(dh, dw)"},
    {"pad", "(0, 0)", "(ph, pw) zero padding"},
    {"num_group", "1", "weight groups"},
    {"num_deformable_group", "1", "offset/mask groups"},
    {"no_bias", "False", "drop the bias input"},
    {"workspace", "1024", "cap in MB on the temporary memory of one call"},
    {"layout", "None", "None or 'NCHW'"},
    {"im2col_step", "64", "most images per im2col + GEMM chunk (S = min(step, N), N % S == 0)"},
};

struct ConvGeom {
  int kh = 0, kw = 0;  // kernel
  int sh = 1, sw = 1;  // stride
  int ph = 0, pw = 0;  // pad
  int dh = 1, dw = 1;  // dilate
  int num_filter = 0;
  int groups = 1;   // num_group
  int dgroups = 1;  // num_deformable_group
  bool no_bias = false;
  int64_t workspace_mb = 1024;
  int im2col_step = 64;
  bool modulated = false;  // set by the op, not an attribute

  int taps() const { return kh * kw; }
  // data, offset, [mask], weight, [bias]
  int num_inputs() const { return 3 + (modulated ? 1 : 0) + (no_bias ? 0 : 1); }
  int mask_index() const { return modulated ? 2 : -1; }
  int weight_index() const { return modulated ? 3 : 2; }
  int bias_index() const { return no_bias ? -1 : weight_index() + 1; }
};

// Shapes of one call; every product used as an extent fits in int64.
struct ConvShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // data
  int64_t F = 0, Ho = 0, Wo = 0;       // output
};

inline std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// Parses one integer; rejects trailing garbage, floats and values outside [lo, hi].
inline bool parse_int(const std::string& text, int64_t lo, int64_t hi, int64_t* out) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(t.c_str(), &end, 10);
  if (errno != 0 || end == t.c_str() || *end != '\0') return false;
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

// "(3, 3)", "[3, 3]", "(3,)" or "3" -> {3, 3} / {3}. Returns false on anything else.
inline bool parse_tuple(const std::string& text, std::vector<int64_t>* out) {
  std::string t = trim(text);
  out->clear();
  if (!t.empty() && (t.front() == '(' || t.front() == '[')) {
    const char close = t.front() == '(' ? ')' : ']';
    if (t.back() != close) return false;
    t = t.substr(1, t.size() - 2);
  }
  std::stringstream ss(t);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (trim(item).empty()) {
      if (ss.eof()) break;  // trailing comma of "(3,)"
      return false;
    }
    int64_t v;
    if (!parse_int(item, INT64_MIN, INT64_MAX, &v)) return false;
    out->push_back(v);
  }
  return !out->empty();
}

// 'True' / 'true' / '1' -> true, 'False' / 'false' / '0' -> false.
inline bool parse_bool(const std::string& text, bool* out) {
  const std::string t = trim(text);
  if (t == "True" || t == "true" || t == "1") {
    *out = true;
    return true;
  }
  if (t == "False" || t == "false" || t == "0") {
    *out = false;
    return true;
  }
  return false;
}

inline const std::string* find_attr(const AttrMap& attrs, const char* name) {
  auto it = attrs.find(name);
  return it == attrs.end() ? nullptr : &it->second;
}

// Parses a pair attribute ("(a, b)" or a single int broadcast to both) with each value in [lo, hi].
inline bool parse_pair(const AttrMap& attrs, const char* name, const char* dflt, int64_t lo,
                       int64_t hi, int* a, int* b, std::string* err) {
  const std::string* v = find_attr(attrs, name);
  const std::string text = v ? *v : std::string(dflt ? dflt : "");
  std::vector<int64_t> t;
  if (!parse_tuple(text, &t) || t.size() > 2) {
    *err = std::string(name) + " must be a pair of integers like (3, 3), got '" + text + "'";
    return false;
  }
  if (t.size() == 1) t.push_back(t[0]);
  for (int64_t x : t) {
    if (x < lo || x > hi) {
      *err = std::string(name) + " values must be in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "], got '" + text + "'";
      return false;
    }
  }
  *a = static_cast<int>(t[0]);
  *b = static_cast<int>(t[1]);
  return true;
}

inline bool parse_int_attr(const AttrMap& attrs, const char* name, const char* dflt, int64_t lo,
                           int64_t hi, int64_t* out, std::string* err) {
  const std::string* v = find_attr(attrs, name);
  const std::string text = v ? *v : std::string(dflt ? dflt : "");
  if (!parse_int(text, lo, hi, out)) {
    *err = std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "], got '" + text + "'";
    return false;
  }
  return true;
}

// Parses and validates every attribute; on failure returns false with a message in *err.
inline bool parse_conv_geom(const AttrMap& attrs, bool modulated, ConvGeom* g, std::string* err) {
  for (const auto& kv : attrs) {
    // MXNet may attach internal attributes such as __lr_mult__; those are not ours to check.
    if (kv.first.size() >= 2 && kv.first.compare(0, 2, "__") == 0) continue;
    bool known = false;
    for (const AttrSpec& spec : kConvAttrs) known = known || kv.first == spec.name;
    if (!known) {
      *err = "unknown attribute '" + kv.first + "'; known: ";
      for (const AttrSpec& spec : kConvAttrs) *err += std::string(spec.name) + " ";
      return false;
    }
  }
  for (const AttrSpec& spec : kConvAttrs) {
    if (spec.default_value == nullptr && find_attr(attrs, spec.name) == nullptr) {
      *err = std::string("required attribute '") + spec.name + "' (" + spec.doc + ") is missing";
      return false;
    }
  }
  // Bounds keep every derived product (taps, output sizes, channel counts) far from overflow.
  const int64_t kBig = 1 << 20;
  int64_t v;
  g->modulated = modulated;
  if (!parse_pair(attrs, "kernel", nullptr, 1, 1024, &g->kh, &g->kw, err)) return false;
  if (!parse_pair(attrs, "stride", "(1, 1)", 1, kBig, &g->sh, &g->sw, err)) return false;
  if (!parse_pair(attrs, "dilate", "(1, 1)", 1, kBig, &g->dh, &g->dw, err)) return false;
  if (!parse_pair(attrs, "pad", "(0, 0)", 0, kBig, &g->ph, &g->pw, err)) return false;
  if (!parse_int_attr(attrs, "num_filter", nullptr, 1, INT_MAX, &v, err)) return false;
  g->num_filter = static_cast<int>(v);
  if (!parse_int_attr(attrs, "num_group", "1", 1, INT_MAX, &v, err)) return false;
  g->groups = static_cast<int>(v);
  if (!parse_int_attr(attrs, "num_deformable_group", "1", 1, INT_MAX, &v, err)) return false;
  g->dgroups = static_cast<int>(v);
  if (!parse_int_attr(attrs, "im2col_step", "64", 1, INT_MAX, &v, err)) return false;
  g->im2col_step = static_cast<int>(v);
  if (!parse_int_attr(attrs, "workspace", "1024", 1, int64_t(1) << 40, &v, err)) return false;
  g->workspace_mb = v;
  const std::string* nb = find_attr(attrs, "no_bias");
  if (nb && !parse_bool(*nb, &g->no_bias)) {
    *err = "no_bias must be True or False, got '" + *nb + "'";
    return false;
  }
  const std::string* layout = find_attr(attrs, "layout");
  if (layout && trim(*layout) != "None" && trim(*layout) != "NCHW") {
    *err = "layout must be None or NCHW (the only layout implemented), got '" + *layout + "'";
    return false;
  }
  if (g->num_filter % g->groups != 0) {
    *err = "num_filter " + std::to_string(g->num_filter) + " must be divisible by num_group " +
           std::to_string(g->groups);
    return false;
  }
  return true;
}

inline int64_t conv_out_size(int64_t in, int k, int pad, int stride, int dilate) {
  const int64_t span =
      in + 2 * static_cast<int64_t>(pad) - static_cast<int64_t>(dilate) * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// Expected shapes of every input and of the output, from the data shape (N, C, H, W).
struct ConvShapes {
  ConvShape s;
  std::vector<int64_t> data, offset, mask, weight, bias, out;
};

// Checks the data shape against the attributes and derives every other shape.
inline bool conv_shapes(const ConvGeom& g, const std::vector<int64_t>& data, ConvShapes* r,
                        std::string* err) {
  if (data.size() != 4) {
    *err = "data must be 4-D (N, C, H, W), got shape " + shape_str(data);
    return false;
  }
  for (int64_t d : data) {
    if (d < 0) {
      *err = "data shape " + shape_str(data) + " has a negative dimension";
      return false;
    }
  }
  ConvShape& s = r->s;
  s.N = data[0];
  s.C = data[1];
  s.H = data[2];
  s.W = data[3];
  s.F = g.num_filter;
  if (s.C <= 0 || s.H <= 0 || s.W <= 0) {
    *err = "data shape " + shape_str(data) + " must have C, H, W > 0";
    return false;
  }
  if ((s.H + 3) * (s.W + 2) > INT_MAX) {  // pixels of the zero-padded copies are int-indexed
    *err = "an input plane of " + std::to_string(s.H) + "x" + std::to_string(s.W) +
           " exceeds INT_MAX elements";
    return false;
  }
  if (s.C % g.groups != 0) {
    *err = "data channels " + std::to_string(s.C) + " must be divisible by num_group " +
           std::to_string(g.groups);
    return false;
  }
  if (s.C % g.dgroups != 0) {
    *err = "data channels " + std::to_string(s.C) + " must be divisible by num_deformable_group " +
           std::to_string(g.dgroups);
    return false;
  }
  s.Ho = conv_out_size(s.H, g.kh, g.ph, g.sh, g.dh);
  s.Wo = conv_out_size(s.W, g.kw, g.pw, g.sw, g.dw);
  if (s.Ho <= 0 || s.Wo <= 0) {
    *err = "output size (" + std::to_string(s.Ho) + ", " + std::to_string(s.Wo) +
           ") must be positive: input (" + std::to_string(s.H) + ", " + std::to_string(s.W) +
           ") is too small for kernel (" + std::to_string(g.kh) + ", " + std::to_string(g.kw) +
           "), pad (" + std::to_string(g.ph) + ", " + std::to_string(g.pw) + "), dilate (" +
           std::to_string(g.dh) + ", " + std::to_string(g.dw) + ")";
    return false;
  }
  if (s.Ho * s.Wo > INT_MAX) {
    *err = "an output plane of " + std::to_string(s.Ho) + "x" + std::to_string(s.Wo) +
           " exceeds INT_MAX elements";
    return false;
  }
  if (s.N > 0) {
    const int64_t step = std::min<int64_t>(g.im2col_step, s.N);
    if (s.N % step != 0) {
      *err = "batch size " + std::to_string(s.N) + " must be divisible by im2col_step " +
             std::to_string(step) + " (the op uses min(im2col_step, N))";
      return false;
    }
  }
  const int64_t taps = g.taps();
  r->data = data;
  r->offset = {s.N, g.dgroups * 2 * taps, s.Ho, s.Wo};
  r->mask = {s.N, g.dgroups * taps, s.Ho, s.Wo};
  r->weight = {s.F, s.C / g.groups, g.kh, g.kw};
  r->bias = {s.F};
  r->out = {s.N, s.F, s.Ho, s.Wo};
  return true;
}

}  // namespace dcn
