#include "io/staging.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#if defined(CLIMSEG_HAVE_MPI)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <optional>

#include "engine/atomic_file.h"
#include "engine/check_mpi.h"
#include "io/dataset_check.h"
#include "io/hdf5_sample.h"
#endif

namespace climseg::io {

// ---- the plan ----------------------------------------------------------------------------------------------------

namespace {

// SplitMix64 (Steele, Lea, Flood, OOPSLA 2014): a fixed, portable stream, so a seed gives the same shuffle with
// every standard library (std::shuffle and the std distributions are implementation-defined).
struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) {  // uniform in [0, n), by rejection
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
    uint64_t x = next();
    while (x >= limit) x = next();
    return x % n;
  }
};

template <class T>
void shuffle(std::vector<T>& v, SplitMix64& g) {  // Fisher-Yates
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(g.below(i))]);
}

}  // namespace

std::vector<int64_t> StagePlan::owned(int rank) const {
  std::vector<int64_t> v;
  for (auto i = static_cast<int64_t>(rank); i < static_cast<int64_t>(files.size()); i += nranks) v.push_back(i);
  return v;
}

std::vector<int64_t> StagePlan::wanted(int rank) const {
  const auto n = static_cast<int64_t>(files.size());
  const int64_t need = count - static_cast<int64_t>(owned(rank).size());
  if (need <= 0) return {};
  std::vector<int64_t> remote;
  for (int64_t i = 0; i < n; ++i)
    if (owner(i) != rank) remote.push_back(i);
  SplitMix64 g{seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(rank + 1))};
  shuffle(remote, g);
  CS_CHECK(static_cast<int64_t>(remote.size()) >= need, "staging plan: rank ", rank, " needs ", need,
           " files from other ranks but they own ", remote.size());
  remote.resize(static_cast<size_t>(need));
  std::sort(remote.begin(), remote.end());
  return remote;
}

StagePlan plan_staging(std::vector<StageFile> listing, int nranks, int64_t count, uint64_t seed) {
  CS_CHECK(nranks >= 1, "staging: ", nranks, " ranks");
  CS_CHECK(count >= 1, "staging: --per-rank must be at least 1, got ", count);
  CS_CHECK(static_cast<int64_t>(listing.size()) >= count, "staging: each rank needs ", count,
           " distinct files but the shared folder has only ", listing.size());
  std::sort(listing.begin(), listing.end(), [](const StageFile& a, const StageFile& b) { return a.name < b.name; });
  SplitMix64 g{seed};
  shuffle(listing, g);
  const int64_t keep = std::min<int64_t>(static_cast<int64_t>(listing.size()), count * nranks);
  listing.resize(static_cast<size_t>(keep));
  StagePlan p;
  p.files = std::move(listing);
  p.nranks = nranks;
  p.count = count;
  p.seed = seed;
  return p;
}

std::string expand_local_path(const std::string& pattern, int rank, int node) {
  std::string s;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      const char c = pattern[i + 1];
      if (c == 'r' || c == 'n' || c == '%') {
        s += c == 'r' ? std::to_string(rank) : c == 'n' ? std::to_string(node) : "%";
        ++i;
        continue;
      }
    }
    s += pattern[i];
  }
  return s;
}

// ---- staging over MPI --------------------------------------------------------------------------------------------

#if defined(CLIMSEG_HAVE_MPI)

namespace {

namespace fs = std::filesystem;

constexpr int kTagHeader = 11, kTagPayload = 12;
constexpr int64_t kChunk = int64_t{1} << 30;  // MPI counts are int: files travel in chunks of 1 GiB at most

int comm_rank(MPI_Comm c) {
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(c, &r));
  return r;
}
int comm_size(MPI_Comm c) {
  int n = 0;
  MPI_CHECK(MPI_Comm_size(c, &n));
  return n;
}

// Every rank's string, in rank order.
std::vector<std::string> allgather_strings(MPI_Comm comm, const std::string& mine) {
  const int n = comm_size(comm);
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(n)), displs(static_cast<size_t>(n));
  MPI_CHECK(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm));
  int total = 0;
  for (int i = 0; i < n; ++i) {
    displs[static_cast<size_t>(i)] = total;
    total += lens[static_cast<size_t>(i)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_CHECK(MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, comm));
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(i)]),
                             static_cast<size_t>(lens[static_cast<size_t>(i)])));
  return out;
}

