// io::SyntheticSequence (`data generate --format netcdf --sequence`): events as a process in absolute time (the same
// step gives the same bits and the same events from any window, at any resolution), their separation at every step,
// continuous tracks within the documented ranges, a background smooth in time, decoys kept clear of the events, and
// the labels: placed events labelled at (nearly) every step, few labelled regions that belong to no event. The
// single-sample generator's golden checksums (untouched by the sequences) are tested in test_synthetic.cpp.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "io/hdf5_sample.h"
#include "io/synthetic.h"

using namespace climseg;
using namespace climseg::io;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kA = 6371.0;  // km

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// Great-circle distance (libm is fine in a test), km.
double gc_km(double lat1, double lon1, double lat2, double lon2) {
  const double d = kPi / 180;
  const double c =
      std::sin(lat1 * d) * std::sin(lat2 * d) + std::cos(lat1 * d) * std::cos(lat2 * d) * std::cos((lon1 - lon2) * d);
  return kA * std::acos(std::clamp(c, -1.0, 1.0));
}

// A point to a river's 9-point path, densified 8 times per segment (longitudes unwrapped along the path).
double path_km(double lat, double lon, const std::vector<std::pair<double, double>>& path) {
  double best = 1e30;
  for (size_t q = 0; q + 1 < path.size(); ++q) {
    double dl = path[q + 1].second - path[q].second;
    dl -= 360.0 * std::floor((dl + 180.0) / 360.0);
    for (int f = 0; f <= 8; ++f) {
      const double la = path[q].first + (path[q + 1].first - path[q].first) * f / 8.0;
      const double lo = path[q].second + dl * f / 8.0;
      best = std::min(best, gc_km(lat, lon, la, lo));
    }
  }
  return best;
}

double paths_km(const std::vector<std::pair<double, double>>& a, const std::vector<std::pair<double, double>>& b) {
  double best = 1e30;
  for (size_t q = 0; q + 1 < a.size(); ++q) {
    double dl = a[q + 1].second - a[q].second;
    dl -= 360.0 * std::floor((dl + 180.0) / 360.0);
    for (int f = 0; f <= 8; ++f)
      best =
          std::min(best, path_km(a[q].first + (a[q + 1].first - a[q].first) * f / 8.0, a[q].second + dl * f / 8.0, b));
  }
  return best;
}

// Truth points of one step, as comparable tuples (ids are window-local; everything else is not).
using PointKey = std::tuple<bool, double, double, double, std::vector<std::pair<double, double>>>;
std::multiset<PointKey> points_at(const SyntheticSequence& s, int64_t step) {
  std::multiset<PointKey> out;
  for (const TruthPoint& p : s.truth())
    if (p.step == step) out.insert({p.cyclone, p.lat, p.lon, p.strength, p.path});
  return out;
}

std::map<int64_t, std::vector<const TruthPoint*>> by_step(const SyntheticSequence& s) {
  std::map<int64_t, std::vector<const TruthPoint*>> m;
  for (const TruthPoint& p : s.truth()) m[p.step].push_back(&p);
  return m;
}

}  // namespace

TEST_CASE("sequence: a step has the same bits and events from every window and at every resolution",
          "[io][synthetic][sequence]") {
  // Block boundaries (every 64 steps) at 1024 and 1088 fall inside the overlap.
  const SyntheticSequence a(5, 48, 72, 1000, 100), b(5, 48, 72, 1020, 80), c(5, 48, 72, 1087, 3);
  for (int64_t g : {1020, 1023, 1024, 1050, 1087, 1088, 1089}) {
    INFO("step " << g);
    const SyntheticSample sa = a.generate(g - 1000), sb = b.generate(g - 1020);
    CHECK(same_bytes(sa.data, sb.data));
    CHECK(same_bytes(sa.labels, sb.labels));
    CHECK(sa.time.day_of_year == noleap_step_time(g).day_of_year);
    CHECK(points_at(a, g) == points_at(b, g));
    CHECK_FALSE(points_at(a, g).empty());
    if (g >= 1087 && g < 1090) {
      CHECK(same_bytes(sa.data, c.generate(g - 1087).data));
      CHECK(points_at(a, g) == points_at(c, g));
    }
  }
  // The events do not depend on the grid; the same object generates the same bits twice.
  const SyntheticSequence coarse(5, 16, 24, 1000, 100);
  for (int64_t g = 1000; g < 1100; g += 7) CHECK(points_at(a, g) == points_at(coarse, g));
  CHECK(same_bytes(a.generate(3).data, a.generate(3).data));
  // Another seed, other events.
  const SyntheticSequence other(6, 16, 24, 1000, 100);
  CHECK(points_at(other, 1050) != points_at(a, 1050));
}

