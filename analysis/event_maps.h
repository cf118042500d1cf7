// PNG maps for `climseg events` (docs/events.md), readable without Python: how often each cell is inside a tropical
// cyclone (TC) or an atmospheric river (AR), and the tracks of the events, drawn over the time-mean of an input field.
//
// Layout (one 8-bit RGB PNG, north up, written atomically with io::write_png):
//
//   title line
//   latitude labels | map | (margin)      the map is equirectangular: equal degrees per pixel on both axes
//                     longitude labels
//   legend                                frequency: a colour bar per class (ticks in % of time steps) and the
//                                         background's name, units and min..max; tracks: line and genesis samples
//
//   map width     about MapOptions::width pixels whatever the grid: a grid of W <= width columns is upsampled by the
//                 whole factor round(width / W) (nearest neighbour: 144 columns -> 1152 px), a wider grid is averaged
//                 down to `width` columns (box filter); the height follows from the latitude span (equal degrees)
//   extent        the cells' edges: midpoints between neighbouring centres, the outer ones extended by half a spacing
//                 (latitudes clamped to +-90); the left edge is the first longitude's west edge, so a -180..180 grid
//                 is drawn as it is and a 0..360 grid has Greenwich on the left
//   background    the field's finite min..max scaled to grey kBgGreyLo..kBgGreyHi (a constant or empty field: flat
//                 mid-grey 128; a non-finite value: kMissingColour)
//   graticule     every 30 degrees, labelled "60N" "0" "30S" and "120W" "0" "60E" "180"
//
// Frequency: per class, alpha = max_alpha * f / (the class's maximum f over the map), colour kFreqTcColour (TC) or
// kFreqArColour (AR); a cell with both gets total alpha 1 - (1 - a_tc)(1 - a_ar) and the alpha-weighted mean colour.
// Cells with f == 0 keep the background untouched.
// Tracks: one polyline per event (kTrackTcColour / kTrackArColour, with a dark outline), a filled dot at genesis (the
// first point). Consecutive points are joined the short way round: a step of more than 180 degrees in longitude is
// drawn as two pieces that leave one edge of the map and come back at the other, never a line across the map.
// Longitudes of any convention are accepted (a point at -170 on a 0..360 grid is drawn at 190).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/cf_grid.h"
#include "io/rgb_image.h"

namespace climseg::analysis {

using Rgb = std::array<uint8_t, 3>;

inline constexpr uint8_t kBgGreyLo = 45, kBgGreyHi = 225, kBgGreyFlat = 128;
inline constexpr Rgb kMissingColour{96, 88, 72};
inline constexpr Rgb kFreqTcColour{235, 20, 20};
inline constexpr Rgb kFreqArColour{20, 70, 255};
inline constexpr Rgb kTrackTcColour{255, 110, 0};
inline constexpr Rgb kTrackArColour{40, 140, 255};
inline constexpr Rgb kGenesisTcColour{220, 0, 0};
inline constexpr Rgb kGenesisArColour{0, 50, 200};

struct MapBackground {        // the time-mean of an input field, drawn in grey underneath; empty values: flat mid-grey
  std::vector<float> values;  // (H,W) row-major, row 0 south
  std::string name;           // e.g. "TMQ" (drawn in the legend)
  std::string units;          // e.g. "kg m-2"
};

struct TrackLine {
  int cls = 1;                   // 1 tropical cyclone, 2 atmospheric river
  std::vector<double> lat, lon;  // centroid per step, degrees; lon in any convention, may jump across the dateline
                                 // (drawn the short way round); a non-finite point breaks the line
};

struct MapOptions {
  int64_t width = 1200;     // target map width in pixels (see above)
  float max_alpha = 0.85f;  // opacity of a class at its maximum frequency
  int text_scale = 2;       // the 5x7 font's pixel size (title, labels, legend)
  int track_width = 3;      // line width of a track, pixels (plus a 1-pixel dark outline each side)
  int genesis_radius = 5;   // radius of the genesis dot, pixels
};

// Where the map lies in the image and how degrees map to pixels (for callers and tests).
struct MapLayout {
  int64_t image_width = 0, image_height = 0;
  int64_t map_x0 = 0, map_y0 = 0, map_w = 0, map_h = 0;  // the map's pixels: [x0, x0 + w) x [y0, y0 + h)
  double lon_west = 0, lon_east = 0, lat_south = 0, lat_north = 0;
  bool periodic = false;
  // Continuous image coordinates: pixel (x, y) covers [x, x+1) x [y, y+1).
  double x_of(double lon) const { return map_x0 + (lon - lon_west) / (lon_east - lon_west) * map_w; }
  double y_of(double lat) const { return map_y0 + (lat_north - lat) / (lat_north - lat_south) * map_h; }
  // Pixel containing the point (lon is not wrapped here).
  int64_t px(double lon) const;
  int64_t py(double lat) const;
};

MapLayout map_layout(const io::CfGrid& grid, const MapOptions& opt = {});

// Frequency: fraction (0..1) of time steps in which each cell is inside a TC (tc) or an AR (ar), (H,W) row 0 south;
// either may be empty (class not drawn).
io::RgbImage render_frequency_map(const io::CfGrid& grid, const MapBackground& bg, const std::vector<float>& tc,
                                  const std::vector<float>& ar, const std::string& title, const MapOptions& opt = {});
void write_frequency_png(const std::string& path, const io::CfGrid& grid, const MapBackground& bg,
                         const std::vector<float>& tc, const std::vector<float>& ar, const std::string& title,
                         const MapOptions& opt = {});

// Tracks: one polyline per event, genesis marked with a dot; TCs and ARs in distinct colours.
io::RgbImage render_tracks_map(const io::CfGrid& grid, const MapBackground& bg, const std::vector<TrackLine>& tracks,
                               const std::string& title, const MapOptions& opt = {});
void write_tracks_png(const std::string& path, const io::CfGrid& grid, const MapBackground& bg,
                      const std::vector<TrackLine>& tracks, const std::string& title, const MapOptions& opt = {});

// The built-in 5x7 bitmap font (digits, A-Z, a-z with descenders, space and . , - + = : ; % / ( ) [ ] ' ? _ < > *;
// any other character is drawn as '?'). Glyphs advance 6 * scale pixels; (x, y) is the top left of the first glyph.
void draw_text(io::RgbImage& img, int64_t x, int64_t y, const std::string& text, int scale, const Rgb& colour);
int64_t text_width(const std::string& text, int scale);
bool glyph_pixel(char c, int row, int col);  // row 0..8 (7, 8: descenders), col 0..4

}  // namespace climseg::analysis
