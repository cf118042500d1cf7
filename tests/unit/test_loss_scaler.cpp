// train/loss_scaler: the dynamic state machine step by step (growth exactly at growth_interval, backoff resets
// the counter, repeated overflows, the floor and the ceiling), static and none modes, state round trips (also
// through checkpoint metadata), and configuration errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "train/loss_scaler.h"

using namespace climseg;
using Catch::Contains;

namespace {

LossScalerConfig dynamic_cfg() { return LossScalerConfig{}; }

void clean(LossScaler& s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s.update(true);
}

}  // namespace

TEST_CASE("dynamic: the defaults are PyTorch's (2^16, x2 after 2000 clean steps, x0.5)", "[loss_scaler]") {
  const LossScalerConfig c;
  CHECK(c.mode == LossScaleMode::dynamic);
  CHECK(c.init_scale == 65536.0);
  CHECK(c.growth_factor == 2.0);
  CHECK(c.backoff_factor == 0.5);
  CHECK(c.growth_interval == 2000);
  const LossScaler s;
  CHECK(s.scale() == 65536.0);
  CHECK(s.inverse() == 1.0 / 65536.0);
  CHECK(s.state().clean_steps == 0);
  CHECK(s.state().skipped_steps == 0);
}

TEST_CASE("dynamic: grows exactly after growth_interval clean steps, not one before", "[loss_scaler]") {
  LossScaler s(dynamic_cfg());
  clean(s, 1999);
  CHECK(s.scale() == 65536.0);
  CHECK(s.state().clean_steps == 1999);
  s.update(true);  // the 2000th
  CHECK(s.scale() == 131072.0);
  CHECK(s.inverse() == 1.0 / 131072.0);
  CHECK(s.state().clean_steps == 0);
  // The next growth needs another full interval.
  clean(s, 1999);
  CHECK(s.scale() == 131072.0);
  s.update(true);
  CHECK(s.scale() == 262144.0);
  CHECK(s.state().skipped_steps == 0);
}

TEST_CASE("dynamic: an overflow halves the scale and restarts the clean count", "[loss_scaler]") {
  LossScaler s(dynamic_cfg());
  clean(s, 1500);
  s.update(false);
  CHECK(s.scale() == 32768.0);
  CHECK(s.state().clean_steps == 0);
  CHECK(s.state().skipped_steps == 1);
  // 1500 + 1999 clean steps around the overflow: no growth, the count restarted at the overflow.
  clean(s, 1999);
  CHECK(s.scale() == 32768.0);
  s.update(true);
  CHECK(s.scale() == 65536.0);
  // An overflow on the step that would have grown: backoff, no growth.
  clean(s, 1999);
  s.update(false);
  CHECK(s.scale() == 32768.0);
  CHECK(s.state().clean_steps == 0);
  CHECK(s.state().skipped_steps == 2);
}

TEST_CASE("dynamic: repeated overflows halve every time, down to the floor", "[loss_scaler]") {
  LossScaler s(dynamic_cfg());
  for (int i = 1; i <= 16; ++i) {
    s.update(false);
    CHECK(s.scale() == std::ldexp(1.0, 16 - i));
  }
  CHECK(s.scale() == 1.0);  // 2^16 * 2^-16: the default floor, min_scale = 1
  s.update(false);
  s.update(false);
  CHECK(s.scale() == 1.0);  // stays at the floor (PyTorch would go on halving)
  CHECK(s.state().skipped_steps == 18);
  CHECK(s.state().clean_steps == 0);
  // From the floor it grows again like anywhere else.
  clean(s, 2000);
  CHECK(s.scale() == 2.0);

  // A floor that is not a power-of-2 step away is clamped to exactly.
  LossScalerConfig c = dynamic_cfg();
  c.init_scale = 8.0;
  c.min_scale = 3.0;
  LossScaler t(c);
  t.update(false);
  CHECK(t.scale() == 4.0);
  t.update(false);
  CHECK(t.scale() == 3.0);
}

TEST_CASE("dynamic: growth stops at max_scale and still resets the counter", "[loss_scaler]") {
  LossScalerConfig c = dynamic_cfg();
  c.init_scale = 4.0;
  c.max_scale = 12.0;
  c.growth_interval = 3;
  LossScaler s(c);
  clean(s, 3);
  CHECK(s.scale() == 8.0);
  clean(s, 3);
  CHECK(s.scale() == 12.0);
  CHECK(s.state().clean_steps == 0);
  clean(s, 3);
  CHECK(s.scale() == 12.0);
  // Default ceiling: 2^40.
  CHECK(LossScalerConfig{}.max_scale == std::ldexp(1.0, 40));
}

