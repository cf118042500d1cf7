#include "engine/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/atomic_file.h"
#include "engine/crc32c.h"
#include "engine/safetensors.h"

namespace climseg {

namespace fs = std::filesystem;

namespace {

constexpr const char* kKeyFormat = "climseg.format";
constexpr const char* kKeyVersion = "climseg.version";
constexpr const char* kKeyStep = "climseg.step";
constexpr const char* kKeyChecksum = "climseg.checksum";
constexpr const char* kKeyHeaderChecksum = "climseg.header_checksum";  // version 2
constexpr const char* kReservedPrefix = "climseg.";
constexpr const char* kFormat = "climseg-checkpoint";
constexpr const char* kVersion = "2";
constexpr const char* kVersion1 = "1";  // no header checksum; still read
constexpr const char* kPointer = "latest";
constexpr int64_t kMaxStep = 9'999'999'999;  // 10 digits in the file name
constexpr size_t kPointerMaxBytes = 4096;    // the pointer holds one short line

constexpr std::string_view kPrefix = "ckpt-";
constexpr std::string_view kSuffix = ".safetensors";
constexpr std::string_view kTmp = ".tmp-";
constexpr size_t kStepDigits = 10;

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "ckpt-<10 digits>.safetensors" -> the step; nullopt for any other name.
std::optional<int64_t> parse_checkpoint_name(std::string_view name) {
  if (name.size() != kPrefix.size() + kStepDigits + kSuffix.size() || !name.starts_with(kPrefix) ||
      !name.ends_with(kSuffix))
    return std::nullopt;
  const std::string_view digits = name.substr(kPrefix.size(), kStepDigits);
  if (!all_digits(digits)) return std::nullopt;
  int64_t step = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), step);
  return step;
}

// "<base>.tmp-<digits>-<digits>" (AtomicFile's temporaries) -> base; nullopt for any other name.
std::optional<std::string_view> parse_tmp_name(std::string_view name) {
  const size_t at = name.rfind(kTmp);
  if (at == std::string_view::npos) return std::nullopt;
  const std::string_view rest = name.substr(at + kTmp.size());
  const size_t dash = rest.find('-');
  if (dash == std::string_view::npos || !all_digits(rest.substr(0, dash)) || !all_digits(rest.substr(dash + 1)))
    return std::nullopt;
  return name.substr(0, at);
}

std::string hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// 8 lower-case hex digits -> the value; nullopt otherwise.
std::optional<uint32_t> parse_hex8(std::string_view s) {
  if (s.size() != 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return std::nullopt;
    v = v << 4 | static_cast<uint32_t>(d);
  }
  return v;
}

// The header's content in a canonical form, CRC-32C: every metadata key and value but the two checksums (in key
// order), then every tensor's name, dtype, shape and byte range (in name order). What the JSON says, not how it is
// spelled: a bit flip that leaves the header valid JSON changes a name, a value, a shape or an offset, and the CRC.
struct HeaderEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};
uint32_t header_crc(const std::map<std::string, std::string>& md, std::vector<HeaderEntry> entries) {
  uint32_t crc = 0;
  const char zero = 0;
  for (const auto& [k, v] : md) {
    if (k == kKeyChecksum || k == kKeyHeaderChecksum) continue;
    crc = crc32c(k.data(), k.size(), crc);
    crc = crc32c(&zero, 1, crc);
    crc = crc32c(v.data(), v.size(), crc);
    crc = crc32c(&zero, 1, crc);
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const HeaderEntry& e : entries) {
    crc = crc32c(e.name.data(), e.name.size(), crc);
    crc = crc32c(&zero, 1, crc);
    const int32_t dt = static_cast<int32_t>(e.dtype);
    const uint64_t nd = e.shape.size();
    crc = crc32c(&dt, sizeof dt, crc);
    crc = crc32c(&nd, sizeof nd, crc);
    for (int64_t d : e.shape) crc = crc32c(&d, sizeof d, crc);
    crc = crc32c(&e.begin, sizeof e.begin, crc);
    crc = crc32c(&e.end, sizeof e.end, crc);
  }
  return crc;
}

// The CRC of a host tensor's elements in C order (what write_safetensors writes), chained onto `crc`; a
// pixel-strided view is walked row by row, without a copy.
uint32_t crc_of(const Tensor& t, uint32_t crc) {
  if (t.numel() == 0) return crc;
  if (t.is_contiguous()) return crc32c(t.data(), t.nbytes(), crc);
  CS_CHECK(t.is_pixel_strided(), "checkpoint: tensor ", t.str(), " is not pixel-strided");
  const size_t width = static_cast<size_t>(t.shape().c) * t.element_size();
  const size_t pitch = static_cast<size_t>(t.pixel_stride()) * t.element_size();
  const auto* p = static_cast<const char*>(t.data());
  for (int64_t r = 0; r < t.shape().pixels(); ++r) crc = crc32c(p + static_cast<size_t>(r) * pitch, width, crc);
  return crc;
}

