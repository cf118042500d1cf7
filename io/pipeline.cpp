#include "io/pipeline.h"

#include <hdf5.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <thread>
#include <type_traits>
#include <utility>

#include "engine/check.h"
#include "engine/dispatch.h"
#include "engine/event.h"
#include "engine/philox.h"
#include "engine/pinned_memory.h"
#include "kernels/cpu/normalize.h"
#include "kernels/cuda/normalize.h"

namespace climseg::io {

namespace fs = std::filesystem;

// ---- the files -------------------------------------------------------------------------------------------------

Dataset Dataset::from_directory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) CS_THROW(dir, ": not a directory (expected a folder of HDF5 sample files)");
  std::vector<std::string> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const fs::path& p = e.path();
    if (p.extension() != ".h5" || p.filename() == "stats.h5") continue;
    if (!e.is_regular_file(ec)) continue;  // follows symlinks: DeepCAM's splits are folders of symlinks
    files.push_back(p.string());
  }
  if (ec) CS_THROW(dir, ": cannot list the folder: ", ec.message());
  if (files.empty()) CS_THROW(dir, ": no sample files (*.h5 other than stats.h5)");
  std::sort(files.begin(), files.end());
  return from_files(std::move(files));
}

Dataset Dataset::from_files(std::vector<std::string> files) {
  Dataset d;
  d.bytes.reserve(files.size());
  for (const std::string& f : files) {
    std::error_code ec;
    const uintmax_t n = fs::file_size(f, ec);
    if (ec) CS_THROW(f, ": ", ec.message());
    d.bytes.push_back(static_cast<int64_t>(n));
  }
  d.files = std::move(files);
  return d;
}

// ---- order and shards --------------------------------------------------------------------------------------------

namespace {
// Keeps the shuffle's Philox stream apart from other users of the same seed (dropout masks use (seed, step)).
constexpr uint64_t kShuffleKey = 0x9e3779b97f4a7c15ull;
}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  CS_CHECK(n >= 0, "epoch_permutation: n = ", n);
  CS_CHECK(epoch >= 0, "epoch_permutation: epoch = ", epoch, " (must be >= 0)");
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  const uint64_t key = seed ^ kShuffleKey, stream = static_cast<uint64_t>(epoch);
  uint64_t word = 0;
  // Fisher-Yates from the back: position i swaps with j uniform in [0, i]. j = floor(r * (i + 1) / 2^64) for a
  // 64-bit Philox draw r: the bias is below (i + 1) / 2^64, nothing for any real dataset.
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t lo = philox_u32(key, stream, word++), hi = philox_u32(key, stream, word++);
    const uint64_t r = hi << 32 | lo;
    const auto j = static_cast<int64_t>((static_cast<unsigned __int128>(r) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(v[static_cast<size_t>(i)], v[static_cast<size_t>(j)]);
  }
  return v;
}

namespace {
void check_spec(const ShardSpec& s) {
  CS_CHECK(s.nranks >= 1, "shard: nranks = ", s.nranks, " (must be >= 1)");
  CS_CHECK(s.rank >= 0 && s.rank < s.nranks, "shard: rank ", s.rank, " outside 0..", s.nranks - 1);
}
}  // namespace

int64_t shard_size(int64_t n, const ShardSpec& spec) {
  check_spec(spec);
  CS_CHECK(n >= 0, "shard_size: n = ", n);
  const int64_t q = n / spec.nranks, r = n % spec.nranks;
  return spec.mode == ShardMode::train ? q : q + (spec.rank < r ? 1 : 0);
}

std::vector<int64_t> shard_indices(int64_t n, const ShardSpec& spec, int64_t epoch) {
  const int64_t size = shard_size(n, spec);
  std::vector<int64_t> list;
  if (spec.shuffle) {
    list = epoch_permutation(n, spec.seed, epoch);
  } else {
    list.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) list[static_cast<size_t>(i)] = i;
  }
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(size));
  for (int64_t k = 0; k < size; ++k) mine.push_back(list[static_cast<size_t>(spec.rank + k * spec.nranks)]);
  return mine;
}

std::string Cursor::str() const { return detail::concat("epoch ", epoch, ", position ", position); }

// ---- HDF5 and threads ------------------------------------------------------------------------------------------

