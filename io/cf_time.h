// CF-convention time coordinates: calendars, "<unit> since <date>" units, decoding and encoding time values.
// Self-contained (no libc time functions: they are Gregorian-only and limited in range); checked against python's
// cftime in tests/py/test_cf_time_oracle.cpp.
//
//   Calendar parse_calendar(name, what)   CF calendar attribute -> Calendar (table below); throws naming `what`
//   const char* calendar_name(c)          canonical CF name ("standard", "noleap", ...)
//   TimeUnits parse_time_units(u, what)   "days since 1979-01-01 00:00:00" -> unit length + reference date
//   DateTime decode_time(v, u, c)         value in units since the reference date -> date and time
//   double encode_time(t, u, c)           the inverse
//   bool valid_date(t, c)                 is t a date and time of calendar c?
//   std::string iso(t)                    "2000-01-01T03:00:00" ("...T03:00:00.250" when the milliseconds are not 0)
//   DateTime parse_iso(s, c, what)        "YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]]", checked against c; throws naming what
//   int compare(a, b)                     -1 / 0 / 1 in (year, month, day, hour, minute, second) order
//
// Calendars (name matching is case-insensitive; an empty name is "standard" as CF says for an absent attribute):
//   standard            "standard", "gregorian": Julian before 1582-10-15, Gregorian from then on (as cftime and
//                       udunits); 1582-10-04 is followed by 1582-10-15 and the days between do not exist
//   proleptic_gregorian "proleptic_gregorian": Gregorian rules for all years (year 0 exists and is a leap year)
//   julian              "julian": a leap year every 4 years
//   noleap              "noleap", "365_day";  all_leap "all_leap", "366_day";  day360 "360_day" (12 months of 30 days)
// Anything else ("none", typos) throws. Years: 1..9999 for standard and julian (no year 0, as cftime's default
// has_year_zero=False), 0..9999 for the others (CESM files use "days since 0000-01-01" with noleap).
//
// Units: "<unit> since <date>" with <unit> one of days/day/d, hours/hour/hrs/hr/h, minutes/minute/mins/min,
// seconds/second/secs/sec/s, milliseconds/millisecond/msecs/msec/ms (case-insensitive), and <date> as parse_iso
// accepts (1-4 digit year, 1-2 digit month/day/hour/minute/second: "2000-1-1" is fine) optionally followed by a time
// zone that must be UTC: "Z", "UTC", "GMT", "+00:00", "-0000", "0:00". A non-zero offset, months or years (not fixed
// lengths in CF) and anything else throw naming `what`. The reference date is checked against the calendar when it is
// used (decode_time, encode_time), since the units do not know the calendar.
//
// Precision: times are whole milliseconds. decode_time rounds value * unit to the nearest millisecond before it
// splits days from the time of day, so 3-hourly steps stored as days (0.125 * k) decode to exact hours for any k;
// values before the reference date (negative) work. encode_time returns (t - reference) in milliseconds divided by
// the unit in milliseconds, one correctly rounded division: encode(decode(v)) == v whenever v * unit is a whole
// number of milliseconds and v is that number divided by the unit (e.g. k / 24.0 days, k * 0.125 days, any integer).
// Both throw when a date falls outside the calendar's years or is not a date of the calendar.
#pragma once

#include <string>

namespace climseg::io::cf {

enum class Calendar { standard, proleptic_gregorian, julian, noleap, all_leap, day360 };

Calendar parse_calendar(const std::string& name, const std::string& what);
const char* calendar_name(Calendar c);

struct DateTime {
  int year = 1, month = 1, day = 1, hour = 0, minute = 0;
  double second = 0;  // [0, 60), whole milliseconds when it comes from decode_time
};

struct TimeUnits {
  double seconds_per_unit = 86400;
  DateTime epoch;    // the reference date ("since ...")
  std::string text;  // the units as given, for messages
};

TimeUnits parse_time_units(const std::string& units, const std::string& what);
DateTime decode_time(double value, const TimeUnits& u, Calendar c);
double encode_time(const DateTime& t, const TimeUnits& u, Calendar c);
bool valid_date(const DateTime& t, Calendar c);
std::string iso(const DateTime& t);
DateTime parse_iso(const std::string& s, Calendar c, const std::string& what);
int compare(const DateTime& a, const DateTime& b);

}  // namespace climseg::io::cf
