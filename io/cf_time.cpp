#include "io/cf_time.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "engine/check.h"

namespace climseg::io::cf {

namespace {

constexpr int64_t kMsPerDay = 86400000;
constexpr int kMaxYear = 9999;

constexpr int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// ---- day numbers: consecutive integers per calendar ------------------------------------------------------------
// Gregorian and Julian share one axis (days since 1970-01-01 Gregorian), so the standard calendar can switch between
// them. Both count years from March (H. Hinnant's days_from_civil), so Feb 29 ends a cycle.

constexpr int64_t march_doy(int m, int d) { return (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; }

constexpr int64_t gregorian_days(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = floor_div(y, 400), yoe = y - era * 400;
  return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + march_doy(m, d) - 719468;
}

constexpr int64_t julian_days_raw(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = floor_div(y, 4), yoe = y - era * 4;
  return era * 1461 + yoe * 365 + march_doy(m, d);
}
// Julian 1582-10-04 is the day before Gregorian 1582-10-15.
constexpr int64_t kJulianOffset = gregorian_days(1582, 10, 14) - julian_days_raw(1582, 10, 4);
constexpr int64_t kGregorianStart = gregorian_days(1582, 10, 15);

// Day of a March-based year (0 = Mar 1) -> month and day.
void from_march_doy(int64_t doy, int& m, int& d) {
  const int64_t mp = (5 * doy + 2) / 153;
  d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
}

void from_gregorian_days(int64_t z, int& y, int& m, int& d) {
  z += 719468;
  const int64_t era = floor_div(z, 146097), doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  from_march_doy(doe - (365 * yoe + yoe / 4 - yoe / 100), m, d);
  y = static_cast<int>(yoe + era * 400 + (m <= 2));
}

void from_julian_days(int64_t z, int& y, int& m, int& d) {
  z -= kJulianOffset;
  const int64_t era = floor_div(z, 1461), doe = z - era * 1461;
  const int64_t yoe = (doe - doe / 1460) / 365;
  from_march_doy(doe - 365 * yoe, m, d);
  y = static_cast<int>(yoe + era * 4 + (m <= 2));
}

constexpr int kCumDays[13] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365};

// Days before month m (1-based) in a fixed-length year: 365 (noleap), 366 (all_leap).
int cum_days(int m, bool leap) { return kCumDays[m - 1] + (leap && m > 2); }

bool uses_julian(Calendar c, int y, int m, int d) {
  return c == Calendar::julian ||
         (c == Calendar::standard && (y < 1582 || (y == 1582 && (m < 10 || (m == 10 && d < 15)))));
}

int64_t day_number(int y, int m, int d, Calendar c) {
  switch (c) {
    case Calendar::noleap:
      return int64_t{y} * 365 + cum_days(m, false) + d - 1;
    case Calendar::all_leap:
      return int64_t{y} * 366 + cum_days(m, true) + d - 1;
    case Calendar::day360:
      return int64_t{y} * 360 + (m - 1) * 30 + d - 1;
    default:
      return uses_julian(c, y, m, d) ? julian_days_raw(y, m, d) + kJulianOffset : gregorian_days(y, m, d);
  }
}

void from_day_number(int64_t n, Calendar c, int& y, int& m, int& d) {
  if (c == Calendar::noleap || c == Calendar::all_leap || c == Calendar::day360) {
    const int len = c == Calendar::noleap ? 365 : c == Calendar::all_leap ? 366 : 360;
    y = static_cast<int>(floor_div(n, len));
    const int doy = static_cast<int>(n - int64_t{y} * len);
    if (c == Calendar::day360) {
      m = doy / 30 + 1;
      d = doy % 30 + 1;
      return;
    }
    for (m = 12; cum_days(m, len == 366) > doy; --m) {
    }
    d = doy - cum_days(m, len == 366) + 1;
  } else if (c == Calendar::julian || (c == Calendar::standard && n < kGregorianStart)) {
    from_julian_days(n, y, m, d);
  } else {
    from_gregorian_days(n, y, m, d);
  }
}

int min_year(Calendar c) { return c == Calendar::standard || c == Calendar::julian ? 1 : 0; }

int days_in_month(int y, int m, Calendar c) {
  static constexpr int kLen[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (c == Calendar::day360) return 30;
  if (m != 2) return kLen[m - 1];
  const bool gregorian = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  const bool leap =
      c == Calendar::all_leap || (c != Calendar::noleap && (uses_julian(c, y, m, 1) ? y % 4 == 0 : gregorian));
  return leap ? 29 : 28;
}

// Milliseconds since the calendar's day 0 (t must be valid).
int64_t to_ms(const DateTime& t, Calendar c) {
  return day_number(t.year, t.month, t.day, c) * kMsPerDay + (int64_t{t.hour} * 60 + t.minute) * 60000 +
         std::llround(t.second * 1000);
}

// ---- text ------------------------------------------------------------------------------------------------------

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// Reads 1..max_digits decimal digits at s[i] into v.
bool read_int(const std::string& s, size_t& i, int max_digits, int& v) {
  int n = 0;
  v = 0;
  for (; i < s.size() && n < max_digits && std::isdigit(static_cast<unsigned char>(s[i])); ++i, ++n)
    v = v * 10 + (s[i] - '0');
  return n > 0 && !(i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])));
}

