// io/synthetic and io/sample_writer: the deterministic elementary functions against libm, the sample dates and the
// noleap dates of the NetCDF history files, the grid orientation (row 0 south), the generator's determinism,
// physical sanity of the fields, cyclones and rivers as the labels see them, the class fractions over 40 samples
// (band documented in docs/data.md), and the writer (round trip, identical bytes, refusals).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "io/hdf5_sample.h"
#include "io/sample_writer.h"
#include "io/synthetic.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kA = 6371.0;  // km

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// The grid as documented in io/synthetic.h (row 0 southernmost), computed here independently (libm is fine in a test).
double row_lat(int64_t i, int64_t H) { return -90.0 + (static_cast<double>(i) + 0.5) * 180.0 / static_cast<double>(H); }

struct Field {
  const Tensor& t;
  int64_t H, W;
  double operator()(int64_t i, int64_t j, int c) const {
    return t.data_as<float>()[(i * W + ((j % W) + W) % W) * kNumChannels + c];
  }
};

enum {
  TMQ = 0,
  U850 = 1,
  V850 = 2,
  UBOT = 3,
  VBOT = 4,
  QREFHT = 5,
  PS = 6,
  PSL = 7,
  T200 = 8,
  T500 = 9,
  PRECT = 10,
  TS = 11,
  TREFHT = 12,
  Z1000 = 13,
  Z200 = 14,
  ZBOT = 15
};

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    mx += x[k] / n;
    my += y[k] / n;
  }
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    sxy += (x[k] - mx) * (y[k] - my);
    sxx += (x[k] - mx) * (x[k] - mx);
    syy += (y[k] - my) * (y[k] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

}  // namespace

TEST_CASE("detmath exp, log, sin, cos agree with libm to ~1e-15", "[io][synthetic]") {
  double worst_exp = 0, worst_log = 0, worst_sin = 0, worst_cos = 0;
  for (int k = -7000; k <= 7000; ++k) {
    const double x = k * 0.1 + 0.000123 * (k % 7);
    worst_exp = std::max(worst_exp, std::fabs(detmath::exp(x) / std::exp(x) - 1.0));
    const double s = k * 0.0029 + 0.0001 * (k % 13);  // |s| up to ~20 rad
    worst_sin = std::max(worst_sin, std::fabs(detmath::sin(s) - std::sin(s)));
    worst_cos = std::max(worst_cos, std::fabs(detmath::cos(s) - std::cos(s)));
  }
  for (int k = 1; k <= 20000; ++k) {
    const double x = std::ldexp(1.0 + (k % 97) / 97.0, k % 200 - 100);
    worst_log = std::max(worst_log, std::fabs(detmath::log(x) - std::log(x)) / std::max(1.0, std::fabs(std::log(x))));
  }
  INFO("exp " << worst_exp << " log " << worst_log << " sin " << worst_sin << " cos " << worst_cos);
  CHECK(worst_exp < 1e-15);  // measured: one ulp (2.2e-16)
  CHECK(worst_log < 1e-15);
  CHECK(worst_sin < 1e-15);
  CHECK(worst_cos < 1e-15);
  CHECK(detmath::exp(0.0) == 1.0);
  CHECK(detmath::log(1.0) == 0.0);
  CHECK(detmath::exp(-800.0) == 0.0);
  CHECK(std::isinf(detmath::exp(800.0)));
  CHECK(std::isnan(detmath::log(-1.0)));
}

TEST_CASE("sample dates step 163 x 3 hours from 1996-01-01 00 and name the files", "[io][synthetic]") {
  CHECK(sample_file_name(synthetic_sample_time(0)) == "data-1996-01-01-00-1.h5");
  CHECK(sample_file_name(synthetic_sample_time(1)) == "data-1996-01-21-03-1.h5");  // 163 = 20 days + 3 steps
  // Against a plain day-by-day calendar walk.
  int y = 1996, m = 1, d = 1, doy = 0;
  int64_t day = 0;
  auto month_len = [](int yy, int mm) {
    static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0;
    return n[mm - 1] + (mm == 2 && leap ? 1 : 0);
  };
  std::set<std::string> names;
  for (int64_t i = 0; i < 400; ++i) {
    const int64_t target = i * 163 / 8;
    while (day < target) {
      ++day;
      ++doy;
      if (++d > month_len(y, m)) {
        d = 1;
        if (++m > 12) {
          m = 1;
          ++y;
          doy = 0;
        }
      }
    }
    const SampleTime t = synthetic_sample_time(i);
    INFO("index " << i);
    REQUIRE(t.year == y);
    REQUIRE(t.month == m);
    REQUIRE(t.day == d);
    REQUIRE(t.day_of_year == doy);
    REQUIRE(t.step == static_cast<int>(i * 163 % 8));
    names.insert(sample_file_name(t));
  }
  CHECK(names.size() == 400);  // unique names
  CHECK_THROWS_WITH(synthetic_sample_time(-1), Catch::Contains("index"));
}