TEST_CASE("sequence: the truth catalogue is ordered, complete and within the documented ranges",
          "[io][synthetic][sequence]") {
  const int64_t first = 3000, n = 1500;
  const SyntheticSequence s(11, 16, 24, first, n);
  REQUIRE_FALSE(s.events().empty());
  int64_t cyclones = 0, rivers = 0;
  for (size_t i = 0; i < s.events().size(); ++i) {
    const SequenceEvent& e = s.events()[i];
    INFO("event " << e.id << (e.cyclone ? " cyclone" : " river") << " steps " << e.first_step << ".." << e.last_step);
    CHECK(e.id == static_cast<int64_t>(i) + 1);
    const int64_t life = e.last_step - e.first_step + 1;
    CHECK(e.last_step >= first);
    CHECK(e.first_step < first + n);
    CHECK(static_cast<int64_t>(e.lat_deg.size()) == life);
    if (e.cyclone) {
      ++cyclones;
      CHECK(life >= 12);
      CHECK(life <= 48);
      CHECK(std::fabs(e.lat_deg.front()) >= 8);
      CHECK(std::fabs(e.lat_deg.front()) <= 25);
      for (size_t k = 0; k < e.lat_deg.size(); ++k) {
        CHECK(std::fabs(e.lat_deg[k]) <= 35);
        CHECK(e.lat_deg[k] * e.hemisphere > 0);
        CHECK(e.strength[k] >= 38);
        CHECK(e.strength[k] <= 80);
      }
    } else {
      ++rivers;
      CHECK(life >= 8);
      CHECK(life <= 32);
    }
    if (i > 0) {  // ids by first step in the window, then latitude
      const SequenceEvent& p = s.events()[i - 1];
      const int64_t fp = std::max(first, p.first_step), fe = std::max(first, e.first_step);
      CHECK(fp <= fe);
      if (fp == fe)
        CHECK(p.lat_deg[static_cast<size_t>(fp - p.first_step)] <= e.lat_deg[static_cast<size_t>(fe - e.first_step)]);
    }
  }
  // About 2 cyclones and 3 rivers alive at a time.
  const double per_step_c = static_cast<double>(std::count_if(s.truth().begin(), s.truth().end(),
                                                              [](const TruthPoint& p) { return p.cyclone; })) /
                            n;
  const double per_step_r = static_cast<double>(s.truth().size()) / n - per_step_c;
  INFO("alive per step: " << per_step_c << " cyclones, " << per_step_r << " rivers (" << cyclones << ", " << rivers
                          << " events)");
  CHECK(per_step_c >= 1.5);
  CHECK(per_step_c <= 3.5);
  CHECK(per_step_r >= 2.0);
  CHECK(per_step_r <= 4.0);

  // One point per (event, step of the window), sorted by id then step, tracks continuous and within the speed bounds:
  // cyclones drift at most ~8 m/s (~90 km a step), a river's midpoint moves at most ~230 km a step.
  const TruthPoint* prev = nullptr;
  std::map<int64_t, int64_t> count;
  for (const TruthPoint& p : s.truth()) {
    INFO("event " << p.event_id << " step " << p.step);
    ++count[p.event_id];
    const SequenceEvent& e = s.events()[static_cast<size_t>(p.event_id - 1)];
    CHECK(p.cyclone == e.cyclone);
    CHECK(p.step >= std::max(first, e.first_step));
    CHECK(p.step <= std::min(first + n - 1, e.last_step));
    CHECK(p.lon >= 0);
    CHECK(p.lon < 360);
    CHECK(p.path.size() == (p.cyclone ? 0u : 9u));
    if (!p.cyclone) {
      CHECK(p.path[4].first == Approx(p.lat).margin(1e-9));  // the midpoint is the path's middle point
      CHECK(p.strength == e.dtmq);
      for (const auto& q : p.path) CHECK(std::fabs(q.first) >= 12);
    }
    if (prev && prev->event_id == p.event_id) {
      CHECK(p.step == prev->step + 1);
      const double moved = gc_km(prev->lat, prev->lon, p.lat, p.lon);
      CHECK(moved <= (p.cyclone ? 100.0 : 300.0));
      if (p.cyclone) CHECK(std::fabs(p.strength - prev->strength) <= 3.0);  // smooth intensity
    } else if (prev) {
      CHECK(p.event_id == prev->event_id + 1);
    }
    prev = &p;
  }
  for (const SequenceEvent& e : s.events())
    CHECK(count[e.id] == std::min(first + n - 1, e.last_step) - std::max(first, e.first_step) + 1);
}