bool hdf5_thread_safe() {
  hbool_t ts = 0;
  if (H5is_library_threadsafe(&ts) < 0) return false;
  return ts != 0;
}

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

// ---- the loader --------------------------------------------------------------------------------------------------

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The (H,W) read_sample returns for a file of `info`'s size under `r` (the window logic of io/hdf5_sample.cpp;
// read_sample itself checks the crop against each file).
Shape sample_shape(const SampleInfo& info, const ReadOptions& r) {
  switch (r.reduce) {
    case Reduce::none:
      return Shape{1, info.height, info.width, info.channels};
    case Reduce::crop:
      return Shape{1, r.crop_h, r.crop_w, info.channels};
    case Reduce::stride: {
      const int64_t s = std::max<int64_t>(r.stride, 1);
      return Shape{1, (info.height + s - 1) / s, (info.width + s - 1) / s, info.channels};
    }
  }
  return {};
}

// The shape-mismatch message's subject (io::SampleTarget::holder).
constexpr const char* kHolder =
    "the loader's batches (set by the first readable file: all files must have one size) hold samples of";

// A view of the first n samples of a contiguous (B,...) tensor.
Tensor first_samples(const Tensor& t, int64_t n) {
  Shape s = t.shape();
  s.n = n;
  return Tensor::wrap(t.data(), s, t.dtype(), t.device(), t.buffer());
}

// f(static_cast<T*>(nullptr)) for the host element type of a CPU batch (engine/dispatch.h).
template <class F>
void dispatch_cpu_dtype(DType t, F&& f) {
  dispatch_float_storage<Half, BFloat16, true>(t, std::forward<F>(f), [&] {
    CS_THROW("loader: no CPU batches of dtype ", dtype_name(t), " (fp32, fp64, fp16, bf16)");
  });
}

}  // namespace

struct Loader::Impl {
  Dataset ds;
  LoaderOptions opt;
  Shape sample;   // (1,H,W,C)
  int64_t S = 0;  // shard size
  int64_t K = 0;  // slots
  bool cuda = false;
  bool serialize = false;
  std::vector<float> shift, scale;        // host coefficients (identity without stats)
  Tensor shift_d, scale_d;                // on the device (CUDA loader)
  std::unique_ptr<ExecContext> copy_ctx;  // the copy stream (CUDA loader)
  std::mutex copy_mu;                     // one batch's copy sequence at a time on the copy stream

  struct Slot {
    int64_t owner = 0;   // the batch that may write into this slot now
    Tensor host_data;    // (B,H,W,C): cpu: opt.dtype, the batch itself; cuda: fp32 pinned, the raw fields
    Tensor host_labels;  // (B,H,W,1) int32 (pinned for cuda)
    Tensor dev_raw, dev_data, dev_labels;  // cuda: fp32 raw, opt.dtype normalised (== dev_raw for fp32), int32
    Event copied;                          // cuda: the host-to-device copy and normalisation of the slot's latest batch
    Event released;                        // cuda: the compute work that read the slot's previous batch
  };
  std::vector<Slot> slots;

  struct BatchState {
    int64_t epoch = 0;
    Cursor begin, end;
    int64_t count = 0, written = 0;
    std::vector<int64_t> indices;
    bool closed = false, dropped = false, finishing = false, ready = false;
    std::exception_ptr error;
  };

  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<int64_t, BatchState> batches;
  int64_t next_seq = 0, committed = 0, limit_seq = 0;
  int64_t assembling = -1, next_batch_id = 0, just_closed = -1;
  int64_t consume = 0, held = -1;
  Cursor last_end;               // where the next batch to be formed starts
  Cursor delivered_end;          // cursor(): the last delivered batch's next
  int64_t epoch_batches = 0;     // batches kept (not dropped) in the epoch being formed
  bool epoch_from_start = true;  // the epoch being formed started at position 0 (not resumed mid-way)
  bool halt = false;             // an error was committed: no new reads, work already committed finishes
  bool bad_seen = false;         // a sample failed validation: readers no longer read straight into the slots
  bool stop = false;             // the loader is going away, or a reader failed outright: everyone leaves
  std::exception_ptr fatal;      // a reader's failure outside file validation (CUDA, memory)
  std::set<int64_t> known_bad;
  std::vector<BadFile> bad_list;
  LoaderStats st;
  std::map<int64_t, std::vector<int64_t>> orders;  // epoch -> shard list (the last two epochs)
  std::vector<std::thread> readers;

