#include "apps/events.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <map>

#include "analysis/event_maps.h"
#include "analysis/event_outputs.h"
#include "analysis/events.h"
#include "analysis/mask_series.h"
#include "comm/ranks.h"
#include "engine/check.h"
#include "io/input_files.h"
#include "io/rgb_image.h"
#if CLIMSEG_HAVE_NETCDF
#include "io/cf_reader.h"
#endif

namespace climseg::apps {

namespace fs = std::filesystem;
using namespace climseg::analysis;

namespace {

// ---- objects between ranks ---------------------------------------------------------------------------------------
template <class T>
void put(std::vector<uint8_t>& b, const T& v) {
  const size_t n = b.size();
  b.resize(n + sizeof(T));
  std::memcpy(b.data() + n, &v, sizeof(T));
}
template <class T>
T get(const std::vector<uint8_t>& b, size_t& at) {
  CS_CHECK(at + sizeof(T) <= b.size(), "events: truncated object message");
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  at += sizeof(T);
  return v;
}

std::vector<uint8_t> pack(const std::vector<Object>& objs) {
  std::vector<uint8_t> b;
  put<uint64_t>(b, objs.size());
  for (const Object& o : objs) {
    put(b, o.step);
    put<int32_t>(b, o.cls);
    put(b, o.label);
    put(b, o.pixels);
    for (double d : {o.area_km2, o.lat, o.lon, o.lat_min, o.lat_max, o.lon_west, o.lon_east, o.max_wind, o.min_psl,
                     o.max_prect, o.max_tmq, o.mean_tmq, o.max_ivt_proxy})
      put(b, d);
    put<uint64_t>(b, o.runs.size());
    const size_t n = b.size();
    b.resize(n + o.runs.size() * sizeof(Run));
    if (!o.runs.empty()) std::memcpy(b.data() + n, o.runs.data(), o.runs.size() * sizeof(Run));
  }
  return b;
}

void unpack(const std::vector<uint8_t>& b, std::vector<Object>& out) {
  size_t at = 0;
  const uint64_t n = get<uint64_t>(b, at);
  for (uint64_t i = 0; i < n; ++i) {
    Object o;
    o.step = get<int64_t>(b, at);
    o.cls = get<int32_t>(b, at);
    o.label = get<int32_t>(b, at);
    o.pixels = get<int64_t>(b, at);
    for (double* d : {&o.area_km2, &o.lat, &o.lon, &o.lat_min, &o.lat_max, &o.lon_west, &o.lon_east, &o.max_wind,
                      &o.min_psl, &o.max_prect, &o.max_tmq, &o.mean_tmq, &o.max_ivt_proxy})
      *d = get<double>(b, at);
    const uint64_t r = get<uint64_t>(b, at);
    CS_CHECK(at + r * sizeof(Run) <= b.size(), "events: truncated object message");
    o.runs.resize(r);
    if (r) std::memcpy(o.runs.data(), b.data() + at, r * sizeof(Run));
    at += r * sizeof(Run);
    out.push_back(std::move(o));
  }
}

void send_bytes(int dest, int tag, const std::vector<uint8_t>& b) {
  const uint64_t n = b.size();
  comm::send_to_rank(dest, tag, &n, sizeof n);
  if (n) comm::send_to_rank(dest, tag + 1, b.data(), n);
}
std::vector<uint8_t> recv_bytes(int src, int tag) {
  uint64_t n = 0;
  comm::recv_from_rank(src, tag, &n, sizeof n);
  std::vector<uint8_t> b(n);
  if (n) comm::recv_from_rank(src, tag + 1, b.data(), n);
  return b;
}

const char* known_units(const std::string& name) {
  static const std::map<std::string, const char*> u = {
      {"TMQ", "kg m-2"}, {"U850", "m s-1"}, {"V850", "m s-1"}, {"UBOT", "m s-1"}, {"VBOT", "m s-1"},
      {"QREFHT", "kg kg-1"}, {"PS", "Pa"}, {"PSL", "Pa"}, {"T200", "K"}, {"T500", "K"}, {"PRECT", "m s-1"},
      {"TS", "K"}, {"TREFHT", "K"}, {"Z1000", "m"}, {"Z200", "m"}, {"ZBOT", "m"}};
  const auto it = u.find(name);
  return it == u.end() ? "" : it->second;
}

// A folder `.events-tmp-<pid>` inside the output folder; removed with what is left in it when destroyed.
class StagingDir {
 public:
  explicit StagingDir(const fs::path& out) : out_(out), path_(out / (".events-tmp-" + std::to_string(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~StagingDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  const fs::path& path() const { return path_; }
  // Renames every named file into the output folder (same file system: each rename is atomic).
  void commit(const std::vector<std::string>& files) {
    for (const std::string& f : files)  // what would stop a rename, before any is done
      CS_CHECK(!fs::is_directory(out_ / f), "--out ", out_.string(), ": ", f, " is a directory; nothing was replaced");
    for (const std::string& f : files) {
      std::error_code ec;
      fs::rename(path_ / f, out_ / f, ec);
      CS_CHECK(!ec, "moving ", (path_ / f).string(), " to ", (out_ / f).string(), ": ", ec.message());
    }
  }

 private:
  fs::path out_, path_;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void add_events_command(CLI::App& app, EventsCommand& c) {
  c.cmd = app.add_subcommand(
      "events",
      "Find, measure and track tropical cyclones and atmospheric rivers in segmentation masks (climseg predict's "
      "NetCDF or HDF5 output, or label files), and write a catalogue, time series, frequency maps and pictures "
      "(docs/events.md)");
  auto* cmd = c.cmd;
  cmd->add_option("--input", c.inputs, "Mask files (CF-NetCDF with a byte class variable, or HDF5 predictions); "
                                       "quoted globs are expanded")
      ->required();
  cmd->add_option("--out", c.out, "Output directory (created; files in it are replaced atomically)")->required();
  cmd->add_option("--fields", c.fields,
                  "The NetCDF input fields predict read (for intensities and the map background); quoted globs");
  cmd->add_option("--var", c.var, "The class variable in NetCDF mask files")->capture_default_str();
  cmd->add_option("--start", c.start, "First time to analyse, ISO date (inclusive)");
  cmd->add_option("--end", c.end, "Last time to analyse, ISO date (inclusive)");
  cmd->add_option("--channel", c.channel_specs,
                  "Where a field comes from, CHANNEL=VAR[@LEVEL_HPA][*SCALE][|VAR...] (as predict; fields used: "
                  "UBOT VBOT PSL PRECT TMQ U850 V850 and the background)");
  cmd->add_option("--channel-map", c.channel_map, "A file of --channel specs, one per line");
  cmd->add_option("--background", c.background, "Field whose time mean is drawn under the PNG maps (with --fields)")
      ->capture_default_str();
  cmd->add_option("--truth", c.truth,
                  "A truth catalogue (data generate --sequence's truth.csv): report hits, misses and false alarms "
                  "per event")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tc-min-area", c.tc_min_area, "Smallest cyclone object, km^2")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ar-min-area", c.ar_min_area, "Smallest river object, km^2")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--tc-min-hours", c.tc_min_hours, "Shortest cyclone event, hours (first to last step + one step)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ar-min-hours", c.ar_min_hours, "Shortest river event, hours")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-gap", c.max_gap, "Time steps an event may be missing and still continue")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--tc-max-speed", c.tc_max_speed,
                  "Cyclone links without overlap: largest centroid speed, km/h")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tc-match-km", c.tc_match_km, "--truth: a cyclone matches within this distance, km")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-event-ids", c.no_event_ids, "Do not write event_ids.nc (the event id of every pixel)");
  cmd->add_flag("--no-png", c.no_png, "Do not draw frequency.png and tracks.png");
  cmd->add_flag("--quiet", c.quiet, "Print only the summary (no progress lines)");
}

int run_events(const EventsCommand& c) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  const comm::RankInfo ranks = comm::init_ranks();
  const bool root = ranks.rank == 0;
  MaskSeriesOptions mo;
  mo.var = c.var;
  mo.start = c.start;
  mo.end = c.end;
  // What can be checked before the work: the truth catalogue and the output folder.
  std::vector<TruthPoint> truth;
  if (!c.truth.empty()) truth = read_truth_csv(c.truth);
  if (root) {
    CS_CHECK(!fs::exists(c.out) || fs::is_directory(c.out), "--out ", c.out, " exists and is not a directory");
    fs::create_directories(c.out);
  }
  MaskSeries masks(c.inputs, mo);
  const io::CfGrid& grid = masks.grid();
  const int64_t T = masks.steps(), H = grid.height(), W = grid.width();
  const GridGeometry geo = grid_geometry(grid, masks.lat_bounds(), masks.lon_bounds());

