// main() for tests/torch executables: without a usable PyTorch (/usr/bin/python3 with torch) the executable says
// why and exits with 77, which ctest reports as skipped, never as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "tests/util/torch_oracle.h"

int main(int argc, char** argv) {
  if (!climseg::test::torch_available()) {
    std::printf("SKIPPED: /usr/bin/python3 cannot import torch (Debian package python3-torch)\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