  // ---- set-up ----
  Impl(Dataset d, LoaderOptions o) : ds(std::move(d)), opt(std::move(o)) {}
  void setup();

  // ---- readers ----
  void reader_main();
  const std::vector<int64_t>& order_of(int64_t epoch);  // under mu
  struct Outcome {
    bool ok = false, bad = false;
    Sample sample;
    std::string error;
  };
  Outcome read_to(int64_t file, const SampleTarget& t, Sample& scratch);
  Outcome read_one(int64_t file, Sample& own, Sample& scratch);
  struct Assignment {
    int64_t batch = -1, pos = 0;
    bool operator==(const Assignment&) const = default;
  };
  Assignment predict(int64_t s) const;  // under mu
  SampleTarget target_of(const Assignment& a);
  Outcome read_into_slot(int64_t file, const Assignment& a, Sample& scratch);
  bool wait_for_slot(const Assignment& a);  // false: the loader is stopping
  void mark_written(const Assignment& a);
  Assignment commit(std::unique_lock<std::mutex>& lk, int64_t s, int64_t e, int64_t p, int64_t file, Outcome& out,
                    std::vector<BadFile>& report);
  void close_batch(int64_t id, const Cursor& end);
  void error_batch(std::exception_ptr e);
  void write(const Assignment& a, const Sample& smp);
  void maybe_finish(std::unique_lock<std::mutex>& lk, int64_t id);
  void issue_copy(int64_t id, int64_t n);

  Cursor normalised(int64_t epoch, int64_t position) const {
    return position >= S ? Cursor{epoch + 1, 0} : Cursor{epoch, position};
  }
};

