// Profiler on a CPU context (wall time): per-category sums, exclusive nesting, idle accounting, % of peak, the
// three output formats, the per-name breakdown and misuse errors. Timing checks assert relationships with wide
// margins because the test machine is shared and loaded; sleeps only ever make intervals longer, never shorter.
#include <catch2/catch.hpp>

#include <chrono>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/profiler.h"

using climseg::Device;
using climseg::ExecContext;
using climseg::ProfCategory;
using climseg::Profiler;
using climseg::ProfileScope;
using climseg::ProfReport;

namespace {

using Clock = std::chrono::steady_clock;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

double elapsed_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

const climseg::ProfRow& row(const ProfReport& r, ProfCategory c) { return r.rows.at(static_cast<size_t>(c)); }

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) out.push_back(l);
  return out;
}

std::vector<std::string> split_csv(const std::string& l) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t p = l.find(',', start);
    out.push_back(l.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

constexpr int kCategories = static_cast<int>(ProfCategory::count);

}  // namespace

TEST_CASE("profiler category names and keys", "[profiler]") {
  std::set<std::string> names, keys;
  for (int i = 0; i < kCategories; ++i) {
    names.insert(climseg::prof_category_name(static_cast<ProfCategory>(i)));
    keys.insert(climseg::prof_category_key(static_cast<ProfCategory>(i)));
  }
  CHECK(names.size() == 10);
  CHECK(keys.size() == 10);
  CHECK(std::string(climseg::prof_category_key(ProfCategory::fwd_conv)) == "fwd_conv");
  CHECK(std::string(climseg::prof_category_key(ProfCategory::idle)) == "idle");
  CHECK(std::string(climseg::prof_category_name(ProfCategory::bwd_conv)) == "Backward convolutions");
  CHECK_THROWS_AS(climseg::prof_category_name(ProfCategory::count), climseg::Error);
}

TEST_CASE("profiler counts scopes and sums flops and bytes per category", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  for (int i = 0; i < 3; ++i) ProfileScope s(ctx, ProfCategory::fwd_conv, "conv1", 1e9, 2e6);
  { ProfileScope s(ctx, ProfCategory::fwd_conv, "conv2", 5e8, 1e6); }
  { CS_PROFILE_SCOPE(ctx, ProfCategory::bwd_pointwise, "relu"); }
  { CS_PROFILE_SCOPE(ctx, ProfCategory::optimizer, "sgd", 10.0, 20.0); }
  ProfReport r = prof.report();
  REQUIRE(r.rows.size() == static_cast<size_t>(kCategories));
  for (int i = 0; i < kCategories; ++i) CHECK(r.rows[i].category == static_cast<ProfCategory>(i));
  CHECK(row(r, ProfCategory::fwd_conv).kernels == 4);
  CHECK(row(r, ProfCategory::fwd_conv).flops == Approx(3.5e9));
  CHECK(row(r, ProfCategory::fwd_conv).bytes == Approx(7e6));
  CHECK(row(r, ProfCategory::bwd_pointwise).kernels == 1);
  CHECK(row(r, ProfCategory::bwd_pointwise).flops == 0);
  CHECK(row(r, ProfCategory::optimizer).kernels == 1);
  CHECK(row(r, ProfCategory::optimizer).bytes == Approx(20.0));
  CHECK(row(r, ProfCategory::allreduce).kernels == 0);
  CHECK(row(r, ProfCategory::idle).kernels == 0);
  CHECK(row(r, ProfCategory::idle).ms == 0);  // no steps marked: no idle
  CHECK(r.steps == 0);
  CHECK(r.device == "cpu");
  CHECK(r.total.kernels == 6);
  CHECK(r.total.flops == Approx(3.5e9 + 10.0));
  CHECK(r.total.bytes == Approx(7e6 + 20.0 + 0.0));
  double sum = 0;
  for (const auto& x : r.rows) sum += x.ms;
  CHECK(r.total.ms == Approx(sum));
  CHECK(r.total.pct_time == Approx(100.0));
}

