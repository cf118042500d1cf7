#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/check.h"
#include "io/cf_reader.h"
#include "io/cf_time.h"
#include "io/netcdf_util.h"

namespace climseg::io {

// ---- channel maps --------------------------------------------------------------------------------------------------

namespace {

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

double parse_number(const std::string& s, const std::string& what, const std::string& spec) {
  try {
    size_t used = 0;
    const double v = std::stod(s, &used);
    if (used == s.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  CS_THROW(what, ": '", s, "' in '", spec, "' is not a number");
}

}  // namespace

ChannelSource parse_channel_source(const std::string& spec, const std::string& what) {
  const size_t eq = spec.find('=');
  CS_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), what, ": '", spec,
           "' is not CHANNEL=VAR[@LEVEL_HPA][*SCALE][|VAR...] (e.g. U850=ua@850, PRECT=pr*0.001)");
  ChannelSource s;
  s.channel = trim(spec.substr(0, eq));
  std::stringstream alts(spec.substr(eq + 1));
  std::string alt;
  while (std::getline(alts, alt, '|')) {
    alt = trim(alt);
    CS_CHECK(!alt.empty(), what, ": empty variable in '", spec, "'");
    ChannelSource::Var v;
    const size_t star = alt.find('*');
    if (star != std::string::npos) {
      v.scale = parse_number(trim(alt.substr(star + 1)), what, spec);
      alt = trim(alt.substr(0, star));
    }
    const size_t at = alt.find('@');
    if (at != std::string::npos) {
      v.level_hpa = parse_number(trim(alt.substr(at + 1)), what, spec);
      CS_CHECK(v.level_hpa > 0, what, ": level ", v.level_hpa, " hPa in '", spec, "'");
      alt = trim(alt.substr(0, at));
    }
    CS_CHECK(!alt.empty(), what, ": empty variable name in '", spec, "'");
    v.name = alt;
    s.alternatives.push_back(v);
  }
  CS_CHECK(!s.alternatives.empty(), what, ": no variable in '", spec, "'");
  return s;
}

std::string format_channel_source(const ChannelSource& s) {
  std::ostringstream os;
  os << s.channel << '=';
  for (size_t i = 0; i < s.alternatives.size(); ++i) {
    const ChannelSource::Var& v = s.alternatives[i];
    if (i > 0) os << '|';
    os << v.name;
    if (!std::isnan(v.level_hpa)) os << '@' << v.level_hpa;
    if (v.scale != 1.0) os << '*' << v.scale;
  }
  return os.str();
}

std::vector<ChannelSource> default_channel_map(const std::vector<std::string>& channels) {
  static const std::map<std::string, std::string> cmip = {
      {"TMQ", "prw"},   {"U850", "ua@850"}, {"V850", "va@850"}, {"UBOT", "uas"},         {"VBOT", "vas"},
      {"QREFHT", "huss"}, {"PS", "ps"},     {"PSL", "psl"},     {"T200", "ta@200"},      {"T500", "ta@500"},
      {"PRECT", "pr*0.001"}, {"TS", "ts"},  {"TREFHT", "tas"},  {"Z1000", "zg@1000"},    {"Z200", "zg@200"}};
  std::vector<ChannelSource> out;
  for (const std::string& c : channels) {
    const auto it = cmip.find(c);
    out.push_back(parse_channel_source(c + "=" + c + (it != cmip.end() ? "|" + it->second : ""), "channel map"));
  }
  return out;
}

void override_channel_map(std::vector<ChannelSource>& map, const std::vector<ChannelSource>& overrides,
                          const std::string& what) {
  for (const ChannelSource& o : overrides) {
    auto it = std::find_if(map.begin(), map.end(), [&](const ChannelSource& s) { return s.channel == o.channel; });
    if (it == map.end()) {
      std::string names;
      for (const ChannelSource& s : map) names += (names.empty() ? "" : " ") + s.channel;
      CS_THROW(what, ": channel '", o.channel, "' is not one of the network's channels (", names, ")");
    }
    *it = o;
  }
}

std::vector<ChannelSource> read_channel_map_file(const std::string& path) {
  std::ifstream in(path);
  CS_CHECK(in.good(), path, ": cannot open the channel map");
  std::vector<ChannelSource> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    out.push_back(parse_channel_source(line, path + ":" + std::to_string(n)));
  }
  return out;
}