TEST_CASE("sequence: events keep apart at every step they coexist, decoys keep clear of them",
          "[io][synthetic][sequence]") {
  // Cyclone centres >= 1800 km apart; river filaments >= 1500 km from cyclone centres and from each other. The
  // generator checks the filament's 33-vertex curve; the 9-point path here is within a few tens of km of it.
  for (uint64_t seed : {1, 2}) {
    const SyntheticSequence s(seed, 16, 24, 500, 1000);
    double min_cc = 1e30, min_rc = 1e30, min_rr = 1e30;
    for (const auto& [g, pts] : by_step(s))
      for (size_t i = 0; i < pts.size(); ++i)
        for (size_t j = i + 1; j < pts.size(); ++j) {
          const TruthPoint &a = *pts[i], &b = *pts[j];
          if (a.cyclone && b.cyclone)
            min_cc = std::min(min_cc, gc_km(a.lat, a.lon, b.lat, b.lon));
          else if (a.cyclone || b.cyclone)
            min_rc = std::min(min_rc, a.cyclone ? path_km(a.lat, a.lon, b.path) : path_km(b.lat, b.lon, a.path));
          else
            min_rr = std::min(min_rr, paths_km(a.path, b.path));
        }
    INFO("seed " << seed << ": closest cyclones " << min_cc << " km, river-cyclone " << min_rc << " km, rivers "
                 << min_rr << " km");
    CHECK(min_cc >= 1800);
    CHECK(min_rc >= 1450);
    CHECK(min_rr >= 1450);
    CHECK(min_cc < 4000);  // the constraint binds: events are not trivially far apart
    CHECK(min_rr < 3000);
  }
  // Decoy lows (centres) and plumes (ends) drawn per step stay >= 1500 km from the active events.
  const SyntheticSequence s(3, 16, 24, 2000, 120);
  const auto steps = by_step(s);
  int64_t decoys = 0;
  for (int64_t k = 0; k < s.steps(); ++k) {
    const SyntheticSample x = s.generate(k);
    const auto it = steps.find(s.first_step() + k);
    REQUIRE(it != steps.end());
    auto clear = [&](double lat, double lon) {
      double d = 1e30;
      for (const TruthPoint* p : it->second)
        d = std::min(d, p->cyclone ? gc_km(lat, lon, p->lat, p->lon) : path_km(lat, lon, p->path));
      return d;
    };
    int64_t placed_c = 0, placed_r = 0;
    for (const SyntheticStorm& st : x.storms) {
      if (!st.decoy) {
        ++placed_c;
        continue;
      }
      ++decoys;
      CHECK(st.vmax <= 9.0 + 1e-9);
      CHECK(clear(st.lat, st.lon) >= 1450);
    }
    for (const SyntheticRiver& r : x.rivers) {
      if (!r.decoy) {
        ++placed_r;
        continue;
      }
      ++decoys;
      CHECK(clear(r.lat0, r.lon0) >= 1450);
      CHECK(clear(r.lat1, r.lon1) >= 1450);
    }
    int64_t want_c = 0;
    for (const TruthPoint* p : it->second) want_c += p->cyclone;
    CHECK(placed_c == want_c);
    CHECK(placed_r == static_cast<int64_t>(it->second.size()) - want_c);
  }
  CHECK(decoys > 100);  // decoys are still there
}

