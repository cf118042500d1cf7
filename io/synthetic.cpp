// The synthetic climate generator (io/synthetic.h; model in docs/data.md "Synthetic data").
//
// Units: SI throughout (Pa, K, m/s, kg/kg, kg/m^2, m) except where a name says otherwise (_deg, _km, _hpa).
// Angles in radians unless _deg. Local distances on the sphere use the plane tangent at the pixel's latitude:
// dx = a cos(lat) dlon, dy = a dlat (good to a few per cent within the ~2000 km a feature reaches).
#include "io/synthetic.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <queue>

#include "engine/check.h"
#include "engine/philox.h"
#include "io/hdf5_sample.h"

// The build already compiles with -ffp-contract=off (CMakeLists.txt); this keeps fused multiply-adds out of this
// file's arithmetic in builds without that flag too (with -march=native on an FMA machine the bytes differ otherwise).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace climseg::io {

// ---- deterministic elementary functions ------------------------------------------------------------------------
namespace detmath {

namespace {
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // fdlibm's split of ln 2: k * kLn2Hi is exact
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kInvLn2 = 1.44269504088896338700e+00;
constexpr double kPio2_1 = 1.57079632673412561417e+00;  // fdlibm's pi/2 in three parts (33 + 33 + rest bits)
constexpr double kPio2_2 = 6.07710050630396597660e-11;
constexpr double kPio2_3 = 2.02226624879595063154e-21;
constexpr double kTwoOverPi = 6.36619772367581382433e-01;

// 2^k for -1022 <= k <= 1023, from its bits.
double pow2i(int k) { return std::bit_cast<double>(static_cast<uint64_t>(k + 1023) << 52); }

// Taylor polynomials in fixed Horner order; truncation error below 1e-17 for |r| <= pi/4.
double sin_poly(double r) {
  const double z = r * r;
  double p = 1.0 / 355687428096000.0;  // 1/17!
  p = p * z - 1.0 / 1307674368000.0;
  p = p * z + 1.0 / 6227020800.0;
  p = p * z - 1.0 / 39916800.0;
  p = p * z + 1.0 / 362880.0;
  p = p * z - 1.0 / 5040.0;
  p = p * z + 1.0 / 120.0;
  p = p * z - 1.0 / 6.0;
  return r + r * (z * p);
}
double cos_poly(double r) {
  const double z = r * r;
  double p = -1.0 / 6402373705728000.0;  // -1/18!
  p = p * z + 1.0 / 20922789888000.0;
  p = p * z - 1.0 / 87178291200.0;
  p = p * z + 1.0 / 479001600.0;
  p = p * z - 1.0 / 3628800.0;
  p = p * z + 1.0 / 40320.0;
  p = p * z - 1.0 / 720.0;
  p = p * z + 1.0 / 24.0;
  p = p * z - 0.5;
  return 1.0 + z * p;
}
// x = k * pi/2 + r with |r| <= pi/4 (Cody-Waite; k * kPio2_1 exact for |k| < 2^20).
double reduce_pio2(double x, int64_t& k) {
  const double kd = std::floor(x * kTwoOverPi + 0.5);
  k = static_cast<int64_t>(kd);
  return ((x - kd * kPio2_1) - kd * kPio2_2) - kd * kPio2_3;
}
}  // namespace

double exp(double x) {
  if (x != x) return x;
  if (x > 709.0) return std::numeric_limits<double>::infinity();
  if (x < -708.0) return 0.0;  // flushes the subnormal range: irrelevant for the generator
  const double kd = std::floor(x * kInvLn2 + 0.5);
  const double r = (x - kd * kLn2Hi) - kd * kLn2Lo;  // |r| <= 0.347
  double p = 1.0 / 6227020800.0;                     // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int k = static_cast<int>(kd);
  if (k < -1021) return p * pow2i(k + 60) * pow2i(-60);
  if (k > 1023) return p * pow2i(k - 1) * 2.0;
  return p * pow2i(k);
}

double log(double x) {
  if (x != x || x < 0) return std::numeric_limits<double>::quiet_NaN();
  if (x == 0) return -std::numeric_limits<double>::infinity();
  if (x == std::numeric_limits<double>::infinity()) return x;
  int e = 0;
  if (x < 2.2250738585072014e-308) {  // subnormal: scale into the normal range first
    x *= pow2i(60);
    e = -60;
  }
  const uint64_t bits = std::bit_cast<uint64_t>(x);
  e += static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  double m = std::bit_cast<double>((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);  // [1, 2)
  if (m > 1.4142135623730951) {
    m *= 0.5;
    ++e;
  }
  // log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: the series to s^23 is exact to 1e-19.
  const double s = (m - 1.0) / (m + 1.0);
  const double z = s * s;
  double p = 1.0 / 23.0;
  for (int n = 21; n >= 3; n -= 2) p = p * z + 1.0 / n;
  const double lm = 2.0 * s + 2.0 * s * (z * p);
  const double ed = e;
  return ed * kLn2Hi + (ed * kLn2Lo + lm);
}

double sin(double x) {
  int64_t k = 0;
  const double r = reduce_pio2(x, k);
  switch (k & 3) {
    case 0:
      return sin_poly(r);
    case 1:
      return cos_poly(r);
    case 2:
      return -sin_poly(r);
    default:
      return -cos_poly(r);
  }
}

double cos(double x) {
  int64_t k = 0;
  const double r = reduce_pio2(x, k);
  switch (k & 3) {
    case 0:
      return cos_poly(r);
    case 1:
      return -sin_poly(r);
    case 2:
      return -cos_poly(r);
    default:
      return sin_poly(r);
  }
}

}  // namespace detmath

namespace {

namespace dm = detmath;

constexpr double kPi = 3.14159265358979323846;
constexpr double kDeg = kPi / 180.0;
constexpr double kEarthRadius = 6.371e6;  // m
constexpr double kOmega = 7.292e-5;       // s^-1
constexpr double kGravity = 9.80665;      // m s^-2
constexpr double kRd = 287.04;            // J kg^-1 K^-1
constexpr double kRdOverG = kRd / kGravity;
constexpr double kRho = 1.2;  // kg m^-3, near-surface air (geostrophic and gradient winds)
// Regularised Coriolis parameter 1/f -> f / (f^2 + f0^2): geostrophic balance poleward of ~15 degrees, winds
// fading to zero at the equator instead of blowing up.
const double kF0 = 2.0 * kOmega * 0.2079116908177593;  // 2 Omega sin(12 degrees)

enum Ch : int {
  kTMQ,
  kU850,
  kV850,
  kUBOT,
  kVBOT,
  kQREFHT,
  kPS,
  kPSL,
  kT200,
  kT500,
  kPRECT,
  kTS,
  kTREFHT,
  kZ1000,
  kZ200,
  kZBOT
};

double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }
double smoothstep(double x) {
  x = clamp01(x);
  return x * x * (3.0 - 2.0 * x);
}
// Longitude difference wrapped into [-pi, pi).
double wrap_pi(double d) { return d - 2.0 * kPi * std::floor((d + kPi) / (2.0 * kPi)); }
double gauss(double x, double w) {
  const double t = x / w;
  return dm::exp(-t * t);
}

// ---- randomness ---------------------------------------------------------------------------------------------
// One Philox stream per (purpose, sample): streams never overlap, so adding draws to one purpose changes nothing
// else. The planet's streams sit above every sample's (index < 2^56). Draws are consumed in order, so never two in
// one expression or argument list (C++ leaves their order unspecified: GCC and Clang differ); one per statement
// or declarator.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  static uint64_t sample_stream(int64_t index, uint64_t purpose) {
    return (static_cast<uint64_t>(index) << 4) | purpose;
  }
  static uint64_t planet_stream(uint64_t purpose) { return 0xF000000000000000ULL | purpose; }

  uint32_t u32() { return philox_u32(seed_, stream_, n_++); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() {
    const uint64_t a = u32() >> 5, b = u32() >> 6;
    return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b)) * (1.0 / 9007199254740992.0);
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int below(int n) { return std::min(n - 1, static_cast<int>(uniform() * n)); }
  double sign() { return uniform() < 0.5 ? -1.0 : 1.0; }
  // Index drawn from cumulative probabilities (the last entry is taken as 1).
  template <size_t N>
  int pick(const double (&cdf)[N]) {
    const double u = uniform();
    for (size_t i = 0; i + 1 < N; ++i)
      if (u < cdf[i]) return static_cast<int>(i);
    return static_cast<int>(N - 1);
  }

 private:
  uint64_t seed_, stream_;
  uint64_t n_ = 0;
};

// kSeqEvents and kSeqModes are SyntheticSequence's: indexed by a block of 64 steps and by a day, not by a sample.
enum Purpose : uint64_t { kModes = 0, kStorms = 1, kLows = 2, kRivers = 3, kPlumes = 4, kSeqEvents = 5, kSeqModes = 6 };
enum PlanetPurpose : uint64_t { kContinents = 0, kRidges = 1 };

// ---- the grid ---------------------------------------------------------------------------------------------
// North-first: row i at latitude 90 - (i + 0.5) 180 / H, as the model was first written. Everything inside this file
// computes in this orientation (iteration orders, tie-breaks and sums stay as they were, so the values are
// unchanged); the public API is south-first and flips rows at its boundary (flip_rows).
struct Grid {
  int64_t H = 0, W = 0;
  double dlat = 0, dlon = 0;  // radians
  std::vector<double> lat, lat_deg, sinlat, coslat;
  std::vector<double> lon, lon_deg, sinlon, coslon;
  std::vector<double> cell_km2;  // area of a cell in row i

  Grid(int64_t h, int64_t w) : H(h), W(w) {
    dlat = kPi / static_cast<double>(H);
    dlon = 2.0 * kPi / static_cast<double>(W);
    for (int64_t i = 0; i < H; ++i) {
      const double d = 90.0 - (static_cast<double>(i) + 0.5) * 180.0 / static_cast<double>(H);
      lat_deg.push_back(d);
      lat.push_back(d * kDeg);
      sinlat.push_back(dm::sin(d * kDeg));
      coslat.push_back(dm::cos(d * kDeg));
      cell_km2.push_back(kEarthRadius * kEarthRadius * 1e-6 * dlat * dlon * coslat.back());
    }
    for (int64_t j = 0; j < W; ++j) {
      const double d = static_cast<double>(j) * 360.0 / static_cast<double>(W);
      lon_deg.push_back(d);
      lon.push_back(d * kDeg);
      sinlon.push_back(dm::sin(d * kDeg));
      coslon.push_back(dm::cos(d * kDeg));
    }
  }

  // Calls fn(i, j, dx, dy, r) (metres, in the tangent plane at row i) for every pixel within `radius` of the point
  // (lat0, lon0), row by row, columns in increasing index from the window's western edge.
  template <class Fn>
  void for_each_within(double lat0, double lon0, double radius, Fn&& fn) const {
    const double dang = radius / kEarthRadius;
    const double top = (kPi / 2 - (lat0 + dang)) / dlat - 0.5, bottom = (kPi / 2 - (lat0 - dang)) / dlat - 0.5;
    const int64_t i0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(top)));
    const int64_t i1 = std::min<int64_t>(H - 1, static_cast<int64_t>(std::ceil(bottom)));
    for (int64_t i = i0; i <= i1; ++i) {
      const double dy = kEarthRadius * (lat[i] - lat0);
      if (dy * dy > radius * radius) continue;
      const double c = coslat[i];
      int64_t j0 = 0, n = W;
      if (c * kPi > dang) {  // the window is narrower than the globe
        const double half = dang / c;
        j0 = static_cast<int64_t>(std::floor((lon0 - half) / dlon));
        n = std::min<int64_t>(W, static_cast<int64_t>(std::ceil((lon0 + half) / dlon)) - j0 + 1);
      }
      for (int64_t t = 0; t < n; ++t) {
        const int64_t j = ((j0 + t) % W + W) % W;
        const double dx = kEarthRadius * c * wrap_pi(lon[j] - lon0);
        const double r2 = dx * dx + dy * dy;
        if (r2 <= radius * radius) fn(i, j, dx, dy, std::sqrt(r2));
      }
    }
  }
};

