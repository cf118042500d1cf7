// Objects and events: what `climseg events` finds in segmentation masks (docs/events.md).
//
// An OBJECT is one connected region of one class at one time step (analysis/components.h: 8-connected, periodic in
// longitude on a global grid, never across the poles) whose area reaches the class's minimum. Measured on the sphere
// (analysis/sphere.h): area, the centroid (the normalised area-weighted mean of the cells' unit vectors, so a region
// across the dateline or around a pole has its centroid where it is), the latitude range and the shortest longitude
// range holding every column (lon_west..lon_east, eastward; lon_west > lon_east when it crosses the grid's seam).
// With the input fields, its intensity: for cyclones the maximum wind speed at the lowest model level
// sqrt(UBOT^2 + VBOT^2), the minimum PSL and the maximum PRECT; for rivers the maximum and area-weighted mean TMQ and
// a vapour-transport proxy max(TMQ * |(U850, V850)|) (integrated vapour times the 850 hPa wind: a proxy for the
// integrated vapour transport IVT, which needs the humidity and wind on every level).
//
// An EVENT is a chain of objects of one class at successive time steps (tracking):
//   - Candidate links join an object of an open event (its last object) to an object of the same class at the
//     current step: by overlap (the pixels they share, counted on the grid), and for cyclones also by centroid
//     distance when they do not overlap (at most tc_max_speed_kmh times the hours between them).
//   - An event may miss up to max_gap steps (a detector that blinks keeps one event); links across a gap are
//     considered only after every link between consecutive steps. Gaps count in time as well: where the series has
//     a hole (a missing file), k typical steps between two times count as k - 1 missing steps, so events are never
//     joined across a hole longer than max_gap steps.
//   - Links are taken greedily in the order: fewer missing steps first, then larger overlap, then shorter distance,
//     then the older event, then the object first in raster order. Each event continues into at most one object and each
//     object continues at most one event.
//   - Split: an object left without a predecessor starts a new event; if it had a candidate link to an event that
//     continued into another object, the new event records that event as split_from.
//   - Merge: an event left without a successor whose candidate object was taken by another event ends here, with
//     merged_into that event. Otherwise an event without a successor stays open for max_gap steps, then ends.
//   - Events shorter than the class's minimum duration are dropped (with their objects), and the rest are numbered
//     1, 2, ... in the order they started (then raster order of their first object). A split_from or merged_into
//     naming a dropped event becomes 0.
// Duration is (time of the last step - time of the first) + dt, dt the series' typical step (the median difference
// of consecutive times): an event seen at one 3-hourly step lasts 3 hours. A series of one step has no typical step
// (dt 0), so every event in it lasts 0 hours.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "analysis/components.h"
#include "analysis/sphere.h"

namespace climseg::analysis {

inline constexpr int kClasses = 3;  // 0 background, 1 tropical cyclone, 2 atmospheric river
const char* class_name(int cls);    // "background", "tropical_cyclone", "atmospheric_river"

// The input fields an object's intensity comes from, in this order in a (H,W,kFieldCount) float buffer.
enum Field { kUbot, kVbot, kPsl, kPrect, kTmq, kU850, kV850, kFieldCount };
const char* field_name(int f);  // "UBOT", ...

struct Object {
  int64_t step = 0;     // index of the time step in the series
  int cls = 0;          // 1 or 2
  int32_t label = 0;    // its component number at that step (raster order)
  int64_t pixels = 0;
  double area_km2 = 0;
  double lat = 0, lon = 0;  // centroid, degrees (lon in the grid's convention)
  double lat_min = 0, lat_max = 0, lon_west = 0, lon_east = 0;  // of cell centres
  static constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
  double max_wind = kNone, min_psl = kNone, max_prect = kNone;            // cyclones: m s-1, Pa, m s-1
  double max_tmq = kNone, mean_tmq = kNone, max_ivt_proxy = kNone;        // rivers: kg m-2, kg m-2, kg m-1 s-1
  std::vector<Run> runs;
};

struct ObjectOptions {
  double min_area_km2[kClasses] = {0, 0, 0};
};

// The objects of one step's mask (H,W) with their measures; `fields` (H,W,field_stride) with the Field channels
// first, or null. Appends to `out` in label order. `scratch` is reused between calls.
void find_objects(const uint8_t* mask, const GridGeometry& geo, int64_t step, const float* fields,
                  const ObjectOptions& opt, Components& scratch, std::vector<Object>& out,
                  int64_t field_stride = kFieldCount);

struct TrackOptions {
  double min_hours[kClasses] = {0, 0, 0};  // minimum duration per class
  int max_gap = 1;                          // steps an event may be missing and continue
  double tc_max_speed_kmh = 80;             // cyclone links without overlap: centroid distance / hours
};

struct Event {
  int64_t id = 0;
  int cls = 0;
  int64_t first_step = 0, last_step = 0;
  std::vector<size_t> objects;  // indices into the object list, one per step present (increasing step)
  int64_t split_from = 0, merged_into = 0;
  double duration_h = 0;
};

struct Tracking {
  std::vector<Event> events;          // the kept events, by id (events[i].id == i + 1)
  std::vector<int64_t> object_event;  // per object: its event's id, 0 when its event was dropped
  int64_t dropped[kClasses] = {0, 0, 0};  // events shorter than the minimum duration
  double dt_hours = 0;                // the typical step
};

// objects: every object of the series, ordered by step then label (as find_objects appends them step by step).
// hours: the time of each step in hours from any origin (increasing). height/width: the grid (for overlaps).
Tracking track_events(const std::vector<Object>& objects, const std::vector<double>& hours, int64_t height,
                      int64_t width, const TrackOptions& opt);

// Does the object cover cell (row, col)? (binary search over its runs)
bool object_covers(const Object& o, int64_t row, int64_t col);

}  // namespace climseg::analysis
