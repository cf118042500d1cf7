// Allreduce (sum) of fp32, fp64, fp16 and bf16 buffers: our algorithms as step schedules, plus MPI_Allreduce and
// ncclAllReduce baselines. Design and costs: docs/distributed.md.
//
// A schedule is this rank's list of steps; a step is a set of transfers (send a range of the buffer to a peer,
// receive a range from a peer either straight into the buffer or into scratch to be added in), executed by a
// Transport (comm/transport.h): post receives and sends, wait for all, then add what arrived. Schedules are built
// by pure functions of (algorithm, topology, count), so every rank derives its part of the same plan without
// talking, and tests can inspect them. Peers are world ranks; ranges are in elements.
//
//   ring              reduce-scatter then allgather around the ring of all ranks: 2(n-1) steps of count/n
//   tree              double binary tree: two complementary in-order binary trees, each reducing half of the
//                     buffer to its root and broadcasting it back, pipelined in chunks of chunk_bytes
//   halving_doubling  recursive halving reduce-scatter + recursive doubling allgather (Rabenseifner); for
//                     non-power-of-two n the first 2r ranks fold pairwise first and unfold at the end
//   hierarchical      intra-node ring reduce-scatter, inter-node ring allreduce of every shard among its owners on
//                     the other nodes (all shards concurrently, each split over `ports` channels), intra-node ring
//                     allgather; unequal node sizes: shards are the intersections of the nodes' partitions
//   mpi               MPI_Allreduce (host; custom MPI op for 16-bit types), MPI_Iallreduce when a timeout is set
//   nccl              ncclAllReduce (device buffers, NCCL builds)
//   auto_             choose_algo() below; the choice is logged once per (algorithm, size class) on rank 0
//
// Numerics: every step adds one received partial sum into the local one, converting 16-bit values to fp32, adding
// and rounding once to the storage type. Each element is the result of n-1 such additions, so the error is at most
// (n-1) * eps * sum|x_i| (eps of the dtype), whatever the algorithm; results can differ between algorithms (and
// between ranks' shards) in the order of the additions, but every rank receives identical bytes for each element.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "comm/transport.h"
#include "comm/world.h"
#include "engine/dtype.h"

namespace climseg::comm {

enum class AllreduceAlgo { ring, tree, halving_doubling, hierarchical, mpi, nccl, auto_ };

const char* algo_name(AllreduceAlgo a);        // "ring", "tree", "halving_doubling", "hierarchical", ...
AllreduceAlgo parse_algo(std::string_view s);  // the names above, plus "hd", "hier", "auto"

struct AllreduceOptions {
  int ports = 1;                   // multi-port split of the inter-node phase (hierarchical) and of ring
  int64_t chunk_bytes = 1 << 20;   // pipeline chunk of the tree algorithm
  double timeout_s = 0;            // > 0: every wait polls with this deadline and throws naming the peer
  int64_t small_bytes = 64 << 10;  // auto_: at most this many bytes counts as a small message
  Device device = Device::cpu;     // cpu: MPI transport on host buffers; cuda: NCCL transport on device buffers
  void* stream = nullptr;          // cudaStream_t for Device::cuda
  // Device buffers: false leaves the whole reduction queued on `stream` in stream order and returns at once (no
  // host wait, no deadline here): the caller orders later work after it (an event) and waits for `stream` with
  // wait_nccl_stream when it must (comm/data_parallel.cpp: once per step, before the optimizer). Host buffers: ignored.
  bool host_wait = true;
};

// The auto_ rule (pure): one rank -> ring (a copy); small messages (<= small_bytes) -> halving_doubling (log2 n
// latency terms); several nodes with more than one rank on some node -> hierarchical; otherwise ring.
AllreduceAlgo choose_algo(const Topology& t, int64_t bytes, const AllreduceOptions& opt = {});

// recv = sum over ranks of send (count elements of dt). send == recv is in-place. Collective: every rank calls it
// with the same count, dtype, algorithm and options. Throws climseg::Error on failure or timeout.
void allreduce(Communicator& comm, const void* send, void* recv, int64_t count, DType dt, AllreduceAlgo algo,
               const AllreduceOptions& opt = {});

// ---- schedules (pure; exposed for tests and the docs) ---------------------------------------------------------------

struct Transfer {
  enum Kind : uint8_t { send, recv_copy, recv_reduce };
  Kind kind;
  int peer;        // world rank
  int port;        // channel (communicator) index
  int tag;         // separates concurrent streams between the same two ranks
  int64_t offset;  // first element in the buffer
  int64_t count;   // elements (> 0)
};
struct Step {
  std::vector<Transfer> ops;
};
struct Schedule {
  std::vector<Step> steps;
  int64_t elems_sent() const;       // over all steps (for the cost model and tests)
  int64_t max_step_reduce() const;  // largest sum of recv_reduce counts in one step (scratch elements)
};

struct ScheduleParams {
  int ports = 1;
  int64_t chunk_elems = 1 << 18;  // tree pipeline chunk
};

// Algorithms ring, tree, halving_doubling, hierarchical; rank t.rank's part of the plan.
Schedule build_schedule(AllreduceAlgo algo, const Topology& t, int64_t count, const ScheduleParams& p = {});

// Runs a schedule over `tr`: data = sum over ranks of src (count elements of dt). src == data is in place.
// Out of place, nothing is copied up front: a range is read from src until the schedule first writes it in data
// (a first addition writes src + received into data), and ranges the schedule never writes are copied at the end.
void run_schedule(const Schedule& s, Transport& tr, const void* src, void* data, int64_t count, DType dt,
                  double timeout_s);

}  // namespace climseg::comm