TEST_CASE("noleap 3-hourly steps from 2000-01-01 00:00 date the NetCDF history files", "[io][synthetic]") {
  // Against a day-by-day walk of 365-day years.
  static const int month_len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y = 2000, m = 1, d = 1, doy = 0;
  for (int64_t day = 0; day < 3 * 365 + 40; ++day) {
    for (int hh = 0; hh < 8; ++hh) {
      const int64_t step = day * 8 + hh;
      const SampleTime t = noleap_step_time(step);
      INFO("step " << step);
      REQUIRE(t.year == y);
      REQUIRE(t.month == m);
      REQUIRE(t.day == d);
      REQUIRE(t.day_of_year == doy);
      REQUIRE(t.step == hh);
      REQUIRE(noleap_step_index(y, m, d, 3 * hh) == step);
    }
    ++doy;
    if (++d > month_len[m - 1]) {
      d = 1;
      if (++m > 12) {
        m = 1;
        ++y;
        doy = 0;
      }
    }
  }
  CHECK(noleap_step_index(2001, 3, 1, 0) == noleap_step_index(2001, 2, 28, 21) + 1);  // no Feb 29
  CHECK_THROWS_WITH(noleap_step_index(2004, 2, 29, 0), Catch::Contains("noleap"));
  CHECK_THROWS_WITH(noleap_step_index(2000, 1, 1, 4), Catch::Contains("3-hourly"));
  CHECK_THROWS(noleap_step_index(1999, 12, 31, 21));
  CHECK_THROWS_WITH(noleap_step_time(-1), Catch::Contains("2000-01-01"));
  CHECK(history_file_name("cam.h2", noleap_step_time(0)) == "synthetic.cam.h2.2000-01-01-00000.nc");
  CHECK(history_file_name("labels", noleap_step_time(365 * 8 + 58 * 8 + 7)) == "synthetic.labels.2001-02-28-75600.nc");
}

TEST_CASE("generate(index, time): the weather of (seed, index) at another date", "[io][synthetic]") {
  const SyntheticGenerator gen(5, 48, 72);
  // generate(index) is generate(index, synthetic_sample_time(index)), byte for byte.
  const SyntheticSample a = gen.generate(3), b = gen.generate(3, synthetic_sample_time(3));
  CHECK(same_bytes(a.data, b.data));
  CHECK(same_bytes(a.labels, b.labels));
  CHECK(a.file_name == b.file_name);
  // Another date: the season and the diurnal cycle change the fields, deterministically.
  SampleTime summer = synthetic_sample_time(3);
  summer.day_of_year = (summer.day_of_year + 182) % 365;
  summer.step = (summer.step + 4) % 8;
  const SyntheticSample c = gen.generate(3, summer), c2 = gen.generate(3, summer);
  CHECK_FALSE(same_bytes(a.data, c.data));
  CHECK(same_bytes(c.data, c2.data));
  CHECK(same_bytes(derive_labels(c.data), c.labels));
  SampleTime bad = summer;
  bad.step = 8;
  CHECK_THROWS_WITH(gen.generate(3, bad), Catch::Contains("step 8"));
  CHECK_THROWS_WITH(gen.generate(-1, summer), Catch::Contains("index -1"));
}

