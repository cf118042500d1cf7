// `climseg data stage --from SHARED --to LOCAL --per-rank K`, run under mpirun: copies a dataset from a shared file
// system to node-local folders, each file read from SHARED once and spread over MPI (io/staging.h). MPI is
// initialised here and only here: the other subcommands run without mpirun.
#include <cstdio>
#include <string>

#include "apps/data.h"
#include "engine/check.h"
#include "io/staging.h"

#if defined(CLIMSEG_HAVE_MPI)
#include <mpi.h>
#endif

namespace climseg::apps {

namespace {

struct StageCommand {
  io::StageOptions opt;
  bool no_validate = false;
};

#if defined(CLIMSEG_HAVE_MPI)

std::string size_str(int64_t bytes) {
  char b[32];
  const auto v = static_cast<double>(bytes);
  if (bytes < 1024)
    std::snprintf(b, sizeof b, "%lld B", static_cast<long long>(bytes));
  else if (bytes < (int64_t{1} << 20))
    std::snprintf(b, sizeof b, "%.1f KiB", v / 1024);
  else if (bytes < (int64_t{1} << 30))
    std::snprintf(b, sizeof b, "%.1f MiB", v / (1 << 20));
  else
    std::snprintf(b, sizeof b, "%.2f GiB", v / (1 << 30));
  return b;
}

void print_report(const StageCommand& c, const io::StageReport& r, int nranks) {
  const io::StagePlan& p = r.plan;
  std::printf("climseg data stage: %s -> %s, %d rank%s, %d per node, %lld files per rank, seed %llu\n",
              c.opt.from.c_str(), c.opt.to.c_str(), nranks, nranks == 1 ? "" : "s", c.opt.ranks_per_node,
              static_cast<long long>(c.opt.per_rank), static_cast<unsigned long long>(c.opt.seed));
  std::printf("listed %lld sample files; staging %zu of them (at most %lld per node x %d node%s)\n",
              static_cast<long long>(r.listed), p.files.size(), static_cast<long long>(p.count), r.staging_ranks,
              r.staging_ranks == 1 ? "" : "s");
  std::printf("per staging rank (reads: of the shared folder; received, sent: files over MPI):\n");
  std::printf("  %5s %5s %6s %6s %11s %9s %5s %7s  %s\n", "rank", "node", "owned", "reads", "read bytes", "received",
              "sent", "staged", "local folder");
  int64_t reads = 0, bytes = 0, recv = 0, recv_bytes = 0;
  for (const io::StageRankReport& x : r.ranks) {
    std::printf("  %5d %5d %6lld %6lld %11s %9lld %5lld %7lld  %s\n", x.rank, x.node, static_cast<long long>(x.owned),
                static_cast<long long>(x.shared_reads), size_str(x.shared_bytes).c_str(),
                static_cast<long long>(x.received), static_cast<long long>(x.sent), static_cast<long long>(x.staged),
                x.local_dir.c_str());
    reads += x.shared_reads;
    bytes += x.shared_bytes;
    recv += x.received;
    recv_bytes += x.received_bytes;
  }
  int64_t once = 0;
  for (int64_t n : r.reads_per_file) once += n == 1;
  std::printf("shared folder: %lld reads (%s) for %zu files; %lld files read exactly once; stats.h5 read %lld time%s\n",
              static_cast<long long>(reads), size_str(bytes).c_str(), p.files.size(), static_cast<long long>(once),
              static_cast<long long>(r.stats_reads), r.stats_reads == 1 ? "" : "s");
  std::printf("over MPI: %lld files (%s), CRC-32C checked on arrival\n", static_cast<long long>(recv),
              size_str(recv_bytes).c_str());
  std::printf("time: list %.3f s, copy %.3f s, exchange %.3f s, total %.3f s (slowest rank)\n", r.list_s, r.copy_s,
              r.exchange_s, r.total_s);
}

int run_stage(const StageCommand& c) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) MPI_Init(nullptr, nullptr);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  io::StageOptions opt = c.opt;
  opt.validate = !c.no_validate;
  int rc = 0;
  try {
    const io::StageReport r = io::stage_dataset(MPI_COMM_WORLD, opt);
    if (rank == 0) print_report(c, r, size);
  } catch (const io::StageError& e) {
    // Every rank has the same message: rank 0 prints it; a rank whose own step failed also says so itself.
    if (!e.local().empty()) std::fprintf(stderr, "climseg data stage: rank %d: error: %s\n", rank, e.local().c_str());
    if (rank == 0) std::fprintf(stderr, "climseg data stage: error: %s\n", e.what());
    rc = 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "climseg data stage: rank %d: error: %s\n", rank, e.what());
    std::fflush(stderr);
    // Not every rank may have reached this point: end the whole job instead of waiting in MPI_Finalize.
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  if (!inited) MPI_Finalize();
  return rc;
}

#else

int run_stage(const StageCommand&) { CS_THROW("`climseg data stage` needs MPI: this build has none"); }

#endif

}  // namespace

Subcommand add_data_stage(CLI::App* data) {
  static StageCommand c;
  CLI::App* cmd = data->add_subcommand(
      "stage",
      "Copy a dataset to node-local folders under mpirun: each file is read from the shared folder once and sent "
      "to the other nodes over MPI (the 2018 staging); stats.h5 goes to every folder");
  cmd->add_option("--from", c.opt.from, "Shared folder with the sample files (*.h5)")->required();
  cmd->add_option("--to", c.opt.to, "Local folder; %r is replaced by the rank, %n by the node index")->required();
  cmd->add_option("--per-rank", c.opt.per_rank, "Files each rank ends with")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", c.opt.seed, "Seed of the shuffle and of the choice of files from other ranks")
      ->capture_default_str();
  cmd->add_option("--ranks-per-node", c.opt.ranks_per_node,
                  "Consecutive ranks sharing one node and one local folder (emulated nodes)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--stats", c.opt.stats, "stats.h5 to copy (default: in --from, else in its parent)");
  cmd->add_flag("--no-validate", c.no_validate, "Copy without validating each file as a climate sample");
  return {cmd, [] { return run_stage(c); }};
}

}  // namespace climseg::apps
