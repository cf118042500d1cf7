#include "engine/weights.h"

#include "engine/checkpoint.h"

#include <cstring>
#include <set>

#include "engine/safetensors.h"

namespace climseg {

namespace {

constexpr const char* kBatchNormType = "batchnorm2d";

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::vector<int64_t> dims(const Shape& s) { return {s.n, s.h, s.w, s.c}; }

// One tensor of a weights file: its name and shape in the file, and where its values live in the net.
struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  ParamLayout layout = ParamLayout::vector;  // how the file layout relates to ours (native files: identity)
  const Net::Param* source = nullptr;        // null: written as a constant, ignored when loading
};

// (A, B, C, D) -> (A, D, B, C): KRSC -> KCRS and (C_in, R, S, K/g) -> (C_in, K/g, R, S). Bytewise, any dtype.
Tensor last_axis_to_second(const Tensor& t) {
  const Shape s = t.shape();
  const Tensor src = t.is_contiguous() ? t : t.clone();
  Tensor out = Tensor::empty(Shape{s.n, s.c, s.h, s.w}, t.dtype(), Device::cpu);
  const size_t es = t.element_size();
  const char* in = static_cast<const char*>(src.data());
  char* o = static_cast<char*>(out.data());
  for (int64_t a = 0; a < s.n; ++a)
    for (int64_t b = 0; b < s.h; ++b)
      for (int64_t c = 0; c < s.w; ++c)
        for (int64_t d = 0; d < s.c; ++d)
          std::memcpy(o + static_cast<size_t>(((a * s.c + d) * s.h + b) * s.w + c) * es,
                      in + static_cast<size_t>(((a * s.h + b) * s.w + c) * s.c + d) * es, es);
  return out;
}

// The inverse: (A, D, B, C) given as the 4-D `t` -> (A, B, C, D).
Tensor second_axis_to_last(const Tensor& t) {
  const Shape s = t.shape();  // (A, D, B, C)
  const Tensor src = t.is_contiguous() ? t : t.clone();
  Tensor out = Tensor::empty(Shape{s.n, s.w, s.c, s.h}, t.dtype(), Device::cpu);
  const size_t es = t.element_size();
  const char* in = static_cast<const char*>(src.data());
  char* o = static_cast<char*>(out.data());
  for (int64_t a = 0; a < s.n; ++a)
    for (int64_t d = 0; d < s.h; ++d)
      for (int64_t b = 0; b < s.w; ++b)
        for (int64_t c = 0; c < s.c; ++c)
          std::memcpy(o + static_cast<size_t>(((a * s.w + b) * s.c + c) * s.h + d) * es,
                      in + static_cast<size_t>(((a * s.h + d) * s.w + b) * s.c + c) * es, es);
  return out;
}

// PyTorch's shape for one of our tensors.
std::vector<int64_t> pytorch_shape(const Net::Param& p, ParamLayout layout) {
  const Shape s = p.spec.shape;
  switch (layout) {
    case ParamLayout::vector:
      CS_CHECK(s.n == 1 && s.h == 1 && s.w == 1, p.name, ": a vector parameter must be (1,1,1,C), got ", s.str());
      return {s.c};
    case ParamLayout::vector_c11:
      CS_CHECK(s.n == 1 && s.h == 1 && s.w == 1, p.name, ": a vector parameter must be (1,1,1,C), got ", s.str());
      return {s.c, 1, 1};
    case ParamLayout::conv_krsc:
    case ParamLayout::deconv_crsk:
      return {s.n, s.c, s.h, s.w};
  }
  CS_THROW(p.name, ": unknown ParamLayout");
}

std::vector<Slot> native_slots(const Net& net) {
  std::vector<Slot> slots;
  for (const auto* list : {&net.params(), &net.state()})
    for (const Net::Param& p : *list) slots.push_back({p.name, dims(p.spec.shape), ParamLayout::vector, &p});
  return slots;
}

std::vector<Slot> pytorch_slots(const Net& net) {
  std::vector<Slot> slots;
  for (const PytorchTensor& t : pytorch_layout(net)) slots.push_back({t.name, t.shape, t.layout, t.source});
  return slots;
}

void check_metadata(const std::map<std::string, std::string>& metadata, const std::string& path) {
  for (const char* k : {"format", "version"})
    CS_CHECK(!metadata.count(k), path, ": metadata key '", k, "' is reserved (set by climseg)");
}

// Writes the slots; `pytorch` selects PyTorch's layouts and float32.
void save_slots(const std::vector<Slot>& slots, const std::string& path, std::map<std::string, std::string> metadata,
                bool pytorch) {
  std::vector<SafetensorsTensor> tensors;
  for (const Slot& s : slots) {
    Tensor host;
    if (s.source == nullptr) {  // num_batches_tracked
      host = Tensor::zeros(Shape{1, 1, 1, 1}, DType::i64, Device::cpu);
    } else {
      // Synchronous copy (no context): waits for queued device work, so the caller need not synchronise.
      host = s.source->value.to(Device::cpu);
      if (pytorch) {
        if (host.dtype() != DType::f32) host = host.cast(DType::f32);
        if (s.layout == ParamLayout::conv_krsc || s.layout == ParamLayout::deconv_crsk) host = last_axis_to_second(host);
      }
    }
    tensors.push_back({s.name, host, s.shape});
  }
  write_safetensors(path, tensors, metadata);
}

// Checks the file against the slots, reads and converts everything, then writes the net.
void load_slots(const std::vector<Slot>& slots, const SafetensorsReader& file, bool pytorch, const char* who) {
  const std::string& path = file.path();
  std::vector<std::string> missing, unexpected, problems;
  std::set<std::string> expected;
  for (const Slot& s : slots) {
    expected.insert(s.name);
    if (s.source == nullptr) continue;  // ignored when loading (num_batches_tracked)
    const SafetensorsReader::Entry* e = file.find(s.name);
    if (e == nullptr) {
      missing.push_back(s.name);
      continue;
    }
    if (e->shape != s.shape)
      problems.push_back(detail::concat("shape mismatch: '", s.name, "': expected ", shape_text(s.shape), ", found ",
                                        shape_text(e->shape)));
    else if (!dtype_is_float(e->dtype))
      problems.push_back(detail::concat("'", s.name, "' has dtype ", safetensors_dtype_name(e->dtype),
                                        "; parameters and statistics need a float dtype"));
  }
  for (const SafetensorsReader::Entry& e : file.entries())
    if (!expected.count(e.name)) unexpected.push_back(e.name);

  if (!missing.empty() || !unexpected.empty() || !problems.empty()) {
    std::string msg =
        detail::concat(who, "(", path, "): the file does not match the net (", missing.size(), " missing, ",
                       unexpected.size(), " unexpected, ", problems.size(), " other problems)");
    auto list = [&msg](const char* what, const std::vector<std::string>& names) {
      constexpr size_t kShown = 20;  // a renamed model would otherwise print hundreds of lines
      for (size_t i = 0; i < names.size() && i < kShown; ++i) msg += detail::concat("\n  ", what, names[i]);
      if (names.size() > kShown) msg += detail::concat("\n  ... and ", names.size() - kShown, " more ", what);
    };
    list("missing: ", missing);
    list("unexpected: ", unexpected);
    list("", problems);
    CS_THROW(msg);
  }

  // Everything matches: read and convert all tensors first, so an I/O error leaves the net untouched.
  std::vector<std::pair<const Net::Param*, Tensor>> staged;
  for (const Slot& s : slots) {
    if (s.source == nullptr) continue;
    Tensor t = file.read(s.name);
    if (pytorch) {
      if (s.layout == ParamLayout::vector || s.layout == ParamLayout::vector_c11)
        t = t.reshape(s.source->spec.shape);
      else
        t = second_axis_to_last(t);
    }
    CS_CHECK(t.shape() == s.source->spec.shape, path, ": '", s.name, "' maps to ", t.shape().str(), ", expected ",
             s.source->spec.shape.str());
    if (t.dtype() != s.source->value.dtype()) t = t.cast(s.source->value.dtype());
    staged.emplace_back(s.source, std::move(t));
  }
  // Synchronous copies to the net's device (no context), complete when this returns.
  for (const auto& [p, t] : staged) p->value.copy_from(t);
}

}  // namespace

