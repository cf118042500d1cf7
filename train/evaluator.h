// Validation: inference nets, one per batch size met (the last batch of an epoch may be smaller), that share a
// training net's weights by copy before their next pass, and the metrics of both reference systems over all the
// batches given (train/metrics.h), optionally with the all-background baseline's counts.
//
//   Evaluator ev(model, loss, H, W, device, precision);
//   ev.set_weights(trainer.net());
//   ev.begin(/*baseline=*/true);
//   while (a batch) ev.add(ctx, data, labels);
//   ev.sum_across(sum);                 // several ranks: one allreduce of the counts
//   ev.totals(), ev.baseline()
//
// The batches come in as tensors (the caller's loader), so the Evaluator needs no data library.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "engine/net.h"
#include "layers/softmax_xent.h"
#include "models/model.h"
#include "train/metrics.h"
#include "train/precision.h"

namespace climseg {

class Evaluator {
 public:
  Evaluator(ModelConfig m, SoftmaxXentConfig loss, int64_t height, int64_t width, Device dev, Precision prec);

  // The inference net for batch size b (built and compiled on first use).
  Net& net(int64_t batch);
  // The weights (parameters and running statistics) to evaluate: copied into each inference net before its next
  // use (the parameter layout depends on the graph, not on the batch, so the flat buffers match). `src` must
  // outlive the passes.
  void set_weights(const Net& src);

  // A pass: begin() clears the totals; add() runs one batch (data (N, H, W, C) in the net's dtype, labels
  // (N, H, W, 1) i32, on either device); with_baseline also counts the all-background prediction.
  void begin(bool with_baseline);
  void add(ExecContext& ctx, const Tensor& data, const Tensor& labels);
  // Several ranks: `sum` adds a vector of doubles across them (one call); afterwards every rank holds the totals.
  void sum_across(const std::function<void(std::vector<double>&)>& sum);

  const EvalTotals& totals() const { return totals_; }
  Baseline baseline() const;  // of this pass (begin(true))

 private:
  struct Entry {
    std::unique_ptr<Net> net;
    ModelGraph g;
    int64_t version = -1;  // of the weights it holds
  };
  Entry& entry(int64_t batch);

  ModelConfig m_;
  SoftmaxXentConfig loss_;
  int64_t H_, W_;
  Device dev_;
  Precision prec_;
  std::map<int64_t, Entry> nets_;
  const Net* src_ = nullptr;
  int64_t version_ = 0;
  bool with_baseline_ = false;
  EvalTotals totals_, baseline_totals_;
};

}  // namespace climseg
