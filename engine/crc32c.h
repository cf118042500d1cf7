// CRC-32C (Castagnoli; the iSCSI/ext4 polynomial 0x1EDC6F41, reflected, RFC 3720): the
// checksum of staged dataset files (io/staging.h) and of training checkpoints (engine/checkpoint.h).
//
// Software, slicing by 8: eight 256-entry tables built at compile time; each step folds eight bytes, so the loop
// runs at a few GB/s on one core, well above the disk bandwidth a checkpoint is written at. Endianness: the
// 8-byte path is used on little-endian hosts only; elsewhere the byte-wise loop gives the same result.
#pragma once

#include <cstddef>
#include <cstdint>

namespace climseg {

// CRC-32C of n bytes. Chain calls by passing the previous result as `crc`:
// crc32c(b, nb, crc32c(a, na)) == crc32c(a+b). crc32c("123456789", 9) == 0xE3069283 (the catalogue's check value).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace climseg
