// The one conv geometry builder (kernels/conv_geometry.h): conv_geometry() for convolutions and transposed
// convolutions, their explicit and TF 'SAME' padding, the reverse-dimensions mapping of a transposed layer's passes
// onto the conv's, and check_conv_spec(). Hand-worked numbers; the layers' numerics on these geometries are
// covered by tests/grad/test_conv_grads.cpp and tests/unit/test_cudnn_conv_geometry.cpp.
#include <catch2/catch.hpp>
#include <string>

#include "kernels/conv_geometry.h"

using namespace climseg;

namespace {

ConvSpec spec(int64_t k_out, int64_t kernel, int64_t stride, int64_t pad, PaddingMode mode, int64_t dilation = 1,
              int64_t output_padding = 0, int64_t groups = 1) {
  ConvSpec s;
  s.out_channels = k_out, s.groups = groups, s.padding = mode;
  s.kernel_h = s.kernel_w = kernel, s.stride_h = s.stride_w = stride, s.dilation_h = s.dilation_w = dilation;
  s.pad_h = s.pad_w = pad, s.output_padding_h = s.output_padding_w = output_padding;
  return s;
}

// Every field but `transposed`.
void require_same_conv(const ConvGeometry& a, const ConvGeometry& b) {
  INFO(a.str() << " vs " << b.str());
  REQUIRE(a.in_shape() == b.in_shape());
  REQUIRE(a.out_shape() == b.out_shape());
  REQUIRE(a.filter_shape() == b.filter_shape());
  REQUIRE((a.stride_h == b.stride_h && a.stride_w == b.stride_w));
  REQUIRE((a.dilation_h == b.dilation_h && a.dilation_w == b.dilation_w));
  REQUIRE((a.pad_top == b.pad_top && a.pad_left == b.pad_left));
  REQUIRE(a.groups == b.groups);
}

constexpr auto kExplicit = PaddingMode::explicit_symmetric;
constexpr auto kSame = PaddingMode::tf_same;

}  // namespace

TEST_CASE("conv geometry: a conv's sizes and padding, explicit and TF 'SAME'", "[unit][conv]") {
  // Explicit k3 s2 p1 d2 on 9x10: (9 + 2 - 4 - 1) / 2 + 1 = 4, (10 + 2 - 5) / 2 + 1 = 4.
  ConvGeometry g = conv_geometry(spec(6, 3, 2, 1, kExplicit, 2, 0, 2), false, Shape{2, 9, 10, 4}, "conv2d");
  REQUIRE_FALSE(g.transposed);
  REQUIRE(g.in_shape() == Shape{2, 9, 10, 4});
  REQUIRE(g.out_shape() == Shape{2, 4, 4, 6});
  REQUIRE(g.filter_shape() == Shape{6, 3, 3, 2});
  REQUIRE((g.pad_top == 1 && g.pad_left == 1 && g.groups == 2 && g.dilation_h == 2));
  REQUIRE(g.layer_in() == g.in_shape());
  REQUIRE(g.layer_out() == g.out_shape());
  // 'SAME' k3 s2: out = ceil(in / 2); 8 rows pad (0, 1), 7 columns (1, 1).
  g = conv_geometry(spec(4, 3, 2, 0, kSame), false, Shape{1, 8, 7, 2}, "conv2d");
  REQUIRE(g.out_shape() == Shape{1, 4, 4, 4});
  REQUIRE((g.pad_top == 0 && g.pad_left == 1));
  Pads p = conv_pads(spec(4, 3, 2, 0, kSame), false, 8, 7);
  REQUIRE((p.top == 0 && p.bottom == 1 && p.left == 1 && p.right == 1));
  // 'SAME' k7 s2 on 96: total 5 -> (2, 3); 'SAME' rate 12 on 12: (12, 12).
  p = conv_pads(spec(4, 7, 2, 0, kSame), false, 96, 144);
  REQUIRE((p.top == 2 && p.bottom == 3));
  p = conv_pads(spec(4, 3, 1, 0, kSame, 12), false, 12, 18);
  REQUIRE((p.top == 12 && p.bottom == 12));
  REQUIRE(conv_geometry(spec(4, 3, 1, 0, kSame, 12), false, Shape{1, 12, 18, 2}, "c").out_shape() ==
          Shape{1, 12, 18, 4});

  REQUIRE_THROWS_WITH(conv_geometry(spec(4, 5, 1, 0, kExplicit), false, Shape{1, 3, 3, 2}, "c5"),
                      Catch::Contains("c5: input") && Catch::Contains("smaller than the dilated kernel"));
  REQUIRE_THROWS_WITH(conv_geometry(spec(6, 3, 1, 1, kExplicit, 1, 0, 3), false, Shape{1, 3, 3, 4}, "g"),
                      Catch::Contains("must divide the input channels"));
  REQUIRE_THROWS_WITH(conv_geometry(spec(6, 3, 1, 1, kExplicit), false, Shape{0, 3, 3, 4}, "e"),
                      Catch::Contains("empty input"));
}

