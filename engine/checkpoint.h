// Training checkpoints (engine.md section 7; docs/training.md "Checkpoints"): a directory of safetensors files
// (engine/safetensors.h), one per saved step, a pointer to the newest complete one, and the last N kept.
//
//   <dir>/ckpt-0000001000.safetensors   step 1000: tensors + metadata (the caller's fields and ours, below)
//   <dir>/ckpt-0000002000.safetensors
//   <dir>/latest                        one line: "ckpt-0000002000.safetensors 8c1d2e3f\n" (file, checksum)
//
// Reserved metadata keys (every key beginning with "climseg." is reserved; the caller's may not use them):
//   climseg.format   "climseg-checkpoint"
//   climseg.version  "2" ("1": files without climseg.header_checksum, still read)
//   climseg.step     the step, decimal (also in the file name, 10 digits zero padded)
//   climseg.checksum CRC-32C (engine/crc32c.h) of the data section, i.e. every tensor's bytes in file order, as 8
//                    lower-case hex digits
//   climseg.header_checksum  CRC-32C of the header's content in a canonical form: every metadata key and value except
//                    the two checksums, in key order, then every tensor's name, dtype, shape and byte range, in name
//                    order (each string followed by a 0 byte, numbers as little-endian int32/uint64/int64). A bit
//                    flip in the header that leaves valid JSON changes what it says, so it fails this check and
//                    the file is skipped as damaged rather than refused as another run's checkpoint.
//
// Crash safety. Each file is written by write_safetensors through AtomicFile: "<file>.tmp-<pid>-<n>", fsync,
// rename, directory fsync. So a checkpoint name never refers to a partial file, and the rename is durable before
// `latest` moves to it (also atomically). A process killed at any moment leaves: the previous checkpoints and
// pointer intact, maybe a complete new file that `latest` does not name yet, maybe a temporary. Loading still
// verifies everything, in case the disk lies or a file is damaged later: a candidate is loaded only if it passes
// the safetensors validation, carries the reserved keys, the step in its name equals climseg.step, the CRC of its
// header content equals climseg.header_checksum and the CRC of its data equals climseg.checksum. The checksums are
// checked before anything is returned.
//
// Retention. After `latest` names the new file, save() deletes checkpoints with a lower step beyond the newest
// keep - 1 of them, and temporaries of killed writers ("ckpt-<10 digits>.safetensors.tmp-<pid>-<n>" of a step not
// above the new one, "latest.tmp-<pid>-<n>"); no other file is touched. Files of a higher step than the new one
// (left by a run that was resumed from an earlier checkpoint) are never deleted: `latest` no longer names them, but
// they are the caller's to remove. One process saves into a directory at a time (rank 0 in a parallel run).
//
// Memory: host tensors are written from the caller's memory (a pixel-strided view is copied one tensor at a time);
// device tensors are copied to the host first (all of them, before the file is written). Loading reads every
// tensor into host memory, verifies, and only then returns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace climseg {

struct CheckpointTensor {
  std::string name;
  Tensor data;  // save: host or device, pixel-strided; loaded: contiguous host, 4-D (N,H,W,C) as saved
};

struct Checkpoint {
  int64_t step = 0;
  std::map<std::string, std::string> meta;  // the caller's fields (model and optimizer configuration, data cursor,
                                            // RNG, loss scaler, ...); loaded: without the reserved climseg.* keys
  std::vector<CheckpointTensor> tensors;    // loaded: contiguous host tensors, sorted by name
  std::string path;                         // the file it came from
  uint32_t checksum = 0;                    // loaded: the verified CRC-32C of the data section

  const CheckpointTensor* find(const std::string& name) const;  // null when absent
  const Tensor& tensor(const std::string& name) const;          // throws naming the file when absent
};

struct CheckpointStoreOptions {
  int keep = 3;  // keep the last N complete checkpoints (>= 1)
};

class CheckpointStore {
 public:
  // Creates `dir` (and its parents) when missing; throws when that fails or keep < 1.
  explicit CheckpointStore(std::string dir, CheckpointStoreOptions opt = {});

  // Writes <dir>/ckpt-<step, 10 digits>.safetensors atomically with metadata = meta + the reserved keys, then
  // atomically replaces <dir>/latest, then applies retention (header comment). Returns the file's path. Throws for
  // a step outside [0, 9999999999], a reserved key in `meta`, or any tensor write_safetensors refuses (names unique
  // and non-empty, data defined); on a throw before the rename nothing in the directory has changed. Saving a step
  // that already has a file replaces that file.
  std::string save(int64_t step, const std::map<std::string, std::string>& meta,
                   const std::vector<CheckpointTensor>& tensors);

  // The newest loadable checkpoint: first the file `latest` names (when its checksum is also the one `latest`
  // records), then every other ckpt-*.safetensors in descending step order. Each candidate that fails verification
  // is skipped with a line "<file>: <reason>" appended to `skipped`, as is a `latest` that is unreadable, malformed or
  // names a missing file ("<dir>/latest: <reason>"). Returns nullopt when the directory holds no checkpoint file at
  // all; throws, naming the directory and every skipped file with its reason, when there are checkpoint files but none
  // is loadable.
  std::optional<Checkpoint> load_latest(std::vector<std::string>* skipped = nullptr) const;

  // One file, fully verified (safetensors validation, reserved keys, checksum), or throws naming it. The name of
  // the file is not checked here (load_latest checks that the step in it matches).
  static Checkpoint load_file(const std::string& path);

  std::vector<std::string> list() const;  // paths of the complete checkpoint files (by name), ascending step
  const std::string& dir() const { return dir_; }
  int keep() const { return opt_.keep; }

 private:
  std::string dir_;
  CheckpointStoreOptions opt_;
};

// For every key of `expected` the checkpoint's metadata must hold the same value; otherwise throws
// "checkpoint <path> does not match this run: field 'model' is 'tiramisu' in the checkpoint, 'deeplabv3plus' here"
// listing every differing (or missing) field.
void check_checkpoint_fields(const Checkpoint& ckpt, const std::map<std::string, std::string>& expected);

// The file name of a step's checkpoint: "ckpt-0000001000.safetensors".
std::string checkpoint_file_name(int64_t step);

}  // namespace climseg
