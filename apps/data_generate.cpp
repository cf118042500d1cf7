// `climseg data generate`: a synthetic dataset in the DeepCAM layout (io/synthetic.h, docs/data.md): DIR/train/ and
// DIR/validation/ with one data-YYYY-MM-DD-HH-R.h5 per sample, and DIR/stats.h5 over the training split. Prints per
// sample the cyclones and rivers labelled (of those placed) and the class fractions, then the fractions overall and
// per split and the time per sample.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "apps/data.h"
#include "engine/check.h"
#include "io/dataset_stats.h"
#include "io/sample_writer.h"
#include "io/synthetic.h"

namespace climseg::apps {

namespace {

namespace fs = std::filesystem;

struct ClassCount {
  int64_t n[3] = {0, 0, 0};
  void add(const Tensor& labels) {
    const uint8_t* l = labels.data_as<uint8_t>();
    for (int64_t p = 0; p < labels.numel(); ++p) ++n[l[p]];
  }
  void add(const ClassCount& o) {
    for (int k = 0; k < 3; ++k) n[k] += o.n[k];
  }
  int64_t total() const { return n[0] + n[1] + n[2]; }
  void print(const char* what, int64_t samples) const {
    if (samples == 0) {
      std::printf("  %-10s  no samples\n", what);
      return;
    }
    const double t = static_cast<double>(total());
    std::printf("  %-10s  %5lld samples  background %8.4f%%  TC %7.4f%%  AR %7.4f%%\n", what,
                static_cast<long long>(samples), 100.0 * n[0] / t, 100.0 * n[1] / t, 100.0 * n[2] / t);
  }
};

bool has_entries(const fs::path& dir) {
  std::error_code ec;
  return fs::directory_iterator(dir, ec) != fs::directory_iterator();
}

// With --force: removes what an earlier `data generate` wrote (data-*.h5 in train/ and validation/, stats.h5) and
// nothing else.
int64_t remove_generated(const fs::path& dir) {
  int64_t removed = 0;
  for (const char* split : {"train", "validation"}) {
    const fs::path d = dir / split;
    if (!fs::is_directory(d)) continue;
    for (const auto& e : fs::directory_iterator(d)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.rfind("data-", 0) == 0 && e.path().extension() == ".h5") {
        fs::remove(e.path());
        ++removed;
      }
    }
  }
  if (fs::exists(dir / "stats.h5")) removed += fs::remove(dir / "stats.h5") ? 1 : 0;
  return removed;
}

}  // namespace