TEST_CASE("the generator is a function of (seed, index, H, W)", "[io][synthetic]") {
  const SyntheticGenerator a(5, 48, 72), b(5, 48, 72), c(6, 48, 72);
  const SyntheticSample s0 = a.generate(3), s1 = b.generate(3), s2 = c.generate(3), s3 = a.generate(4);
  CHECK(same_bytes(s0.data, s1.data));
  CHECK(same_bytes(s0.labels, s1.labels));
  CHECK_FALSE(same_bytes(s0.data, s2.data));  // another seed
  CHECK_FALSE(same_bytes(s0.data, s3.data));  // another index
  CHECK(same_bytes(a.generate(3).data, s0.data));
  // The random weather does not depend on the grid: the same storms and rivers at another resolution.
  const SyntheticSample hi = SyntheticGenerator(5, 96, 144).generate(3);
  REQUIRE(hi.storms.size() == s0.storms.size());
  for (size_t k = 0; k < hi.storms.size(); ++k) {
    CHECK(hi.storms[k].lat == s0.storms[k].lat);
    CHECK(hi.storms[k].vmax == s0.storms[k].vmax);
  }
  REQUIRE(hi.rivers.size() == s0.rivers.size());
  // Labels are the rules applied to the fields.
  CHECK(same_bytes(derive_labels(s0.data), s0.labels));
  CHECK_THROWS_WITH(SyntheticGenerator(1, 4, 72), Catch::Contains("too small"));
}

TEST_CASE("rows run south to north: data, labels, land, topography, report and derive_labels", "[io][synthetic]") {
  const int64_t H = 96, W = 144;
  const SyntheticGenerator gen(1, H, W);
  const std::vector<float>& land = gen.land_fraction();
  const std::vector<float>& zs = gen.topography();
  REQUIRE(land.size() == static_cast<size_t>(H * W));
  // Row 0 (89.06S) is Antarctica: land under the 2600 m plateau, all the way round.
  for (int64_t j = 0; j < W; ++j) {
    REQUIRE(land[static_cast<size_t>(j)] > 0.99f);
    REQUIRE(zs[static_cast<size_t>(j)] > 2000.0f);
  }
  // The polar cold sits at both ends; the surface is warmest near the equator (rows H/2 - 1, H/2).
  bool checked = false;
  for (int64_t n = 0; n < 8 && !checked; ++n) {
    const SyntheticSample s = gen.generate(n);
    const Field f{s.data, H, W};
    double south = 0, north = 0, equator = 0;
    for (int64_t j = 0; j < W; ++j) {
      south += f(0, j, TS) / W;
      north += f(H - 1, j, TS) / W;
      equator += f(H / 2, j, TS) / W;
      // Over the Antarctic plateau the surface pressure is far below sea-level pressure.
      REQUIRE(f(0, j, PS) < 0.8 * f(0, j, PSL));
    }
    CHECK(equator > south + 20);
    CHECK(equator > north + 20);
    for (const DetectedCyclone& c : s.report.cyclones) {
      CHECK(c.lat == Approx(row_lat(c.row, H)).margin(1e-9));  // report rows count from the south too
      CHECK(c.lon == Approx(c.col * 360.0 / W).margin(1e-9));
    }
    // Labels are the rules applied to the south-first fields (the cyclone test below checks that labelled
    // cyclones turn counter-clockwise where row_lat > 0).
    int labelled = 0;
    for (const DetectedCyclone& c : s.report.cyclones) labelled += c.labelled;
    if (labelled > 0) {
      CHECK(same_bytes(derive_labels(s.data), s.labels));
      LabelReport again;
      derive_labels(s.data, LabelRules{}, &again);
      REQUIRE(again.cyclones.size() == s.report.cyclones.size());
      for (size_t k = 0; k < again.cyclones.size(); ++k) CHECK(again.cyclones[k].row == s.report.cyclones[k].row);
      checked = true;
    }
  }
  CHECK(checked);
}

TEST_CASE("the generated bytes are the same on every machine and compiler (golden checksum)", "[io][synthetic]") {
  // FNV-1a over the data and label bytes of samples 0..5 at 96x144 and 0..1 at 192x288, seed 3, rows taken from north
  // to south (the order of the files before 2026-12-06, when the API turned south-first: the value did not change, so
  // every value sits at the latitude it had, bit for bit). Recorded with GCC 12
  // (-O0, -O2, -O3 -march=native) and Clang 14 (-O2, -O3 -march=native), which all agree. A change here means the
  // model changed (update the value and the numbers in docs/data.md) or arithmetic that should be portable is not
  // (an FMA contraction, a libm call, an unspecified evaluation order): find out which before updating it.
  uint64_t h = 1469598103934665603ULL;
  auto fnv = [&](const Tensor& t) {
    const auto* c = static_cast<const unsigned char*>(t.data());
    const int64_t H = t.shape().h;
    const size_t row = t.nbytes() / static_cast<size_t>(H);
    for (int64_t r = H - 1; r >= 0; --r)
      for (size_t i = 0; i < row; ++i) {
        h ^= c[static_cast<size_t>(r) * row + i];
        h *= 1099511628211ULL;
      }
  };
  for (const auto& [H, W, N] : {std::tuple<int64_t, int64_t, int64_t>{96, 144, 6}, {192, 288, 2}}) {
    const SyntheticGenerator gen(3, H, W);
    for (int64_t i = 0; i < N; ++i) {
      const SyntheticSample s = gen.generate(i);
      fnv(s.data);
      fnv(s.labels);
    }
  }
  CHECK(h == 0x5ed147ef48898819ULL);
}

