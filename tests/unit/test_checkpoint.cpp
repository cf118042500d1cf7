// engine/checkpoint: bit-exact round trips, retention (keep N), the `latest` pointer, the checksum over the data
// section, and every fallback of load_latest (truncated file, flipped data byte, broken or dangling pointer, stale
// temporaries, nothing loadable, nothing at all), then crash safety for real: a child process saving in a loop is
// SIGKILLed at random moments and every load afterwards must return a complete, internally consistent checkpoint.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "engine/checkpoint.h"
#include "engine/crc32c.h"
#include "engine/philox.h"
#include "engine/safetensors.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// Every byte from Philox, so any bit pattern (NaN payloads, subnormals, negative zero) must travel.
Tensor random_bytes(Shape s, DType t, uint64_t stream) {
  Tensor x = Tensor::empty(s, t, Device::cpu);
  auto* p = static_cast<unsigned char*>(x.data());
  for (size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<unsigned char>(philox_block(7, stream, i).v[0]);
  return x;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// A checkpoint whose every element says which step it belongs to (the crash test checks that nothing mixes).
std::vector<CheckpointTensor> step_tensors(int64_t step) {
  std::vector<CheckpointTensor> t = {{"params", Tensor::empty(Shape{1, 16, 16, 64}, DType::f32)},
                                     {"adam.m", Tensor::empty(Shape{1, 1, 128, 128}, DType::f64)},
                                     {"cursor", Tensor::empty(Shape{1, 1, 1, 1000}, DType::i64)},
                                     {"mask", Tensor::empty(Shape{1, 1, 1, 4096}, DType::u8)}};
  for (auto& x : t)
    for (int64_t i = 0; i < x.data.numel(); ++i)
      x.data.set_flat(i, x.data.dtype() == DType::u8 ? static_cast<double>(step & 0xFF) : static_cast<double>(step));
  return t;
}

// Every tensor of a loaded step_tensors checkpoint holds its step (and the metadata agrees).
void check_consistent(const Checkpoint& c) {
  INFO(c.path);
  REQUIRE(c.meta.at("step_copy") == std::to_string(c.step));
  const auto expect = step_tensors(0);
  REQUIRE(c.tensors.size() == expect.size());
  for (const auto& e : expect) {
    const Tensor& t = c.tensor(e.name);
    REQUIRE(t.shape() == e.data.shape());
    REQUIRE(t.dtype() == e.data.dtype());
    const double want = t.dtype() == DType::u8 ? static_cast<double>(c.step & 0xFF) : static_cast<double>(c.step);
    for (int64_t i = 0; i < t.numel(); ++i)
      if (t.get_flat(i) != want) FAIL(e.name << "[" << i << "] = " << t.get_flat(i) << " in step " << c.step);
  }
}

std::map<std::string, std::string> step_meta(int64_t step) {
  return {{"step_copy", std::to_string(step)}, {"model", "tiramisu"}};
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> n;
  for (const auto& e : fs::directory_iterator(dir)) n.push_back(e.path().filename().string());
  std::sort(n.begin(), n.end());
  return n;
}

std::vector<int64_t> steps_of(const std::vector<std::string>& paths) {
  std::vector<int64_t> s;
  for (const auto& p : paths) s.push_back(std::stoll(fs::path(p).filename().string().substr(5, 10)));
  return s;
}

bool any_contains(const std::vector<std::string>& v, const std::string& what) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& s) { return s.find(what) != std::string::npos; });
}

}  // namespace