int run_generate(const GenerateOptions& o) {
  using clock = std::chrono::steady_clock;
  const fs::path dir(o.out);
  CS_CHECK(o.valid_fraction >= 0 && o.valid_fraction < 1, "--valid-fraction ", o.valid_fraction, " must be in [0, 1)");
  const int64_t n_valid = static_cast<int64_t>(std::llround(static_cast<double>(o.samples) * o.valid_fraction));
  const int64_t n_train = o.samples - n_valid;
  CS_CHECK(n_train >= 1, "--samples ", o.samples, " with --valid-fraction ", o.valid_fraction,
           " leaves no training sample (stats.h5 is computed over the training split)");
  if (fs::exists(dir)) {
    CS_CHECK(fs::is_directory(dir), "--out ", o.out, " exists and is not a directory");
    if (has_entries(dir)) {
      if (!o.force)
        CS_THROW("--out ", o.out,
                 " is not empty; refusing to overwrite it. Pass --force to replace the files an earlier "
                 "`data generate` wrote there (train/ and validation/ data-*.h5, stats.h5); other files are kept");
      std::printf("--force: removed %lld earlier generated file(s) from %s\n",
                  static_cast<long long>(remove_generated(dir)), o.out.c_str());
    }
  }
  fs::create_directories(dir / "train");
  if (n_valid > 0) fs::create_directories(dir / "validation");

  std::printf(
      "data generate: %lld synthetic sample(s) of %lldx%lld (16 channels), seed %llu -> %s (train %lld, "
      "validation %lld)%s\n",
      static_cast<long long>(o.samples), static_cast<long long>(o.height), static_cast<long long>(o.width),
      static_cast<unsigned long long>(o.seed), o.out.c_str(), static_cast<long long>(n_train),
      static_cast<long long>(n_valid), o.gzip ? (", gzip " + std::to_string(o.gzip)).c_str() : "");
  const auto t_planet = clock::now();
  const io::SyntheticGenerator gen(o.seed, o.height, o.width);
  const double planet_s = std::chrono::duration<double>(clock::now() - t_planet).count();

  io::StatsAccumulator stats;
  ClassCount train, valid;
  double gen_s = 0, write_s = 0;
  int64_t labelled_tc = 0, placed_tc = 0, labelled_ar = 0, placed_ar = 0;
  for (int64_t i = 0; i < o.samples; ++i) {
    const bool is_train = i < n_train;
    const auto t0 = clock::now();
    const io::SyntheticSample s = gen.generate(i);
    const auto t1 = clock::now();
    const fs::path path = dir / (is_train ? "train" : "validation") / s.file_name;
    io::SampleWriteOptions w;
    w.gzip_level = o.gzip;
    w.attributes = {{"generator", "climseg data generate (synthetic climate model 1, docs/data.md)"},
                    {"seed", std::to_string(o.seed)},
                    {"sample_index", std::to_string(i)}};
    io::write_sample(path.string(), s.data, s.labels, w);
    const auto t2 = clock::now();
    if (is_train) stats.add(s.data, path.string());
    ClassCount c;
    c.add(s.labels);
    (is_train ? train : valid).add(c);
    const double g = std::chrono::duration<double>(t1 - t0).count(),
                 wr = std::chrono::duration<double>(t2 - t1).count();
    gen_s += g;
    write_s += wr;
    int tcs = 0, ars = 0, storms = 0, rivers = 0;
    for (const auto& cy : s.report.cyclones) tcs += cy.labelled;
    for (const auto& r : s.report.rivers) ars += r.labelled;
    for (const auto& st : s.storms) storms += !st.decoy;
    for (const auto& r : s.rivers) rivers += !r.decoy;
    labelled_tc += tcs;
    placed_tc += storms;
    labelled_ar += ars;
    placed_ar += rivers;
    const double t = static_cast<double>(c.total());
    if (!o.quiet)
      std::printf("  [%lld/%lld] %-10s %s  TC %d of %d (%.3f%%)  AR %d of %d (%.3f%%)  generate %.3f s  write %.3f s\n",
                static_cast<long long>(i + 1), static_cast<long long>(o.samples), is_train ? "train" : "validation",
                s.file_name.c_str(), tcs, storms, 100.0 * c.n[1] / t, ars, rivers, 100.0 * c.n[2] / t, g, wr);
    std::fflush(stdout);
  }
  const std::string stats_path = (dir / "stats.h5").string();
  io::write_stats(stats_path, stats.result());

  ClassCount all = train;
  all.add(valid);
  std::printf(
      "class fractions (pixels; targets from DeepCAM's train.py: background 98.63%%, TC 0.046%%, AR 1.33%%):\n");
  all.print("overall", o.samples);
  train.print("train", n_train);
  valid.print("validation", n_valid);
  std::printf("labelled by the rules: %lld cyclone(s) of %lld placed, %lld river region(s) for %lld river(s) placed\n",
              static_cast<long long>(labelled_tc), static_cast<long long>(placed_tc),
              static_cast<long long>(labelled_ar), static_cast<long long>(placed_ar));
  std::printf("time per sample (%lldx%lld, one thread): generate %.3f s, write %.3f s; planet %.3f s once\n",
              static_cast<long long>(o.height), static_cast<long long>(o.width), gen_s / o.samples, write_s / o.samples,
              planet_s);
  std::printf("wrote %lld sample(s) and %s\n", static_cast<long long>(o.samples), stats_path.c_str());
  return 0;
}

Subcommand add_data_generate(CLI::App* data) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = data->add_subcommand(
      "generate",
      "Write a synthetic dataset in the DeepCAM layout: DIR/train/, DIR/validation/ (data-YYYY-MM-DD-HH-R.h5) and "
      "DIR/stats.h5; deterministic from the seed");
  cmd->add_option("--out", o->out, "Output directory (must be empty or absent unless --force)")->required();
  cmd->add_option("--samples", o->samples, "Number of samples")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--height", o->height, "Grid rows (latitudes 90N..90S)")
      ->check(CLI::Range(int64_t{8}, int64_t{16384}))
      ->capture_default_str();
  cmd->add_option("--width", o->width, "Grid columns (longitudes 0..360E)")
      ->check(CLI::Range(int64_t{8}, int64_t{16384}))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed: the planet (continents) and every sample's weather")->capture_default_str();
  cmd->add_option("--valid-fraction", o->valid_fraction,
                  "Fraction of the samples (the last ones) that go to validation/")
      ->check(CLI::Range(0.0, 0.999))
      ->capture_default_str();
  cmd->add_option("--gzip", o->gzip, "Compress with gzip at this level (0: off, as DeepCAM's files)")
      ->check(CLI::Range(0, 9))
      ->capture_default_str();
  cmd->add_flag("--force", o->force,
                "Write into a non-empty directory, replacing an earlier run's data-*.h5 and stats.h5");
  return {cmd, [o] { return run_generate(*o); }};
}

}  // namespace climseg::apps
