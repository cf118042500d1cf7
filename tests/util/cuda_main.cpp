// main() for tests/cuda executables: without a CUDA device (or in a build without CUDA) the executable prints
// why and exits with 77, ctest's SKIP_RETURN_CODE for these tests, so they are reported as skipped, never passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "engine/tensor.h"

int main(int argc, char** argv) {
  int n = climseg::cuda_device_count();
  if (n == 0) {
#if defined(CLIMSEG_HAVE_CUDA)
    std::printf("SKIPPED: no CUDA device visible (cudaGetDeviceCount reports 0 or fails)\n");
#else
    std::printf("SKIPPED: this build has no CUDA backend\n");
#endif
    return 77;
  }
  std::printf("CUDA devices: %d\n", n);
  return Catch::Session().run(argc, argv);
}