// ---- the planet: continents and mountains, fixed by the seed --------------------------------------------------
struct Blob {  // amp * exp(-(dlat/wlat)^2) * exp(-(dlon/wlon)^2), dlon wrapped
  double lat, lon, wlat, wlon, amp;
};

struct Wave {  // amp * cos(m lon + pm) * cos(n lat + pn): low-order noise that makes coastlines irregular
  double amp, pm, pn;
  int m, n;
};

struct Ridge {  // amp * exp(-(along/half_length)^2 - (across/half_width)^2), axis at `angle` from east
  double lat, lon, angle, half_length, half_width, amp;  // radians, radians, radians, m, m, m
};

struct Planet {
  std::vector<Blob> continents;
  std::vector<Ridge> ridges;
  std::vector<Wave> waves;

  explicit Planet(uint64_t seed) {
    Rng r(seed, Rng::planet_stream(kContinents));
    for (int b = 0; b < 7; ++b) {  // continental cores
      Blob c;
      c.lat = r.uniform(-50, 65) * kDeg;
      c.lon = r.uniform(0, 360) * kDeg;
      c.wlat = r.uniform(12, 26) * kDeg;
      c.wlon = c.wlat * r.uniform(0.7, 1.6) / std::max(0.35, dm::cos(c.lat));
      c.amp = 1.0;
      continents.push_back(c);
    }
    for (int b = 0; b < 14; ++b) {  // peninsulas and islands near the cores, seas and bays
      const Blob& host = continents[static_cast<size_t>(r.below(7))];
      Blob c;
      c.lat = std::clamp(host.lat + r.uniform(-1.3, 1.3) * host.wlat, -80 * kDeg, 80 * kDeg);
      c.lon = host.lon + r.uniform(-1.3, 1.3) * host.wlon;
      c.wlat = r.uniform(4, 11) * kDeg;
      c.wlon = c.wlat * r.uniform(0.6, 1.8) / std::max(0.35, dm::cos(c.lat));
      c.amp = b % 3 == 2 ? -0.8 : 0.8;
      continents.push_back(c);
    }
    for (int k = 0; k < 10; ++k) {
      Wave w;
      w.m = 2 + r.below(9);
      w.n = 2 + r.below(9);
      w.pm = r.uniform(0, 2 * kPi);
      w.pn = r.uniform(0, 2 * kPi);
      w.amp = r.uniform(0.05, 0.12);
      waves.push_back(w);
    }
    Rng q(seed, Rng::planet_stream(kRidges));
    for (int b = 0; b < 8; ++b) {  // mountain ranges on the continental cores, any orientation
      const Blob& host = continents[static_cast<size_t>(b % 7)];
      Ridge m;
      m.lat = host.lat + q.uniform(-0.6, 0.6) * host.wlat;
      m.lon = host.lon + q.uniform(-0.6, 0.6) * host.wlon;
      m.angle = q.uniform(0, kPi);
      m.half_length = q.uniform(800e3, 2500e3);
      m.half_width = q.uniform(250e3, 600e3);
      m.amp = q.uniform(1000, 4500);
      ridges.push_back(m);
    }
  }

  static double blob(const Blob& b, double lat, double lon) {
    return b.amp * gauss(lat - b.lat, b.wlat) * gauss(wrap_pi(lon - b.lon), b.wlon);
  }
  static double antarctic(double lat) { return smoothstep((-lat / kDeg - 68.0) / 8.0); }
  static double land_from_raw(double raw) { return smoothstep((raw - 0.4) / 0.2); }

  double land(double lat, double lon) const {
    double raw = 1.3 * antarctic(lat);
    for (const Blob& b : continents) raw += blob(b, lat, lon);
    for (const Wave& w : waves) raw += w.amp * dm::cos(w.m * lon + w.pm) * dm::cos(w.n * lat + w.pn);
    return land_from_raw(raw);
  }

  // On the grid, separably: per blob or wave a row factor and a column factor.
  void rasterize(const Grid& g, std::vector<float>& land, std::vector<float>& zs) const {
    const size_t HW = static_cast<size_t>(g.H * g.W);
    std::vector<double> raw(HW), height(HW, 150.0);
    for (int64_t i = 0; i < g.H; ++i)
      for (int64_t j = 0; j < g.W; ++j) raw[static_cast<size_t>(i * g.W + j)] = 1.3 * antarctic(g.lat[i]);
    std::vector<double> col(static_cast<size_t>(g.W));
    auto add = [&](auto row_factor, std::vector<double>& f) {
      for (int64_t i = 0; i < g.H; ++i) {
        const double rf = row_factor(g.lat[static_cast<size_t>(i)]);
        if (rf == 0) continue;
        double* row = f.data() + i * g.W;
        for (int64_t j = 0; j < g.W; ++j) row[j] += rf * col[static_cast<size_t>(j)];
      }
    };
    auto add_blob = [&](const Blob& b, std::vector<double>& f) {
      for (int64_t j = 0; j < g.W; ++j) col[static_cast<size_t>(j)] = gauss(wrap_pi(g.lon[j] - b.lon), b.wlon);
      add([&](double lat) { return b.amp * gauss(lat - b.lat, b.wlat); }, f);
    };
    for (const Blob& b : continents) add_blob(b, raw);
    for (const Wave& w : waves) {
      for (int64_t j = 0; j < g.W; ++j) col[static_cast<size_t>(j)] = dm::cos(w.m * g.lon[j] + w.pm);
      add([&](double lat) { return w.amp * dm::cos(w.n * lat + w.pn); }, raw);
    }
    for (const Ridge& m : ridges) {
      const double ca = dm::cos(m.angle), sa = dm::sin(m.angle);
      g.for_each_within(m.lat, m.lon, 3.0 * m.half_length, [&](int64_t i, int64_t j, double dx, double dy, double) {
        const double along = (dx * ca + dy * sa) / m.half_length, across = (dy * ca - dx * sa) / m.half_width;
        height[static_cast<size_t>(i * g.W + j)] += m.amp * dm::exp(-along * along - across * across);
      });
    }
    land.resize(HW);
    zs.resize(HW);
    for (int64_t i = 0; i < g.H; ++i) {
      const double plateau = 2600.0 * smoothstep((-g.lat_deg[static_cast<size_t>(i)] - 68.0) / 14.0);
      for (int64_t j = 0; j < g.W; ++j) {
        const size_t p = static_cast<size_t>(i * g.W + j);
        const double l = land_from_raw(raw[p]);
        land[p] = static_cast<float>(l);
        zs[p] = static_cast<float>(l * (height[p] + plateau));
      }
    }
  }
};

// ---- the sample's weather: parameters ------------------------------------------------------------------------
// A zonal-wave mode: G(lat) = exp(-((lat - lat0)/w)^2), B = G cos(lat) (vanishes at the poles), times
// cos(m lon + phase). Pressure amplitude ap (Pa; 0 for a moisture/temperature-only mode); temperature and
// relative-humidity responses t_c cos(.) + t_s sin(.), r_c cos(.) + r_s sin(.).
struct Mode {
  double lat0, w, phase;
  int m;
  double ap, t_c, t_s, r_c, r_s;
};

struct Vortex {
  SyntheticStorm s;
  double rw_km, t500_k, dq, rq_km, rain, rp_km, rout_km;
  // Radial profile at kProfileStep spacing: gradient wind (850 hPa) and the pressure perturbation that balances it.
  std::vector<double> wind, pressure;
};
constexpr double kProfileStep = 2e3;  // m

struct Plume {
  SyntheticRiver r;
  std::vector<double> lat, lon;  // polyline, radians (lon unwrapped)
  double rain = 0;
};

// Season: +1 at the northern summer solstice (day 172), -1 at the winter one.
double season_of(const SampleTime& t) { return dm::cos(2.0 * kPi * (t.day_of_year - 171.0) / 365.25); }

double great_circle_km(double lat1, double lon1, double lat2, double lon2) {
  // Chord length (no inverse trig needed); within 1% of the arc below 2500 km.
  const double x1 = dm::cos(lat1) * dm::cos(lon1), y1 = dm::cos(lat1) * dm::sin(lon1), z1 = dm::sin(lat1);
  const double x2 = dm::cos(lat2) * dm::cos(lon2), y2 = dm::cos(lat2) * dm::sin(lon2), z2 = dm::sin(lat2);
  const double dx = x1 - x2, dy = y1 - y2, dz = z1 - z2;
  return kEarthRadius * 1e-3 * std::sqrt(dx * dx + dy * dy + dz * dz);
}

std::vector<Mode> draw_modes(Rng& r, double season) {
  std::vector<Mode> modes;
  for (int k = 0; k < 12; ++k) {  // extratropical pressure waves, six per hemisphere
    const double h = k % 2 == 0 ? 1.0 : -1.0;
    const double winter = std::max(0.0, -season * h);
    Mode m;
    const double alat = r.uniform(28, 72);
    m.lat0 = h * alat * kDeg;
    m.w = r.uniform(7, 14) * kDeg;
    m.m = 1 + r.below(7);
    m.phase = r.uniform(0, 2 * kPi);
    const double sign = r.sign();
    m.ap = sign * r.uniform(300, 1100) * (0.6 + 0.4 * (alat - 28) / 44) * (1.0 + 0.35 * winter);
    // Lows are cold and moist, a quarter-ish wave west (temperature) and east (moisture) of the pressure.
    const double ct = r.uniform(0.15, 0.35) * m.ap / 100.0, dt = r.uniform(0.2, 0.6) * kPi / 2;
    m.t_c = ct * dm::cos(dt);
    m.t_s = ct * dm::sin(dt);
    const double cr = -r.uniform(0.04, 0.08) * m.ap / 1000.0, dr = r.uniform(0.1, 0.4) * kPi / 2;
    m.r_c = cr * dm::cos(dr);
    m.r_s = -cr * dm::sin(dr);
    modes.push_back(m);
  }
  for (int k = 0; k < 6; ++k) {  // tropical and large-scale temperature/moisture anomalies, no pressure
    Mode m;
    m.lat0 = r.uniform(-25, 25) * kDeg;
    m.w = r.uniform(8, 20) * kDeg;
    m.m = 1 + r.below(5);
    m.phase = r.uniform(0, 2 * kPi);
    m.ap = 0;
    const double t_sign = r.sign();
    m.t_c = t_sign * r.uniform(0.3, 1.2);
    m.t_s = 0;
    const double r_sign = r.sign();
    m.r_c = r_sign * r.uniform(0.03, 0.1);
    m.r_s = 0;
    modes.push_back(m);
  }
  return modes;
}

std::vector<Mode> draw_modes(uint64_t seed, int64_t index, double season) {
  Rng r(seed, Rng::sample_stream(index, kModes));
  return draw_modes(r, season);
}