bool eat(const std::string& s, size_t& i, char ch) { return i < s.size() && s[i] == ch && (++i, true); }

// "Y-M-D[( +|T)H:M[:S[.fff]]]" at s[i]; leaves i after what it read. Range checks are valid_date's.
bool read_datetime(const std::string& s, size_t& i, DateTime& t) {
  t = DateTime{};
  if (!read_int(s, i, 4, t.year) || !eat(s, i, '-') || !read_int(s, i, 2, t.month) || !eat(s, i, '-') ||
      !read_int(s, i, 2, t.day))
    return false;
  size_t j = i;
  if (!eat(s, j, 'T'))
    while (j < s.size() && s[j] == ' ') ++j;
  int hour;
  if (j == i || !read_int(s, j, 2, hour) || !eat(s, j, ':')) return true;  // a date alone: what follows is no time
  t.hour = hour;
  if (!read_int(s, j, 2, t.minute)) return false;
  if (eat(s, j, ':')) {
    int sec;
    if (!read_int(s, j, 2, sec)) return false;
    t.second = sec;
    if (eat(s, j, '.')) {
      const size_t f = j;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      if (j == f) return false;
      t.second += std::strtod(s.substr(f - 1, j - f + 1).c_str(), nullptr);
    }
  }
  i = j;
  return true;
}

// A time zone at s[i..]: true (and i at its end) when it is UTC; throws for another offset.
bool read_utc(const std::string& s, size_t& i, const std::string& what, const std::string& units) {
  const std::string rest = lower(s.substr(i));
  for (const char* name : {"z", "utc", "gmt"})
    if (rest == name) return i = s.size(), true;
  size_t j = i;
  const bool has_sign = eat(s, j, '+') || eat(s, j, '-');
  const size_t digits_at = j;
  int h = 0, mi = 0;
  if (!read_int(s, j, 4, h)) return false;
  if (j - digits_at > 2) {  // "+0100"
    mi = h % 100, h /= 100;
  } else if (eat(s, j, ':') && !read_int(s, j, 2, mi)) {
    return false;
  }
  if (j != s.size() || (!has_sign && (h != 0 || mi != 0))) return false;  // "2000-01-01 12": an hour without minutes
  if (h != 0 || mi != 0)
    CS_THROW(what, ": time zone offset \"", s.substr(i), "\" in \"", units,
             "\" is not supported: the reference date must be in UTC");
  return i = j, true;
}

const char* kCalendarList =
    "standard, gregorian, proleptic_gregorian, julian, noleap, 365_day, all_leap, 366_day, 360_day";

}  // namespace

