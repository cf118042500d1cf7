// `climseg events` end to end, as a user runs it, with independent oracles (tests/py/events_check.py: numpy, scipy and
// netCDF4 recount every object, area, centroid, intensity, track, count and frequency from the masks and fields):
//   - on `data generate --format netcdf` labels with the input fields; the same results on 1, 2 and 3 MPI ranks;
//   - on HDF5 predictions (times from the source names) and the same masks as NetCDF: the same catalogue;
//   - malformed inputs refused by name (wrong dimensions, a class value out of range, grids that disagree, fields
//     on another grid or missing a time), and a failed run keeps the earlier outputs;
//   - with --sequence data: the generator's truth catalogue recovered from its own labels.
// Skipped (exit 77) without libnetcdf or where python lacks netCDF4/scipy.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

#if !CLIMSEG_HAVE_NETCDF
TEST_CASE("events: skipped without libnetcdf", "[py][events]") {
  std::printf("SKIPPED: this build has no libnetcdf\n");
  std::exit(77);
}
#else
#include "engine/tensor.h"
#include "io/cf_writer.h"
#include "io/prediction_writer.h"

using namespace climseg;
namespace fs = std::filesystem;

namespace {

const std::string kCheck = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/events_check.py";

int cli(const std::string& args, std::string& out) {
  out.clear();
  return test::run_command(std::string(CLIMSEG_CLI) + " " + args, out);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void skip_unless_available() {
  if (!test::python_can_import("netCDF4, numpy, scipy.ndimage")) {
    std::printf("SKIPPED: %s cannot import netCDF4, numpy and scipy (python3-netcdf4, python3-scipy)\n",
                test::kPython3);
    std::exit(77);
  }
}

}  // namespace

TEST_CASE("events on generated labels with fields: every output recounted; 1, 2 and 3 ranks agree",
          "[py][events][mpi]") {
  skip_unless_available();
  test::TempDir t;
  const std::string nc = t.file("nc");
  std::string out;
  REQUIRE(cli("data generate --format netcdf --out " + nc + " --samples 40 --height 48 --width 72 --seed 5 "
                  "--steps-per-file 16",
              out) == 0);
  const std::string masks = "'" + nc + "/labels/*.nc'", fields = "'" + nc + "/synthetic.cam.h2.*.nc'";
  const std::string common = " --input " + masks + " --fields " + fields + " --tc-min-hours 0 --ar-min-hours 0";
  REQUIRE(cli("events" + common + " --out " + t.file("o1"), out) == 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("40 time step(s) 2000-01-01T00:00:00 .. 2000-01-05T21:00:00 of 48x72 masks") &&
                      Catch::Contains("periodic in longitude") && Catch::Contains("1 rank(s)"));
  for (const char* f : {"objects.csv", "events.csv", "counts_per_step.csv", "counts_per_year.csv", "event_ids.nc",
                        "frequency.nc", "frequency.png", "tracks.png"})
    CHECK(fs::exists(t.file("o1") + "/" + f));
  const std::string check = test::python_run(kCheck + " outputs " + t.file("o1") + " " + masks + " " + fields);
  INFO(check);
  CHECK_THAT(check, Catch::StartsWith("ok: "));
  CHECK(check.find("ok: 0 objects") == std::string::npos);  // something to check
  // Fields that lack some of the masks' times are refused, naming the time.
  CHECK(cli("events --input " + masks + " --fields " + nc + "/synthetic.cam.h2.2000-01-01-00000.nc --out " +
                t.file("x"),
            out) != 0);
  CHECK_THAT(out, Catch::Contains("--fields: no time step 2000-01-03T00:00:00"));
  const std::string head = slurp(t.file("o1") + "/objects.csv").substr(0, 300);
  CHECK_THAT(head, Catch::Contains("area_km2") && Catch::Contains("max_wind_m_s") &&
                       Catch::Contains("max_ivt_proxy_kg_m_s"));

#if defined(CLIMSEG_MPIEXEC)
  const std::string mpiexec = CLIMSEG_MPIEXEC;
  if (!mpiexec.empty()) {
    for (int n : {2, 3}) {
      const std::string o = t.file("o" + std::to_string(n));
      REQUIRE(test::run_command(mpiexec + " -np " + std::to_string(n) + " " + CLIMSEG_CLI + " events" + common +
                                    " --out " + o,
                                out) == 0);
      INFO(out);
      CHECK_THAT(out, Catch::Contains(std::to_string(n) + " rank(s)"));
      CHECK_THAT(test::python_run(kCheck + " same " + t.file("o1") + " " + o), Catch::Contains("ok"));
    }
  }
#endif
}

// verification.csv rows as maps (header names -> values).
std::vector<std::map<std::string, std::string>> read_csv(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::vector<std::string> head;
  std::vector<std::map<std::string, std::string>> rows;
  const auto split = [](const std::string& l) {
    std::vector<std::string> v;
    std::stringstream ss(l);
    std::string x;
    while (std::getline(ss, x, ',')) v.push_back(x);
    if (!l.empty() && l.back() == ',') v.push_back("");
    return v;
  };
  if (std::getline(f, line)) head = split(line);
  while (std::getline(f, line)) {
    const std::vector<std::string> v = split(line);
    std::map<std::string, std::string> r;
    for (size_t i = 0; i < head.size() && i < v.size(); ++i) r[head[i]] = v[i];
    rows.push_back(r);
  }
  return rows;
}

TEST_CASE("events recovers the truth catalogue of data generate --sequence from its labels", "[py][events]") {
  skip_unless_available();
  test::TempDir t;
  const std::string nc = t.file("seq");
  std::string out;
  REQUIRE(cli("data generate --format netcdf --sequence --out " + nc + " --samples 240 --height 96 --width 144 "
                  "--seed 7 --start-date 2001-08-01 --steps-per-file 40",
              out) == 0);
  REQUIRE(cli("events --input '" + nc + "/labels/*.nc' --truth " + nc + "/truth.csv --out " + t.file("ev"), out) == 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("verification against"));
  const auto rows = read_csv(t.file("ev") + "/verification.csv");
  const auto truth_events = read_csv(nc + "/truth_events.csv");
  REQUIRE(truth_events.size() > 20);
  int64_t hits = 0, short_misses = 0;
  for (const auto& r : rows) {
    INFO("verification row: truth " << r.at("truth_id") << " " << r.at("class") << " " << r.at("kind"));
    // Nothing found that was not placed.
    CHECK(r.at("kind") != "false_alarm");
    if (r.at("kind") == "miss") {
      // Only events cut by the window to less than the 15-hour minimum duration (5 steps) may be missed.
      CHECK(std::stoi(r.at("truth_steps")) < 5);
      CHECK(std::stoi(r.at("found_id")) == 0);
      ++short_misses;
      continue;
    }
    REQUIRE(r.at("kind") == "hit");
    ++hits;
    // Found once, over its whole life (one step of the detection threshold either way), where it was placed.
    CHECK(r.at("fragments") == "1");
    CHECK(std::abs(std::stoi(r.at("found_steps")) - std::stoi(r.at("truth_steps"))) <= 1);
    CHECK(std::stoi(r.at("matched_steps")) + 1 >= std::stoi(r.at("truth_steps")));
    // 96x144 cells are about 200 km: a cyclone's labelled disc is centred within one cell; a river's labelled part
    // starts at 12 degrees latitude and fades at its ends, so its centroid is off the filament's midpoint.
    CHECK(std::stod(r.at("mean_error_km")) <= (r.at("class") == "tropical_cyclone" ? 150.0 : 750.0));
  }
  CHECK(hits + short_misses == static_cast<int64_t>(truth_events.size()));
  CHECK(short_misses <= 2);
}

TEST_CASE("events on HDF5 predictions equals events on the same masks as NetCDF", "[py][events]") {
  skip_unless_available();
  test::TempDir t;
  const int64_t N = 6, H = 24, W = 36;
  // Masks: a cyclone drifting west across the 0/360 seam, a river sweeping east.
  Tensor mask = Tensor::zeros(Shape{N, H, W, 1}, DType::u8, Device::cpu);
  Tensor logits = Tensor::zeros(Shape{N, H, W, 3}, DType::f32, Device::cpu);
  uint8_t* m = static_cast<uint8_t*>(mask.data());
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t r = 8; r <= 10; ++r)
      for (int64_t c = 1 - n; c <= 3 - n; ++c) m[(n * H + r) * W + ((c + W) % W)] = 1;
    for (int64_t r = 16; r <= 20; ++r)
      for (int64_t c = 10; c <= 12; ++c) m[(n * H + r) * W + c + n + (r - 16)] = 2;
  }
  std::vector<std::string> sources;
  std::vector<double> times;
  std::vector<const uint8_t*> planes;
  for (int64_t n = 0; n < N; ++n) {
    char name[64];
    std::snprintf(name, sizeof name, "/data/data-%d-%02d-%02d-%02d-1.h5", n < 3 ? 2106 : 2107, n < 3 ? 12 : 1,
                  n < 3 ? 31 : 1,
                  static_cast<int>((n % 3) * 6 + (n < 3 ? 6 : 0)));
    sources.push_back(name);
    planes.push_back(m + n * H * W);
  }
  // 2106-12-31 06, 12, 18 and 2107-01-01 00, 06, 12: days since 0001-01-01 in the noleap calendar.
  const double d0 = 2105.0 * 365 + 364;
  for (double h : {6.0, 12.0, 18.0, 24.0, 30.0, 36.0}) times.push_back(d0 + h / 24.0);
  io::PredictionAttrs pa;
  pa.model = "test";
  pa.weights = "none";
  pa.sources = sources;
  io::write_prediction(t.file("p.h5"), logits, mask, pa);
  io::CfMaskFileInfo info;
  info.grid = io::global_grid(H, W);
  info.time.units = "days since 0001-01-01 00:00:00";
  info.time.calendar = "noleap";
  io::write_cf_masks(t.file("p.nc"), info, times, planes);
  std::string out;
  const std::string opts = " --tc-min-area 0 --ar-min-area 0 --tc-min-hours 0 --ar-min-hours 0 --no-png";
  REQUIRE(cli("events --input " + t.file("p.h5") + " --out " + t.file("h") + opts, out) == 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("6 time step(s) 2106-12-31T06:00:00 .. 2107-01-01T12:00:00"));
  CHECK_THAT(out, Catch::Contains("TC 1 (0 shorter dropped), AR 1 (0 shorter dropped)"));
  REQUIRE(cli("events --input " + t.file("p.nc") + " --out " + t.file("n") + opts, out) == 0);
  for (const char* f : {"objects.csv", "events.csv", "counts_per_step.csv", "counts_per_year.csv"})
    CHECK(slurp(t.file("h") + "/" + f) == slurp(t.file("n") + "/" + f));
  // One event each, 6 steps of 6 h; the cyclone crosses the seam as one object (centroid 0.000 there, never 180).
  const std::string ev = slurp(t.file("h") + "/events.csv");
  CHECK_THAT(ev, Catch::Contains("2106-12-31T06:00:00,2107-01-01T12:00:00,0,5,6,36.000") && Catch::Contains("-18.703 0.000;"));
  CHECK_THAT(test::python_run(kCheck + " outputs " + t.file("n") + " " + t.file("p.nc")), Catch::Contains("ok: 12 objects, 2 events"));
  // A prediction file whose sources carry no date is refused, naming the file.
  pa.sources.assign(N, "/data/sample.h5");
  io::write_prediction(t.file("q.h5"), logits, mask, pa);
  CHECK(cli("events --input " + t.file("q.h5") + " --out " + t.file("q"), out) != 0);
  CHECK_THAT(out, Catch::Contains("q.h5") && Catch::Contains("data-YYYY-MM-DD-HH-R.h5"));
}

