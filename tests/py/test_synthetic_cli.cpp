// `climseg data generate` and `climseg data stats` end to end, as a user runs them: the files open in h5py with the
// DeepCAM datasets, shapes and dtypes; stats.h5 equals numpy over the training files; the same arguments give the
// same bytes (another seed does not); io::read_sample accepts every file and its labels follow from its fields;
// a non-empty output directory is refused without --force; `data stats` rewrites the same stats.h5.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "io/hdf5_sample.h"
#include "io/synthetic.h"
#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
namespace fs = std::filesystem;

namespace {

const std::string kScript = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/synthetic_check.py";

int cli(const std::string& args, std::string& out) {
  out.clear();
  return test::run_command(std::string(CLIMSEG_CLI) + " " + args, out);
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Relative path -> bytes of every file under `dir`.
std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) m[fs::relative(e.path(), dir).string()] = slurp(e.path());
  return m;
}

}  // namespace

TEST_CASE("data generate: DeepCAM layout, stats.h5 as numpy computes it, deterministic bytes", "[py][synthetic]") {
  test::TempDir t;
  const std::string args = " --samples 6 --height 48 --width 72 --seed 3 --valid-fraction 0.34";
  std::string out;
  int rc = cli("data generate --out " + t.file("a") + args, out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("class fractions") && Catch::Contains("overall") && Catch::Contains("validation") &&
                      Catch::Contains("time per sample"));
  // 6 samples, 2 (round(6 * 0.34)) for validation.
  std::string py = test::python_run(kScript + " layout " + t.file("a") + " 48 72 4 2");
  INFO(py);
  py = test::python_run(kScript + " stats " + t.file("a"));
  INFO(py);

  // Every file passes the validated reader, and its labels are the rules applied to its fields.
  for (const char* split : {"train", "validation"})
    for (const auto& e : fs::directory_iterator(t.path() / "a" / split)) {
      const io::Sample s = io::read_sample(e.path().string());
      const Tensor again = io::derive_labels(s.data);
      for (int64_t p = 0; p < again.numel(); ++p) REQUIRE(again.get_flat(p) == s.labels.get_flat(p));
    }

  SECTION("the same arguments give the same bytes; another seed gives others") {
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a later second: no clock in the files
    REQUIRE(cli("data generate --out " + t.file("b") + args, out) == 0);
    CHECK(tree(t.path() / "a") == tree(t.path() / "b"));
    REQUIRE(cli("data generate --out " + t.file("c") +
                    " --samples 6 --height 48 --width 72 --seed 4 "
                    "--valid-fraction 0.34",
                out) == 0);
    const auto a = tree(t.path() / "a"), c = tree(t.path() / "c");
    REQUIRE(a.size() == c.size());
    for (const auto& [name, bytes] : a) {
      INFO(name);
      REQUIRE(c.count(name) == 1);  // the same dates: file names depend on the index only
      CHECK(c.at(name) != bytes);
    }
  }

  SECTION("a non-empty directory is refused without --force, and --force replaces only generated files") {
    const auto before = tree(t.path() / "a");
    rc = cli("data generate --out " + t.file("a") + args, out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("not empty") && Catch::Contains("--force"));
    CHECK(tree(t.path() / "a") == before);  // nothing touched
    std::ofstream(t.file("a/notes.txt")) << "mine";
    rc = cli("data generate --out " + t.file("a") +
                 " --samples 2 --height 48 --width 72 --seed 3 --valid-fraction 0 "
                 "--force",
             out);
    INFO(out);
    REQUIRE(rc == 0);
    const auto after = tree(t.path() / "a");
    CHECK(after.count("notes.txt") == 1);
    CHECK(after.count("stats.h5") == 1);
    int h5 = 0;
    for (const auto& [name, bytes] : after) h5 += name.rfind("train/", 0) == 0 || name.rfind("validation/", 0) == 0;
    CHECK(h5 == 2);  // the 6 earlier samples are gone, the 2 new ones are there
    // The same first two samples as before: a sample depends on (seed, index, H, W) only.
    CHECK(after.at("train/data-1996-01-01-00-1.h5") == before.at("train/data-1996-01-01-00-1.h5"));
  }

  SECTION("data stats recomputes the same stats.h5, from train/ or from a flat folder") {
    rc = cli("data stats " + t.file("a") + " --out " + t.file("s.h5"), out);
    INFO(out);
    REQUIRE(rc == 0);
    CHECK_THAT(out, Catch::Contains("TMQ") && Catch::Contains("ZBOT") && Catch::Contains("4 file(s)"));
    CHECK(slurp(t.path() / "s.h5") == slurp(t.path() / "a" / "stats.h5"));
    fs::create_directories(t.path() / "flat");
    for (const auto& e : fs::directory_iterator(t.path() / "a" / "train"))
      fs::copy_file(e.path(), t.path() / "flat" / e.path().filename());
    REQUIRE(cli("data stats " + t.file("flat"), out) == 0);
    CHECK(slurp(t.path() / "flat" / "stats.h5") == slurp(t.path() / "a" / "stats.h5"));
    CHECK(cli("data stats " + t.file("nothing"), out) != 0);
    CHECK_THAT(out, Catch::Contains("not a directory"));
  }
}