// ---- public ----------------------------------------------------------------------------------------------------

Calendar parse_calendar(const std::string& name, const std::string& what) {
  const std::string n = lower(trim(name));
  if (n.empty() || n == "standard" || n == "gregorian") return Calendar::standard;
  if (n == "proleptic_gregorian") return Calendar::proleptic_gregorian;
  if (n == "julian") return Calendar::julian;
  if (n == "noleap" || n == "365_day") return Calendar::noleap;
  if (n == "all_leap" || n == "366_day") return Calendar::all_leap;
  if (n == "360_day") return Calendar::day360;
  CS_THROW(what, ": calendar \"", name, "\" is not supported (supported: ", kCalendarList, ")");
}

const char* calendar_name(Calendar c) {
  switch (c) {
    case Calendar::standard:
      return "standard";
    case Calendar::proleptic_gregorian:
      return "proleptic_gregorian";
    case Calendar::julian:
      return "julian";
    case Calendar::noleap:
      return "noleap";
    case Calendar::all_leap:
      return "all_leap";
    case Calendar::day360:
      return "360_day";
  }
  return "?";
}

TimeUnits parse_time_units(const std::string& units, const std::string& what) {
  const std::string s = trim(units);
  CS_CHECK(!s.empty(), what, ": no time units (expected e.g. \"days since 1979-01-01 00:00:00\")");
  const size_t sp = s.find_first_of(" \t");
  const std::string unit = lower(s.substr(0, sp));
  TimeUnits u;
  u.text = units;
  struct Unit {
    const char* name;
    double seconds;
  };
  static constexpr Unit kUnits[] = {
      {"days", 86400},       {"day", 86400},  {"d", 86400},    {"hours", 3600}, {"hour", 3600}, {"hrs", 3600},
      {"hr", 3600},          {"h", 3600},     {"minutes", 60}, {"minute", 60},  {"mins", 60},   {"min", 60},
      {"seconds", 1},        {"second", 1},   {"secs", 1},     {"sec", 1},      {"s", 1},       {"milliseconds", 1e-3},
      {"millisecond", 1e-3}, {"msecs", 1e-3}, {"msec", 1e-3},  {"ms", 1e-3}};
  u.seconds_per_unit = 0;
  for (const Unit& k : kUnits)
    if (unit == k.name) u.seconds_per_unit = k.seconds;
  if (u.seconds_per_unit == 0) {
    for (const char* k : {"months", "month", "mon", "years", "year", "yr", "yrs", "common_years"})
      if (unit == k)
        CS_THROW(what, ": time units \"", units, "\": ", unit,
                 " have no fixed length in the CF conventions "
                 "(udunits' month is 1/12 of 365.242198781 days); use days, hours, minutes or seconds");
    CS_THROW(what, ": unknown time unit \"", s.substr(0, sp), "\" in \"", units,
             "\" (expected days, hours, minutes, seconds or milliseconds since a date)");
  }
  size_t i = sp == std::string::npos ? s.size() : s.find_first_not_of(" \t", sp);
  if (i == std::string::npos || lower(s.substr(i, 6)) != "since ")
    CS_THROW(what, ": time units \"", units, "\" are not \"<unit> since <date>\"");
  i = s.find_first_not_of(" \t", i + 6);
  const size_t date_at = i == std::string::npos ? s.size() : i;
  i = date_at;
  bool ok = read_datetime(s, i, u.epoch);
  if (ok && i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    ok = read_utc(s, i, what, units);
  }
  CS_CHECK(ok && i == s.size(), what, ": cannot read the reference date \"", s.substr(date_at), "\" in \"", units,
           "\" (expected YYYY-MM-DD[ hh:mm[:ss]] and optionally a UTC time zone)");
  const DateTime& e = u.epoch;
  CS_CHECK(e.month >= 1 && e.month <= 12 && e.day >= 1 && e.day <= 31 && e.hour < 24 && e.minute < 60 && e.second < 60,
           what, ": the reference date in \"", units, "\" is not a date");
  return u;
}

