#include "engine/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "engine/check.h"

namespace climseg {

namespace {
std::atomic<unsigned> tmp_counter{0};
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  CS_CHECK(!path_.empty(), "output path is empty");
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(path_).parent_path();
  std::error_code ec;
  if (!dir.empty() && !fs::is_directory(dir, ec))
    CS_THROW(path_, ": cannot write: directory ", dir.string(), " does not exist");
  if (fs::is_directory(path_, ec)) CS_THROW(path_, ": cannot write: is a directory");
  tmp_ = ::climseg::detail::concat(path_, ".tmp-", getpid(), "-", tmp_counter.fetch_add(1));
}

AtomicFile::~AtomicFile() {
  if (!committed_) std::remove(tmp_.c_str());  // may not exist (the writer failed before creating it)
}

void AtomicFile::commit() {
  CS_CHECK(!committed_, path_, ": committed twice");
  // fsync first: after a crash the rename could otherwise be on disk before the file's contents.
  const int fd = ::open(tmp_.c_str(), O_RDONLY);
  if (fd < 0) CS_THROW(path_, ": cannot open the temporary ", tmp_, ": ", std::strerror(errno));
  const int sync_rc = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  if (sync_rc != 0) CS_THROW(path_, ": fsync of the temporary ", tmp_, " failed: ", std::strerror(sync_errno));
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    CS_THROW(path_, ": cannot rename the temporary ", tmp_, " into place: ", std::strerror(errno));
  committed_ = true;
  // Make the rename itself durable. The new file is complete and in place whatever happens here, so a failure to
  // sync the directory is not an error of this write (some file systems refuse fsync on directories).
  const std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace climseg