TEST_CASE("dynamic: other factors and intervals", "[loss_scaler]") {
  LossScalerConfig c = dynamic_cfg();
  c.init_scale = 1024.0;
  c.growth_factor = 4.0;
  c.backoff_factor = 0.25;
  c.growth_interval = 1;  // grow after every clean step
  LossScaler s(c);
  s.update(true);
  CHECK(s.scale() == 4096.0);
  s.update(false);
  CHECK(s.scale() == 1024.0);
  s.update(true);
  s.update(true);
  CHECK(s.scale() == 16384.0);
}

TEST_CASE("static: the scale never changes; steps are still counted", "[loss_scaler]") {
  LossScalerConfig c;
  c.mode = LossScaleMode::static_scale;
  c.init_scale = 128.0;
  LossScaler s(c);
  CHECK(s.scale() == 128.0);
  CHECK(s.inverse() == 1.0 / 128.0);
  clean(s, 5000);
  CHECK(s.scale() == 128.0);
  CHECK(s.state().clean_steps == 5000);
  s.update(false);
  s.update(false);
  CHECK(s.scale() == 128.0);
  CHECK(s.state().clean_steps == 0);
  CHECK(s.state().skipped_steps == 2);
}

TEST_CASE("none: scale 1 whatever init_scale says", "[loss_scaler]") {
  LossScalerConfig c;
  c.mode = LossScaleMode::none;
  c.init_scale = 4096.0;  // ignored
  LossScaler s(c);
  CHECK(s.scale() == 1.0);
  CHECK(s.inverse() == 1.0);
  clean(s, 2500);
  s.update(false);
  CHECK(s.scale() == 1.0);
  CHECK(s.state().skipped_steps == 1);
}

TEST_CASE("state round trip: a restored scaler continues exactly as the original", "[loss_scaler]") {
  LossScaler a(dynamic_cfg());
  clean(a, 2000);
  a.update(false);
  clean(a, 1234);
  const LossScaler::State st = a.state();
  CHECK(st.scale == 65536.0);
  CHECK(st.clean_steps == 1234);
  CHECK(st.skipped_steps == 1);

  LossScaler b(dynamic_cfg());
  b.set_state(st);
  CHECK(b.scale() == a.scale());
  // Same transitions from here: 765 more clean steps do not grow, the 766th does.
  for (int i = 0; i < 766; ++i) {
    a.update(true);
    b.update(true);
    REQUIRE(a.scale() == b.scale());
  }
  CHECK(b.scale() == 131072.0);
  CHECK(b.state().clean_steps == a.state().clean_steps);
  CHECK(b.state().skipped_steps == a.state().skipped_steps);

  // Through checkpoint metadata, exactly (a scale that is not a power of 2 too).
  std::map<std::string, std::string> meta{{"model", "tiramisu"}};
  const LossScaler::State odd{65536.0 / 3.0, 17, 4};
  write_loss_scaler_state(odd, meta);
  CHECK(meta.at("model") == "tiramisu");
  CHECK(meta.count("loss_scaler.scale") == 1);
  const LossScaler::State back = read_loss_scaler_state(meta);
  CHECK(back.scale == odd.scale);  // bit for bit: hexadecimal float
  CHECK(back.clean_steps == 17);
  CHECK(back.skipped_steps == 4);
  write_loss_scaler_state(st, meta, "scaler/");
  CHECK(read_loss_scaler_state(meta, "scaler/").scale == 65536.0);
}