TEST_CASE("fields are in realistic ranges and physically consistent", "[io][synthetic]") {
  const int64_t H = 96, W = 144;
  const SyntheticGenerator gen(11, H, W);
  std::vector<double> tmq, trefht, u850, dpdy;
  int high_ground = 0;
  for (int64_t n = 0; n < 8; ++n) {
    const SyntheticSample s = gen.generate(n);
    const Field f{s.data, H, W};
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        INFO("sample " << n << " row " << i << " col " << j);
        REQUIRE(f(i, j, TMQ) > 0.5);
        REQUIRE(f(i, j, TMQ) < 90);
        REQUIRE(f(i, j, PSL) > 88000);
        REQUIRE(f(i, j, PSL) < 105500);
        REQUIRE(f(i, j, PS) <= f(i, j, PSL) + 0.01);
        REQUIRE(f(i, j, T500) > 225);
        REQUIRE(f(i, j, T500) < 280);
        REQUIRE(f(i, j, T200) > 205);
        REQUIRE(f(i, j, T200) < 240);
        REQUIRE(f(i, j, TS) > 195);
        REQUIRE(f(i, j, TS) < 320);
        REQUIRE(f(i, j, Z200) > 10500);
        REQUIRE(f(i, j, Z200) < 12700);
        REQUIRE(f(i, j, QREFHT) > 0);
        REQUIRE(f(i, j, QREFHT) < 0.03);
        REQUIRE(f(i, j, PRECT) >= 0);
        REQUIRE(f(i, j, PRECT) < 1e-4);
        REQUIRE(f(i, j, ZBOT) > 40);
        REQUIRE(f(i, j, ZBOT) < 80);
        REQUIRE((f(i, j, Z1000) > 0) == (f(i, j, PSL) > 1e5));  // hypsometric: Z1000 above sea level iff PSL > 1000 hPa
        if (f(i, j, PS) < 0.85 * f(i, j, PSL)) ++high_ground;
        tmq.push_back(f(i, j, TMQ));
        trefht.push_back(f(i, j, TREFHT));
        const double lat = row_lat(i, H);
        if (lat > 30 && lat < 60 && i > 0 && i + 1 < H) {  // geostrophic westerlies where pressure falls poleward
          u850.push_back(f(i, j, U850));
          dpdy.push_back(f(i + 1, j, PSL) - f(i - 1, j, PSL));  // row i + 1 is north of row i
        }
      }
    // Background sea-level pressure (away from the cyclones) in the spec's 97000..104000 Pa.
    std::vector<float> p;
    for (int64_t k = 0; k < H * W; ++k)
      if (s.labels.data_as<uint8_t>()[k] != 1) p.push_back(s.data.data_as<float>()[k * kNumChannels + PSL]);
    std::sort(p.begin(), p.end());
    CHECK(p[p.size() / 100] > 97000);
    CHECK(p[p.size() * 99 / 100] < 104000);
  }
  CHECK(high_ground > 0);             // mountains lower the surface pressure
  CHECK(pearson(tmq, trefht) > 0.8);  // moist air is warm (Clausius-Clapeyron)
  CHECK(pearson(u850, dpdy) < -0.5);  // u = -(1/(rho f)) dp/dy: westerly where p falls northward
}

