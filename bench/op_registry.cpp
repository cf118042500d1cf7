// The op registry of `climseg-bench op`: descriptor -> layer instance and input shapes.
#include <memory>

#include "bench/op.h"
#include "layers/add.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"

namespace climseg::bench {

OpInstance make_op(const OpDesc& d) {
  OpInstance op;
  const Shape in{d.n, d.h, d.w, d.c};
  auto values = [&](std::vector<Shape> shapes) {
    op.inputs = std::move(shapes);
    op.index_input.assign(op.inputs.size(), false);
  };
  if (d.op == "relu") {
    op.layer = std::make_unique<Relu>();
    values({in});
  } else if (d.op == "add") {
    op.layer = std::make_unique<Add>();
    values({in, in});
  } else if (d.op == "concat") {
    // extra = number of inputs; c is split evenly, the remainder going to the first input.
    int64_t parts = d.extra.empty() ? 2 : std::stoll(d.extra);
    CS_CHECK(parts >= 1 && parts <= d.c, "concat: extra=", d.extra, " inputs for ", d.c, " channels");
    std::vector<Shape> shapes(static_cast<size_t>(parts), Shape{d.n, d.h, d.w, d.c / parts});
    shapes[0].c += d.c % parts;
    op.layer = std::make_unique<Concat>();
    values(shapes);
  } else if (d.op == "conv2d" && d.r == 1 && d.s == 1 && d.stride == 1 && d.groups == 1 && d.dil == 1 &&
             (d.pad == "0" || d.pad == "same")) {
    op.layer = std::make_unique<PointwiseConv>(d.k, true);
    values({in});
  } else {
    CS_THROW("climseg-bench op: no layer for '", d.str(), "' in this build");
  }
  return op;
}

}  // namespace climseg::bench
