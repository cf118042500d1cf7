// io/cf_time against python's cftime (tests/py/cf_time_oracle.py): thousands of random time values in every calendar
// and alias, units from days to milliseconds, reference dates before and after 1582-10-15 and offsets either way,
// decoded by cftime.num2date and by decode_time, compared exactly (year .. microsecond); each decoded date encodes back
// to its value; and valid_date agrees with cftime on which dates exist (month ends, leap years, 1582-10-05..14).
// Without cftime (Debian python3-cftime) the executable exits with 77: ctest reports it skipped.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "io/cf_time.h"
#include "tests/util/python.h"

using namespace climseg;
using namespace climseg::io::cf;

namespace {

const std::string kScript = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/cf_time_oracle.py";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, sep);) parts.push_back(p);
  return parts;
}

}  // namespace

TEST_CASE("decode_time and valid_date agree with cftime", "[py][cf_time]") {
  if (!test::python_can_import("cftime")) {
    std::printf("SKIPPED: %s cannot import cftime (Debian package python3-cftime)\n", test::kPython3);
    std::exit(77);  // py_main checks h5py and numpy only
  }
  const std::string out = test::python_run(kScript + " 20240607 8000");
  int values = 0, dates = 0, mismatches = 0, before_1582 = 0;
  std::map<std::string, int> per_calendar;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    const std::vector<std::string> f = split(line, '|');
    if (f.size() == 5 && f[0] == "T") {
      const Calendar c = parse_calendar(f[1], "oracle");
      const TimeUnits u = parse_time_units(f[2], "oracle");
      const double v = std::strtod(f[3].c_str(), nullptr);
      long long y, mo, d, h, mi, s, us;
      REQUIRE(std::sscanf(f[4].c_str(), "%lld %lld %lld %lld %lld %lld %lld", &y, &mo, &d, &h, &mi, &s, &us) == 7);
      const DateTime t = decode_time(v, u, c);
      const bool same = t.year == y && t.month == mo && t.day == d && t.hour == h && t.minute == mi &&
                        std::llround(t.second * 1e6) == s * 1000000 + us;
      if (!same && ++mismatches <= 10)
        FAIL_CHECK(f[3] << " " << f[2] << " (" << f[1] << "): decode_time gives " << iso(t) << ", cftime " << f[4]);
      if (same) CHECK(encode_time(t, u, c) == v);
      ++values, ++per_calendar[f[1]], before_1582 += y < 1582;
    } else if (f.size() == 4 && f[0] == "V") {
      const Calendar c = parse_calendar(f[1], "oracle");
      DateTime t;
      REQUIRE(std::sscanf(f[2].c_str(), "%d-%d-%d", &t.year, &t.month, &t.day) == 3);
      INFO(f[2] << " in " << f[1]);
      CHECK(valid_date(t, c) == (f[3] == "1"));
      ++dates;
    }
  }
  INFO(out.substr(out.rfind('#')));
  CHECK(mismatches == 0);
  // The script ran as intended: enough values in every calendar, on both sides of the Gregorian reform.
  CHECK(values >= 5000);
  CHECK(dates >= 2000);
  CHECK(per_calendar.size() == 9);
  for (const auto& [name, n] : per_calendar) CHECK(n >= 300);
  CHECK(before_1582 >= 1000);
  CHECK(values - before_1582 >= 1000);
}
