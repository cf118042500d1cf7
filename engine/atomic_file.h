// Atomic replacement of an output file (weights, checkpoints, predictions, PNGs): write to a temporary name beside the
// target, then rename it into place. rename() within one directory is atomic on POSIX file systems, so readers see the
// old file (or none) or the complete new one, and a run that fails half-way leaves no partial output under the target's
// name.
//
//   AtomicFile out(path);
//   write_everything_to(out.tmp_path());
//   out.commit();  // fsync + rename; without it the destructor removes the temporary
#pragma once

#include <string>

namespace climseg {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // the target; its directory must exist (checked here)
  ~AtomicFile();                          // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_; }  // "<path>.tmp-<pid>-<n>": unique within the process
  // Flushes the temporary to disk, renames it to path() and syncs the directory; throws naming both on failure.
  void commit();

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

}  // namespace climseg
