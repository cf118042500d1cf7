// `climseg data generate --format netcdf` end to end, as a user runs it: the CAM-like history files and label files
// are read by python's netCDF4, xarray (cftime) and `ncdump -h` (tests/py/synthetic_check.py netcdf): file names,
// lat ascending from the south, lon 0.., noleap times 3 hours apart across the end of February, units and long
// names, the mask's flag attributes, stats.h5 over every step, and every value equal to the generator's own
// (SyntheticGenerator::generate(step, noleap_step_time(step)), run here). Then: the same arguments give the same
// bytes, a date has the same weather whatever the start date, a non-empty directory is refused without --force, and
// bad options are refused. With --sequence: truth.csv and truth_events.csv (synthetic_check.py sequence: headers,
// formats, steps and times against the files, the masks under the catalogued events), the same rows as
// io::SyntheticSequence's truth, and --sequence refused with --format hdf5. Skipped (exit 77) in builds without
// libnetcdf or where python lacks netCDF4/xarray/cftime or ncdump is missing.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "io/synthetic.h"
#include "tests/util/npy.h"
#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

#if !CLIMSEG_HAVE_NETCDF
// Registered as a CLI test only (tests/CMakeLists.txt), so it is also built without climseg_io: nothing of io/ used.
TEST_CASE("data generate --format netcdf: skipped without libnetcdf", "[py][synthetic][netcdf]") {
  std::printf("SKIPPED: this build has no libnetcdf (`data generate --format netcdf` is not in it)\n");
  std::exit(77);
}
#else
using namespace climseg;
namespace fs = std::filesystem;

namespace {

const std::string kScript = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/synthetic_check.py";

int cli(const std::string& args, std::string& out) {
  out.clear();
  return test::run_command(std::string(CLIMSEG_CLI) + " " + args, out);
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) m[fs::relative(e.path(), dir).string()] = slurp(e.path());
  return m;
}

// ctest reports exit code 77 as skipped (never as passed).
void skip_unless_available() {
  if (!test::python_can_import("netCDF4, xarray, cftime")) {
    std::printf("SKIPPED: %s cannot import netCDF4, xarray and cftime (python3-netcdf4, python3-xarray)\n",
                test::kPython3);
    std::exit(77);
  }
  std::string out;
  if (test::run_command("ncdump 2>&1 | grep -q netcdf", out) != 0) {
    std::printf("SKIPPED: ncdump (netcdf-bin) is not on the PATH\n");
    std::exit(77);
  }
}

}  // namespace

TEST_CASE("data generate --format netcdf: CAM-like history files that netCDF4, xarray and ncdump read",
          "[py][synthetic][netcdf]") {
  skip_unless_available();
  test::TempDir t;
  const int64_t H = 32, W = 48, N = 10, per_file = 4;
  const std::string args =
      " --format netcdf --samples 10 --height 32 --width 48 --steps-per-file 4 --seed 3 "
      "--start-date 2001-02-28";
  std::string out;
  int rc = cli("data generate --out " + t.file("a") + args, out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("3 NetCDF-4 history file(s)") && Catch::Contains("class fractions"));

  // The generator in-process, for the values: step g (3-hourly since 2000-01-01 00:00, noleap) dated by itself.
  const io::SyntheticGenerator gen(3, H, W);
  const int64_t first = io::noleap_step_index(2001, 2, 28, 0);
  fs::create_directories(t.path() / "ref");
  for (int64_t k = 0; k < N; ++k) {
    const io::SyntheticSample s = gen.generate(first + k, io::noleap_step_time(first + k));
    test::npy_write(t.file("ref/data_" + std::to_string(k) + ".npy"), s.data);
    test::npy_write(t.file("ref/labels_" + std::to_string(k) + ".npy"), s.labels);
  }
  const std::string py =
      test::python_run(kScript + " netcdf " + t.file("a") + " " + std::to_string(H) + " " + std::to_string(W) + " " +
                       std::to_string(N) + " " + std::to_string(per_file) + " 2001-02-28 " + t.file("ref"));
  INFO(py);
  CHECK_THAT(py, Catch::Contains("ncdump -h reads every file") && Catch::Contains("stats.h5 OK"));

  SECTION("the same arguments give the same bytes; a date's weather does not depend on --start-date") {
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a later second: no clock in the files
    REQUIRE(cli("data generate --out " + t.file("b") + args, out) == 0);
    CHECK(tree(t.path() / "a") == tree(t.path() / "b"));
    // The last file holds 2001-03-01 00:00 and 03:00; a run of those two steps alone writes the same file.
    REQUIRE(cli("data generate --out " + t.file("c") +
                    " --format netcdf --samples 2 --height 32 --width 48 --seed 3 --start-date '2001-03-01 00:00'",
                out) == 0);
    const std::string name = "synthetic.cam.h2.2001-03-01-00000.nc";
    CHECK(slurp(t.path() / "c" / name) == slurp(t.path() / "a" / name));
    CHECK(slurp(t.path() / "c" / "labels" / "synthetic.labels.2001-03-01-00000.nc") ==
          slurp(t.path() / "a" / "labels" / "synthetic.labels.2001-03-01-00000.nc"));
  }

  SECTION("a non-empty directory is refused without --force; --force replaces only generated files") {
    const auto before = tree(t.path() / "a");
    rc = cli("data generate --out " + t.file("a") + args, out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("not empty") && Catch::Contains("--force"));
    CHECK(tree(t.path() / "a") == before);
    std::ofstream(t.file("a/notes.txt")) << "mine";
    rc = cli("data generate --out " + t.file("a") +
                 " --format netcdf --samples 3 --height 32 --width 48 --seed 3 --start-date 2001-02-28 --force",
             out);
    INFO(out);
    REQUIRE(rc == 0);
    const auto after = tree(t.path() / "a");
    CHECK(after.count("notes.txt") == 1);
    CHECK(after.count("stats.h5") == 1);
    CHECK(after.count("synthetic.cam.h2.2001-02-28-00000.nc") == 1);
    CHECK(after.count("labels/synthetic.labels.2001-02-28-00000.nc") == 1);
    CHECK(after.size() == 4);  // the earlier run's other files are gone
    for (const auto& e : fs::directory_iterator(t.path() / "a"))
      CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);  // no temporaries left
  }

  SECTION("bad dates and options of the other format are refused") {
    rc = cli("data generate --out " + t.file("d") + " --format netcdf --samples 1 --start-date 2000-02-29", out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("noleap"));
    rc =
        cli("data generate --out " + t.file("d") + " --format netcdf --samples 1 --start-date '2000-01-01 04:00'", out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("3-hourly"));
    rc = cli("data generate --out " + t.file("d") + " --format netcdf --samples 1 --start-date 1999-12-31", out);
    CHECK(rc != 0);
    rc = cli("data generate --out " + t.file("d") + " --format netcdf --samples 1 --gzip 4", out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("--format hdf5"));
    rc = cli("data generate --out " + t.file("d") + " --samples 1 --steps-per-file 2", out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("--format netcdf"));
    CHECK_FALSE(fs::exists(t.path() / "d" / "stats.h5"));
  }
}