// The wind profile of Holland et al. (2010): v = vmax [(rm/r)^B exp(1 - (rm/r)^B)]^x, x = 0.5 inside the radius of
// maximum wind and falling linearly to x_outer at 500 km (broader outer winds than Holland 1980), faded to zero
// between 0.6 and 1 rout. The sea-level pressure is integrated inward from rout in gradient-wind balance,
// dp/dr = rho (v^2/r + |f| v) (trapezoids at 2 km). With deficit_pa > 0, vmax is chosen so that the central deficit
// is deficit_pa (the balance is quadratic in vmax); otherwise v.s.vmax is used and the deficit follows.
void make_profile(Vortex& v, double deficit_pa) {
  const double rm = v.s.rmax_km * 1e3, rout = v.rout_km * 1e3, b = v.s.holland_b, xo = v.s.outer_x;
  const double f = std::fabs(2.0 * kOmega * dm::sin(v.s.lat * kDeg));
  const size_t n = static_cast<size_t>(rout / kProfileStep) + 2;
  std::vector<double> shape(n, 0.0);
  for (size_t k = 1; k < n; ++k) {
    const double r = static_cast<double>(k) * kProfileStep;
    const double x = r <= rm ? 0.5 : std::max(xo, 0.5 - (0.5 - xo) * (r - rm) / std::max(500e3 - rm, 1e3));
    const double q = dm::exp(b * dm::log(rm / r));  // (rm/r)^B
    const double h = q * dm::exp(1.0 - q);
    const double taper = 1.0 - smoothstep((r - 0.6 * rout) / (0.4 * rout));
    shape[k] = h > 0 ? taper * dm::exp(x * dm::log(h)) : 0.0;
  }
  if (deficit_pa > 0) {
    double i2 = 0, i1 = 0;  // deficit = rho (vmax^2 i2 + |f| vmax i1)
    for (size_t k = 0; k + 1 < n; ++k) {
      const double rmid = (static_cast<double>(k) + 0.5) * kProfileStep, smid = 0.5 * (shape[k] + shape[k + 1]);
      i2 += smid * smid / rmid * kProfileStep;
      i1 += smid * kProfileStep;
    }
    const double c = deficit_pa / kRho;
    v.s.vmax = (-f * i1 + std::sqrt(f * f * i1 * i1 + 4.0 * i2 * c)) / (2.0 * i2);
  }
  v.wind.assign(n, 0.0);
  v.pressure.assign(n, 0.0);
  for (size_t k = 0; k < n; ++k) v.wind[k] = v.s.vmax * shape[k];
  for (size_t k = n - 1; k-- > 0;) {
    const double rmid = (static_cast<double>(k) + 0.5) * kProfileStep, vmid = 0.5 * (v.wind[k] + v.wind[k + 1]);
    v.pressure[k] = v.pressure[k + 1] - kRho * (vmid * vmid / rmid + f * vmid) * kProfileStep;
  }
  v.s.deficit_hpa = -v.pressure[0] / 100.0;
}

// Places up to `n` vortices by rejection: over ocean (land fraction <= max_land at the centre) and at least
// `min_sep_km` from every vortex already placed (including `others`).
template <class DrawFn>
void place_vortices(Rng& r, int n, const Planet& planet, double max_land, double min_sep_km,
                    const std::vector<Vortex>& others, std::vector<Vortex>& out, DrawFn&& draw_position) {
  for (int k = 0; k < n; ++k) {
    for (int attempt = 0; attempt < 30; ++attempt) {
      double lat = 0, lon = 0;
      draw_position(lat, lon);
      bool ok = planet.land(lat, lon) <= max_land;
      for (const std::vector<Vortex>* list : {&others, static_cast<const std::vector<Vortex>*>(&out)})
        for (const Vortex& v : *list)
          if (ok && great_circle_km(lat, lon, v.s.lat * kDeg, v.s.lon * kDeg) < min_sep_km) ok = false;
      if (!ok) continue;
      Vortex v{};
      v.s.lat = lat / kDeg;
      v.s.lon = lon / kDeg;
      out.push_back(v);
      break;
    }
  }
}

std::vector<Vortex> draw_storms(uint64_t seed, int64_t index, double season, const Planet& planet) {
  Rng r(seed, Rng::sample_stream(index, kStorms));
  static constexpr double cdf[] = {0.15, 0.35, 0.57, 0.75, 0.88, 0.96, 1.0};  // 0..6 cyclones, mean 2.3
  const int n = r.pick(cdf);
  std::vector<Vortex> out;
  place_vortices(r, n, planet, 0.3, 1500.0, {}, out, [&](double& lat, double& lon) {
    const double h = r.uniform() < 0.5 + 0.3 * season ? 1.0 : -1.0;  // more in the summer hemisphere
    lat = h * r.uniform(6, 33) * kDeg;
    lon = r.uniform(0, 360) * kDeg;
  });
  for (Vortex& v : out) {
    const double u = r.uniform();
    v.s.holland_b = r.uniform(1.2, 1.8);
    v.s.rmax_km = r.uniform(30, 80);
    v.s.outer_x = r.uniform(0.4, 0.5);
    v.rout_km = 1200;
    make_profile(v, (15.0 + 65.0 * u * u) * 100.0);  // deficit 15..80 hPa, most storms weak
    v.s.core_k = 1.0 + 0.1 * v.s.deficit_hpa;        // warm core at 200 hPa
    v.t500_k = 0.5 + 0.05 * v.s.deficit_hpa;
    v.rw_km = r.uniform(200, 320);
    v.dq = 8.0 + 0.2 * v.s.deficit_hpa;
    v.rq_km = r.uniform(250, 400);
    v.rain = (3.0 + 0.1 * v.s.deficit_hpa) * 1e-6;  // m/s: 11..40 mm/h in the core
    v.rp_km = r.uniform(120, 250);
    v.s.decoy = false;
  }
  return out;
}

std::vector<Vortex> draw_lows(uint64_t seed, int64_t index, const Planet& planet, const std::vector<Vortex>& storms) {
  Rng r(seed, Rng::sample_stream(index, kLows));
  const int n = r.below(5);  // 0..4 weak lows
  std::vector<Vortex> out;
  place_vortices(r, n, planet, 1.0, 1500.0, storms, out, [&](double& lat, double& lon) {
    const double h = r.sign();
    lat = h * r.uniform(5, 45) * kDeg;
    lon = r.uniform(0, 360) * kDeg;
  });
  for (Vortex& v : out) {
    v.s.vmax = r.uniform(6, 13);  // below cyclone strength
    v.s.holland_b = r.uniform(1.0, 1.3);
    v.s.rmax_km = r.uniform(150, 400);
    v.s.outer_x = 0.5;
    v.rout_km = 2200;
    make_profile(v, 0.0);
    v.s.core_k = -r.uniform(0.5, 2.5);  // cold core
    v.t500_k = v.s.core_k;
    v.rw_km = r.uniform(300, 600);
    v.dq = r.uniform(2, 6);
    v.rq_km = r.uniform(300, 600);
    v.rain = r.uniform(0.3, 1.5) * 1e-6;
    v.rp_km = r.uniform(200, 400);
    v.s.decoy = true;
  }
  return out;
}

// A filament from (lat0, lon0) to (lat1, lon0 + dlon) along a quadratic Bezier curve bent sideways by `bend`
// (fraction of the chord), sampled at 32 segments.
Plume make_plume(double lat0, double lon0, double lat1, double dlon, double bend) {
  Plume p;
  const double mlat = 0.5 * (lat0 + lat1), mlon = lon0 + 0.5 * dlon;
  const double cs = std::max(0.2, dm::cos(mlat));
  // Perpendicular to the chord in a locally isotropic frame (lon scaled by cos).
  const double ex = dlon * cs, ey = lat1 - lat0;
  const double clat = mlat + bend * ex, clon = mlon - bend * ey / cs;
  double len = 0;
  for (int s = 0; s <= 32; ++s) {
    const double t = s / 32.0, a = (1 - t) * (1 - t), b = 2 * t * (1 - t), c = t * t;
    p.lat.push_back(a * lat0 + b * clat + c * lat1);
    p.lon.push_back(a * lon0 + b * clon + c * (lon0 + dlon));
    if (s > 0) {
      const size_t q = static_cast<size_t>(s);
      const double dx = (p.lon[q] - p.lon[q - 1]) * dm::cos(0.5 * (p.lat[q] + p.lat[q - 1]));
      const double dy = p.lat[q] - p.lat[q - 1];
      len += kEarthRadius * 1e-3 * std::sqrt(dx * dx + dy * dy);
    }
  }
  p.r.lat0 = lat0 / kDeg;
  p.r.lon0 = lon0 / kDeg;
  p.r.lat1 = lat1 / kDeg;
  p.r.lon1 = (lon0 + dlon) / kDeg;
  p.r.length_km = len;
  return p;
}

