// `climseg data generate`: a synthetic dataset (io/synthetic.h, docs/data.md "Synthetic data").
//   --format hdf5 (default): the DeepCAM layout, DIR/train/ and DIR/validation/ with one data-YYYY-MM-DD-HH-R.h5 per
//     sample, and DIR/stats.h5 over the training split. Prints per sample the cyclones and rivers labelled (of those
//     placed) and the class fractions, then the fractions overall and per split and the time per sample.
//   --format netcdf: CAM-like history files DIR/synthetic.cam.h2.YYYY-MM-DD-SSSSS.nc of --steps-per-file 3-hourly
//     steps (noleap calendar, from --start-date), the truth masks in DIR/labels/synthetic.labels.YYYY-MM-DD-SSSSS.nc
//     and DIR/stats.h5 over every step. Prints one line per file, then the class fractions.
//     --sequence: the steps are a coherent time series (io::SyntheticSequence: cyclones and rivers that live for
//     several steps and move) and DIR/truth.csv, DIR/truth_events.csv catalogue what was placed (write_truth).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "apps/data.h"
#include "engine/atomic_file.h"
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

bool starts_ends(const std::string& name, const char* prefix, const char* suffix) {
  const std::string p(prefix), x(suffix);
  return name.size() >= p.size() + x.size() && name.compare(0, p.size(), p) == 0 &&
         name.compare(name.size() - x.size(), x.size(), x) == 0;
}

// With --force: removes what an earlier `data generate` wrote in either format (data-*.h5 in train/ and
// validation/, synthetic.cam.h2.*.nc, labels/synthetic.labels.*.nc, stats.h5, truth.csv, truth_events.csv) and
// nothing else.
int64_t remove_generated(const fs::path& dir) {
  int64_t removed = 0;
  auto remove_in = [&](const fs::path& d, const char* prefix, const char* suffix) {
    if (!fs::is_directory(d)) return;
    std::vector<fs::path> doomed;
    for (const auto& e : fs::directory_iterator(d))
      if (e.is_regular_file() && starts_ends(e.path().filename().string(), prefix, suffix)) doomed.push_back(e.path());
    for (const fs::path& p : doomed) removed += fs::remove(p) ? 1 : 0;
  };
  remove_in(dir / "train", "data-", ".h5");
  remove_in(dir / "validation", "data-", ".h5");
  remove_in(dir, "synthetic.cam.h2.", ".nc");
  remove_in(dir / "labels", "synthetic.labels.", ".nc");
  for (const char* name : {"stats.h5", "truth.csv", "truth_events.csv"})
    if (fs::exists(dir / name)) removed += fs::remove(dir / name) ? 1 : 0;
  return removed;
}

// Refuses a non-empty --out unless --force, which removes the earlier generated files.
void prepare_out(const GenerateOptions& o) {
  const fs::path dir(o.out);
  if (!fs::exists(dir)) return;
  CS_CHECK(fs::is_directory(dir), "--out ", o.out, " exists and is not a directory");
  if (!has_entries(dir)) return;
  if (!o.force)
    CS_THROW("--out ", o.out,
             " is not empty; refusing to overwrite it. Pass --force to replace the files an earlier `data generate` "
             "wrote there (train/ and validation/ data-*.h5, synthetic.cam.h2.*.nc, labels/synthetic.labels.*.nc, "
             "stats.h5, truth.csv, truth_events.csv); other files are kept");
  std::printf("--force: removed %lld earlier generated file(s) from %s\n",
              static_cast<long long>(remove_generated(dir)), o.out.c_str());
}

