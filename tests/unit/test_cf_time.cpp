// io/cf_time: hand-checked dates in each CF calendar, every day of years 0/1..9999 walked in order, exact decoding of
// 3-hourly steps stored as days, encode/decode round trips, negative offsets, and the parse errors with their
// messages. The comparison with python's cftime is tests/py/test_cf_time_oracle.cpp.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "io/cf_time.h"

using namespace climseg::io::cf;
using Catch::Contains;

namespace {

const std::vector<Calendar> kAll = {Calendar::standard, Calendar::proleptic_gregorian,
                                    Calendar::julian,   Calendar::noleap,
                                    Calendar::all_leap, Calendar::day360};

TimeUnits units(const std::string& u) { return parse_time_units(u, "test"); }
std::string dec(double v, const std::string& u, Calendar c) { return iso(decode_time(v, units(u), c)); }
DateTime date(int y, int m, int d, int h = 0, int mi = 0, double s = 0) { return DateTime{y, m, d, h, mi, s}; }

// The day after t (time of day kept), found through valid_date alone: days that do not exist are skipped.
DateTime next_day(DateTime t, Calendar c) {
  for (int k = 0; k < 40; ++k) {
    if (++t.day > 31) t.day = 1, ++t.month;
    if (t.month > 12) t.month = 1, ++t.year;
    if (valid_date(t, c)) return t;
  }
  FAIL("no day after " << iso(t));
  return t;
}

}  // namespace

TEST_CASE("calendar names", "[cf_time]") {
  CHECK(parse_calendar("", "f.nc: time:calendar") == Calendar::standard);
  CHECK(parse_calendar("Gregorian", "x") == Calendar::standard);
  CHECK(parse_calendar("STANDARD", "x") == Calendar::standard);
  CHECK(parse_calendar("proleptic_gregorian", "x") == Calendar::proleptic_gregorian);
  CHECK(parse_calendar("julian", "x") == Calendar::julian);
  CHECK(parse_calendar("noleap", "x") == Calendar::noleap);
  CHECK(parse_calendar("365_day", "x") == Calendar::noleap);
  CHECK(parse_calendar("all_leap", "x") == Calendar::all_leap);
  CHECK(parse_calendar("366_day", "x") == Calendar::all_leap);
  CHECK(parse_calendar("360_day", "x") == Calendar::day360);
  for (Calendar c : kAll) CHECK(parse_calendar(calendar_name(c), "x") == c);
  CHECK_THROWS_WITH(parse_calendar("none", "f.nc: time:calendar"),
                    Contains("f.nc: time:calendar: calendar \"none\" is not supported") && Contains("360_day"));
  CHECK_THROWS_WITH(parse_calendar("noleapp", "f.nc: time:calendar"), Contains("\"noleapp\""));
}

