#include "io/dataset_check.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "engine/check.h"

namespace climseg::io {

namespace fs = std::filesystem;

SampleCheck check_sample_file(const std::string& path, const SampleCheckOptions& opt, StatsAccumulator* stats) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (fs::is_regular_file(st) && fs::file_size(path, ec) == 0 && !ec)
    CS_THROW(path, ": empty file (0 bytes): not an HDF5 file");
  ReadOptions ro;
  ro.channels = opt.channels;
  ro.labels_required = opt.labels_required;
  Sample s = read_sample(path, ro);
  SampleCheck out;
  out.info = s.info;
  auto count_classes = [&](const Tensor& labels) {
    const int32_t* l = labels.data_as<int32_t>();
    for (int64_t k = 0; k < labels.numel(); ++k) ++out.class_pixels[static_cast<size_t>(l[k])];  // 0..2: checked
  };
  if (s.labels.defined()) count_classes(s.labels);
  // read_sample reads one label variant; the others are validated here (each read re-reads the data: 2018 files
  // with several variants cost V reads).
  for (int64_t v = 1; v < s.info.label_variants; ++v) {
    ro.label_variant = v;
    count_classes(read_sample(path, ro).labels);
  }
  if (stats) stats->add(s.data, path);  // only once the whole file is known to be good
  return out;
}

std::vector<std::string> list_sample_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) CS_THROW(dir, ": not a directory");
  std::vector<std::string> files;
  auto scan = [&](const fs::path& d, bool top) {
    for (const fs::directory_entry& e : fs::directory_iterator(d, ec)) {
      const fs::path& p = e.path();
      if (p.extension() != ".h5") continue;
      if (top && p.filename() == "stats.h5") continue;
      files.push_back(p.string());
    }
    if (ec) CS_THROW(d.string(), ": cannot list the directory: ", ec.message());
  };
  scan(fs::path(dir), true);
  for (const char* split : {"train", "validation", "test"}) {
    const fs::path d = fs::path(dir) / split;
    if (fs::is_directory(d, ec)) scan(d, false);
  }
  std::sort(files.begin(), files.end());
  return files;
}

int64_t DatasetCheck::bad_samples() const {
  return static_cast<int64_t>(
      std::count_if(bad.begin(), bad.end(), [&](const BadFile& b) { return b.path != stats_path; }));
}

DatasetCheck check_dataset(const std::string& dir, const SampleCheckOptions& opt,
                           void (*progress)(int64_t done, int64_t total)) {
  DatasetCheck r;
  r.dir = dir;
  const std::vector<std::string> files = list_sample_files(dir);
  r.files = static_cast<int64_t>(files.size());

  std::map<std::string, int64_t> splits, shapes;
  for (const char* s : {".", "train", "validation", "test"}) splits[s] = 0;
  StatsAccumulator acc(opt.channels);
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    const std::string parent = fs::path(f).parent_path().filename().string();
    const fs::path parent_dir = fs::path(f).parent_path();
    std::error_code ec;
    ++splits[fs::equivalent(parent_dir, dir, ec) ? "." : parent];
    try {
      const SampleCheck c = check_sample_file(f, opt, &acc);
      ++r.samples;
      for (size_t k = 0; k < c.class_pixels.size(); ++k) r.class_pixels[k] += c.class_pixels[k];
      ++shapes[detail::concat(layout_name(c.info.layout), " ", c.info.height, "x", c.info.width)];
    } catch (const std::exception& e) {
      r.bad.push_back({f, e.what()});
    }
    if (progress) progress(static_cast<int64_t>(i + 1), r.files);
  }
  for (const auto& [name, n] : splits)
    if (n > 0) r.splits.emplace_back(name, n);
  r.shapes.assign(shapes.begin(), shapes.end());
  if (r.samples > 0) r.data_stats = acc;

  r.stats_path = (fs::path(dir) / "stats.h5").string();
  std::error_code ec;
  r.stats_present = fs::exists(fs::symlink_status(r.stats_path, ec));
  if (r.stats_present) {
    try {
      std::error_code ec2;
      if (fs::is_regular_file(r.stats_path, ec2) && fs::file_size(r.stats_path, ec2) == 0)
        CS_THROW(r.stats_path, ": empty file (0 bytes): not an HDF5 file");
      r.stats = read_stats(r.stats_path, opt.channels);
    } catch (const std::exception& e) {
      r.bad.push_back({r.stats_path, e.what()});
    }
  }
  return r;
}

}  // namespace climseg::io
