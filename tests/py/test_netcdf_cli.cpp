// The NetCDF path end to end, as a user runs it: `data generate --format netcdf`, `data convert` to DeepCAM HDF5,
// `train` on the converted data (the weights carry the statistics and channel names), `predict` on the NetCDF files
// with no stats.h5, on 1 and 2 MPI ranks; the output read back by python3-netcdf4 and xarray (coordinates, calendar,
// attributes), its mask equal to `predict` on the same data converted to HDF5; bad input fails naming the culprit
// and keeps an earlier output.
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

namespace fs = std::filesystem;
using namespace climseg;

namespace {

int cli(const std::string& args, std::string& out) {
  out.clear();
  return test::run_command(std::string(CLIMSEG_CLI) + " " + args, out);
}

const std::string kCheck = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/netcdf_check.py";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("NetCDF: generate, convert, train, predict with the weights' statistics, on 1 and 2 ranks",
          "[py][netcdf][predict]") {
  if (!test::python_can_import("netCDF4, xarray, cftime")) {
    std::printf("SKIPPED: %s cannot import netCDF4 and xarray (python3-netcdf4, python3-xarray)\n", test::kPython3);
    std::exit(77);
  }
  test::TempDir t;
  const std::string nc = t.file("nc"), conv = t.file("conv"), w = t.file("w.safetensors");
  std::string out;
  // 10 steps starting on Feb 28 (noleap: the next day is Mar 1), 4 per file.
  REQUIRE(cli("data generate --format netcdf --out " + nc +
                  " --samples 10 --height 32 --width 48 --steps-per-file 4 --start-date 2001-02-28 --seed 3",
              out) == 0);
  const std::string inputs = "'" + nc + "/synthetic.cam.h2.*.nc'";
  REQUIRE(cli("data convert --input " + inputs + " --labels '" + nc + "/labels/*.nc' --out " + conv +
                  " --valid-fraction 0.2",
              out) == 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("8 train, 2 validation"));
  REQUIRE(fs::exists(conv + "/stats.h5"));
  REQUIRE(cli("train --data " + conv + " --model deepcam --width-multiplier 0.125 --epochs 1 --batch 2 --quiet "
                  "--save-weights " + w,
              out) == 0);

  SECTION("predict on NetCDF: CF output, the weights' statistics, equal to predict on the converted HDF5") {
    const std::string o1 = t.file("p1.nc");
    REQUIRE(cli("predict --weights " + w + " --input " + inputs + " --output " + o1 + " --batch 3", out) == 0);
    INFO(out);
    CHECK_THAT(out, Catch::Contains("normalisation: " + w) && Catch::Contains("2001-02-28T00:00:00 .. 2001-03-01T03:00:00") &&
                        Catch::Contains("calendar noleap"));
    CHECK_THAT(test::python_run(kCheck + " output " + o1 + " " + inputs), Catch::Contains("ok: 10 steps"));
    REQUIRE(test::run_command("ncdump -h " + o1, out) == 0);
    CHECK_THAT(out, Catch::Contains("byte mask(time, lat, lon)") && Catch::Contains(":Conventions = \"CF-1.8\""));
    if (test::run_command("command -v cdo", out) == 0) {  // CDO is not a dependency; checked where installed
      REQUIRE(test::run_command("cdo -s sinfon " + o1, out) == 0);
      CHECK_THAT(out, Catch::Contains("lonlat") && Catch::Contains("10 steps") && Catch::Contains("365_day"));
    }
    // The same data through the HDF5 path (converted samples, in time order) gives the same mask.
    REQUIRE(cli("predict --weights " + w + " --input '" + conv + "/train/*.h5' '" + conv +
                    "/validation/*.h5' --output " + t.file("p1.h5") + " --batch 3",
                out) == 0);
    CHECK_THAT(test::python_run(kCheck + " h5-mask " + o1 + " " + t.file("p1.h5")), Catch::Contains("ok"));

    // Two ranks: every time step exactly once, in time order, the same masks.
#if defined(CLIMSEG_MPIEXEC)
    const std::string mpiexec = CLIMSEG_MPIEXEC;
    if (!mpiexec.empty()) {
      const std::string o2 = t.file("p2.nc");
      REQUIRE(test::run_command(mpiexec + " -np 2 " + CLIMSEG_CLI + " predict --weights " + w + " --input " + inputs +
                                    " --output " + o2 + " --batch 2",
                                out) == 0);
      INFO(out);
      CHECK_THAT(out, Catch::Contains("2 rank(s)") && Catch::Contains("(rank 1)"));
      CHECK_THAT(test::python_run(kCheck + " same-mask " + o1 + " " + o2), Catch::Contains("ok"));
    }
#endif
  }

  SECTION("a stats file that differs from the weights' is reported; a bad input keeps the earlier output") {
    const std::string o1 = t.file("p.nc");
    REQUIRE(cli("predict --weights " + w + " --input " + inputs + " --output " + o1, out) == 0);
    const std::string before = slurp(o1);
    REQUIRE(cli("predict --weights " + w + " --input " + inputs + " --output " + o1 + " --stats " + nc + "/stats.h5",
                out) == 0);
    CHECK_THAT(out, Catch::Contains("differs from the statistics the network was trained with") &&
                        Catch::Contains("TMQ"));
    REQUIRE(cli("predict --weights " + w + " --input " + inputs + " --output " + o1 + " --stats " + conv + "/stats.h5",
                out) == 0);
    CHECK_THAT(out, Catch::Contains("equals the statistics stored in the weights"));
    const std::string again = slurp(o1);
    // A run that fails (an unknown variable for one channel) leaves the earlier output as it was.
    REQUIRE(cli("predict --weights " + w + " --input " + inputs + " --output " + o1 + " --channel TMQ=prw", out) != 0);
    CHECK_THAT(out, Catch::Contains("channel TMQ") && Catch::Contains("prw"));
    CHECK(slurp(o1) == again);
    CHECK(before.size() > 0);
    for (const auto& e : fs::directory_iterator(t.path())) CHECK(e.path().string().find(".tmp-") == std::string::npos);
    // Missing --start range.
    CHECK(cli("predict --weights " + w + " --input " + inputs + " --output " + o1 + " --start 2002-01-01", out) != 0);
    CHECK_THAT(out, Catch::Contains("no time step"));
    // An HDF5-style output name for NetCDF input.
    CHECK(cli("predict --weights " + w + " --input " + inputs + " --output " + t.file("p.h5"), out) != 0);
    CHECK_THAT(out, Catch::Contains(".nc name"));
  }
}
