// Profiler: every kernel launch, library call, communication and I/O wait runs inside a scope with a fixed
// category (engine.md section 6). Each scope also opens an NVTX range in a CUDA build, so Nsight Systems shows the
// same names. With a Profiler attached to the ExecContext, scopes are timed (CUDA events on a CUDA context, wall
// time on the CPU) and their FLOPs and bytes summed per category; the report is the Gordon Bell paper's table:
//
//   category | #kern | time (ms) | math (TF) | mem (GB) | % time | % math peak | % mem peak
//
// Nested scopes: time is exclusive (a child's time is taken off its parent), so categories add up to the total.
// "idle" is the step time (begin_step..end_step) not covered by any scope.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/dtype.h"

struct CUstream_st;

namespace climseg {

class ExecContext;

enum class ProfCategory : uint8_t {
  fwd_conv,         // forward convolutions and deconvolutions
  fwd_pointwise,    // forward pointwise, normalisation, pooling, resampling, loss
  bwd_conv,         // backward convolutions (data and filter)
  bwd_pointwise,    // backward of everything else
  optimizer,        // optimizer step, gradient scaling and clipping
  copy_transpose,   // copies, concatenation copies, layout changes, host<->device transfers
  allreduce,        // gradient communication
  type_conversion,  // fp32 <-> fp16/bf16 casts
  data_wait,        // waiting for the input pipeline
  idle,             // derived: step time not inside any scope
  count
};
const char* prof_category_name(ProfCategory c);  // "Forward convolutions", ...
const char* prof_category_key(ProfCategory c);   // "fwd_conv", ... (CSV/JSON)

struct ProfRow {
  ProfCategory category;
  int64_t kernels = 0;
  double ms = 0;
  double flops = 0;
  double bytes = 0;
  double pct_time = 0;
  double pct_math_peak = -1;  // -1: peak unknown or no math
  double pct_mem_peak = -1;
};

struct ProfReport {
  std::vector<ProfRow> rows;  // one per category, in enum order, idle included
  ProfRow total;              // category field unused
  int steps = 0;
  std::string device;
  std::string table() const;  // readable, the paper's layout
  std::string csv() const;
  std::string json() const;
};

class Profiler {
 public:
  explicit Profiler(Device device = Device::cpu);
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Peak math rate (FLOP/s) and memory bandwidth (B/s) for the % of peak columns; 0 leaves them blank.
  void set_peaks(double flops_per_s, double bytes_per_s);

  // Scopes (use ProfileScope). `stream` is the CUDA stream to time on (null on CPU).
  int begin(ProfCategory c, const char* name, double flops, double bytes, CUstream_st* stream);
  void end(int token, CUstream_st* stream);

  // Step boundaries: the report's total time is the sum of step times; idle = total - all scopes.
  // `stream` is the stream the step's work runs on (ctx.stream(); null on the CPU): no default, because the legacy
  // default stream is not ordered with the contexts' non-blocking streams.
  void begin_step(CUstream_st* stream);
  void end_step(CUstream_st* stream);

  // Resolves timings (synchronises on outstanding CUDA events) and builds the report.
  ProfReport report();
  // Per-scope-name breakdown (name, category, calls, ms), heaviest first: "climseg time" per layer.
  struct NameRow {
    std::string name;
    ProfCategory category;
    int64_t calls;
    double ms;
    double flops;
    double bytes;
  };
  std::vector<NameRow> by_name();
  void reset();

 private:
  struct Impl;
  Impl* impl_;
};

// RAII scope: NVTX range always (CUDA builds), timing when ctx.profiler is set.
class ProfileScope {
 public:
  ProfileScope(ExecContext& ctx, ProfCategory c, const char* name, double flops = 0, double bytes = 0);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  ExecContext& ctx_;
  int token_ = -1;
};

}  // namespace climseg

#define CS_PROFILE_CONCAT_(a, b) a##b
#define CS_PROFILE_CONCAT(a, b) CS_PROFILE_CONCAT_(a, b)
#define CS_PROFILE_SCOPE(ctx, category, name, ...) \
  ::climseg::ProfileScope CS_PROFILE_CONCAT(cs_profile_scope_, __LINE__)((ctx), (category), (name), ##__VA_ARGS__)
