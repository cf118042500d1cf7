// `climseg data bench DIR`: the input pipeline's read throughput (io/pipeline.h) next to the raw read speed of the
// same files (plain read() of their bytes), for each reader-thread count. The acceptance goal is a pipeline at
// >= 80% of raw (docs/perf/2026-11-22-pipeline.md).
//
// Page cache: every file is read once before anything is timed, so all passes read from memory (warm cache).
// Caches are never dropped (that needs root and a writable /proc/sys/vm/drop_caches, which CI machines and
// containers do not give): the figures are the cost of HDF5, validation, normalisation and copies on top of
// memory-speed reads, not disk or file-system speed. The run says so and warns when the files do not fit in the
// available memory (then "warm" is not true).
//
// --generate N writes N random DeepCAM-layout files first (float32 (H,W,16) data uniform in per-channel ranges,
// uint8 labels, contiguous and uncompressed as DeepCAM's files, plus stats.h5), for machines without a dataset
// and until `climseg data generate` (physically plausible fields) is there. The contents do not matter for speed.
#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "apps/data.h"
#include "engine/atomic_file.h"
#include "engine/check.h"
#include "engine/context.h"
#include "engine/philox.h"
#include "engine/pinned_memory.h"
#include "io/dataset_stats.h"
#include "io/pipeline.h"