TEST_CASE("profiler nested scopes use exclusive time and the step total is the wall time", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  double parent_inclusive = 0, child_wall = 0, step_wall = 0;
  Clock::time_point step0 = Clock::now();
  prof.begin_step(nullptr);
  // The outside clocks start before a scope opens and stop after it closes, so they bound the scope's own time.
  Clock::time_point p0 = Clock::now();
  {
    ProfileScope parent(ctx, ProfCategory::fwd_conv, "parent");
    sleep_ms(20);
    Clock::time_point c0 = Clock::now();
    {
      ProfileScope child(ctx, ProfCategory::copy_transpose, "child");
      sleep_ms(30);
    }
    child_wall = elapsed_ms(c0);
    sleep_ms(20);
  }
  parent_inclusive = elapsed_ms(p0);
  sleep_ms(20);  // inside the step, outside any scope: idle
  prof.end_step(nullptr);
  step_wall = elapsed_ms(step0);

  ProfReport r = prof.report();
  const double parent_ms = row(r, ProfCategory::fwd_conv).ms;
  const double child_ms = row(r, ProfCategory::copy_transpose).ms;
  const double idle_ms = row(r, ProfCategory::idle).ms;
  CHECK(r.steps == 1);
  CHECK(child_ms >= 30.0);
  CHECK(child_ms <= child_wall + 1.0);
  CHECK(parent_ms >= 40.0);                    // its own two sleeps
  CHECK(parent_ms < parent_inclusive - 29.0);  // the child's >= 30 ms is not in it
  CHECK(parent_ms + child_ms <= parent_inclusive + 1.0);
  CHECK(idle_ms >= 19.0);
  CHECK(idle_ms < step_wall - 69.0);  // the scopes' >= 70 ms are not idle
  // Rows add up to the total, and the total is the step's wall time (measured just outside begin/end_step).
  double sum = 0;
  for (const auto& x : r.rows) sum += x.ms;
  CHECK(sum == Approx(r.total.ms).epsilon(1e-9));
  CHECK(r.total.ms <= step_wall + 1.0);
  CHECK(r.total.ms >= 90.0);
  CHECK(r.total.ms == Approx(step_wall).margin(50.0));  // wide: the loaded machine may preempt us between clocks
  CHECK(row(r, ProfCategory::fwd_conv).kernels == 1);
  CHECK(row(r, ProfCategory::copy_transpose).kernels == 1);
  CHECK(row(r, ProfCategory::idle).pct_time == Approx(idle_ms / r.total.ms * 100.0));
}

TEST_CASE("profiler idle accounting over several steps", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  double wall = 0;
  for (int step = 0; step < 3; ++step) {
    Clock::time_point t0 = Clock::now();
    prof.begin_step(nullptr);
    { CS_PROFILE_SCOPE(ctx, ProfCategory::data_wait, "wait", 0.0, 1e6); sleep_ms(5); }
    sleep_ms(10);
    prof.end_step(nullptr);
    wall += elapsed_ms(t0);
  }
  ProfReport r = prof.report();
  CHECK(r.steps == 3);
  CHECK(row(r, ProfCategory::data_wait).kernels == 3);
  CHECK(row(r, ProfCategory::data_wait).ms >= 15.0);
  CHECK(row(r, ProfCategory::idle).ms >= 30.0);
  CHECK(r.total.ms <= wall + 1.0);
  CHECK(r.total.ms == Approx(row(r, ProfCategory::data_wait).ms + row(r, ProfCategory::idle).ms));
}

TEST_CASE("profiler idle is clamped at zero when scopes lie outside steps", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  { CS_PROFILE_SCOPE(ctx, ProfCategory::allreduce, "outside"); sleep_ms(20); }
  prof.begin_step(nullptr);
  prof.end_step(nullptr);  // a near-empty step
  ProfReport r = prof.report();
  CHECK(r.steps == 1);
  CHECK(row(r, ProfCategory::idle).ms == 0);
  CHECK(r.total.ms == Approx(row(r, ProfCategory::allreduce).ms));  // the total still sums the rows
}

TEST_CASE("profile scopes are no-ops without a profiler", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  REQUIRE(ctx.profiler == nullptr);
  {
    CS_PROFILE_SCOPE(ctx, ProfCategory::fwd_conv, "unprofiled", 1e9, 1e9);
    ProfileScope nested(ctx, ProfCategory::bwd_conv, "unprofiled nested");
  }
  ExecContext other(Device::cpu);
  other.profiler = &prof;  // a profiler on another context sees nothing from ctx
  { ProfileScope s(ctx, ProfCategory::fwd_conv, "still unprofiled"); }
  ProfReport r = prof.report();
  CHECK(r.total.kernels == 0);
  CHECK(r.total.ms == 0);
  CHECK(r.total.pct_time == 0);
  CHECK(prof.by_name().empty());
}

