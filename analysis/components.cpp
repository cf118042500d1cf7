#include "analysis/components.h"

#include <algorithm>
#include <cstring>

#include "engine/check.h"

namespace climseg::analysis {

namespace {

struct RawRun {
  int32_t row, c0, c1;
  uint8_t cls;
};

int64_t find_root(std::vector<int64_t>& parent, int64_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];
    x = parent[x];
  }
  return x;
}

void unite(std::vector<int64_t>& parent, int64_t a, int64_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a == b) return;
  if (a < b) parent[b] = a;  // the earlier run stays the root: the root is each component's first run
  else parent[a] = b;
}

}  // namespace

void label_components(const uint8_t* mask, int64_t height, int64_t width, bool periodic, Components& out) {
  CS_CHECK(height >= 1 && width >= 1, "label_components: ", height, "x", width, " mask");
  CS_CHECK(width < (int64_t{1} << 31) && height < (int64_t{1} << 31), "label_components: mask too large");
  out.height = height;
  out.width = width;
  std::vector<RawRun> runs;
  std::vector<int64_t> row_start(static_cast<size_t>(height) + 1, 0);
  for (int64_t r = 0; r < height; ++r) {
    row_start[static_cast<size_t>(r)] = static_cast<int64_t>(runs.size());
    const uint8_t* m = mask + r * width;
    int64_t c = 0;
    while (c < width) {
      // Skip background 8 bytes at a time.
      while (c + 8 <= width) {
        uint64_t w;
        std::memcpy(&w, m + c, 8);
        if (w != 0) break;
        c += 8;
      }
      while (c < width && m[c] == 0) ++c;
      if (c >= width) break;
      const uint8_t k = m[c];
      const int64_t s = c;
      while (c < width && m[c] == k) ++c;
      runs.push_back(RawRun{static_cast<int32_t>(r), static_cast<int32_t>(s), static_cast<int32_t>(c - 1), k});
    }
  }
  row_start[static_cast<size_t>(height)] = static_cast<int64_t>(runs.size());
  const int64_t n = static_cast<int64_t>(runs.size());
  std::vector<int64_t> parent(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) parent[static_cast<size_t>(i)] = i;
  const int32_t last = static_cast<int32_t>(width - 1);
  for (int64_t r = 0; r < height; ++r) {
    const int64_t a0 = row_start[static_cast<size_t>(r)], a1 = row_start[static_cast<size_t>(r) + 1];
    // The seam within the row: a run ending at the last column and one starting at column 0.
    if (periodic && a1 - a0 >= 2) {
      const RawRun& f = runs[static_cast<size_t>(a0)];
      const RawRun& l = runs[static_cast<size_t>(a1 - 1)];
      if (f.c0 == 0 && l.c1 == last && f.cls == l.cls) unite(parent, a0, a1 - 1);
    }
    if (r == 0) continue;
    const int64_t b0 = row_start[static_cast<size_t>(r) - 1], b1 = a0;  // the row below (south)
    // Two-pointer sweep over both rows' runs, sorted by column: runs overlap (8-connected) when
    // cur.c0 <= prev.c1 + 1 and prev.c0 <= cur.c1 + 1.
    int64_t j = b0;
    for (int64_t i = a0; i < a1; ++i) {
      const RawRun& cur = runs[static_cast<size_t>(i)];
      while (j < b1 && runs[static_cast<size_t>(j)].c1 + 1 < cur.c0) ++j;
      for (int64_t k = j; k < b1 && runs[static_cast<size_t>(k)].c0 <= cur.c1 + 1; ++k)
        if (runs[static_cast<size_t>(k)].cls == cur.cls) unite(parent, i, k);
    }
    // Diagonal neighbours across the seam: (row r, col 0) with (row r-1, col W-1) and (row r, col W-1) with
    // (row r-1, col 0). A run touching column 0 is its row's first; one touching W-1 its row's last.
    if (periodic && width >= 2 && a1 > a0 && b1 > b0) {
      const RawRun& cf = runs[static_cast<size_t>(a0)];
      const RawRun& cl = runs[static_cast<size_t>(a1 - 1)];
      const RawRun& pf = runs[static_cast<size_t>(b0)];
      const RawRun& pl = runs[static_cast<size_t>(b1 - 1)];
      if (cf.c0 == 0 && pl.c1 == last && cf.cls == pl.cls) unite(parent, a0, b1 - 1);
      if (cl.c1 == last && pf.c0 == 0 && cl.cls == pf.cls) unite(parent, a1 - 1, b0);
    }
  }
  // Number the components by their root (the first run in raster order), then gather runs per component.
  std::vector<int32_t> label(static_cast<size_t>(n), 0);
  int32_t count = 0;
  out.cls.clear();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t root = find_root(parent, i);
    if (root == i) {
      label[static_cast<size_t>(i)] = ++count;
      out.cls.push_back(runs[static_cast<size_t>(i)].cls);
    } else {
      label[static_cast<size_t>(i)] = label[static_cast<size_t>(root)];  // root < i: already numbered
    }
  }
  out.count = count;
  out.first.assign(static_cast<size_t>(count) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++out.first[static_cast<size_t>(label[static_cast<size_t>(i)])];
  for (int32_t k = 0; k < count; ++k) out.first[static_cast<size_t>(k) + 1] += out.first[static_cast<size_t>(k)];
  // first[k] now counts the runs of components 1..k: component k's runs start at first[k - 1].
  std::vector<int64_t> pos(static_cast<size_t>(count) + 1, 0);
  for (int32_t k = 1; k <= count; ++k) pos[static_cast<size_t>(k)] = out.first[static_cast<size_t>(k) - 1];
  out.runs.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const RawRun& rr = runs[static_cast<size_t>(i)];
    out.runs[static_cast<size_t>(pos[static_cast<size_t>(label[static_cast<size_t>(i)])]++)] =
        Run{rr.row, rr.c0, rr.c1};
  }
}

std::vector<int32_t> label_image(const Components& c) {
  std::vector<int32_t> img(static_cast<size_t>(c.height * c.width), 0);
  for (int32_t k = 1; k <= c.count; ++k)
    for (int64_t i = c.first[static_cast<size_t>(k) - 1]; i < c.first[static_cast<size_t>(k)]; ++i) {
      const Run& r = c.runs[static_cast<size_t>(i)];
      std::fill(img.begin() + r.row * c.width + r.c0, img.begin() + r.row * c.width + r.c1 + 1, k);
    }
  return img;
}

}  // namespace climseg::analysis
