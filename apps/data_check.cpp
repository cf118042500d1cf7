// `climseg data check DIR`: validates every sample file of a dataset and its stats.h5 (io/dataset_check.h) and
// prints a summary; exits non-zero when a file is bad (with --skip-bad-files, only past --max-bad bad files).
#include <cstdio>
#include <regex>
#include <string>

#include "apps/data.h"
#include "engine/check.h"
#include "io/dataset_check.h"

namespace climseg::apps {

namespace {

struct CheckCommand {
  std::string dir;
  bool skip_bad = false;
  int64_t max_bad = 0;
  int64_t channels = io::kNumChannels;
  bool no_labels = false;
};

// One line per bad file: "<path>: <problem>". The message's own prefix up to the path (a source location, a failed
// HDF5 call) helps a developer, not a reader of a list of bad files.
std::string bad_line(const io::BadFile& b) {
  const std::string& m = b.error;
  const size_t at = m.find(b.path + ": ");
  if (at != std::string::npos) return m.substr(at);
  static const std::regex loc(R"(^[^ :]+\.(cpp|h|cu):[0-9]+: )");
  return b.path + ": " + std::regex_replace(m, loc, "", std::regex_constants::format_first_only);
}

int run_check(const CheckCommand& c) {
  io::SampleCheckOptions opt;
  opt.channels = c.channels;
  opt.labels_required = !c.no_labels;
  const io::DatasetCheck r = io::check_dataset(c.dir, opt);
  CS_CHECK(r.files > 0, c.dir, ": no sample files (*.h5) in the directory or in its train/, validation/ or test/");

  std::printf("climseg data check %s\n", c.dir.c_str());
  std::string splits;
  for (const auto& [name, n] : r.splits)
    splits += detail::concat(splits.empty() ? "" : ", ", name == "." ? "top level" : name, " ", n);
  std::printf("files: %lld sample files (%s)\n", static_cast<long long>(r.files), splits.c_str());
  std::printf("good: %lld samples\n", static_cast<long long>(r.samples));
  for (const auto& [shape, n] : r.shapes) std::printf("  %s: %lld files\n", shape.c_str(), static_cast<long long>(n));
  if (r.shapes.size() > 1)
    std::printf("  warning: the files have %zu different layouts or sizes; one batch needs one size\n",
                r.shapes.size());
  std::printf("bad: %lld sample files\n", static_cast<long long>(r.bad_samples()));
  if (!r.stats_present)
    std::printf("stats.h5: missing (%s); training needs it: `climseg data stats` writes one\n", r.stats_path.c_str());
  else if (r.stats)
    std::printf("stats.h5: good (%s layout, %lld channels)\n",
                r.stats->layout == io::SampleLayout::deepcam ? "DeepCAM" : "2018",
                static_cast<long long>(r.stats->channels()));
  else
    std::printf("stats.h5: bad (listed below)\n");

  if (r.samples > 0) {
    int64_t total = 0;
    for (int64_t n : r.class_pixels) total += n;
    if (total > 0)
      std::printf("class pixel fractions: background %.6f, TC %.6f, AR %.6f (%lld labelled pixels)\n",
                  static_cast<double>(r.class_pixels[0]) / static_cast<double>(total),
                  static_cast<double>(r.class_pixels[1]) / static_cast<double>(total),
                  static_cast<double>(r.class_pixels[2]) / static_cast<double>(total), static_cast<long long>(total));
    const io::Stats s = r.data_stats->result();
    std::printf("channels over the good files%s:\n", r.stats ? " (and stats.h5's min and max)" : "");
    std::printf("  %2s %-7s %14s %14s %14s", "c", "name", "min", "max", "mean");
    if (r.stats) std::printf(" %14s %14s", "stats.h5 min", "stats.h5 max");
    std::printf("\n");
    for (int64_t ch = 0; ch < s.channels(); ++ch) {
      const auto k = static_cast<size_t>(ch);
      std::printf("  %2lld %-7s %14.6g %14.6g %14.6g", static_cast<long long>(ch), io::channel_name(ch), s.minval[k],
                  s.maxval[k], s.mean[k]);
      if (r.stats && ch < r.stats->channels()) {
        const bool outside = s.minval[k] < r.stats->minval[k] || s.maxval[k] > r.stats->maxval[k];
        std::printf(" %14.6g %14.6g%s", r.stats->minval[k], r.stats->maxval[k],
                    outside ? "  (data outside stats.h5's range: normalises beyond [0,1])" : "");
      }
      std::printf("\n");
    }
  }

  const auto nbad = static_cast<int64_t>(r.bad.size());
  if (nbad > 0) {
    std::printf("bad files (%lld):\n", static_cast<long long>(nbad));
    for (const io::BadFile& b : r.bad) std::printf("  %s\n", bad_line(b).c_str());
  }
  bool ok = nbad == 0;
  std::string verdict = "OK";
  if (nbad > 0 && !c.skip_bad) {
    verdict = detail::concat("FAILED: ", nbad, " bad file", nbad == 1 ? "" : "s",
                             " (--skip-bad-files lists them without failing)");
  } else if (nbad > 0 && c.max_bad > 0 && nbad > c.max_bad) {
    verdict = detail::concat("FAILED: ", nbad, " bad files, more than --max-bad ", c.max_bad);
  } else if (r.samples == 0) {
    verdict = "FAILED: no good sample files";
  } else if (nbad > 0) {
    ok = true;
    verdict = detail::concat("OK with ", nbad, " bad file", nbad == 1 ? "" : "s", " skipped (--skip-bad-files)");
  }
  if (r.samples == 0) ok = false;
  std::printf("result: %s\n", verdict.c_str());
  std::fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace

Subcommand add_data_check(CLI::App* data) {
  static CheckCommand c;
  CLI::App* cmd = data->add_subcommand(
      "check",
      "Validate every sample file (*.h5 in DIR, DIR/train, DIR/validation, DIR/test) and DIR/stats.h5; print a "
      "summary (files, samples, per-channel min/max/mean, class fractions) and each bad file's error");
  cmd->add_option("dir", c.dir, "Dataset directory")->required();
  CLI::Option* skip =
      cmd->add_flag("--skip-bad-files", c.skip_bad, "List and count bad files, but fail only past --max-bad");
  cmd->add_option("--max-bad", c.max_bad, "With --skip-bad-files: fail when more files are bad (0: any number)")
      ->check(CLI::NonNegativeNumber)
      ->needs(skip)
      ->capture_default_str();
  cmd->add_option("--channels", c.channels, "Channels every file must have")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--no-labels", c.no_labels, "Files without labels are good (inputs for predict)");
  return {cmd, [] { return run_check(c); }};
}

}  // namespace climseg::apps