TEST_CASE("sequence: the background changes smoothly from step to step", "[io][synthetic][sequence]") {
  // Mean |dPSL| between consecutive steps, against consecutive single samples (independent weather each step).
  const int64_t H = 24, W = 36, first = 4000, n = 16;
  const SyntheticSequence s(9, H, W, first, n);
  const SyntheticGenerator g(9, H, W);
  auto mean_abs_diff = [&](const Tensor& a, const Tensor& b) {
    const float* x = a.data_as<float>();
    const float* y = b.data_as<float>();
    double sum = 0;
    for (int64_t p = 0; p < H * W; ++p) sum += std::fabs(x[p * kNumChannels + 7] - y[p * kNumChannels + 7]);
    return sum / static_cast<double>(H * W);
  };
  double seq = 0, single = 0;
  Tensor prev_s, prev_g;
  for (int64_t k = 0; k < n; ++k) {
    const Tensor xs = s.generate(k).data, xg = g.generate(first + k, noleap_step_time(first + k)).data;
    if (k > 0) {
      seq += mean_abs_diff(prev_s, xs);
      single += mean_abs_diff(prev_g, xg);
    }
    prev_s = xs;
    prev_g = xg;
  }
  INFO("mean |dPSL| per step: sequence " << seq / (n - 1) << " Pa, single samples " << single / (n - 1) << " Pa");
  CHECK(seq < 0.3 * single);
}

