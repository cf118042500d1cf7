#include "analysis/mask_series.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>

#include "engine/check.h"
#include "io/cf_time.h"
#include "io/hdf5_util.h"
#include "io/input_files.h"
#if CLIMSEG_HAVE_NETCDF
#include "io/cf_reader.h"
#include "io/netcdf_util.h"
#endif

namespace climseg::analysis {

namespace {

bool is_prediction_file(const std::string& path) {
  io::h5::QuietHdf5Errors quiet;
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return false;
  const bool yes = io::h5::h5_exists(f, "prediction/mask");
  H5Fclose(f);
  return yes;
}

std::vector<std::string> read_string_array_attr(hid_t loc, const std::string& path, const char* name) {
  using io::h5::H5Id;
  if (H5Aexists(loc, name) <= 0) return {};
  H5Id attr(IO_H5_CHECK(H5Aopen(loc, name, H5P_DEFAULT), path, ": attribute ", name), H5Aclose);
  H5Id space(IO_H5_CHECK(H5Aget_space(attr), path, ": attribute ", name), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n <= 0) return {};
  H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  std::vector<char*> p(static_cast<size_t>(n), nullptr);
  IO_H5_CHECK(H5Aread(attr, type, p.data()), path, ": reading attribute ", name);
  std::vector<std::string> out;
  for (char* s : p) out.emplace_back(s ? s : "");
  H5Dvlen_reclaim(type, space, H5P_DEFAULT, p.data());
  return out;
}

}  // namespace

struct MaskSeries::Impl {
  io::CfGrid grid;
  io::CfTimeAxis axis;
  io::cf::TimeUnits units;
  io::cf::Calendar calendar = io::cf::Calendar::noleap;
  std::vector<double> lat_bnds, lon_bnds;
  std::string var;
  // HDF5 predictions: (file, sample index) per step, with its time value.
  struct H5Step {
    std::string file;
    int64_t index;
    double value;
  };
  std::vector<H5Step> h5;
#if CLIMSEG_HAVE_NETCDF
  std::unique_ptr<io::CfReader> nc;
  std::vector<float> buf;
#endif
  std::vector<std::string> names;  // per step, for step_file()
};

MaskSeries::MaskSeries(const std::vector<std::string>& files_in, const MaskSeriesOptions& opt)
    : impl_(std::make_unique<Impl>()) {
  const std::vector<std::string> files = io::expand_globs(files_in);
  CS_CHECK(!files.empty(), "--input: no mask files given");
  Impl& m = *impl_;
  m.var = opt.var;
  std::vector<std::string> ncs, h5s;
  for (const std::string& f : files) (is_prediction_file(f) ? h5s : ncs).push_back(f);
  CS_CHECK(ncs.empty() || h5s.empty(), "--input: mixes HDF5 prediction files (", h5s.front(),
           ") with NetCDF mask files (", ncs.front(), "); give one kind");
  if (!ncs.empty()) {
#if CLIMSEG_HAVE_NETCDF
    for (const std::string& f : ncs)
      CS_CHECK(io::is_netcdf_file(f), "--input ", f, ": neither a NetCDF mask file nor an HDF5 prediction file");
    io::CfReaderOptions ro;
    io::ChannelSource src;
    src.channel = opt.var;
    src.alternatives.push_back(io::ChannelSource::Var{opt.var});
    ro.channels.push_back(src);
    ro.start = opt.start;
    ro.end = opt.end;
    m.nc = std::make_unique<io::CfReader>(ncs, ro);
    m.grid = m.nc->grid();
    m.axis = m.nc->time_axis();
    m.buf.resize(static_cast<size_t>(m.grid.height() * m.grid.width()));
    for (int64_t t = 0; t < m.nc->steps(); ++t) m.names.push_back(m.nc->step_file(t));
    // Cell bounds, when the coordinates name them.
    io::nc::File f = io::nc::File::open(ncs.front());
    for (int axis = 0; axis < 2; ++axis) {
      const std::string& cname = axis == 0 ? m.grid.lat_name : m.grid.lon_name;
      const auto cid = f.find_var(cname);
      if (!cid) continue;
      const auto bname = f.att_text(*cid, "bounds");
      if (!bname) continue;
      const auto bid = f.find_var(*bname);
      CS_CHECK(bid.has_value(), ncs.front(), ": ", cname, " names bounds '", *bname, "', which is not in the file");
      const std::vector<size_t> dims = f.dim_sizes(*bid);
      const size_t n = axis == 0 ? m.grid.lat.size() : m.grid.lon.size();
      CS_CHECK(dims.size() == 2 && dims[0] == n && dims[1] == 2, ncs.front(), ": bounds ", *bname, " should be (",
               n, ", 2)");
      std::vector<double> v(2 * n);
      f.check(nc_get_var_double(f.id(), *bid, v.data()), "reading " + *bname);
      if (axis == 0 && m.nc->lat_flipped())
        for (size_t i = 0; i < n / 2; ++i) {
          std::swap(v[2 * i], v[2 * (n - 1 - i)]);
          std::swap(v[2 * i + 1], v[2 * (n - 1 - i) + 1]);
        }
      (axis == 0 ? m.lat_bnds : m.lon_bnds) = std::move(v);
    }
#else
    CS_CHECK(false, "--input ", ncs.front(), ": this build has no NetCDF support (install libnetcdf-dev and rerun cmake)");
#endif
  } else {
    // HDF5 predictions: CAM5's noleap calendar; the time of each sample from its source's DeepCAM name.
    m.axis.units = "days since 0001-01-01 00:00:00";
    m.axis.calendar = "noleap";
    const io::cf::TimeUnits u = io::cf::parse_time_units(m.axis.units, "HDF5 predictions");
    const std::regex name_re(R"(data-(\d{4})-(\d{2})-(\d{2})-(\d{2})-\d+\.h5$)");
    int64_t H = -1, W = -1;
    for (const std::string& path : h5s) {
      using io::h5::H5Id;
      io::h5::QuietHdf5Errors quiet;
      H5Id f(IO_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path, ": opening"), H5Fclose);
      H5Id d(IO_H5_CHECK(H5Dopen2(f, "prediction/mask", H5P_DEFAULT), path, ": prediction/mask"), H5Dclose);
      const std::vector<hsize_t> shape = io::h5::h5_shape(d);
      CS_CHECK(shape.size() == 3, path, ": prediction/mask has shape ", io::h5::shape_str(shape), ", expected (N,H,W)");
      if (H < 0) {
        H = static_cast<int64_t>(shape[1]);
        W = static_cast<int64_t>(shape[2]);
      }
      CS_CHECK(static_cast<int64_t>(shape[1]) == H && static_cast<int64_t>(shape[2]) == W, path,
               ": prediction/mask is ", shape[1], "x", shape[2], " but ", h5s.front(), "'s is ", H, "x", W);
      H5Id g(IO_H5_CHECK(H5Gopen2(f, "prediction", H5P_DEFAULT), path, ": prediction"), H5Gclose);
      const std::vector<std::string> sources = read_string_array_attr(g, path, "sources");
      CS_CHECK(sources.size() == shape[0], path, ": prediction has ", sources.size(), " source names for ", shape[0],
               " samples; the time of each sample comes from its source's name (data-YYYY-MM-DD-HH-R.h5)");
      for (size_t i = 0; i < sources.size(); ++i) {
        std::smatch sm;
        CS_CHECK(std::regex_search(sources[i], sm, name_re), path, ": sample ", i, "'s source '", sources[i],
                 "' is not named data-YYYY-MM-DD-HH-R.h5; its time is unknown");
        io::cf::DateTime dt;
        dt.year = std::stoi(sm[1]);
        dt.month = std::stoi(sm[2]);
        dt.day = std::stoi(sm[3]);
        dt.hour = std::stoi(sm[4]);
        CS_CHECK(io::cf::valid_date(dt, io::cf::Calendar::noleap), path, ": sample ", i, "'s source '", sources[i],
                 "' names a date outside the noleap calendar");
        m.h5.push_back(Impl::H5Step{path, static_cast<int64_t>(i), io::cf::encode_time(dt, u, io::cf::Calendar::noleap)});
      }
    }
    std::stable_sort(m.h5.begin(), m.h5.end(), [](const auto& a, const auto& b) { return a.value < b.value; });
    for (size_t i = 1; i < m.h5.size(); ++i)
      CS_CHECK(m.h5[i].value != m.h5[i - 1].value, "--input: time ",
               io::cf::iso(io::cf::decode_time(m.h5[i].value, u, io::cf::Calendar::noleap)), " appears twice (",
               m.h5[i - 1].file, " and ", m.h5[i].file, ")");
    const auto bound = [&](const std::string& s, const char* flag) {
      return io::cf::encode_time(io::cf::parse_iso(s, io::cf::Calendar::noleap, flag), u, io::cf::Calendar::noleap);
    };
    if (!opt.start.empty() || !opt.end.empty()) {
      const double lo = opt.start.empty() ? -1e300 : bound(opt.start, "--start");
      const double hi = opt.end.empty() ? 1e300 : bound(opt.end, "--end");
      std::erase_if(m.h5, [&](const Impl::H5Step& s) { return s.value < lo || s.value > hi; });
    }
    m.grid = io::global_grid(H, W);
    for (const auto& s : m.h5) m.names.push_back(s.file);
  }
  m.units = io::cf::parse_time_units(m.axis.units, "time units");
  m.calendar = io::cf::parse_calendar(m.axis.calendar, "time calendar");
  CS_CHECK(steps() > 0, "--input: no time steps", (opt.start.empty() && opt.end.empty() ? "" : " in --start/--end"));
}

