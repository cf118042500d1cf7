#include <catch2/catch.hpp>

#include <string>

#include "engine/check.h"
#if defined(CLIMSEG_HAVE_CUDA)
#include "engine/check_cuda.h"
#endif
#if defined(CLIMSEG_HAVE_HDF5)
#include "engine/check_hdf5.h"
#endif

using Catch::Contains;

namespace {
const char* status_name(int s) { return s == 3 ? "THREE" : "OTHER"; }
int three() { return 3; }
}  // namespace

TEST_CASE("CS_CHECK throws climseg::Error with file:line, expression and message", "[check]") {
  int n = 5;
  REQUIRE_NOTHROW([&] { CS_CHECK(n == 5, "never"); }());
  try {
    CS_CHECK(n == 4, "n is ", n, ", expected ", 4);
    FAIL("no throw");
  } catch (const climseg::Error& e) {
    std::string w = e.what();
    REQUIRE_THAT(w, Contains("test_check.cpp:"));
    REQUIRE_THAT(w, Contains("check failed: n == 4"));
    REQUIRE_THAT(w, Contains("n is 5, expected 4"));
  }
  REQUIRE_THROWS_AS([] { CS_THROW("unsupported ", 42); }(), climseg::Error);
  REQUIRE_THROWS_WITH([] { CS_THROW("unsupported ", 42); }(), Contains("unsupported 42"));
}

TEST_CASE("CS_CHECK_STATUS evaluates once and reports the status text and value", "[check]") {
  int calls = 0;
  auto f = [&] {
    ++calls;
    return 3;
  };
  REQUIRE_THROWS_WITH([&] { CS_CHECK_STATUS(f(), 0, status_name); }(), Contains("THREE (status 3)"));
  REQUIRE(calls == 1);
  REQUIRE_NOTHROW([&] { CS_CHECK_STATUS(three(), 3, status_name); }());
}

#if defined(CLIMSEG_HAVE_CUDA)
TEST_CASE("CUDA and cuBLAS status checks (no device needed)", "[check][cuda-build]") {
  REQUIRE_THROWS_WITH([] { CUDA_CHECK(cudaErrorInvalidValue); }(), Contains("cudaErrorInvalidValue"));
  REQUIRE_THROWS_WITH([] { CUDA_CHECK(cudaErrorInvalidValue); }(), Contains("invalid argument"));
  REQUIRE_THROWS_WITH([] { CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED); }(), Contains("CUBLAS_STATUS_NOT_INITIALIZED"));
  REQUIRE_NOTHROW([] { CUDA_CHECK(cudaSuccess); }());
#if defined(CLIMSEG_HAVE_CUDNN)
  REQUIRE_THROWS_WITH([] { CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM); }(), Contains("CUDNN_STATUS_BAD_PARAM"));
#endif
#if defined(CLIMSEG_HAVE_NCCL)
  REQUIRE_THROWS_WITH([] { NCCL_CHECK(ncclInvalidArgument); }(), Contains("status 4"));
#endif
}
#endif

#if defined(CLIMSEG_HAVE_HDF5)
TEST_CASE("HDF5_CHECK names the call and HDF5's own reason", "[check][hdf5]") {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // we report errors ourselves
  try {
    HDF5_CHECK(H5Fopen("/nonexistent/climseg-test.h5", H5F_ACC_RDONLY, H5P_DEFAULT), "opening ",
               "/nonexistent/climseg-test.h5");
    FAIL("no throw");
  } catch (const climseg::Error& e) {
    std::string w = e.what();
    REQUIRE_THAT(w, Contains("H5Fopen"));
    REQUIRE_THAT(w, Contains("opening /nonexistent/climseg-test.h5"));
  }
  hid_t ok = HDF5_CHECK(H5Screate(H5S_SCALAR));
  REQUIRE(ok >= 0);
  H5Sclose(ok);
}
#endif
