// Staging a dataset from a shared file system to node-local storage, as the 2018 Gordon Bell runs did on Summit
// (reference-systems.md 4.1, GB `utils/parallel_stagein.py`): every file is read from the shared folder once, and the
// copies that other nodes need travel over MPI instead of being read again.
//
//   1. Staging rank 0 lists the shared folder (*.h5 but stats.h5, sorted), shuffles the list with the seed, keeps at
//      most count x nranks files and broadcasts names and sizes (plan_staging below).
//   2. File i belongs to rank i mod nranks. Each rank reads the files it owns from the shared folder, once, checks
//      the size, computes a CRC-32C, writes the copy to its local folder (atomically) and validates the copy as a
//      climate sample (io/dataset_check.h); the first bad file stops that rank and fails every rank.
//   3. When the folder holds fewer than count x nranks files, each rank also wants count - owned files owned by
//      others, chosen at random from (seed, rank). They move in nranks - 1 rounds: in round s rank r sends to
//      (r+s) mod N and receives from (r-s) mod N; the two first swap request lists, then whole files (a header with
//      size and CRC, then the bytes); the receiver recomputes the CRC before it writes the file.
//   4. stats.h5 is read once (by rank 0), broadcast, and written into every local folder.
// Errors never leave ranks waiting for each other: every step that can fail ends in an agreement point where all
// ranks learn which ranks failed and why, and all of them throw StageError with the same message; a failure inside
// the exchange is sent to the waiting peer as an error header instead of the file.
//
// Emulated nodes: the local folder may contain %r (the MPI rank) and %n (the node index), so one machine can stand
// for several nodes. With ranks_per_node R > 1 consecutive groups of R ranks form a node: the node's first rank
// stages count x R files into the node's folder and the others wait. One rank per node is the default (the 2018
// code). Two staging ranks on one host that would write into the same folder are an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#if defined(CLIMSEG_HAVE_MPI)
#include <mpi.h>
#endif

#include "engine/check.h"
#include "engine/crc32c.h"

namespace climseg::io {

// The files' checksum is CRC-32C, engine/crc32c.h (climseg::crc32c, visible here as io::crc32c).
using ::climseg::crc32c;

struct StageFile {
  std::string name;   // file name inside the shared folder
  uint64_t size = 0;  // bytes, from rank 0's listing
};

// Steps 1 and 3 as pure functions (the same on every rank, no MPI).
struct StagePlan {
  std::vector<StageFile> files;  // shuffled and trimmed: index i is owned by rank i mod nranks
  int nranks = 1;
  int64_t count = 0;  // files each staging rank ends with
  uint64_t seed = 0;

  int owner(int64_t i) const { return static_cast<int>(i % nranks); }
  std::vector<int64_t> owned(int rank) const;
  // The count - owned(rank) further files rank wants from others, chosen at random from (seed, rank); sorted.
  std::vector<int64_t> wanted(int rank) const;
};
// `listing` in any order (sorted here first, so the plan does not depend on the directory's order). Throws when
// the listing has fewer than `count` files (a rank cannot end with count distinct files).
StagePlan plan_staging(std::vector<StageFile> listing, int nranks, int64_t count, uint64_t seed);

// The local folder of one rank: %r -> rank, %n -> node, %% -> %.
std::string expand_local_path(const std::string& pattern, int rank, int node);

struct StageOptions {
  std::string from;                     // the shared folder
  std::string to;                       // the local folder, with %r / %n for emulated nodes; created when missing
  int64_t per_rank = 0;                 // files per MPI rank
  uint64_t seed = 12345;                // shuffle and choice of remote files
  int ranks_per_node = 1;               // consecutive ranks that share one node (and one local folder)
  std::string stats;                    // stats.h5 to copy; empty: FROM/stats.h5, else FROM/../stats.h5
  bool validate = true;                 // validate each staged copy as a climate sample (with labels)
  std::string test_corrupt_in_transit;  // tests only: flip one bit of this file's bytes on the wire
};

struct StageRankReport {
  int rank = 0, node = 0;  // MPI rank (in the communicator passed) and node index
  std::string local_dir;
  int64_t owned = 0;         // files this rank owns
  int64_t shared_reads = 0;  // files it read from the shared folder (counted where they are read)
  int64_t shared_bytes = 0;
  int64_t sent = 0, sent_bytes = 0, received = 0, received_bytes = 0;
  int64_t staged = 0;  // sample files it wrote into its local folder (owned + received)
  double copy_s = 0, exchange_s = 0;
};

struct StageReport {
  int64_t listed = 0;  // sample files in the shared folder
  StagePlan plan;      // plan.files: the files staged (listed, shuffled, trimmed)
  int staging_ranks = 0;
  std::vector<int64_t> reads_per_file;   // over all ranks, per plan.files index (1 each when all went well)
  int64_t stats_reads = 0;               // reads of stats.h5 over all ranks (1)
  std::vector<StageRankReport> ranks;    // every staging rank
  std::vector<std::string> local_files;  // this rank's staged files (names); empty on waiting ranks
  std::string local_dir;                 // this rank's (or its node's) local folder
  double list_s = 0, copy_s = 0, exchange_s = 0, total_s = 0;  // slowest rank
};

// A staging failure, thrown on every rank with the same message; local() is this rank's own error ("" when the
// failure was elsewhere).
class StageError : public Error {
 public:
  StageError(const std::string& what, std::string local) : Error(what), local_(std::move(local)) {}
  const std::string& local() const { return local_; }

 private:
  std::string local_;
};

#if defined(CLIMSEG_HAVE_MPI)
// Collective over `comm` (MPI must be initialised). Every rank returns the same report, or every rank throws
// StageError.
StageReport stage_dataset(MPI_Comm comm, const StageOptions& opt);
#endif

}  // namespace climseg::io
