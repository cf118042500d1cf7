// Helpers for tests that run the `climseg` program (targets in CLIMSEG_CLI_TESTS, which define CLIMSEG_CLI).
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

namespace climseg::test {

// Runs `climseg ARGS` with stderr folded into `out`; returns the exit status.
inline int cli(const std::string& args, std::string& out) {
  out.clear();
  return run_command(std::string(CLIMSEG_CLI) + " " + args, out);
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// One small dataset per test binary: 12 samples of 32x48 (9 train, 3 validation), made by `climseg data generate`.
inline const std::string& tiny_dataset() {
  static TempDir dir;
  static std::string path = [] {
    std::string out;
    const std::string p = dir.file("data");
    const int rc = cli("data generate --out " + p + " --samples 12 --height 32 --width 48 --seed 5 --valid-fraction 0.25",
                       out);
    if (rc != 0) FAIL("data generate failed:\n" << out);
    return p;
  }();
  return path;
}

}  // namespace climseg::test