void Loader::Impl::setup() {
  CS_CHECK(ds.size() > 0, "loader: the dataset has no files");
  CS_CHECK(opt.batch >= 1, "loader: batch = ", opt.batch, " (must be >= 1)");
  CS_CHECK(opt.threads >= 1, "loader: threads = ", opt.threads, " (must be >= 1)");
  CS_CHECK(opt.buffers >= 1, "loader: buffers = ", opt.buffers, " (must be >= 1; 2 double-buffers)");
  CS_CHECK(opt.epochs >= 0, "loader: epochs = ", opt.epochs, " (0: no end)");
  CS_CHECK(opt.max_bad_files >= 0, "loader: max_bad_files = ", opt.max_bad_files);
  opt.read.labels_required = true;
  S = io::shard_size(ds.size(), opt.shard);
  const bool train = opt.shard.mode == ShardMode::train;
  CS_CHECK(!train || S >= 1, "loader: ", ds.size(), " files cannot be split over ", opt.shard.nranks,
           " ranks in training mode (each rank needs at least one file)");
  CS_CHECK(!train || S >= opt.batch, "loader: rank ", opt.shard.rank, " gets ", S, " files per epoch (", ds.size(),
           " files over ", opt.shard.nranks, " ranks), fewer than one batch of ", opt.batch,
           " (training drops partial batches, so no batch would ever come)");
  CS_CHECK(opt.start.epoch >= 0 && opt.start.position >= 0 && opt.start.position <= S, "loader: start cursor (",
           opt.start.str(), ") outside this rank's shard of ", S, " files per epoch");
  if (S > 0 && opt.start.position == S) opt.start = Cursor{opt.start.epoch + 1, 0};
  last_end = delivered_end = opt.start;
  epoch_from_start = opt.start.position == 0;
  K = opt.buffers;
  cuda = opt.device == Device::cuda;
  serialize = opt.serialize_reads || !hdf5_thread_safe();
  if (cuda) {
    CS_CHECK(have_cuda(), "loader: device cuda requested, but no CUDA device is visible",
             " (or this climseg was built without CUDA)");
    CS_CHECK(opt.dtype == DType::f32 || opt.dtype == DType::f16 || opt.dtype == DType::bf16,
             "loader: CUDA batches are fp32, fp16 or bf16, not ", dtype_name(opt.dtype));
  } else {
    dispatch_cpu_dtype(opt.dtype, [](auto) {});
  }

  // The batch shape: from the first file whose metadata reads (the others must match; checked per sample).
  std::string first_error;
  for (int64_t i = 0; i < ds.size(); ++i) {
    try {
      sample = sample_shape(inspect_sample(ds.files[static_cast<size_t>(i)], opt.read.channels), opt.read);
      break;
    } catch (const Error& e) {
      if (!opt.skip_bad_files) throw;
      if (first_error.empty()) first_error = e.what();
    }
  }
  CS_CHECK(sample.numel() > 0, "loader: no file of the dataset could be read; the first error: ", first_error);

  const int64_t C = sample.c;
  shift.assign(static_cast<size_t>(C), 0.0f);
  scale.assign(static_cast<size_t>(C), 1.0f);
  if (!opt.stats.empty()) {
    const Stats stats = read_stats(opt.stats, C);
    cpu::minmax_coefficients(C, stats.minval.data(), stats.maxval.data(), shift.data(), scale.data());
  }

  const Shape bd{opt.batch, sample.h, sample.w, C}, bl{opt.batch, sample.h, sample.w, 1};
  slots.resize(static_cast<size_t>(K));
  if (cuda) {
    copy_ctx = std::make_unique<ExecContext>(Device::cuda, opt.device_index);
    copy_ctx->activate();
    Tensor hs = Tensor::wrap(shift.data(), Shape{1, 1, 1, C}, DType::f32, Device::cpu);
    Tensor hc = Tensor::wrap(scale.data(), Shape{1, 1, 1, C}, DType::f32, Device::cpu);
    shift_d = hs.to(Device::cuda);  // synchronous (no context): done before any kernel reads them
    scale_d = hc.to(Device::cuda);
  }
  for (int64_t k = 0; k < K; ++k) {
    Slot& sl = slots[static_cast<size_t>(k)];
    sl.owner = k;
    if (cuda) {
      sl.host_data = pinned_empty(bd, DType::f32);
      sl.host_labels = pinned_empty(bl, DType::i32);
      sl.dev_raw = Tensor::empty(bd, DType::f32, Device::cuda);
      sl.dev_data = opt.dtype == DType::f32 ? sl.dev_raw : Tensor::empty(bd, opt.dtype, Device::cuda);
      sl.dev_labels = Tensor::empty(bl, DType::i32, Device::cuda);
      sl.copied = Event(Device::cuda, opt.device_index);
      sl.released = Event(Device::cuda, opt.device_index);
    } else {
      sl.host_data = Tensor::empty(bd, opt.dtype, Device::cpu);
      sl.host_labels = Tensor::empty(bl, DType::i32, Device::cpu);
    }
  }

  constexpr int64_t kNoEnd = std::numeric_limits<int64_t>::max();
  limit_seq = S == 0 ? 0 : opt.epochs == 0 ? kNoEnd : opt.epochs * S - opt.start.position;
  if (limit_seq == 0) return;  // nothing to read (an evaluation rank without files, or epochs already done)
  for (int t = 0; t < opt.threads; ++t) readers.emplace_back([this] { reader_main(); });
}

const std::vector<int64_t>& Loader::Impl::order_of(int64_t epoch) {
  auto it = orders.find(epoch);
  if (it != orders.end()) return it->second;
  while (orders.size() >= 2) orders.erase(orders.begin());
  return orders.emplace(epoch, shard_indices(ds.size(), opt.shard, epoch)).first->second;
}

// Reads `file` into t (a place in a batch slot, or the reader's own buffers) with read_sample_to, which also checks
// the file's size against the batches'; `scratch` holds what a file off the one-pass path is read into first.
Loader::Impl::Outcome Loader::Impl::read_to(int64_t file, const SampleTarget& t, Sample& scratch) {
  Outcome out;
  const std::string& path = ds.files[static_cast<size_t>(file)];
  try {
    if (serialize) {
      std::lock_guard<std::mutex> g(hdf5_mutex());
      read_sample_to(path, opt.read, t, scratch);
    } else {
      read_sample_to(path, opt.read, t, scratch);
    }
    out.ok = true;
  } catch (const Error& e) {  // validation: a bad file (anything else is a failure of the loader itself)
    out.bad = true;
    out.error = e.what();
  }
  return out;
}

