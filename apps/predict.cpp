#include "apps/predict.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <future>
#include <memory>
#include <cstring>
#include <filesystem>
#include <optional>

#include "comm/ranks.h"
#include "engine/check.h"
#include "engine/net.h"
#include "engine/safetensors.h"
#include "engine/weights.h"
#include "engine/crc32c.h"
#include "io/hdf5_sample.h"
#include "io/input_files.h"
#include "io/input_metadata.h"
#if defined(CLIMSEG_HAVE_NETCDF)
#include "io/cf_reader.h"
#include "io/cf_writer.h"
#endif
#include "io/png_overlay.h"
#include "io/prediction_writer.h"
#include "models/model.h"
#include "train/metrics.h"

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
  c.cmd->add_option("--input", c.inputs,
                    "Input files: HDF5 samples (DeepCAM or 2018 layout; all of one size), or CF-NetCDF files "
                    "(recognised by content; one file with every variable or one per variable, any number of time "
                    "steps); quoted shell patterns such as 'run/*.cam.h2.*.nc' are expanded")
      ->required();
  c.cmd->add_option("--output", c.output,
                    "Output: HDF5 (prediction/logits (N,H,W,K), prediction/mask (N,H,W)) for HDF5 inputs; a .nc name "
                    "for NetCDF inputs: CF-NetCDF mask(time, lat, lon) with the inputs' coordinates")
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
  c.cmd->add_flag("--no-fold", c.no_fold,
                  "Run batch norms (and the other per-channel maps after a convolution) as separate layers instead of "
                  "folding them into the convolution's weights (docs/inference.md); for bit-exact comparisons with "
                  "the training code's evaluation");
  c.cmd->add_option("--batch", c.batch, "Samples per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  c.cmd->add_option("--crop", c.crop, "Read a centred H W window of each sample")->expected(2);
  c.cmd->add_option("--stride", c.stride, "Read every k-th row and column")->check(CLI::PositiveNumber);
  const char* nc_group = "NetCDF input";
  c.cmd->add_option("--channel", c.channel_specs,
                    "Where a channel comes from: CHANNEL=VAR[@LEVEL_HPA][*SCALE][|VAR...], e.g. U850=ua@850 or "
                    "PRECT=pr*0.001 (repeatable; default: the CAM name, then the CMIP one)")
      ->group(nc_group);
  c.cmd->add_option("--channel-map", c.channel_map, "A file of --channel specs, one per line ('#' comments)")
      ->check(CLI::ExistingFile)
      ->group(nc_group);
  c.cmd->add_option("--start", c.start, "First time step (ISO date or date-time, in the files' calendar)")
      ->group(nc_group);
  c.cmd->add_option("--end", c.end, "Last time step (inclusive)")->group(nc_group);
  c.cmd->add_flag("--fill-missing", c.fill_missing,
                  "Fill missing values (_FillValue, missing_value, NaN) with the field's mean and report them, "
                  "instead of failing")
      ->group(nc_group);
  c.cmd->add_flag("--probabilities", c.probabilities,
                  "Also write prob_tc and prob_ar (softmax probabilities) to the NetCDF output")
      ->group(nc_group);
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

namespace {

// The class of one pixel's logits: the first maximum on ties, as torch.argmax.
int64_t argmax(const float* l, int64_t K) {
  int64_t best = 0;
  for (int64_t k = 1; k < K; ++k)
    if (l[k] > l[best]) best = k;
  return best;
}

// What both paths share: the model, the device, the loaded network (built for a batch and a size), the statistics.
struct Setup {
  ModelConfig m;
  Device dev = Device::cpu;
  DType dt = DType::f32;
  bool torch_file = false;
  std::vector<std::string> channels;  // the network's input channel names
  std::optional<io::Stats> stats;     // none: inputs used as read (--no-normalize)
  std::string stats_from;             // for the log: where the statistics came from
};

Setup setup(const PredictCommand& c, bool print) {
  Setup s;
  SafetensorsReader wr(c.weights);
  s.torch_file = wr.metadata_or("format", "") == kPytorchFormat;
  if (c.cmd->count("--model") > 0 || wr.metadata().count("model") == 0) {
    s.m = c.model.config();
  } else {
    s.m = model_from_metadata(wr.metadata());
    if (print)
      std::printf("model from %s: %s (norm %s, width x%g)\n", c.weights.c_str(), s.m.name.c_str(), norm_name(s.m.norm),
                  s.m.width);
  }
  s.dev = c.device == "auto" ? (have_cuda() ? Device::cuda : Device::cpu) : parse_device(c.device);
  s.dt = parse_dtype(c.dtype);
  CS_CHECK(s.dev == Device::cuda || s.dt == DType::f32, "--dtype ", c.dtype,
           " needs --device cuda (the CPU path is fp32)");

  // The input contract: channel names and statistics from the weights when it has them.
  const io::InputContract ic = io::input_contract(wr.metadata(), c.weights);
  s.channels = ic.channels.empty() ? io::default_channel_names(s.m.in_channels) : ic.channels;
  CS_CHECK(static_cast<int64_t>(s.channels.size()) == s.m.in_channels, c.weights, ": input.channels names ",
           s.channels.size(), " channels, the model takes ", s.m.in_channels);
  if (c.no_normalize) return s;
  if (!c.stats.empty()) {
    s.stats = io::read_stats(c.stats, s.m.in_channels);
    s.stats_from = c.stats;
    if (ic.stats && !io::same_normalization(*ic.stats, *s.stats)) {
      std::string diff;
      for (size_t k = 0; k < s.stats->minval.size() && diff.size() < 400; ++k)
        if (s.stats->minval[k] != ic.stats->minval[k] || s.stats->maxval[k] != ic.stats->maxval[k])
          diff += " " + s.channels[k] + " [" + std::to_string(s.stats->minval[k]) + ", " +
                  std::to_string(s.stats->maxval[k]) + "] vs [" + std::to_string(ic.stats->minval[k]) + ", " +
                  std::to_string(ic.stats->maxval[k]) + "];";
      std::fprintf(stderr,
                   "climseg predict: warning: --stats %s differs from the statistics the network was trained with "
                   "(stored in %s, from %s):%s using --stats as asked; masks made with other statistics than the "
                   "training ones can be wrong (leave --stats out to use the stored ones)\n",
                   c.stats.c_str(), c.weights.c_str(), ic.stats->path.c_str(), diff.c_str());
    } else if (ic.stats && print) {
      std::printf("--stats %s equals the statistics stored in the weights\n", c.stats.c_str());
    }
  } else if (ic.stats) {
    s.stats = ic.stats;
    s.stats_from = c.weights + (ic.stats->path != c.weights ? " (trained with " + ic.stats->path + ")"
                                                             : " (the statistics stored with it)");
  }
  return s;
}

// Loads the weights and, unless --no-fold, folds the per-channel maps into the convolutions (docs/inference.md).
// Returns the number of folded map layers.
int load_into(Net& net, const PredictCommand& c, const Setup& s) {
  if (s.torch_file)
    import_pytorch(net, c.weights);
  else if (is_checkpoint_file(c.weights))
    load_checkpoint_weights(net, c.weights);  // a training checkpoint: its master weights
  else
    load_weights(net, c.weights);
  return c.no_fold ? 0 : net.fold_batchnorm();
}

int run_predict_hdf5(const PredictCommand& c, const std::vector<std::string>& inputs);
#if defined(CLIMSEG_HAVE_NETCDF)
int run_predict_netcdf(const PredictCommand& c, const std::vector<std::string>& inputs);
#endif

}  // namespace

int run_predict(const PredictCommand& c) {
  const std::vector<std::string> inputs = io::expand_globs(c.inputs);
  for (const std::string& f : inputs) CS_CHECK(std::filesystem::is_regular_file(f), "--input ", f, ": no such file");
  const bool netcdf = io::is_netcdf_file(inputs.front());
  for (const std::string& f : inputs)
    CS_CHECK(io::is_netcdf_file(f) == netcdf, "--input: ", f, " is ", netcdf ? "not " : "", "NetCDF but ",
             inputs.front(), " is", netcdf ? "" : " not", "; give one kind of input per run");
  if (!netcdf) return run_predict_hdf5(c, inputs);
#if defined(CLIMSEG_HAVE_NETCDF)
  return run_predict_netcdf(c, inputs);
#else
  CS_THROW("--input ", inputs.front(), " is NetCDF, but this climseg was built without libnetcdf (install "
           "libnetcdf-dev and rebuild: scripts/setup.sh)");
#endif
}

namespace {

int run_predict_hdf5(const PredictCommand& c, const std::vector<std::string>& inputs) {
  CS_CHECK(!std::filesystem::path(c.output).has_extension() || std::filesystem::path(c.output).extension() != ".nc",
           "--output ", c.output, ": a .nc output needs NetCDF inputs (these are HDF5 samples)");
  const Setup su = setup(c, true);
  const ModelConfig& m = su.m;
  const Device dev = su.dev;
  const DType dt = su.dt;
  const bool torch_file = su.torch_file;
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
  std::optional<io::Stats> stats = su.stats;
  if (!c.no_normalize && !stats) stats = io::read_stats(find_stats(inputs.at(0)), m.in_channels);
  else if (stats) std::printf("normalisation statistics from %s\n", su.stats_from.c_str());
  std::vector<io::Sample> samples;
  for (const std::string& f : inputs) {
    samples.push_back(io::read_sample(f, ro));
    if (stats) io::normalize(samples.back().data, *stats);
    const Shape s0 = samples.front().data.shape(), s = samples.back().data.shape();
    CS_CHECK(s.h == s0.h && s.w == s0.w, f, ": field ", s.h, "x", s.w, " differs from ", inputs.front(), "'s ", s0.h,
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
  net.compile(NetOptions{.device = dev, .dtype = dt, .training = false, .fold = !c.no_fold});
  const int folded = load_into(net, c, su);
  std::printf("predict: %s on %s (%s), %lld sample(s) of %lldx%lld, batch %lld, weights %s%s; %d layer(s) folded into "
              "convolutions\n",
              m.name.c_str(), device_name(dev), dtype_name(dt), static_cast<long long>(N), static_cast<long long>(H),
              static_cast<long long>(W), static_cast<long long>(B), c.weights.c_str(),
              torch_file ? " (PyTorch names)" : "", folded);

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
  const float* lp = static_cast<const float*>(logits.data());
  uint8_t* mp = static_cast<uint8_t*>(mask.data());
  for (int64_t p = 0; p < N * H * W; ++p) mp[p] = static_cast<uint8_t>(argmax(lp + p * K, K));

  // ---- report and write ---------------------------------------------------------------------------------------------
  for (int64_t n = 0; n < N; ++n) {
    int64_t counts[256] = {0};
    for (int64_t p = 0; p < H * W; ++p) counts[mp[n * H * W + p]]++;
    std::printf("  %s: predicted background %.4f, TC %.4f, AR %.4f", inputs[static_cast<size_t>(n)].c_str(),
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
      std::printf("; IoU against the file's labels %.4f", sample_iou_deepcam(counts, 0));
    }
    std::printf("\n");
  }
  io::PredictionAttrs attrs;
  attrs.model = m.name;
  attrs.weights = c.weights;
  attrs.sources = inputs;
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

}  // namespace

}  // namespace climseg::apps

// ---- NetCDF: time steps streamed in batches over the ranks, one CF-NetCDF output ---------------------------------

#if defined(CLIMSEG_HAVE_NETCDF)

namespace climseg::apps {

namespace {

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return b;
}

uint32_t file_crc32c(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  CS_CHECK(f != nullptr, path, ": cannot open");
  std::vector<char> buf(size_t{1} << 20);
  uint32_t crc = 0;
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) crc = crc32c(buf.data(), n, crc);
  std::fclose(f);
  return crc;
}

int run_predict_netcdf(const PredictCommand& c, const std::vector<std::string>& inputs) {
  CS_CHECK(fs::path(c.output).extension() == ".nc", "--output ", c.output,
           ": NetCDF inputs are written as CF-NetCDF; give the output a .nc name");
  CS_CHECK(c.crop.empty() && c.stride == 1, "--crop and --stride apply to HDF5 samples; NetCDF inputs are read whole");
  CS_CHECK(c.png.empty(), "--png draws HDF5 samples; for NetCDF output, plot the mask variable (e.g. with xarray)");
  const comm::RankInfo ranks = comm::init_ranks();
  const bool root = ranks.rank == 0;
  const Setup su = setup(c, root);
  const ModelConfig& m = su.m;
  CS_CHECK(c.no_normalize || su.stats, c.weights, " carries no normalisation statistics (an older file or a PyTorch ",
           "export): pass --stats FILE (the training set's stats.h5), or --no-normalize for inputs already normalised");

  // The channel map: the defaults for the network's channels, then --channel-map, then --channel.
  io::CfReaderOptions ro;
  ro.channels = io::channel_map(su.channels, c.channel_map, c.channel_specs);
  ro.start = c.start;
  ro.end = c.end;
  ro.fill_missing = c.fill_missing;
  io::CfReader reader(inputs, ro);
  const int64_t N = reader.steps(), H = reader.height(), W = reader.width(), C = reader.channels();
  const int64_t K = m.num_classes;
  const int64_t B = std::min<int64_t>(c.batch, N);
  const int64_t batches = (N + B - 1) / B;

  Net net;
  ModelGraph g = build_model(net, m, B, H, W);
  net.compile(NetOptions{.device = su.dev, .dtype = su.dt, .training = false, .fold = !c.no_fold});
  const int folded = load_into(net, c, su);
  if (root) {
    std::printf("predict: %s on %s (%s), %lld time step(s) %s .. %s of %lldx%lld (lat %g..%g%s, lon %g..%g), "
                "batch %lld, %d rank(s), %d layer(s) folded into convolutions\n",
                m.name.c_str(), device_name(su.dev), dtype_name(su.dt), static_cast<long long>(N),
                reader.time_iso(0).c_str(), reader.time_iso(N - 1).c_str(), static_cast<long long>(H),
                static_cast<long long>(W), reader.grid().lat.front(), reader.grid().lat.back(),
                reader.lat_flipped() ? ", flipped from north-first" : "", reader.grid().lon.front(),
                reader.grid().lon.back(), static_cast<long long>(B), ranks.size, folded);
    std::printf("  calendar %s, time units '%s'\n", reader.time_axis().calendar.c_str(),
                reader.time_axis().units.c_str());
    for (const std::string& d : reader.describe_channels()) std::printf("  channel %s\n", d.c_str());
    if (su.stats) std::printf("  normalisation: %s\n", su.stats_from.c_str());
    std::fflush(stdout);
  }

  // The output (rank 0 writes every step, in time order).
  std::unique_ptr<io::CfMaskWriter> writer;
  if (root) {
    io::CfMaskFileInfo info;
    info.grid = reader.grid();
    info.time = reader.time_axis();
    info.probabilities = c.probabilities;
    std::string channels;
    for (const std::string& d : reader.describe_channels()) channels += (channels.empty() ? "" : "; ") + d;
    char crc[16];
    std::snprintf(crc, sizeof crc, "%08x", file_crc32c(c.weights));
    std::string cmd = "climseg predict --weights " + c.weights + " --input";
    for (const std::string& f : c.inputs) cmd += " " + f;
    cmd += " --output " + c.output;
    info.attributes = {
        {"title", "Tropical cyclones and atmospheric rivers segmented by climseg (" + m.name + ")"},
        {"institution", "climseg"},
        {"source", std::string("climseg ") + CLIMSEG_VERSION_STRING + ", model " + m.name},
        {"history", now_utc() + ": " + cmd},
        {"model", m.name},
        {"weights", c.weights},
        {"weights_crc32c", crc},
        {"channels", channels},
        {"normalization", su.stats ? su.stats_from : "none (--no-normalize)"},
        {"inputs", std::to_string(inputs.size()) + " file(s): " + inputs.front() +
                       (inputs.size() > 1 ? " ... " + inputs.back() : "")},
        {"climseg_version", CLIMSEG_VERSION_STRING},
    };
    for (const auto& [k, v] : model_metadata(m)) info.attributes.emplace_back("model_" + k, v);
    writer = std::make_unique<io::CfMaskWriter>(c.output, info);
  }

  // Batches: batch j is computed by rank j % size; the next one of this rank is read while this one computes.
  const size_t sample_floats = static_cast<size_t>(H * W * C), plane = static_cast<size_t>(H * W);
  Tensor in_now = Tensor::zeros(Shape{B, H, W, C}, DType::f32, Device::cpu);
  Tensor in_next = Tensor::zeros(Shape{B, H, W, C}, DType::f32, Device::cpu);
  auto read_batch = [&](int64_t j, Tensor& dst) -> int64_t {
    int64_t filled = 0;
    const int64_t n0 = j * B, nb = std::min(B, N - n0);
    float* p = static_cast<float*>(dst.data());
    for (int64_t i = 0; i < nb; ++i) filled += reader.read(n0 + i, p + static_cast<size_t>(i) * sample_floats);
    if (nb < B) std::memset(p + static_cast<size_t>(nb) * sample_floats, 0, static_cast<size_t>(B - nb) * sample_floats * sizeof(float));
    if (su.stats) io::normalize(dst, *su.stats);
    return filled;
  };
  ExecContext ctx(su.dev);
  std::vector<uint8_t> masks(static_cast<size_t>(B) * plane);
  std::vector<float> probs(c.probabilities ? static_cast<size_t>(B) * plane * static_cast<size_t>(K) : 0);
  int64_t counts[3] = {0, 0, 0}, filled_total = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::future<int64_t> pending;
  int64_t next_mine = ranks.rank;
  if (next_mine < batches) pending = std::async(std::launch::async, read_batch, next_mine, std::ref(in_next));
  const int kTagMask = 71, kTagProb = 72, kTagFilled = 73;
  for (int64_t j = 0; j < batches; ++j) {
    const int owner = static_cast<int>(j % ranks.size);
    const int64_t n0 = j * B, nb = std::min(B, N - n0);
    int64_t filled = 0;
    if (owner == ranks.rank) {
      filled = pending.get();
      std::swap(in_now, in_next);
      next_mine = j + ranks.size;
      if (next_mine < batches) pending = std::async(std::launch::async, read_batch, next_mine, std::ref(in_next));
      net.input_tensor(g.input).copy_from(su.dt == DType::f32 ? in_now : in_now.cast(su.dt), &ctx);
      net.forward(ctx);
      Tensor out = net.output().to(Device::cpu, &ctx);
      ctx.synchronize();
      if (out.dtype() != DType::f32) out = out.cast(DType::f32);
      const float* lp = static_cast<const float*>(out.data());
      for (size_t p = 0; p < static_cast<size_t>(nb) * plane; ++p) {
        const float* l = lp + p * static_cast<size_t>(K);
        const int64_t best = argmax(l, K);
        masks[p] = static_cast<uint8_t>(best);
        if (c.probabilities) {
          double z = 0;
          for (int64_t k = 0; k < K; ++k) z += std::exp(static_cast<double>(l[k] - l[best]));
          for (int64_t k = 0; k < K; ++k)
            probs[p * static_cast<size_t>(K) + static_cast<size_t>(k)] =
                static_cast<float>(std::exp(static_cast<double>(l[k] - l[best])) / z);
        }
      }
      if (!root) {
        comm::send_to_rank(0, kTagFilled, &filled, sizeof filled);
        comm::send_to_rank(0, kTagMask, masks.data(), static_cast<size_t>(nb) * plane);
        if (c.probabilities) comm::send_to_rank(0, kTagProb, probs.data(), static_cast<size_t>(nb) * plane * K * sizeof(float));
      }
    } else if (root) {
      comm::recv_from_rank(owner, kTagFilled, &filled, sizeof filled);
      comm::recv_from_rank(owner, kTagMask, masks.data(), static_cast<size_t>(nb) * plane);
      if (c.probabilities) comm::recv_from_rank(owner, kTagProb, probs.data(), static_cast<size_t>(nb) * plane * K * sizeof(float));
    }
    if (!root) continue;
    filled_total += filled;
    int64_t bc[3] = {0, 0, 0};
    for (size_t p = 0; p < static_cast<size_t>(nb) * plane; ++p) ++bc[std::min<int>(masks[p], 2)];
    for (int64_t i = 0; i < nb; ++i)
      writer->write(static_cast<size_t>(n0 + i), reader.time_value(n0 + i), masks.data() + static_cast<size_t>(i) * plane,
                    c.probabilities ? probs.data() + static_cast<size_t>(i) * plane * K : nullptr, K);
    for (int k = 0; k < 3; ++k) counts[k] += bc[k];
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double px = static_cast<double>(nb) * static_cast<double>(plane);
    std::printf("  %s .. %s (rank %d): TC %.4f%%, AR %.4f%%%s; %lld/%lld steps, %.2f steps/s\n",
                reader.time_iso(n0).c_str(), reader.time_iso(n0 + nb - 1).c_str(), owner,
                100.0 * static_cast<double>(bc[1]) / px, 100.0 * static_cast<double>(bc[2]) / px,
                filled > 0 ? (", " + std::to_string(filled) + " missing value(s) filled").c_str() : "",
                static_cast<long long>(n0 + nb), static_cast<long long>(N), static_cast<double>(n0 + nb) / secs);
    std::fflush(stdout);
  }
  if (pending.valid()) pending.get();
  if (root) {
    writer->commit();
    const double px = static_cast<double>(N) * static_cast<double>(plane);
    std::printf("wrote %s: %lld time step(s); background %.4f%%, TC %.4f%%, AR %.4f%%%s\n", c.output.c_str(),
                static_cast<long long>(N), 100.0 * static_cast<double>(counts[0]) / px,
                100.0 * static_cast<double>(counts[1]) / px, 100.0 * static_cast<double>(counts[2]) / px,
                filled_total > 0 ? ("; " + std::to_string(filled_total) + " missing value(s) filled").c_str() : "");
  }
  comm::rank_barrier();
  return 0;
}

}  // namespace

}  // namespace climseg::apps

#endif  // CLIMSEG_HAVE_NETCDF
