// The CF-NetCDF reader (io/cf_reader.h) on small files written by python3-netcdf4 (tests/py/cf_cases.py) and by
// ncgen from CDL: every layout it must read gives back the known values f(c, t, y, x) = 1000 c + 100 t + y + 0.01 x
// (row y from the south), and every malformed variant is refused with a message naming the file and the variable.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "engine/check.h"
#include "io/cf_reader.h"
#include "io/input_files.h"
#include "io/input_metadata.h"
#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

using namespace climseg;

namespace {

constexpr int64_t kH = 6, kW = 8;

double expected(int64_t c, int64_t t, int64_t y, int64_t x) {
  return 1000.0 * static_cast<double>(c) + 100.0 * static_cast<double>(t) + static_cast<double>(y) +
         0.01 * static_cast<double>(x);
}

const std::string& cases() {
  static test::TempDir dir;
  static const std::string path = [] {
    if (!test::python_can_import("netCDF4, numpy")) {
      std::printf("SKIPPED: %s cannot import netCDF4 (Debian package python3-netcdf4)\n", test::kPython3);
      std::exit(77);
    }
    test::python_run(std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/cf_cases.py " + dir.path().string());
    return dir.path().string();
  }();
  return path;
}

io::CfReaderOptions defaults() {
  io::CfReaderOptions o;
  o.channels = io::default_channel_map(io::default_channel_names());
  return o;
}

// Reads every step and checks every value (float32 of the double formula; packed int16 within its 0.01 step).
void check_values(io::CfReader& r, int64_t first_step = 0, double tol = 1e-3) {
  std::vector<float> x(static_cast<size_t>(r.height() * r.width() * r.channels()));
  for (int64_t t = 0; t < r.steps(); ++t) {
    REQUIRE(r.read(t, x.data()) == 0);
    int64_t bad = 0;
    for (int64_t y = 0; y < kH; ++y)
      for (int64_t xx = 0; xx < kW; ++xx)
        for (int64_t c = 0; c < r.channels(); ++c) {
          const double e = expected(c, t + first_step, y, xx);
          const float got = x[static_cast<size_t>((y * kW + xx) * r.channels() + c)];
          if (std::abs(got - e) > tol * std::max(1.0, std::abs(e) * 1e-3)) {
            if (bad++ < 5) UNSCOPED_INFO("channel " << c << " t " << t << " y " << y << " x " << xx << ": " << got
                                         << " expected " << e);
          }
        }
    CHECK(bad == 0);
  }
}

std::vector<std::string> dir_files(const std::string& d) { return io::expand_globs({d + "/*.nc"}); }

std::string error_of(const std::vector<std::string>& files, const io::CfReaderOptions& o) {
  try {
    io::CfReader r(files, o);
    std::vector<float> x(static_cast<size_t>(r.height() * r.width() * r.channels()));
    for (int64_t t = 0; t < r.steps(); ++t) r.read(t, x.data());
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("CF reader: one file with every variable, CAM names, lat ascending, lon 0..360", "[py][netcdf]") {
  io::CfReader r({cases() + "/all/all.nc"}, defaults());
  CHECK(r.steps() == 3);
  CHECK(r.height() == kH);
  CHECK(r.width() == kW);
  CHECK_FALSE(r.lat_flipped());
  CHECK(r.grid().lat.front() == Approx(-75.0));
  CHECK(r.grid().lon.front() == 0.0);
  CHECK(r.grid().periodic());
  CHECK(r.time_axis().calendar == "noleap");
  CHECK(r.time_iso(0) == "2000-01-01T00:00:00");
  CHECK(r.time_iso(2) == "2000-01-01T06:00:00");
  CHECK(r.time_value(1) == 0.125);
  check_values(r);
}

TEST_CASE("CF reader: CMIP files, one per variable, lat descending, lon -180..180, levels in Pa, packed, units",
          "[py][netcdf]") {
  io::CfReader r(dir_files(cases() + "/cmip"), defaults());
  CHECK(r.lat_flipped());
  CHECK(r.grid().lat.front() < r.grid().lat.back());  // flipped to south-first
  CHECK(r.grid().lon.front() == -180.0);
  const std::vector<std::string> d = r.describe_channels();
  CHECK(d[0].rfind("TMQ <- prw", 0) == 0);
  CHECK(d[1].rfind("U850 <- ua@850", 0) == 0);
  CHECK(d[10].rfind("PRECT <- pr*0.001", 0) == 0);
  check_values(r, 0, 2e-3);  // psl is packed to 0.01
}

TEST_CASE("CF reader: time steps split over files with other time units; --start/--end", "[py][netcdf]") {
  io::CfReader r(dir_files(cases() + "/split"), defaults());
  CHECK(r.steps() == 3);
  CHECK(r.time_axis().units == "hours since 2000-01-01");
  CHECK(r.time_iso(2) == "2000-01-01T06:00:00");
  check_values(r);
  io::CfReaderOptions o = defaults();
  o.start = "2000-01-01T03:00";
  o.end = "2000-01-01 06:00:00";
  io::CfReader s(dir_files(cases() + "/split"), o);
  REQUIRE(s.steps() == 2);
  CHECK(s.time_iso(0) == "2000-01-01T03:00:00");
  check_values(s, 1);
  o.start = "2001-01-01";
  o.end = "";
  CHECK_THAT(error_of(dir_files(cases() + "/split"), o), Catch::Contains("no time step") &&
                                                          Catch::Contains("2001-01-01"));
}

TEST_CASE("CF reader: channel map overrides (a 3-D variable by level, a unit scale)", "[py][netcdf]") {
  io::CfReaderOptions o = defaults();
  io::override_channel_map(o.channels, {io::parse_channel_source("T200=ta@500", "--channel")}, "--channel");
  io::CfReader r(dir_files(cases() + "/cmip"), o);
  std::vector<float> x(static_cast<size_t>(kH * kW * 16));
  r.read(0, x.data());
  CHECK(x[8] == static_cast<float>(expected(9, 0, 0, 0)));  // T200's slot holds T500
  CHECK_THROWS_WITH(io::parse_channel_source("T200", "--channel"), Catch::Contains("--channel") &&
                                                                     Catch::Contains("CHANNEL=VAR"));
  std::vector<io::ChannelSource> m = io::default_channel_map(io::default_channel_names());
  CHECK_THROWS_WITH(io::override_channel_map(m, {io::parse_channel_source("FOO=bar", "--channel")}, "--channel"),
                    Catch::Contains("'FOO' is not one of the network's channels"));
  o = defaults();
  io::override_channel_map(o.channels, {io::parse_channel_source("U850=ua@700", "--channel")}, "--channel");
  CHECK_THAT(error_of(dir_files(cases() + "/cmip"), o), Catch::Contains("ua.nc") && Catch::Contains("'ua'") &&
                                                            Catch::Contains("no level 700 hPa") &&
                                                            Catch::Contains("1000 850 500 200"));
}

TEST_CASE("CF reader: malformed inputs are refused naming the file and the variable", "[py][netcdf]") {
  const std::string c = cases();
  CHECK_THAT(error_of(dir_files(c + "/bad_missing_var"), defaults()),
             Catch::Contains("channel T500") && Catch::Contains("T500, ta") && Catch::Contains("x.nc"));
  CHECK_THAT(error_of(dir_files(c + "/bad_grid"), defaults()),
             Catch::Contains("b.nc") && Catch::Contains("'TMQ'") && Catch::Contains("6x9") &&
                 Catch::Contains("share one grid"));
  CHECK_THAT(error_of(dir_files(c + "/bad_dims"), defaults()),
             Catch::Contains("x.nc") && Catch::Contains("'PSL'") && Catch::Contains("not a latitude"));
  CHECK_THAT(error_of(dir_files(c + "/bad_times"), defaults()),
             Catch::Contains("disagree on the time steps") && Catch::Contains("TMQ"));
  CHECK_THAT(error_of(dir_files(c + "/bad_fill"), defaults()),
             Catch::Contains("x.nc") && Catch::Contains("'PRECT'") && Catch::Contains("2000-01-01T03:00:00") &&
                 Catch::Contains("--fill-missing"));
  CHECK_THAT(error_of(dir_files(c + "/bad_calendar"), defaults()),
             Catch::Contains("b.nc") && Catch::Contains("360_day") && Catch::Contains("noleap"));
  CHECK_THAT(error_of(dir_files(c + "/bad_file"), defaults()), Catch::Contains("x.nc") &&
                                                                 Catch::Contains("cannot open as NetCDF"));
  CHECK_THAT(error_of(dir_files(c + "/bad_dup"), defaults()),
             Catch::Contains("appears twice") && Catch::Contains("2000-01-01T03:00:00"));
  CHECK_THROWS_WITH(io::expand_globs({c + "/nothing/*.nc"}), Catch::Contains("matches no file"));
}

TEST_CASE("CF reader: --fill-missing fills with the field's mean and counts the cells", "[py][netcdf]") {
  io::CfReaderOptions o = defaults();
  o.fill_missing = true;
  io::CfReader r(dir_files(cases() + "/bad_fill"), o);
  std::vector<float> x(static_cast<size_t>(kH * kW * 16));
  CHECK(r.read(0, x.data()) == 0);
  CHECK(r.read(1, x.data()) == 1);
  // The filled cell (file row 2 = south-first row 2, column 5) holds the mean of the other 47 cells.
  double sum = 0;
  for (int64_t y = 0; y < kH; ++y)
    for (int64_t xx = 0; xx < kW; ++xx)
      if (!(y == 2 && xx == 5)) sum += expected(10, 1, y, xx);
  CHECK(x[static_cast<size_t>((2 * kW + 5) * 16 + 10)] == Approx(sum / 47).epsilon(1e-6));
}

TEST_CASE("CF reader: a NetCDF-3 file written by ncgen from CDL (2 channels, 360_day calendar)", "[py][netcdf]") {
  std::string out;
  if (test::run_command("command -v ncgen", out) != 0) {
    WARN("ncgen (netcdf-bin) not installed: this case is not run");
    return;
  }
  test::TempDir t;
  const std::string cdl = t.file("small.cdl"), nc = t.file("small.nc");
  std::ofstream(cdl) << "netcdf small {\n"
                        "dimensions: time = UNLIMITED ; latitude = 2 ; longitude = 3 ;\n"
                        "variables:\n"
                        "  double time(time) ; time:units = \"days since 1850-01-01\" ; time:calendar = \"360_day\" ;\n"
                        "  float latitude(latitude) ; latitude:units = \"degrees_north\" ;\n"
                        "  float longitude(longitude) ; longitude:units = \"degrees_east\" ;\n"
                        "  float TMQ(time, latitude, longitude) ; TMQ:_FillValue = -999.f ;\n"
                        "  short PSL(time, latitude, longitude) ; PSL:scale_factor = 2. ; PSL:add_offset = 100000. ;\n"
                        "data:\n"
                        "  time = 29, 30 ;\n  latitude = 45, -45 ;\n  longitude = 0, 120, 240 ;\n"
                        "  TMQ = 1, 2, 3, 4, 5, 6,  7, 8, 9, 10, 11, -999 ;\n"
                        "  PSL = 0, 1, 2, 3, 4, 5,  -1, -2, -3, -4, -5, -6 ;\n"
                        "}\n";
  REQUIRE(test::run_command("ncgen -b -k nc3 -o " + nc + " " + cdl, out) == 0);
  io::CfReaderOptions o;
  o.channels = {io::parse_channel_source("TMQ=TMQ", "test"), io::parse_channel_source("PSL=PSL", "test")};
  io::CfReader r({nc}, o);
  CHECK(r.steps() == 2);
  CHECK(r.lat_flipped());
  CHECK(r.time_iso(0) == "1850-01-30T00:00:00");
  CHECK(r.time_iso(1) == "1850-02-01T00:00:00");  // 360_day: every month has 30 days
  std::vector<float> x(2 * 3 * 2);
  r.read(0, x.data());
  // Row 0 is the south (-45): the file's second row.
  CHECK(x == std::vector<float>{4, 100006, 5, 100008, 6, 100010, 1, 100000, 2, 100002, 3, 100004});
  CHECK_THROWS_WITH(r.read(1, x.data()), Catch::Contains("'TMQ'") && Catch::Contains("1850-02-01") &&
                                             Catch::Contains("lat -45 lon 240"));  // the file's second row
}