TEST_CASE("labelled cyclones sit on pressure minima and turn cyclonically in each hemisphere", "[io][synthetic]") {
  const int64_t H = 192, W = 288;
  const SyntheticGenerator gen(2, H, W);
  int north = 0, south = 0, checked_decoys = 0;
  for (int64_t n = 0; n < 12 && (north < 2 || south < 2 || n < 6); ++n) {
    const SyntheticSample s = gen.generate(n);
    const Field f{s.data, H, W};
    const uint8_t* lab = s.labels.data_as<uint8_t>();
    for (const DetectedCyclone& c : s.report.cyclones) {
      if (!c.labelled) continue;
      INFO("sample " << n << " cyclone at " << c.lat << ", " << c.lon);
      const double lat0 = row_lat(c.row, H);
      double circulation = 0, count = 0;
      for (int64_t i = std::max<int64_t>(0, c.row - 12); i <= std::min(H - 1, c.row + 12); ++i)
        for (int64_t j = c.col - 12; j <= c.col + 12; ++j) {
          const int64_t jj = (j % W + W) % W;
          const double dy = (row_lat(i, H) - lat0) * kPi / 180 * kA;
          const double dx = (j - c.col) * 360.0 / W * kPi / 180 * kA * std::cos(row_lat(i, H) * kPi / 180);
          const double r = std::hypot(dx, dy);
          // The centre is the lowest pressure of its labelled disc.
          if (lab[i * W + jj] == 1 && r < c.radius_km) REQUIRE(f(i, jj, PSL) >= f(c.row, c.col, PSL));
          if (r > 80 && r < 400) {  // counter-clockwise component of the lowest-level wind
            circulation += (-dy * f(i, jj, UBOT) + dx * f(i, jj, VBOT)) / r;
            count += 1;
          }
        }
      circulation /= count;
      REQUIRE(c.deficit_pa >= 500);
      REQUIRE(c.warm_core_k >= 1.0);
      REQUIRE(f(c.row, c.col, TMQ) > 30);  // moist core
      if (c.lat > 0) {
        CHECK(circulation > 10);  // NH: counter-clockwise
        ++north;
      } else {
        CHECK(circulation < -10);  // SH: clockwise
        ++south;
      }
      // A placed (non-decoy) storm lies within ~1.5 grid cells of the detected centre.
      double best = 1e9;
      for (const SyntheticStorm& st : s.storms)
        if (!st.decoy) {
          const double dy = (st.lat - c.lat) * kPi / 180 * kA;
          double dl = std::fmod(st.lon - c.lon + 540.0, 360.0) - 180.0;
          const double dx = dl * kPi / 180 * kA * std::cos(c.lat * kPi / 180);
          best = std::min(best, std::hypot(dx, dy));
        }
      CHECK(best < 1.5 * 180.0 / H * kPi / 180 * kA);
    }
    // Decoy lows (weak, cold-core) are never labelled as cyclones.
    for (const SyntheticStorm& st : s.storms)
      if (st.decoy) {
        const int64_t i = std::clamp<int64_t>(static_cast<int64_t>((st.lat + 90) * H / 180), 0, H - 1);
        const int64_t j = static_cast<int64_t>(std::lround(st.lon * W / 360)) % W;
        CHECK(lab[i * W + j] != 1);
        ++checked_decoys;
      }
  }
  CHECK(north >= 2);
  CHECK(south >= 2);
  CHECK(checked_decoys > 0);
}

TEST_CASE("atmospheric rivers are long, narrow, moist and carry strong vapour transport", "[io][synthetic]") {
  const int64_t H = 192, W = 288;
  const SyntheticGenerator gen(4, H, W);
  const LabelRules rules;
  double ar_tmq = 0, ar_n = 0, bg_tmq = 0, bg_n = 0;
  int rivers = 0;
  for (int64_t n = 0; n < 6; ++n) {
    const SyntheticSample s = gen.generate(n);
    const Field f{s.data, H, W};
    const uint8_t* lab = s.labels.data_as<uint8_t>();
    for (const DetectedRiver& r : s.report.rivers)
      if (r.labelled) {
        ++rivers;
        CHECK(r.length_km >= 2000);
        CHECK(r.width_km <= 1000);
      }
    for (int64_t i = 0; i < H; ++i) {
      const double alat = std::fabs(row_lat(i, H));
      for (int64_t j = 0; j < W; ++j) {
        if (lab[i * W + j] == 2) {
          const double ivt = f(i, j, TMQ) * std::hypot(f(i, j, U850), f(i, j, V850));
          REQUIRE(ivt >= rules.ar_ivt);
          REQUIRE(alat >= rules.ar_min_lat);
          ar_tmq += f(i, j, TMQ);
          ar_n += 1;
        } else if (lab[i * W + j] == 0 && alat >= 20 && alat <= 60) {
          bg_tmq += f(i, j, TMQ);
          bg_n += 1;
        }
      }
    }
  }
  REQUIRE(rivers >= 6);
  INFO("mean TMQ in rivers " << ar_tmq / ar_n << ", background 20..60 degrees " << bg_tmq / bg_n);
  CHECK(ar_tmq / ar_n > 30);
  CHECK(ar_tmq / ar_n > 1.8 * bg_tmq / bg_n);
}