std::vector<ChannelSource> channel_map(const std::vector<std::string>& channels, const std::string& map_file,
                                       const std::vector<std::string>& specs) {
  std::vector<ChannelSource> map = default_channel_map(channels);
  if (!map_file.empty()) override_channel_map(map, read_channel_map_file(map_file), map_file);
  std::vector<ChannelSource> flags;
  for (const std::string& spec : specs) flags.push_back(parse_channel_source(spec, "--channel"));
  override_channel_map(map, flags, "--channel");
  return map;
}

// ---- the reader ---------------------------------------------------------------------------------------------------------

namespace {

bool is_lat_coord(const nc::File& f, int v, const std::string& name) {
  const std::string sn = f.att_text(v, "standard_name").value_or("");
  std::string u = f.att_text(v, "units").value_or("");
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::tolower(c); });
  return sn == "latitude" || u == "degrees_north" || u == "degree_north" || u == "degrees_n" || u == "degree_n" ||
         ((name == "lat" || name == "latitude") && u.rfind("degree", 0) == 0);
}

bool is_lon_coord(const nc::File& f, int v, const std::string& name) {
  const std::string sn = f.att_text(v, "standard_name").value_or("");
  std::string u = f.att_text(v, "units").value_or("");
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::tolower(c); });
  return sn == "longitude" || u == "degrees_east" || u == "degree_east" || u == "degrees_e" || u == "degree_e" ||
         ((name == "lon" || name == "longitude") && u.rfind("degree", 0) == 0);
}

// A pressure-level coordinate's factor to hPa, or 0 when it is not one (model levels, heights).
double pressure_to_hpa(const nc::File& f, int v) {
  std::string u = f.att_text(v, "units").value_or("");
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::tolower(c); });
  if (u == "pa") return 0.01;
  if (u == "hpa" || u == "mbar" || u == "millibars" || u == "mb" || u == "millibar") return 1.0;
  return 0.0;
}

bool close_coords(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::abs(a[i] - b[i]) > 1e-5) return false;
  return true;
}

struct Step {
  cf::DateTime date;
  int file = -1;      // index into Impl::files
  size_t index = 0;   // time index within that file
};

struct Source {  // one channel's variable, resolved
  std::string channel;
  ChannelSource::Var var;
  std::vector<int> files;         // files holding the variable
  std::vector<Step> steps;        // sorted by date
  std::map<int, size_t> level_index;  // file -> index of the chosen level along the variable's level dimension
};

}  // namespace

struct CfReader::Impl {
  std::vector<std::string> files;
  CfReaderOptions opt;
  CfGrid grid;
  bool flipped = false;
  CfTimeAxis axis;
  cf::TimeUnits units;
  cf::Calendar calendar = cf::Calendar::standard;
  std::vector<Source> sources;
  std::vector<size_t> selected;  // indices into sources[0].steps of the selected time steps
  std::map<int, nc::File> open;  // read-time cache of open files
  std::vector<double> buf;

  nc::File& file(int i) {
    auto it = open.find(i);
    if (it != open.end()) return it->second;
    if (open.size() >= 32) open.clear();  // bounded: many CMIP files are opened one after another
    return open.emplace(i, nc::File::open(files[static_cast<size_t>(i)])).first->second;
  }
};

