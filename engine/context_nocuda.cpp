// ExecContext for a build without CUDA: CPU contexts only.
#include <cstdlib>

#include "engine/check.h"
#include "engine/context.h"

namespace climseg {

struct ExecContext::CudaState {};

ExecContext::ExecContext(Device device, int device_index) : device_(device), device_index_(device_index) {
  CS_CHECK(device == Device::cpu, "a CUDA context was requested, but this climseg was built without CUDA");
}
ExecContext::~ExecContext() = default;

CUstream_st* ExecContext::stream() const { return nullptr; }
cublasContext* ExecContext::cublas() const { CS_THROW("cuBLAS handle requested from a CPU context"); }
cudnnContext* ExecContext::cudnn() const { CS_THROW("cuDNN handle requested from a CPU context"); }
void ExecContext::synchronize() const {}
void ExecContext::activate() const {}

void* ExecContext::workspace(size_t bytes) {
  if (bytes > workspace_bytes_) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    CS_CHECK(p != nullptr, "workspace allocation of ", bytes, " bytes failed");
    workspace_ = std::shared_ptr<void>(p, std::free);
    workspace_bytes_ = rounded;
  }
  return workspace_.get();
}

}  // namespace climseg
