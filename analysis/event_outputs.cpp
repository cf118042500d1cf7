#include "analysis/event_outputs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/check.h"

namespace climseg::analysis {

namespace {

// A CSV file written under a temporary name and renamed into place by commit().
class CsvOut {
 public:
  explicit CsvOut(const std::string& path) : file_(path), out_(file_.tmp_path()) {
    CS_CHECK(out_.good(), path, ": cannot write");
  }
  std::ofstream& s() { return out_; }
  void commit() {
    out_.close();
    CS_CHECK(!out_.fail(), file_.path(), ": writing failed");
    file_.commit();
  }

 private:
  AtomicFile file_;
  std::ofstream out_;
};

std::string num(double v, const char* fmt = "%.6g") {
  if (std::isnan(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

constexpr double kMmPerHour = 3.6e6;  // m s-1 -> mm h-1

const char* kIntensityHeader =
    ",max_wind_m_s,min_psl_Pa,max_prect_mm_h,max_tmq_kg_m2,mean_tmq_kg_m2,max_ivt_proxy_kg_m_s";

std::string intensity_cells(const Object& o) {
  return "," + num(o.max_wind) + "," + num(o.min_psl) + "," + num(o.max_prect * kMmPerHour) + "," +
         num(o.max_tmq) + "," + num(o.mean_tmq) + "," + num(o.max_ivt_proxy);
}

// Nearest grid cell of a point (lat, lon in degrees); false when the point is more than one cell spacing outside the
// grid (north or south of it, or outside a regional grid's longitudes).
bool nearest_cell(const io::CfGrid& g, double lat, double lon, int64_t& row, int64_t& col) {
  const int64_t H = g.height(), W = g.width();
  const double dlat = H > 1 ? (g.lat.back() - g.lat.front()) / static_cast<double>(H - 1) : 180.0;
  if (lat < g.lat.front() - dlat || lat > g.lat.back() + dlat) return false;
  const auto it = std::lower_bound(g.lat.begin(), g.lat.end(), lat);
  int64_t r = it - g.lat.begin();
  if (r == H || (r > 0 && lat - g.lat[static_cast<size_t>(r) - 1] < g.lat[static_cast<size_t>(r)] - lat)) --r;
  row = std::clamp<int64_t>(r, 0, H - 1);
  const bool periodic = g.periodic();
  const double dlon = W > 1 ? (g.lon.back() - g.lon.front()) / static_cast<double>(W - 1) : 360.0;
  double best = 1e300;
  col = -1;
  for (int64_t c = 0; c < W; ++c) {
    double d = std::fabs(std::fmod(g.lon[static_cast<size_t>(c)] - lon, 360.0));
    d = std::min(d, 360.0 - d);  // both conventions; on a regional grid the shortest way round as well
    if (d < best) {
      best = d;
      col = c;
    }
  }
  return col >= 0 && (periodic || best <= std::fabs(dlon));
}

}  // namespace

void write_objects_csv(const std::string& path, const SeriesInfo& s, const std::vector<Object>& objects,
                       const Tracking& tr, bool fields) {
  CsvOut f(path);
  f.s() << "event_id,time,step,class,object,pixels,area_km2,centroid_lat_deg,centroid_lon_deg,lat_min_deg,"
           "lat_max_deg,lon_west_deg,lon_east_deg"
        << (fields ? kIntensityHeader : "") << "\n";
  for (size_t i = 0; i < objects.size(); ++i) {
    if (tr.object_event[i] == 0) continue;
    const Object& o = objects[i];
    f.s() << tr.object_event[i] << "," << s.iso[static_cast<size_t>(o.step)] << "," << o.step << ","
          << class_name(o.cls) << "," << o.label << "," << o.pixels << "," << num(o.area_km2, "%.1f") << ","
          << num(o.lat, "%.4f") << "," << num(o.lon, "%.4f") << "," << num(o.lat_min, "%.4f") << ","
          << num(o.lat_max, "%.4f") << "," << num(o.lon_west, "%.4f") << "," << num(o.lon_east, "%.4f")
          << (fields ? intensity_cells(o) : "") << "\n";
  }
  f.commit();
}

void write_events_csv(const std::string& path, const SeriesInfo& s, const std::vector<Object>& objects,
                      const Tracking& tr, bool fields) {
  CsvOut f(path);
  f.s() << "event_id,class,start_time,end_time,first_step,last_step,steps,duration_h,genesis_lat_deg,"
           "genesis_lon_deg,lysis_lat_deg,lysis_lon_deg,track_length_km,max_area_km2"
        << (fields ? ",max_wind_m_s,min_psl_Pa,max_prect_mm_h,max_tmq_kg_m2,max_ivt_proxy_kg_m_s" : "")
        << ",split_from,merged_into,track\n";
  for (const Event& e : tr.events) {
    const Object& g = objects[e.objects.front()];
    const Object& l = objects[e.objects.back()];
    double length = 0, max_area = 0;
    double mw = Object::kNone, mp = Object::kNone, mr = Object::kNone, mt = Object::kNone, mi = Object::kNone;
    const auto upd = [](double& a, double v, bool bigger) {
      if (std::isnan(v)) return;
      if (std::isnan(a) || (bigger ? v > a : v < a)) a = v;
    };
    std::ostringstream track;
    for (size_t k = 0; k < e.objects.size(); ++k) {
      const Object& o = objects[e.objects[k]];
      if (k > 0) {
        const Object& p = objects[e.objects[k - 1]];
        length += great_circle_km(p.lat, p.lon, o.lat, o.lon);
        track << ";";
      }
      track << num(o.lat, "%.3f") << " " << num(o.lon, "%.3f");
      max_area = std::max(max_area, o.area_km2);
      upd(mw, o.max_wind, true);
      upd(mp, o.min_psl, false);
      upd(mr, o.max_prect, true);
      upd(mt, o.max_tmq, true);
      upd(mi, o.max_ivt_proxy, true);
    }
    f.s() << e.id << "," << class_name(e.cls) << "," << s.iso[static_cast<size_t>(e.first_step)] << ","
          << s.iso[static_cast<size_t>(e.last_step)] << "," << e.first_step << "," << e.last_step << ","
          << e.objects.size() << "," << num(e.duration_h, "%.3f") << "," << num(g.lat, "%.4f") << ","
          << num(g.lon, "%.4f") << "," << num(l.lat, "%.4f") << "," << num(l.lon, "%.4f") << ","
          << num(length, "%.1f") << "," << num(max_area, "%.1f");
    if (fields)
      f.s() << "," << num(mw) << "," << num(mp) << "," << num(mr * kMmPerHour) << "," << num(mt) << "," << num(mi);
    f.s() << "," << e.split_from << "," << e.merged_into << ",\"" << track.str() << "\"\n";
  }
  f.commit();
}

void write_counts_csv(const std::string& per_step, const std::string& per_year, const SeriesInfo& s,
                      const std::vector<Object>& objects, const Tracking& tr) {
  const size_t T = static_cast<size_t>(s.steps());
  std::vector<int64_t> n[kClasses];
  std::vector<double> area[kClasses];
  for (int c = 0; c < kClasses; ++c) {
    n[c].assign(T, 0);
    area[c].assign(T, 0.0);
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    if (tr.object_event[i] == 0) continue;
    const Object& o = objects[i];
    ++n[o.cls][static_cast<size_t>(o.step)];
    area[o.cls][static_cast<size_t>(o.step)] += o.area_km2;
  }
  {
    CsvOut f(per_step);
    f.s() << "step,time,tc_objects,ar_objects,tc_area_km2,ar_area_km2\n";
    for (size_t t = 0; t < T; ++t)
      f.s() << t << "," << s.iso[t] << "," << n[1][t] << "," << n[2][t] << "," << num(area[1][t], "%.1f") << ","
            << num(area[2][t], "%.1f") << "\n";
    f.commit();
  }
  struct Year {
    int64_t steps = 0, started[kClasses] = {0, 0, 0}, object_steps[kClasses] = {0, 0, 0};
  };
  std::map<int, Year> years;
  for (size_t t = 0; t < T; ++t) {
    Year& y = years[s.years[t]];
    ++y.steps;
    for (int c = 1; c < kClasses; ++c) y.object_steps[c] += n[c][t];
  }
  for (const Event& e : tr.events) ++years[s.years[static_cast<size_t>(e.first_step)]].started[e.cls];
  CsvOut f(per_year);
  f.s() << "year,steps,tc_events_started,ar_events_started,tc_object_steps,ar_object_steps,"
           "tc_mean_objects_per_step,ar_mean_objects_per_step\n";
  for (const auto& [year, y] : years)
    f.s() << year << "," << y.steps << "," << y.started[1] << "," << y.started[2] << "," << y.object_steps[1] << ","
          << y.object_steps[2] << "," << num(double(y.object_steps[1]) / double(y.steps), "%.4f") << ","
          << num(double(y.object_steps[2]) / double(y.steps), "%.4f") << "\n";
  f.commit();
}

FrequencyMaps frequency_maps(const SeriesInfo& s, const std::vector<Object>& objects, const Tracking& tr) {
  const int64_t H = s.grid.height(), W = s.grid.width();
  FrequencyMaps m;
  std::vector<double> count[kClasses];
  for (auto& c : count) c.assign(static_cast<size_t>(H * W), 0.0);
  for (size_t i = 0; i < objects.size(); ++i) {
    if (tr.object_event[i] == 0) continue;
    for (const Run& r : objects[i].runs)
      for (int64_t c = r.c0; c <= r.c1; ++c) count[objects[i].cls][static_cast<size_t>(r.row * W + c)] += 1;
  }
  const double T = static_cast<double>(std::max<int64_t>(1, s.steps()));
  m.tc.resize(static_cast<size_t>(H * W));
  m.ar.resize(static_cast<size_t>(H * W));
  for (size_t p = 0; p < m.tc.size(); ++p) {
    m.tc[p] = static_cast<float>(count[1][p] / T);
    m.ar[p] = static_cast<float>(count[2][p] / T);
  }
  m.years = static_cast<double>(s.steps()) * tr.dt_hours / 24.0 / s.days_per_year;
  std::vector<double> gen(static_cast<size_t>(H * W), 0.0);
  const double dlat = m.genesis_radius_km / (kEarthRadiusKm * kDegToRad);
  for (const Event& e : tr.events) {
    if (e.cls != 1) continue;
    const Object& g = objects[e.objects.front()];
    for (int64_t r = 0; r < H; ++r) {
      if (std::fabs(s.grid.lat[static_cast<size_t>(r)] - g.lat) > dlat) continue;
      for (int64_t c = 0; c < W; ++c)
        if (great_circle_km(g.lat, g.lon, s.grid.lat[static_cast<size_t>(r)], s.grid.lon[static_cast<size_t>(c)]) <=
            m.genesis_radius_km)
          gen[static_cast<size_t>(r * W + c)] += 1;
    }
  }
  m.genesis.resize(gen.size());
  for (size_t p = 0; p < gen.size(); ++p)
    m.genesis[p] = static_cast<float>(m.years > 0 ? gen[p] / m.years : 0.0);
  return m;
}

// ---- verification ------------------------------------------------------------------------------------------------
namespace {

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char ch : line) {
    if (ch == '"') quoted = !quoted;
    else if (ch == ',' && !quoted) {
      out.push_back(cur);
      cur.clear();
    } else if (ch != '\r') cur += ch;
  }
  out.push_back(cur);
  return out;
}

}  // namespace

std::vector<TruthPoint> read_truth_csv(const std::string& path) {
  std::ifstream in(path);
  CS_CHECK(in.good(), "--truth ", path, ": cannot open");
  std::string line;
  CS_CHECK(static_cast<bool>(std::getline(in, line)), "--truth ", path, ": empty file");
  const std::vector<std::string> head = split_csv_line(line);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < head.size(); ++i) col[head[i]] = i;
  for (const char* need : {"event_id", "class", "time", "lat_deg", "lon_deg"})
    CS_CHECK(col.count(need), "--truth ", path, ": no column '", need,
             "' (expected data generate --sequence's truth.csv: event_id,class,step,time,lat_deg,lon_deg,strength,path)");
  std::vector<TruthPoint> out;
  int64_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    std::vector<std::string> v = split_csv_line(line);
    if (col.count("path") && v.size() + 1 == head.size() && col["path"] == head.size() - 1) v.emplace_back();
    CS_CHECK(v.size() == head.size(), "--truth ", path, ":", lineno, ": ", v.size(), " columns, expected ",
             head.size());
    TruthPoint p;
    try {
      p.event_id = std::stoll(v[col["event_id"]]);
      p.lat = std::stod(v[col["lat_deg"]]);
      p.lon = std::stod(v[col["lon_deg"]]);
      if (col.count("strength") && !v[col["strength"]].empty()) p.strength = std::stod(v[col["strength"]]);
    } catch (const std::exception&) {
      CS_CHECK(false, "--truth ", path, ":", lineno, ": not a number in '", line, "'");
    }
    const std::string& cls = v[col["class"]];
    p.cls = cls == "tropical_cyclone" ? 1 : cls == "atmospheric_river" ? 2 : 0;
    CS_CHECK(p.cls != 0, "--truth ", path, ":", lineno, ": class '", cls,
             "' (expected tropical_cyclone or atmospheric_river)");
    p.time = v[col["time"]];
    if (col.count("path") && col["path"] < v.size()) {
      std::istringstream ps(v[col["path"]]);
      std::string pt;
      while (std::getline(ps, pt, ';')) {
        std::istringstream q(pt);
        double a, b;
        if (q >> a >> b) p.path.emplace_back(a, b);
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

Verification verify_events(const std::vector<TruthPoint>& truth, const SeriesInfo& s, const std::vector<Object>& objects,
                           const Tracking& tr, const VerifyOptions& opt) {
  std::map<std::string, int64_t> step_of;
  for (int64_t t = 0; t < s.steps(); ++t) step_of[s.iso[static_cast<size_t>(t)]] = t;
  // Objects of kept events per step.
  std::vector<std::vector<size_t>> at(static_cast<size_t>(s.steps()));
  for (size_t i = 0; i < objects.size(); ++i)
    if (tr.object_event[i] != 0) at[static_cast<size_t>(objects[i].step)].push_back(i);
  std::map<std::pair<int, int64_t>, std::vector<const TruthPoint*>> by_event;  // (class, id)
  Verification v;
  for (const TruthPoint& p : truth) {
    if (!step_of.count(p.time)) {
      ++v.unmatched_times;
      continue;
    }
    by_event[{p.cls, p.event_id}].push_back(&p);
  }
  std::set<int64_t> matched_found;
  const int64_t W = s.grid.width();
  const bool periodic = s.grid.periodic();
  for (const auto& [key, pts] : by_event) {
    TruthMatch m;
    m.truth_id = key.second;
    m.cls = pts.front()->cls;
    m.truth_steps = static_cast<int64_t>(pts.size());
    m.first = pts.front()->time;
    m.last = pts.back()->time;
    std::map<int64_t, int64_t> steps_by_event;
    std::map<int64_t, double> err_by_event;
    for (const TruthPoint* p : pts) {
      const int64_t t = step_of[p->time];
      // A river's path points as grid cells, once per truth point (not per object tried against it).
      std::vector<std::pair<int64_t, int64_t>> cells;
      for (const auto& [la, lo] : p->path) {
        int64_t r, c;
        if (nearest_cell(s.grid, la, lo, r, c)) cells.emplace_back(r, c);
      }
      std::set<int64_t> here;
      for (size_t i : at[static_cast<size_t>(t)]) {
        const Object& o = objects[i];
        if (o.cls != p->cls) continue;
        bool match = false;
        if (p->cls == 1) {
          match = great_circle_km(o.lat, o.lon, p->lat, p->lon) <= opt.tc_match_km;
        } else {
          int inside = 0;
          for (const auto& [r, c] : cells) {
            bool hit = false;
            for (int64_t dr = -1; dr <= 1 && !hit; ++dr)
              for (int64_t dc = -1; dc <= 1 && !hit; ++dc) {
                const int64_t rr = r + dr;
                int64_t cc = c + dc;
                if (periodic) cc = (cc + W) % W;  // regional grids do not wrap
                if (rr >= 0 && rr < s.grid.height() && cc >= 0 && cc < W) hit = object_covers(o, rr, cc);
              }
            inside += hit;
          }
          match = inside >= opt.ar_match_points;
        }
        if (match && here.insert(tr.object_event[i]).second) {
          ++steps_by_event[tr.object_event[i]];
          err_by_event[tr.object_event[i]] += great_circle_km(o.lat, o.lon, p->lat, p->lon);
        }
      }
    }
    m.fragments = static_cast<int64_t>(steps_by_event.size());
    for (const auto& [eid, n] : steps_by_event) {
      matched_found.insert(eid);
      if (n > m.matched_steps) {
        m.matched_steps = n;
        m.found_id = eid;
      }
    }
    if (m.found_id) {
      m.found_steps = static_cast<int64_t>(tr.events[static_cast<size_t>(m.found_id - 1)].objects.size());
      m.mean_error_km = err_by_event[m.found_id] / static_cast<double>(m.matched_steps);
    }
    m.hit = m.found_id != 0 && 2 * m.matched_steps >= m.truth_steps;
    ++v.truth_events[m.cls];
    ++(m.hit ? v.hits : v.misses)[m.cls];
    v.truth.push_back(m);
  }
  for (const Event& e : tr.events) ++v.found_events[e.cls];
  for (const Event& e : tr.events)
    if (!matched_found.count(e.id)) {
      v.false_alarms.push_back(e.id);
      ++v.false_alarm_count[e.cls];
    }
  return v;
}

void write_verification_csv(const std::string& path, const Verification& v, const Tracking& tr) {
  CsvOut f(path);
  f.s() << "kind,truth_id,class,truth_first,truth_last,truth_steps,found_id,found_steps,matched_steps,fragments,"
           "mean_error_km\n";
  for (const TruthMatch& m : v.truth)
    f.s() << (m.hit ? "hit" : "miss") << "," << m.truth_id << "," << class_name(m.cls) << "," << m.first << ","
          << m.last << "," << m.truth_steps << "," << m.found_id << "," << m.found_steps << "," << m.matched_steps
          << "," << m.fragments << "," << (m.found_id ? num(m.mean_error_km, "%.1f") : "") << "\n";
  for (int64_t id : v.false_alarms) {
    const Event& e = tr.events[static_cast<size_t>(id - 1)];
    f.s() << "false_alarm,0," << class_name(e.cls) << ",,,0," << id << "," << e.objects.size() << ",0,0,\n";
  }
  f.commit();
}

}  // namespace climseg::analysis