std::string pytorch_local_name(const std::string& layer_type, const std::string& local_name) {
  static const struct {
    const char* type;
    const char* ours;
    const char* pytorch;
  } kRenames[] = {{kBatchNormType, "gamma", "weight"},
                  {kBatchNormType, "beta", "bias"},
                  {"affine", "scale", "weight"},
                  {"affine", "shift", "bias"}};
  for (const auto& r : kRenames)
    if (layer_type == r.type && local_name == r.ours) return r.pytorch;
  return local_name;
}

std::vector<PytorchTensor> pytorch_layout(const Net& net) {
  std::vector<PytorchTensor> out;
  const auto& params = net.params();
  const auto& state = net.state();
  size_t pi = 0, si = 0;
  // Both lists are in node order; walk the nodes and take each node's parameters, then its state.
  for (int node = 0; node < net.num_nodes(); ++node) {
    const Layer& layer = net.layer(node);
    const std::string prefix = layer.name() + ".";
    for (; pi < params.size() && params[pi].node == node; ++pi) {
      const Net::Param& p = params[pi];
      out.push_back(
          {prefix + pytorch_local_name(layer.type(), p.spec.name), pytorch_shape(p, p.spec.layout), p.spec.layout, &p});
    }
    for (; si < state.size() && state[si].node == node; ++si) {
      const Net::Param& p = state[si];
      out.push_back({prefix + pytorch_local_name(layer.type(), p.spec.name), pytorch_shape(p, ParamLayout::vector),
                     ParamLayout::vector, &p});
    }
    if (std::string(layer.type()) == kBatchNormType)
      out.push_back({prefix + "num_batches_tracked", {}, ParamLayout::vector, nullptr});
  }
  CS_CHECK(pi == params.size() && si == state.size(), "pytorch_layout: parameters not in node order (", pi, "/",
           params.size(), ", ", si, "/", state.size(), ")");
  return out;
}