std::vector<Plume> draw_rivers(uint64_t seed, int64_t index, double season) {
  Rng r(seed, Rng::sample_stream(index, kRivers));
  static constexpr double cdf[] = {0.02, 0.07, 0.20, 0.45, 1.0};  // 0..4 rivers, mean 3.3
  const int n = r.pick(cdf);
  std::vector<Plume> out;
  for (int k = 0; k < n; ++k) {
    const double h = r.uniform() < 0.5 - 0.1 * season ? 1.0 : -1.0;  // more in the winter hemisphere
    const double a0 = r.uniform(14, 26), a1 = std::min(70.0, a0 + r.uniform(22, 42));
    const double dlon = r.uniform() < 0.85 ? r.uniform(20, 70) : -r.uniform(5, 20);  // mostly eastward
    const double lon0 = r.uniform(0, 360), bend = r.uniform(-0.25, 0.25);
    Plume p = make_plume(h * a0 * kDeg, lon0 * kDeg, h * a1 * kDeg, dlon * kDeg, bend);
    p.r.sigma_km = r.uniform(280, 450);
    p.r.dtmq = r.uniform(20, 32);
    p.r.dwind = r.uniform(18, 30);
    p.rain = r.uniform(2, 8) * 1e-7;
    p.r.decoy = false;
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<Plume> draw_plumes(uint64_t seed, int64_t index) {
  Rng r(seed, Rng::sample_stream(index, kPlumes));
  const int n = r.below(4);  // 0..3 decoy plumes
  std::vector<Plume> out;
  for (int k = 0; k < n; ++k) {
    const double h = r.sign();
    const double a0 = r.uniform(12, 45);
    const bool wide = r.uniform() < 0.5;
    const double a1 = a0 + (wide ? r.uniform(8, 18) : r.uniform(3, 7));
    const double dlon = wide ? r.uniform(5, 20) : r.uniform(0, 6);
    const double lon0 = r.uniform(0, 360), bend = r.uniform(-0.2, 0.2);
    Plume p = make_plume(h * a0 * kDeg, lon0 * kDeg, h * a1 * kDeg, dlon * kDeg, bend);
    p.r.sigma_km = wide ? r.uniform(550, 900) : r.uniform(180, 320);
    p.r.dtmq = wide ? r.uniform(8, 16) : r.uniform(14, 26);
    p.r.dwind = wide ? r.uniform(6, 14) : r.uniform(10, 22);
    p.rain = r.uniform(1, 4) * 1e-7;
    p.r.decoy = true;
    out.push_back(std::move(p));
  }
  return out;
}

// ---- the sample's weather: features on the grid ----------------------------------------------------------------
// Perturbations the features add to the background, one (H,W) plane each.
struct Perturbation {
  enum Field { psl, u850, v850, ubot, vbot, t200, t500, tmq, rh, prect, kCount };
  std::vector<double> f[kCount];
  explicit Perturbation(size_t n) {
    for (auto& v : f) v.assign(n, 0.0);
  }
};

// A vortex from its radial profile (make_profile), cyclonic (NH counter-clockwise, SH clockwise): the 850 hPa wind
// is the gradient wind, the lowest level 0.85 of it turned 20 degrees inward; warm (or cold) core, moisture and rain
// as Gaussians; everything faded to nothing between 0.6 and 1 rout.
void render_vortex(const Grid& g, const Vortex& v, Perturbation& out) {
  const double lat0 = v.s.lat * kDeg, lon0 = v.s.lon * kDeg;
  const double h = lat0 >= 0 ? 1.0 : -1.0;
  const double rout = v.rout_km * 1e3, rw = v.rw_km * 1e3, rq = v.rq_km * 1e3, rp = v.rp_km * 1e3;
  const double cin = 0.9396926207859084, sin_in = 0.3420201433256687;  // cos, sin 20 degrees
  g.for_each_within(lat0, lon0, rout, [&](int64_t i, int64_t j, double dx, double dy, double r) {
    const size_t p = static_cast<size_t>(i * g.W + j);
    const double t = r / kProfileStep;
    const size_t k = std::min(static_cast<size_t>(t), v.wind.size() - 2);
    const double fr = t - static_cast<double>(k);
    out.f[Perturbation::psl][p] += v.pressure[k] + fr * (v.pressure[k + 1] - v.pressure[k]);
    if (r > 0) {
      const double vt = v.wind[k] + fr * (v.wind[k + 1] - v.wind[k]);
      const double tx = -h * dy / r, ty = h * dx / r;  // cyclonic tangent
      const double rx = dx / r, ry = dy / r;           // outward
      out.f[Perturbation::u850][p] += vt * tx;
      out.f[Perturbation::v850][p] += vt * ty;
      out.f[Perturbation::ubot][p] += 0.85 * vt * (cin * tx - sin_in * rx);
      out.f[Perturbation::vbot][p] += 0.85 * vt * (cin * ty - sin_in * ry);
    }
    const double taper = 1.0 - smoothstep((r - 0.6 * rout) / (0.4 * rout));
    const double gw = taper * gauss(r, rw);
    out.f[Perturbation::t200][p] += v.s.core_k * gw;
    out.f[Perturbation::t500][p] += v.t500_k * gw;
    const double gq = taper * gauss(r, rq);
    out.f[Perturbation::tmq][p] += v.dq * gq;
    out.f[Perturbation::rh][p] += 0.15 * gq;
    out.f[Perturbation::prect][p] += v.rain * taper * gauss(r, rp);
  });
}

// Per pixel within a plume's reach: squared distance to the nearest segment, its along-path position and tangent.
struct Near {
  double d2 = std::numeric_limits<double>::infinity(), t = 0, tx = 0, ty = 0;
};

// A moisture filament: Gaussian across (sd sigma, lowered to reach zero at 3.5 sigma) around the polyline, faded in
// over the first 12% of its length and out over the last 20%; TMQ, relative humidity, rain and an along-filament
// wind (850 hPa; 0.6 of it at the lowest level) in proportion. `near` is (H*W) scratch, all at its default on entry
// and on return.
void render_plume(const Grid& g, const Plume& pl, std::vector<Near>& near, Perturbation& out) {
  const double sigma = pl.r.sigma_km * 1e3, reach = 3.5 * sigma, edge = dm::exp(-0.5 * 3.5 * 3.5);
  if (pl.lat.size() < 2) return;
  const size_t nseg = pl.lat.size() - 1;
  std::vector<size_t> touched;
  std::vector<double> cum(1, 0.0);  // path length to each vertex
  for (size_t s = 0; s < nseg; ++s) {
    const double cm = dm::cos(0.5 * (pl.lat[s] + pl.lat[s + 1]));
    const double sx = kEarthRadius * cm * (pl.lon[s + 1] - pl.lon[s]), sy = kEarthRadius * (pl.lat[s + 1] - pl.lat[s]);
    cum.push_back(cum.back() + std::sqrt(sx * sx + sy * sy));
  }
  const double total = cum[nseg];
  for (size_t s = 0; s < nseg; ++s) {
    const double lat_a = pl.lat[s], lon_a = pl.lon[s];
    const double cm = dm::cos(0.5 * (pl.lat[s] + pl.lat[s + 1]));
    const double sx = kEarthRadius * cm * (pl.lon[s + 1] - lon_a), sy = kEarthRadius * (pl.lat[s + 1] - lat_a);
    const double len2 = sx * sx + sy * sy;
    const double len = std::sqrt(len2);
    if (len <= 0) continue;
    // Every pixel within reach of the segment lies within reach + len/2 of its midpoint.
    const double mlat = 0.5 * (lat_a + pl.lat[s + 1]), mlon = 0.5 * (lon_a + pl.lon[s + 1]);
    g.for_each_within(mlat, mlon, reach + 0.5 * len, [&](int64_t i, int64_t j, double, double, double) {
      const double px =
          kEarthRadius * g.coslat[static_cast<size_t>(i)] * wrap_pi(g.lon[static_cast<size_t>(j)] - lon_a);
      const double py = kEarthRadius * (g.lat[static_cast<size_t>(i)] - lat_a);
      const double t = std::clamp((px * sx + py * sy) / len2, 0.0, 1.0);
      const double ex = px - t * sx, ey = py - t * sy;
      const double d2 = ex * ex + ey * ey;
      const size_t p = static_cast<size_t>(i * g.W + j);
      Near& n = near[p];
      if (n.d2 == std::numeric_limits<double>::infinity()) touched.push_back(p);
      if (d2 < n.d2) {
        n.d2 = d2;
        n.t = (cum[s] + t * len) / total;
        n.tx = sx / len;
        n.ty = sy / len;
      }
    });
  }
  std::sort(touched.begin(), touched.end());
  for (size_t p : touched) {
    const Near n = near[p];
    near[p] = Near{};
    if (n.d2 > reach * reach) continue;
    // The Gaussian lowered to reach zero at `reach`, so the field stays continuous there.
    const double across = (dm::exp(-0.5 * n.d2 / (sigma * sigma)) - edge) / (1.0 - edge);
    const double w = across * smoothstep(n.t / 0.12) * smoothstep((1.0 - n.t) / 0.2);
    out.f[Perturbation::tmq][p] += pl.r.dtmq * w;
    out.f[Perturbation::rh][p] += 0.12 * w;
    out.f[Perturbation::prect][p] += pl.rain * w;
    out.f[Perturbation::u850][p] += pl.r.dwind * w * n.tx;
    out.f[Perturbation::v850][p] += pl.r.dwind * w * n.ty;
    out.f[Perturbation::ubot][p] += 0.6 * pl.r.dwind * w * n.tx;
    out.f[Perturbation::vbot][p] += 0.6 * pl.r.dwind * w * n.ty;
  }
}

// ---- the sample's weather: climatology and assembly -----------------------------------------------------------
// Zonal-mean sea-level pressure (Pa) and its derivative in latitude (Pa/rad): equatorial trough at the thermal
// equator, subtropical highs, subpolar lows, polar highs, shifting with the season.
void psl_climatology(double lat, double season, double lat_t, double& p, double& dp) {
  struct G {
    double c, w, a;
  };
  const G terms[] = {{lat_t, 9 * kDeg, -450},
                     {(31 + 3 * season) * kDeg, 11 * kDeg, 900},
                     {(-31 + 3 * season) * kDeg, 11 * kDeg, 900},
                     {62 * kDeg, 11 * kDeg, -1400 * (1.0 + 0.2 * std::max(0.0, -season))},
                     {-62 * kDeg, 10 * kDeg, -1500},
                     {88 * kDeg, 8 * kDeg, 600},
                     {-88 * kDeg, 8 * kDeg, 300}};
  p = 101200;
  dp = 0;
  for (const G& t : terms) {
    const double e = gauss(lat - t.c, t.w);
    p += t.a * e;
    dp += t.a * e * (-2.0 * (lat - t.c) / (t.w * t.w));
  }
}

Tensor assemble(const Grid& g, const std::vector<float>& land, const std::vector<float>& zs, const SampleTime& time,
                const std::vector<Mode>& modes, const Perturbation& pert) {
  const int64_t H = g.H, W = g.W;
  const size_t Wz = static_cast<size_t>(W);
  const double season = season_of(time);
  const double lat_t = 6.0 * season * kDeg;  // thermal equator
  const double hour = 3.0 * time.step;

  // Per column: the mode waves, and the local-solar-time diurnal cycle (maximum at 14h).
  const size_t K = modes.size();
  std::vector<std::vector<double>> apc(K), aps(K), apm(K), tcol(K), rcol(K);
  for (size_t k = 0; k < K; ++k) {
    const Mode& m = modes[k];
    apc[k].resize(Wz);
    aps[k].resize(Wz);
    apm[k].resize(Wz);
    tcol[k].resize(Wz);
    rcol[k].resize(Wz);
    for (size_t j = 0; j < Wz; ++j) {
      const double a = m.m * g.lon[j] + m.phase, c = dm::cos(a), s = dm::sin(a);
      apc[k][j] = m.ap * c;                // p
      aps[k][j] = -m.ap * m.m * s;         // dp/dlon
      apm[k][j] = -m.ap * m.m * m.m * c;   // d2p/dlon2
      tcol[k][j] = m.t_c * c + m.t_s * s;  // temperature
      rcol[k][j] = m.r_c * c + m.r_s * s;  // relative humidity
    }
  }
  std::vector<double> diurnal(Wz);
  for (size_t j = 0; j < Wz; ++j) diurnal[j] = dm::cos(2.0 * kPi * (hour + g.lon_deg[j] / 15.0 - 14.0) / 24.0);

  Tensor data = Tensor::empty(Shape{1, H, W, kNumChannels}, DType::f32);
  float* out = data.data_as<float>();
  std::vector<double> pa(Wz), pphi(Wz), plam(Wz), lap(Wz), ta(Wz), ra(Wz);
  const double a = kEarthRadius;
  for (int64_t i = 0; i < H; ++i) {
    const size_t iz = static_cast<size_t>(i);
    const double lat = g.lat[iz], sl = g.sinlat[iz], cl = g.coslat[iz];
    const double hs = lat >= 0 ? 1.0 : -1.0;
    const double winter = std::max(0.0, -season * hs), summer = std::max(0.0, season * hs);
    // Zonal climatology of this row.
    double pc = 0, dpc = 0;
    psl_climatology(lat, season, lat_t, pc, dpc);
    const double y = dm::sin(lat - lat_t), y2 = y * y;
    const double t_sl = 300.5 - 46.0 * y2 - 10.0 * winter * y2 * y2 + 3.0 * summer * y2 * (1.0 - y2);
    const double land_season = 14.0 * season * hs * y2;  // continents warmer in summer, colder in winter
    const double diurnal_amp = 5.0 * (1.0 - 0.6 * y2);
    const double t500 = 267.5 - 28.0 * y2 - 6.0 * winter * y2;
    const double t200 = 219.0 + 3.0 * y2 - 7.0 * winter * y2 * y2 + 2.0 * summer * y2;
    const double ad = std::fabs(lat / kDeg);
    const double rh_row = 0.78 + 0.08 * gauss(lat - lat_t, 8 * kDeg) - 0.22 * gauss(ad * kDeg - 25 * kDeg, 9 * kDeg);
    const double desert = gauss(ad * kDeg - 25 * kDeg, 8 * kDeg);
    const double u_thermal = 4.0 * gauss(ad * kDeg - 40 * kDeg, 15 * kDeg);
    const double u_eq = -3.0 * gauss(lat, 10 * kDeg);
    const double f = 2.0 * kOmega * sl;
    const double finv = f / (f * f + kF0 * kF0);
    const double sgn = f / std::sqrt(f * f + kF0 * kF0);                // smooth hemisphere sign
    const double ca = dm::cos(0.349 * sgn), sa = dm::sin(0.349 * sgn);  // surface winds turned 20 deg to low
    const double tanl = sl / std::max(cl, 1e-6);
    const double inv_cos2 = 1.0 / std::max(cl * cl, 0.1169777784);  // clamp at 70 degrees for the rain term

    // The modes' contributions along this row.
    std::fill(pa.begin(), pa.end(), 0.0);
    std::fill(pphi.begin(), pphi.end(), 0.0);
    std::fill(plam.begin(), plam.end(), 0.0);
    std::fill(lap.begin(), lap.end(), 0.0);
    std::fill(ta.begin(), ta.end(), 0.0);
    std::fill(ra.begin(), ra.end(), 0.0);
    for (size_t k = 0; k < K; ++k) {
      const Mode& m = modes[k];
      const double d = lat - m.lat0, w2 = m.w * m.w;
      const double G = dm::exp(-d * d / w2);
      if (G < 1e-12) continue;
      const double G1 = -2.0 * d / w2 * G, G2 = (4.0 * d * d / (w2 * w2) - 2.0 / w2) * G;
      const double B = G * cl, B1 = G1 * cl - G * sl, B2 = G2 * cl - 2.0 * G1 * sl - G * cl;
      const double L1 = B2 - tanl * B1, L2 = B * inv_cos2;
      const double* c = apc[k].data();
      const double* s = aps[k].data();
      const double* mm = apm[k].data();
      const double* tc = tcol[k].data();
      const double* rc = rcol[k].data();
      if (m.ap != 0) {
        for (size_t j = 0; j < Wz; ++j) {
          pa[j] += B * c[j];
          pphi[j] += B1 * c[j];
          plam[j] += G * s[j];  // (1/cos lat) dp/dlon
          lap[j] += L1 * c[j] + L2 * mm[j];
        }
      }
      for (size_t j = 0; j < Wz; ++j) {
        ta[j] += B * tc[j];
        ra[j] += G * rc[j];
      }
    }

    for (int64_t j = 0; j < W; ++j) {
      const size_t jz = static_cast<size_t>(j), p = static_cast<size_t>(i * W + j);
      const double l = land[p], z = zs[p];
      auto pf = [&](Perturbation::Field fld) { return pert.f[fld][p]; };
      float* o = out + p * kNumChannels;

      const double psl = pc + pa[jz] + pf(Perturbation::psl);
      // Geostrophic wind of the background (climatology + modes); the features carry their own winds.
      const double dpdy = (dpc + pphi[jz]) / a, dpdx = plam[jz] / a;
      const double ug = -finv * dpdy / kRho, vg = finv * dpdx / kRho;
      const double u850 = 1.25 * ug + u_thermal + u_eq + pf(Perturbation::u850);
      const double v850 = 1.25 * vg + pf(Perturbation::v850);
      const double ubot = 0.7 * (ca * ug - sa * vg) + 0.6 * u_eq + pf(Perturbation::ubot);
      const double vbot = 0.7 * (sa * ug + ca * vg) + pf(Perturbation::vbot);

      const double t_anom = ta[jz];
      const double dday = diurnal_amp * diurnal[jz];
      const double ts = t_sl + l * (land_season + dday) - 0.0065 * z + t_anom * (0.6 + 0.4 * l);
      const double trefht = ts - 0.7 - 0.3 * l * dday;
      const double t500v = t500 + t_anom + pf(Perturbation::t500);
      const double t200v = t200 - 0.3 * t_anom + pf(Perturbation::t200);
      const double ps = z > 0 ? psl * dm::exp(-kGravity * z / (kRd * (ts + 0.00325 * z))) : psl;

      const double rh =
          std::clamp(rh_row * (1.0 - 0.25 * l) - 0.15 * l * desert + ra[jz] + pf(Perturbation::rh), 0.08, 0.97);
      const double es = 611.2 * dm::exp(17.67 * (trefht - 273.15) / (trefht - 29.65));  // Bolton (1980), Pa
      const double q = rh * 0.622 * es / (ps - 0.378 * es);
      const double tmq = 1.0 + 2600.0 * q * (ps / 101325.0) + pf(Perturbation::tmq);
      const double wet = std::max(0.0, (rh - 0.6) / 0.3);
      const double conv = std::max(0.0, lap[jz]) / (a * a);  // Ekman convergence under the lows, Pa/m^2
      const double prect = 1.2e-7 * wet * wet * (q / 0.015) + 15.0 * q * conv + pf(Perturbation::prect);

      const double t_sea = trefht + 0.0065 * z;  // reduced to sea level
      const double z1000 = kRdOverG * t_sea * dm::log(psl / 1e5);
      const double tmean = (0.6931471805599453 * 0.5 * (t_sea + t500v) + 0.9162907318741551 * 0.5 * (t500v + t200v)) /
                           1.6094379124341003;
      const double z200 = z1000 + kRdOverG * 1.6094379124341003 * tmean;

      o[kTMQ] = static_cast<float>(tmq);
      o[kU850] = static_cast<float>(u850);
      o[kV850] = static_cast<float>(v850);
      o[kUBOT] = static_cast<float>(ubot);
      o[kVBOT] = static_cast<float>(vbot);
      o[kQREFHT] = static_cast<float>(q);
      o[kPS] = static_cast<float>(ps);
      o[kPSL] = static_cast<float>(psl);
      o[kT200] = static_cast<float>(t200v);
      o[kT500] = static_cast<float>(t500v);
      o[kPRECT] = static_cast<float>(prect);
      o[kTS] = static_cast<float>(ts);
      o[kTREFHT] = static_cast<float>(trefht);
      o[kZ1000] = static_cast<float>(z1000);
      o[kZ200] = static_cast<float>(z200);
      o[kZBOT] = static_cast<float>(kRdOverG * trefht * 0.0075);  // lowest level ~0.75% of PS above the surface
    }
  }
  return data;
}

}  // namespace

// ---- date -------------------------------------------------------------------------------------------------
SampleTime synthetic_sample_time(int64_t index) {
  CS_CHECK(index >= 0, "synthetic sample index must be >= 0, got ", index);
  const int64_t steps = index * 163;
  const int64_t days = steps / 8;  // days after 1996-01-01
  SampleTime t;
  t.step = static_cast<int>(steps % 8);
  // Civil date from a day count (H. Hinnant's algorithm), 1996-01-01 = 9496 days after 1970-01-01.
  const int64_t z = days + 9496 + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  t.year = static_cast<int>(y);
  t.month = static_cast<int>(m);
  t.day = static_cast<int>(d);
  static constexpr int before[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  t.day_of_year = before[m - 1] + static_cast<int>(d) - 1 + (leap && m > 2 ? 1 : 0);
  t.run = 1;
  return t;
}

std::string sample_file_name(const SampleTime& t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "data-%04d-%02d-%02d-%02d-%d.h5", t.year, t.month, t.day, t.step, t.run);
  return buf;
}

namespace {
constexpr int kNoleapBefore[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};  // days before each month
constexpr int kNoleapMonthDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
}  // namespace

SampleTime noleap_step_time(int64_t step) {
  CS_CHECK(step >= 0, "noleap step must be >= 0 (2000-01-01 00:00 or later), got ", step);
  const int64_t days = step / 8;
  SampleTime t;
  t.step = static_cast<int>(step % 8);
  t.year = static_cast<int>(2000 + days / 365);
  t.day_of_year = static_cast<int>(days % 365);
  t.month = 1;
  while (t.month < 12 && kNoleapBefore[t.month] <= t.day_of_year) ++t.month;
  t.day = t.day_of_year - kNoleapBefore[t.month - 1] + 1;
  t.run = 1;
  return t;
}

int64_t noleap_step_index(int year, int month, int day, int hour) {
  CS_CHECK(year >= 2000 && year <= 9999 && month >= 1 && month <= 12 && day >= 1 &&
               day <= kNoleapMonthDays[month - 1] && hour >= 0 && hour < 24 && hour % 3 == 0,
           "date ", year, "-", month, "-", day, " ", hour,
           ":00 is not a 3-hourly time of the noleap calendar from 2000-01-01 (no Feb 29; hours 0, 3, .., 21)");
  return ((static_cast<int64_t>(year) - 2000) * 365 + kNoleapBefore[month - 1] + day - 1) * 8 + hour / 3;
}

std::string history_file_name(const std::string& kind, const SampleTime& t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d-%05d.nc", t.year, t.month, t.day, t.step * 10800);
  return "synthetic." + kind + "." + buf;
}

const char* history_units(int64_t c) {
  static constexpr const char* units[kNumChannels] = {"kg/m2", "m/s", "m/s", "m/s", "m/s", "kg/kg", "Pa", "Pa",
                                                      "K",     "K",   "m/s", "K",   "K",   "m",     "m",  "m"};
  CS_CHECK(c >= 0 && c < kNumChannels, "channel ", c, " is outside 0..", kNumChannels - 1);
  return units[c];
}

const char* history_long_name(int64_t c) {
  // As CAM5's history files describe these fields (cam_history addfld long names).
  static constexpr const char* names[kNumChannels] = {
      "Total (vertically integrated) precipitable water",
      "Zonal wind at 850 mbar pressure surface",
      "Meridional wind at 850 mbar pressure surface",
      "Lowest model level zonal wind",
      "Lowest model level meridional wind",
      "Reference height humidity",
      "Surface pressure",
      "Sea level pressure",
      "Temperature at 200 mbar pressure surface",
      "Temperature at 500 mbar pressure surface",
      "Total (convective and large-scale) precipitation rate (liq + ice)",
      "Surface temperature (radiative)",
      "Reference height temperature",
      "Geopotential Z at 1000 mbar pressure surface",
      "Geopotential Z at 200 mbar pressure surface",
      "Lowest model level height"};
  CS_CHECK(c >= 0 && c < kNumChannels, "channel ", c, " is outside 0..", kNumChannels - 1);
  return names[c];
}

// ---- labels from the fields -------------------------------------------------------------------------------
namespace {

// A copy of a contiguous host (1,H,W,C) tensor with its rows in reverse order: the generator computes north-first
// (row 0 at 90N, as the model was written) and the API is south-first (io/synthetic.h); flipping at the boundary keeps
// every value at its latitude bit for bit.
Tensor flip_rows(const Tensor& t) {
  const Tensor c = t.is_contiguous() ? t : t.clone();
  Tensor out = Tensor::empty(c.shape(), c.dtype(), Device::cpu);
  const int64_t H = c.shape().h;
  const size_t row = c.nbytes() / static_cast<size_t>(H);
  const auto* src = static_cast<const unsigned char*>(c.data());
  auto* dst = static_cast<unsigned char*>(out.data());
  for (int64_t i = 0; i < H; ++i)
    std::memcpy(dst + static_cast<size_t>(i) * row, src + static_cast<size_t>(H - 1 - i) * row, row);
  return out;
}

std::vector<float> flip_rows(const std::vector<float>& v, int64_t H, int64_t W) {
  std::vector<float> out(v.size());
  for (int64_t i = 0; i < H; ++i) std::copy_n(v.begin() + (H - 1 - i) * W, W, out.begin() + i * W);
  return out;
}

// derive_labels on north-first data (row 0 at 90N): the rules as written. Returns north-first labels and rows.
Tensor derive_labels_north_first(const Tensor& dc, const LabelRules& rules, LabelReport* report) {
  const Shape& s = dc.shape();
  const float* x = dc.data_as<float>();
  const int64_t H = s.h, W = s.w;
  const Grid g(H, W);
  auto at = [&](int64_t i, int64_t j, int c) { return static_cast<double>(x[(i * W + j) * kNumChannels + c]); };
  Tensor labels = Tensor::zeros(Shape{1, H, W, 1}, DType::u8, Device::cpu);
  uint8_t* lab = labels.data_as<uint8_t>();
  LabelReport local;
  LabelReport& rep = report ? *report : local;
  rep = LabelReport{};

  // Tropical cyclones. Ties between equal pressures go to the earlier pixel in (north-first) row-major order.
  auto lower = [&](int64_t i, int64_t j, int64_t i2, int64_t j2) {  // is (i2,j2) "below" (i,j)?
    const double a = at(i, j, kPSL), b = at(i2, j2, kPSL);
    return b < a || (b == a && (i2 * W + j2) < (i * W + j));
  };
  const double bin = std::max(25e3, kEarthRadius * g.dlat);  // profile bin width, m
  const double search = 1000e3;
  for (int64_t i = 1; i + 1 < H; ++i) {
    if (std::fabs(g.lat_deg[static_cast<size_t>(i)]) > rules.tc_max_lat) continue;
    for (int64_t j = 0; j < W; ++j) {
      bool is_min = true;
      for (int di = -1; di <= 1 && is_min; ++di)
        for (int dj = -1; dj <= 1 && is_min; ++dj)
          if ((di || dj) && lower(i, j, i + di, (j + dj + W) % W)) is_min = false;
      if (!is_min) continue;
      const double lat0 = g.lat[static_cast<size_t>(i)], lon0 = g.lon[static_cast<size_t>(j)];
      g.for_each_within(lat0, lon0, rules.tc_min_radius_km * 1e3, [&](int64_t i2, int64_t j2, double, double, double) {
        if (is_min && (i2 != i || j2 != j) && lower(i, j, i2, j2)) is_min = false;
      });
      if (!is_min) continue;
      DetectedCyclone c;
      c.row = i;
      c.col = j;
      c.lat = g.lat_deg[static_cast<size_t>(i)];
      c.lon = g.lon_deg[static_cast<size_t>(j)];
      const double hs = lat0 >= 0 ? 1.0 : -1.0;
      double env_p = 0, env_t = 0, n_env = 0, core_t = -1e300;
      const size_t nb = static_cast<size_t>(search / bin) + 1;
      std::vector<double> sum_v(nb, 0.0), sum_r(nb, 0.0), cnt(nb, 0.0);
      g.for_each_within(lat0, lon0, search, [&](int64_t i2, int64_t j2, double dx, double dy, double r) {
        const double tc = 0.5 * (at(i2, j2, kT200) + at(i2, j2, kT500));
        if (r >= 600e3 && r < 900e3) {
          env_p += at(i2, j2, kPSL);
          env_t += tc;
          n_env += 1;
        }
        if (r <= 250e3) core_t = std::max(core_t, tc);
        if (r > 0) {
          const double vt = hs * (-dy * at(i2, j2, kUBOT) + dx * at(i2, j2, kVBOT)) / r;
          const size_t k = std::min(nb - 1, static_cast<size_t>(r / bin));
          sum_v[k] += vt;
          sum_r[k] += r;
          cnt[k] += 1;
        }
      });
      if (n_env == 0) continue;
      c.deficit_pa = env_p / n_env - at(i, j, kPSL);
      c.warm_core_k = core_t - env_t / n_env;
      // The azimuthal-mean profile: its maximum, then the radius where it falls below the threshold.
      std::vector<double> pr, pv;
      for (size_t k = 0; k < nb; ++k)
        if (cnt[k] > 0) {
          pr.push_back(sum_r[k] / cnt[k]);
          pv.push_back(sum_v[k] / cnt[k]);
        }
      size_t kmax = 0;
      for (size_t k = 0; k < pv.size(); ++k)
        if (pv[k] > pv[kmax]) kmax = k;
      c.max_wind = pv.empty() ? 0.0 : pv[kmax];
      c.radius_km = 0;
      if (c.max_wind >= rules.tc_wind) {
        double radius = search;
        for (size_t k = kmax + 1; k < pv.size(); ++k)
          if (pv[k] < rules.tc_wind) {
            radius = pr[k - 1] + (pv[k - 1] - rules.tc_wind) / (pv[k - 1] - pv[k]) * (pr[k] - pr[k - 1]);
            break;
          }
        c.radius_km = radius * 1e-3;
      }
      c.labelled = c.deficit_pa >= rules.tc_min_deficit_pa && c.warm_core_k >= rules.tc_warm_core_k &&
                   c.max_wind >= rules.tc_wind;
      if (c.labelled)
        g.for_each_within(lat0, lon0, c.radius_km * 1e3,
                          [&](int64_t i2, int64_t j2, double, double, double) { lab[i2 * W + j2] = 1; });
      rep.cyclones.push_back(c);
    }
  }

  // Atmospheric rivers: connected regions of high vapour transport that pass the shape tests.
  std::vector<uint8_t> cand(static_cast<size_t>(H * W), 0);
  for (int64_t i = 0; i < H; ++i) {
    if (std::fabs(g.lat_deg[static_cast<size_t>(i)]) < rules.ar_min_lat) continue;
    for (int64_t j = 0; j < W; ++j) {
      const double tmq = at(i, j, kTMQ), u = at(i, j, kU850), v = at(i, j, kV850);
      cand[static_cast<size_t>(i * W + j)] =
          lab[i * W + j] == 0 && tmq >= rules.ar_min_tmq && tmq * std::sqrt(u * u + v * v) >= rules.ar_ivt;
    }
  }
  std::vector<int64_t> comp, stack;
  std::vector<uint8_t> seen(static_cast<size_t>(H * W), 0);
  // Path length inside the component: Dijkstra over the 8-neighbour graph, steps weighted by their length on the
  // sphere (tangent plane). Returns the farthest pixel from `from` and its distance in km (ties: lower index).
  std::vector<double> dist(static_cast<size_t>(H * W), std::numeric_limits<double>::infinity());
  const double step_y = kEarthRadius * 1e-3 * g.dlat, step_x = kEarthRadius * 1e-3 * g.dlon;
  auto farthest = [&](int64_t from) {
    using Item = std::pair<double, int64_t>;
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue;
    dist[static_cast<size_t>(from)] = 0;
    queue.push({0.0, from});
    while (!queue.empty()) {
      const auto [d, p] = queue.top();
      queue.pop();
      if (d > dist[static_cast<size_t>(p)]) continue;
      const int64_t i = p / W, j = p % W;
      for (int di = -1; di <= 1; ++di)
        for (int dj = -1; dj <= 1; ++dj) {
          const int64_t i2 = i + di;
          if ((di == 0 && dj == 0) || i2 < 0 || i2 >= H) continue;
          const int64_t q = i2 * W + (j + dj + W) % W;
          if (!cand[static_cast<size_t>(q)]) continue;
          const double dx = step_x * dj * 0.5 * (g.coslat[static_cast<size_t>(i)] + g.coslat[static_cast<size_t>(i2)]);
          const double dy = step_y * di;
          const double nd = d + std::sqrt(dx * dx + dy * dy);
          if (nd < dist[static_cast<size_t>(q)]) {
            dist[static_cast<size_t>(q)] = nd;
            queue.push({nd, q});
          }
        }
    }
    int64_t best = from;
    for (int64_t q : comp)
      if (dist[static_cast<size_t>(q)] > dist[static_cast<size_t>(best)]) best = q;
    const double far = dist[static_cast<size_t>(best)];
    for (int64_t q : comp) dist[static_cast<size_t>(q)] = std::numeric_limits<double>::infinity();
    return std::pair<int64_t, double>(best, far);
  };
  for (int64_t p0 = 0; p0 < H * W; ++p0) {
    if (!cand[static_cast<size_t>(p0)] || seen[static_cast<size_t>(p0)]) continue;
    comp.clear();
    stack.assign(1, p0);
    seen[static_cast<size_t>(p0)] = 1;
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      comp.push_back(p);
      const int64_t i = p / W, j = p % W;
      for (int di = -1; di <= 1; ++di)
        for (int dj = -1; dj <= 1; ++dj) {
          const int64_t i2 = i + di;
          if (i2 < 0 || i2 >= H) continue;
          const int64_t q = i2 * W + (j + dj + W) % W;
          if (cand[static_cast<size_t>(q)] && !seen[static_cast<size_t>(q)]) {
            seen[static_cast<size_t>(q)] = 1;
            stack.push_back(q);
          }
        }
    }
    std::sort(comp.begin(), comp.end());
    DetectedRiver r;
    r.pixels = static_cast<int64_t>(comp.size());
    double area = 0;
    r.min_abs_lat = 90;
    for (int64_t q : comp) {
      area += g.cell_km2[static_cast<size_t>(q / W)];
      r.min_abs_lat = std::min(r.min_abs_lat, std::fabs(g.lat_deg[static_cast<size_t>(q / W)]));
    }
    const int64_t a_end = farthest(comp.front()).first;
    r.length_km = farthest(a_end).second;
    r.width_km = r.length_km > 0 ? area / r.length_km : std::numeric_limits<double>::infinity();
    r.labelled = r.length_km >= rules.ar_min_length_km && r.width_km <= rules.ar_max_width_km &&
                 r.min_abs_lat <= rules.ar_max_start_lat;
    if (r.labelled)
      for (int64_t q : comp) lab[q] = 2;
    rep.rivers.push_back(r);
  }
  return labels;
}

// Report rows from the north-first computation to the API's south-first rows.
void report_south_first(LabelReport& rep, int64_t H) {
  for (DetectedCyclone& c : rep.cyclones) c.row = H - 1 - c.row;
}

}  // namespace

