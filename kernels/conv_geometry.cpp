// The conv geometry builder and its checks (kernels/conv_geometry.h has the index math).
#include "kernels/conv_geometry.h"

#include <algorithm>
#include <sstream>

#include "engine/check.h"

namespace climseg {

namespace {

// The conv's padding along one dimension for a layer input of size `in` (see the header).
void pads_along(const ConvSpec& sp, bool transposed, int64_t in, int64_t k, int64_t st, int64_t d, int64_t pad,
                int64_t output_padding, int64_t& begin, int64_t& end) {
  if (sp.padding == PaddingMode::explicit_symmetric) {
    begin = pad;
    end = transposed ? pad - output_padding : pad;
    return;
  }
  const int64_t conv_in = transposed ? in * st : in;
  const int64_t conv_out = transposed ? in : (in + st - 1) / st;
  const int64_t total = std::max<int64_t>((conv_out - 1) * st + (k - 1) * d + 1 - conv_in, 0);
  begin = total / 2;
  end = total - begin;
}

// The transposed layer's output size along one dimension (the conv's input size).
int64_t transposed_out(const ConvSpec& sp, int64_t in, int64_t k, int64_t st, int64_t d, int64_t pad,
                       int64_t output_padding) {
  if (sp.padding == PaddingMode::tf_same) return in * st;
  return (in - 1) * st - 2 * pad + d * (k - 1) + output_padding + 1;
}

}  // namespace

void check_conv_spec(const ConvSpec& c, bool transposed, const std::string& who) {
  CS_CHECK(c.out_channels > 0, who, ": out_channels must be positive, got ", c.out_channels);
  CS_CHECK(c.kernel_h > 0 && c.kernel_w > 0, who, ": kernel must be positive, got ", c.kernel_h, "x", c.kernel_w);
  CS_CHECK(c.stride_h > 0 && c.stride_w > 0, who, ": stride must be positive, got ", c.stride_h, "x", c.stride_w);
  CS_CHECK(c.dilation_h > 0 && c.dilation_w > 0, who, ": dilation must be positive, got ", c.dilation_h, "x",
           c.dilation_w);
  CS_CHECK(c.pad_h >= 0 && c.pad_w >= 0, who, ": padding must be non-negative, got ", c.pad_h, "x", c.pad_w);
  CS_CHECK(c.groups > 0 && c.out_channels % c.groups == 0, who, ": groups (", c.groups, ") must divide out_channels (",
           c.out_channels, ")");
  if (!transposed) {
    CS_CHECK(c.output_padding_h == 0 && c.output_padding_w == 0, who, ": output_padding (", c.output_padding_h, "x",
             c.output_padding_w, ") is for transposed convolutions only");
  } else if (c.padding == PaddingMode::explicit_symmetric) {
    CS_CHECK(c.output_padding_h >= 0 && c.output_padding_w >= 0 &&
                 (c.output_padding_h < c.stride_h || c.output_padding_h < c.dilation_h) &&
                 (c.output_padding_w < c.stride_w || c.output_padding_w < c.dilation_w),
             who, ": output_padding (", c.output_padding_h, "x", c.output_padding_w,
             ") must be non-negative and smaller than either the stride or the dilation");
  }
}

Pads conv_pads(const ConvSpec& s, bool transposed, int64_t in_h, int64_t in_w) {
  Pads p;
  pads_along(s, transposed, in_h, s.kernel_h, s.stride_h, s.dilation_h, s.pad_h, s.output_padding_h, p.top, p.bottom);
  pads_along(s, transposed, in_w, s.kernel_w, s.stride_w, s.dilation_w, s.pad_w, s.output_padding_w, p.left, p.right);
  return p;
}

std::string ConvGeometry::str() const {
  std::ostringstream o;
  o << "X(" << n << "," << in_h << "," << in_w << "," << in_c << ") F(" << out_c << "," << kernel_h << "," << kernel_w
    << "," << (groups > 0 ? in_c / groups : 0) << ") Y(" << n << "," << out_h << "," << out_w << "," << out_c
    << ") stride " << stride_h << "x" << stride_w << " dilation " << dilation_h << "x" << dilation_w << " groups "
    << groups << " pad " << pad_top << "," << pad_left;
  return o.str();
}

ConvGeometry conv_geometry(const ConvSpec& s, bool transposed, const Shape& x, const std::string& who) {
  CS_CHECK(x.c > 0 && x.h > 0 && x.w > 0 && x.n > 0, who, ": empty input ", x.str());
  CS_CHECK(x.c % s.groups == 0, who, ": groups (", s.groups, ") must divide the input channels (", x.c, ")");
  const Pads p = conv_pads(s, transposed, x.h, x.w);
  ConvGeometry g;
  g.n = x.n;
  g.kernel_h = s.kernel_h, g.kernel_w = s.kernel_w;
  g.stride_h = s.stride_h, g.stride_w = s.stride_w;
  g.dilation_h = s.dilation_h, g.dilation_w = s.dilation_w;
  g.pad_top = p.top, g.pad_left = p.left;
  g.groups = s.groups;
  g.transposed = transposed;
  if (!transposed) {
    const int64_t eh = s.dilation_h * (s.kernel_h - 1) + 1, ew = s.dilation_w * (s.kernel_w - 1) + 1;
    CS_CHECK(x.h + p.top + p.bottom >= eh && x.w + p.left + p.right >= ew, who, ": input ", x.str(), " padded by (",
             p.top, ",", p.bottom, ")x(", p.left, ",", p.right, ") is smaller than the dilated kernel ", eh, "x", ew);
    g.in_h = x.h, g.in_w = x.w, g.in_c = x.c;
    g.out_h = (x.h + p.top + p.bottom - eh) / s.stride_h + 1;
    g.out_w = (x.w + p.left + p.right - ew) / s.stride_w + 1;
    g.out_c = s.out_channels;
  } else {
    g.in_h = transposed_out(s, x.h, s.kernel_h, s.stride_h, s.dilation_h, s.pad_h, s.output_padding_h);
    g.in_w = transposed_out(s, x.w, s.kernel_w, s.stride_w, s.dilation_w, s.pad_w, s.output_padding_w);
    CS_CHECK(g.in_h > 0 && g.in_w > 0, who, ": input ", x.str(), " gives an empty output (padding ", s.pad_h, "x",
             s.pad_w, " too large)");
    g.in_c = s.out_channels;
    g.out_h = x.h, g.out_w = x.w, g.out_c = x.c;
  }
  return g;
}

}  // namespace climseg