TEST_CASE("save/load round trip is bit-exact for f32, f64, i64 and u8, with metadata", "[checkpoint]") {
  test::TempDir tmp;
  CheckpointStore store(tmp.file("a/b/run"));  // parents created
  REQUIRE(fs::is_directory(tmp.file("a/b/run")));
  REQUIRE(store.keep() == 3);

  Tensor base = random_bytes(Shape{2, 3, 4, 8}, DType::f32, 5);
  const std::vector<CheckpointTensor> tensors = {
      {"net.params", random_bytes(Shape{1, 3, 5, 7}, DType::f32, 1)},
      {"net.master", random_bytes(Shape{2, 1, 1, 9}, DType::f64, 2)},
      {"data.cursor", random_bytes(Shape{1, 1, 1, 3}, DType::i64, 3)},
      {"rng.bytes", random_bytes(Shape{1, 1, 2, 33}, DType::u8, 4)},
      {"slice", base.channel_slice(3, 4)},  // a pixel-strided view: written as its elements
      {"empty", Tensor::empty(Shape{0, 1, 1, 4}, DType::f32)},
  };
  const std::map<std::string, std::string> meta = {
      {"model", "deeplabv3plus"}, {"optimizer", R"({"type":"adam","lr":0.001})"}, {"note", "ünïcode \"quoted\"\n"}};
  const std::string path = store.save(1234, meta, tensors);
  CHECK(path == tmp.file("a/b/run/ckpt-0000001234.safetensors"));
  CHECK(checkpoint_file_name(7) == "ckpt-0000000007.safetensors");

  for (const Checkpoint& c : {CheckpointStore::load_file(path), *store.load_latest()}) {
    CHECK(c.step == 1234);
    CHECK(c.path == path);
    CHECK(c.meta == meta);  // the reserved climseg.* keys are not handed back
    REQUIRE(c.tensors.size() == tensors.size());
    for (size_t i = 1; i < c.tensors.size(); ++i) CHECK(c.tensors[i - 1].name < c.tensors[i].name);
    for (const auto& t : tensors) {
      INFO(t.name);
      const Tensor& back = c.tensor(t.name);
      CHECK(back.device() == Device::cpu);
      CHECK(back.is_contiguous());
      CHECK(back.shape() == t.data.shape());
      CHECK(back.dtype() == t.data.dtype());
      CHECK(same_bytes(back, t.data.clone()));
    }
    CHECK(c.find("absent") == nullptr);
    CHECK_THROWS_WITH(c.tensor("absent"), Contains("no tensor 'absent'"));
  }

  // The reserved keys, as the format says; the checksum is the CRC-32C of the file's data section, which is
  // recomputed here from the raw bytes (not through the reader).
  SafetensorsReader r(path);
  CHECK(r.metadata().at("climseg.format") == "climseg-checkpoint");
  CHECK(r.metadata().at("climseg.version") == "2");
  CHECK(r.metadata().at("climseg.header_checksum").size() == 8);
  CHECK(r.metadata().at("climseg.step") == "1234");
  const std::string bytes = slurp(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", crc32c(bytes.data() + 8 + n, bytes.size() - 8 - n));
  CHECK(r.metadata().at("climseg.checksum") == hex);
  CHECK(CheckpointStore::load_file(path).checksum == std::stoul(hex, nullptr, 16));

  // The pointer names the file and its checksum.
  CHECK(slurp(tmp.file("a/b/run/latest")) == std::string("ckpt-0000001234.safetensors ") + hex + "\n");
  // Nothing else is left in the directory (no temporaries).
  CHECK(names_in(tmp.file("a/b/run")) == std::vector<std::string>{"ckpt-0000001234.safetensors", "latest"});
}

TEST_CASE("keep N deletes the oldest and updates latest; list is in step order", "[checkpoint]") {
  test::TempDir tmp;
  CheckpointStore store(tmp.file("run"), {.keep = 2});
  for (int64_t s : {10, 20, 30, 40, 50}) {
    store.save(s, step_meta(s), step_tensors(s));
    CHECK(slurp(tmp.file("run/latest")).starts_with(checkpoint_file_name(s) + " "));
    const auto c = store.load_latest();
    REQUIRE(c);
    CHECK(c->step == s);
    check_consistent(*c);
  }
  CHECK(steps_of(store.list()) == std::vector<int64_t>{40, 50});

  CheckpointStore one(tmp.file("one"), {.keep = 1});
  for (int64_t s = 0; s < 4; ++s) one.save(s, step_meta(s), step_tensors(s));
  CHECK(steps_of(one.list()) == std::vector<int64_t>{3});

  // Saving a step again replaces its file.
  one.save(3, {{"step_copy", "3"}, {"model", "deeplabv3plus"}}, step_tensors(3));
  CHECK(one.load_latest()->meta.at("model") == "deeplabv3plus");
  CHECK(steps_of(one.list()) == std::vector<int64_t>{3});

  // list() ignores names that only look similar.
  put(tmp.file("run/ckpt-12.safetensors"), "x");
  put(tmp.file("run/ckpt-00000000060.safetensors"), "x");
  put(tmp.file("run/ckpt-000000006x.safetensors"), "x");
  put(tmp.file("run/ckpt-0000000060.safetensors.bak"), "x");
  CHECK(steps_of(store.list()) == std::vector<int64_t>{40, 50});
  CHECK(store.load_latest()->step == 50);

  CHECK_THROWS_WITH(CheckpointStore(tmp.file("bad"), {.keep = 0}), Contains("keep must be >= 1"));
  put(tmp.file("plainfile"), "x");
  CHECK_THROWS_WITH(CheckpointStore(tmp.file("plainfile")), Contains("cannot create the directory"));
}

TEST_CASE("resuming from an earlier step: older files beyond keep go, later ones stay", "[checkpoint]") {
  test::TempDir tmp;
  CheckpointStore store(tmp.file("run"), {.keep = 2});
  for (int64_t s : {1, 2, 3, 7, 8}) store.save(s, step_meta(s), step_tensors(s));
  CHECK(steps_of(store.list()) == std::vector<int64_t>{7, 8});
  // A run resumed from an older checkpoint (step 4, restored from elsewhere) saves step 5.
  store.save(5, step_meta(5), step_tensors(5));
  CHECK(steps_of(store.list()) == std::vector<int64_t>{5, 7, 8});  // nothing below 5 to delete; 7, 8 untouched
  CHECK(store.load_latest()->step == 5);                           // `latest` decides, not the highest step
  store.save(6, step_meta(6), step_tensors(6));
  CHECK(steps_of(store.list()) == std::vector<int64_t>{5, 6, 7, 8});
  store.save(7, step_meta(7), step_tensors(7));  // replaces 7; keeps 6 (keep - 1 older); deletes 5
  CHECK(steps_of(store.list()) == std::vector<int64_t>{6, 7, 8});
  CHECK(store.load_latest()->step == 7);
}

TEST_CASE("load_latest falls back past damaged files and pointers", "[checkpoint]") {
  test::TempDir tmp;
  CheckpointStore store(tmp.file("run"), {.keep = 5});
  for (int64_t s : {1, 2, 3}) store.save(s, step_meta(s), step_tensors(s));
  const std::string newest = tmp.file("run/" + checkpoint_file_name(3));
  const std::string pointer = tmp.file("run/latest");
  const std::string good = slurp(newest);
  std::vector<std::string> skipped;

  SECTION("a truncated newest file: the previous one, and the skip is reported") {
    put(newest, good.substr(0, good.size() / 2));
    const auto c = store.load_latest(&skipped);
    REQUIRE(c);
    CHECK(c->step == 2);
    check_consistent(*c);
    REQUIRE(skipped.size() == 1);
    CHECK_THAT(skipped[0], Contains(newest) && Contains("truncated"));
    CHECK_THROWS_WITH(CheckpointStore::load_file(newest), Contains(newest));
  }
  SECTION("a flipped data byte: checksum mismatch, the previous one") {
    std::string bad = good;
    bad[bad.size() - 100] ^= 0x10;  // inside the data section
    put(newest, bad);
    const auto c = store.load_latest(&skipped);
    REQUIRE(c);
    CHECK(c->step == 2);
    REQUIRE(skipped.size() == 1);
    CHECK_THAT(skipped[0], Contains(newest) && Contains("checksum mismatch"));
    CHECK_THROWS_WITH(CheckpointStore::load_file(newest), Contains("checksum mismatch"));
  }
  SECTION("a damaged header (valid JSON, wrong step): skipped") {
    std::string bad = good;
    const size_t at = bad.find("\"climseg.step\":\"3\"");
    REQUIRE(at != std::string::npos);
    bad[at + std::strlen("\"climseg.step\":\"")] = '4';
    put(newest, bad);
    const auto c = store.load_latest(&skipped);
    REQUIRE(c);
    CHECK(c->step == 2);
    CHECK(any_contains(skipped, "header checksum mismatch"));
  }
  SECTION("a damaged tensor name or metadata key (valid JSON) is a damaged file, not another run's: skipped") {
    for (const char* what : {"\"mask\"", "\"step_copy\"", "\"model\""}) {
      std::string bad = good;
      const size_t at = bad.find(what);
      REQUIRE(at != std::string::npos);
      bad[at + 2] ^= 0x01;  // one bit of the second character: still a valid name
      put(newest, bad);
      skipped.clear();
      const auto c = store.load_latest(&skipped);
      REQUIRE(c);
      CHECK(c->step == 2);
      CHECK(any_contains(skipped, "header checksum mismatch"));
    }
  }
  SECTION("random single-bit flips anywhere in the header: never a wrong checkpoint, never a stop") {
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(good[i])) << (8 * i);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int fell_back = 0;
    for (int trial = 0; trial < 300; ++trial) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      std::string bad = good;
      const size_t byte = 8 + static_cast<size_t>(x % n);
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << ((x >> 32) % 8)));
      put(newest, bad);
      skipped.clear();
      std::optional<Checkpoint> c;
      REQUIRE_NOTHROW(c = store.load_latest(&skipped));
      REQUIRE(c);
      INFO("trial " << trial << ": byte " << byte << " of a header of " << n);
      if (c->step == 3) {
        // Accepted: only when what the header says is unchanged (a flip in JSON padding).
        const Checkpoint ref = [&] {
          put(newest, good);
          return CheckpointStore::load_file(newest);
        }();
        CHECK(c->meta == ref.meta);
        REQUIRE(c->tensors.size() == ref.tensors.size());
        for (size_t i = 0; i < ref.tensors.size(); ++i) CHECK(c->tensors[i].name == ref.tensors[i].name);
      } else {
        CHECK(c->step == 2);
        check_consistent(*c);
        ++fell_back;
      }
    }
    CHECK(fell_back > 250);
  }
  SECTION("a version 1 checkpoint (no header checksum) still loads") {
    SafetensorsReader r(newest);
    std::map<std::string, std::string> md = r.metadata();
    md.erase("climseg.header_checksum");
    md["climseg.version"] = "1";
    std::vector<SafetensorsTensor> st;
    for (const auto& e : r.entries()) st.push_back({e.name, r.read(e), e.shape});
    write_safetensors(newest, st, md);
    fs::remove(pointer);
    const auto c = store.load_latest(&skipped);
    REQUIRE(c);
    CHECK(c->step == 3);
    check_consistent(*c);
  }
  SECTION("a safetensors file that is not a checkpoint: skipped") {
    write_safetensors(newest, {{"x", Tensor::zeros(Shape{1, 1, 1, 2}, DType::f32, Device::cpu), {2}}},
                      {{"format", "pt"}});
    CHECK(store.load_latest(&skipped)->step == 2);
    CHECK(any_contains(skipped, "not a climseg checkpoint"));
  }
  SECTION("a corrupted pointer: scan, newest first") {
    put(pointer, "garbage\x01\x02");
    const auto c = store.load_latest(&skipped);
    REQUIRE(c);
    CHECK(c->step == 3);
    REQUIRE(skipped.size() == 1);
    CHECK_THAT(skipped[0], Contains(pointer) && Contains("malformed"));
  }
  SECTION("a pointer to a missing file: scan") {
    put(pointer, checkpoint_file_name(99) + " 01234567\n");
    const auto c = store.load_latest(&skipped);
    REQUIRE(c);
    CHECK(c->step == 3);
    CHECK_THAT(skipped.at(0), Contains("ckpt-0000000099.safetensors, which does not exist"));
  }
  SECTION("a pointer outside the naming scheme is refused (no path escapes the directory)") {
    put(pointer, "../elsewhere/ckpt-0000000001.safetensors 01234567\n");
    CHECK(store.load_latest(&skipped)->step == 3);
    CHECK_THAT(skipped.at(0), Contains("is not a checkpoint file name"));
  }
  SECTION("a pointer whose checksum disagrees with its (valid) file: scan, which still may take that file") {
    const std::string line = slurp(pointer);
    put(pointer, checkpoint_file_name(2) + " 00000000\n");
    const auto c = store.load_latest(&skipped);
    CHECK(c->step == 3);
    CHECK(any_contains(skipped, "records checksum 00000000"));
    put(pointer, line);
  }
  SECTION("the pointer decides: naming an older valid file returns that file") {
    const Checkpoint two = CheckpointStore::load_file(tmp.file("run/" + checkpoint_file_name(2)));
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", two.checksum);
    put(pointer, checkpoint_file_name(2) + " " + hex + "\n");
    CHECK(store.load_latest(&skipped)->step == 2);
    CHECK(skipped.empty());
  }
  SECTION("a missing pointer: scan") {
    fs::remove(pointer);
    CHECK(store.load_latest(&skipped)->step == 3);
    CHECK(skipped.empty());
  }
}