Tensor derive_labels(const Tensor& data, const LabelRules& rules, LabelReport* report) {
  CS_CHECK(data.defined() && data.device() == Device::cpu && data.dtype() == DType::f32,
           "derive_labels: needs a host float32 tensor, got ", data.defined() ? data.str() : "an undefined tensor");
  const Shape& s = data.shape();
  CS_CHECK(s.n == 1 && s.c == kNumChannels && s.h >= 2 && s.w >= 2, "derive_labels: needs (1,H,W,", kNumChannels,
           "), got ", s.str());
  const Tensor labels = flip_rows(derive_labels_north_first(flip_rows(data), rules, report));
  if (report) report_south_first(*report, s.h);
  return labels;
}

// ---- the generator ------------------------------------------------------------------------------------------
SyntheticGenerator::SyntheticGenerator(uint64_t seed, int64_t height, int64_t width)
    : seed_(seed), h_(height), w_(width) {
  CS_CHECK(height >= 8 && width >= 8, "synthetic grid ", height, "x", width, " is too small (at least 8x8)");
  CS_CHECK(height <= 16384 && width <= 16384, "synthetic grid ", height, "x", width, " is too large (at most 16384)");
  Planet(seed).rasterize(Grid(height, width), land_nf_, zs_nf_);
  land_ = flip_rows(land_nf_, height, width);
  zs_ = flip_rows(zs_nf_, height, width);
}