TEST_CASE("time units", "[cf_time]") {
  TimeUnits u = units("days since 1979-01-01 00:00:00");
  CHECK(u.seconds_per_unit == 86400);
  CHECK(iso(u.epoch) == "1979-01-01T00:00:00");
  CHECK(u.text == "days since 1979-01-01 00:00:00");
  u = units("hours since 2000-1-1");
  CHECK(u.seconds_per_unit == 3600);
  CHECK(iso(u.epoch) == "2000-01-01T00:00:00");
  CHECK(iso(units("minutes since 1850-01-01T00:00:00Z").epoch) == "1850-01-01T00:00:00");
  CHECK(units("minutes since 1850-01-01T00:00:00Z").seconds_per_unit == 60);
  CHECK(iso(units("  Days SINCE 1979-1-1 6:30 UTC ").epoch) == "1979-01-01T06:30:00");
  CHECK(iso(units("s since 1970-01-01 00:00:00.5").epoch) == "1970-01-01T00:00:00.500");
  for (const char* z : {"+00:00", "-0000", "0:00", "Z", "GMT", "+0"})
    CHECK(iso(units(std::string("seconds since 1970-01-01 00:00:00 ") + z).epoch) == "1970-01-01T00:00:00");
  for (const char* n : {"d", "day", "days"})
    CHECK(units(std::string(n) + " since 2000-01-01").seconds_per_unit == 86400);
  for (const char* n : {"h", "hr", "hrs", "hour", "hours"})
    CHECK(units(std::string(n) + " since 2000-01-01").seconds_per_unit == 3600);
  for (const char* n : {"min", "mins", "minute", "minutes"})
    CHECK(units(std::string(n) + " since 2000-01-01").seconds_per_unit == 60);
  for (const char* n : {"s", "sec", "secs", "second", "seconds"})
    CHECK(units(std::string(n) + " since 2000-01-01").seconds_per_unit == 1);
  CHECK(units("ms since 2000-01-01").seconds_per_unit == 1e-3);

  const std::string what = "f.nc: time:units";
  CHECK_THROWS_WITH(parse_time_units("months since 2000-01-01", what),
                    Contains(what + ": time units \"months since 2000-01-01\": months have no fixed length"));
  CHECK_THROWS_WITH(parse_time_units("years since 1850-01-01", what), Contains("years have no fixed length"));
  CHECK_THROWS_WITH(parse_time_units("fortnights since 2000-01-01", what),
                    Contains(what + ": unknown time unit \"fortnights\""));
  CHECK_THROWS_WITH(parse_time_units("", what), Contains(what + ": no time units"));
  CHECK_THROWS_WITH(parse_time_units("days", what), Contains(what + ": time units \"days\" are not \"<unit> since"));
  CHECK_THROWS_WITH(parse_time_units("days after 2000-01-01", what), Contains("are not \"<unit> since <date>\""));
  CHECK_THROWS_WITH(parse_time_units("days since 2000-01-01 00:00:00 +01:00", what),
                    Contains(what + ": time zone offset \"+01:00\"") && Contains("must be in UTC"));
  CHECK_THROWS_WITH(parse_time_units("days since 2000-01-01T00:00:00-0600", what), Contains("offset \"-0600\""));
  CHECK_THROWS_WITH(parse_time_units("days since yesterday", what),
                    Contains(what + ": cannot read the reference date \"yesterday\""));
  CHECK_THROWS_WITH(parse_time_units("days since 2000", what), Contains("cannot read the reference date"));
  CHECK_THROWS_WITH(parse_time_units("days since 2000-01-01 00:00 junk", what), Contains("cannot read"));
  CHECK_THROWS_WITH(parse_time_units("days since 2000-01-01 12", what), Contains("cannot read"));
  CHECK_THROWS_WITH(parse_time_units("days since 2000-13-01", what), Contains(what + ": the reference date in"));
  CHECK_THROWS_WITH(parse_time_units("days since 2000-01-01 25:00", what), Contains("is not a date"));
}

