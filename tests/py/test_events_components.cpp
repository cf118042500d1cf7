// analysis/components against scipy.ndimage.label (tests/py/events_components.py): random class masks of many shapes
// (W = 1 and H = 1 included), densities 0.05..0.6 and classes 0..2, both salt-and-pepper and blobs (some across the
// seam), on periodic and non-periodic grids. label_image() must group the same pixels as scipy (with the seam merged
// by union-find on the periodic grid), and number them exactly as scipy's partition renumbered in raster order of the
// first pixel. A 768 x 1152 mask with ~8% class pixels (the DeepCAM grid) is checked too and timed (printed only).
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "analysis/components.h"
#include "engine/tensor.h"
#include "tests/util/npy.h"
#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::analysis;

namespace {

const std::string kScript = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/events_components.py";

struct Case {
  std::string name;
  int64_t h, w;
  std::vector<uint8_t> mask;
};

// Independent pixels: class 1 or 2 (or only 1) with probability `density`.
std::vector<uint8_t> pepper(std::mt19937& rng, int64_t h, int64_t w, double density, bool two_classes) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<uint8_t> m(static_cast<size_t>(h * w));
  for (auto& x : m) x = u(rng) < density ? static_cast<uint8_t>(two_classes ? 1 + rng() % 2 : 1) : 0;
  return m;
}

// Random ellipses of class 1 or 2 painted (columns wrap around) until about `coverage` of the pixels are set.
// Radii up to `scale` rows and 2 `scale` columns (default: a twelfth of the mask's size).
std::vector<uint8_t> blobs(std::mt19937& rng, int64_t h, int64_t w, double coverage, double scale = 0) {
  std::vector<uint8_t> m(static_cast<size_t>(h * w), 0);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t target = static_cast<int64_t>(coverage * static_cast<double>(h * w));
  int64_t set = 0;
  if (scale <= 0) scale = std::max(1.0, std::sqrt(static_cast<double>(h * w)) / 12.0);
  while (set < target) {
    const double cy = u(rng) * static_cast<double>(h), cx = u(rng) * static_cast<double>(w);
    const double ry = 0.5 + u(rng) * scale, rx = 0.5 + u(rng) * 2 * scale;
    const uint8_t k = static_cast<uint8_t>(1 + rng() % 2);
    for (int64_t y = static_cast<int64_t>(cy - ry) - 1; y <= static_cast<int64_t>(cy + ry) + 1; ++y) {
      if (y < 0 || y >= h) continue;
      for (int64_t x = static_cast<int64_t>(cx - rx) - 1; x <= static_cast<int64_t>(cx + rx) + 1; ++x) {
        const double dy = (static_cast<double>(y) + 0.5 - cy) / ry, dx = (static_cast<double>(x) + 0.5 - cx) / rx;
        if (dy * dy + dx * dx > 1) continue;
        uint8_t& p = m[static_cast<size_t>(y * w + ((x % w) + w) % w)];
        if (p == 0) ++set;
        p = k;
      }
    }
  }
  return m;
}

void write_mask(const std::string& path, const Case& c) {
  Tensor t = Tensor::empty(Shape{1, 1, c.h, c.w}, DType::u8);
  std::copy(c.mask.begin(), c.mask.end(), t.data_as<uint8_t>());
  test::npy_write(path, t);
}

std::vector<int32_t> read_labels(const std::string& path, int64_t h, int64_t w) {
  const Tensor t = test::npy_read(path);
  REQUIRE(t.dtype() == DType::i32);
  REQUIRE(t.numel() == h * w);
  const int32_t* p = t.data_as<int32_t>();
  return std::vector<int32_t>(p, p + h * w);
}

// The same pixels grouped together (a bijection between the two labelings, background to background)? Returns an
// empty string when they are, else the first disagreement.
std::string partition_mismatch(const std::vector<int32_t>& a, const std::vector<int32_t>& b, int64_t w) {
  std::map<int32_t, int32_t> ab, ba;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string at = "pixel (" + std::to_string(static_cast<int64_t>(i) / w) + ", " +
                           std::to_string(static_cast<int64_t>(i) % w) + ")";
    if ((a[i] == 0) != (b[i] == 0)) return at + ": background in one only";
    if (a[i] == 0) continue;
    auto [x, new_a] = ab.emplace(a[i], b[i]);
    if (!new_a && x->second != b[i]) return at + ": climseg joins what scipy separates";
    auto [y, new_b] = ba.emplace(b[i], a[i]);
    if (!new_b && y->second != a[i]) return at + ": scipy joins what climseg separates";
  }
  return "";
}

}  // namespace