TEST_CASE("conv geometry: a transposed conv is the conv mapping its output back to its input", "[unit][conv]") {
  struct Case {
    ConvSpec s;
    Shape x;
    int64_t out_h, out_w, pad_top, pad_bottom;  // the layer's output size; the conv's padding along h
  };
  const Case c = GENERATE(
      // PyTorch k3 s2 p1 op1 (DeepLabv3+): exactly 2x, the conv pads (1, 0).
      Case{spec(3, 3, 2, 1, kExplicit, 1, 1), Shape{2, 5, 6, 4}, 10, 12, 1, 0},
      // op 0: 2x - 1; k4 s2 p1: 2x.
      Case{spec(3, 3, 2, 1, kExplicit, 1, 0), Shape{2, 5, 6, 4}, 9, 11, 1, 1},
      Case{spec(3, 4, 2, 1, kExplicit, 1, 0), Shape{2, 5, 6, 4}, 10, 12, 1, 1},
      // dilated k3 s2 d2 p2 op1: (5 - 1) 2 - 4 + 4 + 1 + 1 = 10.
      Case{spec(3, 3, 2, 2, kExplicit, 2, 1), Shape{2, 5, 6, 4}, 10, 12, 2, 1},
      // TF 'SAME': out = in * stride, the conv's 'SAME' padding on out: total = max((in - 1) s + d (k - 1) + 1 -
      // in s, 0). k3 s2: total 1 -> (0, 1), the corner opposite to PyTorch's; k4 s2: 2 -> (1, 1); k3 s1: (1, 1);
      // k5 s3: 2 -> (1, 1); k2 s2: 0.
      Case{spec(3, 3, 2, 0, kSame), Shape{2, 5, 6, 4}, 10, 12, 0, 1},
      Case{spec(3, 4, 2, 0, kSame), Shape{2, 5, 6, 4}, 10, 12, 1, 1},
      Case{spec(3, 3, 1, 0, kSame), Shape{2, 5, 6, 4}, 5, 6, 1, 1},
      Case{spec(3, 5, 3, 0, kSame), Shape{2, 5, 6, 4}, 15, 18, 1, 1},
      Case{spec(3, 2, 2, 0, kSame), Shape{1, 1, 1, 4}, 2, 2, 0, 0});
  const ConvGeometry g = conv_geometry(c.s, true, c.x, "deconv2d");
  INFO(g.str());
  REQUIRE(g.transposed);
  // The layer's input is the conv's Y, its output the conv's X; the weight (C_in, R, S, C_out) is the conv's filter.
  REQUIRE(g.layer_in() == c.x);
  REQUIRE(g.out_shape() == c.x);
  REQUIRE(g.layer_out() == Shape{c.x.n, c.out_h, c.out_w, c.s.out_channels});
  REQUIRE(g.in_shape() == g.layer_out());
  REQUIRE(g.filter_shape() == Shape{c.x.c, c.s.kernel_h, c.s.kernel_w, c.s.out_channels});
  REQUIRE(g.pad_top == c.pad_top);
  const Pads p = conv_pads(c.s, true, c.x.h, c.x.w);
  REQUIRE((p.top == c.pad_top && p.bottom == c.pad_bottom));
  // The conv's size rule maps the layer's output back to its input with those pads.
  REQUIRE((g.in_h + p.top + p.bottom - g.dilation_h * (g.kernel_h - 1) - 1) / g.stride_h + 1 == g.out_h);
  // Reverse dimensions: the same numbers as the forward conv with this spec (out_channels = the transposed layer's
  // input channels, no output_padding) applied to the transposed layer's output.
  ConvSpec fwd = c.s;
  fwd.out_channels = c.x.c;
  fwd.output_padding_h = fwd.output_padding_w = 0;
  const ConvGeometry f = conv_geometry(fwd, false, g.layer_out(), "conv2d");
  require_same_conv(g, f);
  REQUIRE(g.str() == f.str());  // the cuDNN plans are shared: the key is the conv's
}

