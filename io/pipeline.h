// The input pipeline (engine.md section 9, reference-systems.md 4.2): a Dataset (the sample files), the order this
// rank reads them in (shuffled per epoch from a seed, sharded across ranks) and a Loader that yields normalised
// batches on the target device while the next ones are read.
//
//   reader threads (LoaderOptions::threads)            io::read_sample_to, validated, one sample each
//     -> slot k of a ring of `buffers` batch slots      host buffers: page-locked for a CUDA loader
//     -> CPU loader: min-max normalised into the slot   (kernels/cpu/normalize.h); the batch is used in place
//   A reader that knows its sample's place when it starts (no file has failed so far, and the slot is free) reads
//   straight into it, normalising each ~1 MiB block while it is in cache: one pass over the data. Otherwise it reads
//   into its own buffer and copies (normalises) into the slot once its place is decided: one pass more.
//        CUDA loader: raw fp32 into the pinned slot, then on the loader's copy stream: host-to-device copy,
//        normalisation kernel (kernels/cuda/normalize.h, fp32 in, compute dtype out), an event
//     -> Loader::next(ctx)                               the compute stream waits on that event (device side)
//
// Determinism: which files form which batch, in which order, depends only on (dataset, seed, epoch, rank, nranks,
// batch, the bad files) and never on thread timing: readers read in parallel but commit their samples in sequence
// order, and only then learn their place in a batch. A Cursor (epoch, position) names the point between two batches;
// a Loader started from a batch's `next` cursor yields exactly the batches an uninterrupted run would have yielded
// after it. docs/data.md "Input pipeline" describes the design and its measurements.
//
// Thread safety: a Loader is used from one thread (next(), cursor(), stats()); its reader threads are internal.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/tensor.h"
#include "io/hdf5_sample.h"

namespace climseg::io {

// ---- the files -------------------------------------------------------------------------------------------------

struct Dataset {
  std::vector<std::string> files;  // every rank must list the same files in the same order
  std::vector<int64_t> bytes;      // file sizes (for throughput figures)