TEST_CASE("events takes cell areas from the file's latitude bounds", "[py][events]") {
  skip_unless_available();
  test::TempDir t;
  test::python_run(kCheck + " make-bad bounds " + t.file("b.nc"));
  std::string out;
  REQUIRE(cli("events --input " + t.file("b.nc") + " --out " + t.file("o") +
                  " --tc-min-area 0 --tc-min-hours 0 --no-png",
              out) == 0);
  INFO(out);
  // One TC pixel at row 3 of 16, column 5 of 24: its area from the bounds 0.9 * (-90 + 180 * [3, 4] / 16) degrees,
  // not from the midpoints between the centres.
  const double pi = 3.14159265358979323846, R = 6371.0;
  const double s = 0.9 * (-90 + 180.0 * 3 / 16), n = 0.9 * (-90 + 180.0 * 4 / 16);
  const double want = R * R * (2 * pi / 24) * (std::sin(n * pi / 180) - std::sin(s * pi / 180));
  const auto rows = read_csv(t.file("o") + "/objects.csv");
  REQUIRE(rows.size() == 1);
  CHECK(std::stod(rows[0].at("area_km2")) == Approx(want).epsilon(1e-6));
}

TEST_CASE("events refuses malformed inputs by name and keeps earlier outputs", "[py][events]") {
  skip_unless_available();
  test::TempDir t;
  for (const char* k : {"two-dims", "bad-class", "other-grid", "ok", "later"})
    test::python_run(kCheck + " make-bad " + k + " " + t.file(std::string(k) + ".nc"));
  std::string out;
  const std::string o = t.file("o");
  REQUIRE(cli("events --input " + t.file("ok.nc") + " --out " + o, out) == 0);
  const std::string before = slurp(o + "/objects.csv") + slurp(o + "/event_ids.nc");
  CHECK(cli("events --input " + t.file("two-dims.nc") + " --out " + o, out) != 0);
  CHECK_THAT(out, Catch::Contains("two-dims.nc") && Catch::Contains("'mask'") && Catch::Contains("(lat, lon)"));
  CHECK(cli("events --input " + t.file("bad-class.nc") + " --out " + o, out) != 0);
  CHECK_THAT(out, Catch::Contains("bad-class.nc") && Catch::Contains("value 7") &&
                      Catch::Contains("2000-01-01T03:00:00"));
  CHECK(cli("events --input " + t.file("later.nc") + " " + t.file("other-grid.nc") + " --out " + o, out) != 0);
  CHECK_THAT(out, Catch::Contains("other-grid.nc") && Catch::Contains("grid"));
  CHECK(cli("events --input " + t.file("ok.nc") + " --var labels --out " + o, out) != 0);
  CHECK_THAT(out, Catch::Contains("labels"));
  // Fields without the variables the intensities need: the file and the variable are named.
  CHECK(cli("events --input " + t.file("ok.nc") + " --fields " + t.file("later.nc") + " --out " + o, out) != 0);
  CHECK_THAT(out, Catch::Contains("later.nc") && Catch::Contains("UBOT"));
  std::ofstream(t.file("truth.csv")) << "event_id,class,step,time,lat_deg,lon_deg,strength,path\n"
                                        "1,hurricane,0,2000-01-01T00:00:00,10,20,30,\n";
  CHECK(cli("events --input " + t.file("ok.nc") + " --truth " + t.file("truth.csv") + " --out " + o, out) != 0);
  CHECK_THAT(out, Catch::Contains("truth.csv") && Catch::Contains("hurricane"));
  CHECK(slurp(o + "/objects.csv") + slurp(o + "/event_ids.nc") == before);
  // A run on other masks that fails after its outputs are written (one of them cannot be moved into place) replaces
  // none of the earlier ones.
  fs::create_directories(o + "/tracks.png.d");
  fs::remove(o + "/tracks.png");
  fs::rename(o + "/tracks.png.d", o + "/tracks.png");
  CHECK(cli("events --input " + t.file("bad-class.nc") + " --var mask --end 2000-01-01T00:00:00 --out " + o, out) != 0);
  CHECK_THAT(out, Catch::Contains("tracks.png is a directory; nothing was replaced"));
  CHECK(slurp(o + "/objects.csv") + slurp(o + "/event_ids.nc") == before);
  // Without --no-png ... --no-event-ids: outputs of the earlier run that no longer match are removed.
  fs::remove(o + "/tracks.png");
  REQUIRE(cli("events --input " + t.file("later.nc") + " --out " + o + " --no-event-ids", out) == 0);
  CHECK_THAT(out, Catch::Contains("removed " + o + "/event_ids.nc of an earlier run"));
  CHECK(!fs::exists(o + "/event_ids.nc"));
  for (const auto& e : fs::directory_iterator(o))
    CHECK((e.path().string().find(".tmp-") == std::string::npos && e.path().filename().string()[0] != '.'));
}
#endif