bool write_all(int fd, const void* src, size_t n) {
  const char* p = static_cast<const char*>(src);
  while (n > 0) {
    const ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

// Replaces `path` with `text` atomically (temporary, fsync, rename, directory fsync).
void write_text_atomic(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  const int fd = ::open(out.tmp_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CS_CHECK(fd >= 0, path, ": cannot create the temporary file ", out.tmp_path(), ": ", std::strerror(errno));
  const bool ok = write_all(fd, text.data(), text.size());
  const int write_errno = errno;
  const int close_rc = ::close(fd);
  CS_CHECK(ok && close_rc == 0, path, ": writing ", out.tmp_path(),
           " failed: ", std::strerror(ok ? errno : write_errno));
  out.commit();
}

struct Pointer {
  std::string name;  // a checkpoint file name (no directory)
  int64_t step = 0;
  uint32_t checksum = 0;
};

// Reads <dir>/latest: exactly "<checkpoint file name> <8 hex digits>\n". Throws with the reason otherwise.
Pointer read_pointer(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CS_CHECK(f.good(), "cannot open: ", std::strerror(errno));
  std::string text(kPointerMaxBytes + 1, '\0');
  f.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(f.gcount()));
  CS_CHECK(text.size() <= kPointerMaxBytes, "longer than ", kPointerMaxBytes, " bytes: not a checkpoint pointer");
  CS_CHECK(!text.empty() && text.back() == '\n', "malformed: it does not end with a newline (truncated?)");
  text.pop_back();
  const size_t space = text.find(' ');
  CS_CHECK(space != std::string::npos, "malformed: expected '<file> <checksum>', got '", text, "'");
  Pointer p;
  p.name = text.substr(0, space);
  const auto step = parse_checkpoint_name(p.name);
  CS_CHECK(step.has_value(), "malformed: '", p.name, "' is not a checkpoint file name (ckpt-<10 digits>.safetensors)");
  p.step = *step;
  const auto crc = parse_hex8(std::string_view(text).substr(space + 1));
  CS_CHECK(crc.has_value(), "malformed: '", text.substr(space + 1), "' is not a checksum (8 lower-case hex digits)");
  p.checksum = *crc;
  return p;
}

// load_file plus the check that the step in the file's name is the one it records.
Checkpoint load_candidate(const std::string& path, int64_t name_step) {
  Checkpoint c = CheckpointStore::load_file(path);
  CS_CHECK(c.step == name_step, path, ": climseg.step is ", c.step, " but the file name says step ", name_step);
  return c;
}

}  // namespace

std::string checkpoint_file_name(int64_t step) {
  CS_CHECK(step >= 0 && step <= kMaxStep, "checkpoint step ", step, " is outside [0, ", kMaxStep, "]");
  char buf[32];
  std::snprintf(buf, sizeof buf, "ckpt-%010lld.safetensors", static_cast<long long>(step));
  return buf;
}

// ---- Checkpoint ------------------------------------------------------------------------------------------------

const CheckpointTensor* Checkpoint::find(const std::string& name) const {
  for (const CheckpointTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const Tensor& Checkpoint::tensor(const std::string& name) const {
  const CheckpointTensor* t = find(name);
  CS_CHECK(t != nullptr, "checkpoint ", path, ": no tensor '", name, "'");
  return t->data;
}

// ---- CheckpointStore -------------------------------------------------------------------------------------------

CheckpointStore::CheckpointStore(std::string dir, CheckpointStoreOptions opt) : dir_(std::move(dir)), opt_(opt) {
  CS_CHECK(!dir_.empty(), "checkpoint directory is empty");
  CS_CHECK(opt_.keep >= 1, "checkpoint store ", dir_, ": keep must be >= 1, got ", opt_.keep);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  CS_CHECK(fs::is_directory(dir_), "checkpoint store: cannot create the directory ", dir_,
           ec ? ": " + ec.message() : std::string(": a file of that name exists"));
}

std::string CheckpointStore::save(int64_t step, const std::map<std::string, std::string>& meta,
                                  const std::vector<CheckpointTensor>& tensors) {
  const std::string name = checkpoint_file_name(step);  // checks the step
  const std::string path = (fs::path(dir_) / name).string();
  for (const auto& kv : meta)
    CS_CHECK(!kv.first.starts_with(kReservedPrefix), path, ": metadata key '", kv.first,
             "' is reserved (keys beginning with 'climseg.' belong to the checkpoint store)");

  // Host tensors are written from the caller's memory; device tensors are copied to the host first.
  std::vector<SafetensorsTensor> st;
  st.reserve(tensors.size());
  for (const CheckpointTensor& t : tensors) {
    CS_CHECK(t.data.defined(), path, ": tensor '", t.name, "' has no data");
    const Shape s = t.data.shape();
    st.push_back({t.name, t.data.device() == Device::cpu ? t.data : t.data.to(Device::cpu), {s.n, s.h, s.w, s.c}});
  }
  uint32_t crc = 0;
  std::vector<HeaderEntry> entries;
  uint64_t offset = 0;
  for (size_t i : safetensors_data_order(st)) {
    crc = crc_of(st[i].data, crc);
    const uint64_t bytes = static_cast<uint64_t>(st[i].data.nbytes());
    entries.push_back({st[i].name, st[i].data.dtype(), st[i].shape, offset, offset + bytes});
    offset += bytes;
  }

  std::map<std::string, std::string> md = meta;
  md[kKeyFormat] = kFormat;
  md[kKeyVersion] = kVersion;
  md[kKeyStep] = std::to_string(step);
  md[kKeyChecksum] = hex8(crc);
  md[kKeyHeaderChecksum] = hex8(header_crc(md, entries));
  write_safetensors(path, st, md);  // temporary, fsync, rename, directory fsync
  write_text_atomic((fs::path(dir_) / kPointer).string(), name + " " + hex8(crc) + "\n");

  // Retention, best effort: the new checkpoint is complete and named by `latest`, so a file that cannot be removed
  // here is left for the next save rather than reported as a failed save.
  std::vector<std::pair<int64_t, fs::path>> older;
  std::vector<fs::path> temporaries;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (const auto s = parse_checkpoint_name(n)) {
      if (*s < step) older.emplace_back(*s, it->path());
    } else if (const auto base = parse_tmp_name(n)) {
      const auto s = parse_checkpoint_name(*base);
      if ((s && *s <= step) || *base == kPointer) temporaries.push_back(it->path());
    }
  }
  std::sort(older.begin(), older.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = static_cast<size_t>(opt_.keep - 1); i < older.size(); ++i) fs::remove(older[i].second, ec);
  for (const fs::path& p : temporaries) fs::remove(p, ec);
  return path;
}

std::vector<std::string> CheckpointStore::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    if (const auto s = parse_checkpoint_name(it->path().filename().string())) {
      std::error_code ec2;
      if (it->is_regular_file(ec2)) found.emplace_back(*s, it->path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

Checkpoint CheckpointStore::load_file(const std::string& path) {
  const SafetensorsReader r(path);  // validates the whole header; throws naming the file
  const auto& md = r.metadata();
  auto get = [&](const char* key) -> const std::string& {
    auto it = md.find(key);
    CS_CHECK(it != md.end(), path, ": not a climseg checkpoint: metadata key '", key, "' is missing");
    return it->second;
  };
  const std::string& format = get(kKeyFormat);
  CS_CHECK(format == kFormat, path, ": not a climseg checkpoint: ", kKeyFormat, " is '", format, "'");
  const std::string& version = get(kKeyVersion);
  CS_CHECK(version == kVersion || version == kVersion1, path, ": checkpoint version '", version,
           "' is not supported (this build reads ", kVersion1, " and ", kVersion, ")");
  // Version 2: the header is covered too, so a damaged header that is still valid JSON (a tensor name, a metadata
  // value) is a damaged file, which load_latest skips, not a checkpoint of another run.
  if (version == kVersion) {
    const std::string& hc = get(kKeyHeaderChecksum);
    const auto want = parse_hex8(hc);
    CS_CHECK(want.has_value(), path, ": ", kKeyHeaderChecksum, " '", hc, "' is not 8 lower-case hex digits");
    std::vector<HeaderEntry> entries;
    for (const auto& e : r.entries()) entries.push_back({e.name, e.dtype, e.shape, e.begin, e.end});
    const uint32_t got = header_crc(md, entries);
    CS_CHECK(got == *want, path, ": header checksum mismatch: the header's CRC-32C is ", hex8(got), " but ",
             kKeyHeaderChecksum, " records ", hc, " (the file is damaged)");
  }
  Checkpoint c;
  c.path = path;
  const std::string& step = get(kKeyStep);
  const auto [end, err] = std::from_chars(step.data(), step.data() + step.size(), c.step);
  CS_CHECK(all_digits(step) && err == std::errc() && end == step.data() + step.size() && c.step <= kMaxStep, path, ": ",
           kKeyStep, " '", step, "' is not a step in [0, ", kMaxStep, "]");
  const std::string& checksum = get(kKeyChecksum);
  const auto expected = parse_hex8(checksum);
  CS_CHECK(expected.has_value(), path, ": ", kKeyChecksum, " '", checksum, "' is not 8 lower-case hex digits");

  // Read in file order, so the CRC chains over the data section exactly as written (the reader has checked that
  // the entries tile it: no holes, no overlaps, no trailing bytes).
  std::vector<const SafetensorsReader::Entry*> by_offset;
  for (const auto& e : r.entries()) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint32_t crc = 0;
  c.tensors.reserve(by_offset.size());
  for (const auto* e : by_offset) {
    Tensor t = r.read(*e);
    crc = crc32c(t.data(), t.nbytes(), crc);
    c.tensors.push_back({e->name, std::move(t)});
  }
  CS_CHECK(crc == *expected, path, ": checksum mismatch: the data section's CRC-32C is ", hex8(crc), " but ",
           kKeyChecksum, " records ", checksum, " (the file is damaged)");
  c.checksum = crc;
  std::sort(c.tensors.begin(), c.tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& kv : md)
    if (!kv.first.starts_with(kReservedPrefix)) c.meta.insert(kv);
  return c;
}

std::optional<Checkpoint> CheckpointStore::load_latest(std::vector<std::string>* skipped) const {
  std::vector<std::string> local;
  std::vector<std::string>& sk = skipped ? *skipped : local;
  const size_t first_skip = sk.size();
  const std::vector<std::string> files = list();
  std::set<std::string> tried;
  std::optional<Checkpoint> unconfirmed;  // the file `latest` names, loadable but not with the recorded checksum

  const std::string pointer_path = (fs::path(dir_) / kPointer).string();
  std::error_code ec;
  if (fs::exists(pointer_path, ec)) {
    std::optional<Pointer> ptr;
    try {
      ptr = read_pointer(pointer_path);
    } catch (const Error& e) {
      sk.push_back(pointer_path + ": " + e.what() + "; scanning the directory");
    }
    if (ptr) {
      const std::string path = (fs::path(dir_) / ptr->name).string();
      if (!fs::is_regular_file(path, ec)) {
        sk.push_back(pointer_path + ": names " + ptr->name + ", which does not exist; scanning the directory");
      } else {
        try {
          Checkpoint c = load_candidate(path, ptr->step);
          if (c.checksum == ptr->checksum) return c;
          sk.push_back(pointer_path + ": records checksum " + hex8(ptr->checksum) + " for " + ptr->name +
                       " but the file has " + hex8(c.checksum) + " (rewritten after the pointer); scanning the " +
                       "directory");
          unconfirmed = std::move(c);
        } catch (const Error& e) {
          sk.push_back(path + ": " + e.what());
          tried.insert(path);
        }
      }
    }
  }

  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    if (tried.count(*it)) continue;
    if (unconfirmed && unconfirmed->path == *it) return unconfirmed;
    try {
      return load_candidate(*it, *parse_checkpoint_name(fs::path(*it).filename().string()));
    } catch (const Error& e) {
      sk.push_back(*it + ": " + e.what());
    }
  }
  if (files.empty()) return std::nullopt;
  std::string why;
  for (size_t i = first_skip; i < sk.size(); ++i) why += "\n  " + sk[i];
  CS_THROW("no loadable checkpoint in ", dir_, " (", files.size(), " checkpoint file", files.size() == 1 ? "" : "s",
           ", all skipped):", why);
}

void check_checkpoint_fields(const Checkpoint& ckpt, const std::map<std::string, std::string>& expected) {
  std::string diffs;
  for (const auto& [key, want] : expected) {
    auto it = ckpt.meta.find(key);
    if (it == ckpt.meta.end())
      diffs += (diffs.empty() ? "" : "; ") + ("field '" + key + "' is missing in the checkpoint, '" + want + "' here");
    else if (it->second != want)
      diffs += (diffs.empty() ? "" : "; ") +
               ("field '" + key + "' is '" + it->second + "' in the checkpoint, '" + want + "' here");
  }
  if (!diffs.empty()) CS_THROW("checkpoint ", ckpt.path, " does not match this run: ", diffs);
}

}  // namespace climseg