TEST_CASE("a stale temporary is never loaded and the next save removes it", "[checkpoint]") {
  test::TempDir tmp;
  CheckpointStore store(tmp.file("run"), {.keep = 2});
  store.save(1, step_meta(1), step_tensors(1));
  store.save(2, step_meta(2), step_tensors(2));
  // Complete, valid checkpoints under temporary names (as a writer killed just before its rename leaves them).
  CheckpointStore other(tmp.file("other"));
  const std::string v3 = slurp(other.save(3, step_meta(3), step_tensors(3)));
  const std::string v9 = slurp(other.save(9, step_meta(9), step_tensors(9)));
  const std::string stale3 = tmp.file("run/ckpt-0000000003.safetensors.tmp-999999-0");
  const std::string stale9 = tmp.file("run/ckpt-0000000009.safetensors.tmp-1234-17");
  const std::string stale_ptr = tmp.file("run/latest.tmp-999999-4");
  put(stale3, v3);
  put(stale9, v9);
  put(stale_ptr, "ckpt-0000000003.safetensors 00000000\n");
  // Names that merely resemble ours are never touched.
  const std::vector<std::string> foreign = {"notes.tmp-1-2", "ckpt-0000000001.safetensors.tmp-abc",
                                            "ckpt-0000000001.safetensors.tmp-1-", "latest.tmp", "README"};
  for (const auto& f : foreign) put(tmp.file("run/" + f), "keep me");

  std::vector<std::string> skipped;
  const auto c = store.load_latest(&skipped);
  REQUIRE(c);
  CHECK(c->step == 2);
  CHECK(skipped.empty());
  CHECK(steps_of(store.list()) == std::vector<int64_t>{1, 2});

  store.save(4, step_meta(4), step_tensors(4));
  CHECK(!fs::exists(stale3));     // step 3 <= 4: a leftover of a killed writer
  CHECK(!fs::exists(stale_ptr));  // a leftover pointer temporary
  CHECK(fs::exists(stale9));      // above the new step: not ours to judge (docs: later files are never deleted)
  for (const auto& f : foreign) CHECK(fs::exists(tmp.file("run/" + f)));
  CHECK(steps_of(store.list()) == std::vector<int64_t>{2, 4});
}

