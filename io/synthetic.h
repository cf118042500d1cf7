// Synthetic climate samples in the DeepCAM layout (../shared/spec/synthetic-data.md; docs/data.md "Synthetic data"
// describes the model and the class fractions it reaches).
//
// A sample is 16 channels (DeepCAM order: TMQ U850 V850 UBOT VBOT QREFHT PS PSL T200 T500 PRECT TS TREFHT Z1000
// Z200 ZBOT) on a global H x W latitude-longitude grid, south first as everywhere in climseg (io/cf_grid.h): row i at
// latitude -90 + (i + 0.5) * 180 / H degrees (row 0 southernmost, as in CAM history files; global_grid(H, W)), column
// j at longitude j * 360 / W degrees east. Data, labels, land_fraction(), topography() and the rows in a LabelReport
// all use this orientation, and derive_labels() expects it (the cyclonic sense of the wind depends on the
// hemisphere). Until 2026-12-06 row 0 was 90N; the weather at each (lat, lon) is bit for bit what it was then (the
// model still computes north-first inside io/synthetic.cpp and flips rows at the API). The weather is built from
//   - a planet fixed by the seed alone (land fraction and topography: the same continents in every sample);
//   - a zonal climatology for the sample's date and time (season, thermal equator, diurnal cycle over land);
//   - smooth large-scale anomalies (a few zonal-wave modes) with geostrophic winds from their pressure gradients;
//   - 0..6 tropical cyclones (Holland-profile vortices in gradient-wind balance, warm core, moist rainy core),
//     0..4 atmospheric rivers (long narrow filaments of moisture and along-filament wind), and decoys: weak
//     cold-core lows, short plumes and wide plumes;
// then every channel is derived from those in one pass so the channels agree with each other (humidity from the
// temperature by Clausius-Clapeyron, heights from the hypsometric equation, surface pressure from the topography).
// The labels are then derived from the float32 fields alone by TECA-like rules (derive_labels), never painted.
//
// Determinism: a sample is a function of (seed, index, H, W) and its date only; generate(index) dates sample `index`
// by synthetic_sample_time(index), generate(index, time) by the caller's date (the NetCDF history files: 3-hourly
// steps of a noleap calendar). Random parameters come from engine/philox.h (counter-based: stream = sample index and
// a purpose tag), not from any library RNG. Only IEEE-754 operations that
// are correctly rounded everywhere are used where bits reach the output: + - * / and std::sqrt in double, exact
// operations (floor, comparisons, conversions), and this file's own exp/log/sin/cos (polynomials after exact range
// reduction), never libm's transcendental functions, whose last bit differs between libm versions and machines. The
// build compiles with -ffp-contract=off (CMakeLists.txt), so no fused multiply-add changes a rounding, and the code
// runs on one thread. The random draws do not depend on H and W: the same seed and index give the same weather
// at every resolution.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace climseg::io {

// ---- date and file name --------------------------------------------------------------------------------------
// Sample `index` is 3-hourly step index * 163 after 1996-01-01 00:00 (163 steps = 20 days 9 hours: 18 samples a
// year, every season and every time of day), ensemble run 1.
struct SampleTime {
  int year = 1996, month = 1, day = 1;
  int step = 0;  // 3-hourly time index 0..7 (hour 3 * step, UTC)
  int run = 1;
  int day_of_year = 0;  // 0-based
};
SampleTime synthetic_sample_time(int64_t index);
std::string sample_file_name(const SampleTime& t);  // "data-1996-01-21-03-1.h5"