TEST_CASE("data generate --format netcdf --sequence: events that persist and move, and their truth catalogue",
          "[py][synthetic][netcdf]") {
  skip_unless_available();
  test::TempDir t;
  const int64_t N = 20;
  const std::string args =
      " --format netcdf --sequence --samples 20 --height 96 --width 144 --steps-per-file 6 --seed 3 "
      "--start-date '2001-02-28 12:00'";
  std::string out;
  int rc = cli("data generate --out " + t.file("s") + args, out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("sequence: placed") && Catch::Contains("truth_events.csv"));
  const std::string py = test::python_run(kScript + " sequence " + t.file("s") + " " + std::to_string(N));
  INFO(py);
  CHECK_THAT(py, Catch::Contains("times match the files") && Catch::Contains("consistent with truth.csv"));

  // One row per truth point of the generator in-process, in its order, with its (rounded) values.
  const io::SyntheticSequence seq(3, 96, 144, io::noleap_step_index(2001, 2, 28, 12), N);
  std::ifstream csv(t.file("s/truth.csv"));
  std::string line;
  std::getline(csv, line);
  CHECK(line == "event_id,class,step,time,lat_deg,lon_deg,strength,path");
  size_t rows = 0;
  while (std::getline(csv, line)) {
    REQUIRE(rows < seq.truth().size());
    const io::TruthPoint& p = seq.truth()[rows++];
    char want[160];
    std::snprintf(want, sizeof want, "%lld,%s,%lld,", static_cast<long long>(p.event_id),
                  p.cyclone ? "tropical_cyclone" : "atmospheric_river",
                  static_cast<long long>(p.step - seq.first_step()));
    CHECK(line.rfind(want, 0) == 0);
    std::snprintf(want, sizeof want, ",%.4f,", p.lat);
    CHECK(line.find(want) != std::string::npos);
  }
  CHECK(rows == seq.truth().size());

  SECTION("the same arguments give the same catalogue; --force replaces it, a run without --sequence drops it") {
    REQUIRE(cli("data generate --out " + t.file("s2") + args, out) == 0);
    CHECK(tree(t.path() / "s") == tree(t.path() / "s2"));
    REQUIRE(cli("data generate --out " + t.file("s2") +
                    " --format netcdf --samples 2 --height 32 --width 48 --seed 3 --force",
                out) == 0);
    CHECK_FALSE(fs::exists(t.path() / "s2" / "truth.csv"));
    CHECK_FALSE(fs::exists(t.path() / "s2" / "truth_events.csv"));
  }

  SECTION("--sequence is refused with --format hdf5") {
    rc = cli("data generate --out " + t.file("h") + " --sequence --samples 1 --height 32 --width 48", out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("--sequence") && Catch::Contains("--format netcdf"));
    CHECK_FALSE(fs::exists(t.path() / "h" / "stats.h5"));
  }
}
#endif