namespace climseg::apps {

namespace {

namespace fs = std::filesystem;

struct BenchOptions {
  std::string dir;
  std::vector<int> threads{1, 2};
  int64_t batch = 2;
  std::string device = "cpu";
  std::string dtype = "fp32";
  int buffers = 2;
  int epochs = 3;
  bool serialize = false;
  bool no_normalize = false;
  std::string stats;
  int64_t generate = 0;
  int64_t height = 768, width = 1152;
  uint64_t seed = 1;
};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  CS_CHECK(!v.empty(), "median of nothing");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- --generate: random files with the HDF5 C API ----------------------------------------------------------------

void h5_ok(herr_t s, const std::string& what) { CS_CHECK(s >= 0, "data bench --generate: ", what, " failed"); }

void write_dataset(hid_t file, const char* name, hid_t ftype, hid_t mtype, const std::vector<hsize_t>& dims,
                   const void* src, const std::string& path) {
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  CS_CHECK(space >= 0, path, ": dataspace for ", name);
  hid_t d = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (d < 0) {
    H5Sclose(space);
    CS_THROW(path, ": creating ", name);
  }
  const herr_t w = H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src);
  H5Dclose(d);
  H5Sclose(space);
  h5_ok(w, path + ": writing " + name);
}

// Per-channel value ranges, roughly those of the real fields (TMQ kg/m2, winds m/s, pressures Pa, ...); only their
// being different per channel matters here.
constexpr double kLo[16] = {0, -40, -40, -30, -30, 0, 5.0e4, 9.0e4, 190, 220, 0, 200, 200, -500, 1.0e4, 0};
constexpr double kHi[16] = {80, 60, 40, 40, 30, 0.03, 1.1e5, 1.1e5, 240, 280, 1e-6, 320, 320, 500, 1.3e4, 80};

void generate_files(const BenchOptions& o) {
  fs::create_directories(o.dir);
  const int64_t H = o.height, W = o.width, C = io::kNumChannels, n = H * W * C;
  std::vector<float> data(static_cast<size_t>(n));
  std::vector<uint8_t> labels(static_cast<size_t>(H * W));
  std::printf("writing %lld random %lldx%lld samples into %s\n", static_cast<long long>(o.generate),
              static_cast<long long>(H), static_cast<long long>(W), o.dir.c_str());
  for (int64_t f = 0; f < o.generate; ++f) {
    const uint64_t sub = static_cast<uint64_t>(f);
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = i % C;
      const double u = philox_uniform(o.seed, sub, static_cast<uint64_t>(i));
      data[static_cast<size_t>(i)] = static_cast<float>(kLo[c] + u * (kHi[c] - kLo[c]));
    }
    for (int64_t i = 0; i < H * W; ++i)
      labels[static_cast<size_t>(i)] = static_cast<uint8_t>(philox_u32(o.seed ^ 0x6c6162656c73ull, sub, i) % 3);
    char name[64];
    std::snprintf(name, sizeof name, "data-bench-%05lld.h5", static_cast<long long>(f));
    const std::string path = (fs::path(o.dir) / name).string();
    AtomicFile out(path);
    {
      hid_t file = H5Fcreate(out.tmp_path().c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
      CS_CHECK(file >= 0, path, ": cannot create ", out.tmp_path());
      hid_t group = H5Gcreate2(file, "climate", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      try {
        CS_CHECK(group >= 0, path, ": creating group climate");
        write_dataset(group, "data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                      {static_cast<hsize_t>(H), static_cast<hsize_t>(W), static_cast<hsize_t>(C)}, data.data(), path);
        write_dataset(group, "labels_0", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                      {static_cast<hsize_t>(H), static_cast<hsize_t>(W)}, labels.data(), path);
      } catch (...) {
        if (group >= 0) H5Gclose(group);
        H5Fclose(file);
        throw;
      }
      H5Gclose(group);
      h5_ok(H5Fclose(file), path + ": closing");
    }
    out.commit();
  }
  io::Stats st;
  st.minval.assign(kLo, kLo + C);
  st.maxval.assign(kHi, kHi + C);
  io::write_stats((fs::path(o.dir) / "stats.h5").string(), st);
}

// ---- raw reads ---------------------------------------------------------------------------------------------------

// All files with `threads` threads, each file read() whole into one reused buffer of the largest file's size (the
// least a reader must do: the bytes end up in memory that could hold the sample). Returns bytes read.
int64_t raw_pass(const io::Dataset& ds, int threads) {
  const int64_t largest = *std::max_element(ds.bytes.begin(), ds.bytes.end());
  std::atomic<size_t> next{0};
  std::atomic<int64_t> total{0};
  std::vector<std::string> errors(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::vector<char> buf(static_cast<size_t>(largest) + 1, 1);  // touched: no page faults while timing
      int64_t bytes = 0;
      for (size_t i = next++; i < ds.files.size(); i = next++) {
        const int fd = ::open(ds.files[i].c_str(), O_RDONLY);
        if (fd < 0) {
          errors[static_cast<size_t>(t)] = ds.files[i] + ": " + std::strerror(errno);
          return;
        }
        size_t off = 0;
        ssize_t r;
        while ((r = ::read(fd, buf.data() + off, buf.size() - off)) > 0) off += static_cast<size_t>(r);
        if (r < 0) errors[static_cast<size_t>(t)] = ds.files[i] + ": " + std::strerror(errno);
        bytes += static_cast<int64_t>(off);
        ::close(fd);
      }
      total += bytes;
    });
  for (std::thread& t : pool) t.join();
  for (const std::string& e : errors) CS_CHECK(e.empty(), "data bench: raw read: ", e);
  return total;
}

// io::read_sample of every file with `threads` threads (nothing else; under io::hdf5_mutex() when the loader would
// serialise): the ceiling the pipeline's readers have.
int64_t read_sample_pass(const io::Dataset& ds, int threads, bool serialize) {
  std::atomic<size_t> next{0};
  std::atomic<int64_t> total{0};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        for (size_t i = next++; i < ds.files.size(); i = next++) {
          io::Sample s;
          if (serialize) {
            std::lock_guard<std::mutex> g(io::hdf5_mutex());
            s = io::read_sample(ds.files[i]);
          } else {
            s = io::read_sample(ds.files[i]);
          }
          total += ds.bytes[i];
        }
      } catch (...) {
        errors[static_cast<size_t>(t)] = std::current_exception();
      }
    });
  for (std::thread& t : pool) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  return total;
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

double mem_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return 0;
}

struct Row {
  std::string what;
  int threads = 0;
  double mbps = 0, samples_per_s = 0;  // median pass
  double mbps_min = 0, mbps_max = 0;
};

void print_row(const Row& r, double raw1, double raw_same) {
  std::printf("%-12s %7d %10.1f %10.2f %12.1f-%-8.1f %9.0f%% %9.0f%%\n", r.what.c_str(), r.threads, r.mbps,
              r.samples_per_s, r.mbps_min, r.mbps_max, 100.0 * r.mbps / raw1, 100.0 * r.mbps / raw_same);
}