TEST_CASE("class fractions over 40 samples at 96x144 are close to DeepCAM's", "[io][synthetic]") {
  // Targets (DeepCAM train.py): background 98.63%, TC 0.046%, AR 1.33%. Band documented in docs/data.md.
  const SyntheticGenerator gen(1, 96, 144);
  int64_t count[3] = {0, 0, 0};
  for (int64_t n = 0; n < 40; ++n) {
    const Tensor l = gen.generate(n).labels;
    for (int64_t p = 0; p < l.numel(); ++p) ++count[l.data_as<uint8_t>()[p]];
  }
  const double total = static_cast<double>(count[0] + count[1] + count[2]);
  const double bg = count[0] / total, tc = count[1] / total, ar = count[2] / total;
  INFO("background " << bg << " TC " << tc << " AR " << ar);
  CHECK(bg > 0.980);
  CHECK(bg < 0.992);
  CHECK(tc > 0.0002);
  CHECK(tc < 0.0010);
  CHECK(ar > 0.008);
  CHECK(ar < 0.018);
}

TEST_CASE("write_sample: DeepCAM layout read back exactly, same bytes for the same sample", "[io][synthetic]") {
  test::TempDir t;
  const SyntheticSample s = SyntheticGenerator(3, 32, 48).generate(2);
  write_sample(t.file("a.h5"), s.data, s.labels);
  write_sample(t.file("b.h5"), s.data, s.labels);
  CHECK(slurp(t.file("a.h5")) == slurp(t.file("b.h5")));

  const SampleInfo info = inspect_sample(t.file("a.h5"));
  CHECK(info.layout == SampleLayout::deepcam);
  CHECK(info.height == 32);
  CHECK(info.width == 48);
  CHECK(info.channels == 16);
  CHECK(info.data_type == "float32");
  CHECK(info.labels_dataset == "climate/labels_0");
  CHECK(info.labels_type == "uint8");
  const Sample r = read_sample(t.file("a.h5"));
  CHECK(same_bytes(r.data, s.data));
  for (int64_t p = 0; p < 32 * 48; ++p) REQUIRE(r.labels.get_flat(p) == s.labels.get_flat(p));
  CHECK(same_bytes(derive_labels(r.data), s.labels));  // the labels follow from the file's fields

  SECTION("gzip and int32 labels round-trip too") {
    SampleWriteOptions o;
    o.gzip_level = 4;
    o.attributes = {{"seed", "3"}};
    write_sample(t.file("z.h5"), s.data, s.labels.cast(DType::i32), o);
    const Sample z = read_sample(t.file("z.h5"));
    CHECK(same_bytes(z.data, s.data));
    CHECK(inspect_sample(t.file("z.h5")).labels_type == "uint8");
    CHECK(std::filesystem::file_size(t.file("z.h5")) < std::filesystem::file_size(t.file("a.h5")));
  }
  SECTION("bad labels, shapes and dtypes are refused, naming the file, and leave nothing behind") {
    Tensor bad = s.labels.clone();
    bad.set_flat(7, 3);
    CHECK_THROWS_WITH(write_sample(t.file("bad.h5"), s.data, bad),
                      Catch::Contains("bad.h5") && Catch::Contains("label 3") && Catch::Contains("row 0, column 7"));
    CHECK_FALSE(std::filesystem::exists(t.file("bad.h5")));
    const Tensor small = Tensor::zeros(Shape{1, 16, 48, 1}, DType::u8, Device::cpu);
    CHECK_THROWS_WITH(write_sample(t.file("bad.h5"), s.data, small), Catch::Contains("do not match"));
    CHECK_THROWS_WITH(write_sample(t.file("bad.h5"), s.data.cast(DType::f64), s.labels), Catch::Contains("float32"));
    SampleWriteOptions o;
    o.gzip_level = 12;
    CHECK_THROWS_WITH(write_sample(t.file("bad.h5"), s.data, s.labels, o), Catch::Contains("gzip level 12"));
    CHECK_FALSE(std::filesystem::exists(t.file("bad.h5")));
  }
}
