// engine/crc32c: the published check values, chaining, and the slicing-by-8 path at every alignment (moved here
// from the MPI staging test so it runs without MPI).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/crc32c.h"

using namespace climseg;

TEST_CASE("CRC-32C: the standard check value, chaining, every alignment", "[crc32c]") {
  const std::string s = "123456789";
  CHECK(crc32c(s.data(), s.size()) == 0xE3069283u);  // RFC 3720 / the CRC catalogue's check value for CRC-32C
  CHECK(crc32c("", 0) == 0u);
  const std::vector<unsigned char> zeros(32, 0);
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
  const std::vector<unsigned char> ones(32, 0xFF);
  CHECK(crc32c(ones.data(), ones.size()) == 0x62A8AB43u);  // RFC 3720 B.4: 32 bytes of 0xFF
  std::string big(1000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131 + 7) & 0xFF);
  const uint32_t whole = crc32c(big.data(), big.size());
  for (size_t cut : {0, 1, 3, 8, 13, 500, 999}) {
    CHECK(crc32c(big.data() + cut, big.size() - cut, crc32c(big.data(), cut)) == whole);
    // The slicing-by-8 path starts at any alignment: a misaligned copy has the same CRC.
    std::string shifted(cut % 8, 'x');
    shifted += big;
    CHECK(crc32c(shifted.data() + cut % 8, big.size()) == whole);
  }
  big[500] ^= 1;
  CHECK(crc32c(big.data(), big.size()) != whole);
}
