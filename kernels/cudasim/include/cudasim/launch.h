// cudasim: the kernel launch entry point. The build step (kernels/cudasim/rewrite_cu.py) turns
//   kernel<T><<<grid, block, shmem, stream>>>(args...);
// into
//   ::cudasim::launch((kernel<T>), "kernel<T>", grid, block, shmem, stream)(args...);
// The launch checks the configuration as CUDA does (errors are returned by cudaGetLastError), converts the
// arguments to the kernel's parameter types (as a CUDA launch does), and hands the grid to the stream (for now the
// work runs at once; see kernels/cudasim/README.md).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <source_location>
#include <tuple>
#include <type_traits>

#include "cudasim/defs.h"
#include "driver_types.h"

namespace cudasim {

// What error messages name: the kernel expression at the launch site, the parameter types and the launch site.
struct KernelInfo {
  const char* name;       // e.g. "relu_fwd_nhwc_kernel<T>"
  const char* signature;  // __PRETTY_FUNCTION__ of launch() below: lists the parameter types
  const char* file;
  unsigned line;
};

// Checks the launch configuration (CUDA's limits; errors set the calling thread's last error, nothing runs) and
// submits the grid to `stream`. `body` runs one CUDA thread: the kernel with a private copy of the arguments.
void launch_kernel(const KernelInfo& info, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                   std::function<void()> body);

template <class... P>
class Launcher {
 public:
  Launcher(void (*kernel)(P...), const KernelInfo& info, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream)
      : kernel_(kernel), info_(info), grid_(grid), block_(block), shmem_(shmem), stream_(stream) {}

  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "cudasim: kernel launched with the wrong number of arguments");
    // The arguments converted to the parameter types once, at the launch (as CUDA copies them into the launch's
    // parameter buffer); every thread calls the kernel with its own copy.
    auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    auto kernel = kernel_;
    launch_kernel(info_, grid_, block_, shmem_, stream_, [kernel, params] { std::apply(kernel, *params); });
  }

 private:
  void (*kernel_)(P...);
  KernelInfo info_;
  dim3 grid_, block_;
  size_t shmem_;
  cudaStream_t stream_;
};

template <class... P>
Launcher<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t shmem = 0,
                      cudaStream_t stream = nullptr, std::source_location loc = std::source_location::current()) {
  return Launcher<P...>(kernel, KernelInfo{name, __PRETTY_FUNCTION__, loc.file_name(), loc.line()}, grid, block,
                        shmem, stream);
}

}  // namespace cudasim