void save_weights(const Net& net, const std::string& path, const std::map<std::string, std::string>& metadata) {
  check_metadata(metadata, path);
  auto m = metadata;
  m["format"] = kWeightsFormat;
  m["version"] = kWeightsVersion;
  save_slots(native_slots(net), path, m, false);
}

void load_weights(Net& net, const std::string& path) {
  SafetensorsReader file(path);
  const std::string format = file.metadata_or("format", "(none)");
  CS_CHECK(format == kWeightsFormat, "load_weights(", path, "): metadata format is '", format, "', not '",
           kWeightsFormat, "'", format == kPytorchFormat ? " (a PyTorch export: use import_pytorch)" : "");
  const std::string version = file.metadata_or("version", "(none)");
  CS_CHECK(version == kWeightsVersion, "load_weights(", path, "): format version ", version,
           " is not supported (this climseg reads version ", kWeightsVersion, ")");
  load_slots(native_slots(net), file, false, "load_weights");
}

bool is_checkpoint_file(const std::string& path) {
  return SafetensorsReader(path).metadata_or("climseg.format", "") == "climseg-checkpoint";
}

void load_checkpoint_weights(Net& net, const std::string& path) {
  const Checkpoint ck = CheckpointStore::load_file(path);  // verified (checksum) before anything is used
  std::vector<std::pair<const Net::Param*, Tensor>> staged;
  auto stage = [&](const Net::Param& p) {
    const CheckpointTensor* t = ck.find(p.name);
    CS_CHECK(t != nullptr, "checkpoint ", path, " has no tensor '", p.name, "' (a checkpoint of another network?)");
    CS_CHECK(t->data.shape() == p.spec.shape, "checkpoint ", path, ": '", p.name, "' is ", t->data.shape().str(),
             ", the net expects ", p.spec.shape.str());
    CS_CHECK(dtype_is_float(t->data.dtype()), "checkpoint ", path, ": '", p.name, "' is not a float tensor");
    staged.emplace_back(&p, t->data.dtype() == p.value.dtype() ? t->data : t->data.cast(p.value.dtype()));
  };
  for (const Net::Param& p : net.params()) stage(p);
  for (const Net::Param& p : net.state()) stage(p);
  for (const auto& [p, t] : staged) p->value.copy_from(t);  // synchronous; the net is unchanged on any error above
}

void export_pytorch(const Net& net, const std::string& path, const std::map<std::string, std::string>& metadata) {
  check_metadata(metadata, path);
  auto m = metadata;
  m["format"] = kPytorchFormat;
  m["version"] = kWeightsVersion;
  save_slots(pytorch_slots(net), path, m, true);
}

void import_pytorch(Net& net, const std::string& path) {
  SafetensorsReader file(path);
  // Files written by PyTorch may have any metadata or none; only climseg's native files are refused by name.
  CS_CHECK(file.metadata_or("format", "") != kWeightsFormat, "import_pytorch(", path,
           "): this is a climseg native weights file: use load_weights");
  load_slots(pytorch_slots(net), file, true, "import_pytorch");
}

}  // namespace climseg