TEST_CASE("sequence: placed events are labelled at (nearly) every step, few labels belong to no event (96x144)",
          "[io][synthetic][sequence]") {
  // A cyclone point counts as labelled when derive_labels labels a TC centre within 300 km of it; a river point
  // when the mask has AR pixels within 250 km of at least 4 of its 5 middle path points (t = 0.25 .. 0.75).
  // docs/data.md "Sequence mode" reports the fractions over more steps, seeds and 192x288.
  const int64_t H = 96, W = 144, n = 120;
  int64_t tc_pts = 0, tc_hit = 0, ar_pts = 0, ar_hit = 0, tc_labels = 0, tc_orphans = 0, ar_regions = 0, ar_orphans = 0,
          steps = 0;
  std::vector<double> lat(H);
  for (int64_t i = 0; i < H; ++i) lat[static_cast<size_t>(i)] = -90 + (static_cast<double>(i) + 0.5) * 180.0 / H;
  auto lon = [&](int64_t j) { return static_cast<double>(j) * 360.0 / W; };
  for (uint64_t seed : {1, 4}) {
    const SyntheticSequence s(seed, H, W, 1400, n);
    const auto truth = by_step(s);
    for (int64_t k = 0; k < n; ++k, ++steps) {
      const SyntheticSample x = s.generate(k);
      const uint8_t* lab = x.labels.data_as<uint8_t>();
      const auto it = truth.find(s.first_step() + k);
      const std::vector<const TruthPoint*> pts = it == truth.end() ? std::vector<const TruthPoint*>{} : it->second;
      auto ar_near = [&](double la, double lo) {
        for (int64_t i = 0; i < H; ++i) {
          if (std::fabs(lat[static_cast<size_t>(i)] - la) > 3) continue;
          for (int64_t j = 0; j < W; ++j)
            if (lab[i * W + j] == 2 && gc_km(la, lo, lat[static_cast<size_t>(i)], lon(j)) <= 250) return true;
        }
        return false;
      };
      for (const TruthPoint* p : pts) {
        if (p->cyclone) {
          ++tc_pts;
          bool hit = false;
          for (const DetectedCyclone& c : x.report.cyclones)
            hit = hit || (c.labelled && gc_km(c.lat, c.lon, p->lat, p->lon) <= 300);
          tc_hit += hit;
        } else {
          ++ar_pts;
          int core = 0;
          for (size_t q = 2; q <= 6; ++q) core += ar_near(p->path[q].first, p->path[q].second);
          ar_hit += core >= 4;
        }
      }
      for (const DetectedCyclone& c : x.report.cyclones) {
        if (!c.labelled) continue;
        ++tc_labels;
        bool near = false;
        for (const TruthPoint* p : pts) near = near || (p->cyclone && gc_km(c.lat, c.lon, p->lat, p->lon) <= 300);
        tc_orphans += !near;
      }
      // AR regions of the mask (8-connected, periodic in longitude) with no pixel within 250 km of a river's path.
      std::vector<uint8_t> seen(static_cast<size_t>(H * W), 0);
      for (int64_t p0 = 0; p0 < H * W; ++p0) {
        if (lab[p0] != 2 || seen[static_cast<size_t>(p0)]) continue;
        ++ar_regions;
        std::vector<int64_t> stack{p0}, members;
        seen[static_cast<size_t>(p0)] = 1;
        while (!stack.empty()) {
          const int64_t q = stack.back();
          stack.pop_back();
          members.push_back(q);
          for (int di = -1; di <= 1; ++di)
            for (int dj = -1; dj <= 1; ++dj) {
              const int64_t i2 = q / W + di;
              if (i2 < 0 || i2 >= H) continue;
              const int64_t r = i2 * W + (q % W + dj + W) % W;
              if (lab[r] == 2 && !seen[static_cast<size_t>(r)]) {
                seen[static_cast<size_t>(r)] = 1;
                stack.push_back(r);
              }
            }
        }
        bool near = false;
        for (const TruthPoint* p : pts)
          if (!p->cyclone)
            for (size_t m = 0; m < members.size() && !near; m += 2)
              near = path_km(lat[static_cast<size_t>(members[m] / W)], lon(members[m] % W), p->path) <= 250;
        ar_orphans += !near;
      }
    }
  }
  INFO("cyclone points labelled " << tc_hit << " of " << tc_pts << ", river points " << ar_hit << " of " << ar_pts
                                  << "; TC labels with no cyclone " << tc_orphans << " of " << tc_labels
                                  << ", AR regions with no river " << ar_orphans << " of " << ar_regions << " ("
                                  << steps << " steps)");
  REQUIRE(tc_pts > 200);
  REQUIRE(ar_pts > 300);
  CHECK(static_cast<double>(tc_hit) >= 0.95 * static_cast<double>(tc_pts));
  CHECK(static_cast<double>(ar_hit) >= 0.95 * static_cast<double>(ar_pts));
  CHECK(static_cast<double>(tc_orphans) <= 0.02 * static_cast<double>(tc_labels));
  CHECK(static_cast<double>(ar_orphans) <= 0.1 * static_cast<double>(steps));
}

TEST_CASE("sequence: bad windows and steps are refused", "[io][synthetic][sequence]") {
  CHECK_THROWS_WITH(SyntheticSequence(1, 16, 24, -1, 10), Catch::Contains("first_step >= 0"));
  CHECK_THROWS(SyntheticSequence(1, 16, 24, 0, 0));
  CHECK_THROWS(SyntheticSequence(1, 4, 24, 0, 10));  // grid too small (the generator's check)
  const SyntheticSequence s(1, 16, 24, 0, 4);
  CHECK_THROWS_WITH(s.generate(4), Catch::Contains("outside 0..3"));
  CHECK_THROWS(s.generate(-1));
}
