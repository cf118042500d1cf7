#include "io/input_metadata.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/check.h"

namespace climseg::io {

namespace {

std::string join(const std::vector<double>& v) {
  std::string s;
  for (double x : v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", x);
    s += (s.empty() ? "" : ",") + std::string(b);
  }
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

std::vector<double> parse_doubles(const std::string& s, const std::string& who, const char* key) {
  std::vector<double> out;
  for (const std::string& item : split(s)) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    CS_CHECK(used == item.size() && used > 0 && std::isfinite(v), who, ": metadata '", key, "' has '", item,
             "', not a number");
    out.push_back(v);
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> input_metadata(const Stats& stats, const std::vector<std::string>& channels) {
  CS_CHECK(static_cast<int64_t>(channels.size()) == stats.channels(), "input_metadata: ", channels.size(),
           " channel names for ", stats.channels(), " channels of statistics");
  std::string names;
  for (const std::string& c : channels) names += (names.empty() ? "" : ",") + c;
  return {{"input.channels", names},
          {"input.normalization", "minmax"},
          {"input.minval", join(stats.minval)},
          {"input.maxval", join(stats.maxval)},
          {"input.stats", stats.path}};
}

InputContract input_contract(const std::map<std::string, std::string>& md, const std::string& who) {
  InputContract c;
  if (auto it = md.find("input.channels"); it != md.end()) c.channels = split(it->second);
  const auto norm = md.find("input.normalization");
  if (norm == md.end()) return c;
  CS_CHECK(norm->second == "minmax", who, ": metadata 'input.normalization' is '", norm->second,
           "'; this climseg knows 'minmax'");
  const auto lo = md.find("input.minval"), hi = md.find("input.maxval");
  CS_CHECK(lo != md.end() && hi != md.end(), who, ": metadata has 'input.normalization' but not input.minval and ",
           "input.maxval");
  Stats s;
  s.minval = parse_doubles(lo->second, who, "input.minval");
  s.maxval = parse_doubles(hi->second, who, "input.maxval");
  CS_CHECK(s.minval.size() == s.maxval.size() && (c.channels.empty() || s.minval.size() == c.channels.size()), who,
           ": metadata input.minval (", s.minval.size(), "), input.maxval (", s.maxval.size(),
           ") and input.channels (", c.channels.size(), ") disagree on the number of channels");
  for (size_t i = 0; i < s.minval.size(); ++i)
    CS_CHECK(s.maxval[i] > s.minval[i], who, ": metadata input.maxval <= input.minval for channel ", i);
  const auto src = md.find("input.stats");
  s.path = src != md.end() ? src->second : who;
  c.stats = s;
  return c;
}

bool same_normalization(const Stats& a, const Stats& b) { return a.minval == b.minval && a.maxval == b.maxval; }

std::vector<std::string> default_channel_names(int64_t channels) {
  std::vector<std::string> out;
  for (int64_t c = 0; c < channels; ++c)
    out.emplace_back(c < kNumChannels ? std::string(channel_name(c)) : "channel" + std::to_string(c));
  return out;
}

}  // namespace climseg::io