TEST_CASE("nothing loadable throws naming every file; an empty directory is nullopt", "[checkpoint]") {
  test::TempDir tmp;
  CheckpointStore store(tmp.file("run"));
  CHECK_FALSE(store.load_latest().has_value());
  put(tmp.file("run/unrelated.txt"), "x");
  CHECK_FALSE(store.load_latest().has_value());
  CHECK(store.list().empty());
  // A pointer to nothing, with no checkpoint files: still "no checkpoint at all", the pointer reported.
  put(tmp.file("run/latest"), checkpoint_file_name(5) + " 01234567\n");
  std::vector<std::string> skipped;
  CHECK_FALSE(store.load_latest(&skipped).has_value());
  CHECK(skipped.size() == 1);

  store.save(1, step_meta(1), step_tensors(1));
  store.save(2, step_meta(2), step_tensors(2));
  for (int64_t s : {1, 2}) {
    const std::string p = tmp.file("run/" + checkpoint_file_name(s));
    std::string b = slurp(p);
    b[b.size() - 1] ^= 1;
    put(p, b);
  }
  try {
    store.load_latest();
    FAIL("load_latest did not throw");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Contains("no loadable checkpoint in " + tmp.file("run")));
    CHECK_THAT(what, Contains(tmp.file("run/ckpt-0000000001.safetensors") + ": "));
    CHECK_THAT(what, Contains(tmp.file("run/ckpt-0000000002.safetensors") + ": "));
    CHECK_THAT(what, Contains("checksum mismatch"));
  }
  // A store whose directory has vanished: nullopt, not an error.
  CheckpointStore gone(tmp.file("gone"));
  fs::remove(tmp.file("gone"));
  CHECK_FALSE(gone.load_latest().has_value());
}