TEST_CASE("conv geometry: a transposed layer's passes are the conv's passes reversed", "[unit][conv]") {
  const ConvGeometry g = conv_geometry(spec(3, 3, 2, 1, kExplicit, 1, 1), false, Shape{1, 10, 12, 4}, "c");
  ConvGeometry t = conv_geometry(spec(4, 3, 2, 1, kExplicit, 1, 1), true, Shape{1, 5, 6, 3}, "t");
  for (ConvPass p : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter})
    REQUIRE(g.conv_pass(p) == p);
  REQUIRE(t.conv_pass(ConvPass::forward) == ConvPass::backward_data);
  REQUIRE(t.conv_pass(ConvPass::backward_data) == ConvPass::forward);
  REQUIRE(t.conv_pass(ConvPass::backward_filter) == ConvPass::backward_filter);
  REQUIRE(t.layer_in() == Shape{1, 5, 6, 3});
  REQUIRE(t.layer_out() == Shape{1, 10, 12, 4});
  t.transposed = false;  // the same conv, run forwards: the roles swap back
  REQUIRE(t.layer_in() == Shape{1, 10, 12, 4});
  REQUIRE(t.conv_pass(ConvPass::forward) == ConvPass::forward);
}

TEST_CASE("conv spec checks: shared by Conv2d and ConvTranspose2d", "[unit][conv]") {
  for (bool transposed : {false, true}) {
    INFO("transposed " << transposed);
    const ConvSpec ok = spec(4, 3, 2, 1, kExplicit, 1, transposed ? 1 : 0);
    REQUIRE_NOTHROW(check_conv_spec(ok, transposed, "x"));
    ConvSpec s = ok;
    s.out_channels = 0;
    REQUIRE_THROWS_WITH(check_conv_spec(s, transposed, "lay"), Catch::Contains("lay: out_channels must be positive"));
    s = ok;
    s.kernel_w = 0;
    REQUIRE_THROWS_WITH(check_conv_spec(s, transposed, "x"), Catch::Contains("kernel must be positive"));
    s = ok;
    s.stride_h = 0;
    REQUIRE_THROWS_WITH(check_conv_spec(s, transposed, "x"), Catch::Contains("stride must be positive"));
    s = ok;
    s.dilation_h = -1;
    REQUIRE_THROWS_WITH(check_conv_spec(s, transposed, "x"), Catch::Contains("dilation must be positive"));
    s = ok;
    s.pad_w = -1;
    REQUIRE_THROWS_WITH(check_conv_spec(s, transposed, "x"), Catch::Contains("padding must be non-negative"));
    s = ok;
    s.groups = 3;
    REQUIRE_THROWS_WITH(check_conv_spec(s, transposed, "x"), Catch::Contains("groups (3) must divide out_channels"));
  }
  // output_padding: none on a conv; on a transposed conv smaller than the stride or the dilation (PyTorch), and
  // ignored with 'SAME'.
  REQUIRE_THROWS_WITH(check_conv_spec(spec(4, 3, 2, 1, kExplicit, 1, 1), false, "x"),
                      Catch::Contains("for transposed convolutions only"));
  REQUIRE_THROWS_WITH(check_conv_spec(spec(4, 3, 2, 1, kExplicit, 1, 2), true, "x"),
                      Catch::Contains("smaller than either the stride or the dilation"));
  REQUIRE_NOTHROW(check_conv_spec(spec(4, 3, 1, 1, kExplicit, 2, 1), true, "x"));  // < dilation
  REQUIRE_NOTHROW(check_conv_spec(spec(4, 3, 2, 1, kSame, 1, 2), true, "x"));
  REQUIRE_THROWS_WITH(conv_geometry(spec(4, 1, 1, 3, kExplicit), true, Shape{1, 2, 2, 4}, "t"),
                      Catch::Contains("gives an empty output"));
}
