// Writing segmentation masks as CF-NetCDF (`climseg predict --output OUT.nc`; docs/data.md "NetCDF output").
//
// Layout (NetCDF-4, compressed, one chunk per time step):
//   time(time)            the inputs' time values, units and calendar
//   lat(lat), lon(lon)    the inputs' coordinates, latitudes ascending (row 0 south)
//   mask(time, lat, lon)  byte: 0 background, 1 tropical cyclone, 2 atmospheric river (flag_values/flag_meanings)
//   prob_tc, prob_ar      (optional) float: the softmax probability of classes 1 and 2
// plus global attributes (Conventions CF-1.8, title, history, source, the model, the weights and their checksum, the
// channel map). `climseg data generate --format netcdf` writes its truth labels in the same layout, so a predicted
// and a true mask file are interchangeable (data convert, events).
//
// The file appears atomically: written under a temporary name and renamed by commit(); a writer destroyed without
// commit() removes its temporary, so a failed run leaves no partial file and keeps an older one of that name.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/cf_grid.h"

namespace climseg::io {

struct CfMaskFileInfo {
  CfGrid grid;
  CfTimeAxis time;
  bool probabilities = false;                                  // also write prob_tc and prob_ar
  std::vector<std::pair<std::string, std::string>> attributes;  // global attributes, after Conventions
};

// The mask variable's name and class meanings.
inline constexpr const char* kMaskVariable = "mask";
inline constexpr const char* kMaskFlagMeanings = "background tropical_cyclone atmospheric_river";

class CfMaskWriter {
 public:
  CfMaskWriter(const std::string& path, const CfMaskFileInfo& info);
  ~CfMaskWriter();
  CfMaskWriter(const CfMaskWriter&) = delete;
  CfMaskWriter& operator=(const CfMaskWriter&) = delete;

  // Time step `index` (0-based; any order): its time value, the (H,W) mask with row 0 south, and with
  // probabilities the (H,W,K) softmax probabilities (K >= 3; classes 1 and 2 are written), else null.
  void write(size_t index, double time_value, const uint8_t* mask, const float* probs, int64_t num_classes);
  void commit();  // closes the file and renames it into place
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes (H,W) masks as one file with the layout above (tests, data generate): masks[t] for time value times[t].
void write_cf_masks(const std::string& path, const CfMaskFileInfo& info, const std::vector<double>& times,
                    const std::vector<const uint8_t*>& masks);

}  // namespace climseg::io