TEST_CASE("hand-checked dates in each calendar", "[cf_time]") {
  CHECK(dec(365, "days since 2000-01-01", Calendar::noleap) == "2001-01-01T00:00:00");
  CHECK(dec(365, "days since 2000-01-01", Calendar::standard) == "2000-12-31T00:00:00");
  CHECK(dec(366, "days since 2000-01-01", Calendar::all_leap) == "2001-01-01T00:00:00");
  CHECK(dec(360, "days since 2000-01-01", Calendar::day360) == "2001-01-01T00:00:00");
  CHECK(dec(59, "days since 2001-01-01", Calendar::noleap) == "2001-03-01T00:00:00");
  CHECK(dec(59, "days since 2001-01-01", Calendar::standard) == "2001-03-01T00:00:00");
  CHECK(dec(59, "days since 2001-01-01", Calendar::all_leap) == "2001-02-29T00:00:00");
  CHECK(dec(59, "days since 2001-01-01", Calendar::day360) == "2001-02-30T00:00:00");
  CHECK(dec(30, "days since 2001-01-01", Calendar::day360) == "2001-02-01T00:00:00");
  CHECK(dec(59, "days since 2000-01-01", Calendar::standard) == "2000-02-29T00:00:00");
  CHECK(dec(59, "days since 1900-01-01", Calendar::standard) == "1900-03-01T00:00:00");
  CHECK(dec(59, "days since 1900-01-01", Calendar::julian) == "1900-02-29T00:00:00");
  CHECK(dec(59, "days since 1500-01-01", Calendar::standard) == "1500-02-29T00:00:00");  // Julian before 1582
  CHECK(dec(59, "days since 1500-01-01", Calendar::proleptic_gregorian) == "1500-03-01T00:00:00");
  // The Gregorian reform: the day after 1582-10-04 is 1582-10-15 in the mixed calendar only.
  CHECK(dec(1, "days since 1582-10-04", Calendar::standard) == "1582-10-15T00:00:00");
  CHECK(dec(-1, "days since 1582-10-15", Calendar::standard) == "1582-10-04T00:00:00");
  CHECK(dec(1, "days since 1582-10-04", Calendar::proleptic_gregorian) == "1582-10-05T00:00:00");
  CHECK(dec(1, "days since 1582-10-04", Calendar::julian) == "1582-10-05T00:00:00");
  // Day counts from year 1 (cftime.date2num; the proleptic one is Python's date.toordinal() - 1).
  CHECK(encode_time(date(2000, 1, 1), units("days since 0001-01-01"), Calendar::standard) == 730121);
  CHECK(encode_time(date(2000, 1, 1), units("days since 0001-01-01"), Calendar::proleptic_gregorian) == 730119);
  CHECK(encode_time(date(2000, 1, 1), units("days since 0001-01-01"), Calendar::julian) == 730134);
  CHECK(encode_time(date(1, 1, 1), units("days since 1970-01-01"), Calendar::standard) == -719164);
  CHECK(encode_time(date(2000, 1, 1), units("seconds since 1970-01-01"), Calendar::standard) == 946684800);
  CHECK(encode_time(date(2000, 1, 1), units("days since 0000-01-01"), Calendar::noleap) == 2000 * 365);
  CHECK(encode_time(date(2000, 1, 1), units("days since 0000-01-01"), Calendar::day360) == 2000 * 360);
  // Julian 2000-01-01 is Gregorian 2000-01-14.
  CHECK(encode_time(date(2000, 1, 1), units("days since 1999-12-31"), Calendar::julian) == 1);
  // Hours, minutes, seconds, milliseconds.
  CHECK(dec(27, "hours since 2000-01-01", Calendar::standard) == "2000-01-02T03:00:00");
  CHECK(dec(90, "minutes since 2000-01-01 12:00", Calendar::noleap) == "2000-01-01T13:30:00");
  CHECK(dec(86399, "seconds since 2000-01-01", Calendar::standard) == "2000-01-01T23:59:59");
  CHECK(dec(1500, "ms since 2000-01-01", Calendar::standard) == "2000-01-01T00:00:01.500");
  CHECK(dec(0.5, "days since 2000-01-01 00:00:00.25", Calendar::standard) == "2000-01-01T12:00:00.250");
}

