#include "engine/safetensors.h"

#include "engine/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

namespace climseg {

// The data section is raw little-endian and we copy it byte for byte.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;

constexpr struct {
  DType dtype;
  const char* name;
} kDtypes[] = {{DType::f64, "F64"}, {DType::f32, "F32"}, {DType::f16, "F16"}, {DType::bf16, "BF16"},
               {DType::i64, "I64"}, {DType::i32, "I32"}, {DType::u8, "U8"}};

// The format's dtypes that climseg has no type for: named in the error rather than called unknown.
constexpr const char* kOtherFormatDtypes[] = {"BOOL",    "I8",      "I16", "U16",     "U32",     "U64", "F8_E4M3",
                                              "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

std::string errno_text() { return std::strerror(errno); }

// a * b, or false when it does not fit in uint64_t.
bool mul_ok(uint64_t a, uint64_t b, uint64_t& out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Reads exactly n bytes at `offset`; false on a short read or an I/O error.
bool read_at(int fd, uint64_t offset, void* dst, size_t n) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

bool write_all(int fd, const void* src, size_t n) {
  const char* p = static_cast<const char*>(src);
  while (n > 0) {
    ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// The DType of a safetensors dtype name; false with the reason otherwise (climseg's set is smaller than the format's).
bool lookup_dtype(const std::string& s, DType& t, std::string& why) {
  for (const auto& d : kDtypes)
    if (s == d.name) {
      t = d.dtype;
      return true;
    }
  for (const char* o : kOtherFormatDtypes)
    if (s == o) {
      why =
          "dtype '" + s + "' is a safetensors dtype that climseg does not support (F64, F32, F16, BF16, I64, I32, U8)";
      return false;
    }
  why = "unknown dtype '" + s + "' (climseg reads F64, F32, F16, BF16, I64, I32, U8)";
  return false;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (const auto& d : kDtypes)
    if (d.dtype == t) return d.name;
  CS_THROW("safetensors: no name for dtype ", dtype_name(t));
}

DType safetensors_dtype_from_name(const std::string& s) {
  std::string why;
  DType t;
  CS_CHECK(lookup_dtype(s, t, why), why);
  return t;
}

Shape safetensors_shape_4d(const std::vector<int64_t>& shape) {
  CS_CHECK(shape.size() <= 4, "a tensor of rank ", shape.size(), " ", shape_text(shape),
           " does not fit climseg's 4-D tensors");
  int64_t d[4] = {1, 1, 1, 1};
  for (size_t i = 0; i < shape.size(); ++i) d[4 - shape.size() + i] = shape[i];
  return Shape{d[0], d[1], d[2], d[3]};
}

// ---- writer -------------------------------------------------------------------------------------------------------

std::vector<size_t> safetensors_data_order(const std::vector<SafetensorsTensor>& tensors) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const SafetensorsTensor &ta = tensors[a], &tb = tensors[b];
    const size_t sa = ta.data.defined() ? dtype_size(ta.data.dtype()) : 0;
    const size_t sb = tb.data.defined() ? dtype_size(tb.data.dtype()) : 0;
    return sa != sb ? sa > sb : ta.name < tb.name;
  });
  return order;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Everything is checked, and the header built, before the temporary file exists.
  std::vector<const SafetensorsTensor*> order;
  std::set<std::string> names;
  for (const SafetensorsTensor& t : tensors) {
    CS_CHECK(!t.name.empty(), path, ": a tensor without a name");
    CS_CHECK(t.name != "__metadata__", path, ": '__metadata__' is reserved for the metadata, not a tensor name");
    CS_CHECK(names.insert(t.name).second, path, ": tensor name '", t.name, "' given twice");
    CS_CHECK(t.data.defined(), path, ": tensor '", t.name, "' has no data");
    CS_CHECK(t.data.device() == Device::cpu, path, ": tensor '", t.name, "' is on ", device_name(t.data.device()),
             "; copy it to the host first");
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      CS_CHECK(d >= 0, path, ": tensor '", t.name, "' has a negative extent in ", shape_text(t.shape));
      numel *= d;
    }
    CS_CHECK(numel == t.data.numel(), path, ": tensor '", t.name, "': shape ", shape_text(t.shape), " holds ", numel,
             " elements but the data ", t.data.str(), " has ", t.data.numel());
  }
  for (size_t i : safetensors_data_order(tensors)) order.push_back(&tensors[i]);

  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsTensor* t : order) {
    const uint64_t bytes = t->data.nbytes();
    header[t->name] = {{"dtype", safetensors_dtype_name(t->data.dtype())},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Spaces up to a multiple of 8 so the data section (at 8 + N) starts 8-aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));

