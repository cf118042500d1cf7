#include "bench/events_bench.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "analysis/event_outputs.h"
#include "analysis/events.h"
#include "analysis/mask_series.h"
#include "engine/check.h"
#include "engine/philox.h"
#include "io/cf_writer.h"

namespace climseg::bench {

namespace fs = std::filesystem;
using namespace climseg::analysis;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Moving features on a global grid, deterministic: cyclones are discs of 8..14 cells radius drifting west and
// poleward, rivers are long narrow ellipses sweeping east; each lives 12..60 steps and is replaced when it dies.
// About 0.3% of the pixels are cyclone and 3% river (more than DeepCAM's labels: 0.05% and 1.3%).
struct Rng {
  uint64_t seed, next = 0;
  double uniform() { return philox_uniform(seed, 0, next++); }
};

struct Feature {
  int cls;
  double row, col, vrow, vcol;  // cells, cells per step
  double a, b, angle;           // semi-axes (cells) and orientation
  int64_t born, dies;
};

Feature draw_feature(Rng& r, int cls, int64_t t, int64_t H, int64_t W) {
  const auto u = [&](double lo, double hi) { return lo + (hi - lo) * r.uniform(); };
  Feature f;
  f.cls = cls;
  f.born = t;
  f.dies = t + static_cast<int64_t>(u(12, 60));
  const double s = static_cast<double>(H) / 768.0;  // scale with the grid
  if (cls == 1) {
    f.row = u(0.3, 0.7) * static_cast<double>(H);
    f.col = u(0, static_cast<double>(W));
    f.vrow = (f.row > 0.5 * static_cast<double>(H) ? 1 : -1) * u(0.1, 0.4) * s;
    f.vcol = -u(0.3, 1.2) * s;
    f.a = f.b = u(8, 14) * s;
    f.angle = 0;
  } else {
    f.row = (r.uniform() < 0.5 ? u(0.15, 0.35) : u(0.65, 0.85)) * static_cast<double>(H);
    f.col = u(0, static_cast<double>(W));
    f.vrow = 0;
    f.vcol = u(0.5, 2.0) * s;
    f.a = u(100, 180) * s;
    f.b = u(10, 18) * s;
    f.angle = u(0.3, 0.9) * (f.row > 0.5 * static_cast<double>(H) ? 1 : -1);
  }
  return f;
}

void paint(const Feature& f, int64_t t, int64_t H, int64_t W, std::vector<uint8_t>& m) {
  const double age = static_cast<double>(t - f.born);
  const double r0 = f.row + f.vrow * age, c0 = f.col + f.vcol * age;
  const double ca = std::cos(f.angle), sa = std::sin(f.angle);
  const int64_t ext = static_cast<int64_t>(std::ceil(f.a)) + 1;
  for (int64_t dr = -ext; dr <= ext; ++dr) {
    const int64_t row = static_cast<int64_t>(std::lround(r0)) + dr;
    if (row < 0 || row >= H) continue;
    for (int64_t dc = -ext; dc <= ext; ++dc) {
      const double y = static_cast<double>(row) - r0;
      const double x = std::floor(c0) + static_cast<double>(dc) - c0;
      const double u = (x * ca + y * sa) / f.a, v = (-x * sa + y * ca) / f.b;
      if (u * u + v * v > 1) continue;
      int64_t col = (static_cast<int64_t>(std::floor(c0)) + dc) % W;
      if (col < 0) col += W;
      uint8_t& p = m[static_cast<size_t>(row * W + col)];
      if (p == 0 || f.cls == 1) p = static_cast<uint8_t>(f.cls);
    }
  }
}

std::string fmt(double v, const char* f = "%.3f") {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

CLI::App* add_events_subcommand(CLI::App& app, EventsBenchOptions& o) {
  auto* c = app.add_subcommand("events",
                               "climseg events' analysis (read, objects, tracking) on a long series of synthetic "
                               "moving masks, next to bench/events_reference.py (numpy + scipy) on the same file");
  c->add_option("--steps", o.steps, "Time steps")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--height", o.height, "Grid rows")->capture_default_str()->check(CLI::Range(8, 16384));
  c->add_option("--width", o.width, "Grid columns")->capture_default_str()->check(CLI::Range(8, 16384));
  c->add_option("--reference-steps", o.reference_steps, "Steps the Python reference runs (0: skip it)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option("--dir", o.dir, "Directory for the mask file (default: a temporary one, removed afterwards)");
  c->add_option("--csv", o.csv, "Also write the table to this CSV file");
  return c;
}

int run_events_bench(const EventsBenchOptions& o) {
  const int64_t T = o.steps, H = o.height, W = o.width;
  const bool temp = o.dir.empty();
  const fs::path dir = temp ? fs::temp_directory_path() / ("climseg-events-bench-" + std::to_string(getpid())) : fs::path(o.dir);
  fs::create_directories(dir);
  struct RemoveAtEnd {  // the temporary folder goes also when something throws
    fs::path p;
    ~RemoveAtEnd() {
      std::error_code ec;
      if (!p.empty()) fs::remove_all(p, ec);
    }
  } remove_at_end{temp ? dir : fs::path()};
  const std::string path = (dir / "masks.nc").string();
  std::printf("events bench: %lld step(s) of %lldx%lld masks -> %s\n", static_cast<long long>(T),
              static_cast<long long>(H), static_cast<long long>(W), path.c_str());
  std::fflush(stdout);
  {
    io::CfMaskFileInfo info;
    info.grid = io::global_grid(H, W);
    io::CfMaskWriter w(path, info);
    Rng r{20261206};
    std::vector<Feature> live;
    std::vector<uint8_t> m(static_cast<size_t>(H * W));
    int64_t px[3] = {0, 0, 0};
    for (int64_t t = 0; t < T; ++t) {
      std::erase_if(live, [&](const Feature& f) { return f.dies <= t; });
      while (std::count_if(live.begin(), live.end(), [](const Feature& f) { return f.cls == 1; }) < 6)
        live.push_back(draw_feature(r, 1, t, H, W));
      while (std::count_if(live.begin(), live.end(), [](const Feature& f) { return f.cls == 2; }) < 5)
        live.push_back(draw_feature(r, 2, t, H, W));
      std::fill(m.begin(), m.end(), 0);
      for (const Feature& f : live)
        if (f.cls == 2) paint(f, t, H, W, m);
      for (const Feature& f : live)
        if (f.cls == 1) paint(f, t, H, W, m);
      for (uint8_t v : m) ++px[v];
      w.write(static_cast<size_t>(t), 0.125 * static_cast<double>(t), m.data(), nullptr, 3);
    }
    w.commit();
    const double n = static_cast<double>(T * H * W);
    std::printf("  class fractions: TC %.3f%%, AR %.3f%%\n", 100.0 * px[1] / n, 100.0 * px[2] / n);
  }

  // climseg: read every step, objects, tracking (overlap only for the comparison, then with the defaults).
  const double tc_min = 5e4, ar_min = 2.5e5;
  MaskSeries ms({path}, MaskSeriesOptions{});
  const GridGeometry geo = grid_geometry(ms.grid());
  std::vector<uint8_t> mask(static_cast<size_t>(H * W));
  std::vector<Object> objects;
  Components scratch;
  ObjectOptions oo;
  oo.min_area_km2[1] = tc_min;
  oo.min_area_km2[2] = ar_min;
  double read_s = 0, obj_s = 0;
  for (int64_t t = 0; t < T; ++t) {
    const double t0 = now_s();
    ms.read(t, mask.data());
    const double t1 = now_s();
    find_objects(mask.data(), geo, t, nullptr, oo, scratch, objects);
    read_s += t1 - t0;
    obj_s += now_s() - t1;
  }
  std::vector<double> hours;
  for (int64_t t = 0; t < T; ++t) hours.push_back(ms.hours(t));
  TrackOptions overlap_only;
  overlap_only.max_gap = 0;
  overlap_only.tc_max_speed_kmh = 0;
  double t0 = now_s();
  const Tracking tr0 = track_events(objects, hours, H, W, overlap_only);
  const double track0_s = now_s() - t0;
  TrackOptions defaults;
  defaults.min_hours[1] = defaults.min_hours[2] = 15;
  t0 = now_s();
  const Tracking tr = track_events(objects, hours, H, W, defaults);
  const double track_s = now_s() - t0;

  // The reference on the first steps.
  std::string verify = "not run";
  double ref_read = 0, ref_obj = 0, ref_track = 0;
  int64_t R = std::min(o.reference_steps, T);
  if (R > 0 && std::system("/usr/bin/python3 -c 'import numpy, scipy.ndimage, netCDF4' >/dev/null 2>&1") != 0) {
    std::printf("  reference skipped: /usr/bin/python3 cannot import numpy, scipy and netCDF4\n");
    R = 0;
  }
  if (R > 0) {
    const std::string script = std::string(CLIMSEG_SOURCE_DIR) + "/bench/events_reference.py";
    const std::string cmd = "/usr/bin/python3 " + script + " " + path + " " + std::to_string(R) + " " +
                            fmt(tc_min, "%.17g") + " " + fmt(ar_min, "%.17g") + " 2>&1";
    std::printf("  running the reference on %lld step(s): %s\n", static_cast<long long>(R), cmd.c_str());
    std::fflush(stdout);
    FILE* p = popen(cmd.c_str(), "r");
    CS_CHECK(p != nullptr, "cannot run ", cmd);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int rc = pclose(p);
    if (rc != 0) {
      std::printf("  reference failed (exit %d): %s\n", rc, out.c_str());
      verify = "reference failed";
      R = 0;
    } else {
      const size_t brace = out.rfind('{');
      CS_CHECK(brace != std::string::npos, "the reference printed no result: ", out);
      const nlohmann::json j = nlohmann::json::parse(out.substr(brace));
      ref_read = j["read_s"];
      ref_obj = j["objects_s"];
      ref_track = j["tracking_s"];
      // Compare: objects and areas per step, events (overlap-only tracking on the same steps).
      std::vector<int64_t> cnt(static_cast<size_t>(R), 0);
      std::vector<double> area(static_cast<size_t>(R), 0.0);
      for (const Object& ob : objects)
        if (ob.step < R) {
          ++cnt[static_cast<size_t>(ob.step)];
          area[static_cast<size_t>(ob.step)] += ob.area_km2;
        }
      std::vector<Object> first(objects.begin(), std::find_if(objects.begin(), objects.end(),
                                                              [&](const Object& ob) { return ob.step >= R; }));
      const Tracking trr = track_events(first, std::vector<double>(hours.begin(), hours.begin() + R), H, W,
                                        overlap_only);
      bool ok = static_cast<int64_t>(trr.events.size()) == j["events"].get<int64_t>();
      for (int64_t t = 0; t < R; ++t) {
        const int64_t rc_obj = j["objects"][static_cast<size_t>(t)];
        const double ra = j["areas"][static_cast<size_t>(t)];
        if (rc_obj != cnt[static_cast<size_t>(t)] ||
            std::fabs(ra - area[static_cast<size_t>(t)]) > 1e-9 * std::max(1.0, std::fabs(ra)))
          ok = false;
      }
      verify = ok ? "ok" : "MISMATCH";
      std::printf("  verify: objects and areas per step, %lld event(s) (climseg %lld): %s\n",
                  static_cast<long long>(j["events"].get<int64_t>()), static_cast<long long>(trr.events.size()),
                  verify.c_str());
    }
  }

  const auto ms_per = [](double s, int64_t n) { return n > 0 ? 1e3 * s / static_cast<double>(n) : 0.0; };
  std::ostringstream csv;
  csv << "implementation,steps,grid,read_ms_per_step,objects_ms_per_step,tracking_ms_per_step,total_ms_per_step,"
         "total_s,objects,events,verify\n";
  csv << "climseg (overlap-only tracking)," << T << "," << H << "x" << W << "," << fmt(ms_per(read_s, T)) << ","
      << fmt(ms_per(obj_s, T)) << "," << fmt(ms_per(track0_s, T)) << ","
      << fmt(ms_per(read_s + obj_s + track0_s, T)) << "," << fmt(read_s + obj_s + track0_s) << "," << objects.size()
      << "," << tr0.events.size() << "," << verify << "\n";
  csv << "climseg (default tracking)," << T << "," << H << "x" << W << "," << fmt(ms_per(read_s, T)) << ","
      << fmt(ms_per(obj_s, T)) << "," << fmt(ms_per(track_s, T)) << "," << fmt(ms_per(read_s + obj_s + track_s, T))
      << "," << fmt(read_s + obj_s + track_s) << "," << objects.size() << "," << tr.events.size() << ",\n";
  if (R > 0)
    csv << "numpy+scipy reference," << R << "," << H << "x" << W << "," << fmt(ms_per(ref_read, R)) << ","
        << fmt(ms_per(ref_obj, R)) << "," << fmt(ms_per(ref_track, R)) << ","
        << fmt(ms_per(ref_read + ref_obj + ref_track, R)) << "," << fmt(ref_read + ref_obj + ref_track) << ",,,"
        << verify << "\n";
  std::printf("%s", csv.str().c_str());
  if (!o.csv.empty()) {
    std::ofstream f(o.csv);
    f << csv.str();
    CS_CHECK(f.good(), o.csv, ": cannot write");
  }
  return verify == "MISMATCH" || verify == "reference failed" ? 1 : 0;
}

}  // namespace climseg::bench