TEST_CASE("valid_date per calendar", "[cf_time]") {
  CHECK(valid_date(date(2000, 2, 29), Calendar::standard));
  CHECK(valid_date(date(2000, 2, 29), Calendar::proleptic_gregorian));
  CHECK_FALSE(valid_date(date(2000, 2, 29), Calendar::noleap));
  CHECK(valid_date(date(2001, 2, 29), Calendar::all_leap));
  CHECK_FALSE(valid_date(date(1900, 2, 29), Calendar::standard));  // 1900 is Gregorian in the mixed calendar
  CHECK_FALSE(valid_date(date(1900, 2, 29), Calendar::proleptic_gregorian));
  CHECK(valid_date(date(1900, 2, 29), Calendar::julian));
  CHECK(valid_date(date(1500, 2, 29), Calendar::standard));
  CHECK_FALSE(valid_date(date(1500, 2, 29), Calendar::proleptic_gregorian));
  CHECK(valid_date(date(2001, 2, 30), Calendar::day360));
  CHECK_FALSE(valid_date(date(2001, 1, 31), Calendar::day360));
  CHECK_FALSE(valid_date(date(2001, 2, 30), Calendar::all_leap));
  for (int d = 5; d <= 14; ++d) {
    CHECK_FALSE(valid_date(date(1582, 10, d), Calendar::standard));
    CHECK(valid_date(date(1582, 10, d), Calendar::proleptic_gregorian));
  }
  CHECK(valid_date(date(1582, 10, 4), Calendar::standard));
  CHECK(valid_date(date(1582, 10, 15), Calendar::standard));
  CHECK_FALSE(valid_date(date(0, 1, 1), Calendar::standard));
  CHECK_FALSE(valid_date(date(0, 1, 1), Calendar::julian));
  CHECK(valid_date(date(0, 2, 29), Calendar::proleptic_gregorian));  // year 0 = 1 BC, a leap year
  CHECK(valid_date(date(0, 1, 1), Calendar::noleap));
  CHECK(valid_date(date(9999, 12, 30), Calendar::day360));
  CHECK_FALSE(valid_date(date(10000, 1, 1), Calendar::noleap));
  CHECK_FALSE(valid_date(date(2000, 0, 1), Calendar::noleap));
  CHECK_FALSE(valid_date(date(2000, 13, 1), Calendar::noleap));
  CHECK_FALSE(valid_date(date(2000, 1, 0), Calendar::noleap));
  CHECK_FALSE(valid_date(date(2000, 1, 1, 24), Calendar::noleap));
  CHECK_FALSE(valid_date(date(2000, 1, 1, 0, 60), Calendar::noleap));
  CHECK_FALSE(valid_date(date(2000, 1, 1, 0, 0, 60), Calendar::noleap));
  CHECK_FALSE(valid_date(date(2000, 1, 1, 0, 0, -0.5), Calendar::noleap));
}

TEST_CASE("every day of every calendar in order, and the year lengths", "[cf_time]") {
  for (Calendar c : kAll) {
    INFO(calendar_name(c));
    const TimeUnits u = units(valid_date(date(0, 1, 1), c) ? "days since 0000-01-01" : "days since 0001-01-01");
    DateTime expect = u.epoch;
    int64_t n = 0, days_in_2001 = 0;
    for (;; ++n) {
      const DateTime t = decode_time(static_cast<double>(n), u, c);
      if (compare(t, expect) != 0) {
        FAIL_CHECK("day " << n << ": " << iso(t) << ", expected " << iso(expect));
        break;
      }
      if (t.year == 2001) ++days_in_2001;
      if (t.year == 9999 && t.month == 12 && t.day == (c == Calendar::day360 ? 30 : 31)) break;
      expect = next_day(expect, c);
      if (n % 997 == 0) REQUIRE(encode_time(t, u, c) == static_cast<double>(n));
    }
    const int64_t years = 10000 - u.epoch.year, len = c == Calendar::noleap ? 365 : c == Calendar::all_leap ? 366 : 360;
    if (c == Calendar::noleap || c == Calendar::all_leap || c == Calendar::day360) CHECK(n + 1 == years * len);
    CHECK(days_in_2001 == (c == Calendar::all_leap ? 366 : c == Calendar::day360 ? 360 : 365));
    CHECK_THROWS_WITH(decode_time(static_cast<double>(n + 1), u, c), Contains("outside years"));
    CHECK_THROWS_WITH(decode_time(-1, u, c), Contains("outside years"));
  }
}

TEST_CASE("3-hourly steps stored as days decode to exact hours for 100 years", "[cf_time]") {
  for (Calendar c : {Calendar::noleap, Calendar::standard, Calendar::day360}) {
    const TimeUnits u = units("days since 1979-01-01 00:00:00");
    DateTime day = u.epoch;
    for (int64_t k = 0; k < 100 * 365 * 8; ++k) {
      const double v = 0.125 * static_cast<double>(k);
      const DateTime t = decode_time(v, u, c);
      if (k % 8 == 0 && k > 0) day = next_day(day, c);
      const DateTime expect{day.year, day.month, day.day, static_cast<int>(k % 8) * 3, 0, 0};
      if (compare(t, expect) != 0 || encode_time(t, u, c) != v) {
        FAIL_CHECK(calendar_name(c) << " step " << k << ": " << iso(t) << ", expected " << iso(expect));
        break;
      }
    }
  }
}