// The NetCDF history files (`data generate --format netcdf`): 3-hourly steps of the noleap calendar (365-day years,
// no Feb 29) counted from 2000-01-01 00:00, the origin of their time axis ("days since 2000-01-01 00:00:00"; step k
// is at 0.125 k days). noleap_step_time(k) is step k's date (k >= 0; run 1); noleap_step_index inverts it for a
// date of the noleap calendar at a 3-hourly time (year 2000..9999; throws otherwise, naming the date).
SampleTime noleap_step_time(int64_t step);
int64_t noleap_step_index(int year, int month, int day, int hour);
// "synthetic.cam.h2.2000-01-01-10800.nc" for kind "cam.h2" (CAM's history-file name: date of the first step and its
// seconds of the day, 5 digits), "synthetic.labels.2000-01-01-10800.nc" for kind "labels".
std::string history_file_name(const std::string& kind, const SampleTime& first);

// ---- what was placed (for tests and diagnostics; the labels never read it) -----------------------------------
struct SyntheticStorm {
  double lat = 0, lon = 0;  // centre, degrees
  double vmax = 0;          // peak gradient wind at 850 hPa, m/s
  double rmax_km = 0;       // radius of maximum wind
  double holland_b = 0;     // Holland profile shape
  double outer_x = 0;       // Holland et al. (2010) outer exponent (0.5: Holland 1980)
  double deficit_hpa = 0;   // central sea-level-pressure deficit, from gradient-wind balance
  double core_k = 0;        // temperature anomaly at 200 hPa in the core (negative: cold-core decoy)
  bool decoy = false;       // a weak low, below cyclone strength
};
struct SyntheticRiver {
  double lat0 = 0, lon0 = 0, lat1 = 0, lon1 = 0;  // equatorward start and poleward end, degrees
  double length_km = 0, sigma_km = 0;             // along-path length, Gaussian half-width (sd) across
  double dtmq = 0, dwind = 0;                     // core TMQ (kg/m^2) and along-filament 850 hPa wind (m/s) added
  bool decoy = false;                             // a short or a wide plume
};

// ---- labels from the fields ------------------------------------------------------------------------------------
// TECA-like rules, applied to the float32 channels only (distances from the grid geometry; rows south first).
// Tropical cyclone: a PSL minimum (strict within tc_min_radius_km; of equal pressures the pixel in the northernmost
// row, then the lowest column, wins) at |lat| <= tc_max_lat whose deficit below the
// mean PSL of the 600..900 km annulus is >= tc_min_deficit_pa, with a warm core (max of (T200+T500)/2 within
// 250 km minus its annulus mean >= tc_warm_core_k) and an azimuthal-mean cyclonic tangential wind (UBOT, VBOT)
// >= tc_wind in some distance bin. It is labelled out to the radius where that mean wind falls below tc_wind
// (linear between bins). River: pixels not labelled TC with IVT = TMQ * |(U850, V850)| >= ar_ivt,
// TMQ >= ar_min_tmq and |lat| >= ar_min_lat, 8-connected (periodic in longitude); a component is a river when its
// length (the longest path inside it, by two Dijkstra sweeps over the pixel graph) >= ar_min_length_km, its width
// (area / length) <= ar_max_width_km and its equatorward end is at |lat| <= ar_max_start_lat.
struct LabelRules {
  double tc_max_lat = 40;
  double tc_min_radius_km = 300;
  double tc_min_deficit_pa = 500;
  double tc_warm_core_k = 1.0;
  double tc_wind = 17;
  double ar_ivt = 550;     // kg m^-1 s^-1 (TMQ times the 850 hPa wind speed)
  double ar_min_tmq = 15;  // kg m^-2
  double ar_min_lat = 12;
  double ar_max_start_lat = 40;
  double ar_min_length_km = 2000;
  double ar_max_width_km = 1000;
};

struct DetectedCyclone {
  int64_t row = 0, col = 0;
  double lat = 0, lon = 0;
  double deficit_pa = 0, warm_core_k = 0, max_wind = 0, radius_km = 0;
  bool labelled = false;  // passed every test
};
struct DetectedRiver {
  int64_t pixels = 0;
  double length_km = 0, width_km = 0, min_abs_lat = 0;
  bool labelled = false;
};
struct LabelReport {
  std::vector<DetectedCyclone> cyclones;  // every candidate pressure minimum examined
  std::vector<DetectedRiver> rivers;      // every connected IVT region
};

