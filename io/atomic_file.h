// Atomic replacement of an output file: write to a temporary name beside the target, then rename it into place.
// rename() within one directory is atomic on POSIX file systems, so readers see the old file (or none) or the
// complete new one, and a run that fails half-way leaves no partial output under the target's name.
//
//   AtomicFile out(path);
//   write_everything_to(out.tmp_path());
//   out.commit();  // fsync + rename; without it the destructor removes the temporary
#pragma once

#include <string>

namespace climseg::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // the target; its directory must exist (checked here)
  ~AtomicFile();                          // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_; }  // "<path>.tmp-<pid>-<n>": unique within the process
  void commit();  // flushes the temporary to disk and renames it to path(); throws naming both on failure

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

}  // namespace climseg::io
