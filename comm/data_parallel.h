// Data-parallel training (the Trainer of train/ uses it) under mpirun/srun (docs/distributed.md, "Training on several ranks"):
// one rank per device, every rank a full replica; gradients fused into buckets of the flat gradient buffer and
// summed across ranks by comm::allreduce as backward produces them, on a communication thread (host buffers) or the
// NCCL transport (device buffers), overlapping the rest of backward; optional gradient lag 1 (the 2018 recipe:
// step t applies the reduced gradient of step t-1, whose allreduce overlaps all of step t). Also the collective
// helpers the trainer needs: sums of metrics, the average of the batch-norm running statistics, a replica check.
//
// Without MPI (comm/ranks_nompi.cpp) constructing one is an error; with one rank and no gradient lag the
// Trainer does not create one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/net.h"

namespace climseg::comm {

struct DistOptions {
  int ranks_per_node = 0;       // > 0: emulate nodes of this many consecutive ranks (testing the hierarchy)
  std::string algo = "auto";    // comm::AllreduceAlgo name
  int ports = 1;                // multi-port split of the inter-node phase
  double bucket_mb = 64;        // gradient bucket size
  bool overlap = true;          // reduce buckets while backward runs (false: one allreduce after backward)
  int lag = 0;                  // 0 or 1
  double timeout_s = 120;       // a peer silent this long fails the run, naming it
  int64_t check_replicas = 0;   // > 0: every this many steps, verify that all ranks hold identical weights
};

class DataParallel {
 public:
  // Collective. `grads` is the Net's flat gradient buffer; buckets are built from the parameters' offsets, the
  // last layers' first (they finish first in backward).
  DataParallel(const DistOptions& opt, const Net& net, Device device, ExecContext& ctx);
  ~DataParallel();

  int rank() const;
  int size() const;
  int local_rank() const;
  std::string topology() const;

  // The step's gradient flow. node_done(k): Net::backward's hook (starts the buckets that node completes).
  // finish(): after backward, waits until optimizer_grads() holds the SUM over ranks (the optimizer divides by
  // size()): the net's gradients of this step, or with lag the previous step's (zero at the first step).
  void node_done(int node);
  void finish();
  // With lag, after the optimizer step: this step's gradients go into the lag buffer and their allreduce starts,
  // overlapping the whole next step. Without lag: nothing.
  void after_step();
  // The buffer the optimizer reads (constant over the run): the net's gradient buffer, or the lag buffer.
  Tensor optimizer_grads() const;
  // With lag: the summed gradient waiting for the next step (for checkpoints), and restoring it.
  bool has_lag() const;
  Tensor lag_buffer();  // waits for its allreduce
  void set_lag_buffer(const Tensor& host);

  // Collectives on the host (main thread, no bucket in flight).
  void sum(std::vector<double>& v);
  void average_state(Net& net, ExecContext& ctx);  // batch-norm running statistics
  void check_replicas(const Tensor& master, int64_t step, ExecContext& ctx);
  std::string broadcast_string(const std::string& s);  // rank 0's value on every rank

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace climseg::comm