// Into the reader's own buffers (raw fp32, `own`, reused from file to file); write() normalises them into the slot
// once the commit has decided the place, and has consumed them before the same reader reads again.
Loader::Impl::Outcome Loader::Impl::read_one(int64_t file, Sample& own, Sample& scratch) {
  if (!own.data.defined()) {
    own.data = Tensor::empty(sample, DType::f32);
    own.labels = Tensor::empty(Shape{1, sample.h, sample.w, 1}, DType::i32);
  }
  SampleTarget t;
  t.data = own.data;
  t.labels = own.labels;
  t.holder = kHolder;
  Outcome out = read_to(file, t, scratch);
  if (out.ok) out.sample = own;
  return out;
}

// Where sample s goes if it and every sample committed before it read fine: commit()'s rules for good samples, replayed
// from the committed state. Exact while no sample fails (then every reader's prediction comes from the same replay, so
// two in-flight reads never predict one place); after a failure the readers stop predicting (bad_seen).
Loader::Impl::Assignment Loader::Impl::predict(int64_t s) const {
  int64_t id = assembling, count = assembling >= 0 ? batches.at(assembling).count : 0, next_id = next_batch_id;
  for (int64_t q = committed;; ++q) {
    const int64_t p = (opt.start.position + q) % S;
    if (id < 0) {
      id = next_id++;
      count = 0;
    }
    const Assignment a{id, count++};
    if (q == s) return a;
    if (count == opt.batch || p == S - 1) id = -1;
  }
}

// Sample a.pos of slot a.batch % K, as read_sample_to's target: the batch itself (CPU loader: normalised in the
// batch's dtype) or the pinned raw fp32 slot (CUDA loader: normalised on the device after the copy).
SampleTarget Loader::Impl::target_of(const Assignment& a) {
  Slot& sl = slots[static_cast<size_t>(a.batch % K)];
  const int64_t HWC = sample.numel(), HW = sample.pixels();
  SampleTarget t;
  const DType dt = sl.host_data.dtype();
  t.data = Tensor::wrap(static_cast<char*>(sl.host_data.data()) + a.pos * HWC * static_cast<int64_t>(dtype_size(dt)),
                        sample, dt, Device::cpu);
  t.labels = Tensor::wrap(static_cast<int32_t*>(sl.host_labels.data()) + a.pos * HW, Shape{1, sample.h, sample.w, 1},
                          DType::i32, Device::cpu);
  if (!cuda && !opt.stats.empty()) {
    t.shift = shift.data();
    t.scale = scale.data();
  }
  t.holder = kHolder;
  return t;
}

// Straight into its place in a batch slot (one pass: read, check, normalise), the slot being a.batch's.
Loader::Impl::Outcome Loader::Impl::read_into_slot(int64_t file, const Assignment& a, Sample& scratch) {
  if (cuda) slots[static_cast<size_t>(a.batch % K)].copied.synchronize();  // the last copy has read the host slot
  return read_to(file, target_of(a), scratch);
}

bool Loader::Impl::wait_for_slot(const Assignment& a) {
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return stop || slots[static_cast<size_t>(a.batch % K)].owner == a.batch; });
  return !stop;
}

void Loader::Impl::mark_written(const Assignment& a) {
  std::unique_lock<std::mutex> lk(mu);
  auto it = batches.find(a.batch);
  if (it == batches.end()) return;
  it->second.written++;
  maybe_finish(lk, a.batch);
}

