#include "models/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <type_traits>

#include "engine/check.h"
#include "engine/philox.h"
#include "layers/add.h"
#include "layers/affine.h"
#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/dropout.h"
#include "layers/relu.h"
#include "models/builder.h"

namespace climseg {

std::vector<std::string> model_names() { return {"deeplabv3plus", "tiramisu", "deepcam"}; }

ModelConfig ModelConfig::defaults(const std::string& name) {
  ModelConfig m;
  m.name = name;
  if (name == "deeplabv3plus") {
    // TF-slim's resnet_arg_scope: decay 0.9997, epsilon 1e-3 (the 2018 code passes the decay explicitly).
    m.norm = NormMode::batchnorm;
    m.bn_momentum = 1.0 - 0.9997;
    m.bn_eps = 1e-3;
  } else if (name == "tiramisu") {
    // Production runs did not pass --use_batchnorm; the 2018 code's BN is tf.layers' default (momentum 0.99,
    // epsilon 1e-3) when it is switched on.
    m.norm = NormMode::none;
    m.bn_momentum = 0.01;
    m.bn_eps = 1e-3;
  } else if (name == "deepcam") {
    m.norm = NormMode::batchnorm;  // PyTorch defaults
  } else {
    std::ostringstream os;
    for (const auto& n : model_names()) os << " " << n;
    CS_THROW("unknown model '", name, "'; known models:", os.str());
  }
  return m;
}

std::map<std::string, std::string> model_metadata(const ModelConfig& m) {
  std::map<std::string, std::string> md;
  char buf[64];
  md["model"] = m.name;
  md["in_channels"] = std::to_string(m.in_channels);
  md["num_classes"] = std::to_string(m.num_classes);
  std::snprintf(buf, sizeof buf, "%.17g", m.width);
  md["width"] = buf;
  md["norm"] = norm_name(m.norm);
  if (m.name == "deeplabv3plus") md["decoder"] = decoder_name(m.decoder);
  if (m.name == "tiramisu") {
    std::string b;
    for (int64_t n : m.blocks) b += (b.empty() ? "" : ",") + std::to_string(n);
    md["blocks"] = b;
    md["growth"] = std::to_string(m.growth);
    md["kernel"] = std::to_string(m.kernel);
    md["stem_channels"] = std::to_string(m.stem_channels);
    std::snprintf(buf, sizeof buf, "%.17g", m.dropout);
    md["dropout"] = buf;
  }
  return md;
}

ModelConfig model_from_metadata(const std::map<std::string, std::string>& md) {
  auto it = md.find("model");
  CS_CHECK(it != md.end(), "weights metadata has no 'model' entry (a file from another tool? pass --model)");
  ModelConfig m = ModelConfig::defaults(it->second);
  auto num = [&](const char* key, auto& dst) {
    auto f = md.find(key);
    if (f == md.end()) return;
    try {
      size_t used = 0;
      double v = std::stod(f->second, &used);
      CS_CHECK(used == f->second.size(), "trailing characters");
      dst = static_cast<std::remove_reference_t<decltype(dst)>>(v);
    } catch (const std::exception&) {
      CS_THROW("weights metadata '", key, "' = '", f->second, "' is not a number");
    }
  };
  num("in_channels", m.in_channels);
  num("num_classes", m.num_classes);
  num("width", m.width);
  if (auto f = md.find("norm"); f != md.end()) m.norm = parse_norm(f->second);
  if (auto f = md.find("decoder"); f != md.end()) m.decoder = parse_decoder(f->second);
  if (auto f = md.find("blocks"); f != md.end()) {
    m.blocks.clear();
    std::stringstream ss(f->second);
    std::string item;
    while (std::getline(ss, item, ',')) {
      try {
        m.blocks.push_back(std::stoll(item));
      } catch (const std::exception&) {
        CS_THROW("weights metadata 'blocks' = '", f->second, "' is not a comma-separated list of integers");
      }
    }
  }
  num("growth", m.growth);
  num("kernel", m.kernel);
  num("stem_channels", m.stem_channels);
  num("dropout", m.dropout);
  return m;
}

NormMode parse_norm(const std::string& s) {
  if (s == "batchnorm") return NormMode::batchnorm;
  if (s == "half") return NormMode::half;
  if (s == "none") return NormMode::none;
  CS_THROW("unknown norm '", s, "' (batchnorm, half, none)");
}
DecoderMode parse_decoder(const std::string& s) {
  if (s == "deconv1x") return DecoderMode::deconv1x;
  if (s == "deconv") return DecoderMode::deconv;
  if (s == "bilinear") return DecoderMode::bilinear;
  CS_THROW("unknown decoder '", s, "' (deconv1x, deconv, bilinear)");
}
const char* norm_name(NormMode m) {
  switch (m) {
    case NormMode::batchnorm:
      return "batchnorm";
    case NormMode::half:
      return "half";
    case NormMode::none:
      return "none";
  }
  return "?";
}
const char* decoder_name(DecoderMode m) {
  switch (m) {
    case DecoderMode::deconv1x:
      return "deconv1x";
    case DecoderMode::deconv:
      return "deconv";
    case DecoderMode::bilinear:
      return "bilinear";
  }
  return "?";
}

int64_t input_multiple(const ModelConfig& m) {
  if (m.name == "deeplabv3plus") return 8;
  if (m.name == "deepcam") return 16;
  if (m.name == "tiramisu")
    return int64_t{1} << (m.blocks.size() - 1);  // one stride-2 transition per block but the last
  ModelConfig::defaults(m.name);                 // throws with the list of names
  return 1;
}

void check_input_size(const ModelConfig& m, int64_t height, int64_t width) {
  const int64_t q = input_multiple(m);
  auto near = [q](int64_t v) {
    const int64_t lo = std::max<int64_t>(q, v / q * q), hi = (v + q - 1) / q * q;
    std::ostringstream os;
    os << lo;
    if (hi != lo) os << " or " << hi;
    return os.str();
  };
  CS_CHECK(height > 0 && width > 0, "model ", m.name, ": input size ", height, "x", width, " must be positive");
  CS_CHECK(height % q == 0, "model ", m.name, ": height ", height, " is not divisible by ", q, " (try ", near(height),
           ")");
  CS_CHECK(width % q == 0, "model ", m.name, ": width ", width, " is not divisible by ", q, " (try ", near(width), ")");
}

ModelGraph build_model(Net& net, const ModelConfig& m, int64_t batch, int64_t height, int64_t width) {
  CS_CHECK(batch > 0, "model ", m.name, ": batch must be positive, got ", batch);
  CS_CHECK(m.in_channels > 0 && m.num_classes > 1, "model ", m.name, ": in_channels ", m.in_channels,
           " and num_classes ", m.num_classes, " must be positive (at least 2 classes)");
  CS_CHECK(m.width > 0 && std::isfinite(m.width), "model ", m.name, ": width multiplier must be positive, got ",
           m.width);
  check_input_size(m, height, width);
  models::Builder b(net, m);
  const Net::Id x = net.input("input", Shape{batch, height, width, m.in_channels});
  ModelGraph g;
  if (m.name == "deeplabv3plus") {
    g = models::build_deeplabv3plus(b, x);
  } else if (m.name == "tiramisu") {
    g = models::build_tiramisu(b, x);
  } else if (m.name == "deepcam") {
    g = models::build_deepcam(b, x);
  } else {
    ModelConfig::defaults(m.name);  // throws with the list of names
  }
  g.input = x;
  const Shape ys = net.shape(g.logits);
  CS_CHECK(ys == (Shape{batch, height, width, m.num_classes}), "model ", m.name, ": logits have shape ", ys.str(),
           ", expected full resolution");  // an internal error if it ever fires
  net.set_output(g.logits);
  return g;
}

SoftmaxXentConfig reference_loss(const ModelConfig& m) {
  if (m.name == "deepcam") return SoftmaxXentConfig::deepcam();
  if (m.name == "tiramisu") return SoftmaxXentConfig::gb_tiramisu();
  return SoftmaxXentConfig::gb_deeplab();
}

void add_loss(Net& net, ModelGraph& g, const SoftmaxXentConfig& loss, DType label_dtype) {
  CS_CHECK(g.logits >= 0, "add_loss before build_model");
  CS_CHECK(g.loss < 0, "add_loss called twice");
  const Shape ys = net.shape(g.logits);
  g.labels = net.input("labels", Shape{ys.n, ys.h, ys.w, 1}, label_dtype);
  g.loss = net.add("loss", std::make_unique<SoftmaxXent>(loss), {g.logits, g.labels});
  net.set_output(g.loss);
}

namespace models {

int64_t Builder::ch(int64_t c) const {
  return std::max<int64_t>(1, static_cast<int64_t>(std::llround(static_cast<double>(c) * m_.width)));
}

Net::Id Builder::add(const std::string& name, std::unique_ptr<Layer> layer, std::vector<Net::Id> in) {
  return net_.add(name, std::move(layer), std::move(in));
}

Net::Id Builder::conv(const std::string& name, Net::Id x, const Conv2dConfig& c) {
  return add(name, std::make_unique<Conv2d>(c), {x});
}

Net::Id Builder::conv_same(const std::string& name, Net::Id x, int64_t out, int64_t k, bool bias, int64_t dilation) {
  Conv2dConfig c;
  c.out_channels = out;
  c.kernel_h = c.kernel_w = k;
  c.dilation_h = c.dilation_w = dilation;
  c.pad_h = c.pad_w = dilation * (k - 1) / 2;
  c.bias = bias;
  return conv(name, x, c);
}

Net::Id Builder::depthwise(const std::string& name, Net::Id x, int64_t k, int64_t stride, int64_t dilation,
                           int64_t pad) {
  Conv2dConfig c;
  c.out_channels = net_.shape(x).c;
  c.groups = c.out_channels;
  c.kernel_h = c.kernel_w = k;
  c.stride_h = c.stride_w = stride;
  c.dilation_h = c.dilation_w = dilation;
  c.pad_h = c.pad_w = pad;
  c.bias = false;
  return conv(name, x, c);
}

Net::Id Builder::deconv2x(const std::string& name, Net::Id x, int64_t out, bool bias, bool tf_same) {
  ConvTranspose2dConfig c;
  c.out_channels = out;
  c.bias = bias;
  if (tf_same) c.padding = PaddingMode::tf_same;  // otherwise the defaults: k3 s2 p1 output_padding 1
  return add(name, std::make_unique<ConvTranspose2d>(c), {x});
}

Net::Id Builder::norm(const std::string& name, Net::Id x, bool relu_after, Net::Id residual) {
  Net::Id y = x;
  switch (m_.norm) {
    case NormMode::batchnorm: {
      BatchNormConfig c;
      c.momentum = m_.bn_momentum;
      c.eps = m_.bn_eps;
      c.relu = relu_after;
      c.residual = residual >= 0;
      if (residual >= 0) return add(name, std::make_unique<BatchNorm2d>(c), {x, residual});
      return add(name, std::make_unique<BatchNorm2d>(c), {x});
    }
    case NormMode::half:
      y = add(name, std::make_unique<Scale>(0.5), {x});
      break;
    case NormMode::none:
      break;
  }
  if (residual >= 0) y = sum(name + "_add", y, residual);
  if (relu_after) y = relu(name + "_relu", y);
  return y;
}

Net::Id Builder::relu(const std::string& name, Net::Id x) { return add(name, std::make_unique<Relu>(), {x}); }

Net::Id Builder::dropout(const std::string& name, Net::Id x, double p) {
  // Every dropout layer gets its own Philox key, derived from the model seed and the layer's position, so masks
  // differ between layers and are reproducible from (model seed, step).
  const Philox4 r = philox_block(m_.seed, 0x64726f70ull /* "drop" */, dropout_count_++);
  const uint64_t seed = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  return add(name, std::make_unique<Dropout>(p, seed), {x});
}

Net::Id Builder::concat(const std::string& name, std::vector<Net::Id> in) {
  return add(name, std::make_unique<Concat>(), std::move(in));
}

Net::Id Builder::sum(const std::string& name, Net::Id a, Net::Id b) {
  return add(name, std::make_unique<Add>(), {a, b});
}

}  // namespace models
}  // namespace climseg
