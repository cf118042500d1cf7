#include "engine/crc32c.h"

#include <bit>
#include <cstring>

namespace climseg {

namespace {

struct CrcTables {
  uint32_t t[8][256];
};

constexpr CrcTables make_crc_tables() {
  CrcTables c{};
  constexpr uint32_t poly = 0x82F63B78u;  // 0x1EDC6F41 bit-reversed
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t r = i;
    for (int b = 0; b < 8; ++b) r = (r & 1u) ? (r >> 1) ^ poly : r >> 1;
    c.t[0][i] = r;
  }
  for (int k = 1; k < 8; ++k)
    for (int i = 0; i < 256; ++i) c.t[k][i] = (c.t[k - 1][i] >> 8) ^ c.t[0][c.t[k - 1][i] & 0xFFu];
  return c;
}

constexpr CrcTables kCrc = make_crc_tables();

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  if constexpr (std::endian::native == std::endian::little) {
    // Eight bytes per step: each table folds one byte's contribution across the following bytes.
    for (; n >= 8; n -= 8, p += 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      w ^= crc;
      crc = kCrc.t[7][w & 0xFF] ^ kCrc.t[6][(w >> 8) & 0xFF] ^ kCrc.t[5][(w >> 16) & 0xFF] ^
            kCrc.t[4][(w >> 24) & 0xFF] ^ kCrc.t[3][(w >> 32) & 0xFF] ^ kCrc.t[2][(w >> 40) & 0xFF] ^
            kCrc.t[1][(w >> 48) & 0xFF] ^ kCrc.t[0][w >> 56];
    }
  }
  for (; n > 0; --n, ++p) crc = kCrc.t[0][(crc ^ *p) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

}  // namespace climseg