void Loader::Impl::reader_main() {
  // The readers are the parallelism: the kernels they call (normalisation, 2018 transposes) run on one thread each.
  omp_set_num_threads(1);
  try {
    if (cuda) copy_ctx->activate();
    Sample own, scratch;  // this reader's buffers, reused for every file it reads
    while (true) {
      int64_t s = 0, e = 0, p = 0, file = 0;
      bool skip_read = false;
      Assignment direct;  // batch >= 0: read straight into this place of its slot
      {
        std::lock_guard<std::mutex> g(mu);
        if (stop || halt || next_seq >= limit_seq) break;
        s = next_seq++;
        const int64_t t = opt.start.position + s;
        e = opt.start.epoch + t / S;
        p = t % S;
        file = order_of(e)[static_cast<size_t>(p)];
        skip_read = known_bad.count(file) > 0;  // bad in an earlier epoch: reported once, not read again
        // Straight into the batch slot when the place is known and the slot is free now; otherwise into this
        // reader's buffer, copied (normalised) into the slot after the commit (one more pass over the sample).
        if (!skip_read && !halt && !bad_seen) {
          const Assignment a = predict(s);
          if (slots[static_cast<size_t>(a.batch % K)].owner == a.batch) direct = a;
        }
      }
      Outcome out;
      if (skip_read) {
        out.bad = true;
      } else {
        const double t0 = now_s();
        out = direct.batch >= 0 ? read_into_slot(file, direct, scratch) : read_one(file, own, scratch);
        const double dt = now_s() - t0;
        std::lock_guard<std::mutex> g(mu);
        st.read_seconds += dt;
      }
      std::vector<BadFile> report;
      Assignment a;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return stop || committed == s; });
        if (stop) break;
        a = commit(lk, s, e, p, file, out, report);
      }
      for (const BadFile& b : report) {
        if (opt.on_bad_file)
          opt.on_bad_file(b.path, b.error);
        else
          std::fprintf(stderr, "climseg: skipping bad file %s: %s\n", b.path.c_str(), b.error.c_str());
      }
      if (a.batch < 0) continue;
      if (direct.batch < 0) {
        write(a, out.sample);
        continue;
      }
      if (!(a == direct)) {
        // A sample in flight before this one failed, so this one's place moved: read it again into the right place.
        // The place it was read into belongs to a later sample (which writes it after this commit) or to none.
        // If this second read fails (the file changed or the disk failed in between), the loader stops: the place
        // is already counted in its batch, so the file cannot be skipped any more.
        if (!wait_for_slot(a)) break;
        const double t0 = now_s();
        const Outcome again = read_into_slot(file, a, scratch);
        const double dt = now_s() - t0;
        {
          std::lock_guard<std::mutex> g(mu);
          st.read_seconds += dt;
        }
        if (!again.ok) CS_THROW(again.error, " (the file read without error moments before)");
      }
      {
        std::lock_guard<std::mutex> g(mu);
        st.direct++;
        if (!(a == direct)) st.reread++;
      }
      mark_written(a);
    }
  } catch (...) {
    std::lock_guard<std::mutex> g(mu);
    if (!fatal) fatal = std::current_exception();
    stop = true;
    cv.notify_all();
  }
}

// In sequence order, under mu: decides where sample s goes. Every path ends with committed = s + 1.
Loader::Impl::Assignment Loader::Impl::commit(std::unique_lock<std::mutex>& lk, int64_t s, int64_t e, int64_t p,
                                              int64_t file, Outcome& out, std::vector<BadFile>& report) {
  Assignment a;
  if (!out.ok) bad_seen = true;
  if (!halt) {
    if (out.ok) {
      if (assembling < 0) {
        assembling = next_batch_id++;
        BatchState& b = batches[assembling];
        b.epoch = e;
        b.begin = last_end.epoch == e ? last_end : Cursor{e, 0};
      }
      BatchState& b = batches[assembling];
      a = {assembling, b.count};
      b.count++;
      b.indices.push_back(file);
      st.samples++;
      st.file_bytes += ds.bytes[static_cast<size_t>(file)];
      if (b.count == opt.batch) {
        epoch_batches++;
        close_batch(assembling, normalised(e, p + 1));
      }
    } else if (!opt.skip_bad_files) {
      error_batch(std::make_exception_ptr(Error(out.error)));
    } else if (!out.error.empty() && known_bad.insert(file).second) {  // first time this file fails
      const std::string& path = ds.files[static_cast<size_t>(file)];
      bad_list.push_back({path, out.error});
      report.push_back(bad_list.back());
      if (static_cast<int64_t>(bad_list.size()) > opt.max_bad_files)
        error_batch(std::make_exception_ptr(
            Error(detail::concat(bad_list.size(), " bad files, more than max_bad_files = ", opt.max_bad_files,
                                 "; the latest: ", out.error))));
    }
    if (!halt && p == S - 1) {  // the epoch's last file: close a partial batch, check the epoch gave a batch
      if (assembling >= 0) {
        const int64_t id = assembling;
        BatchState& b = batches[id];
        b.dropped = opt.shard.mode == ShardMode::train;
        if (!b.dropped) epoch_batches++;
        close_batch(id, Cursor{e + 1, 0});
      }
      last_end = Cursor{e + 1, 0};
      if (epoch_from_start && epoch_batches == 0)
        error_batch(std::make_exception_ptr(
            Error(detail::concat("loader: epoch ", e, " of rank ", opt.shard.rank, " gave no batch: ", S, " files, ",
                                 bad_list.size(), " bad so far, batch ", opt.batch))));
      epoch_batches = 0;
      epoch_from_start = true;
    }
  }
  committed = s + 1;
  cv.notify_all();
  // A batch closed here with all its samples already written (closed by a bad file at the epoch's end) finishes
  // now; one closed by its last sample (not yet written) finishes in mark_written(). At most one batch closes per
  // commit.
  if (just_closed >= 0) {
    const int64_t id = std::exchange(just_closed, -1);
    maybe_finish(lk, id);
  }
  return a;
}

