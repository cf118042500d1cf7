#include "io/dataset_stats.h"

#include <hdf5.h>

#include <cmath>
#include <limits>

#include "engine/atomic_file.h"
#include "engine/check.h"
#include "io/hdf5_util.h"

namespace climseg::io {

using h5::H5Id;

StatsAccumulator::StatsAccumulator(int64_t channels) {
  CS_CHECK(channels > 0, "StatsAccumulator: channels must be positive, got ", channels);
  const auto c = static_cast<size_t>(channels);
  count_.assign(c, 0.0);
  mean_.assign(c, 0.0);
  sqmean_.assign(c, 0.0);
  min_.assign(c, std::numeric_limits<double>::infinity());
  max_.assign(c, -std::numeric_limits<double>::infinity());
}

void StatsAccumulator::add(const Tensor& data, const std::string& what) {
  CS_CHECK(data.defined() && data.device() == Device::cpu && data.dtype() == DType::f32, what,
           ": statistics need a host float32 tensor, got ", data.defined() ? data.str() : "an undefined tensor");
  const Shape& s = data.shape();
  CS_CHECK(s.c == channels(), what, ": ", s.c, " channels, expected ", channels());
  const int64_t P = s.pixels(), C = s.c, stride = data.pixel_stride();
  CS_CHECK(P > 0, what, ": empty field");
  const float* x = data.data_as<float>();
  StatsAccumulator one(C);
  // One pass over the pixels (channels innermost, as stored), per-channel sums in double.
  std::vector<double> sum(static_cast<size_t>(C), 0.0), sq(static_cast<size_t>(C), 0.0);
  std::vector<double> lo(static_cast<size_t>(C), std::numeric_limits<double>::infinity());
  std::vector<double> hi(static_cast<size_t>(C), -std::numeric_limits<double>::infinity());
  bool finite = true;
  for (int64_t p = 0; p < P; ++p) {
    const float* xp = x + p * stride;
    for (int64_t c = 0; c < C; ++c) {
      const double v = xp[c];
      const auto ci = static_cast<size_t>(c);
      finite &= std::isfinite(v);
      sum[ci] += v;
      sq[ci] += v * v;
      lo[ci] = std::min(lo[ci], v);
      hi[ci] = std::max(hi[ci], v);
    }
  }
  if (!finite)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) {
        const double v = x[p * stride + c];
        CS_CHECK(std::isfinite(v), what, ": non-finite value ", v, " in channel ", c, " (", channel_name(c),
                 ") at pixel ", p);
      }
  for (int64_t c = 0; c < C; ++c) {
    const auto ci = static_cast<size_t>(c);
    one.count_[ci] = static_cast<double>(P);
    one.mean_[ci] = sum[ci] / static_cast<double>(P);
    one.sqmean_[ci] = sq[ci] / static_cast<double>(P);
    one.min_[ci] = lo[ci];
    one.max_[ci] = hi[ci];
  }
  one.samples_ = s.n;
  merge(one);
}

void StatsAccumulator::merge(const StatsAccumulator& o) {
  CS_CHECK(o.channels() == channels(), "StatsAccumulator::merge: ", o.channels(), " channels into ", channels());
  for (size_t c = 0; c < count_.size(); ++c) {
    const double n = count_[c] + o.count_[c];
    if (n == 0) continue;
    const double a = count_[c] / n, b = o.count_[c] / n;
    mean_[c] = a * mean_[c] + b * o.mean_[c];
    sqmean_[c] = a * sqmean_[c] + b * o.sqmean_[c];
    count_[c] = n;
    min_[c] = std::min(min_[c], o.min_[c]);
    max_[c] = std::max(max_[c], o.max_[c]);
  }
  samples_ += o.samples_;
}

Stats StatsAccumulator::result() const {
  CS_CHECK(samples_ > 0, "dataset statistics of no samples");
  Stats s;
  s.layout = SampleLayout::deepcam;
  s.count = count_;
  s.mean = mean_;
  s.sqmean = sqmean_;
  s.minval = min_;
  s.maxval = max_;
  return s;
}

std::vector<double> StatsAccumulator::packed() const {
  std::vector<double> p{static_cast<double>(samples_)};
  for (size_t c = 0; c < count_.size(); ++c)
    p.insert(p.end(), {count_[c], mean_[c], sqmean_[c], min_[c], max_[c]});
  return p;
}

StatsAccumulator StatsAccumulator::from_packed(const std::vector<double>& p) {
  CS_CHECK(p.size() >= 6 && (p.size() - 1) % 5 == 0, "StatsAccumulator::from_packed: bad length ", p.size());
  StatsAccumulator a(static_cast<int64_t>((p.size() - 1) / 5));
  a.samples_ = static_cast<int64_t>(p[0]);
  for (size_t c = 0; c < a.count_.size(); ++c) {
    a.count_[c] = p[1 + 5 * c];
    a.mean_[c] = p[2 + 5 * c];
    a.sqmean_[c] = p[3 + 5 * c];
    a.min_[c] = p[4 + 5 * c];
    a.max_[c] = p[5 + 5 * c];
  }
  return a;
}

void write_stats(const std::string& path, const Stats& s) {
  const size_t C = s.minval.size();
  CS_CHECK(C > 0 && s.maxval.size() == C, path, ": statistics need minval and maxval for every channel");
  for (size_t c = 0; c < C; ++c)
    CS_CHECK(s.maxval[c] > s.minval[c], path, ": channel ", c, " (", channel_name(static_cast<int64_t>(c)),
             ") is constant (min ", s.minval[c], " = max ", s.maxval[c], "); it cannot be min-max normalised");
  h5::QuietHdf5Errors quiet;
  AtomicFile out(path);
  {
    H5Id fcpl(IO_H5_CHECK(H5Pcreate(H5P_FILE_CREATE), path, ": property list"), H5Pclose);
    H5Id file(IO_H5_CHECK(H5Fcreate(out.tmp_path().c_str(), H5F_ACC_EXCL, fcpl, H5P_DEFAULT), path, ": creating ",
                          out.tmp_path()),
              H5Fclose);
    H5Id group(IO_H5_CHECK(H5Gcreate2(file, "climate", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path,
                           ": creating group climate"),
               H5Gclose);
    // No modification times in the objects: the same statistics give the same bytes.
    H5Id dcpl(IO_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), path, ": property list"), H5Pclose);
    IO_H5_CHECK(H5Pset_obj_track_times(dcpl, false), path, ": track times");
    const hsize_t dims[1] = {static_cast<hsize_t>(C)};
    auto put = [&](const char* name, const std::vector<double>& v) {
      if (v.empty()) return;
      CS_CHECK(v.size() == C, path, ": climate/", name, " has ", v.size(), " values for ", C, " channels");
      H5Id space(IO_H5_CHECK(H5Screate_simple(1, dims, nullptr), path, ": dataspace"), H5Sclose);
      H5Id d(IO_H5_CHECK(H5Dcreate2(group, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), path,
                         ": creating climate/", name),
             H5Dclose);
      IO_H5_CHECK(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), path, ": writing climate/",
                  name);
    };
    put("count", s.count);
    put("mean", s.mean);
    put("sqmean", s.sqmean);
    put("minval", s.minval);
    put("maxval", s.maxval);
    group.reset();
    IO_H5_CHECK(file.close(), path, ": closing ", out.tmp_path());
  }
  out.commit();
}

}  // namespace climseg::io
