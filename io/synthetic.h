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
#include <utility>
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
  friend class SyntheticSequence;  // renders with the same planet
  uint64_t seed_;
  int64_t h_, w_;
  std::vector<float> land_, zs_;        // south first (the API)
  std::vector<float> land_nf_, zs_nf_;  // north first (the model's own computation)
};

// ---- sequences: events that live and move (`data generate --format netcdf --sequence`) ------------------------
// A window of consecutive 3-hourly noleap steps [first_step, first_step + steps) in which tropical cyclones and
// atmospheric rivers persist for several steps and move along tracks, with a truth catalogue of what was placed
// (the target of `climseg events`). Everything is a function of (seed, absolute step), never of the window: the
// same step has the same events, the same bits, whatever window asked for it.
//   - Events are a process in absolute time: geneses are drawn per block of 64 steps (block b = steps
//     [64 b, 64 b + 64)) from Philox stream (block, purpose "sequence events"): 4..7 cyclones and 9..13 rivers,
//     geneses uniform over the block. A block's proposals are placed in order of genesis step, each by rejection
//     (up to 30 draws) against the block's earlier proposals; a proposal is kept unless it conflicts with a proposal
//     of block b - 1. Lives are at most 48 steps, so only adjacent blocks meet, and whether an event exists depends
//     on blocks b - 1 and b alone.
//   - Separation at every step two events coexist: cyclone centres >= 1800 km apart; a river's filament (polyline)
//     >= 1500 km from every cyclone centre and from every other river's filament.
//   - Cyclone: genesis over ocean (land fraction <= 0.3) at 8..25 degrees latitude, more in the summer hemisphere;
//     life 12..48 steps, ended early (and redrawn if under 12 steps) before it passes |lat| 35 or land fraction 0.5.
//     Drift 3..7 m/s westward and 1..3 m/s poleward, recurving past a drawn latitude (|lat0| + 3..15 degrees): the
//     zonal drift turns to 1..5 m/s eastward and the poleward drift grows by half. A Holland vortex as in the
//     single samples but large and compact (radius of maximum wind 100..150 km, Holland B 1.1..1.5, outer exponent
//     0.7..0.9, winds gone by 650 km) and strong: central deficit 0.85..1 of a peak of 45..80 hPa (sine-shaped over
//     the life). Large so that the TC rule finds its winds at 96x144 too; compact so that no ring of river-like
//     vapour transport survives outside its TC label.
//   - River: a filament as in the single samples (a quadratic Bezier from 14..26 degrees to 24..40 degrees further
//     poleward, 20..60 degrees of longitude eastward), life 8..32 steps, its start longitude sweeping eastward at
//     4..10 m/s and its shape (start and end latitude, longitudinal extent, bend) changing linearly over the life;
//     narrower than the single samples' (sd 230..340 km, for the width test), core TMQ 22..32 kg m-2 and wind
//     24..32 m/s, constant; redrawn if more than a quarter of it lies over land at some step.
//   - Per step: the background modes are smooth in time (the modes of day d and d + 1, drawn from stream (day,
//     "sequence modes"), weighted cos and sin of (pi/2)(hour/24): assemble is linear in the mode amplitudes); decoy
//     lows and plumes are drawn from (seed, step) as in the single samples, lows >= 1500 km from the cyclones placed
//     by rejection, and any decoy within 1500 km of an active event (cyclone centre or river filament) dropped;
//     decoy lows' peak wind is capped at 9 m/s (13 in the single samples), which keeps them from being labelled
//     as rivers in the moist tropics.
//   About 2.3 cyclones and 3 rivers are alive at a time. Measured (docs/data.md "Sequence mode"): 99.9% of the
//   (event, step) points labelled at 96x144 and 192x288; no TC label away from a placed cyclone; 0.02..0.03 AR
//   regions a step that touch no placed river.
// SyntheticGenerator::generate is unchanged by all this (its golden checksums hold).
struct SequenceEvent {
  int64_t id = 0;       // 1.. within the window: by first step in the window, then latitude there (south first)
  uint64_t key = 0;     // the event's name in absolute time (block * 64 + its slot in the block): window-independent
  bool cyclone = true;  // tropical cyclone, else atmospheric river
  int64_t first_step = 0, last_step = 0;  // its whole life (inclusive), absolute steps; may reach outside the window
  double hemisphere = 1;                  // +1 north, -1 south
  // Per step of the life (last_step - first_step + 1 entries): cyclone centre or the river filament's midpoint
  // (curve parameter 0.5), degrees, lon in [0, 360); strength: central deficit hPa (cyclone) or core TMQ added
  // kg m-2 (river).
  std::vector<double> lat_deg, lon_deg, strength;
  // Cyclone: fixed vortex shape (SyntheticStorm's meaning), moisture, warm-core and rain radii.
  double rmax_km = 0, holland_b = 0, outer_x = 0, rw_km = 0, rq_km = 0, rp_km = 0;
  // River: start and end of life of the equatorward latitude, the poleward latitude, the longitudinal extent and the
  // bend (all degrees except bend, a fraction of the chord; |lat|, so the hemisphere applies), the start longitude at
  // genesis and its eastward sweep (m/s at the start latitude), the across-filament sd, core TMQ and wind.
  double lat0_begin = 0, lat0_end = 0, lat1_begin = 0, lat1_end = 0, dlon_begin = 0, dlon_end = 0;
  double bend_begin = 0, bend_end = 0, lon0_deg = 0, sweep_ms = 0;
  double sigma_km = 0, dtmq = 0, dwind = 0, rain = 0;
};

// One per (event, step of the window). Cyclone: lat, lon the centre, strength the central deficit (hPa). River:
// lat, lon the filament's midpoint, strength the core TMQ added (kg m-2), path 9 points (lat, lon degrees, lon in
// [0, 360)) at curve parameters 0, 1/8, .., 1. Sorted by event id, then step.
struct TruthPoint {
  int64_t event_id = 0;
  bool cyclone = true;
  int64_t step = 0;  // absolute 3-hourly step
  double lat = 0, lon = 0;
  double strength = 0;
  std::vector<std::pair<double, double>> path;
};

class SyntheticSequence {
 public:
  // The events alive in [first_step, first_step + steps) on an H x W grid; first_step >= 0, steps >= 1,
  // first_step + steps < 2^40.
  SyntheticSequence(uint64_t seed, int64_t height, int64_t width, int64_t first_step, int64_t steps);

  // Step first_step + k (0 <= k < steps), dated noleap_step_time(first_step + k): storms and rivers list the
  // events placed (decoy false) and the decoys, labels derive_labels(data).
  SyntheticSample generate(int64_t k) const;

  const std::vector<SequenceEvent>& events() const { return events_; }  // by id
  const std::vector<TruthPoint>& truth() const { return truth_; }
  int64_t first_step() const { return first_; }
  int64_t steps() const { return steps_; }
  const SyntheticGenerator& generator() const { return gen_; }

 private:
  SyntheticGenerator gen_;
  int64_t first_, steps_;
  std::vector<SequenceEvent> events_;
  std::vector<TruthPoint> truth_;
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