void Loader::Impl::close_batch(int64_t id, const Cursor& end) {
  BatchState& b = batches[id];
  b.closed = true;
  b.end = end;
  last_end = end;
  just_closed = id;
  if (assembling == id) assembling = -1;
}

void Loader::Impl::error_batch(std::exception_ptr e) {
  int64_t id = assembling;
  if (id < 0) {
    id = next_batch_id++;
    batches[id].begin = last_end;
  }
  BatchState& b = batches[id];
  b.error = std::move(e);
  b.closed = true;
  assembling = -1;
  halt = true;
  cv.notify_all();
}

void Loader::Impl::write(const Assignment& a, const Sample& smp) {
  Slot& sl = slots[static_cast<size_t>(a.batch % K)];
  if (!wait_for_slot(a)) return;
  const int64_t HWC = sample.numel(), HW = sample.pixels(), C = sample.c;
  if (cuda) {
    sl.copied.synchronize();  // the copy of this slot's previous batch has read its host memory
    std::memcpy(static_cast<float*>(sl.host_data.data()) + a.pos * HWC, smp.data.data(),
                static_cast<size_t>(HWC) * sizeof(float));
  } else {
    const float* x = smp.data.data_as<float>();
    dispatch_cpu_dtype(opt.dtype, [&](auto tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      T* y = static_cast<T*>(sl.host_data.data()) + a.pos * HWC;
      if constexpr (std::is_same_v<T, float>) {
        if (opt.stats.empty()) {
          std::memcpy(y, x, static_cast<size_t>(HWC) * sizeof(float));
          return;
        }
      }
      cpu::minmax_normalize<T>(HW, C, x, C, y, C, shift.data(), scale.data());
    });
  }
  std::memcpy(static_cast<int32_t*>(sl.host_labels.data()) + a.pos * HW, smp.labels.data(),
              static_cast<size_t>(HW) * sizeof(int32_t));
  mark_written(a);
}

// Under mu (lk). A closed batch whose samples are all written becomes ready: CPU at once, CUDA after its copy has
// been queued on the copy stream (outside the lock).
void Loader::Impl::maybe_finish(std::unique_lock<std::mutex>& lk, int64_t id) {
  BatchState& b = batches[id];
  if (!b.closed || b.finishing || b.written != b.count || b.error) return;
  b.finishing = true;
  if (cuda && !b.dropped && b.count > 0) {
    const int64_t n = b.count;
    lk.unlock();
    issue_copy(id, n);
    lk.lock();
  }
  batches[id].ready = true;
  cv.notify_all();
}

void Loader::Impl::issue_copy(int64_t id, int64_t n) {
  Slot& sl = slots[static_cast<size_t>(id % K)];
  std::lock_guard<std::mutex> g(copy_mu);
  ExecContext& cc = *copy_ctx;
  sl.released.wait(cc);  // the compute work that read this slot's previous batch is done
  Tensor raw = first_samples(sl.dev_raw, n);
  raw.copy_from(first_samples(sl.host_data, n), &cc);
  first_samples(sl.dev_labels, n).copy_from(first_samples(sl.host_labels, n), &cc);
  // Without stats the kernel runs with identity coefficients (x * 1 - 0 is exact) when a cast is needed.
  if (!opt.stats.empty() || opt.dtype != DType::f32)
    cuda::minmax_normalize(cc, raw, shift_d, scale_d, first_samples(sl.dev_data, n));
  sl.copied.record(cc);
}

