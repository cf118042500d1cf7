#include <cstring>
#include <vector>

#include "engine/atomic_file.h"
#include "engine/check.h"
#include "io/cf_writer.h"
#include "io/netcdf_util.h"

namespace climseg::io {

struct CfMaskWriter::Impl {
  AtomicFile out;
  nc::File f;
  CfCoords coords;
  int mask = -1, prob_tc = -1, prob_ar = -1;
  int64_t H = 0, W = 0;
  std::vector<float> plane;
  explicit Impl(const std::string& path) : out(path) {}
};

CfMaskWriter::CfMaskWriter(const std::string& path, const CfMaskFileInfo& info) : impl_(new Impl(path)) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(nc::library_mutex());
  m.H = info.grid.height();
  m.W = info.grid.width();
  m.f = nc::File::create(m.out.tmp_path(), true);
  nc::File& f = m.f;
  f.put_att(NC_GLOBAL, "Conventions", "CF-1.8");
  for (const auto& [k, v] : info.attributes) f.put_att(NC_GLOBAL, k, v);
  m.coords = define_cf_coords(f, info.grid, info.time);
  const std::vector<int> dims = {m.coords.time_dim, m.coords.lat_dim, m.coords.lon_dim};
  const size_t chunk[3] = {1, static_cast<size_t>(m.H), static_cast<size_t>(m.W)};
  m.mask = f.def_var(kMaskVariable, NC_BYTE, dims);
  f.put_att(m.mask, "long_name", "class of each cell");
  f.put_att(m.mask, "flag_values", NC_BYTE, {0, 1, 2});
  f.put_att(m.mask, "flag_meanings", kMaskFlagMeanings);
  f.put_att(m.mask, "coordinates", "time " + info.grid.lat_name + " " + info.grid.lon_name);
  f.check(nc_def_var_chunking(f.id(), m.mask, NC_CHUNKED, chunk), "chunking mask");
  f.check(nc_def_var_deflate(f.id(), m.mask, 0, 1, 1), "compressing mask");
  if (info.probabilities) {
    for (auto [var, name, what] : {std::tuple{&m.prob_tc, "prob_tc", "tropical cyclone"},
                                   std::tuple{&m.prob_ar, "prob_ar", "atmospheric river"}}) {
      *var = f.def_var(name, NC_FLOAT, dims);
      f.put_att(*var, "long_name", std::string("probability of ") + what + " (softmax of the network's logits)");
      f.put_att(*var, "units", "1");
      f.check(nc_def_var_chunking(f.id(), *var, NC_CHUNKED, chunk), std::string("chunking ") + name);
      f.check(nc_def_var_deflate(f.id(), *var, 1, 1, 1), std::string("compressing ") + name);
    }
  }
  f.enddef();
  put_cf_coord_values(f, info.grid, m.coords);
}

CfMaskWriter::~CfMaskWriter() {
  std::lock_guard<std::mutex> lock(nc::library_mutex());
  impl_.reset();  // closes the file (if open) under the lock; AtomicFile then removes an uncommitted temporary
}

const std::string& CfMaskWriter::path() const { return impl_->out.path(); }

void CfMaskWriter::write(size_t index, double time_value, const uint8_t* mask, const float* probs,
                         int64_t num_classes) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(nc::library_mutex());
  CS_CHECK(m.f.is_open(), m.out.path(), ": write after commit");
  put_cf_time(m.f, m.coords, index, time_value);
  const size_t start[3] = {index, 0, 0}, count[3] = {1, static_cast<size_t>(m.H), static_cast<size_t>(m.W)};
  static_assert(sizeof(signed char) == sizeof(uint8_t));
  m.f.check(nc_put_vara_schar(m.f.id(), m.mask, start, count, reinterpret_cast<const signed char*>(mask)),
            "writing mask");
  if (m.prob_tc >= 0) {
    CS_CHECK(probs != nullptr && num_classes >= 3, m.out.path(), ": probabilities requested but not given");
    const size_t plane = static_cast<size_t>(m.H * m.W);
    m.plane.resize(plane);
    for (auto [var, k] : {std::pair{m.prob_tc, 1}, std::pair{m.prob_ar, 2}}) {
      for (size_t p = 0; p < plane; ++p) m.plane[p] = probs[p * static_cast<size_t>(num_classes) + k];
      m.f.check(nc_put_vara_float(m.f.id(), var, start, count, m.plane.data()), "writing probabilities");
    }
  }
}

void CfMaskWriter::commit() {
  {
    std::lock_guard<std::mutex> lock(nc::library_mutex());
    impl_->f.close();
  }
  impl_->out.commit();
}

void write_cf_masks(const std::string& path, const CfMaskFileInfo& info, const std::vector<double>& times,
                    const std::vector<const uint8_t*>& masks) {
  CS_CHECK(times.size() == masks.size(), path, ": ", times.size(), " times for ", masks.size(), " masks");
  CfMaskWriter w(path, info);
  for (size_t t = 0; t < masks.size(); ++t) w.write(t, times[t], masks[t], nullptr, 3);
  w.commit();
}

}  // namespace climseg::io