TEST_CASE("round trips and negative offsets", "[cf_time]") {
  std::mt19937_64 rng(12345);
  for (Calendar c : kAll) {
    INFO(calendar_name(c));
    for (const char* text : {"days since 1850-01-01", "hours since 1582-10-15 12:00", "minutes since 1000-06-30",
                             "seconds since 1970-01-01T00:00:00Z", "ms since 2000-01-01 00:00:00.5"}) {
      INFO(text);
      const TimeUnits u = units(text);
      const double ms_per_unit = u.seconds_per_unit * 1000;
      std::uniform_int_distribution<int64_t> ms(-int64_t{800} * 365 * 86400000, int64_t{800} * 365 * 86400000);
      for (int i = 0; i < 3000; ++i) {
        // Whole seconds, whole minutes, 3-hour steps, and for days k/24 (hourly) as files store them.
        int64_t m = ms(rng);
        m -= m % (i % 3 == 0 ? 1000 : i % 3 == 1 ? 60000 : 10800000);
        const double v = i % 4 == 0 && u.seconds_per_unit == 86400 ? static_cast<double>(m / 3600000) / 24
                                                                   : static_cast<double>(m) / ms_per_unit;
        const DateTime t = decode_time(v, u, c);
        REQUIRE(valid_date(t, c));
        REQUIRE(encode_time(t, u, c) == v);
      }
      // Dates to values and back.
      std::uniform_int_distribution<int> year(1300, 2700), month(1, 12), day(1, 31), hour(0, 23), minute(0, 59);
      for (int i = 0; i < 3000; ++i) {
        const DateTime t{year(rng), month(rng), day(rng), hour(rng), minute(rng), static_cast<double>(minute(rng))};
        if (!valid_date(t, c)) continue;
        REQUIRE(compare(decode_time(encode_time(t, u, c), u, c), t) == 0);
      }
    }
  }
  const std::string u = "days since 2000-01-01";
  CHECK(dec(-1, u, Calendar::standard) == "1999-12-31T00:00:00");
  CHECK(dec(-0.125, u, Calendar::standard) == "1999-12-31T21:00:00");
  CHECK(dec(-366, u, Calendar::noleap) == "1998-12-31T00:00:00");
  CHECK(dec(-361, u, Calendar::day360) == "1998-12-30T00:00:00");
  CHECK(dec(-1, "seconds since 2000-01-01", Calendar::standard) == "1999-12-31T23:59:59");
  CHECK(dec(-1, "ms since 2000-01-01", Calendar::noleap) == "1999-12-31T23:59:59.999");
  CHECK(dec(-1.5, "hours since 1582-10-15 01:00", Calendar::standard) == "1582-10-04T23:30:00");
  CHECK(encode_time(date(1999, 12, 31, 21), units(u), Calendar::standard) == -0.125);
}

TEST_CASE("decode and encode errors", "[cf_time]") {
  const TimeUnits u = units("days since 2000-02-30");
  CHECK(dec(1, "days since 2000-02-30", Calendar::day360) == "2000-03-01T00:00:00");
  CHECK_THROWS_WITH(decode_time(0, u, Calendar::noleap),
                    Contains("the reference date of \"days since 2000-02-30\" is not a date in the noleap calendar"));
  CHECK_THROWS_WITH(encode_time(date(2000, 1, 1), u, Calendar::standard), Contains("reference date"));
  CHECK_THROWS_WITH(decode_time(0, units("days since 1582-10-10"), Calendar::standard), Contains("reference date"));
  CHECK_THROWS_WITH(decode_time(1e20, units("days since 2000-01-01"), Calendar::standard),
                    Contains("time value 1e+20 days since 2000-01-01 is outside"));
  CHECK_THROWS_WITH(decode_time(std::nan(""), units("days since 2000-01-01"), Calendar::standard),
                    Contains("is outside"));
  CHECK_THROWS_WITH(decode_time(-1, units("days since 0001-01-01"), Calendar::standard),
                    Contains("is year 0, outside years 1..9999 of the standard calendar"));
  CHECK(dec(-1, "days since 0001-01-01", Calendar::proleptic_gregorian) == "0000-12-31T00:00:00");
  CHECK_THROWS_WITH(encode_time(date(2001, 2, 29), units("days since 2000-01-01"), Calendar::noleap),
                    Contains("2001-02-29T00:00:00 is not a date in the noleap calendar"));
}