// ---- Loader ------------------------------------------------------------------------------------------------------

Loader::Loader(Dataset dataset, LoaderOptions options)
    : impl_(std::make_unique<Impl>(std::move(dataset), std::move(options))) {
  impl_->setup();
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->stop = true;
    impl_->cv.notify_all();
  }
  for (std::thread& t : impl_->readers) t.join();
  if (impl_->copy_ctx) {
    try {
      impl_->copy_ctx->synchronize();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "climseg: loader: %s\n", e.what());
    }
  }
}

std::optional<Batch> Loader::next(ExecContext& ctx) {
  Impl& m = *impl_;
  CS_CHECK(ctx.device() == m.opt.device && (!m.cuda || ctx.device_index() == m.opt.device_index),
           "Loader::next: the loader's batches are on ", device_name(m.opt.device),
           m.cuda ? detail::concat(" device ", m.opt.device_index) : std::string(), ", the context is a ",
           device_name(ctx.device()), " one",
           ctx.device() == Device::cuda ? detail::concat(" on device ", ctx.device_index()) : std::string());
  std::unique_lock<std::mutex> lk(m.mu);
  if (m.fatal) std::rethrow_exception(m.fatal);
  if (m.held >= 0) {  // hand the previous batch's slot back, after the work already queued on ctx
    Impl::Slot& sl = m.slots[static_cast<size_t>(m.held % m.K)];
    if (m.cuda) sl.released.record(ctx);
    sl.owner = m.held + m.K;
    m.held = -1;
    m.cv.notify_all();
  }
  const double t0 = now_s();
  while (true) {
    m.cv.wait(lk, [&] {
      if (m.fatal) return true;
      auto it = m.batches.find(m.consume);
      if (it != m.batches.end()) return it->second.ready || static_cast<bool>(it->second.error);
      return m.committed >= m.limit_seq;  // nothing more will be formed
    });
    if (m.fatal) std::rethrow_exception(m.fatal);
    auto it = m.batches.find(m.consume);
    if (it == m.batches.end()) {
      m.st.wait_seconds += now_s() - t0;
      return std::nullopt;
    }
    Impl::BatchState& b = it->second;
    if (b.error) std::rethrow_exception(b.error);  // kept: every later call lands here again
    Impl::Slot& sl = m.slots[static_cast<size_t>(m.consume % m.K)];
    if (b.dropped) {
      sl.owner = m.consume + m.K;
      m.batches.erase(it);
      m.consume++;
      m.cv.notify_all();
      continue;
    }
    Batch out;
    out.epoch = b.epoch;
    out.begin = b.begin;
    out.next = b.end;
    out.indices = std::move(b.indices);
    out.number = m.st.batches++;
    const int64_t n = b.count;
    if (m.cuda) {
      out.data = first_samples(sl.dev_data, n);
      out.labels = first_samples(sl.dev_labels, n);
    } else {
      out.data = first_samples(sl.host_data, n);
      out.labels = first_samples(sl.host_labels, n);
    }
    m.delivered_end = b.end;
    m.held = m.consume;
    m.batches.erase(it);
    m.consume++;
    m.st.wait_seconds += now_s() - t0;
    lk.unlock();
    if (m.cuda) sl.copied.wait(ctx);  // device side: ctx's later work runs after the copy and normalisation
    return out;
  }
}

Cursor Loader::cursor() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->delivered_end;
}

Shape Loader::batch_shape() const { return Shape{impl_->opt.batch, impl_->sample.h, impl_->sample.w, impl_->sample.c}; }

int64_t Loader::shard_size() const { return impl_->S; }

std::vector<BadFile> Loader::bad_files() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->bad_list;
}

LoaderStats Loader::stats() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->st;
}

const Dataset& Loader::dataset() const { return impl_->ds; }

}  // namespace climseg::io
