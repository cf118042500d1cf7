// What `climseg events` writes (docs/events.md "Outputs"), from the objects and the tracking (analysis/events.h):
//   objects.csv          one row per object (event id, time, class, area, centroid, box, intensity)
//   events.csv           one row per event (class, start, end, duration, genesis and lysis, track length, maxima,
//                        split/merge links, the track as "lat lon;lat lon;...")
//   counts_per_step.csv  per time step: objects and area per class
//   counts_per_year.csv  per calendar year: events started, object-steps and steps per class
//   event_ids.nc         event_id(time, lat, lon): the event of every pixel (0 none), CF-NetCDF
//   frequency.nc         tc_frequency, ar_frequency (fraction of steps in which each cell is inside a catalogued
//                        cyclone or river) and tc_genesis_density (cyclone geneses within 500 km per year)
//   verification.csv     with a truth catalogue (data generate --sequence's truth.csv): hits, misses, false alarms
// Every file is written atomically (engine/atomic_file.h). Units are in the CSV column names (area_km2, ...).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "analysis/events.h"
#include "io/cf_grid.h"

namespace climseg::analysis {

// The time axis of the series and its grid, as the outputs need them.
struct SeriesInfo {
  io::CfGrid grid;
  io::CfTimeAxis axis;
  std::vector<double> time_values;  // in axis units
  std::vector<double> hours;
  std::vector<std::string> iso;
  std::vector<int> years;
  double days_per_year = 365;
  int64_t steps() const { return static_cast<int64_t>(iso.size()); }
};

void write_objects_csv(const std::string& path, const SeriesInfo& s, const std::vector<Object>& objects,
                       const Tracking& tr, bool fields);
void write_events_csv(const std::string& path, const SeriesInfo& s, const std::vector<Object>& objects,
                      const Tracking& tr, bool fields);
void write_counts_csv(const std::string& per_step, const std::string& per_year, const SeriesInfo& s,
                      const std::vector<Object>& objects, const Tracking& tr);

struct FrequencyMaps {
  std::vector<float> tc, ar;     // (H,W) fraction of steps, row 0 south
  std::vector<float> genesis;    // (H,W) cyclone geneses within genesis_radius_km per year
  double genesis_radius_km = 500;
  double years = 0;              // the series' length in years (steps * dt / days_per_year / 24)
};
FrequencyMaps frequency_maps(const SeriesInfo& s, const std::vector<Object>& objects, const Tracking& tr);

// NetCDF outputs (builds with libnetcdf; elsewhere they throw). attrs: global attributes after Conventions.
void write_event_ids_nc(const std::string& path, const SeriesInfo& s, const std::vector<Object>& objects,
                        const Tracking& tr, const std::vector<std::pair<std::string, std::string>>& attrs);
void write_frequency_nc(const std::string& path, const SeriesInfo& s, const FrequencyMaps& f,
                        const std::vector<std::pair<std::string, std::string>>& attrs);

// ---- verification against a truth catalogue -------------------------------------------------------------------
struct TruthPoint {
  int64_t event_id = 0;
  int cls = 0;
  std::string time;  // ISO
  double lat = 0, lon = 0, strength = 0;
  std::vector<std::pair<double, double>> path;  // rivers: points along the filament (lat, lon)
};
// truth.csv of `climseg data generate --sequence` (header event_id,class,step,time,lat_deg,lon_deg,strength,path;
// any column order; an event is identified by its class and id together).
std::vector<TruthPoint> read_truth_csv(const std::string& path);

struct VerifyOptions {
  double tc_match_km = 500;  // a cyclone's centre within this distance of the found object's centroid
  int ar_match_points = 3;   // at least this many of a river's path points inside (or next to) the found object
};
struct TruthMatch {
  int64_t truth_id = 0;
  int cls = 0;
  int64_t truth_steps = 0;       // steps of the truth event within the series
  std::string first, last;       // its first and last time
  int64_t found_id = 0;          // the found event matching most steps (0: missed)
  int64_t matched_steps = 0;     // steps at which found_id's object matches
  int64_t found_steps = 0;       // steps found_id lasts
  int64_t fragments = 0;         // found events matching at least one step
  double mean_error_km = 0;      // centroid to truth position over matched steps
  bool hit = false;              // matched_steps >= half of truth_steps
};
struct Verification {
  std::vector<TruthMatch> truth;
  std::vector<int64_t> false_alarms;  // found events matching no truth point
  int64_t hits[kClasses] = {0, 0, 0}, misses[kClasses] = {0, 0, 0}, false_alarm_count[kClasses] = {0, 0, 0};
  int64_t truth_events[kClasses] = {0, 0, 0}, unmatched_times = 0;
  int64_t found_events[kClasses] = {0, 0, 0};  // catalogued events per class (FAR = false alarms / found events)
};
Verification verify_events(const std::vector<TruthPoint>& truth, const SeriesInfo& s, const std::vector<Object>& objects,
                           const Tracking& tr, const VerifyOptions& opt);
void write_verification_csv(const std::string& path, const Verification& v, const Tracking& tr);

}  // namespace climseg::analysis
