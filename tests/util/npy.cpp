#include "tests/util/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace climseg::test {

namespace {
const char* descr(DType t) {
  switch (t) {
    case DType::f64: return "<f8";
    case DType::f32: return "<f4";
    case DType::i64: return "<i8";
    case DType::i32: return "<i4";
    case DType::u8: return "|u1";
    default: CS_THROW("npy: unsupported dtype ", dtype_name(t));
  }
}
DType from_descr(const std::string& d, const std::string& path) {
  if (d == "<f8") return DType::f64;
  if (d == "<f4") return DType::f32;
  if (d == "<i8") return DType::i64;
  if (d == "<i4") return DType::i32;
  if (d == "|u1" || d == "<u1") return DType::u8;
  CS_THROW(path, ": unsupported npy dtype '", d, "'");
}
}  // namespace

void npy_write(const std::string& path, const Tensor& t) {
  CS_CHECK(t.device() == Device::cpu, "npy_write: ", path, ": host tensors only");
  Tensor c = t.is_contiguous() ? t : t.clone();
  const Shape& s = c.shape();
  std::string header = detail::concat("{'descr': '", descr(c.dtype()), "', 'fortran_order': False, 'shape': (", s.n,
                                      ", ", s.h, ", ", s.w, ", ", s.c, "), }");
  size_t total = 10 + header.size() + 1;
  size_t pad = (64 - total % 64) % 64;
  header += std::string(pad, ' ') + "\n";
  std::ofstream f(path, std::ios::binary);
  CS_CHECK(f.good(), "npy_write: cannot open ", path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(header.size());
  f.write(reinterpret_cast<const char*>(&len), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(static_cast<const char*>(c.data()), static_cast<std::streamsize>(c.nbytes()));
  CS_CHECK(f.good(), "npy_write: writing ", path, " failed");
}

Tensor npy_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CS_CHECK(f.good(), "npy_read: cannot open ", path);
  char magic[8];
  f.read(magic, 8);
  CS_CHECK(f.good() && std::memcmp(magic, "\x93NUMPY", 6) == 0, path, ": not a .npy file");
  size_t hlen = 0;
  if (magic[6] == 1) {
    uint16_t l;
    f.read(reinterpret_cast<char*>(&l), 2);
    hlen = l;
  } else {
    uint32_t l;
    f.read(reinterpret_cast<char*>(&l), 4);
    hlen = l;
  }
  std::string header(hlen, '\0');
  f.read(header.data(), static_cast<std::streamsize>(hlen));
  auto field = [&](const std::string& key) {
    size_t p = header.find("'" + key + "'");
    CS_CHECK(p != std::string::npos, path, ": npy header lacks ", key);
    return p + key.size() + 3;
  };
  size_t dp = header.find('\'', field("descr"));
  std::string d = header.substr(dp + 1, header.find('\'', dp + 1) - dp - 1);
  CS_CHECK(header.find("'fortran_order': False") != std::string::npos, path, ": Fortran order not supported");
  size_t sp = header.find('(', field("shape"));
  std::string dims = header.substr(sp + 1, header.find(')', sp) - sp - 1);
  std::vector<int64_t> shape;
  std::stringstream ss(dims);
  for (std::string tok; std::getline(ss, tok, ',');)
    if (tok.find_first_not_of(" ") != std::string::npos) shape.push_back(std::stoll(tok));
  CS_CHECK(shape.size() <= 4, path, ": rank ", shape.size(), " > 4");
  while (shape.size() < 4) shape.insert(shape.begin(), 1);
  Tensor t = Tensor::empty(Shape{shape[0], shape[1], shape[2], shape[3]}, from_descr(d, path), Device::cpu);
  f.read(static_cast<char*>(t.data()), static_cast<std::streamsize>(t.nbytes()));
  CS_CHECK(f.good() || (f.eof() && t.nbytes() == 0), path, ": truncated data");
  return t;
}

}  // namespace climseg::test