TEST_CASE("profiler percent of peak", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  auto run = [&] {
    { CS_PROFILE_SCOPE(ctx, ProfCategory::fwd_conv, "conv", 1e9, 1e6); sleep_ms(10); }
    { CS_PROFILE_SCOPE(ctx, ProfCategory::type_conversion, "cast", 0.0, 4e6); sleep_ms(5); }
  };

  SECTION("unknown without peaks") {
    run();
    ProfReport r = prof.report();
    for (const auto& x : r.rows) {
      CHECK(x.pct_math_peak == -1);
      CHECK(x.pct_mem_peak == -1);
    }
    CHECK(r.total.pct_math_peak == -1);
    std::vector<std::string> t = lines(r.table());
    bool found = false;
    for (const std::string& l : t) {
      if (l.rfind("Forward convolutions", 0) != 0) continue;
      found = true;
      CHECK(l.size() >= 3);
      CHECK(l.substr(l.size() - 1) == "-");  // %Mem
      CHECK(l.find(" - ") != std::string::npos);  // %Math
    }
    CHECK(found);
    std::vector<std::string> c = lines(r.csv());
    std::vector<std::string> f = split_csv(c.at(1));
    REQUIRE(f.size() == 8);
    CHECK(f[0] == "fwd_conv");
    CHECK(f[6].empty());
    CHECK(f[7].empty());
    CHECK_FALSE(f[5].empty());
  }

  SECTION("computed with peaks") {
    prof.set_peaks(1e12, 1e9);  // 1 TFLOP/s, 1 GB/s
    run();
    ProfReport r = prof.report();
    const auto& conv = row(r, ProfCategory::fwd_conv);
    const auto& cast = row(r, ProfCategory::type_conversion);
    REQUIRE(conv.ms > 0);
    CHECK(conv.pct_math_peak == Approx(1e9 / (conv.ms * 1e-3 * 1e12) * 100.0));
    CHECK(conv.pct_mem_peak == Approx(1e6 / (conv.ms * 1e-3 * 1e9) * 100.0));
    CHECK(conv.pct_math_peak > 0);
    CHECK(conv.pct_math_peak <= 10.0 + 1e-9);  // >= 10 ms for 1 GFLOP at 1 TFLOP/s is at most 10%
    CHECK(cast.pct_math_peak == -1);           // no math in it
    CHECK(cast.pct_mem_peak == Approx(4e6 / (cast.ms * 1e-3 * 1e9) * 100.0));
    CHECK(row(r, ProfCategory::optimizer).pct_mem_peak == -1);  // no scopes
    CHECK(r.total.pct_math_peak == Approx(1e9 / (r.total.ms * 1e-3 * 1e12) * 100.0));
    CHECK(r.total.pct_mem_peak == Approx(5e6 / (r.total.ms * 1e-3 * 1e9) * 100.0));
    std::vector<std::string> c = lines(r.csv());
    std::vector<std::string> f = split_csv(c.at(1));
    REQUIRE(f.size() == 8);
    CHECK_FALSE(f[6].empty());
    CHECK_FALSE(f[7].empty());
  }
  CHECK_THROWS_AS(prof.set_peaks(-1, 0), climseg::Error);
}