CfReader::CfReader(const std::vector<std::string>& files, const CfReaderOptions& opt) : impl_(new Impl) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(nc::library_mutex());
  m.files = files;
  m.opt = opt;
  CS_CHECK(!files.empty(), "no NetCDF input files");
  CS_CHECK(!opt.channels.empty(), "no channels to read");
  bool have_grid = false, have_axis = false;
  std::string grid_file;
  m.sources.resize(opt.channels.size());
  for (size_t c = 0; c < opt.channels.size(); ++c) m.sources[c].channel = opt.channels[c].channel;

  for (size_t fi = 0; fi < files.size(); ++fi) {
    const std::string& path = files[fi];
    nc::File f = nc::File::open(path);
    for (size_t c = 0; c < opt.channels.size(); ++c) {
      Source& s = m.sources[c];
      // Which alternative this file has: the first alternative found in any file decides for the whole run.
      const ChannelSource::Var* chosen = nullptr;
      std::optional<int> vid;
      for (const ChannelSource::Var& v : opt.channels[c].alternatives) {
        if (!s.var.name.empty() && v.name != s.var.name) continue;
        vid = f.find_var(v.name);
        if (vid) {
          chosen = &v;
          break;
        }
      }
      if (!chosen) continue;
      if (s.var.name.empty()) s.var = *chosen;
      const std::string label = nc::var_label(chosen->name);
      const std::vector<std::string> dims = f.dim_names(*vid);
      const std::vector<size_t> sizes = f.dim_sizes(*vid);
      const bool leveled = !std::isnan(chosen->level_hpa);
      const size_t want = leveled ? 4 : 3;
      CS_CHECK(dims.size() == want, path, ": ", label, " has dimensions (", [&] {
        std::string d;
        for (const std::string& n : dims) d += (d.empty() ? "" : ", ") + n;
        return d;
      }(), "); channel ", s.channel, " needs ", leveled ? "(time, level, lat, lon) for its level" : "(time, lat, lon)");
      // Coordinates: time first, lat and lon last.
      const int tv = f.var(dims[0]);
      const std::optional<std::string> tunits = f.att_text(tv, "units");
      CS_CHECK(tunits && tunits->find(" since ") != std::string::npos, path, ": ", label, "'s first dimension '",
               dims[0], "' is not a time coordinate (no units 'UNIT since DATE')");
      const int latv = f.var(dims[want - 2]), lonv = f.var(dims[want - 1]);
      CS_CHECK(is_lat_coord(f, latv, dims[want - 2]), path, ": ", label, "'s dimension '", dims[want - 2],
               "' is not a latitude (units degrees_north); climseg reads (time, [level,] lat, lon)");
      CS_CHECK(is_lon_coord(f, lonv, dims[want - 1]), path, ": ", label, "'s dimension '", dims[want - 1],
               "' is not a longitude (units degrees_east); climseg reads (time, [level,] lat, lon)");
      std::vector<double> lat = f.read_1d(latv), lon = f.read_1d(lonv);
      CS_CHECK(lat.size() >= 2 && lon.size() >= 2, path, ": grid ", lat.size(), "x", lon.size(), " is too small");
      bool flip = lat.front() > lat.back();
      if (flip) std::reverse(lat.begin(), lat.end());
      for (size_t i = 0; i + 1 < lat.size(); ++i)
        CS_CHECK(lat[i] < lat[i + 1], path, ": latitude '", dims[want - 2], "' is not monotonic");
      CS_CHECK(lat.front() >= -90.0 - 1e-9 && lat.back() <= 90.0 + 1e-9, path, ": latitudes outside -90..90");
      for (size_t i = 0; i + 1 < lon.size(); ++i)
        CS_CHECK(lon[i] < lon[i + 1], path, ": longitude '", dims[want - 1],
                 "' is not strictly increasing (climseg needs one contiguous range, 0..360 or -180..180)");
      CS_CHECK(lon.front() >= -180.0 - 1e-9 && lon.back() <= 360.0 + 1e-9 && lon.back() - lon.front() < 360.0,
               path, ": longitudes ", lon.front(), "..", lon.back(), " are not within 0..360 or -180..180");
      if (!have_grid) {
        m.grid.lat = lat;
        m.grid.lon = lon;
        m.grid.lat_name = dims[want - 2];
        m.grid.lon_name = dims[want - 1];
        m.flipped = flip;
        grid_file = path;
        have_grid = true;
      } else {
        CS_CHECK(close_coords(lat, m.grid.lat) && close_coords(lon, m.grid.lon) && flip == m.flipped, path, ": ",
                 label, " is on a ", lat.size(), "x", lon.size(), " grid (lat ", lat.front(), "..", lat.back(),
                 flip ? " north to south" : "", ", lon ", lon.front(), "..", lon.back(), ") that differs from ",
                 grid_file, "'s ", m.grid.height(), "x", m.grid.width(), " (lat ", m.grid.lat.front(), "..",
                 m.grid.lat.back(), m.flipped ? " north to south" : "", ", lon ", m.grid.lon.front(), "..",
                 m.grid.lon.back(), "); all inputs must share one grid");
      }
      // Level.
      if (leveled) {
        const int levv = f.var(dims[1]);
        const double to_hpa = pressure_to_hpa(f, levv);
        CS_CHECK(to_hpa > 0, path, ": ", label, "'s level coordinate '", dims[1], "' (units '",
                 f.att_text(levv, "units").value_or(""), "') is not pressure (Pa or hPa); climseg selects pressure ",
                 "levels only: give a variable on pressure levels, or a 2-D one such as U850");
        const std::vector<double> levs = f.read_1d(levv);
        size_t found = levs.size();
        std::string have;
        for (size_t i = 0; i < levs.size(); ++i) {
          if (std::abs(levs[i] * to_hpa - chosen->level_hpa) <= 1e-3 * chosen->level_hpa) found = i;
          char b[32];
          std::snprintf(b, sizeof b, "%s%g", have.empty() ? "" : " ", levs[i] * to_hpa);
          have += b;
        }
        CS_CHECK(found < levs.size(), path, ": ", label, " has no level ", chosen->level_hpa, " hPa (levels: ", have,
                 " hPa)");
        s.level_index[static_cast<int>(fi)] = found;
      }
      // Times.
      const cf::Calendar cal = cf::parse_calendar(f.att_text(tv, "calendar").value_or("standard"),
                                                  path + ": " + dims[0] + ":calendar");
      const cf::TimeUnits tu = cf::parse_time_units(*tunits, path + ": " + dims[0] + ":units");
      if (!have_axis) {
        m.calendar = cal;
        m.units = tu;
        m.axis.units = *tunits;
        m.axis.calendar = f.att_text(tv, "calendar").value_or("standard");
        have_axis = true;
      } else {
        CS_CHECK(cal == m.calendar, path, ": calendar '", cf::calendar_name(cal), "' differs from ", files[0],
                 "'s '", cf::calendar_name(m.calendar), "'");
      }
      const std::vector<double> tvals = f.read_1d(tv);
      CS_CHECK(sizes[0] == tvals.size(), path, ": ", label, " has ", sizes[0], " time steps, its time coordinate ",
               tvals.size());
      for (size_t t = 0; t < tvals.size(); ++t)
        s.steps.push_back(Step{cf::decode_time(tvals[t], tu, cal), static_cast<int>(fi), t});
      s.files.push_back(static_cast<int>(fi));
    }
  }
  // Every channel found, each channel's times strictly increasing, all channels on the same times.
  for (size_t c = 0; c < m.sources.size(); ++c) {
    Source& s = m.sources[c];
    if (s.files.empty()) {
      std::string tried;
      for (const ChannelSource::Var& v : opt.channels[c].alternatives) tried += (tried.empty() ? "" : ", ") + v.name;
      CS_THROW("channel ", s.channel, ": no variable ", tried, " in ", files.size() == 1 ? files[0] :
               std::to_string(files.size()) + " input files (" + files[0] + " ...)",
               "; map it to a variable with --channel ", s.channel, "=VAR[@LEVEL][*SCALE]");
    }
    std::stable_sort(s.steps.begin(), s.steps.end(),
                     [](const Step& a, const Step& b) { return cf::compare(a.date, b.date) < 0; });
    for (size_t i = 0; i + 1 < s.steps.size(); ++i)
      CS_CHECK(cf::compare(s.steps[i].date, s.steps[i + 1].date) < 0, "channel ", s.channel, " (",
               nc::var_label(s.var.name), "): time ", cf::iso(s.steps[i].date), " appears twice (in ",
               files[static_cast<size_t>(s.steps[i].file)], " and ", files[static_cast<size_t>(s.steps[i + 1].file)],
               ")");
    if (c == 0) continue;
    const Source& r = m.sources[0];
    bool same = s.steps.size() == r.steps.size();
    for (size_t i = 0; same && i < s.steps.size(); ++i) same = cf::compare(s.steps[i].date, r.steps[i].date) == 0;
    if (!same) {
      size_t i = 0;
      while (i < s.steps.size() && i < r.steps.size() && cf::compare(s.steps[i].date, r.steps[i].date) == 0) ++i;
      const std::string a = i < r.steps.size() ? cf::iso(r.steps[i].date) : "none";
      const std::string b = i < s.steps.size() ? cf::iso(s.steps[i].date) : "none";
      CS_THROW("the inputs disagree on the time steps: channel ", r.channel, " (", r.var.name, ") has ",
               r.steps.size(), " steps, channel ", s.channel, " (", s.var.name, ") has ", s.steps.size(),
               "; step ", i, " is ", a, " for ", r.channel, " but ", b, " for ", s.channel);
    }
  }
  // The time range.
  std::optional<cf::DateTime> start, end;
  if (!opt.start.empty()) start = cf::parse_iso(opt.start, m.calendar, "--start");
  if (!opt.end.empty()) end = cf::parse_iso(opt.end, m.calendar, "--end");
  for (size_t i = 0; i < m.sources[0].steps.size(); ++i) {
    const cf::DateTime& d = m.sources[0].steps[i].date;
    if (start && cf::compare(d, *start) < 0) continue;
    if (end && cf::compare(d, *end) > 0) continue;
    m.selected.push_back(i);
  }
  CS_CHECK(!m.selected.empty(), "no time step of the inputs (", cf::iso(m.sources[0].steps.front().date), " .. ",
           cf::iso(m.sources[0].steps.back().date), ") lies within --start ", opt.start.empty() ? "-" : opt.start,
           " --end ", opt.end.empty() ? "-" : opt.end);
}

