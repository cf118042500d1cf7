// climseg-bench allreduce (bench/bench_allreduce.cpp): nccl-tests-style sweep of comm/allreduce under mpirun. Built
// only where climseg_comm is (MPI found): CLIMSEG_BENCH_ALLREDUCE.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace climseg::bench {

struct AllreduceBenchOptions {
  int64_t minbytes = 1 << 20, maxbytes = 256 << 20;
  int64_t stepfactor = 2;  // multiply the size by this (nccl-tests -f); 1: add stepbytes
  int64_t stepbytes = 1 << 20;
  int iters = 20, warmup = 5;
  int check = 1;  // one verified call per row before timing
  std::vector<std::string> algos = {"all"};
  std::string dtype = "fp32";
  std::string device = "cpu";
  int ports = 1;
  int ranks_per_node = 0;  // > 0: emulated nodes (comm/world.h)
  double timeout_s = 0;
  bool log_choice = true;  // with --algo auto: print the comm layer's choices as comment lines
};

// Initialises and finalises MPI itself. Returns non-zero when a checked row had wrong elements.
int run_allreduce_bench(const AllreduceBenchOptions& o);

}  // namespace climseg::bench