TEST_CASE("iso, parse_iso and compare", "[cf_time]") {
  CHECK(iso(date(2000, 1, 1, 3)) == "2000-01-01T03:00:00");
  CHECK(iso(date(5, 12, 31, 23, 59, 59)) == "0005-12-31T23:59:59");
  CHECK(iso(date(2000, 1, 1, 0, 0, 1.25)) == "2000-01-01T00:00:01.250");
  CHECK(iso(date(2000, 1, 1, 0, 0, 1.0004)) == "2000-01-01T00:00:01");
  CHECK(iso(date(2000, 1, 1, 0, 0, 59.9999)) == "2000-01-01T00:00:59.999");

  const Calendar s = Calendar::standard;
  CHECK(iso(parse_iso("2000-01-01", s, "--start")) == "2000-01-01T00:00:00");
  CHECK(iso(parse_iso("2000-01-01T06:30", s, "--start")) == "2000-01-01T06:30:00");
  CHECK(iso(parse_iso("2000-01-01 06:30:15", s, "--start")) == "2000-01-01T06:30:15");
  CHECK(iso(parse_iso("2000-01-01T06:30:15", s, "--start")) == "2000-01-01T06:30:15");
  CHECK(iso(parse_iso("2000-01-01T06:30:15.5", s, "--start")) == "2000-01-01T06:30:15.500");
  CHECK(iso(parse_iso("1-2-3", s, "--start")) == "0001-02-03T00:00:00");
  CHECK(iso(parse_iso("2001-02-29", Calendar::all_leap, "--start")) == "2001-02-29T00:00:00");
  CHECK(iso(parse_iso("2001-02-30", Calendar::day360, "--start")) == "2001-02-30T00:00:00");
  CHECK(iso(parse_iso("0000-01-01", Calendar::noleap, "--start")) == "0000-01-01T00:00:00");
  CHECK_THROWS_WITH(parse_iso("2001-02-29", Calendar::noleap, "--start"),
                    Contains("--start: 2001-02-29 is not a date in the noleap calendar"));
  CHECK_THROWS_WITH(parse_iso("2001-02-30", Calendar::all_leap, "--end"), Contains("--end: 2001-02-30 is not a date"));
  CHECK_THROWS_WITH(parse_iso("2001-01-31", Calendar::day360, "--end"), Contains("360_day calendar"));
  CHECK_THROWS_WITH(parse_iso("1582-10-10", s, "--start"), Contains("1582-10-05..14 do not exist"));
  CHECK_THROWS_WITH(parse_iso("0000-01-01", s, "--start"), Contains("not a date in the standard calendar"));
  CHECK_THROWS_WITH(parse_iso("2000-01-01T24:00", s, "--start"), Contains("not a date in the standard"));
  for (const char* bad : {"", "2000", "2000-01", "2000-01-01T", "2000-01-01 12", "2000-01-01T12:", "20000-01-01",
                          "2000-001-01", "2000-01-01T12:00Z", "2000/01/01", "2000-01-01 12:00:00 ", "x2000-01-01"})
    CHECK_THROWS_WITH(parse_iso(bad, s, "--start"), Contains(std::string("--start: \"") + bad + "\" is not a date"));

  CHECK(compare(date(2000, 1, 1), date(2000, 1, 1)) == 0);
  CHECK(compare(date(1999, 12, 31, 23, 59, 59.5), date(2000, 1, 1)) == -1);
  CHECK(compare(date(2000, 1, 1, 0, 0, 0.001), date(2000, 1, 1)) == 1);
  CHECK(compare(date(2000, 2, 1), date(2000, 1, 31)) == 1);
}