TEST_CASE("set_state refuses states this configuration cannot produce", "[loss_scaler]") {
  LossScaler s(dynamic_cfg());
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(s.set_state({0.0, 0, 0}), Contains("finite and > 0"));
  CHECK_THROWS_WITH(s.set_state({inf, 0, 0}), Contains("finite and > 0"));
  CHECK_THROWS_WITH(s.set_state({std::nan(""), 0, 0}), Contains("finite and > 0"));
  CHECK_THROWS_WITH(s.set_state({1024.0, -1, 0}), Contains("negative"));
  CHECK_THROWS_WITH(s.set_state({1024.0, 0, -5}), Contains("negative"));
  CHECK_THROWS_WITH(s.set_state({0.5, 0, 0}), Contains("min_scale"));
  CHECK_THROWS_WITH(s.set_state({std::ldexp(1.0, 41), 0, 0}), Contains("max_scale"));
  CHECK_THROWS_WITH(s.set_state({1024.0, 2000, 0}), Contains("growth_interval"));
  CHECK(s.scale() == 65536.0);  // unchanged by the refusals
  s.set_state({1024.0, 1999, 3});
  CHECK(s.scale() == 1024.0);

  LossScalerConfig c;
  c.mode = LossScaleMode::static_scale;
  c.init_scale = 256.0;
  LossScaler st(c);
  CHECK_THROWS_WITH(st.set_state({512.0, 0, 0}), Contains("static scale 256"));
  st.set_state({256.0, 10000, 2});  // no interval in static mode
  CHECK(st.state().clean_steps == 10000);
  c.mode = LossScaleMode::none;
  LossScaler none(c);
  CHECK_THROWS_WITH(none.set_state({2.0, 0, 0}), Contains("no loss scaling"));

  std::map<std::string, std::string> meta;
  CHECK_THROWS_WITH(read_loss_scaler_state(meta), Contains("'loss_scaler.scale' is missing"));
  meta = {{"loss_scaler.scale", "0x1p+16"}, {"loss_scaler.clean_steps", "12x"}, {"loss_scaler.skipped_steps", "0"}};
  CHECK_THROWS_WITH(read_loss_scaler_state(meta), Contains("'loss_scaler.clean_steps' = '12x'"));
  meta["loss_scaler.clean_steps"] = "12";
  meta["loss_scaler.scale"] = "-1";
  CHECK_THROWS_WITH(read_loss_scaler_state(meta), Contains("not a finite positive number"));
}

TEST_CASE("configuration errors name the field", "[loss_scaler]") {
  auto bad = [](auto edit, const char* what) {
    LossScalerConfig c;
    edit(c);
    CHECK_THROWS_WITH(c.validate(), Contains(what));
    CHECK_THROWS_WITH(LossScaler(c), Contains(what));
  };
  bad([](LossScalerConfig& c) { c.init_scale = 0; }, "init_scale");
  bad([](LossScalerConfig& c) { c.init_scale = std::numeric_limits<double>::infinity(); }, "init_scale");
  bad([](LossScalerConfig& c) { c.growth_factor = 1.0; }, "growth_factor");
  bad([](LossScalerConfig& c) { c.backoff_factor = 1.0; }, "backoff_factor");
  bad([](LossScalerConfig& c) { c.backoff_factor = 0.0; }, "backoff_factor");
  bad([](LossScalerConfig& c) { c.growth_interval = 0; }, "growth_interval");
  bad([](LossScalerConfig& c) { c.min_scale = 0; }, "min_scale");
  bad([](LossScalerConfig& c) { c.max_scale = std::numeric_limits<double>::infinity(); }, "max_scale");
  bad([](LossScalerConfig& c) { c.min_scale = 2 * c.init_scale; }, "min_scale <= init_scale <= max_scale");
  bad([](LossScalerConfig& c) { c.max_scale = c.init_scale / 2; }, "min_scale <= init_scale <= max_scale");
  bad(
      [](LossScalerConfig& c) {
        c.mode = LossScaleMode::static_scale;
        c.init_scale = -1;
      },
      "static scale");
  // Dynamic-only fields do not matter in the other modes.
  LossScalerConfig c;
  c.mode = LossScaleMode::static_scale;
  c.growth_interval = 0;
  CHECK_NOTHROW(c.validate());
  c.mode = LossScaleMode::none;
  c.init_scale = 0;
  CHECK_NOTHROW(c.validate());

  CHECK(parse_loss_scale_mode("none") == LossScaleMode::none);
  CHECK(parse_loss_scale_mode("static") == LossScaleMode::static_scale);
  CHECK(parse_loss_scale_mode("dynamic") == LossScaleMode::dynamic);
  CHECK_THROWS_WITH(parse_loss_scale_mode("Dynamic"), Contains("unknown loss scale mode 'Dynamic'"));
  for (LossScaleMode m : {LossScaleMode::none, LossScaleMode::static_scale, LossScaleMode::dynamic})
    CHECK(parse_loss_scale_mode(loss_scale_mode_name(m)) == m);
}
