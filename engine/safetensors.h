// safetensors files (https://github.com/huggingface/safetensors, format description in its README; ours in
// docs/checkpoint-format.md): the container of climseg's weights and checkpoints, and the format PyTorch users load.
//
//   [8 bytes]  N, unsigned little-endian: length of the header
//   [N bytes]  JSON object, UTF-8, padded with spaces:
//                {"__metadata__": {"key": "value", ...},                      optional, strings only
//                 "<name>": {"dtype": "F32", "shape": [K, C, R, S], "data_offsets": [begin, end]}, ...}
//   [rest]     the data section: raw little-endian, C-order tensors; offsets are bytes from its start
//
// Dtypes: F64, F32, F16, BF16, I64, I32, U8 (climseg's DType set; the format's other dtypes, BOOL, I8, F8_*, ...,
// are refused by name). Shapes have any rank; climseg tensors are 4-D, so a shape of rank r <= 4 is read as its
// left-padding with 1s ([] -> (1,1,1,1), [C] -> (1,1,1,C), [K,C,R,S] -> (K,C,R,S)), while the file keeps the shape
// the writer was given.
//
// The reader trusts nothing: the header length is bounded (100 MB, the reference implementation's limit, and the
// file's size), and every entry is checked before any tensor is read (known dtype, shape, size == numel * dtype
// size, offsets inside the data section, and entries that tile the data section exactly: sorted by offset, each
// begins where the previous one ends and the last ends at the end of the file, so there are no overlaps, holes or
// trailing bytes). Every error is a climseg::Error naming the file and the problem.
//
// The writer is atomic (engine/atomic_file.h): it writes <path>.tmp-<pid>-<n>, fsyncs it, renames it over `path`
// and fsyncs the directory. On any failure the temporary file is removed and an existing file at `path` is left untouched.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace climseg {

// One tensor to write: host data (any pixel-strided view) and the shape recorded in the file, whose product must
// be data.numel() (an empty shape is a scalar: numel 1).
struct SafetensorsTensor {
  std::string name;
  Tensor data;
  std::vector<int64_t> shape;
};

// Writes `tensors` (names unique, not "__metadata__", not empty) and `metadata` to `path` atomically. The data
// section holds the tensors sorted by element size (largest first, so every tensor is aligned to its element size
// when the data section is 8-aligned, which the header padding guarantees) and then by name: the same inputs give
// the same bytes in any order.
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The order write_safetensors lays `tensors` out in the data section, as indices into `tensors` (element size
// descending, then name). A writer that records a checksum of the data section in the metadata
// (engine/checkpoint.h) walks the tensors in this order.
std::vector<size_t> safetensors_data_order(const std::vector<SafetensorsTensor>& tensors);

// A validated safetensors file: the header is read and checked on construction, tensors are read on request.
class SafetensorsReader {
 public:
  struct Entry {
    std::string name;
    DType dtype = DType::f32;
    std::vector<int64_t> shape;   // as in the file
    uint64_t begin = 0, end = 0;  // byte offsets into the data section
  };

  explicit SafetensorsReader(std::string path);  // throws climseg::Error for a missing or malformed file

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The metadata value of `key`, or `fallback` when the file has none.
  std::string metadata_or(const std::string& key, const std::string& fallback) const;
  const std::vector<Entry>& entries() const { return entries_; }  // sorted by name
  const Entry* find(const std::string& name) const;               // null when absent
  // The tensor as a contiguous host Tensor in the file's dtype, its shape left-padded to 4-D (ranks above 4 throw).
  Tensor read(const std::string& name) const;
  Tensor read(const Entry& e) const;

 private:
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
  uint64_t data_start_ = 0;  // 8 + header length
};

// Both directions of the dtype names ("F32" <-> DType::f32). safetensors_dtype_from_name throws for names outside
// climseg's set, distinguishing the format's other dtypes from unknown strings.
const char* safetensors_dtype_name(DType t);
DType safetensors_dtype_from_name(const std::string& s);
// A file shape of rank <= 4 as climseg's 4-D Shape (left-padded with 1s).
Shape safetensors_shape_4d(const std::vector<int64_t>& shape);

inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;  // the reference implementation's MAX_HEADER_SIZE

}  // namespace climseg