SyntheticSample SyntheticGenerator::generate(int64_t index) const {
  return generate(index, synthetic_sample_time(index));
}

SyntheticSample SyntheticGenerator::generate(int64_t index, const SampleTime& time) const {
  CS_CHECK(index >= 0 && index < (int64_t{1} << 56), "synthetic sample index ", index, " is outside [0, 2^56)");
  CS_CHECK(time.step >= 0 && time.step < 8 && time.day_of_year >= 0 && time.day_of_year < 366,
           "synthetic sample time: step ", time.step, " (0..7), day of year ", time.day_of_year, " (0..365)");
  SyntheticSample out;
  out.time = time;
  out.file_name = sample_file_name(out.time);
  const Grid g(h_, w_);
  const Planet planet(seed_);
  const double season = season_of(out.time);
  const std::vector<Mode> modes = draw_modes(seed_, index, season);
  const std::vector<Vortex> storms = draw_storms(seed_, index, season, planet);
  const std::vector<Vortex> lows = draw_lows(seed_, index, planet, storms);
  const std::vector<Plume> rivers = draw_rivers(seed_, index, season);
  const std::vector<Plume> plumes = draw_plumes(seed_, index);

  Perturbation pert(static_cast<size_t>(h_ * w_));
  std::vector<Near> near(static_cast<size_t>(h_ * w_));
  for (const auto* list : {&storms, &lows})
    for (const Vortex& v : *list) {
      render_vortex(g, v, pert);
      out.storms.push_back(v.s);
    }
  for (const auto* list : {&rivers, &plumes})
    for (const Plume& p : *list) {
      render_plume(g, p, near, pert);
      out.rivers.push_back(p.r);
    }
  // Computed north-first (Grid), handed out south-first.
  const Tensor data = assemble(g, land_nf_, zs_nf_, out.time, modes, pert);
  out.labels = flip_rows(derive_labels_north_first(data, LabelRules{}, &out.report));
  report_south_first(out.report, h_);
  out.data = flip_rows(data);
  return out;
}