int run_bench(const BenchOptions& o) {
  if (o.generate > 0) generate_files(o);
  const io::Dataset ds = io::Dataset::from_directory(o.dir);
  int64_t total_bytes = 0;
  for (int64_t b : ds.bytes) total_bytes += b;
  const io::SampleInfo info = io::inspect_sample(ds.files.front());
  std::string stats = o.stats;
  if (stats.empty() && !o.no_normalize) {
    for (const fs::path& p : {fs::path(o.dir) / "stats.h5", fs::path(o.dir).parent_path() / "stats.h5"})
      if (fs::exists(p)) {
        stats = p.string();
        break;
      }
    CS_CHECK(!stats.empty(), o.dir, ": no stats.h5 in the folder or its parent: pass --stats or --no-normalize");
  }
  if (o.no_normalize) stats.clear();
  const Device device = parse_device(o.device);
  const DType dtype = parse_dtype(o.dtype);
  const int64_t usable = ds.size() / o.batch * o.batch;  // training mode: the partial batch is dropped
  CS_CHECK(usable > 0, o.dir, ": ", ds.size(), " files, fewer than one batch of ", o.batch);

  std::printf("climseg data bench: %lld files in %s (%.1f MB, first file %lldx%lldx%lld %s, %.1f MB per file)\n",
              static_cast<long long>(ds.size()), o.dir.c_str(), total_bytes / 1e6, static_cast<long long>(info.height),
              static_cast<long long>(info.width), static_cast<long long>(info.channels), info.data_type.c_str(),
              total_bytes / 1e6 / ds.size());
  std::printf(
      "pipeline: batch %lld (%lld samples per epoch: the partial batch is dropped), %d buffers, device %s, "
      "dtype %s, %s, %s\n",
      static_cast<long long>(o.batch), static_cast<long long>(usable), o.buffers, device_name(device),
      dtype_name(dtype), stats.empty() ? "no normalisation" : ("normalised with " + stats).c_str(),
      device == Device::cuda ? (pinned_memory_available() ? "pinned host buffers" : "unpinned host buffers")
                             : "host buffers used in place");
  std::printf("HDF5: %s; reads %s\n",
              io::hdf5_thread_safe() ? "thread-safe library (its own global lock serialises every API call)"
                                     : "library not thread-safe",
              o.serialize || !io::hdf5_thread_safe() ? "serialised with io::hdf5_mutex() (whole read_sample)"
                                                     : "concurrent (only HDF5's lock)");
  const double avail = mem_available_bytes();
  std::printf(
      "page cache: warm: every file is read once before timing; caches are not dropped (needs root and a "
      "writable /proc/sys/vm/drop_caches): memory-speed reads, not disk reads\n");
  if (avail > 0 && total_bytes > 0.8 * avail)
    std::printf(
        "WARNING: the files (%.1f GB) do not fit comfortably in available memory (%.1f GB): the cache is "
        "not fully warm, later passes read partly from disk\n",
        total_bytes / 1e9, avail / 1e9);
  std::printf(
      "timing: %d rounds; MB/s = file bytes / s (1 MB = 1e6 bytes), median round and range. raw read: read() of "
      "each whole file into a reused buffer; read_sample: io::read_sample alone (validated, no batches); "
      "pipeline: io::Loader, normalised batches on the device\n",
      o.epochs);
  raw_pass(ds, 2);  // warm the page cache
  std::printf("load average before: %s\n", load_average().c_str());

  // Rounds: each round measures raw read(), read_sample and the pipeline for every thread count, one after the
  // other, so a change in the machine's load (CI runners are shared) hits all three alike. A pipeline measurement
  // is the middle epoch of a three-epoch loader, from the hand-over of epoch 0's last batch to that of epoch 1's:
  // epoch 0 pays the set-up (slot allocation, first-touch page faults) that a real run pays once, and the readers'
  // read-ahead across each end of the timed epoch cancels out.
  const bool serialized = o.serialize || !io::hdf5_thread_safe();
  const size_t nt = o.threads.size();
  std::vector<std::vector<double>> raw_mbps(nt), rs_mbps(nt), pipe_mbps(nt), pipe_sps(nt), raw_sps(nt), rs_sps(nt);
  std::vector<int64_t> pipe_samples(nt, 0), pipe_direct(nt, 0);  // all rounds and epochs
  ExecContext ctx(device, 0);
  for (int round = 0; round < o.epochs; ++round) {
    for (size_t ti = 0; ti < nt; ++ti) {
      const int t = o.threads[ti];
      double t0 = now_s();
      int64_t bytes = raw_pass(ds, t);
      double dt = now_s() - t0;
      raw_mbps[ti].push_back(bytes / 1e6 / dt);
      raw_sps[ti].push_back(static_cast<double>(ds.size()) / dt);

      t0 = now_s();
      bytes = read_sample_pass(ds, t, serialized);
      dt = now_s() - t0;
      rs_mbps[ti].push_back(bytes / 1e6 / dt);
      rs_sps[ti].push_back(static_cast<double>(ds.size()) / dt);

      io::LoaderOptions lo;
      lo.shard.seed = o.seed + static_cast<uint64_t>(round);
      lo.batch = o.batch;
      lo.threads = t;
      lo.buffers = o.buffers;
      lo.device = device;
      lo.dtype = dtype;
      lo.stats = stats;
      lo.epochs = 3;
      lo.serialize_reads = o.serialize;
      double start = 0, end = 0;
      int64_t pbytes = 0, psamples = 0;
      {
        io::Loader loader(ds, lo);
        while (std::optional<io::Batch> bt = loader.next(ctx)) {
          if (bt->epoch == 0) {
            start = now_s();  // ends as the time epoch 0's last batch was handed over
          } else if (bt->epoch == 1) {
            for (int64_t i : bt->indices) pbytes += ds.bytes[static_cast<size_t>(i)];
            psamples += static_cast<int64_t>(bt->indices.size());
            ctx.synchronize();
            end = now_s();
          }
        }
        const io::LoaderStats ls = loader.stats();
        pipe_samples[ti] += ls.samples;
        pipe_direct[ti] += ls.direct;
      }
      pipe_mbps[ti].push_back(pbytes / 1e6 / (end - start));
      pipe_sps[ti].push_back(static_cast<double>(psamples) / (end - start));
    }
  }
  std::printf("load average after:  %s\n\n", load_average().c_str());

  auto row = [](const char* what, int t, const std::vector<double>& mbps, const std::vector<double>& sps) {
    return Row{what,
               t,
               median(mbps),
               median(sps),
               *std::min_element(mbps.begin(), mbps.end()),
               *std::max_element(mbps.begin(), mbps.end())};
  };
  std::printf("%-12s %7s %10s %10s %21s %10s %10s\n", "what", "threads", "MB/s", "samples/s", "MB/s range", "vs raw(1)",
              "vs raw(t)");
  const double raw1 = median(raw_mbps[0]);
  for (size_t ti = 0; ti < nt; ++ti) {
    const double rawt = median(raw_mbps[ti]);
    print_row(row("raw read", o.threads[ti], raw_mbps[ti], raw_sps[ti]), raw1, rawt);
    print_row(row("read_sample", o.threads[ti], rs_mbps[ti], rs_sps[ti]), raw1, rawt);
    print_row(row("pipeline", o.threads[ti], pipe_mbps[ti], pipe_sps[ti]), raw1, rawt);
  }
  std::printf("\npipeline samples read straight into their batch slot (one pass; the rest via a reader's buffer):");
  for (size_t ti = 0; ti < nt; ++ti)
    std::printf(
        " %d thread%s %.0f%%", o.threads[ti], o.threads[ti] == 1 ? "" : "s",
        100.0 * static_cast<double>(pipe_direct[ti]) / static_cast<double>(std::max<int64_t>(1, pipe_samples[ti])));
  std::printf("\n");
  return 0;
}

}  // namespace

