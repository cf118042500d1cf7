// `climseg data stats DIR`: stats.h5 as DeepCAM's summarize_data.py computes it (per channel count, mean, mean of
// squares, min, max; file by file, count-weighted merge) over DIR/train/*.h5, or DIR/*.h5 when there is no train/,
// with io::StatsAccumulator; files in name order, so the same files give the same bytes. Prints a per-channel table.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apps/data.h"
#include "engine/check.h"
#include "io/dataset_stats.h"
#include "io/hdf5_sample.h"

namespace climseg::apps {

namespace {

namespace fs = std::filesystem;

struct StatsOptions {
  std::string dir;
  std::string out;
};

int run_stats(const StatsOptions& o) {
  const fs::path dir(o.dir);
  CS_CHECK(fs::is_directory(dir), o.dir, ": not a directory");
  const fs::path src = fs::is_directory(dir / "train") ? dir / "train" : dir;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(src))
    if (e.is_regular_file() && e.path().extension() == ".h5" && e.path().filename() != "stats.h5")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  CS_CHECK(!files.empty(), src.string(), ": no sample files (*.h5 other than stats.h5)");
  const std::string out = o.out.empty() ? (dir / "stats.h5").string() : o.out;
  std::printf("data stats: %zu file(s) in %s -> %s\n", files.size(), src.string().c_str(), out.c_str());

  io::StatsAccumulator acc;
  io::ReadOptions ro;
  ro.labels_required = false;
  for (const fs::path& f : files) acc.add(io::read_sample(f.string(), ro).data, f.string());
  const io::Stats s = acc.result();
  io::write_stats(out, s);

  std::printf("%3s  %-7s %14s %14s %14s %14s %12s\n", "ch", "name", "min", "max", "mean", "std", "count");
  for (int64_t c = 0; c < acc.channels(); ++c) {
    const auto k = static_cast<size_t>(c);
    const double var = std::max(0.0, s.sqmean[k] - s.mean[k] * s.mean[k]);
    std::printf("%3lld  %-7s %14.6g %14.6g %14.6g %14.6g %12.0f\n", static_cast<long long>(c), io::channel_name(c),
                s.minval[k], s.maxval[k], s.mean[k], std::sqrt(var), s.count[k]);
  }
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

Subcommand add_data_stats(CLI::App* data) {
  auto o = std::make_shared<StatsOptions>();
  CLI::App* cmd = data->add_subcommand(
      "stats", "Per-channel statistics (stats.h5, DeepCAM layout) over DIR/train, or DIR when it has no train/");
  cmd->add_option("dir", o->dir, "Dataset directory")->required();
  cmd->add_option("--out", o->out, "Output file (default DIR/stats.h5)");
  return {cmd, [o] { return run_stats(*o); }};
}

}  // namespace climseg::apps