// ---- sequences ------------------------------------------------------------------------------------------------
namespace {

constexpr int64_t kSeqBlock = 64;    // steps per block of geneses
constexpr int64_t kSeqMaxLife = 48;  // < kSeqBlock: an event meets only events of its own and the adjacent blocks
constexpr double kStepSeconds = 10800.0;
constexpr double kCycloneSepKm = 1800.0;  // between cyclone centres
constexpr double kRiverSepKm = 1500.0;    // a river filament from a cyclone centre or another filament
constexpr double kDecoySepKm = 1500.0;    // a decoy from an active event
constexpr double kDecoyMaxWind = 9.0;     // m/s, decoy lows

double wrap360(double d) { return d - 360.0 * std::floor(d / 360.0); }

struct Xyz {
  double x = 0, y = 0, z = 0;
};
Xyz to_xyz(double lat, double lon) {  // radians
  const double c = dm::cos(lat);
  return {c * dm::cos(lon), c * dm::sin(lon), dm::sin(lat)};
}
// Chord length in km: never longer than the arc, so a separation checked on chords holds on the sphere.
double chord_km(const Xyz& a, const Xyz& b) {
  const double dx = a.x - b.x, dy = a.y - b.y, dz = a.z - b.z;
  return kEarthRadius * 1e-3 * std::sqrt(dx * dx + dy * dy + dz * dz);
}
// From p to the straight segment ab (km): the filament's segments are ~200 km, whose chords sag 1 km below the sphere.
double segment_km(const Xyz& p, const Xyz& a, const Xyz& b) {
  const double ex = b.x - a.x, ey = b.y - a.y, ez = b.z - a.z;
  const double px = p.x - a.x, py = p.y - a.y, pz = p.z - a.z;
  const double l2 = ex * ex + ey * ey + ez * ez;
  const double t = l2 > 0 ? std::clamp((px * ex + py * ey + pz * ez) / l2, 0.0, 1.0) : 0.0;
  const double dx = px - t * ex, dy = py - t * ey, dz = pz - t * ez;
  return kEarthRadius * 1e-3 * std::sqrt(dx * dx + dy * dy + dz * dz);
}

// An event (or a decoy) at one step, for the separation tests: a point (cyclone, low) or a filament's polyline.
struct Footprint {
  Xyz centre;             // cyclone centre, or the filament's midpoint
  std::vector<Xyz> line;  // filament: every other vertex of the plume (17 points); empty for a point
  double reach_km = 0;    // farthest line point from the centre
};
Footprint point_footprint(double lat, double lon) { return {to_xyz(lat, lon), {}, 0.0}; }
Footprint plume_footprint(const Plume& p) {
  Footprint f;
  const size_t mid = p.lat.size() / 2;
  f.centre = to_xyz(p.lat[mid], p.lon[mid]);
  for (size_t s = 0; s < p.lat.size(); s += 2) {
    f.line.push_back(to_xyz(p.lat[s], p.lon[s]));
    f.reach_km = std::max(f.reach_km, chord_km(f.centre, f.line.back()));
  }
  return f;
}
double point_line_km(const Xyz& p, const std::vector<Xyz>& line) {
  double d = std::numeric_limits<double>::infinity();
  for (size_t s = 0; s + 1 < line.size(); ++s) d = std::min(d, segment_km(p, line[s], line[s + 1]));
  return d;
}
// True when a and b are at least `need` km apart (point to point, point to polyline, polyline to polyline: the
// closest approach of two non-crossing polylines is at a vertex of one of them; crossing ones fail at a vertex near
// the crossing, the segments being far shorter than `need`).
bool apart(const Footprint& a, const Footprint& b, double need) {
  if (chord_km(a.centre, b.centre) - a.reach_km - b.reach_km >= need) return true;
  if (a.line.empty() && b.line.empty()) return chord_km(a.centre, b.centre) >= need;
  if (a.line.empty()) return point_line_km(a.centre, b.line) >= need;
  if (b.line.empty()) return point_line_km(b.centre, a.line) >= need;
  for (const Xyz& p : a.line)
    if (point_line_km(p, b.line) < need) return false;
  for (const Xyz& p : b.line)
    if (point_line_km(p, a.line) < need) return false;
  return true;
}

// A river event at step k of its life: the filament of make_plume with the shape interpolated over the life.
Plume river_plume(const SequenceEvent& e, int64_t k) {
  const int64_t life = e.last_step - e.first_step + 1;
  const double f = life > 1 ? static_cast<double>(k) / static_cast<double>(life - 1) : 0.0;
  const double a0 = e.lat0_begin + (e.lat0_end - e.lat0_begin) * f, a1 = e.lat1_begin + (e.lat1_end - e.lat1_begin) * f;
  const double dlon = e.dlon_begin + (e.dlon_end - e.dlon_begin) * f;
  const double bend = e.bend_begin + (e.bend_end - e.bend_begin) * f;
  const double lon0 = e.lon0_deg * kDeg + e.sweep_ms * kStepSeconds * static_cast<double>(k) /
                                              (kEarthRadius * dm::cos(e.lat0_begin * kDeg));
  Plume p = make_plume(e.hemisphere * a0 * kDeg, lon0, e.hemisphere * a1 * kDeg, dlon * kDeg, bend);
  p.r.sigma_km = e.sigma_km;
  p.r.dtmq = e.dtmq;
  p.r.dwind = e.dwind;
  p.rain = e.rain;
  p.r.decoy = false;
  return p;
}

// A cyclone event at step k of its life: a Holland vortex as draw_storms makes them, at that step's deficit.
Vortex cyclone_vortex(const SequenceEvent& e, int64_t k) {
  const size_t kz = static_cast<size_t>(k);
  Vortex v{};
  v.s.lat = e.lat_deg[kz];
  v.s.lon = e.lon_deg[kz];
  v.s.holland_b = e.holland_b;
  v.s.rmax_km = e.rmax_km;
  v.s.outer_x = e.outer_x;
  v.rout_km = 650;  // winds gone by 650 km: no ring of river-like vapour transport outside the TC label
  make_profile(v, e.strength[kz] * 100.0);
  v.s.core_k = 1.0 + 0.1 * v.s.deficit_hpa;
  v.t500_k = 0.5 + 0.05 * v.s.deficit_hpa;
  v.rw_km = e.rw_km;
  v.dq = 8.0 + 0.2 * v.s.deficit_hpa;
  v.rq_km = e.rq_km;
  v.rain = (3.0 + 0.1 * v.s.deficit_hpa) * 1e-6;
  v.rp_km = e.rp_km;
  v.s.decoy = false;
  return v;
}

// A cyclone born at step `birth`; false when its genesis is over land or its track ends (|lat| > 35, land fraction
// > 0.5) before 12 steps.
bool draw_cyclone(Rng& r, int64_t birth, const Planet& planet, SequenceEvent& e) {
  const double season = season_of(noleap_step_time(birth));
  const double h = r.uniform() < 0.5 + 0.3 * season ? 1.0 : -1.0;  // more in the summer hemisphere
  const double alat = r.uniform(8, 25);
  const double lon0 = r.uniform(0, 360);
  const int64_t life = 12 + r.below(37);         // 12..48 steps
  const double u0 = r.uniform(3, 7);             // westward drift, m/s
  const double v0 = r.uniform(1, 3);             // poleward drift, m/s
  const double lat_r = alat + r.uniform(3, 15);  // recurvature latitude, degrees
  const double ue = r.uniform(1, 5);             // eastward drift once recurved, m/s
  e = SequenceEvent{};
  e.cyclone = true;
  e.hemisphere = h;
  e.first_step = birth;
  e.holland_b = r.uniform(1.1, 1.5);
  e.rmax_km = r.uniform(100, 150);  // large storms: resolved by the TC rule at 96x144 too
  e.outer_x = r.uniform(0.7, 0.9);  // steep outer decay (see rout)
  e.rw_km = r.uniform(200, 320);
  e.rq_km = r.uniform(150, 250);
  e.rp_km = r.uniform(120, 250);
  const double peak = r.uniform(45, 80);  // hPa
  double lat = h * alat * kDeg, lon = lon0 * kDeg;
  if (planet.land(lat, lon) > 0.3) return false;
  for (int64_t k = 0; k < life; ++k) {
    if (k > 0 && (std::fabs(lat) > 35.0 * kDeg || planet.land(lat, lon) > 0.5)) break;
    e.lat_deg.push_back(lat / kDeg);
    e.lon_deg.push_back(wrap360(lon / kDeg));
    const double past = smoothstep((std::fabs(lat) / kDeg - lat_r) / 6.0);
    const double u = -u0 + (u0 + ue) * past, v = v0 * (1.0 + 0.5 * past);
    lon += u * kStepSeconds / (kEarthRadius * dm::cos(lat));
    lat += h * v * kStepSeconds / kEarthRadius;
  }
  const int64_t n = static_cast<int64_t>(e.lat_deg.size());
  if (n < 12) return false;
  e.last_step = birth + n - 1;
  for (int64_t k = 0; k < n; ++k)
    e.strength.push_back(peak * (0.85 + 0.15 * dm::sin(kPi * static_cast<double>(k) / static_cast<double>(n - 1))));
  return true;
}

// A river born at step `birth`; false when more than a quarter of its filament lies over land (fraction > 0.5) at
// some step: over land the vapour transport is too weak for the rule to label it every step.
bool draw_river(Rng& r, int64_t birth, const Planet& planet, SequenceEvent& e) {
  const double season = season_of(noleap_step_time(birth));
  e = SequenceEvent{};
  e.cyclone = false;
  e.hemisphere = r.uniform() < 0.5 - 0.1 * season ? 1.0 : -1.0;  // more in the winter hemisphere
  const int64_t life = 8 + r.below(25);                          // 8..32 steps
  e.first_step = birth;
  e.last_step = birth + life - 1;
  e.lat0_begin = r.uniform(14, 26);
  e.lat0_end = std::clamp(e.lat0_begin + r.uniform(-3, 3), 13.0, 27.0);
  const double span = r.uniform(24, 40);
  e.lat1_begin = std::min(70.0, e.lat0_begin + span);
  const double span_end = std::max(22.0, span + r.uniform(-6, 6));
  e.lat1_end = std::min(70.0, e.lat0_end + span_end);
  e.dlon_begin = r.uniform(20, 60);
  e.dlon_end = std::clamp(e.dlon_begin + r.uniform(-12, 12), 15.0, 65.0);
  e.bend_begin = r.uniform(-0.25, 0.25);
  e.bend_end = std::clamp(e.bend_begin + r.uniform(-0.15, 0.15), -0.3, 0.3);
  e.lon0_deg = r.uniform(0, 360);
  e.sweep_ms = r.uniform(4, 10);
  e.sigma_km = r.uniform(230, 340);  // narrower than the single samples' 280..450: the width test
  e.dtmq = r.uniform(22, 32);
  e.dwind = r.uniform(24, 32);
  e.rain = r.uniform(2, 8) * 1e-7;
  for (int64_t k = 0; k < life; ++k) {
    const Plume p = river_plume(e, k);
    int over_land = 0;
    for (size_t s = 0; s < p.lat.size(); ++s) over_land += planet.land(p.lat[s], p.lon[s]) > 0.5;
    if (4 * over_land > static_cast<int>(p.lat.size())) return false;
    const size_t mid = p.lat.size() / 2;
    e.lat_deg.push_back(p.lat[mid] / kDeg);
    e.lon_deg.push_back(wrap360(p.lon[mid] / kDeg));
    e.strength.push_back(e.dtmq);
  }
  return true;
}

struct Track {
  SequenceEvent e;
  std::vector<Footprint> at;  // per step of the life
};

Track make_track(SequenceEvent e) {
  Track t;
  const int64_t life = e.last_step - e.first_step + 1;
  for (int64_t k = 0; k < life; ++k)
    t.at.push_back(
        e.cyclone ? point_footprint(e.lat_deg[static_cast<size_t>(k)] * kDeg, e.lon_deg[static_cast<size_t>(k)] * kDeg)
                  : plume_footprint(river_plume(e, k)));
  t.e = std::move(e);
  return t;
}

// At every step both are alive: cyclones >= kCycloneSepKm apart, anything with a river >= kRiverSepKm.
bool separated(const Track& a, const Track& b) {
  const int64_t g0 = std::max(a.e.first_step, b.e.first_step), g1 = std::min(a.e.last_step, b.e.last_step);
  const double need = a.e.cyclone && b.e.cyclone ? kCycloneSepKm : kRiverSepKm;
  for (int64_t g = g0; g <= g1; ++g)
    if (!apart(a.at[static_cast<size_t>(g - a.e.first_step)], b.at[static_cast<size_t>(g - b.e.first_step)], need))
      return false;
  return true;
}

// The proposals of block b (a function of (seed, b) alone): 4..7 cyclones and 9..13 rivers, geneses uniform over the
// block's steps, placed in genesis order (ties: draw order), each by up to 30 draws against the earlier ones.
std::vector<Track> block_proposals(uint64_t seed, int64_t block, const Planet& planet) {
  std::vector<Track> out;
  if (block < 0) return out;
  Rng r(seed, Rng::sample_stream(block, kSeqEvents));
  const int nc = 4 + r.below(4);
  const int nr = 9 + r.below(5);
  struct Slot {
    int64_t birth;
    int order;
  };
  std::vector<Slot> slots;
  for (int k = 0; k < nc + nr; ++k) {
    const int64_t offset = r.below(static_cast<int>(kSeqBlock));
    slots.push_back({block * kSeqBlock + offset, k});
  }
  std::stable_sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) { return a.birth < b.birth; });
  for (const Slot& s : slots) {
    for (int attempt = 0; attempt < 30; ++attempt) {
      SequenceEvent e;
      if (s.order < nc) {
        if (!draw_cyclone(r, s.birth, planet, e)) continue;
      } else if (!draw_river(r, s.birth, planet, e)) {
        continue;
      }
      e.key = static_cast<uint64_t>(block) * static_cast<uint64_t>(kSeqBlock) + static_cast<uint64_t>(s.order);
      Track t = make_track(std::move(e));
      bool ok = true;
      for (const Track& o : out)
        if (ok && !separated(t, o)) ok = false;
      if (ok) {
        out.push_back(std::move(t));
        break;
      }
    }
  }
  return out;
}