TEST_CASE("save refuses reserved keys, bad steps and bad tensors, leaving the directory as it was", "[checkpoint]") {
  test::TempDir tmp;
  CheckpointStore store(tmp.file("run"));
  store.save(1, step_meta(1), step_tensors(1));
  const auto before = names_in(tmp.file("run"));
  const std::string latest = slurp(tmp.file("run/latest"));
  CHECK_THROWS_WITH(store.save(2, {{"climseg.step", "7"}}, step_tensors(2)),
                    Contains("metadata key 'climseg.step' is reserved"));
  CHECK_THROWS_WITH(store.save(2, {{"climseg.mine", "x"}}, step_tensors(2)), Contains("'climseg.mine' is reserved"));
  CHECK_THROWS_WITH(store.save(-1, {}, step_tensors(2)), Contains("outside [0, 9999999999]"));
  CHECK_THROWS_WITH(store.save(10'000'000'000, {}, step_tensors(2)), Contains("outside"));
  CHECK_THROWS_WITH(store.save(2, {}, {{"x", Tensor()}}), Contains("'x' has no data"));
  auto dup = step_tensors(2);
  dup.push_back(dup[0]);
  CHECK_THROWS_WITH(store.save(2, {}, dup), Contains("given twice"));
  CHECK(names_in(tmp.file("run")) == before);
  CHECK(slurp(tmp.file("run/latest")) == latest);
}

TEST_CASE("check_checkpoint_fields names every differing field", "[checkpoint]") {
  Checkpoint c;
  c.path = "/ckpts/ckpt-0000000010.safetensors";
  c.meta = {{"model", "tiramisu"}, {"classes", "3"}, {"lr", "0.1"}};
  CHECK_NOTHROW(check_checkpoint_fields(c, {{"model", "tiramisu"}, {"classes", "3"}}));
  CHECK_NOTHROW(check_checkpoint_fields(c, {}));
  CHECK_THROWS_WITH(check_checkpoint_fields(c, {{"model", "deeplabv3plus"}}),
                    Contains("checkpoint /ckpts/ckpt-0000000010.safetensors does not match this run: field 'model' "
                             "is 'tiramisu' in the checkpoint, 'deeplabv3plus' here"));
  try {
    check_checkpoint_fields(c, {{"model", "deeplabv3plus"}, {"classes", "3"}, {"lr", "0.2"}, {"seed", "1"}});
    FAIL("no throw");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Contains("field 'model' is 'tiramisu'"));
    CHECK_THAT(what, Contains("field 'lr' is '0.1' in the checkpoint, '0.2' here"));
    CHECK_THAT(what, Contains("field 'seed' is missing in the checkpoint, '1' here"));
    CHECK_THAT(what, !Contains("classes"));
  }
}

TEST_CASE("crash safety: SIGKILL at random moments never leaves a partial checkpoint to load", "[checkpoint]") {
  test::TempDir tmp;
  const std::string dir = tmp.file("run");
  CheckpointStore store(dir, {.keep = 2});
  std::mt19937_64 rng(20240611);  // fixed seed: the same kill times every run
  std::uniform_int_distribution<int> delay_us(0, 60'000);
  int64_t last_step = 0;
  int kills_mid_write = 0, loads = 0;
  for (int round = 0; round < 10; ++round) {
    const int delay = delay_us(rng);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child resumes as a training run would, then saves step after step until it is killed.
      alarm(60);  // never outlive a broken parent
      try {
        CheckpointStore s(dir, {.keep = 2});
        const auto c = s.load_latest();
        for (int64_t step = c ? c->step + 1 : 1;; ++step) s.save(step, step_meta(step), step_tensors(step));
      } catch (...) {
        _exit(3);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay));
    REQUIRE(kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    INFO("round " << round << ", killed after " << delay << " us");
    REQUIRE(WIFSIGNALED(status));  // not an exit: the child failed to save otherwise
    REQUIRE(WTERMSIG(status) == SIGKILL);

    for (const auto& n : names_in(dir))
      if (n.find(".tmp-") != std::string::npos) {
        ++kills_mid_write;
        break;
      }
    std::vector<std::string> skipped;
    const auto c = store.load_latest(&skipped);
    if (!c) {
      REQUIRE(store.list().empty());  // killed before its first save completed
      continue;
    }
    ++loads;
    CHECK(skipped == std::vector<std::string>{});  // kills never damage complete files; temporaries are no candidates
    REQUIRE(fs::path(c->path).filename().string() == checkpoint_file_name(c->step));
    check_consistent(*c);
    CHECK(c->step >= last_step);  // a checkpoint that was the latest never disappears
    last_step = c->step;
  }
  WARN("crash test: " << loads << " loads, newest step " << last_step << ", " << kills_mid_write
                      << " of 10 rounds found a temporary in the directory after the kill");
  // One more save cleans up after the killed writers.
  const int64_t next = last_step + 1;
  store.save(next, step_meta(next), step_tensors(next));
  for (const auto& n : names_in(dir)) CHECK(n.find(".tmp-") == std::string::npos);
  CHECK(store.list().size() <= 2);
  check_consistent(*store.load_latest());
}