// The agreement point: returns when no rank has an error, otherwise throws the same StageError on every rank.
void agree(MPI_Comm comm, const char* step, const std::string& local_error) {
  int bad = local_error.empty() ? 0 : 1, any = 0;
  MPI_CHECK(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm));
  if (!any) return;
  const std::vector<std::string> all = allgather_strings(comm, local_error);
  std::string msg;
  int failed = 0;
  for (size_t r = 0; r < all.size(); ++r)
    if (!all[r].empty()) {
      msg += detail::concat("\n  rank ", r, ": ", all[r]);
      ++failed;
    }
  throw StageError(detail::concat("staging failed while ", step, " on ", failed, " of ", all.size(), " rank",
                                  all.size() == 1 ? "" : "s", ":", msg),
                   local_error);
}

// Broadcasts a byte string from `root`.
void bcast_string(MPI_Comm comm, std::string& s, int root) {
  int64_t len = static_cast<int64_t>(s.size());
  MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT64_T, root, comm));
  s.resize(static_cast<size_t>(len));
  for (int64_t off = 0; off < len; off += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, len - off));
    MPI_CHECK(MPI_Bcast(s.data() + off, n, MPI_CHAR, root, comm));
  }
}

std::string read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) CS_THROW(path, ": cannot open for reading: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    CS_THROW(path, ": cannot stat: ", std::strerror(e));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int e = errno;
      ::close(fd);
      CS_THROW(path, ": read failed after ", got, " of ", bytes.size(),
               " bytes: ", r == 0 ? "unexpected end of file" : std::strerror(e));
    }
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  return bytes;
}

// Writes `bytes` to `path` atomically; `check` (may be null) runs on the complete temporary before it is renamed
// into place, and its errors name `shown` (the source) instead of the temporary.
void write_file_atomic(const std::string& path, const std::string& bytes, const std::string& shown,
                       void (*check)(const std::string& tmp)) {
  AtomicFile out(path);
  FILE* f = std::fopen(out.tmp_path().c_str(), "wb");
  if (!f) CS_THROW(path, ": cannot create ", out.tmp_path(), ": ", std::strerror(errno));
  const size_t wrote = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int close_rc = std::fclose(f);
  if (wrote != bytes.size() || close_rc != 0)
    CS_THROW(path, ": writing ", bytes.size(), " bytes failed (disk full?): ", std::strerror(errno));
  if (check) {
    try {
      check(out.tmp_path());
    } catch (const std::exception& e) {
      // The copy has the source's bytes, so its problem is the source's: name the source.
      std::string m = e.what();
      for (size_t at = m.find(out.tmp_path()); at != std::string::npos; at = m.find(out.tmp_path(), at))
        m.replace(at, out.tmp_path().size(), shown), at += shown.size();
      throw Error(m);
    }
  }
  out.commit();
}

void validate_sample(const std::string& tmp) { check_sample_file(tmp); }
void validate_stats(const std::string& tmp) { read_stats(tmp); }

std::string find_stats(const StageOptions& opt) {
  if (!opt.stats.empty()) {
    if (!fs::is_regular_file(opt.stats)) CS_THROW("--stats ", opt.stats, ": no such file");
    return opt.stats;
  }
  const fs::path from = fs::absolute(fs::path(opt.from)).lexically_normal();
  const fs::path here = from / "stats.h5", up = from.parent_path() / "stats.h5";
  if (fs::is_regular_file(here)) return here.string();
  if (fs::is_regular_file(up)) return up.string();
  CS_THROW("no stats.h5 in ", from.string(), " or ", from.parent_path().string(), " (pass --stats FILE)");
}

// Rank 0's listing, serialised: "name\tsize\n" per file.
std::string serialise(const std::vector<StageFile>& files) {
  std::string s;
  for (const StageFile& f : files) s += detail::concat(f.name, '\t', f.size, '\n');
  return s;
}
std::vector<StageFile> deserialise(const std::string& s) {
  std::vector<StageFile> files;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t tab = s.find('\t', pos), nl = s.find('\n', pos);
    CS_CHECK(tab != std::string::npos && nl != std::string::npos && tab < nl, "staging: bad file list");
    files.push_back({s.substr(pos, tab - pos), std::stoull(s.substr(tab + 1, nl - tab - 1))});
    pos = nl + 1;
  }
  return files;
}