TEST_CASE("profiler table, csv and json outputs", "[profiler]") {
  Profiler prof;
  prof.set_peaks(1e12, 1e11);
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  prof.begin_step(nullptr);
  { CS_PROFILE_SCOPE(ctx, ProfCategory::fwd_conv, "conv", 2e9, 3e8); sleep_ms(2); }
  { CS_PROFILE_SCOPE(ctx, ProfCategory::bwd_conv, "conv", 4e9, 6e8); sleep_ms(4); }
  prof.end_step(nullptr);
  ProfReport r = prof.report();

  SECTION("table") {
    std::vector<std::string> t = lines(r.table());
    REQUIRE(t.size() == 1 + 1 + 10 + 1 + 1);  // title, header, categories, rule, total
    CHECK(t[1].rfind("Category", 0) == 0);
    CHECK(t[1].find("#Kern") != std::string::npos);
    CHECK(t[1].find("%Mem") != std::string::npos);
    CHECK(t[2].rfind("Forward convolutions", 0) == 0);
    CHECK(t[11].rfind("Idle", 0) == 0);
    CHECK(t[13].rfind("Total", 0) == 0);
    CHECK(t[13].find("100.0") != std::string::npos);
  }

  SECTION("csv") {
    std::vector<std::string> c = lines(r.csv());
    REQUIRE(c.size() == 12);
    CHECK(c[0] == "category,kernels,time_ms,math_tflop,mem_gb,pct_time,pct_math_peak,pct_mem_peak");
    for (int i = 0; i < kCategories; ++i) {
      std::vector<std::string> f = split_csv(c[1 + i]);
      REQUIRE(f.size() == 8);
      CHECK(f[0] == climseg::prof_category_key(static_cast<ProfCategory>(i)));
    }
    std::vector<std::string> fwd = split_csv(c[1]);
    CHECK(fwd[1] == "1");
    CHECK(std::stod(fwd[3]) == Approx(2e-3));  // TFLOP
    CHECK(std::stod(fwd[4]) == Approx(0.3));   // GB
    std::vector<std::string> tot = split_csv(c[11]);
    REQUIRE(tot.size() == 8);
    CHECK(tot[0] == "total");
    CHECK(tot[1] == "2");
    CHECK(std::stod(tot[2]) == Approx(r.total.ms));
    CHECK(std::stod(tot[5]) == Approx(100.0));
  }

  SECTION("json") {
    nlohmann::json j = nlohmann::json::parse(r.json());
    CHECK(j["device"] == "cpu");
    CHECK(j["steps"] == 1);
    REQUIRE(j["categories"].is_array());
    REQUIRE(j["categories"].size() == 10);
    for (int i = 0; i < kCategories; ++i)
      CHECK(j["categories"][i]["category"] == climseg::prof_category_key(static_cast<ProfCategory>(i)));
    const auto& bwd = j["categories"][2];
    CHECK(bwd["kernels"] == 1);
    CHECK(bwd["math_tflop"].get<double>() == Approx(4e-3));
    CHECK(bwd["mem_gb"].get<double>() == Approx(0.6));
    CHECK(bwd["pct_math_peak"].is_number());
    CHECK(j["categories"][4]["pct_math_peak"].is_null());  // optimizer: nothing recorded
    CHECK(j["total"]["kernels"] == 2);
    CHECK(j["total"]["time_ms"].get<double>() == Approx(r.total.ms));
    CHECK(j["total"]["pct_time"].get<double>() == Approx(100.0));
  }
}

TEST_CASE("profiler by_name aggregates per name and category, heaviest first", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  for (int i = 0; i < 2; ++i) {
    { ProfileScope s(ctx, ProfCategory::fwd_conv, "conv1", 100.0, 10.0); sleep_ms(30); }
    { ProfileScope s(ctx, ProfCategory::bwd_conv, "conv1", 200.0, 20.0); sleep_ms(1); }
    {
      std::string transient = "relu1";  // the profiler must copy the name, not keep the pointer
      ProfileScope s(ctx, ProfCategory::fwd_pointwise, transient.c_str());
    }
  }
  std::vector<Profiler::NameRow> rows = prof.by_name();
  REQUIRE(rows.size() == 3);
  for (size_t i = 1; i < rows.size(); ++i) CHECK(rows[i - 1].ms >= rows[i].ms);
  CHECK(rows[0].name == "conv1");  // >= 60 ms of sleep against ~2 ms for the others
  CHECK(rows[0].category == ProfCategory::fwd_conv);
  CHECK(rows[0].calls == 2);
  CHECK(rows[0].ms >= 60.0);
  CHECK(rows[0].flops == Approx(200.0));
  CHECK(rows[0].bytes == Approx(20.0));
  auto find = [&](const std::string& name, ProfCategory c) -> const Profiler::NameRow& {
    for (const auto& r : rows)
      if (r.name == name && r.category == c) return r;
    FAIL("no by_name row for " << name);
    return rows.front();
  };
  const auto& bwd = find("conv1", ProfCategory::bwd_conv);
  CHECK(bwd.calls == 2);
  CHECK(bwd.ms >= 2.0);
  CHECK(bwd.flops == Approx(400.0));
  CHECK(bwd.bytes == Approx(40.0));
  const auto& relu = find("relu1", ProfCategory::fwd_pointwise);
  CHECK(relu.calls == 2);
  CHECK(relu.flops == 0);
}

