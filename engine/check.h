// Error handling: every check throws climseg::Error carrying the failed expression, file:line and a message.
// Library code never calls exit()/abort(); apps catch in main, print and return non-zero (STYLE.md D).
//
//   CS_CHECK(cond, "message parts ", value, ...)          shapes, dtypes, configuration
//   CS_CHECK_STATUS(expr, ok_value, to_string_fn)         generic status-code check (ggml CUDA_CHECK_GEN)
//   CUDA_CHECK / CUDNN_CHECK / CUBLAS_CHECK / NCCL_CHECK  engine/check_cuda.h
//   MPI_CHECK                                             engine/check_mpi.h
//   HDF5_CHECK                                            engine/check_hdf5.h
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace climseg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  ((os << args), ...);
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const char* expr, const std::string& msg);
}  // namespace detail

}  // namespace climseg

#define CS_STRINGIFY_(x) #x
#define CS_STRINGIFY(x) CS_STRINGIFY_(x)

// Throws climseg::Error("file:line: check failed: <expr>: <message>") when cond is false.
#define CS_CHECK(cond, ...)                                                                          \
  do {                                                                                               \
    if (!(cond)) [[unlikely]]                                                                        \
      ::climseg::detail::throw_error(__FILE__, __LINE__, #cond, ::climseg::detail::concat(__VA_ARGS__)); \
  } while (0)

// Throws unconditionally (for unreachable branches and unsupported cases).
#define CS_THROW(...) ::climseg::detail::throw_error(__FILE__, __LINE__, nullptr, ::climseg::detail::concat(__VA_ARGS__))

// Generic status check: evaluates expr once, compares to ok, and throws with to_string(status) otherwise.
#define CS_CHECK_STATUS(expr, ok, to_string)                                                              \
  do {                                                                                                    \
    auto cs_status_ = (expr);                                                                             \
    if (cs_status_ != (ok)) [[unlikely]]                                                                  \
      ::climseg::detail::throw_error(__FILE__, __LINE__, #expr,                                           \
                                     ::climseg::detail::concat(to_string(cs_status_), " (status ",        \
                                                               static_cast<long long>(cs_status_), ")")); \
  } while (0)