std::vector<StageFile> list_shared(const std::string& from) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) CS_THROW("--from ", from, ": not a directory");
  std::vector<StageFile> files;
  for (const fs::directory_entry& e : fs::directory_iterator(from, ec)) {
    const fs::path& p = e.path();
    if (p.extension() != ".h5" || p.filename() == "stats.h5") continue;
    const std::string name = p.filename().string();
    if (name.find_first_of("\t\n") != std::string::npos)
      CS_THROW(p.string(), ": a file name with a tab or a newline cannot be staged");
    if (!e.is_regular_file(ec))
      CS_THROW(p.string(), ": not a regular file (", fs::is_directory(p, ec) ? "a directory" : "a dangling link?", ")");
    files.push_back({p.filename().string(), static_cast<uint64_t>(e.file_size(ec))});
    if (ec) CS_THROW(p.string(), ": cannot read its size: ", ec.message());
  }
  if (ec) CS_THROW(from, ": cannot list the directory: ", ec.message());
  if (files.empty()) CS_THROW("--from ", from, ": no sample files (*.h5 other than stats.h5)");
  return files;
}

struct Header {  // one file on the wire; sent as 4 int64
  int64_t index = -1;
  int64_t size = 0;    // payload bytes that follow (the file, or the error message)
  int64_t crc = 0;     // CRC-32C of the file as read from the shared folder
  int64_t status = 0;  // 0: the file follows; 1: the sender failed and the payload is its message
};

// Irecv/Isend of a byte buffer in chunks (all with one tag, so MPI's ordering keeps them in sequence).
void post_bytes(MPI_Comm comm, bool send, char* p, int64_t n, int peer, std::vector<MPI_Request>& reqs) {
  for (int64_t off = 0; off < n; off += kChunk) {
    const int c = static_cast<int>(std::min(kChunk, n - off));
    MPI_Request r;
    if (send)
      MPI_CHECK(MPI_Isend(p + off, c, MPI_BYTE, peer, kTagPayload, comm, &r));
    else
      MPI_CHECK(MPI_Irecv(p + off, c, MPI_BYTE, peer, kTagPayload, comm, &r));
    reqs.push_back(r);
  }
}

void wait_all(std::vector<MPI_Request>& reqs) {
  if (!reqs.empty()) MPI_CHECK(MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE));
  reqs.clear();
}

struct Local {
  std::string dir;
  std::map<int64_t, uint32_t> crc;  // owned files staged here, with the CRC read from the shared folder
};

