// ConvTranspose2d's own parts: its parameters (the conv's KRSC filter, (C_in, R, S, C_out / groups)) and their
// per-output-channel scaling. Everything else (shapes, TF 'SAME' padding, checks, memory, cost, the CPU and CUDA
// passes) is ConvLayer's (layers/conv2d.cpp), on the transposed ConvGeometry (kernels/conv_geometry.h).
#include "layers/conv2d.h"

namespace climseg {

std::vector<ParamSpec> ConvTranspose2d::param_specs(const std::vector<Shape>& in) const {
  const int64_t kg = cfg_.out_channels / cfg_.groups;
  // fan_in as PyTorch and TensorFlow count it for a transposed conv's kernel: (K / groups) * R * S.
  const int64_t fan_in = kg * cfg_.kernel_h * cfg_.kernel_w;
  std::vector<ParamSpec> p{
      {"weight", Shape{in.at(0).c, cfg_.kernel_h, cfg_.kernel_w, kg}, Init::he_normal, fan_in,
       ParamLayout::deconv_crsk}};
  if (cfg_.bias) p.push_back({"bias", Shape{1, 1, 1, cfg_.out_channels}, Init::zeros, fan_in});
  return p;
}

void ConvTranspose2d::scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const {
  // (C_in, R, S, K/g): input channel ci belongs to group ci / (C_in / g), whose outputs are g * K/g + k.
  const Shape ws = param_specs(in).at(0).shape;
  const int64_t cin = ws.n, kg = ws.c, rs = ws.h * ws.w, cg = cin / cfg_.groups;
  for (int64_t ci = 0; ci < cin; ++ci) {
    const double* sg = scale + (ci / cg) * kg;
    for (int64_t t = 0; t < rs; ++t) {
      double* wp = w + (ci * rs + t) * kg;
      for (int64_t k = 0; k < kg; ++k) wp[k] *= sg[k];
    }
  }
}

}  // namespace climseg