// The background of step g: the modes of day d = g / 8 and d + 1 (streams (day, kSeqModes), each day's season),
// weighted cos and sin of (pi/2) a, a = (g mod 8) / 8: smooth in time, the same variance at every hour.
std::vector<Mode> sequence_modes(uint64_t seed, int64_t step) {
  const int64_t day = step / 8;
  const double a = static_cast<double>(step % 8) / 8.0;
  const double weight[2] = {dm::cos(0.5 * kPi * a), dm::sin(0.5 * kPi * a)};
  std::vector<Mode> out;
  for (int d = 0; d < 2; ++d) {
    const double w = weight[d];
    if (w == 0) continue;
    Rng r(seed, Rng::sample_stream(day + d, kSeqModes));
    for (Mode m : draw_modes(r, season_of(noleap_step_time((day + d) * 8)))) {
      m.ap *= w;
      m.t_c *= w;
      m.t_s *= w;
      m.r_c *= w;
      m.r_s *= w;
      out.push_back(m);
    }
  }
  return out;
}

}  // namespace

SyntheticSequence::SyntheticSequence(uint64_t seed, int64_t height, int64_t width, int64_t first_step, int64_t steps)
    : gen_(seed, height, width), first_(first_step), steps_(steps) {
  CS_CHECK(first_step >= 0 && steps >= 1 && first_step + steps < (int64_t{1} << 40), "synthetic sequence of ", steps,
           " step(s) from step ", first_step, ": needs first_step >= 0, steps >= 1, first_step + steps < 2^40");
  static_assert(kSeqMaxLife < kSeqBlock, "events of blocks b and b + 2 must never meet");
  const Planet planet(seed);
  const int64_t last = first_step + steps - 1;
  const int64_t b0 = first_step / kSeqBlock - 1, b1 = last / kSeqBlock;
  std::vector<Track> prev = block_proposals(seed, b0 - 1, planet);
  for (int64_t b = b0; b <= b1; ++b) {
    std::vector<Track> cur = block_proposals(seed, b, planet);
    for (const Track& t : cur) {
      if (t.e.last_step < first_step || t.e.first_step > last) continue;
      bool ok = true;
      for (const Track& o : prev)
        if (ok && !separated(t, o)) ok = false;
      if (ok) events_.push_back(t.e);
    }
    prev = std::move(cur);
  }
  // Ids: by first step in the window, then latitude there, then key.
  auto first_in = [&](const SequenceEvent& e) { return std::max(first_step, e.first_step); };
  auto lat_in = [&](const SequenceEvent& e) { return e.lat_deg[static_cast<size_t>(first_in(e) - e.first_step)]; };
  std::sort(events_.begin(), events_.end(), [&](const SequenceEvent& a, const SequenceEvent& b) {
    if (first_in(a) != first_in(b)) return first_in(a) < first_in(b);
    if (lat_in(a) != lat_in(b)) return lat_in(a) < lat_in(b);
    return a.key < b.key;
  });
  for (size_t i = 0; i < events_.size(); ++i) {
    SequenceEvent& e = events_[i];
    e.id = static_cast<int64_t>(i) + 1;
    for (int64_t g = first_in(e); g <= std::min(last, e.last_step); ++g) {
      const int64_t k = g - e.first_step;
      TruthPoint p;
      p.event_id = e.id;
      p.cyclone = e.cyclone;
      p.step = g;
      p.lat = e.lat_deg[static_cast<size_t>(k)];
      p.lon = e.lon_deg[static_cast<size_t>(k)];
      p.strength = e.strength[static_cast<size_t>(k)];
      if (!e.cyclone) {
        const Plume pl = river_plume(e, k);
        for (size_t s = 0; s < pl.lat.size(); s += 4) p.path.emplace_back(pl.lat[s] / kDeg, wrap360(pl.lon[s] / kDeg));
      }
      truth_.push_back(std::move(p));
    }
  }
}

SyntheticSample SyntheticSequence::generate(int64_t k) const {
  CS_CHECK(k >= 0 && k < steps_, "synthetic sequence step ", k, " is outside 0..", steps_ - 1);
  const int64_t g = first_ + k;
  const int64_t h = gen_.h_, w = gen_.w_;
  SyntheticSample out;
  out.time = noleap_step_time(g);
  out.file_name = sample_file_name(out.time);
  const Grid grid(h, w);
  const Planet planet(gen_.seed_);

  // The events alive at g, in key order: the sums below do not depend on the window's ids.
  std::vector<const SequenceEvent*> active;
  for (const SequenceEvent& e : events_)
    if (e.first_step <= g && g <= e.last_step) active.push_back(&e);
  std::sort(active.begin(), active.end(),
            [](const SequenceEvent* a, const SequenceEvent* b) { return a->key < b->key; });
  std::vector<Vortex> storms;
  std::vector<Plume> rivers;
  std::vector<Footprint> placed;
  for (const SequenceEvent* e : active) {
    if (e->cyclone) {
      storms.push_back(cyclone_vortex(*e, g - e->first_step));
      placed.push_back(point_footprint(storms.back().s.lat * kDeg, storms.back().s.lon * kDeg));
    } else {
      rivers.push_back(river_plume(*e, g - e->first_step));
      placed.push_back(plume_footprint(rivers.back()));
    }
  }
  auto clear_of_events = [&](const Footprint& f) {
    for (const Footprint& p : placed)
      if (!apart(f, p, kDecoySepKm)) return false;
    return true;
  };
  std::vector<Vortex> lows;
  for (Vortex& v : draw_lows(gen_.seed_, g, planet, storms))
    if (clear_of_events(point_footprint(v.s.lat * kDeg, v.s.lon * kDeg))) {
      if (v.s.vmax > kDecoyMaxWind) {  // weaker than the single samples' (13 m/s): no river-like vapour transport
        v.s.vmax = kDecoyMaxWind;
        make_profile(v, 0.0);
      }
      lows.push_back(std::move(v));
    }
  std::vector<Plume> plumes;
  for (Plume& p : draw_plumes(gen_.seed_, g))
    if (clear_of_events(plume_footprint(p))) plumes.push_back(std::move(p));
  const std::vector<Mode> modes = sequence_modes(gen_.seed_, g);

  Perturbation pert(static_cast<size_t>(h * w));
  std::vector<Near> near(static_cast<size_t>(h * w));
  for (const auto* list : {&storms, &lows})
    for (const Vortex& v : *list) {
      render_vortex(grid, v, pert);
      out.storms.push_back(v.s);
    }
  for (const auto* list : {&rivers, &plumes})
    for (const Plume& p : *list) {
      render_plume(grid, p, near, pert);
      out.rivers.push_back(p.r);
    }
  const Tensor data = assemble(grid, gen_.land_nf_, gen_.zs_nf_, out.time, modes, pert);
  out.labels = flip_rows(derive_labels_north_first(data, LabelRules{}, &out.report));
  report_south_first(out.report, h);
  out.data = flip_rows(data);
  return out;
}

}  // namespace climseg::io
