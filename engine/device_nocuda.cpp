// CPU-only build: every device entry point throws; cuda_device_count() is 0.
#include "engine/check.h"
#include "engine/device.h"
#include "engine/tensor.h"

namespace climseg::detail {

constexpr const char* kNoCuda = "this climseg was built without CUDA (reconfigure with nvcc available)";

void* device_alloc(size_t) { CS_THROW(kNoCuda); }
void device_free(void*, size_t) {}
void device_copy_2d(void*, size_t, Device, const void*, size_t, Device, size_t, size_t, ExecContext*) {
  CS_THROW(kNoCuda);
}
void device_memset_2d(void*, size_t, size_t, size_t, ExecContext*) { CS_THROW(kNoCuda); }
int device_count() { return 0; }

}  // namespace climseg::detail

namespace climseg {
int cuda_driver_version() { return 0; }
int cuda_runtime_version() { return 0; }
CudaDeviceInfo cuda_device_info(int device) { CS_THROW("cuda_device_info(", device, "): ", detail::kNoCuda); }
}  // namespace climseg
