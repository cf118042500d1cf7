#include "analysis/events.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "engine/check.h"

namespace climseg::analysis {

const char* class_name(int cls) {
  switch (cls) {
    case 0: return "background";
    case 1: return "tropical_cyclone";
    case 2: return "atmospheric_river";
  }
  return "unknown";
}

const char* field_name(int f) {
  static const char* names[kFieldCount] = {"UBOT", "VBOT", "PSL", "PRECT", "TMQ", "U850", "V850"};
  return f >= 0 && f < kFieldCount ? names[f] : "?";
}

namespace {

// The shortest longitude range holding every column of the object: the complement of the largest run of empty
// columns (circular on a periodic grid).
void lon_range(const std::vector<Run>& runs, size_t b, size_t e, const GridGeometry& geo, double& west, double& east) {
  std::vector<std::pair<int32_t, int32_t>> iv;
  iv.reserve(e - b);
  for (size_t i = b; i < e; ++i) iv.emplace_back(runs[i].c0, runs[i].c1);
  std::sort(iv.begin(), iv.end());
  std::vector<std::pair<int32_t, int32_t>> m;  // merged, disjoint, sorted
  for (const auto& x : iv) {
    if (!m.empty() && x.first <= m.back().second + 1) m.back().second = std::max(m.back().second, x.second);
    else m.push_back(x);
  }
  const int64_t W = geo.width;
  size_t start = 0;  // index of the interval after the largest gap
  if (geo.periodic) {
    int64_t best = -1;
    for (size_t i = 0; i < m.size(); ++i) {
      const auto& prev = m[(i + m.size() - 1) % m.size()];
      int64_t gap = m[i].first - prev.second - 1;
      if (i == 0) gap = m[0].first + (W - 1 - m.back().second);  // across the seam
      if (gap > best) {
        best = gap;
        start = i;
      }
    }
  }
  const size_t end = (start + m.size() - 1) % m.size();
  west = geo.lon[static_cast<size_t>(m[start].first)];
  east = geo.lon[static_cast<size_t>(m[end].second)];
}

}  // namespace

void find_objects(const uint8_t* mask, const GridGeometry& geo, int64_t step, const float* fields,
                  const ObjectOptions& opt, Components& scratch, std::vector<Object>& out, int64_t field_stride) {
  CS_CHECK(field_stride >= kFieldCount, "find_objects: field stride ", field_stride);
  label_components(mask, geo.height, geo.width, geo.periodic, scratch);
  const int64_t W = geo.width;
  for (int32_t k = 1; k <= scratch.count; ++k) {
    const size_t b = static_cast<size_t>(scratch.first[static_cast<size_t>(k) - 1]),
                 e = static_cast<size_t>(scratch.first[static_cast<size_t>(k)]);
    const int cls = scratch.cls[static_cast<size_t>(k) - 1];
    CS_CHECK(cls < kClasses, "class value ", cls, " in the mask (classes are 0 background, 1 tropical cyclone, ",
             "2 atmospheric river)");
    Object o;
    o.step = step;
    o.cls = cls;
    o.label = k;
    double area = 0, x = 0, y = 0, z = 0;
    int32_t rmin = scratch.runs[b].row, rmax = rmin;
    for (size_t i = b; i < e; ++i) {
      const Run& r = scratch.runs[i];
      const size_t row = static_cast<size_t>(r.row), c0 = static_cast<size_t>(r.c0), c1 = static_cast<size_t>(r.c1) + 1;
      const double f = geo.row_factor[row];
      const double w = geo.cum_w[c1] - geo.cum_w[c0];
      area += f * w;
      x += f * geo.cos_lat[row] * (geo.cum_cos[c1] - geo.cum_cos[c0]);
      y += f * geo.cos_lat[row] * (geo.cum_sin[c1] - geo.cum_sin[c0]);
      z += f * geo.sin_lat[row] * w;
      o.pixels += r.c1 - r.c0 + 1;
      rmin = std::min(rmin, r.row);
      rmax = std::max(rmax, r.row);
    }
    o.area_km2 = area;
    if (area < opt.min_area_km2[cls]) continue;
    o.lat = std::atan2(z, std::hypot(x, y)) / kDegToRad;
    o.lon = grid_lon(std::atan2(y, x) / kDegToRad, geo);
    o.lat_min = geo.lat[static_cast<size_t>(rmin)];
    o.lat_max = geo.lat[static_cast<size_t>(rmax)];
    lon_range(scratch.runs, b, e, geo, o.lon_west, o.lon_east);
    if (fields) {
      double mx_wind = -1, mn_psl = 1e300, mx_prect = -1e300, mx_tmq = -1e300, sum_tmq = 0, mx_ivt = -1e300;
      for (size_t i = b; i < e; ++i) {
        const Run& r = scratch.runs[i];
        for (int64_t c = r.c0; c <= r.c1; ++c) {
          const float* v = fields + (static_cast<int64_t>(r.row) * W + c) * field_stride;
          if (cls == 1) {
            mx_wind = std::max(mx_wind, std::sqrt(double(v[kUbot]) * v[kUbot] + double(v[kVbot]) * v[kVbot]));
            mn_psl = std::min(mn_psl, double(v[kPsl]));
            mx_prect = std::max(mx_prect, double(v[kPrect]));
          } else {
            mx_tmq = std::max(mx_tmq, double(v[kTmq]));
            sum_tmq += double(v[kTmq]) * geo.area_km2(r.row, c);
            mx_ivt = std::max(mx_ivt,
                              double(v[kTmq]) * std::sqrt(double(v[kU850]) * v[kU850] + double(v[kV850]) * v[kV850]));
          }
        }
      }
      if (cls == 1) {
        o.max_wind = mx_wind;
        o.min_psl = mn_psl;
        o.max_prect = mx_prect;
      } else {
        o.max_tmq = mx_tmq;
        o.mean_tmq = sum_tmq / area;
        o.max_ivt_proxy = mx_ivt;
      }
    }
    o.runs.assign(scratch.runs.begin() + static_cast<std::ptrdiff_t>(b),
                  scratch.runs.begin() + static_cast<std::ptrdiff_t>(e));
    out.push_back(std::move(o));
  }
}

bool object_covers(const Object& o, int64_t row, int64_t col) {
  auto it = std::lower_bound(o.runs.begin(), o.runs.end(), std::make_pair(row, col),
                             [](const Run& r, const std::pair<int64_t, int64_t>& p) {
                               return r.row < p.first || (r.row == p.first && r.c1 < p.second);
                             });
  return it != o.runs.end() && it->row == row && it->c0 <= col && col <= it->c1;
}

namespace {

struct Provisional {
  int cls = 0;
  std::vector<size_t> objects;
  int64_t last_step = 0;
  int64_t split_from = -1, merged_into = -1;  // provisional indices
};

struct Candidate {
  int64_t gap;
  int64_t overlap;
  double distance;
  size_t event;   // provisional index
  size_t object;  // object index
};

}  // namespace

Tracking track_events(const std::vector<Object>& objects, const std::vector<double>& hours, int64_t height,
                      int64_t width, const TrackOptions& opt) {
  CS_CHECK(opt.max_gap >= 0, "maximum gap ", opt.max_gap, " must be >= 0");
  const int64_t steps = static_cast<int64_t>(hours.size());
  for (size_t i = 1; i < objects.size(); ++i)
    CS_CHECK(objects[i - 1].step < objects[i].step ||
                 (objects[i - 1].step == objects[i].step && objects[i - 1].label < objects[i].label),
             "track_events: objects are not ordered by step and label");
  for (int64_t s = 1; s < steps; ++s)
    CS_CHECK(hours[static_cast<size_t>(s)] > hours[static_cast<size_t>(s) - 1],
             "track_events: time steps are not increasing");
  Tracking out;
  if (steps >= 2) {
    std::vector<double> d;
    for (int64_t s = 1; s < steps; ++s) d.push_back(hours[static_cast<size_t>(s)] - hours[static_cast<size_t>(s) - 1]);
    std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2), d.end());
    out.dt_hours = d[d.size() / 2];
  }

  std::vector<Provisional> prov;
  std::vector<size_t> open;                       // provisional indices of open events
  std::vector<int32_t> paint(static_cast<size_t>(height * width), -1);  // object index - b at the current step
  std::vector<int64_t> hits(objects.size(), 0);   // overlap counter per object, reset after each event
  size_t next = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const size_t b = next;
    while (next < objects.size() && objects[next].step == s) ++next;
    const size_t e = next;
    CS_CHECK(b == e || objects[b].step == s, "track_events: object step ", objects[b].step, " outside the series");
    for (size_t o = b; o < e; ++o)
      for (const Run& r : objects[o].runs)
        std::fill(paint.begin() + r.row * width + r.c0, paint.begin() + r.row * width + r.c1 + 1,
                  static_cast<int32_t>(o - b));
    std::vector<Candidate> cand;
    for (size_t p : open) {
      const Provisional& ev = prov[p];
      const Object& last = objects[ev.objects.back()];
      // Missing steps: in the series, and in time (a hole in the files: k typical steps count as k - 1 missing).
      int64_t gap = s - ev.last_step - 1;
      if (out.dt_hours > 0)
        gap = std::max<int64_t>(gap, std::llround((hours[static_cast<size_t>(s)] -
                                                   hours[static_cast<size_t>(ev.last_step)]) / out.dt_hours) - 1);
      if (gap > opt.max_gap) continue;
      std::vector<size_t> touched;
      for (const Run& r : last.runs)
        for (int64_t c = r.c0; c <= r.c1; ++c) {
          const int64_t p = paint[static_cast<size_t>(r.row * width + c)];
          const int64_t v = p < 0 ? -1 : static_cast<int64_t>(b) + p;
          if (v >= 0 && objects[static_cast<size_t>(v)].cls == ev.cls) {
            if (hits[static_cast<size_t>(v)]++ == 0) touched.push_back(static_cast<size_t>(v));
          }
        }
      const double limit_km = opt.tc_max_speed_kmh * (hours[static_cast<size_t>(s)] -
                                                      hours[static_cast<size_t>(ev.last_step)]);
      for (size_t o = b; o < e; ++o) {
        if (objects[o].cls != ev.cls) continue;
        const double dist = great_circle_km(last.lat, last.lon, objects[o].lat, objects[o].lon);
        const int64_t ov = hits[o];
        if (ov > 0 || (ev.cls == 1 && dist <= limit_km)) cand.push_back(Candidate{gap, ov, dist, p, o});
      }
      for (size_t v : touched) hits[v] = 0;
    }
    // No gap first, then larger overlap, shorter distance, the older event, the object first in raster order.
    std::sort(cand.begin(), cand.end(), [](const Candidate& a, const Candidate& c) {
      return std::tie(a.gap, c.overlap, a.distance, a.event, a.object) <
             std::tie(c.gap, a.overlap, c.distance, c.event, c.object);
    });
    std::vector<int64_t> succ_of_event(prov.size(), -1);  // object an open event continues into
    std::vector<int64_t> pred_of_object(e - b, -1);        // event an object continues
    for (const Candidate& c : cand) {
      if (succ_of_event[c.event] >= 0 || pred_of_object[c.object - b] >= 0) continue;
      succ_of_event[c.event] = static_cast<int64_t>(c.object);
      pred_of_object[c.object - b] = static_cast<int64_t>(c.event);
    }
    // Splits: objects without a predecessor start events; the best candidate names the event they split from.
    std::vector<size_t> created;
    for (size_t o = b; o < e; ++o) {
      if (pred_of_object[o - b] >= 0) {
        Provisional& ev = prov[static_cast<size_t>(pred_of_object[o - b])];
        ev.objects.push_back(o);
        ev.last_step = s;
        continue;
      }
      Provisional ev;
      ev.cls = objects[o].cls;
      ev.objects.push_back(o);
      ev.last_step = s;
      for (const Candidate& c : cand)
        if (c.object == o) {
          ev.split_from = static_cast<int64_t>(c.event);
          break;
        }
      created.push_back(prov.size());
      prov.push_back(std::move(ev));
    }
    // Merges and ends.
    std::vector<size_t> still_open;
    for (size_t p : open) {
      if (succ_of_event[p] >= 0) {
        still_open.push_back(p);
        continue;
      }
      int64_t merged = -1;
      for (const Candidate& c : cand)
        if (c.event == p) {
          merged = pred_of_object[c.object - b];
          break;
        }
      if (merged >= 0) {
        prov[p].merged_into = merged;
      } else if (s + 1 - prov[p].last_step - 1 <= opt.max_gap) {
        still_open.push_back(p);
      }
    }
    still_open.insert(still_open.end(), created.begin(), created.end());
    std::sort(still_open.begin(), still_open.end());
    open = std::move(still_open);
    for (size_t o = b; o < e; ++o)
      for (const Run& r : objects[o].runs)
        std::fill(paint.begin() + r.row * width + r.c0, paint.begin() + r.row * width + r.c1 + 1, int32_t{-1});
  }
  CS_CHECK(next == objects.size(), "track_events: object step ", objects[next].step, " outside the ", steps,
           " steps of the series");

  // Keep the events that last long enough; number them in the order they started.
  std::vector<int64_t> id_of(prov.size(), 0);
  out.object_event.assign(objects.size(), 0);
  for (size_t p = 0; p < prov.size(); ++p) {
    const Provisional& ev = prov[p];
    const int64_t f = objects[ev.objects.front()].step, l = ev.last_step;
    const double dur = hours[static_cast<size_t>(l)] - hours[static_cast<size_t>(f)] + out.dt_hours;
    if (dur + 1e-9 < opt.min_hours[ev.cls]) {
      ++out.dropped[ev.cls];
      continue;
    }
    Event k;
    k.id = static_cast<int64_t>(out.events.size()) + 1;
    k.cls = ev.cls;
    k.first_step = f;
    k.last_step = l;
    k.objects = ev.objects;
    k.duration_h = dur;
    id_of[p] = k.id;
    for (size_t o : ev.objects) out.object_event[o] = k.id;
    out.events.push_back(std::move(k));
  }
  for (size_t p = 0; p < prov.size(); ++p) {
    if (id_of[p] == 0) continue;
    Event& k = out.events[static_cast<size_t>(id_of[p] - 1)];
    if (prov[p].split_from >= 0) k.split_from = id_of[static_cast<size_t>(prov[p].split_from)];
    if (prov[p].merged_into >= 0) k.merged_into = id_of[static_cast<size_t>(prov[p].merged_into)];
  }
  return out;
}

}  // namespace climseg::analysis
