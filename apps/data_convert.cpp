// `climseg data convert`: DeepCAM-layout HDF5 samples (and stats.h5) from CF-NetCDF time steps, with labels from mask
// files (`climseg predict`'s NetCDF output, or `data generate --format netcdf`'s labels/), so NetCDF model output can
// be used for training (docs/data.md "NetCDF input"). One sample per time step: DIR/train/ and DIR/validation/ (the
// last --valid-fraction of the steps, in time order, as `data generate` splits), DIR/stats.h5 over the training split.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "apps/data.h"
#include "engine/check.h"
#include "io/dataset_stats.h"
#include "io/input_files.h"
#include "io/input_metadata.h"
#include "io/sample_writer.h"
#if defined(CLIMSEG_HAVE_NETCDF)
#include "io/cf_reader.h"
#include "io/cf_writer.h"
#endif

namespace climseg::apps {

namespace {

namespace fs = std::filesystem;

struct ConvertOptions {
  std::vector<std::string> inputs, labels;
  std::string out, labels_var = "mask", channel_map, start, end;
  std::vector<std::string> channel_specs;
  double valid_fraction = 0.1;
  bool fill_missing = false, force = false;
  int gzip = 0;
};

#if defined(CLIMSEG_HAVE_NETCDF)
int run_convert(const ConvertOptions& o) {
  const std::vector<std::string> inputs = io::expand_globs(o.inputs), labels = io::expand_globs(o.labels);
  for (const std::string& f : inputs) CS_CHECK(fs::is_regular_file(f), "--input ", f, ": no such file");
  for (const std::string& f : labels) CS_CHECK(fs::is_regular_file(f), "--labels ", f, ": no such file");
  io::CfReaderOptions ro;
  ro.channels = io::channel_map(io::default_channel_names(), o.channel_map, o.channel_specs);
  ro.start = o.start;
  ro.end = o.end;
  ro.fill_missing = o.fill_missing;
  io::CfReader data(inputs, ro);
  io::CfReaderOptions lo;
  lo.channels = {io::parse_channel_source("labels=" + o.labels_var, "--labels-var")};
  io::CfReader lab(labels, lo);
  const int64_t N = data.steps(), H = data.height(), W = data.width(), C = data.channels();
  CS_CHECK(lab.height() == H && lab.width() == W, "--labels ", labels.front(), ": grid ", lab.height(), "x",
           lab.width(), " differs from the inputs' ", H, "x", W);
  std::map<std::string, int64_t> label_step;
  for (int64_t t = 0; t < lab.steps(); ++t) label_step[lab.time_iso(t)] = t;

  const fs::path dir(o.out);
  if (fs::exists(dir)) {
    CS_CHECK(fs::is_directory(dir), "--out ", o.out, " exists and is not a directory");
    CS_CHECK(o.force || fs::directory_iterator(dir) == fs::directory_iterator(), "--out ", o.out,
             " is not empty; refusing to overwrite it (pass --force to write into it)");
  }
  const int64_t n_valid = static_cast<int64_t>(std::floor(o.valid_fraction * static_cast<double>(N)));
  fs::create_directories(dir / "train");
  if (n_valid > 0) fs::create_directories(dir / "validation");
  std::printf("convert: %lld time step(s) %s .. %s of %lldx%lld, %lld channels -> %s (%lld train, %lld validation)\n",
              static_cast<long long>(N), data.time_iso(0).c_str(), data.time_iso(N - 1).c_str(),
              static_cast<long long>(H), static_cast<long long>(W), static_cast<long long>(C), o.out.c_str(),
              static_cast<long long>(N - n_valid), static_cast<long long>(n_valid));
  for (const std::string& d : data.describe_channels()) std::printf("  channel %s\n", d.c_str());

  Tensor x = Tensor::empty(Shape{1, H, W, C}, DType::f32);
  Tensor l = Tensor::empty(Shape{1, H, W, 1}, DType::f32);
  Tensor y = Tensor::empty(Shape{1, H, W, 1}, DType::u8);
  io::StatsAccumulator acc(C);
  int64_t filled = 0, counts[3] = {0, 0, 0};
  for (int64_t t = 0; t < N; ++t) {
    const std::string when = data.time_iso(t);
    const auto it = label_step.find(when);
    CS_CHECK(it != label_step.end(), "--labels: no mask for time ", when, " (the ", lab.steps(), " mask steps run ",
             lab.time_iso(0), " .. ", lab.time_iso(lab.steps() - 1), ")");
    filled += data.read(t, static_cast<float*>(x.data()));
    lab.read(it->second, static_cast<float*>(l.data()));
    const float* lp = static_cast<const float*>(l.data());
    uint8_t* yp = static_cast<uint8_t*>(y.data());
    for (int64_t p = 0; p < H * W; ++p) {
      CS_CHECK(lp[p] == 0.0f || lp[p] == 1.0f || lp[p] == 2.0f, "--labels ", lab.step_file(it->second), ": ",
               o.labels_var, " at ", when, " has value ", lp[p], " (classes are 0, 1, 2)");
      yp[p] = static_cast<uint8_t>(lp[p]);
      ++counts[yp[p]];
    }
    const bool valid = t >= N - n_valid;
    if (!valid) acc.add(x, data.step_file(t) + " at " + when);
    // DeepCAM's names: data-YYYY-MM-DD-HH-1.h5 (run 1).
    const std::string name = "data-" + when.substr(0, 10) + "-" + when.substr(11, 2) + "-1.h5";
    io::SampleWriteOptions so;
    so.gzip_level = o.gzip;
    so.attributes = {{"source", data.step_file(t)}, {"time", when}, {"labels", lab.step_file(it->second)}};
    io::write_sample((dir / (valid ? "validation" : "train") / name).string(), x, y, so);
  }
  if (N - n_valid > 0) io::write_stats((dir / "stats.h5").string(), acc.result());
  const double px = static_cast<double>(N * H * W);
  std::printf("wrote %lld sample(s) and %s/stats.h5 (training split); labels background %.4f%%, TC %.4f%%, AR "
              "%.4f%%%s\n",
              static_cast<long long>(N), o.out.c_str(), 100.0 * counts[0] / px, 100.0 * counts[1] / px,
              100.0 * counts[2] / px, filled > 0 ? ("; " + std::to_string(filled) + " missing value(s) filled").c_str() : "");
  return 0;
}
#else
int run_convert(const ConvertOptions&) {
  CS_THROW("data convert reads NetCDF, but this climseg was built without libnetcdf (install libnetcdf-dev and "
           "rebuild: scripts/setup.sh)");
}
#endif

}  // namespace

Subcommand add_data_convert(CLI::App* data) {
  static ConvertOptions o;
  CLI::App* c = data->add_subcommand(
      "convert", "DeepCAM-layout HDF5 samples and stats.h5 from CF-NetCDF time steps and mask files, for training");
  c->add_option("--input", o.inputs, "CF-NetCDF input files (quoted patterns are expanded), as for predict")
      ->required();
  c->add_option("--labels", o.labels,
                "Mask files with the same grid and times (predict's NetCDF output, or data generate's labels/)")
      ->required();
  c->add_option("--labels-var", o.labels_var, "The class variable in the mask files")->capture_default_str();
  c->add_option("--out", o.out, "Output directory: train/, validation/, stats.h5")->required();
  c->add_option("--valid-fraction", o.valid_fraction, "Fraction of the steps (the last ones) that go to validation/")
      ->check(CLI::Range(0.0, 0.999))
      ->capture_default_str();
  c->add_option("--channel", o.channel_specs, "CHANNEL=VAR[@LEVEL_HPA][*SCALE][|VAR...] (repeatable), as for predict");
  c->add_option("--channel-map", o.channel_map, "A file of --channel specs")->check(CLI::ExistingFile);
  c->add_option("--start", o.start, "First time step (ISO date)");
  c->add_option("--end", o.end, "Last time step (inclusive)");
  c->add_flag("--fill-missing", o.fill_missing, "Fill missing values with the field's mean instead of failing");
  c->add_option("--gzip", o.gzip, "Compress the samples with gzip at this level (0: off)")->check(CLI::Range(0, 9));
  c->add_flag("--force", o.force, "Write into a non-empty directory");
  return {c, [] { return run_convert(o); }};
}

}  // namespace climseg::apps