// The staging itself, on the staging ranks (one per node).
StageReport stage_on(MPI_Comm sc, const StageOptions& opt, int node_ranks, int world_rank) {
  const int rank = comm_rank(sc), N = comm_size(sc);
  const double t0 = MPI_Wtime();
  StageReport rep;
  rep.staging_ranks = N;
  StageRankReport me;
  me.rank = world_rank;
  me.node = rank;

  // 1. rank 0 lists, shuffles and trims; broadcast of the plan's files and of stats.h5's bytes.
  std::string err, listing, stats_bytes, stats_path;
  int64_t listed = 0;
  if (rank == 0) {
    try {
      std::vector<StageFile> files = list_shared(opt.from);
      listed = static_cast<int64_t>(files.size());
      stats_path = find_stats(opt);
      const StagePlan p = plan_staging(std::move(files), N, opt.per_rank * node_ranks, opt.seed);
      listing = serialise(p.files);
      stats_bytes = read_whole_file(stats_path);
      ++rep.stats_reads;
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  agree(sc, "listing the shared folder", err);
  bcast_string(sc, listing, 0);
  bcast_string(sc, stats_bytes, 0);
  bcast_string(sc, stats_path, 0);
  MPI_CHECK(MPI_Bcast(&listed, 1, MPI_INT64_T, 0, sc));
  rep.listed = listed;
  StagePlan& plan = rep.plan;
  plan.files = deserialise(listing);
  plan.nranks = N;
  plan.count = opt.per_rank * node_ranks;
  plan.seed = opt.seed;
  rep.list_s = MPI_Wtime() - t0;

  // 2. The local folder: created, and not shared with another staging rank on this host.
  Local local;
  local.dir = expand_local_path(opt.to, world_rank, rank);
  me.local_dir = local.dir;
  rep.local_dir = local.dir;
  err.clear();
  try {
    std::error_code ec;
    fs::create_directories(local.dir, ec);
    if (!fs::is_directory(local.dir)) CS_THROW("--to ", local.dir, ": cannot create the directory: ", ec.message());
    if (fs::equivalent(local.dir, opt.from, ec))
      CS_THROW("--to ", local.dir, " is the shared folder --from ", opt.from, ": the copies would replace the sources");
  } catch (const std::exception& e) {
    err = e.what();
  }
  {
    char host[MPI_MAX_PROCESSOR_NAME] = {};
    int hlen = 0;
    MPI_CHECK(MPI_Get_processor_name(host, &hlen));
    std::error_code ec;
    const fs::path canon = fs::weakly_canonical(fs::absolute(local.dir), ec);
    const std::vector<std::string> where =
        allgather_strings(sc, std::string(host, static_cast<size_t>(hlen)) + ":" + canon.string());
    for (int r = 0; r < rank && err.empty(); ++r)
      if (where[static_cast<size_t>(r)] == where[static_cast<size_t>(rank)])
        err = detail::concat("--to ", opt.to, ": staging ranks ", r, " and ", rank, " would both write into ",
                             canon.string(), " on ", host, "; put %r or %n in --to, or use --ranks-per-node");
  }
  agree(sc, "preparing the local folders", err);

  // 3. Owned files: one read each from the shared folder, a local copy, validated.
  const double t_copy = MPI_Wtime();
  err.clear();
  const std::vector<int64_t> owned = plan.owned(rank);
  me.owned = static_cast<int64_t>(owned.size());
  std::vector<int64_t> reads(plan.files.size(), 0);
  try {
    for (int64_t i : owned) {
      const StageFile& f = plan.files[static_cast<size_t>(i)];
      const std::string src = (fs::path(opt.from) / f.name).string();
      const std::string bytes = read_whole_file(src);
      ++me.shared_reads;
      ++reads[static_cast<size_t>(i)];
      me.shared_bytes += static_cast<int64_t>(bytes.size());
      if (bytes.size() != f.size)
        CS_THROW(src, ": ", bytes.size(), " bytes, but ", f.size, " when rank 0 listed it (changed while staging?)");
      local.crc[i] = crc32c(bytes.data(), bytes.size());
      write_file_atomic((fs::path(local.dir) / f.name).string(), bytes, src, opt.validate ? validate_sample : nullptr);
      ++me.staged;
      rep.local_files.push_back(f.name);
    }
    write_file_atomic((fs::path(local.dir) / "stats.h5").string(), stats_bytes, stats_path, validate_stats);
  } catch (const std::exception& e) {
    err = e.what();
  }
  me.copy_s = MPI_Wtime() - t_copy;
  agree(sc, "copying from the shared folder", err);

  // 4. Files owned by others, in N-1 rounds: requests first, then the files.
  const double t_ex = MPI_Wtime();
  err.clear();
  auto note = [&](const std::string& m) {
    if (err.empty()) err = m;  // the first problem; the protocol goes on so no peer waits forever
  };
  const std::vector<int64_t> wanted = plan.wanted(rank);
  std::vector<MPI_Request> reqs;
  // Every rank takes part in every round (others may want its files); no rounds when nobody wants anything.
  const bool exchange = static_cast<int64_t>(plan.files.size()) < plan.count * N;
  for (int s = 1; exchange && s < N; ++s) {
    const int send_to = (rank + s) % N, recv_from = (rank - s + N) % N;
    std::vector<int64_t> to_recv;
    for (int64_t i : wanted)
      if (plan.owner(i) == recv_from) to_recv.push_back(i);
    int64_t n_recv = static_cast<int64_t>(to_recv.size()), n_send = 0;
    MPI_CHECK(MPI_Sendrecv(&n_recv, 1, MPI_INT64_T, recv_from, 0, &n_send, 1, MPI_INT64_T, send_to, 0, sc,
                           MPI_STATUS_IGNORE));
    std::vector<int64_t> to_send(static_cast<size_t>(n_send));
    MPI_CHECK(MPI_Sendrecv(to_recv.data(), static_cast<int>(n_recv), MPI_INT64_T, recv_from, 1, to_send.data(),
                           static_cast<int>(n_send), MPI_INT64_T, send_to, 1, sc, MPI_STATUS_IGNORE));
    const int64_t steps = std::max(n_recv, n_send);
    for (int64_t k = 0; k < steps; ++k) {
      Header in, out;
      std::string out_bytes, in_bytes;
      if (k < n_recv) {
        MPI_Request r;
        MPI_CHECK(MPI_Irecv(&in, 4, MPI_INT64_T, recv_from, kTagHeader, sc, &r));
        reqs.push_back(r);
      }
      if (k < n_send) {
        const int64_t i = to_send[static_cast<size_t>(k)];
        out.index = i;
        try {
          const auto it = local.crc.find(i);
          if (it == local.crc.end())
            CS_THROW("rank ", send_to, " asked rank ", rank, " for file ", i, ", which rank ", rank, " does not own");
          const StageFile& f = plan.files[static_cast<size_t>(i)];
          const std::string path = (fs::path(local.dir) / f.name).string();
          out_bytes = read_whole_file(path);  // the local copy: the shared folder is read once per file
          const uint32_t c = crc32c(out_bytes.data(), out_bytes.size());
          if (c != it->second)
            CS_THROW(path, ": the local copy's CRC-32C ", c, " differs from the source's ", it->second,
                     " (changed on the local disk?)");
          out.crc = it->second;
          if (!opt.test_corrupt_in_transit.empty() && f.name == opt.test_corrupt_in_transit && !out_bytes.empty())
            out_bytes[out_bytes.size() / 2] ^= 0x10;
        } catch (const std::exception& e) {
          note(e.what());
          out_bytes = detail::concat("rank ", rank, " could not send it: ", e.what());
          out.status = 1;
        }
        out.size = static_cast<int64_t>(out_bytes.size());
        MPI_Request r;
        MPI_CHECK(MPI_Isend(&out, 4, MPI_INT64_T, send_to, kTagHeader, sc, &r));
        reqs.push_back(r);
      }
      wait_all(reqs);
      if (k < n_recv) {
        in_bytes.resize(static_cast<size_t>(in.size));
        post_bytes(sc, false, in_bytes.data(), in.size, recv_from, reqs);
      }
      if (k < n_send) post_bytes(sc, true, out_bytes.data(), out.size, send_to, reqs);
      wait_all(reqs);
      if (k < n_recv) {
        const int64_t want = to_recv[static_cast<size_t>(k)];
        const std::string name = plan.files[static_cast<size_t>(want)].name;
        try {
          if (in.status != 0) CS_THROW(name, ": ", in_bytes);
          if (in.index != want)
            CS_THROW("rank ", recv_from, " sent file ", in.index, " where rank ", rank, " expected ", want, " (", name,
                     ")");
          const uint32_t c = crc32c(in_bytes.data(), in_bytes.size());
          if (c != static_cast<uint32_t>(in.crc))
            CS_THROW(name, ": received from rank ", recv_from, " with CRC-32C ", c, " but the source has ",
                     static_cast<uint32_t>(in.crc), ": damaged in transit");
          write_file_atomic((fs::path(local.dir) / name).string(), in_bytes, name, nullptr);
          ++me.received;
          me.received_bytes += in.size;
          ++me.staged;
          rep.local_files.push_back(name);
        } catch (const std::exception& e) {
          note(e.what());
        }
      }
      if (k < n_send && out.status == 0) {
        ++me.sent;
        me.sent_bytes += out.size;
      }
    }
  }
  me.exchange_s = MPI_Wtime() - t_ex;
  agree(sc, "exchanging files between ranks", err);
  std::sort(rep.local_files.begin(), rep.local_files.end());

  // 5. The report: reads per file summed over ranks, every rank's numbers.
  rep.reads_per_file.assign(reads.size(), 0);
  MPI_CHECK(
      MPI_Allreduce(reads.data(), rep.reads_per_file.data(), static_cast<int>(reads.size()), MPI_INT64_T, MPI_SUM, sc));
  int64_t sr = rep.stats_reads;
  MPI_CHECK(MPI_Allreduce(&sr, &rep.stats_reads, 1, MPI_INT64_T, MPI_SUM, sc));
  const std::vector<int64_t> mine = {me.rank, me.node,       me.owned,    me.shared_reads,   me.shared_bytes,
                                     me.sent, me.sent_bytes, me.received, me.received_bytes, me.staged};
  std::vector<int64_t> all(mine.size() * static_cast<size_t>(N));
  MPI_CHECK(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_INT64_T, all.data(),
                          static_cast<int>(mine.size()), MPI_INT64_T, sc));
  const double times_mine[2] = {me.copy_s, me.exchange_s};
  std::vector<double> times(2 * static_cast<size_t>(N));
  MPI_CHECK(MPI_Allgather(times_mine, 2, MPI_DOUBLE, times.data(), 2, MPI_DOUBLE, sc));
  const std::vector<std::string> dirs = allgather_strings(sc, me.local_dir);
  for (int r = 0; r < N; ++r) {
    const int64_t* a = all.data() + static_cast<size_t>(r) * mine.size();
    StageRankReport x;
    x.rank = static_cast<int>(a[0]);
    x.node = static_cast<int>(a[1]);
    x.owned = a[2];
    x.shared_reads = a[3];
    x.shared_bytes = a[4];
    x.sent = a[5];
    x.sent_bytes = a[6];
    x.received = a[7];
    x.received_bytes = a[8];
    x.staged = a[9];
    x.copy_s = times[2 * static_cast<size_t>(r)];
    x.exchange_s = times[2 * static_cast<size_t>(r) + 1];
    x.local_dir = dirs[static_cast<size_t>(r)];
    rep.copy_s = std::max(rep.copy_s, x.copy_s);
    rep.exchange_s = std::max(rep.exchange_s, x.exchange_s);
    rep.ranks.push_back(std::move(x));
  }
  double total = MPI_Wtime() - t0;
  MPI_CHECK(MPI_Allreduce(&total, &rep.total_s, 1, MPI_DOUBLE, MPI_MAX, sc));
  return rep;
}

}  // namespace