// data: host float32 (1,H,W,16), the raw (unnormalised) channels, row 0 southernmost. Returns (1,H,W,1) uint8 labels
// in the same orientation (and report rows counted from the south).
Tensor derive_labels(const Tensor& data, const LabelRules& rules = {}, LabelReport* report = nullptr);

// ---- the generator -------------------------------------------------------------------------------------------
struct SyntheticSample {
  Tensor data;    // (1,H,W,16) float32
  Tensor labels;  // (1,H,W,1) uint8, derive_labels(data)
  SampleTime time;
  std::string file_name;
  std::vector<SyntheticStorm> storms;  // cyclones and decoy lows as placed
  std::vector<SyntheticRiver> rivers;  // rivers and decoy plumes as placed
  LabelReport report;
};

class SyntheticGenerator {
 public:
  // Builds the planet (land fraction, topography) for this seed on an H x W grid (H, W >= 8).
  SyntheticGenerator(uint64_t seed, int64_t height, int64_t width);

  // Sample `index` dated synthetic_sample_time(index): what `data generate` writes to HDF5.
  SyntheticSample generate(int64_t index) const;
  // The weather drawn from (seed, index), dated `time` (season, thermal equator and diurnal cycle from its
  // day_of_year and step; year, month, day and run only name the file). 0 <= index < 2^56.
  SyntheticSample generate(int64_t index, const SampleTime& time) const;

  int64_t height() const { return h_; }
  int64_t width() const { return w_; }
  uint64_t seed() const { return seed_; }
  // (H,W) row-major, row 0 southernmost.
  const std::vector<float>& land_fraction() const { return land_; }  // 0 ocean .. 1 land
  const std::vector<float>& topography() const { return zs_; }       // surface height, m

 private:
  uint64_t seed_;
  int64_t h_, w_;
  std::vector<float> land_, zs_;        // south first (the API)
  std::vector<float> land_nf_, zs_nf_;  // north first (the model's own computation)
};

// ---- CAM-like NetCDF history files (io/synthetic_netcdf.cpp; only in builds with libnetcdf: CLIMSEG_HAVE_NETCDF) --
// A history file of consecutive steps on global_grid(H, W) (io/cf_grid.h: dims time (unlimited), lat, lon; time in
// "days since 2000-01-01 00:00:00", calendar noleap), NetCDF-4, written to `path` as given (the caller makes it
// atomic). write_history_data: the 16 channels as NC_FLOAT (time, lat, lon) variables named and described as CAM
// writes them (units, long_name); write_history_labels: `mask` (time, lat, lon) NC_BYTE with CF flag attributes
// (0 background, 1 tropical_cyclone, 2 atmospheric_river), the layout `climseg predict` writes for NetCDF output.
// `steps` are (1,H,W,16) float32 / (1,H,W,1) uint8 host tensors, south first; time_days one value per step.
// Global attributes: Conventions "CF-1.8", title, source, seed. Throws naming the file.
void write_history_data(const std::string& path, const std::vector<Tensor>& steps, const std::vector<double>& time_days,
                        uint64_t seed);
void write_history_labels(const std::string& path, const std::vector<Tensor>& steps,
                          const std::vector<double>& time_days, uint64_t seed);
// CAM's units and long_name of channel c (DeepCAM order, 0..15).
const char* history_units(int64_t c);
const char* history_long_name(int64_t c);

// ---- deterministic elementary functions (exposed for their tests) --------------------------------------------
// Only + - * / on doubles, exact range reduction and fixed polynomials: the same bits on every IEEE-754 machine.
// Within about one ulp of glibc's results (tested: exp |x| <= 700 relative, log x > 0 relative, sin and cos
// |x| <= 1e4 absolute); exp flushes results below 2^-1021 to zero.
namespace detmath {
double exp(double x);
double log(double x);
double sin(double x);
double cos(double x);
}  // namespace detmath

}  // namespace climseg::io