  AtomicFile out(path);  // on any failure before commit() the temporary goes and `path` stays untouched
  const std::string& tmp = out.tmp_path();
  Fd f;
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CS_CHECK(f.fd >= 0, path, ": cannot create the temporary file ", tmp, ": ", errno_text());
  CS_CHECK(write_all(f.fd, len, 8) && write_all(f.fd, text.data(), text.size()), path, ": writing ", tmp,
           " failed: ", errno_text());
  for (const SafetensorsTensor* t : order) {
    if (t->data.numel() == 0) continue;
    const Tensor c = t->data.is_contiguous() ? t->data : t->data.clone();
    CS_CHECK(write_all(f.fd, c.data(), c.nbytes()), path, ": writing tensor '", t->name, "' to ", tmp,
             " failed: ", errno_text());
  }
  const int fd = f.fd;
  f.fd = -1;
  CS_CHECK(::close(fd) == 0, path, ": closing ", tmp, " failed: ", errno_text());
  out.commit();  // fsync, rename, directory fsync
}

// ---- reader -------------------------------------------------------------------------------------------------------

SafetensorsReader::SafetensorsReader(std::string path) : path_(std::move(path)) {
  const std::string& p = path_;
  Fd f;
  f.fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  CS_CHECK(f.fd >= 0, p, ": cannot open: ", errno_text());
  struct stat st {};
  CS_CHECK(::fstat(f.fd, &st) == 0, p, ": cannot stat: ", errno_text());
  CS_CHECK(S_ISREG(st.st_mode), p, ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  CS_CHECK(file_size >= 8, p, ": truncated file: ", file_size, " bytes, shorter than the 8-byte header length");
  unsigned char len[8];
  CS_CHECK(read_at(f.fd, 0, len, 8), p, ": cannot read the header length: ", errno_text());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  CS_CHECK(n <= kSafetensorsMaxHeaderBytes, p, ": header length ", n, " bytes exceeds the limit of ",
           kSafetensorsMaxHeaderBytes, " (not a safetensors file, or a corrupt one)");
  CS_CHECK(n <= file_size - 8, p, ": truncated file: the header length is ", n, " bytes but only ", file_size - 8,
           " bytes follow it");
  CS_CHECK(n >= 2, p, ": header of ", n, " bytes is too short to be a JSON object");
  std::string text(n, '\0');
  CS_CHECK(read_at(f.fd, 8, text.data(), n), p, ": cannot read the header: ", errno_text());
  // The format requires the header to be a JSON object (the reference implementation checks the first byte too).
  CS_CHECK(text[0] == '{', p, ": bad header: it does not start with '{' (not a safetensors file?)");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    CS_THROW(p, ": bad JSON in the header: ", e.what());
  }
  CS_CHECK(header.is_object(), p, ": bad header: not a JSON object");
  data_start_ = 8 + n;
  const uint64_t data_size = file_size - data_start_;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      CS_CHECK(v.is_object(), p, ": '__metadata__' must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        CS_CHECK(m.value().is_string(), p, ": metadata '", m.key(), "' is not a string (the format allows only ",
                 "string values)");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string who = p + ": tensor '" + name + "'";
    CS_CHECK(v.is_object(), who, ": entry is not an object");
    CS_CHECK(v.contains("dtype") && v["dtype"].is_string(), who, ": missing or non-string 'dtype'");
    CS_CHECK(v.contains("shape") && v["shape"].is_array(), who, ": missing or non-array 'shape'");
    CS_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2, who,
             ": 'data_offsets' must be an array [begin, end]");
    Entry e;
    e.name = name;
    std::string why;
    CS_CHECK(lookup_dtype(v["dtype"].get<std::string>(), e.dtype, why), who, ": ", why);
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      CS_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), who,
               ": shape entries must be non-negative integers, got ", v["shape"].dump());
      const uint64_t du = d.get<uint64_t>();
      CS_CHECK(du <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) && mul_ok(numel, du, numel), who,
               ": shape ", v["shape"].dump(), " overflows");
      e.shape.push_back(static_cast<int64_t>(du));
    }
    for (const json& o : v["data_offsets"])
      CS_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0), who,
               ": data_offsets must be non-negative integers, got ", v["data_offsets"].dump());
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    CS_CHECK(e.begin <= e.end, who, ": data_offsets ", v["data_offsets"].dump(), " end before they begin");
    CS_CHECK(e.end <= data_size, who, ": data_offsets ", v["data_offsets"].dump(),
             " out of range: the data section has ", data_size, " bytes (truncated file?)");
    uint64_t bytes = 0;
    CS_CHECK(mul_ok(numel, dtype_size(e.dtype), bytes) && bytes == e.end - e.begin, who, ": size mismatch: shape ",
             v["shape"].dump(), " of ", v["dtype"].get<std::string>(), " needs ", numel, " x ", dtype_size(e.dtype),
             " bytes but data_offsets ", v["data_offsets"].dump(), " span ", e.end - e.begin);
    entries_.push_back(std::move(e));
  }

  // The entries must tile the data section: in offset order each begins where the previous one ended (no overlap,
  // no hole) and the last ends at the end of the file (no trailing bytes), as the reference implementation requires.
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t at = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : by_offset) {
    if (e->begin < at)
      CS_THROW(p, ": tensors '", prev->name, "' [", prev->begin, ", ", prev->end, ") and '", e->name, "' [", e->begin,
               ", ", e->end, ") overlap");
    CS_CHECK(e->begin == at, p, ": the data section has a hole: bytes [", at, ", ", e->begin,
             ") belong to no tensor (before '", e->name, "')");
    at = e->end;
    prev = e;
  }
  CS_CHECK(at == data_size, p, ": the data section has ", data_size, " bytes but the tensors cover only ", at,
           " (trailing bytes, or offsets that do not match the file)");
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
}

std::string SafetensorsReader::metadata_or(const std::string& key, const std::string& fallback) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? fallback : it->second;
}

const SafetensorsReader::Entry* SafetensorsReader::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const Entry& e, const std::string& n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

Tensor SafetensorsReader::read(const std::string& name) const {
  const Entry* e = find(name);
  CS_CHECK(e != nullptr, path_, ": no tensor '", name, "'");
  return read(*e);
}

Tensor SafetensorsReader::read(const Entry& e) const {
  CS_CHECK(e.shape.size() <= 4, path_, ": tensor '", e.name, "' has rank ", e.shape.size(), " ", shape_text(e.shape),
           ", which does not fit climseg's 4-D tensors");
  Tensor t = Tensor::empty(safetensors_shape_4d(e.shape), e.dtype, Device::cpu);
  if (t.nbytes() == 0) return t;
  Fd f;
  f.fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  CS_CHECK(f.fd >= 0, path_, ": cannot open: ", errno_text());
  CS_CHECK(read_at(f.fd, data_start_ + e.begin, t.data(), t.nbytes()), path_, ": reading tensor '", e.name,
           "' failed (the file changed since its header was read?)");
  return t;
}

}  // namespace climseg