StageReport stage_dataset(MPI_Comm comm, const StageOptions& opt) {
  // Options are checked on every rank alike, so a bad option fails everywhere without communication.
  const int wsize = comm_size(comm);
  try {
    CS_CHECK(opt.per_rank >= 1, "--per-rank must be at least 1, got ", opt.per_rank);
    CS_CHECK(opt.ranks_per_node >= 1, "--ranks-per-node must be at least 1, got ", opt.ranks_per_node);
    CS_CHECK(wsize % opt.ranks_per_node == 0, "--ranks-per-node ", opt.ranks_per_node, " does not divide the ", wsize,
             " ranks into whole nodes");
    CS_CHECK(!opt.from.empty() && !opt.to.empty(), "--from and --to are required");
  } catch (const Error& e) {
    throw StageError(e.what(), "");  // the same on every rank
  }

  // Our own communicator: our messages cannot match anyone else's, and errors come back as codes (MPI_CHECK). It is
  // freed (a collective call) on the normal and the StageError paths; after any other error (MPI itself failed) the
  // other ranks' state is unknown, so there is no collective clean-up: the caller exits non-zero and mpirun ends
  // the job.
  MPI_Comm world;
  MPI_CHECK(MPI_Comm_dup(comm, &world));
  MPI_CHECK(MPI_Comm_set_errhandler(world, MPI_ERRORS_RETURN));
  const int wrank = comm_rank(world);

  // One staging rank per node: the node's first rank.
  const bool leader = wrank % opt.ranks_per_node == 0;
  MPI_Comm sc = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split(world, leader ? 0 : MPI_UNDEFINED, wrank, &sc));
  StageReport rep;
  std::string failure, local_failure;
  if (leader) {
    MPI_CHECK(MPI_Comm_set_errhandler(sc, MPI_ERRORS_RETURN));
    try {
      rep = stage_on(sc, opt, opt.ranks_per_node, wrank);
    } catch (const StageError& e) {
      failure = e.what();
      local_failure = e.local();
    }
    MPI_CHECK(MPI_Comm_free(&sc));
  }
  // The waiting ranks learn the outcome from world rank 0 (a staging rank), and which files were staged.
  bcast_string(world, failure, 0);
  std::string files = failure.empty() && wrank == 0 ? serialise(rep.plan.files) : std::string();
  if (failure.empty()) bcast_string(world, files, 0);
  MPI_CHECK(MPI_Comm_free(&world));
  if (!failure.empty()) throw StageError(failure, local_failure);
  if (!leader) {
    const int node = wrank / opt.ranks_per_node;
    rep.local_dir = expand_local_path(opt.to, node * opt.ranks_per_node, node);
    rep.plan.files = deserialise(files);
  }
  return rep;
}

#endif  // CLIMSEG_HAVE_MPI

}  // namespace climseg::io