  // The input fields, matched to the masks by time.
  const bool have_fields = !c.fields.empty();
  int64_t stride = kFieldCount, bg_channel = -1;
  std::vector<int64_t> field_step;
#if CLIMSEG_HAVE_NETCDF
  std::unique_ptr<io::CfReader> fields;
  if (have_fields) {
    std::vector<std::string> names;
    for (int f = 0; f < kFieldCount; ++f) names.push_back(field_name(f));
    const auto it = std::find(names.begin(), names.end(), c.background);
    if (it != names.end()) {
      bg_channel = it - names.begin();
    } else {
      names.push_back(c.background);
      bg_channel = kFieldCount;
      stride = kFieldCount + 1;
    }
    io::CfReaderOptions ro;
    ro.channels = io::channel_map(names, c.channel_map, c.channel_specs);
    fields = std::make_unique<io::CfReader>(io::expand_globs(c.fields), ro);
    CS_CHECK(fields->height() == H && fields->width() == W, "--fields are on a ", fields->height(), "x",
             fields->width(), " grid but the masks (", masks.step_file(0), ") are ", H, "x", W);
    for (int64_t i = 0; i < H; ++i)
      CS_CHECK(std::fabs(fields->grid().lat[static_cast<size_t>(i)] - grid.lat[static_cast<size_t>(i)]) < 1e-4,
               "--fields and --input disagree on latitude ", i, ": ", fields->grid().lat[static_cast<size_t>(i)],
               " vs ", grid.lat[static_cast<size_t>(i)]);
    for (int64_t j = 0; j < W; ++j)
      CS_CHECK(std::fabs(fields->grid().lon[static_cast<size_t>(j)] - grid.lon[static_cast<size_t>(j)]) < 1e-4,
               "--fields and --input disagree on longitude ", j, ": ", fields->grid().lon[static_cast<size_t>(j)],
               " vs ", grid.lon[static_cast<size_t>(j)]);
    std::map<std::string, int64_t> at;
    for (int64_t t = 0; t < fields->steps(); ++t) at[fields->time_iso(t)] = t;
    for (int64_t t = 0; t < T; ++t) {
      const auto f = at.find(masks.time_iso(t));
      CS_CHECK(f != at.end(), "--fields: no time step ", masks.time_iso(t), " (in the masks' ", masks.step_file(t),
               "); the fields run ", fields->time_iso(0), " .. ", fields->time_iso(fields->steps() - 1));
      field_step.push_back(f->second);
    }
  }
#else
  CS_CHECK(!have_fields, "--fields: this build has no NetCDF support (install libnetcdf-dev and rerun cmake)");
#endif

