// Connected components of a class mask on a latitude-longitude grid (`climseg events`, docs/events.md).
//
// Pixels of the same nonzero class value are connected when they are 8-neighbours: the same or adjacent rows and
// columns. With a periodic grid (the longitudes cover 360 degrees) columns 0 and W-1 are adjacent too, so a region
// crossing the dateline (or the 0/360 seam) is one component. Rows never wrap: the southernmost and the northernmost
// rows are not neighbours (the ClimateNet Python tracking wraps latitude too and joins the two poles; climseg does
// not). Background (0) is never a component.
//
// The mask is scanned once into runs (maximal stretches of one class in one row); runs are joined by union-find with
// the overlapping runs of the row below (8-connectivity: columns within one of each other), then numbered 1, 2, ...
// in the raster order of their first run (row 0 first, then by column). Work is O(H W) for the scan and O(runs) for
// the rest, so large empty areas cost one byte comparison per pixel.
#pragma once

#include <cstdint>
#include <vector>

namespace climseg::analysis {

struct Run {
  int32_t row = 0, c0 = 0, c1 = 0;  // columns c0..c1 inclusive
};

struct Components {
  int64_t height = 0, width = 0;
  int32_t count = 0;                   // components 1..count
  std::vector<uint8_t> cls;            // class of component k at cls[k - 1]
  // The runs of component k are runs[first[k - 1] .. first[k]) (ordered by row, then column).
  std::vector<Run> runs;
  std::vector<int64_t> first;          // count + 1 offsets
};

// mask: (H,W) row-major class values (0 background). Classes above 255 cannot occur (uint8).
void label_components(const uint8_t* mask, int64_t height, int64_t width, bool periodic, Components& out);

// The (H,W) label image of `c`: component number per pixel, 0 for background.
std::vector<int32_t> label_image(const Components& c);

}  // namespace climseg::analysis