CfReader::~CfReader() {
  std::lock_guard<std::mutex> lock(nc::library_mutex());
  impl_.reset();  // closes the cached files under the lock
}

int64_t CfReader::steps() const { return static_cast<int64_t>(impl_->selected.size()); }
int64_t CfReader::channels() const { return static_cast<int64_t>(impl_->sources.size()); }
const CfGrid& CfReader::grid() const { return impl_->grid; }
bool CfReader::lat_flipped() const { return impl_->flipped; }
const CfTimeAxis& CfReader::time_axis() const { return impl_->axis; }

double CfReader::time_value(int64_t step) const {
  const Impl& m = *impl_;
  return cf::encode_time(m.sources[0].steps[m.selected.at(static_cast<size_t>(step))].date, m.units, m.calendar);
}

std::string CfReader::time_iso(int64_t step) const {
  const Impl& m = *impl_;
  return cf::iso(m.sources[0].steps[m.selected.at(static_cast<size_t>(step))].date);
}

const std::string& CfReader::step_file(int64_t step) const {
  const Impl& m = *impl_;
  return m.files[static_cast<size_t>(m.sources[0].steps[m.selected.at(static_cast<size_t>(step))].file)];
}

std::vector<std::string> CfReader::describe_channels() const {
  std::vector<std::string> out;
  for (const Source& s : impl_->sources) {
    ChannelSource one{s.channel, {s.var}};
    std::string d = format_channel_source(one);
    const size_t eq = d.find('=');
    d = d.substr(0, eq) + " <- " + d.substr(eq + 1);
    d += s.files.size() == 1 ? " (" + impl_->files[static_cast<size_t>(s.files[0])] + ")"
                             : " (" + std::to_string(s.files.size()) + " files)";
    out.push_back(d);
  }
  return out;
}