  if (root) {
    std::printf("events: %lld time step(s) %s .. %s of %lldx%lld masks (%s grid%s), %d rank(s)\n",
                static_cast<long long>(T), masks.time_iso(0).c_str(), masks.time_iso(T - 1).c_str(),
                static_cast<long long>(H), static_cast<long long>(W), geo.periodic ? "global" : "regional",
                geo.periodic ? ", periodic in longitude" : "", ranks.size);
    std::fflush(stdout);
  }

  // This rank's steps: a contiguous block.
  const int64_t lo = T * ranks.rank / ranks.size, hi = T * (ranks.rank + 1) / ranks.size;
  ObjectOptions oo;
  oo.min_area_km2[1] = c.tc_min_area;
  oo.min_area_km2[2] = c.ar_min_area;
  std::vector<Object> objects;
  std::vector<uint8_t> mask(static_cast<size_t>(H * W));
  std::vector<float> buf(have_fields ? static_cast<size_t>(H * W * stride) : 0);
  std::vector<double> bg_sum(have_fields ? static_cast<size_t>(H * W) : 0, 0.0);
  Components scratch;
  double read_s = 0, find_s = 0;
  for (int64_t t = lo; t < hi; ++t) {
    auto t0 = clock::now();
    masks.read(t, mask.data());
#if CLIMSEG_HAVE_NETCDF
    if (have_fields) {
      fields->read(field_step[static_cast<size_t>(t)], buf.data());
      for (size_t p = 0; p < bg_sum.size(); ++p) bg_sum[p] += buf[p * static_cast<size_t>(stride) + static_cast<size_t>(bg_channel)];
    }
#endif
    auto t1 = clock::now();
    find_objects(mask.data(), geo, t, have_fields ? buf.data() : nullptr, oo, scratch, objects, stride);
    read_s += std::chrono::duration<double>(t1 - t0).count();
    find_s += seconds_since(t1);
    // Progress: rank 0's block, about every tenth of it.
    const int64_t every = std::max<int64_t>(1, (hi - lo) / 10);
    if (root && !c.quiet && ((t - lo + 1) % every == 0 || t + 1 == hi)) {
      std::printf("  %lld/%lld step(s) %s, %zu object(s)%s\n", static_cast<long long>(t - lo + 1),
                  static_cast<long long>(hi - lo), masks.time_iso(t).c_str(), objects.size(),
                  ranks.size > 1 ? " (rank 0's share)" : "");
      std::fflush(stdout);
    }
  }
  // Everything to rank 0, in rank order (= time order).
  if (!root) {
    send_bytes(0, 700, pack(objects));
    if (have_fields) comm::send_to_rank(0, 702, bg_sum.data(), bg_sum.size() * sizeof(double));
    return 0;
  }
  for (int r = 1; r < ranks.size; ++r) {
    unpack(recv_bytes(r, 700), objects);
    if (have_fields) {
      std::vector<double> other(bg_sum.size());
      comm::recv_from_rank(r, 702, other.data(), other.size() * sizeof(double));
      for (size_t p = 0; p < bg_sum.size(); ++p) bg_sum[p] += other[p];
    }
  }

