// Topology (pure functions) and the Communicator's MPI handles; see comm/world.h.
#include "comm/world.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "comm/transport.h"
#include "engine/check.h"
#include "engine/check_mpi.h"
#include "engine/dtype.h"

namespace climseg::comm {

bool Topology::uniform() const {
  for (const auto& n : node_ranks)
    if (n.size() != node_ranks.front().size()) return false;
  return true;
}

std::string Topology::str() const {
  std::ostringstream os;
  os << size << (size == 1 ? " rank" : " ranks") << " on " << num_nodes << (num_nodes == 1 ? " node" : " nodes")
     << " (";
  for (int n = 0; n < num_nodes; ++n) os << (n ? "," : "") << node_ranks[n].size();
  os << ")";
  return os.str();
}

Topology make_topology(int rank, const std::vector<int>& node_of) {
  const int size = static_cast<int>(node_of.size());
  CS_CHECK(size > 0 && rank >= 0 && rank < size, "make_topology: rank ", rank, " of ", size);
  Topology t;
  t.rank = rank;
  t.size = size;
  t.node_of = node_of;
  t.num_nodes = *std::max_element(node_of.begin(), node_of.end()) + 1;
  t.node_ranks.assign(t.num_nodes, {});
  for (int r = 0; r < size; ++r) {
    CS_CHECK(node_of[r] >= 0, "make_topology: negative node index for rank ", r);
    t.node_ranks[node_of[r]].push_back(r);
  }
  for (int n = 0; n < t.num_nodes; ++n) CS_CHECK(!t.node_ranks[n].empty(), "make_topology: node ", n, " is empty");
  t.node = node_of[rank];
  const auto& mine = t.node_ranks[t.node];
  t.local_size = static_cast<int>(mine.size());
  t.local_rank = static_cast<int>(std::find(mine.begin(), mine.end(), rank) - mine.begin());
  return t;
}

std::vector<int> nodes_by_count(int size, int ranks_per_node) {
  CS_CHECK(ranks_per_node > 0, "ranks_per_node must be > 0, got ", ranks_per_node);
  std::vector<int> node_of(size);
  for (int r = 0; r < size; ++r) node_of[r] = r / ranks_per_node;
  return node_of;
}

std::vector<int> nodes_by_sizes(const std::vector<int>& sizes) {
  std::vector<int> node_of;
  for (size_t n = 0; n < sizes.size(); ++n) {
    CS_CHECK(sizes[n] > 0, "node sizes must be > 0, node ", n, " has ", sizes[n]);
    node_of.insert(node_of.end(), sizes[n], static_cast<int>(n));
  }
  return node_of;
}

// ---- Communicator -------------------------------------------------------------------------------------------------

namespace {

MPI_Comm dup_with_errors_return(MPI_Comm c) {
  MPI_Comm d = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_dup(c, &d));
  MPI_CHECK(MPI_Comm_set_errhandler(d, MPI_ERRORS_RETURN));
  return d;
}

// MPI user ops for 16-bit sums: convert both operands to fp32, add, round once to the 16-bit type.
void half_sum(void* in, void* inout, int* len, MPI_Datatype*) { host_reduce_sum(inout, in, inout, *len, DType::f16); }
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) { host_reduce_sum(inout, in, inout, *len, DType::bf16); }

}  // namespace

Communicator::Communicator(MPI_Comm parent, const TopologyOptions& opt) {
  int init = 0;
  MPI_Initialized(&init);
  CS_CHECK(init, "Communicator: MPI is not initialised");
  int rank = 0, size = 0;
  MPI_CHECK(MPI_Comm_rank(parent, &rank));
  MPI_CHECK(MPI_Comm_size(parent, &size));
  // Overrides are checked before any collective call, so a bad one throws on every rank alike.
  std::vector<int> node_of;
  if (!opt.node_sizes.empty()) {
    node_of = nodes_by_sizes(opt.node_sizes);
    CS_CHECK(static_cast<int>(node_of.size()) == size, "Communicator: node sizes add up to ", node_of.size(),
             " ranks, the communicator has ", size);
  } else if (opt.ranks_per_node > 0) {
    node_of = nodes_by_count(size, opt.ranks_per_node);
  }
  world_ = dup_with_errors_return(parent);
  if (node_of.empty()) {
    // Physical nodes: ranks that share memory. The node's key is its smallest world rank; keys are numbered in
    // increasing order, so node indices follow the ranks' order.
    MPI_Comm shared = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split_type(world_, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &shared));
    int key = rank;
    int node_key = 0;
    MPI_Allreduce(&key, &node_key, 1, MPI_INT, MPI_MIN, shared);
    MPI_Comm_free(&shared);
    std::vector<int> keys(size);
    MPI_CHECK(MPI_Allgather(&node_key, 1, MPI_INT, keys.data(), 1, MPI_INT, world_));
    std::map<int, int> index;
    for (int k : keys) index.emplace(k, 0);
    int n = 0;
    for (auto& [k, v] : index) v = n++;
    node_of.resize(size);
    for (int r = 0; r < size; ++r) node_of[r] = index[keys[r]];
  }
  topo_ = make_topology(rank, node_of);
  MPI_Comm c = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split(world_, topo_.node, topo_.local_rank, &c));
  intra_ = dup_with_errors_return(c);
  MPI_Comm_free(&c);
  MPI_CHECK(MPI_Comm_split(world_, topo_.local_rank, topo_.node, &c));
  inter_ = dup_with_errors_return(c);
  MPI_Comm_free(&c);
  log_ = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
}

Communicator::~Communicator() {
  nccl_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  for (MPI_Comm& c : ports_) MPI_Comm_free(&c);
  for (MPI_Comm* c : {&world_, &intra_, &inter_})
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  if (half_type_ != MPI_DATATYPE_NULL) MPI_Type_free(&half_type_);
  if (half_op_ != MPI_OP_NULL) MPI_Op_free(&half_op_);
  if (bf16_op_ != MPI_OP_NULL) MPI_Op_free(&bf16_op_);
}

MPI_Comm Communicator::port(int p) {
  CS_CHECK(p >= 0 && p < 64, "port index ", p, " out of range [0, 64)");
  while (static_cast<int>(ports_.size()) <= p) ports_.push_back(dup_with_errors_return(world_));
  return ports_[p];
}

void Communicator::log_once(const std::string& key, const std::string& line) {
  if (topo_.rank != 0 || !log_) return;
  if (logged_.insert(key).second) log_(line);
}

std::byte* Communicator::scratch(size_t bytes) {
  if (scratch_.size() < bytes) scratch_.resize(bytes);
  return scratch_.data();
}

MPI_Datatype Communicator::half_type() {
  if (half_type_ == MPI_DATATYPE_NULL) {
    MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &half_type_));
    MPI_CHECK(MPI_Type_commit(&half_type_));
  }
  return half_type_;
}
MPI_Op Communicator::half_sum_op() {
  if (half_op_ == MPI_OP_NULL) MPI_CHECK(MPI_Op_create(&half_sum, /*commute=*/1, &half_op_));
  return half_op_;
}
MPI_Op Communicator::bf16_sum_op() {
  if (bf16_op_ == MPI_OP_NULL) MPI_CHECK(MPI_Op_create(&bf16_sum, /*commute=*/1, &bf16_op_));
  return bf16_op_;
}

}  // namespace climseg::comm