  // Every regular *.h5 file directly in `dir` except stats.h5, sorted by name. Throws when `dir` is not a directory
  // or holds no sample file.
  static Dataset from_directory(const std::string& dir);
  // These files in this order (sizes read now; a missing file is an error naming it).
  static Dataset from_files(std::vector<std::string> files);
  int64_t size() const { return static_cast<int64_t>(files.size()); }
};

// ---- order and shards (pure functions, the same on every rank and platform) ----------------------------------

// A permutation of 0..n-1 from (seed, epoch): Fisher-Yates driven by Philox (engine/philox.h) words of stream
// (seed, epoch), so it is the same on every platform and rank (std::shuffle's algorithm is left to the library).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

enum class ShardMode : uint8_t {
  // Rank r takes positions p = r, r + nranks, ... of the epoch's list, below floor(n / nranks) * nranks: every
  // rank gets the same count (the same number of steps per epoch, which data-parallel training needs) and the last
  // n % nranks files of the list are left out of this epoch. With shuffling they are different files each epoch,
  // so no file is left out for good. A partial last batch is dropped.
  train,
  // Rank r takes positions p = r, r + nranks, ... of the whole list: nothing is dropped, ranks below n % nranks get
  // one file more, and a partial last batch is kept (evaluation must see every sample exactly once).
  eval,
};

struct ShardSpec {
  int rank = 0, nranks = 1;
  ShardMode mode = ShardMode::train;
  bool shuffle = true;  // false: the dataset's order every epoch (evaluation)
  uint64_t seed = 0;
};

// Files of `spec.rank` per epoch (the same every epoch).
int64_t shard_size(int64_t n, const ShardSpec& spec);
// The dataset indices rank `spec.rank` reads in `epoch`, in reading order.
std::vector<int64_t> shard_indices(int64_t n, const ShardSpec& spec, int64_t epoch);

// A point between two batches of one rank: `position` files of the epoch's shard list have been consumed (read into
// earlier batches, skipped as bad, or dropped with a partial batch). The cursor after an epoch's last batch is
// (epoch + 1, 0).
struct Cursor {
  int64_t epoch = 0;
  int64_t position = 0;
  bool operator==(const Cursor&) const = default;
  std::string str() const;  // "epoch 3, position 40"
};

// ---- HDF5 and threads ------------------------------------------------------------------------------------------

// True when the linked HDF5 library was built thread-safe (H5_HAVE_THREADSAFE): it then serialises every API call
// with its own global lock and keeps error stacks per thread, so concurrent read_sample calls are safe.
bool hdf5_thread_safe();
// The process-wide lock the loader's readers hold around each io::read_sample when reads are serialised
// (LoaderOptions::serialize_reads; always with a library that is not thread-safe). With such a library, other code
// calling HDF5 while a Loader runs must hold it too.
std::mutex& hdf5_mutex();

// ---- the loader --------------------------------------------------------------------------------------------------

struct LoaderOptions {
  ShardSpec shard;
  int64_t batch = 1;  // samples per batch (per rank)
  int threads = 2;    // reader threads
  int buffers = 2;    // batch slots: 2 double buffering, 3 triple (more: more read-ahead, more memory)
  Device device = Device::cpu;
  int device_index = 0;
  DType dtype = DType::f32;     // of Batch::data: cpu fp32/fp64/fp16/bf16, cuda fp32/fp16/bf16
  std::string stats;            // stats.h5 for min-max normalisation (io::read_stats); empty: data used as read
  ReadOptions read;             // channels, crop or stride, label variant (labels are always required)
  Cursor start;                 // where to begin: {0, 0}, or a saved Batch::next to resume
  int64_t epochs = 0;           // epochs to deliver, start.epoch included (a resumed one counts); 0: no end
  bool skip_bad_files = false;  // false: the first file that fails validation stops the loader with its message
  int64_t max_bad_files = 10;   // skip_bad_files: more distinct bad files than this stops the loader
  // Called once per bad file (skip_bad_files), from a reader thread, not under the loader's lock; the default
  // prints one line to stderr.
  std::function<void(const std::string& path, const std::string& error)> on_bad_file;
  bool serialize_reads = false;  // hold hdf5_mutex() around each read_sample (forced when !hdf5_thread_safe())
};

struct Batch {
  Tensor data;    // (b,H,W,C) LoaderOptions::dtype on the loader's device, normalised; b = batch (less only for
                  // an evaluation epoch's last batch)
  Tensor labels;  // (b,H,W,1) int32 class indices 0..2, same device
  std::vector<int64_t> indices;  // dataset indices of the b samples, in batch order
  int64_t epoch = 0;
  int64_t number = 0;  // of this batch within this Loader's run (0, 1, ...; restarts at 0 after a resume)
  Cursor begin;        // where this batch starts
  Cursor next;         // where the following batch starts: pass it as LoaderOptions::start to resume
};

struct BadFile {
  std::string path;
  std::string error;
};

struct LoaderStats {
  int64_t samples = 0;      // samples read and placed in a batch (dropped partial batches included)
  int64_t file_bytes = 0;   // sizes of those samples' files
  int64_t batches = 0;      // returned by next()
  int64_t direct = 0;       // of `samples`: read straight into their batch slot (read, checked and normalised in one
                            // pass); the others went through a reader's own buffer and were copied (normalised) after
  int64_t reread = 0;       // of `direct`: read a second time (two passes), because a bad file before them moved
                            // their place
  double read_seconds = 0;  // summed over readers: time reading files (re-reads and lock waits included)
  double wait_seconds = 0;  // next() waiting for its batch
};

class Loader {
 public:
  // Checks the options, reads stats.h5 and the first sample's metadata (the batch shape), allocates the slots and
  // starts the readers. A CUDA loader makes its own copy stream on device_index.
  Loader(Dataset dataset, LoaderOptions options);
  ~Loader();  // stops and joins the readers (a batch still in use must be finished: synchronise its stream first)
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch; nothing after the last epoch. Rethrows a reader's error (a bad file without skip_bad_files,
  // too many bad files) at the batch that file would have been part of; every later call throws it again.
  // ctx: a context on the loader's device. CUDA: ctx's stream waits (on the device) for the batch's copy; no host
  // synchronisation. The batch's memory stays valid until the next call; that call hands it back after the work
  // queued on ctx's stream so far (an event), so the loader never overwrites memory the stream still reads.
  std::optional<Batch> next(ExecContext& ctx);

  Cursor cursor() const;                   // where the next batch starts (the last batch's `next`)
  Shape batch_shape() const;               // (batch,H,W,C) of Batch::data
  int64_t shard_size() const;              // files of this rank per epoch
  std::vector<BadFile> bad_files() const;  // distinct bad files seen so far, in the order met
  LoaderStats stats() const;
  const Dataset& dataset() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace climseg::io