TEST_CASE("profiler reset clears everything but the peaks", "[profiler]") {
  Profiler prof;
  prof.set_peaks(1e12, 1e9);
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  prof.begin_step(nullptr);
  { CS_PROFILE_SCOPE(ctx, ProfCategory::fwd_conv, "conv", 1e9, 1e6); sleep_ms(2); }
  prof.end_step(nullptr);
  REQUIRE(prof.report().total.kernels == 1);
  prof.reset();
  ProfReport r = prof.report();
  CHECK(r.steps == 0);
  CHECK(r.total.kernels == 0);
  CHECK(r.total.ms == 0);
  CHECK(prof.by_name().empty());
  // Usable again after reset, with the peaks still set.
  { CS_PROFILE_SCOPE(ctx, ProfCategory::fwd_conv, "conv", 1e9, 1e6); sleep_ms(2); }
  r = prof.report();
  CHECK(r.total.kernels == 1);
  CHECK(row(r, ProfCategory::fwd_conv).pct_math_peak > 0);
}

TEST_CASE("profiler rejects misuse with climseg::Error", "[profiler]") {
  Profiler prof;
  CHECK_THROWS_AS(prof.end_step(nullptr), climseg::Error);
  prof.begin_step(nullptr);
  CHECK_THROWS_AS(prof.begin_step(nullptr), climseg::Error);
  CHECK_THROWS_AS(prof.reset(), climseg::Error);  // inside a step
  prof.end_step(nullptr);

  CHECK_THROWS_AS(prof.begin(ProfCategory::idle, "idle", 0, 0, nullptr), climseg::Error);
  CHECK_THROWS_AS(prof.end(0, nullptr), climseg::Error);  // nothing open
  int outer = prof.begin(ProfCategory::fwd_conv, "outer", 0, 0, nullptr);
  int inner = prof.begin(ProfCategory::fwd_pointwise, "inner", 0, 0, nullptr);
  CHECK_THROWS_AS(prof.end(outer, nullptr), climseg::Error);  // out of order: inner is still open
  CHECK_THROWS_AS(prof.reset(), climseg::Error);              // scopes open
  prof.end(inner, nullptr);
  prof.end(outer, nullptr);
  ProfReport r = prof.report();
  CHECK(r.total.kernels == 2);
  CHECK_NOTHROW(prof.reset());
}

TEST_CASE("profile scopes close during exception unwinding", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  CHECK_THROWS_AS(([&] {
                    CS_PROFILE_SCOPE(ctx, ProfCategory::fwd_conv, "outer");
                    CS_PROFILE_SCOPE(ctx, ProfCategory::fwd_pointwise, "inner");
                    CS_THROW("layer failed");
                  }()),
                  climseg::Error);
  ProfReport r = prof.report();
  CHECK(r.total.kernels == 2);
  CHECK_NOTHROW(prof.reset());  // nothing left open
}

TEST_CASE("profiler handles many nested scopes per step", "[profiler]") {
  Profiler prof;
  ExecContext ctx(Device::cpu);
  ctx.profiler = &prof;
  for (int step = 0; step < 3; ++step) {
    prof.begin_step(nullptr);
    for (int i = 0; i < 2000; ++i) {
      ProfileScope a(ctx, ProfCategory::bwd_conv, "conv", 2.0, 1.0);
      ProfileScope b(ctx, ProfCategory::bwd_pointwise, i % 2 ? "odd" : "even", 0.0, 1.0);
    }
    prof.end_step(nullptr);
  }
  ProfReport r = prof.report();
  CHECK(r.steps == 3);
  CHECK(row(r, ProfCategory::bwd_conv).kernels == 6000);
  CHECK(row(r, ProfCategory::bwd_pointwise).kernels == 6000);
  CHECK(row(r, ProfCategory::bwd_conv).flops == Approx(12000.0));
  CHECK(r.total.bytes == Approx(12000.0));
  CHECK(prof.by_name().size() == 3);
  double sum = 0;
  for (const auto& x : r.rows) sum += x.ms;
  CHECK(sum == Approx(r.total.ms).epsilon(1e-9));
}

#if !defined(CLIMSEG_HAVE_CUDA)
TEST_CASE("a CUDA profiler cannot be made in a CPU-only build", "[profiler]") {
  try {
    Profiler prof(Device::cuda);
    FAIL("Profiler(Device::cuda) did not throw");
  } catch (const climseg::Error& e) {
    CHECK(std::string(e.what()).find("without CUDA") != std::string::npos);
  }
}
#endif
