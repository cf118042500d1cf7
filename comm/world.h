// The communication world: which rank sits on which node, and the MPI communicators our collectives use.
//
// Topology is plain data, computed by pure functions from "node of every rank" (tests build it by hand). Nodes
// come from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), or from an override that groups ranks into emulated nodes:
// `ranks_per_node` (consecutive ranks, the last node may be smaller) or an explicit list of node sizes (unequal
// sizes allowed, e.g. 5 ranks as 2,2,1). Within a node, local ranks follow world-rank order.
//
// Communicator owns duplicated MPI communicators, so our traffic never matches anyone else's messages:
//   world_    a dup of the parent communicator (MPI_Allreduce baseline, small control messages)
//   intra_    the ranks of my node (MPI_Comm_split by node)
//   inter_    the ranks with my local rank on every node (MPI_Comm_split by local rank)
//   ports_[p] P dups of the world communicator, one per emulated network "port" (comm/allreduce.h: multi-port
//             split); schedules address peers by world rank and pick the communicator by port.
// Every communicator gets MPI_ERRORS_RETURN, so an MPI failure becomes climseg::Error (MPI_CHECK) instead of an
// abort inside MPI. Include only where CLIMSEG_HAVE_MPI is defined (climseg_comm exists only then).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace climseg::comm {

struct Topology {
  int rank = 0, size = 1;              // in the world communicator
  int local_rank = 0, local_size = 1;  // within my node
  int node = 0, num_nodes = 1;
  std::vector<int> node_of;                  // (size) node index of every world rank
  std::vector<std::vector<int>> node_ranks;  // (num_nodes) world ranks of each node, in local-rank order

  bool multi_node() const { return num_nodes > 1; }
  bool uniform() const;     // every node has the same number of ranks
  std::string str() const;  // "8 ranks on 3 nodes (3,3,2)"
};

// Pure: the topology seen by `rank` given the node index of every rank. Node indices must be 0..N-1 with every
// node non-empty; local ranks follow world-rank order within a node.
Topology make_topology(int rank, const std::vector<int>& node_of);
// Pure: node_of for `size` ranks grouped `ranks_per_node` at a time (last node smaller when it does not divide).
std::vector<int> nodes_by_count(int size, int ranks_per_node);
// Pure: node_of for consecutive nodes of the given sizes (their sum must be the number of ranks).
std::vector<int> nodes_by_sizes(const std::vector<int>& sizes);

struct TopologyOptions {
  int ranks_per_node = 0;       // > 0: emulated nodes of this many consecutive ranks
  std::vector<int> node_sizes;  // non-empty: emulated nodes of these sizes (overrides ranks_per_node)
};

// Receives one line for each new (algorithm, size class) choice; called on rank 0 only.
using LogFn = std::function<void(const std::string&)>;

class Communicator {
 public:
  // Collective over `parent`. MPI must be initialised. Throws climseg::Error on a bad override.
  explicit Communicator(MPI_Comm parent = MPI_COMM_WORLD, const TopologyOptions& opt = {});
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  const Topology& topology() const { return topo_; }
  int rank() const { return topo_.rank; }
  int size() const { return topo_.size; }
  MPI_Comm world() const { return world_; }
  MPI_Comm intra() const { return intra_; }
  MPI_Comm inter() const { return inter_; }
  // The communicator of emulated port p (created on first use; collective: every rank asks for the same ports in
  // the same order, which allreduce guarantees by asking for 0..P-1 before any traffic).
  MPI_Comm port(int p);

  // Logging of algorithm choices (default: one line on stderr from rank 0). An empty function silences it.
  void set_logger(LogFn fn) { log_ = std::move(fn); }
  // Logs `line` on rank 0 the first time `key` is seen (allreduce's keys: "algo/size class/auto|forced").
  void log_once(const std::string& key, const std::string& line);

  // Host scratch of at least `bytes`, owned by the communicator and reused across calls.
  std::byte* scratch(size_t bytes);

  // MPI objects for 16-bit sums in MPI_Allreduce (the 2018 fork's custom FP16 op): a 2-byte contiguous type and
  // user ops that add in fp32 and round once. Created on first use.
  MPI_Datatype half_type();
  MPI_Op half_sum_op();
  MPI_Op bf16_sum_op();

  // Backend state that lives as long as the communicator (the NCCL communicator of comm/transport_nccl.cpp);
  // released before the MPI handles.
  std::shared_ptr<void>& nccl_state() { return nccl_; }

 private:
  std::shared_ptr<void> nccl_;
  Topology topo_;
  MPI_Comm world_ = MPI_COMM_NULL, intra_ = MPI_COMM_NULL, inter_ = MPI_COMM_NULL;
  std::vector<MPI_Comm> ports_;
  LogFn log_;
  std::set<std::string> logged_;
  std::vector<std::byte> scratch_;
  MPI_Datatype half_type_ = MPI_DATATYPE_NULL;
  MPI_Op half_op_ = MPI_OP_NULL, bf16_op_ = MPI_OP_NULL;
};

// The CUDA device a rank uses: its local rank modulo the visible devices (cuda_device_for_local_rank, the trainer's
// rule too; with fewer devices than ranks on a node the ranks share them instead of failing cudaSetDevice).
inline int cuda_device_for(const Topology& t, int device_count) {
  return cuda_device_for_local_rank(t.local_rank, device_count);
}
inline int cuda_device_for(const Topology& t) { return cuda_device_for(t, cuda_device_count()); }

}  // namespace climseg::comm