  const auto t_track = clock::now();
  TrackOptions to;
  to.min_hours[1] = c.tc_min_hours;
  to.min_hours[2] = c.ar_min_hours;
  to.max_gap = c.max_gap;
  to.tc_max_speed_kmh = c.tc_max_speed;
  SeriesInfo s;
  s.grid = grid;
  s.axis = masks.time_axis();
  s.days_per_year = masks.days_per_year();
  for (int64_t t = 0; t < T; ++t) {
    s.time_values.push_back(masks.time_value(t));
    s.hours.push_back(masks.hours(t));
    s.iso.push_back(masks.time_iso(t));
    s.years.push_back(masks.year(t));
  }
  const Tracking tr = track_events(objects, s.hours, H, W, to);
  const double track_s = seconds_since(t_track);

  const auto t_out = clock::now();
  // Every output is written into a staging folder inside --out and moved into place only when all are written, so
  // a run that fails leaves the earlier outputs as they were (each move is an atomic rename).
  const fs::path out_dir(c.out);
  StagingDir staging(out_dir);
  const fs::path& dir = staging.path();
  std::vector<std::pair<std::string, std::string>> attrs = {
      {"source", "climseg events"},
      {"inputs", std::to_string(T) + " step(s) from " + masks.step_file(0) +
                     (masks.step_file(0) != masks.step_file(T - 1) ? " .. " + masks.step_file(T - 1) : "")},
      {"thresholds", "tc_min_area_km2=" + std::to_string(c.tc_min_area) + " ar_min_area_km2=" +
                         std::to_string(c.ar_min_area) + " tc_min_hours=" + std::to_string(c.tc_min_hours) +
                         " ar_min_hours=" + std::to_string(c.ar_min_hours) + " max_gap=" + std::to_string(c.max_gap) +
                         " tc_max_speed_kmh=" + std::to_string(c.tc_max_speed)}};
  std::vector<std::string> wrote;
  write_objects_csv((dir / "objects.csv").string(), s, objects, tr, have_fields);
  write_events_csv((dir / "events.csv").string(), s, objects, tr, have_fields);
  write_counts_csv((dir / "counts_per_step.csv").string(), (dir / "counts_per_year.csv").string(), s, objects, tr);
  wrote.insert(wrote.end(), {"objects.csv", "events.csv", "counts_per_step.csv", "counts_per_year.csv"});
  const FrequencyMaps freq = frequency_maps(s, objects, tr);
#if CLIMSEG_HAVE_NETCDF
  if (!c.no_event_ids) {
    write_event_ids_nc((dir / "event_ids.nc").string(), s, objects, tr, attrs);
    wrote.push_back("event_ids.nc");
  }
  write_frequency_nc((dir / "frequency.nc").string(), s, freq, attrs);
  wrote.push_back("frequency.nc");
#else
  std::printf("  (no event_ids.nc or frequency.nc: this build has no NetCDF support)\n");
#endif
  if (!c.no_png) {
    if (io::have_png()) {
      MapBackground bg;
      if (have_fields) {
        bg.values.resize(bg_sum.size());
        for (size_t p = 0; p < bg_sum.size(); ++p) bg.values[p] = static_cast<float>(bg_sum[p] / static_cast<double>(T));
        bg.name = c.background;
        bg.units = known_units(c.background);
      }
      const std::string span = s.iso.front().substr(0, 16) + " .. " + s.iso.back().substr(0, 16);
      write_frequency_png((dir / "frequency.png").string(), grid, bg, freq.tc, freq.ar,
                          "Frequency of cyclones and rivers, " + span);
      std::vector<TrackLine> tracks;
      for (const Event& e : tr.events) {
        TrackLine l;
        l.cls = e.cls;
        for (size_t o : e.objects) {
          l.lat.push_back(objects[o].lat);
          l.lon.push_back(objects[o].lon);
        }
        tracks.push_back(std::move(l));
      }
      write_tracks_png((dir / "tracks.png").string(), grid, bg, tracks, "Event tracks, " + span);
      wrote.insert(wrote.end(), {"frequency.png", "tracks.png"});
    } else {
      std::printf("  (no PNG maps: this build has no libpng)\n");
    }
  }
  const double out_s = seconds_since(t_out);

