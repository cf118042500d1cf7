// comm/ranks.h and comm/data_parallel.h in a build without MPI: one rank, and a clear error when launched with
// several or asked for data parallelism (gradient lag).
#include <string>

#include "comm/data_parallel.h"
#include "comm/ranks.h"
#include "engine/check.h"

namespace climseg::comm {

void ensure_mpi() { CS_THROW("this climseg was built without MPI (no distributed training)"); }

RankInfo init_ranks() {
  CS_CHECK(!launched_with_ranks(), "started with several ranks, but this climseg was built without MPI: each rank "
           "would train alone");
  return {};
}

void rank_barrier() {}
void send_to_rank(int, int, const void*, size_t) { ensure_mpi(); }
void recv_from_rank(int, int, void*, size_t) { ensure_mpi(); }
void abort_ranks(int) {}

struct DataParallel::Impl {};

DataParallel::DataParallel(const DistOptions&, const Net&, Device, ExecContext&) { ensure_mpi(); }
DataParallel::~DataParallel() = default;
int DataParallel::rank() const { return 0; }
int DataParallel::size() const { return 1; }
int DataParallel::local_rank() const { return 0; }
std::string DataParallel::topology() const { return "1 rank"; }
void DataParallel::node_done(int) {}
void DataParallel::finish() {}
void DataParallel::after_step() {}
Tensor DataParallel::optimizer_grads() const { return {}; }
bool DataParallel::has_lag() const { return false; }
Tensor DataParallel::lag_buffer() { return {}; }
void DataParallel::set_lag_buffer(const Tensor&) {}
void DataParallel::sum(std::vector<double>&) {}
void DataParallel::average_state(Net&, ExecContext&) {}
void DataParallel::check_replicas(const Tensor&, int64_t, ExecContext&) {}
std::string DataParallel::broadcast_string(const std::string& s) { return s; }

}  // namespace climseg::comm