bool valid_date(const DateTime& t, Calendar c) {
  if (t.year < min_year(c) || t.year > kMaxYear || t.month < 1 || t.month > 12 || t.day < 1 ||
      t.day > days_in_month(t.year, t.month, c) || t.hour < 0 || t.hour > 23 || t.minute < 0 || t.minute > 59 ||
      !(t.second >= 0 && t.second < 60))
    return false;
  // The standard calendar's missing days: 1582-10-05 .. 1582-10-14.
  return !(c == Calendar::standard && t.year == 1582 && t.month == 10 && t.day > 4 && t.day < 15);
}

DateTime decode_time(double value, const TimeUnits& u, Calendar c) {
  CS_CHECK(valid_date(u.epoch, c), "the reference date of \"", u.text, "\" is not a date in the ", calendar_name(c),
           " calendar");
  const double ms = value * u.seconds_per_unit * 1000;
  CS_CHECK(std::isfinite(ms) && std::fabs(ms) < 1e15, "time value ", value, " ", u.text,
           " is outside the years of the ", calendar_name(c), " calendar");
  const int64_t total = to_ms(u.epoch, c) + std::llround(ms);
  const int64_t day = floor_div(total, kMsPerDay), in_day = total - day * kMsPerDay;
  DateTime t;
  from_day_number(day, c, t.year, t.month, t.day);
  CS_CHECK(t.year >= min_year(c) && t.year <= kMaxYear, "time value ", value, " ", u.text, " is year ", t.year,
           ", outside years ", min_year(c), "..", kMaxYear, " of the ", calendar_name(c), " calendar");
  t.hour = static_cast<int>(in_day / 3600000);
  t.minute = static_cast<int>(in_day / 60000 % 60);
  t.second = static_cast<double>(in_day % 60000) / 1000;
  return t;
}

double encode_time(const DateTime& t, const TimeUnits& u, Calendar c) {
  CS_CHECK(valid_date(u.epoch, c), "the reference date of \"", u.text, "\" is not a date in the ", calendar_name(c),
           " calendar");
  CS_CHECK(valid_date(t, c), iso(t), " is not a date in the ", calendar_name(c), " calendar");
  return static_cast<double>(to_ms(t, c) - to_ms(u.epoch, c)) / (u.seconds_per_unit * 1000);
}

std::string iso(const DateTime& t) {
  int64_t ms = std::isfinite(t.second) ? std::llround(t.second * 1000) : 0;
  if (ms > 59999) ms = 59999;  // 59.9996 s prints as 59.999, not 60
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", t.year, t.month, t.day, t.hour, t.minute,
                        static_cast<int>(ms / 1000));
  if (ms % 1000 != 0) std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), ".%03d", static_cast<int>(ms % 1000));
  return buf;
}

DateTime parse_iso(const std::string& s, Calendar c, const std::string& what) {
  DateTime t;
  size_t i = 0;
  CS_CHECK(read_datetime(s, i, t) && i == s.size(), what, ": \"", s,
           "\" is not a date (expected YYYY-MM-DD, YYYY-MM-DDTHH:MM or YYYY-MM-DDTHH:MM:SS)");
  CS_CHECK(valid_date(t, c), what, ": ", s, " is not a date in the ", calendar_name(c), " calendar",
           c == Calendar::standard && t.year == 1582 && t.month == 10 ? " (1582-10-05..14 do not exist)" : "");
  return t;
}

int compare(const DateTime& a, const DateTime& b) {
  const int ai[5] = {a.year, a.month, a.day, a.hour, a.minute}, bi[5] = {b.year, b.month, b.day, b.hour, b.minute};
  for (int k = 0; k < 5; ++k)
    if (ai[k] != bi[k]) return ai[k] < bi[k] ? -1 : 1;
  return a.second < b.second ? -1 : a.second > b.second ? 1 : 0;
}

}  // namespace climseg::io::cf