  int64_t n_obj[kClasses] = {0, 0, 0}, kept_obj[kClasses] = {0, 0, 0}, n_ev[kClasses] = {0, 0, 0};
  int64_t splits = 0, merges = 0;
  for (size_t i = 0; i < objects.size(); ++i) {
    ++n_obj[objects[i].cls];
    if (tr.object_event[i]) ++kept_obj[objects[i].cls];
  }
  for (const Event& e : tr.events) {
    ++n_ev[e.cls];
    splits += e.split_from != 0;
    merges += e.merged_into != 0;
  }
  std::printf("objects (area >= %.0f km^2 TC, %.0f km^2 AR): TC %lld, AR %lld\n", c.tc_min_area, c.ar_min_area,
              static_cast<long long>(n_obj[1]), static_cast<long long>(n_obj[2]));
  std::printf(
      "events (>= %.3g h TC, %.3g h AR; gaps up to %d step(s)): TC %lld (%lld shorter dropped), AR %lld (%lld "
      "shorter dropped); %lld split(s), %lld merge(s); step %.3g h\n",
      c.tc_min_hours, c.ar_min_hours, c.max_gap, static_cast<long long>(n_ev[1]), static_cast<long long>(tr.dropped[1]),
      static_cast<long long>(n_ev[2]), static_cast<long long>(tr.dropped[2]), static_cast<long long>(splits),
      static_cast<long long>(merges), tr.dt_hours);
  if (!c.truth.empty()) {
    VerifyOptions vo;
    vo.tc_match_km = c.tc_match_km;
    const Verification v = verify_events(truth, s, objects, tr, vo);
    write_verification_csv((dir / "verification.csv").string(), v, tr);
    wrote.push_back("verification.csv");
    std::printf("verification against %s (events whose times are in the masks; a hit: one event matches at least "
                "half its steps):\n",
                c.truth.c_str());
    std::printf("  %-18s %6s %6s %7s %12s %6s %6s %10s %14s %13s\n", "class", "truth", "hits", "misses",
                "false_alarms", "POD", "FAR", "fragmented", "mean_err_km", "duration_err");
    for (int k = 1; k < kClasses; ++k) {
      int64_t frag = 0, nerr = 0;
      double err = 0, derr = 0;
      for (const TruthMatch& m : v.truth) {
        if (m.cls == k) frag += m.fragments > 1;
        if (m.cls == k && m.hit) {
          err += m.mean_error_km;
          derr += static_cast<double>(m.found_steps - m.truth_steps);
          ++nerr;
        }
      }
      const double found = static_cast<double>(v.found_events[k]);
      std::printf("  %-18s %6lld %6lld %7lld %12lld %6.3f %6.3f %10lld %14.1f %+13.2f\n", class_name(k),
                  static_cast<long long>(v.truth_events[k]), static_cast<long long>(v.hits[k]),
                  static_cast<long long>(v.misses[k]), static_cast<long long>(v.false_alarm_count[k]),
                  v.truth_events[k] ? double(v.hits[k]) / double(v.truth_events[k]) : 0.0,
                  found > 0 ? double(v.false_alarm_count[k]) / found : 0.0, static_cast<long long>(frag),
                  nerr ? err / double(nerr) : 0.0, nerr ? derr / double(nerr) : 0.0);
    }
    std::printf("  (fragmented: truth events matched by more than one found event; mean_err_km: found centroid to the "
                "true position; duration_err: found minus true steps; both means over hits; per event: "
                "verification.csv)\n");
    if (v.unmatched_times)
      std::printf("  %lld truth point(s) at times not in the masks were left out\n",
                  static_cast<long long>(v.unmatched_times));
  }
  // Into place; outputs of an earlier run that this one did not write (--no-event-ids, --no-png, no --truth) would
  // no longer match its events.csv: they are removed.
  staging.commit(wrote);
  for (const char* f : {"objects.csv", "events.csv", "counts_per_step.csv", "counts_per_year.csv", "event_ids.nc",
                        "frequency.nc", "frequency.png", "tracks.png", "verification.csv"})
    if (std::find(wrote.begin(), wrote.end(), f) == wrote.end() && fs::exists(out_dir / f)) {
      fs::remove(out_dir / f);
      std::printf("  removed %s of an earlier run (not written by this one)\n", (out_dir / f).string().c_str());
    }
  std::printf("wrote %s/{", c.out.c_str());
  for (size_t i = 0; i < wrote.size(); ++i) std::printf("%s%s", i ? "," : "", wrote[i].c_str());
  std::printf("}\n");
  std::printf("time: read %.3f s, objects %.3f s (rank 0's %lld step(s)), tracking %.3f s, outputs %.3f s, total "
              "%.3f s\n",
              read_s, find_s, static_cast<long long>(hi - lo), track_s, out_s, seconds_since(t_start));
  return 0;
}

}  // namespace climseg::apps
