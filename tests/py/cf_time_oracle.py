"""cftime as the oracle for io/cf_time (tests/py/test_cf_time_oracle.cpp).

  cf_time_oracle.py SEED N    N random time values: each calendar (and its aliases), units in days, hours, minutes,
                              seconds, milliseconds, reference dates before and after 1582-10-15, offsets up to
                              +-3000 years either way
Prints one line per case:
  T|calendar|units|repr(value)|year month day hour minute second microsecond     cftime.num2date(value, units, cal)
  V|calendar|YYYY-MM-DD|0 or 1                                                    does cftime accept the date?
Values are whole milliseconds (io/cf_time's resolution) where the float is within 1/4 microsecond of that; cases
whose float is further off (cftime would keep the microseconds) or whose date falls outside the years io/cf_time
supports (1..9999 standard/julian, 0..9999 the others) are left out. A last line "# kept K of N" says how many.
"""
import math
import random
import sys
import warnings
from fractions import Fraction

import cftime

CALENDARS = ["standard", "gregorian", "proleptic_gregorian", "julian", "noleap", "365_day", "all_leap", "366_day",
             "360_day"]
UNITS = {"days": 86400000, "d": 86400000, "hours": 3600000, "hr": 3600000, "h": 3600000, "minutes": 60000,
         "min": 60000, "seconds": 1000, "sec": 1000, "s": 1000, "milliseconds": 1}
EPOCHS = ["1979-01-01 00:00:00", "1582-10-15", "1582-10-04", "1582-10-10", "1970-01-01T00:00:00Z", "1850-1-1",
          "0001-01-01", "0000-01-01", "1200-03-01 06:00", "2000-02-29 12:30:00", "2000-02-30", "1000-12-31 23:00",
          "1600-03-01 00:00:00.5", "1500-02-29", "5000-07-04 18:45:30", "9000-01-01"]
QUANTA_MS = [1, 500, 1000, 60000, 3600000, 10800000, 86400000]
SPAN_MS = 3000 * 366 * 86400000


def min_year(cal):
    return 1 if cal in ("standard", "gregorian", "julian") else 0


def accepts(cal, units):
    try:
        cftime.num2date(0, units, cal)
        return True
    except ValueError:
        return False


def main(seed, n):
    warnings.simplefilter("ignore")  # CFWarning: year 0 in proleptic_gregorian is outside CF, and expected here
    rng = random.Random(seed)
    kept = 0
    for _ in range(n):
        cal, unit, epoch = rng.choice(CALENDARS), rng.choice(list(UNITS)), rng.choice(EPOCHS)
        units = f"{unit} since {epoch}"
        if not accepts(cal, units):
            continue
        # Log-uniform magnitudes, so sub-day fractions such as k/24 days survive the exactness filter below.
        q = rng.choice(QUANTA_MS)
        ms = int(10 ** rng.uniform(0, math.log10(SPAN_MS / q))) * q * rng.choice((-1, 1))
        value = float(Fraction(ms, UNITS[unit]))
        if abs(Fraction(value) * UNITS[unit] * 1000 - ms * 1000) >= Fraction(1, 4):
            continue
        try:
            d = cftime.num2date(value, units, cal)
        except ValueError:
            continue
        if not min_year(cal) <= d.year <= 9999:
            continue
        kept += 1
        print(f"T|{cal}|{units}|{value!r}|{d.year} {d.month} {d.day} {d.hour} {d.minute} {d.second} {d.microsecond}")
    for _ in range(n // 4):  # dates near the ends of months and the special years
        cal = rng.choice(CALENDARS)
        date = f"{rng.choice([0, 1, 4, 100, 1500, 1582, 1700, 1900, 2000, 2001, 2100, 9999]):04d}-" \
               f"{rng.randint(1, 12):02d}-{rng.randint(27, 31) if rng.random() < 0.8 else rng.randint(1, 31):02d}"
        print(f"V|{cal}|{date}|{int(accepts(cal, 'days since ' + date))}")
    for cal in CALENDARS:  # the mixed calendar's missing days
        for day in range(1, 21):
            print(f"V|{cal}|1582-10-{day:02d}|{int(accepts(cal, f'days since 1582-10-{day:02d}'))}")
    print(f"# kept {kept} of {n}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