MaskSeries::~MaskSeries() = default;

int64_t MaskSeries::steps() const {
#if CLIMSEG_HAVE_NETCDF
  if (impl_->nc) return impl_->nc->steps();
#endif
  return static_cast<int64_t>(impl_->h5.size());
}
const io::CfGrid& MaskSeries::grid() const { return impl_->grid; }
const io::CfTimeAxis& MaskSeries::time_axis() const { return impl_->axis; }
const std::vector<double>& MaskSeries::lat_bounds() const { return impl_->lat_bnds; }
const std::vector<double>& MaskSeries::lon_bounds() const { return impl_->lon_bnds; }

double MaskSeries::time_value(int64_t t) const {
#if CLIMSEG_HAVE_NETCDF
  if (impl_->nc) return impl_->nc->time_value(t);
#endif
  return impl_->h5.at(static_cast<size_t>(t)).value;
}
double MaskSeries::hours(int64_t t) const { return time_value(t) * impl_->units.seconds_per_unit / 3600.0; }
std::string MaskSeries::time_iso(int64_t t) const {
  return io::cf::iso(io::cf::decode_time(time_value(t), impl_->units, impl_->calendar));
}
int MaskSeries::year(int64_t t) const { return io::cf::decode_time(time_value(t), impl_->units, impl_->calendar).year; }
const std::string& MaskSeries::step_file(int64_t t) const { return impl_->names.at(static_cast<size_t>(t)); }
double MaskSeries::days_per_year() const {
  switch (impl_->calendar) {
    case io::cf::Calendar::noleap: return 365;
    case io::cf::Calendar::all_leap: return 366;
    case io::cf::Calendar::day360: return 360;
    case io::cf::Calendar::julian: return 365.25;
    default: return 365.2425;
  }
}