Subcommand add_data_bench(CLI::App* data) {
  static BenchOptions o;
  CLI::App* cmd = data->add_subcommand(
      "bench", "Input pipeline throughput (MB/s, samples/s) per reader-thread count next to raw read() of the files");
  cmd->add_option("dir", o.dir, "Folder of sample files (*.h5; stats.h5 here or in the parent normalises)")->required();
  cmd->add_option("--threads", o.threads, "Reader-thread counts to measure, e.g. 1,2")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--batch", o.batch, "Samples per batch")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--device", o.device, "Where the batches go: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--dtype", o.dtype, "Batch dtype (cuda: fp32, fp16, bf16)")->capture_default_str();
  cmd->add_option("--buffers", o.buffers, "Batch slots (2 double buffering, 3 triple)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--rounds", o.epochs, "Timed rounds (each: raw, read_sample and pipeline for every thread count)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--serialize", o.serialize, "Hold io::hdf5_mutex() around every read (as without thread-safe HDF5)");
  cmd->add_option("--stats", o.stats, "stats.h5 (default: in DIR or its parent)");
  cmd->add_flag("--no-normalize", o.no_normalize, "Skip min-max normalisation");
  cmd->add_option("--generate", o.generate, "First write this many random samples (and stats.h5) into DIR")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--height", o.height, "--generate: field height")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--width", o.width, "--generate: field width")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--seed", o.seed, "Shuffling seed (and --generate's)")->capture_default_str();
  return {cmd, [] { return run_bench(o); }};
}

}  // namespace climseg::apps