int64_t CfReader::read(int64_t step, float* out) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(nc::library_mutex());
  CS_CHECK(step >= 0 && step < steps(), "CfReader::read: step ", step, " of ", steps());
  const int64_t H = height(), W = width(), C = channels();
  const size_t plane = static_cast<size_t>(H * W);
  m.buf.resize(plane);
  int64_t filled = 0;
  const size_t k = m.selected[static_cast<size_t>(step)];
  for (int64_t c = 0; c < C; ++c) {
    const Source& s = m.sources[static_cast<size_t>(c)];
    const Step& st = s.steps[k];
    nc::File& f = m.file(st.file);
    const int vid = f.var(s.var.name);
    const std::string label = nc::var_label(s.var.name);
    const bool leveled = !std::isnan(s.var.level_hpa);
    std::vector<size_t> start = {st.index, 0, 0}, count = {1, static_cast<size_t>(H), static_cast<size_t>(W)};
    if (leveled) {
      start.insert(start.begin() + 1, s.level_index.at(st.file));
      count.insert(count.begin() + 1, 1);
    }
    const std::string when = "time " + cf::iso(st.date) + " (index " + std::to_string(st.index) + " in the file)";
    f.check(nc_get_vara_double(f.id(), vid, start.data(), count.data(), m.buf.data()), label + ": reading " + when);
    // Packing and missing values (in the packed domain, as CF defines them).
    std::vector<double> missing;
    for (const char* a : {"_FillValue", "missing_value"})
      if (auto v = f.att_doubles(vid, a)) missing.insert(missing.end(), v->begin(), v->end());
    const double sf = f.att_doubles(vid, "scale_factor").value_or(std::vector<double>{1.0}).at(0);
    const double ao = f.att_doubles(vid, "add_offset").value_or(std::vector<double>{0.0}).at(0);
    double sum = 0;
    int64_t valid = 0, bad = 0;
    size_t first_bad = plane;
    for (size_t p = 0; p < plane; ++p) {
      const double v = m.buf[p];
      bool miss = !std::isfinite(v);
      for (double mv : missing) miss = miss || v == mv;
      if (miss) {
        if (first_bad == plane) first_bad = p;
        ++bad;
        m.buf[p] = std::numeric_limits<double>::quiet_NaN();
      } else {
        m.buf[p] = (v * sf + ao) * s.var.scale;
        sum += m.buf[p];
        ++valid;
      }
    }
    if (bad > 0) {
      const size_t row = first_bad / static_cast<size_t>(W), col = first_bad % static_cast<size_t>(W);
      const double lat = m.flipped ? m.grid.lat[static_cast<size_t>(H) - 1 - row] : m.grid.lat[row];
      CS_CHECK(m.opt.fill_missing && valid > 0, m.files[static_cast<size_t>(st.file)], ": ", label, ": ", bad,
               " missing value(s) (_FillValue, missing_value or NaN) at ", when, ", first at lat ", lat, " lon ",
               m.grid.lon[col], m.opt.fill_missing ? "; the whole field is missing" :
               "; pass --fill-missing to fill them with the field's mean");
      const double mean = sum / static_cast<double>(valid);
      for (size_t p = 0; p < plane; ++p)
        if (std::isnan(m.buf[p])) m.buf[p] = mean;
      filled += bad;
    }
    for (int64_t y = 0; y < H; ++y) {
      const double* src = m.buf.data() + static_cast<size_t>((m.flipped ? H - 1 - y : y) * W);
      float* dst = out + static_cast<size_t>(y * W * C + c);
      for (int64_t x = 0; x < W; ++x) dst[x * C] = static_cast<float>(src[x]);
    }
  }
  return filled;
}

}  // namespace climseg::io
