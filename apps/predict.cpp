#include "apps/predict.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "engine/check.h"
#include "engine/net.h"
#include "engine/safetensors.h"
#include "engine/weights.h"
#include "io/hdf5_sample.h"
#include "io/png_overlay.h"
#include "io/prediction_writer.h"
#include "models/model.h"

namespace climseg::apps {

namespace fs = std::filesystem;

void add_predict_command(CLI::App& app, PredictCommand& c) {
  c.cmd = app.add_subcommand("predict",
                             "Segment DeepCAM-format samples with saved weights: logits and argmax mask to HDF5, "
                             "optionally a PNG of the mask over a channel");
  add_model_options(c.cmd, c.model);
  c.cmd->add_option("--weights", c.weights, "Weights (safetensors: climseg's own, or a PyTorch export)")
      ->required()
      ->check(CLI::ExistingFile);
  c.cmd->add_option("--input", c.inputs, "Sample files (HDF5, DeepCAM or 2018 layout); all of one size")
      ->required()
      ->check(CLI::ExistingFile);
  c.cmd->add_option("--output", c.output, "Output HDF5: prediction/logits (N,H,W,K) and prediction/mask (N,H,W)")
      ->required();
  c.cmd->add_option("--png", c.png, "Also draw the mask of one sample over a channel into this PNG");
  c.cmd->add_option("--png-sample", c.png_sample, "Which input the PNG shows (0-based)")->capture_default_str();
  c.cmd->add_option("--png-channel", c.png_channel, "Channel under the mask: a name (TMQ, U850, ...) or an index")
      ->capture_default_str();
  c.cmd->add_option("--stats", c.stats,
                    "stats.h5 for min-max normalisation (default: stats.h5 in the input's folder or its parent)");
  c.cmd->add_flag("--no-normalize", c.no_normalize, "Inputs are already normalised");
  c.cmd->add_option("--device", c.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  c.cmd->add_option("--dtype", c.dtype, "Compute dtype (fp16/bf16 on cuda)")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
      ->capture_default_str();
  c.cmd->add_option("--batch", c.batch, "Samples per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  c.cmd->add_option("--crop", c.crop, "Read a centred H W window of each sample")->expected(2);
  c.cmd->add_option("--stride", c.stride, "Read every k-th row and column")->check(CLI::PositiveNumber);
}

namespace {

int64_t channel_index(const std::string& s) {
  for (int64_t c = 0; c < io::kNumChannels; ++c)
    if (s == io::channel_name(c)) return c;
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size() && v >= 0 && v < io::kNumChannels) return v;
  } catch (const std::exception&) {
  }
  CS_THROW("--png-channel '", s, "' is neither a channel name (TMQ, U850, V850, UBOT, VBOT, QREFHT, PS, PSL, T200, ",
           "T500, PRECT, TS, TREFHT, Z1000, Z200, ZBOT) nor an index 0..15");
}

std::string find_stats(const std::string& input) {
  const fs::path dir = fs::absolute(fs::path(input)).parent_path();
  for (const fs::path& d : {dir, dir.parent_path()}) {
    const fs::path p = d / "stats.h5";
    if (fs::exists(p)) return p.string();
  }
  CS_THROW("no stats.h5 found for ", input, " (looked in ", dir.string(), " and ", dir.parent_path().string(),
           "); pass --stats FILE, or --no-normalize for inputs that are already normalised");
}

}  // namespace

int run_predict(const PredictCommand& c) {
  // ---- the model: from the options, or from the weights file's metadata --------------------------------------
  SafetensorsReader wr(c.weights);
  const bool torch_file = wr.metadata_or("format", "") == kPytorchFormat;
  ModelConfig m;
  if (c.cmd->count("--model") > 0 || wr.metadata().count("model") == 0) {
    m = c.model.config();
  } else {
    m = model_from_metadata(wr.metadata());
    std::printf("model from %s: %s (norm %s, width x%g)\n", c.weights.c_str(), m.name.c_str(), norm_name(m.norm),
                m.width);
  }

  const Device dev = c.device == "auto" ? (have_cuda() ? Device::cuda : Device::cpu) : parse_device(c.device);
  const DType dt = parse_dtype(c.dtype);
  CS_CHECK(dev == Device::cuda || dt == DType::f32, "--dtype ", c.dtype, " needs --device cuda (the CPU path is fp32)");

  // ---- read every sample (validated by the reader) ------------------------------------------------------------
  io::ReadOptions ro;
  ro.channels = m.in_channels;
  ro.labels_required = false;
  if (!c.crop.empty()) {
    CS_CHECK(c.crop.size() == 2 && c.crop[0] > 0 && c.crop[1] > 0, "--crop takes two positive numbers: H W");
    CS_CHECK(c.stride == 1, "--crop and --stride cannot be combined");
    ro.reduce = io::Reduce::crop;
    ro.crop_h = c.crop[0];
    ro.crop_w = c.crop[1];
  } else if (c.stride > 1) {
    ro.reduce = io::Reduce::stride;
    ro.stride = c.stride;
  }
  std::optional<io::Stats> stats;
  if (!c.no_normalize) stats = io::read_stats(c.stats.empty() ? find_stats(c.inputs.at(0)) : c.stats, m.in_channels);
  std::vector<io::Sample> samples;
  for (const std::string& f : c.inputs) {
    samples.push_back(io::read_sample(f, ro));
    if (stats) io::normalize(samples.back().data, *stats);
    const Shape s0 = samples.front().data.shape(), s = samples.back().data.shape();
    CS_CHECK(s.h == s0.h && s.w == s0.w, f, ": field ", s.h, "x", s.w, " differs from ", c.inputs.front(), "'s ", s0.h,
             "x", s0.w, " (predict runs one size; use --crop or --stride to bring them to one)");
  }
  const int64_t N = static_cast<int64_t>(samples.size());
  const int64_t H = samples[0].data.shape().h, W = samples[0].data.shape().w, C = m.in_channels;
  const int64_t B = std::min<int64_t>(c.batch, N);
  CS_CHECK(c.png.empty() || (c.png_sample >= 0 && c.png_sample < N), "--png-sample ", c.png_sample, " of ", N,
           " inputs");

  // ---- build, load, run -----------------------------------------------------------------------------------------
  Net net;
  ModelGraph g = build_model(net, m, B, H, W);
  net.compile(NetOptions{.device = dev, .dtype = dt, .training = false});
  if (torch_file)
    import_pytorch(net, c.weights);
  else
    if (is_checkpoint_file(c.weights))
      load_checkpoint_weights(net, c.weights);  // a training checkpoint: its master weights
    else
      load_weights(net, c.weights);
  std::printf("predict: %s on %s (%s), %lld sample(s) of %lldx%lld, batch %lld, weights %s%s\n", m.name.c_str(),
              device_name(dev), dtype_name(dt), static_cast<long long>(N), static_cast<long long>(H),
              static_cast<long long>(W), static_cast<long long>(B), c.weights.c_str(),
              torch_file ? " (PyTorch names)" : "");

  ExecContext ctx(dev);
  const int64_t K = m.num_classes;
  Tensor logits = Tensor::empty(Shape{N, H, W, K}, DType::f32);
  Tensor mask = Tensor::empty(Shape{N, H, W, 1}, DType::u8);
  Tensor host_in = Tensor::zeros(Shape{B, H, W, C}, DType::f32, Device::cpu);
  const size_t sample_bytes = static_cast<size_t>(H * W * C) * sizeof(float);
  const size_t logit_bytes = static_cast<size_t>(H * W * K) * sizeof(float);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0);
    for (int64_t j = 0; j < B; ++j) {
      char* dst = static_cast<char*>(host_in.data()) + static_cast<size_t>(j) * sample_bytes;
      if (j < nb)
        std::memcpy(dst, samples[static_cast<size_t>(n0 + j)].data.data(), sample_bytes);
      else
        std::memset(dst, 0, sample_bytes);  // padding of the last batch; its outputs are dropped
    }
    net.input_tensor(g.input).copy_from(dt == DType::f32 ? host_in : host_in.cast(dt), &ctx);
    net.forward(ctx);
    Tensor out = net.output().to(Device::cpu, &ctx);
    ctx.synchronize();
    if (out.dtype() != DType::f32) out = out.cast(DType::f32);
    std::memcpy(static_cast<char*>(logits.data()) + static_cast<size_t>(n0) * logit_bytes, out.data(),
                static_cast<size_t>(nb) * logit_bytes);
  }
  // Argmax per pixel (first maximum on ties, as torch.argmax).
  const float* lp = static_cast<const float*>(logits.data());
  uint8_t* mp = static_cast<uint8_t*>(mask.data());
  for (int64_t p = 0; p < N * H * W; ++p) {
    int64_t best = 0;
    for (int64_t k = 1; k < K; ++k)
      if (lp[p * K + k] > lp[p * K + best]) best = k;
    mp[p] = static_cast<uint8_t>(best);
  }

  // ---- report and write ---------------------------------------------------------------------------------------------
  for (int64_t n = 0; n < N; ++n) {
    int64_t counts[256] = {0};
    for (int64_t p = 0; p < H * W; ++p) counts[mp[n * H * W + p]]++;
    std::printf("  %s: predicted background %.4f, TC %.4f, AR %.4f", c.inputs[static_cast<size_t>(n)].c_str(),
                static_cast<double>(counts[0]) / static_cast<double>(H * W),
                static_cast<double>(counts[1]) / static_cast<double>(H * W),
                static_cast<double>(counts[2]) / static_cast<double>(H * W));
    const Tensor& lab = samples[static_cast<size_t>(n)].labels;
    if (lab.defined()) {
      // Counts per class, then DeepCAM's per-sample IoU (0/0 counted as 1) from the loss layer's metrics.
      SoftmaxXentMetrics counts;
      counts.n = 1;
      counts.k = K;
      counts.tp.assign(static_cast<size_t>(K), 0);
      counts.fp.assign(static_cast<size_t>(K), 0);
      counts.fn.assign(static_cast<size_t>(K), 0);
      const int32_t* l = static_cast<const int32_t*>(lab.data());
      for (int64_t p = 0; p < H * W; ++p) {
        const auto pr = static_cast<size_t>(mp[n * H * W + p]), gt = static_cast<size_t>(l[p]);
        if (pr == gt) {
          counts.tp[pr]++;
        } else {
          counts.fp[pr]++;
          counts.fn[gt]++;
        }
      }
      std::printf("; IoU against the file's labels %.4f", counts.sample_iou_deepcam(0));
    }
    std::printf("\n");
  }
  io::PredictionAttrs attrs;
  attrs.model = m.name;
  attrs.weights = c.weights;
  attrs.sources = c.inputs;
  for (const auto& [k, v] : model_metadata(m)) attrs.extra.emplace_back("model_" + k, v);
  io::write_prediction(c.output, logits, mask, attrs);
  std::printf("wrote %s\n", c.output.c_str());
  if (!c.png.empty()) {
    io::OverlayOptions oo;
    oo.sample = c.png_sample;
    oo.channel = channel_index(c.png_channel);
    // The overlay scales the channel min-max over the image, so normalised data look as the raw field would.
    const io::Sample& s = samples[static_cast<size_t>(c.png_sample)];
    Tensor one_mask = Tensor::empty(Shape{1, H, W, 1}, DType::u8);
    std::memcpy(one_mask.data(), mp + c.png_sample * H * W, static_cast<size_t>(H * W));
    oo.sample = 0;
    io::write_overlay_png(c.png, s.data, one_mask, s.labels, oo);
    std::printf("wrote %s (mask over %s)\n", c.png.c_str(), io::channel_name(oo.channel));
  }
  return 0;
}

}  // namespace climseg::apps