TEST_CASE("label_components partitions and numbers random masks as scipy.ndimage.label does", "[py][events]") {
  if (!test::python_can_import("scipy.ndimage, numpy")) {
    std::printf("SKIPPED: %s cannot import scipy.ndimage (Debian package python3-scipy)\n", test::kPython3);
    std::exit(77);
  }
  std::mt19937 rng(20261206);
  std::vector<Case> cases;
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1},  {1, 2},  {2, 1},   {1, 97}, {97, 1},   {2, 2},
                                                          {3, 3},  {5, 8},  {16, 16}, {31, 47}, {64, 128}, {96, 144},
                                                          {7, 300}, {300, 7}};
  for (auto [h, w] : sizes)
    for (double density : {0.05, 0.2, 0.4, 0.6}) {
      const std::string tag = std::to_string(h) + "x" + std::to_string(w) + "_" + std::to_string(int(density * 100));
      cases.push_back({"pepper2_" + tag, h, w, pepper(rng, h, w, density, true)});
      cases.push_back({"pepper1_" + tag, h, w, pepper(rng, h, w, density, false)});
      if (h * w >= 64) cases.push_back({"blobs_" + tag, h, w, blobs(rng, h, w, density)});
    }
  cases.push_back({"empty_9x13", 9, 13, std::vector<uint8_t>(9 * 13, 0)});
  cases.push_back({"full_9x13", 9, 13, std::vector<uint8_t>(9 * 13, 2)});
  Case big{"deepcam_768x1152", 768, 1152, blobs(rng, 768, 1152, 0.08, 14)};
  cases.push_back(big);

  test::TempDir dir;
  {
    std::ofstream list(dir.file("cases.txt"));
    for (const Case& c : cases) {
      write_mask(dir.file(c.name + ".npy"), c);
      list << c.name << "\n";
    }
  }
  const std::string py = test::python_run(kScript + " " + dir.path().string());
  INFO(py);

  int64_t checked = 0, components = 0, seam_joined = 0;
  Components comp;
  for (const Case& c : cases)
    for (bool periodic : {true, false}) {
      INFO(c.name << (periodic ? " periodic" : " not periodic"));
      label_components(c.mask.data(), c.h, c.w, periodic, comp);
      const std::vector<int32_t> mine = label_image(comp);
      const std::string base = dir.file(c.name + (periodic ? "_p" : "_n"));
      const std::vector<int32_t> raw = read_labels(base + "_raw.npy", c.h, c.w);
      const std::vector<int32_t> raster = read_labels(base + "_raster.npy", c.h, c.w);
      const std::string why = partition_mismatch(mine, raw, c.w);
      INFO(why);
      REQUIRE(why.empty());
      REQUIRE(mine == raster);  // raster-order numbering, exactly
      REQUIRE(comp.count == (raster.empty() ? 0 : *std::max_element(raster.begin(), raster.end())));
      for (int32_t k = 1; k <= comp.count; ++k) {  // the class of each component is its pixels' class
        const Run& r = comp.runs[static_cast<size_t>(comp.first[static_cast<size_t>(k) - 1])];
        REQUIRE(comp.cls[static_cast<size_t>(k) - 1] == c.mask[static_cast<size_t>(r.row * c.w + r.c0)]);
      }
      ++checked;
      components += comp.count;
      if (!periodic) {
        Components per;
        label_components(c.mask.data(), c.h, c.w, true, per);
        seam_joined += comp.count - per.count;
      }
    }
  std::printf("checked %lld labelings (%lld components) against scipy; the seam joined %lld components\n",
              static_cast<long long>(checked), static_cast<long long>(components),
              static_cast<long long>(seam_joined));
  CHECK(checked == static_cast<int64_t>(2 * cases.size()));
  CHECK(seam_joined > 0);  // the periodic case did differ somewhere

  // Timing on the DeepCAM grid (printed, not asserted).
  int64_t pixels = 0;
  for (uint8_t x : big.mask) pixels += x != 0;
  const int reps = 20;
  double best = 1e30, total = 0;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    label_components(big.mask.data(), big.h, big.w, true, comp);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ms);
    total += ms;
  }
  std::printf("label_components 768x1152, %.1f%% class pixels, %d components: best %.3f ms, mean %.3f ms over %d\n",
              100.0 * static_cast<double>(pixels) / static_cast<double>(big.mask.size()), comp.count, best,
              total / reps, reps);
  CHECK(std::abs(static_cast<double>(pixels) / static_cast<double>(big.mask.size()) - 0.08) < 0.02);
}