void MaskSeries::read(int64_t t, uint8_t* out) {
  Impl& m = *impl_;
  const size_t n = static_cast<size_t>(m.grid.height() * m.grid.width());
#if CLIMSEG_HAVE_NETCDF
  if (m.nc) {
    m.nc->read(t, m.buf.data());
    for (size_t p = 0; p < n; ++p) {
      const float v = m.buf[p];
      if (!(v == 0.0f || v == 1.0f || v == 2.0f)) {
        const int64_t W = m.grid.width();
        CS_CHECK(false, m.nc->step_file(t), ": ", m.var, " at ", time_iso(t), " has value ", v, " at lat ",
                 m.grid.lat[p / static_cast<size_t>(W)], " lon ", m.grid.lon[p % static_cast<size_t>(W)],
                 " (classes are 0 background, 1 tropical cyclone, 2 atmospheric river)");
      }
      out[p] = static_cast<uint8_t>(v);
    }
    return;
  }
#endif
  using io::h5::H5Id;
  const Impl::H5Step& s = m.h5.at(static_cast<size_t>(t));
  io::h5::QuietHdf5Errors quiet;
  H5Id f(IO_H5_CHECK(H5Fopen(s.file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), s.file, ": opening"), H5Fclose);
  H5Id d(IO_H5_CHECK(H5Dopen2(f, "prediction/mask", H5P_DEFAULT), s.file, ": prediction/mask"), H5Dclose);
  H5Id fs(IO_H5_CHECK(H5Dget_space(d), s.file, ": prediction/mask"), H5Sclose);
  const hsize_t start[3] = {static_cast<hsize_t>(s.index), 0, 0};
  const hsize_t count[3] = {1, static_cast<hsize_t>(m.grid.height()), static_cast<hsize_t>(m.grid.width())};
  IO_H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, nullptr, count, nullptr), s.file, ": selecting");
  H5Id ms(IO_H5_CHECK(H5Screate_simple(3, count, nullptr), s.file, ": memory space"), H5Sclose);
  IO_H5_CHECK(H5Dread(d, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, out), s.file, ": reading prediction/mask sample ",
              s.index);
  for (size_t p = 0; p < n; ++p)
    CS_CHECK(out[p] <= 2, s.file, ": prediction/mask sample ", s.index, " (", time_iso(t), ") has value ",
             int(out[p]), " at lat ", m.grid.lat[p / static_cast<size_t>(m.grid.width())], " lon ",
             m.grid.lon[p % static_cast<size_t>(m.grid.width())],
             " (classes are 0 background, 1 tropical cyclone, 2 atmospheric river)");
}

}  // namespace climseg::analysis
