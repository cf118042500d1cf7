// Profiler: per-category accumulation of scope times, FLOPs and bytes, and the Gordon Bell paper's table.
// Host-side for every build; the CUDA events and NVTX ranges live behind engine/profiler_backend.h
// (profiler_cuda.cpp / profiler_nocuda.cpp) so this file needs no CUDA headers. docs/profiling.md explains the
// categories, exclusive time and the idle row.
//
// Bookkeeping: every begin() takes a slot (its index is the token) and pushes it on the stack of open scopes;
// the slot remembers its parent (the innermost open scope at begin). A scope's exclusive time is its inclusive
// time minus the inclusive time of its direct children. On the CPU a scope resolves at end(): its children ended
// before it and have already added their time to it. On CUDA end() only records an event; closed slots wait in
// closing order (children before parents) until report()/by_name() synchronise, or until a non-blocking poll finds
// their events complete, so the hot path never synchronises and the slots and events are recycled.
#include "engine/profiler.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/profiler_backend.h"

namespace climseg {

namespace {

constexpr int kNumCategories = static_cast<int>(ProfCategory::count);
constexpr int kIdle = static_cast<int>(ProfCategory::idle);

struct CategoryInfo {
  const char* name;  // table
  const char* key;   // CSV / JSON
};
constexpr CategoryInfo kCategories[kNumCategories] = {
    {"Forward convolutions", "fwd_conv"},
    {"Forward pointwise", "fwd_pointwise"},
    {"Backward convolutions", "bwd_conv"},
    {"Backward pointwise", "bwd_pointwise"},
    {"Optimizer", "optimizer"},
    {"Copies / transposes", "copy_transpose"},
    {"Allreduce", "allreduce"},
    {"Type conversions", "type_conversion"},
    {"Data wait", "data_wait"},
    {"Idle", "idle"},
};

int category_index(ProfCategory c) {
  int i = static_cast<int>(c);
  CS_CHECK(i >= 0 && i < kNumCategories, "invalid profiler category ", i);
  return i;
}

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Sums for one category, or one (name, category) pair.
struct Acc {
  int64_t calls = 0;
  double ms = 0;
  double flops = 0;
  double bytes = 0;
};

// One scope, open or closed-but-unresolved.
struct Record {
  ProfCategory category = ProfCategory::fwd_conv;
  int name_id = -1;
  int parent = -1;     // slot of the enclosing scope at begin(), -1 at the top level
  double flops = 0;
  double bytes = 0;
  double child_ms = 0;  // inclusive time of the direct children resolved so far
  Clock::time_point t0{};
  detail::ProfEvent ev0 = nullptr;
  detail::ProfEvent ev1 = nullptr;
};

struct StepRecord {
  Clock::time_point t0{};
  detail::ProfEvent ev0 = nullptr;
  detail::ProfEvent ev1 = nullptr;
};

// Transparent hash: name lookups from a const char* without building a std::string per scope.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// snprintf into a std::string (the table needs printf-style column widths).
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string s(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(s.data(), s.size() + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

double pct_of_peak(double amount, double ms, double peak_per_s) {
  if (peak_per_s <= 0 || amount <= 0 || ms <= 0) return -1;
  return amount / (ms * 1e-3 * peak_per_s) * 100.0;
}

// How often (in closed CUDA scopes) end() polls for completed events, keeping the pending queue short without
// ever blocking.
constexpr int kPollEvery = 256;

}  // namespace

const char* prof_category_name(ProfCategory c) { return kCategories[category_index(c)].name; }
const char* prof_category_key(ProfCategory c) { return kCategories[category_index(c)].key; }

// ---- Profiler::Impl ---------------------------------------------------------------------------------------------

struct Profiler::Impl {
  explicit Impl(Device d) : device(d) {}
  ~Impl() {
    for (detail::ProfEvent ev : all_events) detail::prof_event_destroy(ev);
  }

  Device device;
  double peak_flops = 0;
  double peak_bytes = 0;

  std::vector<Record> slots;
  std::vector<int> free_slots;
  std::vector<int> open;   // stack of open scopes (slots), innermost last
  std::deque<int> closed;  // CUDA: closed scopes awaiting their timings, in closing order
  int ends_since_poll = 0;

  std::vector<detail::ProfEvent> all_events;  // every event created, destroyed with the profiler
  std::vector<detail::ProfEvent> free_events;

  bool step_open = false;
  StepRecord step;
  std::deque<StepRecord> closed_steps;  // CUDA: ended steps awaiting their timings
  int steps = 0;
  double step_ms = 0;

  std::array<Acc, kNumCategories> categories{};
  std::vector<std::string> names;
  std::unordered_map<std::string, int, StringHash, std::equal_to<>> name_ids;
  std::vector<std::array<Acc, kNumCategories>> name_acc;  // [name_id][category]

  bool cuda() const { return device == Device::cuda; }

  detail::ProfEvent acquire_event() {
    if (!free_events.empty()) {
      detail::ProfEvent ev = free_events.back();
      free_events.pop_back();
      return ev;
    }
    // Grow ahead of the create, so that the push_back below cannot throw and leak the new event.
    if (all_events.size() == all_events.capacity()) all_events.reserve(std::max<size_t>(64, 2 * all_events.size()));
    detail::ProfEvent ev = detail::prof_event_create();
    all_events.push_back(ev);
    return ev;
  }
  void release_event(detail::ProfEvent& ev) {
    if (ev) free_events.push_back(ev);
    ev = nullptr;
  }

  int intern(const char* name) {
    std::string_view s = name ? name : "(unnamed)";
    auto it = name_ids.find(s);
    if (it != name_ids.end()) return it->second;
    int id = static_cast<int>(names.size());
    names.emplace_back(s);
    name_acc.emplace_back();
    name_ids.emplace(names.back(), id);
    return id;
  }

  int alloc_slot() {
    if (!free_slots.empty()) {
      int s = free_slots.back();
      free_slots.pop_back();
      slots[s] = Record{};
      return s;
    }
    slots.emplace_back();
    return static_cast<int>(slots.size()) - 1;
  }
  void free_slot(int s) {
    release_event(slots[s].ev0);
    release_event(slots[s].ev1);
    free_slots.push_back(s);
  }

  // Adds a finished scope with its inclusive time to the sums and to its parent, then recycles its slot.
  void resolve(int s, double inclusive_ms) {
    Record& r = slots[s];
    double exclusive = std::max(0.0, inclusive_ms - r.child_ms);  // event resolution can make it slightly < 0
    int c = static_cast<int>(r.category);
    for (Acc* a : {&categories[c], &name_acc[r.name_id][c]}) {
      a->calls += 1;
      a->ms += exclusive;
      a->flops += r.flops;
      a->bytes += r.bytes;
    }
    if (r.parent >= 0) slots[r.parent].child_ms += inclusive_ms;
    free_slot(s);
  }

  // CUDA: resolves closed scopes and steps in order. wait=false stops at the first whose events have not completed
  // (never blocks); wait=true synchronises on all of them.
  void drain(bool wait) {
    if (!cuda()) return;
    while (!closed.empty()) {
      int s = closed.front();
      Record& r = slots[s];
      if (!wait && !(detail::prof_event_ready(r.ev1) && detail::prof_event_ready(r.ev0))) break;
      double ms = detail::prof_event_elapsed_ms(r.ev0, r.ev1);
      closed.pop_front();
      resolve(s, ms);
    }
    while (!closed_steps.empty()) {
      StepRecord& st = closed_steps.front();
      if (!wait && !(detail::prof_event_ready(st.ev1) && detail::prof_event_ready(st.ev0))) break;
      step_ms += detail::prof_event_elapsed_ms(st.ev0, st.ev1);
      steps += 1;
      release_event(st.ev0);
      release_event(st.ev1);
      closed_steps.pop_front();
    }
  }

  // Drops everything recorded (events back to the pool); peaks and the event pool are kept.
  void clear() {
    for (int s : closed) free_slot(s);
    closed.clear();
    for (StepRecord& st : closed_steps) {
      release_event(st.ev0);
      release_event(st.ev1);
    }
    closed_steps.clear();
    slots.clear();
    free_slots.clear();
    ends_since_poll = 0;
    steps = 0;
    step_ms = 0;
    categories = {};
    names.clear();
    name_ids.clear();
    name_acc.clear();
  }
};

// ---- Profiler ---------------------------------------------------------------------------------------------------

Profiler::Profiler(Device device) {
  auto impl = std::make_unique<Impl>(device);
  if (device == Device::cuda) {
    // Fails here, with a clear message, in a CPU-only build; otherwise avoids creating events in the first step.
    impl->all_events.reserve(32);
    for (int i = 0; i < 32; ++i) {
      impl->all_events.push_back(detail::prof_event_create());  // cannot throw after the reserve
      impl->free_events.push_back(impl->all_events.back());
    }
  }
  impl_ = impl.release();
}

Profiler::~Profiler() { delete impl_; }

void Profiler::set_peaks(double flops_per_s, double bytes_per_s) {
  CS_CHECK(flops_per_s >= 0 && bytes_per_s >= 0, "profiler peaks must be >= 0, got ", flops_per_s, " FLOP/s and ",
           bytes_per_s, " B/s");
  impl_->peak_flops = flops_per_s;
  impl_->peak_bytes = bytes_per_s;
}

int Profiler::begin(ProfCategory c, const char* name, double flops, double bytes, CUstream_st* stream) {
  Impl& m = *impl_;
  CS_CHECK(category_index(c) != kIdle, "the idle category is derived; no scope can be opened in it");
  int s = m.alloc_slot();
  Record& r = m.slots[s];
  r.category = c;
  r.flops = flops;
  r.bytes = bytes;
  r.parent = m.open.empty() ? -1 : m.open.back();
  try {
    r.name_id = m.intern(name);
    m.open.push_back(s);
  } catch (...) {
    m.free_slot(s);
    throw;
  }
  if (m.cuda()) {
    try {
      m.slots[s].ev0 = m.acquire_event();
      detail::prof_event_record(m.slots[s].ev0, stream);
    } catch (...) {
      m.open.pop_back();
      m.free_slot(s);
      throw;
    }
  } else {
    m.slots[s].t0 = Clock::now();  // last, so that the bookkeeping above is not timed
  }
  return s;
}

void Profiler::end(int token, CUstream_st* stream) {
  Clock::time_point t1 = Clock::now();  // first, so that the bookkeeping below is not timed
  Impl& m = *impl_;
  CS_CHECK(!m.open.empty(), "profiler scope ", token, " ended, but no scope is open");
  CS_CHECK(m.open.back() == token, "profiler scope ", token, " ended out of order: the innermost open scope is ",
           m.open.back(), " ('", m.names[m.slots[m.open.back()].name_id], "')");
  m.open.pop_back();
  if (!m.cuda()) {
    m.resolve(token, ms_between(m.slots[token].t0, t1));
    return;
  }
  try {
    m.slots[token].ev1 = m.acquire_event();
    detail::prof_event_record(m.slots[token].ev1, stream);
    m.closed.push_back(token);
  } catch (...) {
    // The scope is already off the stack; drop it rather than leave a half-recorded entry behind.
    m.free_slot(token);
    throw;
  }
  if (++m.ends_since_poll >= kPollEvery) {
    m.ends_since_poll = 0;
    m.drain(false);
  }
}

void Profiler::begin_step(CUstream_st* stream) {
  Impl& m = *impl_;
  CS_CHECK(!m.step_open, "begin_step() called while a step is open (missing end_step())");
  m.step = StepRecord{};
  if (m.cuda()) {
    m.step.ev0 = m.acquire_event();
    try {
      detail::prof_event_record(m.step.ev0, stream);
    } catch (...) {
      m.release_event(m.step.ev0);
      throw;
    }
  } else {
    m.step.t0 = Clock::now();
  }
  m.step_open = true;
}

void Profiler::end_step(CUstream_st* stream) {
  Clock::time_point t1 = Clock::now();
  Impl& m = *impl_;
  CS_CHECK(m.step_open, "end_step() called without begin_step()");
  m.step_open = false;
  if (!m.cuda()) {
    m.step_ms += ms_between(m.step.t0, t1);
    m.steps += 1;
    return;
  }
  try {
    m.step.ev1 = m.acquire_event();
    detail::prof_event_record(m.step.ev1, stream);
    m.closed_steps.push_back(m.step);
  } catch (...) {
    m.release_event(m.step.ev0);
    m.release_event(m.step.ev1);
    throw;
  }
  m.step = StepRecord{};
  m.drain(false);  // a step boundary is a good moment to recycle what the GPU has finished
}

ProfReport Profiler::report() {
  Impl& m = *impl_;
  m.drain(true);
  ProfReport rep;
  rep.device = device_name(m.device);
  rep.steps = m.steps;
  rep.rows.resize(kNumCategories);
  double scope_ms = 0;
  for (int i = 0; i < kNumCategories; ++i) {
    ProfRow& row = rep.rows[i];
    row.category = static_cast<ProfCategory>(i);
    if (i == kIdle) continue;
    row.kernels = m.categories[i].calls;
    row.ms = m.categories[i].ms;
    row.flops = m.categories[i].flops;
    row.bytes = m.categories[i].bytes;
    scope_ms += row.ms;
  }
  // Idle only exists relative to marked steps. Scopes outside any step (or overlapping streams) can exceed the
  // step time; idle is then 0 and the total is the scopes' sum, so the rows always add up to the total.
  if (m.steps > 0) rep.rows[kIdle].ms = std::max(0.0, m.step_ms - scope_ms);
  ProfRow& tot = rep.total;
  tot.category = ProfCategory::count;
  for (const ProfRow& row : rep.rows) {
    tot.kernels += row.kernels;
    tot.ms += row.ms;
    tot.flops += row.flops;
    tot.bytes += row.bytes;
  }
  auto finish = [&](ProfRow& row) {
    row.pct_time = tot.ms > 0 ? row.ms / tot.ms * 100.0 : 0.0;
    row.pct_math_peak = pct_of_peak(row.flops, row.ms, m.peak_flops);
    row.pct_mem_peak = pct_of_peak(row.bytes, row.ms, m.peak_bytes);
  };
  for (ProfRow& row : rep.rows) finish(row);
  finish(tot);
  return rep;
}

std::vector<Profiler::NameRow> Profiler::by_name() {
  Impl& m = *impl_;
  m.drain(true);
  std::vector<NameRow> out;
  for (size_t id = 0; id < m.names.size(); ++id) {
    for (int c = 0; c < kNumCategories; ++c) {
      const Acc& a = m.name_acc[id][c];
      if (a.calls == 0) continue;
      out.push_back(NameRow{m.names[id], static_cast<ProfCategory>(c), a.calls, a.ms, a.flops, a.bytes});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const NameRow& a, const NameRow& b) {
    if (a.ms != b.ms) return a.ms > b.ms;
    if (a.name != b.name) return a.name < b.name;
    return a.category < b.category;
  });
  return out;
}

void Profiler::reset() {
  Impl& m = *impl_;
  CS_CHECK(m.open.empty(), "Profiler::reset() with ", m.open.size(), " scope(s) still open");
  CS_CHECK(!m.step_open, "Profiler::reset() inside a step (between begin_step() and end_step())");
  m.clear();
}

// ---- report output ----------------------------------------------------------------------------------------------

namespace {

std::string pct_cell(double pct, int width) {
  return pct < 0 ? format("%*s", width, "-") : format("%*.1f", width, pct);
}

std::string table_line(const char* name, const ProfRow& r) {
  return format("%-22s %7lld %10.3f %9.3f %9.3f ", name, static_cast<long long>(r.kernels), r.ms, r.flops * 1e-12,
                r.bytes * 1e-9) +
         format("%6.1f ", r.pct_time) + pct_cell(r.pct_math_peak, 6) + " " + pct_cell(r.pct_mem_peak, 5) + "\n";
}

std::string csv_number(double v) { return format("%.9g", v); }
std::string csv_pct(double v) { return v < 0 ? std::string() : format("%.6g", v); }

std::string csv_line(const char* key, const ProfRow& r) {
  return std::string(key) + "," + std::to_string(r.kernels) + "," + csv_number(r.ms) + "," +
         csv_number(r.flops * 1e-12) + "," + csv_number(r.bytes * 1e-9) + "," + csv_pct(r.pct_time) + "," +
         csv_pct(r.pct_math_peak) + "," + csv_pct(r.pct_mem_peak) + "\n";
}

nlohmann::ordered_json json_row(const char* key, const char* name, const ProfRow& r) {
  auto pct = [](double v) { return v < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v); };
  nlohmann::ordered_json j;
  j["category"] = key;
  j["name"] = name;
  j["kernels"] = r.kernels;
  j["time_ms"] = r.ms;
  j["math_tflop"] = r.flops * 1e-12;
  j["mem_gb"] = r.bytes * 1e-9;
  j["pct_time"] = r.pct_time;
  j["pct_math_peak"] = pct(r.pct_math_peak);
  j["pct_mem_peak"] = pct(r.pct_mem_peak);
  return j;
}

}  // namespace

std::string ProfReport::table() const {
  std::string s;
  if (steps > 0)
    s += format("Profile on %s, %d step(s); times are sums over all steps\n", device.c_str(), steps);
  else
    s += format("Profile on %s, no steps marked (total = sum of scopes, no idle)\n", device.c_str());
  s += format("%-22s %7s %10s %9s %9s %6s %6s %5s\n", "Category", "#Kern", "Time(ms)", "Math(TF)", "Mem(GB)",
              "%Time", "%Math", "%Mem");
  for (const ProfRow& r : rows) s += table_line(prof_category_name(r.category), r);
  s += std::string(81, '-') + "\n";
  s += table_line("Total", total);
  return s;
}

std::string ProfReport::csv() const {
  std::string s = "category,kernels,time_ms,math_tflop,mem_gb,pct_time,pct_math_peak,pct_mem_peak\n";
  for (const ProfRow& r : rows) s += csv_line(prof_category_key(r.category), r);
  s += csv_line("total", total);
  return s;
}

std::string ProfReport::json() const {
  nlohmann::ordered_json j;
  j["device"] = device;
  j["steps"] = steps;
  j["categories"] = nlohmann::ordered_json::array();
  for (const ProfRow& r : rows)
    j["categories"].push_back(json_row(prof_category_key(r.category), prof_category_name(r.category), r));
  j["total"] = json_row("total", "Total", total);
  return j.dump(2) + "\n";
}

// ---- ProfileScope -----------------------------------------------------------------------------------------------

ProfileScope::ProfileScope(ExecContext& ctx, ProfCategory c, const char* name, double flops, double bytes)
    : ctx_(ctx) {
  detail::nvtx_push(name);
  if (ctx.profiler) {
    try {
      token_ = ctx.profiler->begin(c, name, flops, bytes, ctx.stream());
    } catch (...) {
      detail::nvtx_pop();  // the destructor will not run
      throw;
    }
  }
}

ProfileScope::~ProfileScope() {
  // A destructor must not throw (it may run during unwinding); a failed end() is reported and the scope dropped.
  if (token_ >= 0 && ctx_.profiler) {
    try {
      ctx_.profiler->end(token_, ctx_.stream());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "climseg: profiler scope could not be closed: %s\n", e.what());
    }
  }
  detail::nvtx_pop();
}

}  // namespace climseg