int run_generate_hdf5(const GenerateOptions& o) {
  using clock = std::chrono::steady_clock;
  const fs::path dir(o.out);
  CS_CHECK(o.valid_fraction >= 0 && o.valid_fraction < 1, "--valid-fraction ", o.valid_fraction, " must be in [0, 1)");
  const int64_t n_valid = static_cast<int64_t>(std::llround(static_cast<double>(o.samples) * o.valid_fraction));
  const int64_t n_train = o.samples - n_valid;
  CS_CHECK(n_train >= 1, "--samples ", o.samples, " with --valid-fraction ", o.valid_fraction,
           " leaves no training sample (stats.h5 is computed over the training split)");
  prepare_out(o);
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

#if CLIMSEG_HAVE_NETCDF
// "YYYY-MM-DD", optionally followed by " HH:MM" or "THH:MM" (seconds ":00" allowed): the first 3-hourly step of the
// noleap calendar, counted from 2000-01-01 00:00.
int64_t parse_start_step(const std::string& s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, n = 0;
  bool ok = std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10;
  if (ok && static_cast<size_t>(n) < s.size()) {
    const char sep = s[static_cast<size_t>(n)];
    const std::string rest = s.substr(static_cast<size_t>(n) + 1);
    int m = 0;
    ok = (sep == ' ' || sep == 'T') &&
         ((std::sscanf(rest.c_str(), "%2d:%2d:%2d%n", &h, &mi, &sec, &m) == 3 && m == 8 && rest.size() == 8) ||
          (std::sscanf(rest.c_str(), "%2d:%2d%n", &h, &mi, &m) == 2 && m == 5 && rest.size() == 5));
  }
  if (!ok || mi != 0 || sec != 0)
    CS_THROW("--start-date '", s, "': expected YYYY-MM-DD or 'YYYY-MM-DD HH:00' (noleap calendar, HH a multiple of 3)");
  return io::noleap_step_index(y, mo, d, h);
}

// "2000-01-01T03:00:00": the date of absolute 3-hourly noleap step g.
std::string iso_time(int64_t g) {
  const io::SampleTime t = io::noleap_step_time(g);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:00:00", t.year, t.month, t.day, 3 * t.step);
  return buf;
}

// "%.<digits>f" of a longitude in [0, 360), never printed as 360.
std::string lon_text(double lon, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, lon);
  if (std::strtod(buf, nullptr) >= 360.0) std::snprintf(buf, sizeof buf, "%.*f", digits, 0.0);
  return buf;
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  AtomicFile out(path.string());
  std::FILE* f = std::fopen(out.tmp_path().c_str(), "wb");
  CS_CHECK(f, "cannot write ", out.tmp_path());
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  CS_CHECK(std::fclose(f) == 0 && ok, "writing ", out.tmp_path(), " failed");
  out.commit();
}

// DIR/truth.csv: one row per (event, step) of the window, by event id then step (io::SyntheticSequence::truth());
// step is the 0-based index of the time step in the files written, time its date. DIR/truth_events.csv: one row per
// event, its first and last step in the window. Returns (cyclones, rivers).
std::pair<int64_t, int64_t> write_truth(const fs::path& dir, const io::SyntheticSequence& seq) {
  const int64_t first = seq.first_step();
  auto cls = [](bool cyclone) { return cyclone ? "tropical_cyclone" : "atmospheric_river"; };
  std::string points = "event_id,class,step,time,lat_deg,lon_deg,strength,path\n";
  std::map<int64_t, std::pair<int64_t, int64_t>> span;  // event id -> first, last absolute step in the window
  for (const io::TruthPoint& p : seq.truth()) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%lld,%s,%lld,%s,%.4f,%s,%.3f,", static_cast<long long>(p.event_id), cls(p.cyclone),
                  static_cast<long long>(p.step - first), iso_time(p.step).c_str(), p.lat, lon_text(p.lon, 4).c_str(),
                  p.strength);
    points += buf;
    for (size_t k = 0; k < p.path.size(); ++k) {
      std::snprintf(buf, sizeof buf, "%s%.3f %s", k ? ";" : "", p.path[k].first, lon_text(p.path[k].second, 3).c_str());
      points += buf;
    }
    points += "\n";
    auto [it, fresh] = span.emplace(p.event_id, std::make_pair(p.step, p.step));
    if (!fresh) it->second.second = p.step;
  }
  std::string events = "event_id,class,first_step,last_step,first_time,last_time,steps\n";
  int64_t cyclones = 0, rivers = 0;
  for (const io::SequenceEvent& e : seq.events()) {
    const auto [g0, g1] = span.at(e.id);
    char buf[160];
    std::snprintf(buf, sizeof buf, "%lld,%s,%lld,%lld,%s,%s,%lld\n", static_cast<long long>(e.id), cls(e.cyclone),
                  static_cast<long long>(g0 - first), static_cast<long long>(g1 - first), iso_time(g0).c_str(),
                  iso_time(g1).c_str(), static_cast<long long>(g1 - g0 + 1));
    events += buf;
    ++(e.cyclone ? cyclones : rivers);
  }
  write_text_atomically(dir / "truth.csv", points);
  write_text_atomically(dir / "truth_events.csv", events);
  return {cyclones, rivers};
}

