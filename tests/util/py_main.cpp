// main() for tests/py executables (h5py and numpy as oracles): without them the executable says why and exits with
// 77, which ctest reports as skipped, never as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "tests/util/python.h"

int main(int argc, char** argv) {
  if (!climseg::test::python_can_import("h5py, numpy")) {
    std::printf("SKIPPED: %s cannot import h5py and numpy (Debian packages python3-h5py, python3-numpy)\n",
                climseg::test::kPython3);
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