// History files of steps [first, first + n) (3-hourly steps since 2000-01-01 00:00, noleap). Step g's weather is
// drawn from (seed, g) and dated by its own time, so a date has the same weather whatever --start-date a run used.
// With `sequence`, io::SyntheticSequence draws the steps (events that persist and move, the same for a date
// whatever the window) and the truth catalogue is written too.
int run_generate_netcdf(const GenerateOptions& o, bool sequence) {
  using clock = std::chrono::steady_clock;
  const fs::path dir(o.out);
  CS_CHECK(o.steps_per_file >= 1, "--steps-per-file ", o.steps_per_file, " must be >= 1");
  const int64_t first = parse_start_step(o.start_date);
  CS_CHECK(first + o.samples < (int64_t{1} << 40), "--samples ", o.samples, " from ", o.start_date,
           " runs past the noleap calendar's year 9999");
  prepare_out(o);
  fs::create_directories(dir / "labels");
  const int64_t n_files = (o.samples + o.steps_per_file - 1) / o.steps_per_file;
  const io::SampleTime t0 = io::noleap_step_time(first);
  std::printf(
      "data generate: %lld synthetic 3-hourly step(s) of %lldx%lld (16 channels), seed %llu, from "
      "%04d-%02d-%02d %02d:00 (noleap) -> %s: %lld NetCDF-4 history file(s) of up to %lld step(s), labels/, "
      "stats.h5%s\n",
      static_cast<long long>(o.samples), static_cast<long long>(o.height), static_cast<long long>(o.width),
      static_cast<unsigned long long>(o.seed), t0.year, t0.month, t0.day, 3 * t0.step, o.out.c_str(),
      static_cast<long long>(n_files), static_cast<long long>(o.steps_per_file),
      sequence ? ", truth.csv, truth_events.csv (sequence: events that persist and move)" : "");
  const auto t_planet = clock::now();
  std::optional<io::SyntheticSequence> seq;
  std::optional<io::SyntheticGenerator> single;
  if (sequence)
    seq.emplace(o.seed, o.height, o.width, first, o.samples);
  else
    single.emplace(o.seed, o.height, o.width);
  const double planet_s = std::chrono::duration<double>(clock::now() - t_planet).count();

  io::StatsAccumulator stats;
  ClassCount all;
  double gen_s = 0, write_s = 0;
  int64_t labelled_tc = 0, placed_tc = 0, labelled_ar = 0, placed_ar = 0;
  for (int64_t f = 0; f < n_files; ++f) {
    const int64_t k0 = f * o.steps_per_file, k1 = std::min(o.samples, k0 + o.steps_per_file);
    const io::SampleTime first_time = io::noleap_step_time(first + k0);
    const std::string data_name = io::history_file_name("cam.h2", first_time);
    const std::string label_name = io::history_file_name("labels", first_time);
    std::vector<Tensor> data, labels;
    std::vector<double> time_days;
    ClassCount c;
    int tcs = 0, ars = 0, storms = 0, rivers = 0;
    const auto t0g = clock::now();
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t g = first + k;
      io::SyntheticSample s = seq ? seq->generate(k) : single->generate(g, io::noleap_step_time(g));
      stats.add(s.data, data_name);
      c.add(s.labels);
      for (const auto& cy : s.report.cyclones) tcs += cy.labelled;
      for (const auto& r : s.report.rivers) ars += r.labelled;
      for (const auto& st : s.storms) storms += !st.decoy;
      for (const auto& r : s.rivers) rivers += !r.decoy;
      data.push_back(std::move(s.data));
      labels.push_back(std::move(s.labels));
      time_days.push_back(0.125 * static_cast<double>(g));  // exact: g < 2^40
    }
    const auto t1 = clock::now();
    {
      AtomicFile out((dir / data_name).string());
      io::write_history_data(out.tmp_path(), data, time_days, o.seed);
      out.commit();
    }
    {
      AtomicFile out((dir / "labels" / label_name).string());
      io::write_history_labels(out.tmp_path(), labels, time_days, o.seed);
      out.commit();
    }
    const auto t2 = clock::now();
    const double g = std::chrono::duration<double>(t1 - t0g).count(),
                 wr = std::chrono::duration<double>(t2 - t1).count();
    gen_s += g;
    write_s += wr;
    all.add(c);
    labelled_tc += tcs;
    placed_tc += storms;
    labelled_ar += ars;
    placed_ar += rivers;
    const double t = static_cast<double>(c.total());
    if (!o.quiet)
      std::printf(
          "  [%lld/%lld] %s  %lld step(s)  TC %d of %d (%.3f%%)  AR %d of %d (%.3f%%)  generate %.3f s  "
          "write %.3f s\n",
          static_cast<long long>(f + 1), static_cast<long long>(n_files), data_name.c_str(),
          static_cast<long long>(k1 - k0), tcs, storms, 100.0 * c.n[1] / t, ars, rivers, 100.0 * c.n[2] / t, g, wr);
    std::fflush(stdout);
  }
  const std::string stats_path = (dir / "stats.h5").string();
  io::write_stats(stats_path, stats.result());
  if (seq) {
    const auto [cyclones, rivers] = write_truth(dir, *seq);
    std::printf(
        "sequence: placed %lld tropical cyclone(s) and %lld atmospheric river(s), %lld (event, step) point(s) -> "
        "%s, %s\n",
        static_cast<long long>(cyclones), static_cast<long long>(rivers), static_cast<long long>(seq->truth().size()),
        (dir / "truth.csv").string().c_str(), (dir / "truth_events.csv").string().c_str());
  }
  std::printf(
      "class fractions (pixels; targets from DeepCAM's train.py: background 98.63%%, TC 0.046%%, AR 1.33%%):\n");
  all.print("overall", o.samples);
  std::printf("labelled by the rules: %lld cyclone(s) of %lld placed, %lld river region(s) for %lld river(s) placed\n",
              static_cast<long long>(labelled_tc), static_cast<long long>(placed_tc),
              static_cast<long long>(labelled_ar), static_cast<long long>(placed_ar));
  std::printf("time per step (%lldx%lld, one thread): generate %.3f s, write %.3f s; planet %.3f s once\n",
              static_cast<long long>(o.height), static_cast<long long>(o.width), gen_s / o.samples, write_s / o.samples,
              planet_s);
  std::printf("wrote %lld step(s) in %lld history file(s) and %lld label file(s), and %s\n",
              static_cast<long long>(o.samples), static_cast<long long>(n_files), static_cast<long long>(n_files),
              stats_path.c_str());
  return 0;
}
#endif

int generate(const GenerateOptions& o) {
  CS_CHECK(!o.sequence || o.format == "netcdf",
           "--sequence is for --format netcdf (a time series of history files with a truth catalogue); got --format ",
           o.format);
  if (o.format == "hdf5") return run_generate_hdf5(o);
  CS_CHECK(o.format == "netcdf", "--format ", o.format, ": expected hdf5 or netcdf");
#if CLIMSEG_HAVE_NETCDF
  return run_generate_netcdf(o, o.sequence);
#else
  CS_THROW(
      "--format netcdf: this build has no NetCDF support (libnetcdf was not found when it was configured; "
      "install libnetcdf-dev and rerun cmake)");
#endif
}

}  // namespace

int run_generate(const GenerateOptions& o) { return generate(o); }


Subcommand add_data_generate(CLI::App* data) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = data->add_subcommand(
      "generate",
      "Write a synthetic dataset in the DeepCAM layout: DIR/train/, DIR/validation/ (data-YYYY-MM-DD-HH-R.h5) and "
      "DIR/stats.h5, or (--format netcdf) as CAM-like NetCDF history files; deterministic from the seed");
  cmd->add_option("--out", o->out, "Output directory (must be empty or absent unless --force)")->required();
  cmd->add_option("--samples", o->samples, "Number of samples (netcdf: of 3-hourly time steps)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--height", o->height, "Grid rows (latitudes from 90S to 90N: row 0 southernmost)")
      ->check(CLI::Range(int64_t{8}, int64_t{16384}))
      ->capture_default_str();
  cmd->add_option("--width", o->width, "Grid columns (longitudes 0..360E)")
      ->check(CLI::Range(int64_t{8}, int64_t{16384}))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed: the planet (continents) and every sample's weather")->capture_default_str();
  CLI::Option* valid = cmd->add_option("--valid-fraction", o->valid_fraction,
                                       "Fraction of the samples (the last ones) that go to validation/")
                           ->check(CLI::Range(0.0, 0.999))
                           ->capture_default_str();
  CLI::Option* gzip =
      cmd->add_option("--gzip", o->gzip, "Compress with gzip at this level (0: off, as DeepCAM's files)")
          ->check(CLI::Range(0, 9))
          ->capture_default_str();
  cmd->add_flag("--force", o->force,
                "Write into a non-empty directory, replacing an earlier run's generated files (data-*.h5, "
                "synthetic.*.nc, stats.h5)");
  CLI::Option* steps = cmd->add_option("--steps-per-file", o->steps_per_file,
                                       "netcdf: 3-hourly time steps per history file (the last may hold fewer)")
                           ->check(CLI::PositiveNumber)
                           ->capture_default_str();
  CLI::Option* start =
      cmd->add_option("--start-date", o->start_date,
                      "netcdf: date of the first step, 'YYYY-MM-DD[ HH:00]' in the noleap calendar, 2000-01-01 or "
                      "later, HH a multiple of 3")
          ->capture_default_str();
  cmd->add_option("--format", o->format,
                  "hdf5: DeepCAM layout (train/, validation/, stats.h5); netcdf: CAM-like history files "
                  "synthetic.cam.h2.YYYY-MM-DD-SSSSS.nc, labels/synthetic.labels.*.nc and stats.h5, --samples "
                  "3-hourly steps")
      ->check(CLI::IsMember({"hdf5", "netcdf"}))
      ->capture_default_str();
  cmd->add_flag("--sequence", o->sequence,
                "netcdf: a coherent time series in which tropical cyclones and atmospheric rivers live for several "
                "steps and move, with their truth catalogue in DIR/truth.csv and DIR/truth_events.csv");
  return {cmd, [o, valid, gzip, steps, start] {
            if (o->format == "netcdf") {
              CS_CHECK(valid->count() == 0 && gzip->count() == 0,
                       "--valid-fraction and --gzip are for --format hdf5 (NetCDF history files have no split and "
                       "are not compressed)");
            } else {
              CS_CHECK(steps->count() == 0 && start->count() == 0,
                       "--steps-per-file and --start-date are for --format netcdf");
            }
            return run_generate(*o);
          }};
}

}  // namespace climseg::apps
