// Tensors: NHWC shape, element strides, dtype, device, and shared ownership of the underlying bytes.
//
// A Tensor is a view: (buffer, byte offset, shape, strides). Views share the buffer (no copy), so a channel slice
// of a concat buffer is a Tensor whose channel extent is smaller than its pixel stride:
//     concat (N,H,W,96), slice channels [32,64) -> shape (N,H,W,32), strides (H*W*96, W*96, 96, 1)
// Every kernel in this engine accepts such "pixel-strided" views: channels contiguous, pixels at a fixed stride.
// Copies between devices are explicit (copy(), to()); nothing synchronises implicitly (engine.md section 3).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/check.h"
#include "engine/dtype.h"

namespace climseg {

class ExecContext;

struct Shape {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t numel() const { return n * h * w * c; }
  int64_t pixels() const { return n * h * w; }
  bool operator==(const Shape&) const = default;
  std::string str() const;  // "(N,H,W,C)"
};

// The bytes behind tensors: owned memory (host aligned allocation or the device allocator) or external memory
// kept alive by `owner` (for example a Net's arena).
struct Buffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  void (*release)(void* ptr, size_t bytes) = nullptr;  // null: not owned
  std::shared_ptr<void> owner;
  ~Buffer();
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

class Tensor {
 public:
  Tensor() = default;

  // Allocation. Host memory is 256-byte aligned (as cudaMalloc's); device memory comes from the caching allocator.
  static Tensor empty(Shape s, DType t, Device d = Device::cpu);
  static Tensor zeros(Shape s, DType t, Device d, ExecContext* ctx = nullptr);  // ctx: stream for device memset
  // A view over memory owned elsewhere; `owner` keeps it alive (may be null when the caller guarantees lifetime).
  static Tensor wrap(void* ptr, Shape s, DType t, Device d, std::shared_ptr<void> owner = {});

  bool defined() const { return buf_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const std::array<int64_t, 4>& strides() const { return strides_; }  // in elements, order n,h,w,c
  DType dtype() const { return dtype_; }
  Device device() const { return buf_ ? buf_->device : Device::cpu; }
  int64_t numel() const { return shape_.numel(); }
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }  // bytes of the elements viewed
  bool is_contiguous() const;
  // Channels contiguous and pixels at a fixed stride (contiguous tensors and channel slices both qualify).
  bool is_pixel_strided() const;
  int64_t pixel_stride() const;  // elements between consecutive pixels; checks is_pixel_strided()

  void* data() const { return buf_ ? static_cast<char*>(buf_->ptr) + offset_ : nullptr; }
  template <class T>
  T* data_as() const {
    CS_CHECK(dtype_of<T>::value == dtype_, "tensor holds ", dtype_name(dtype_), ", accessed as ",
             dtype_name(dtype_of<T>::value));
    return static_cast<T*>(data());
  }
  const std::shared_ptr<Buffer>& buffer() const { return buf_; }

  // Views (no copy). A Tensor is a handle: writing elements through a const Tensor is allowed, as with a pointer.
  Tensor channel_slice(int64_t c0, int64_t c) const;
  Tensor reshape(Shape s) const;  // contiguous tensors only

  // Host element access for tests and small tools (cpu only; converts through double).
  double get(int64_t n, int64_t h, int64_t w, int64_t c) const;
  void set(int64_t n, int64_t h, int64_t w, int64_t c, double v) const;
  double get_flat(int64_t i) const;  // i-th element in NHWC order of the view
  void set_flat(int64_t i, double v) const;

  // Explicit copies. copy_from handles any device pair and pixel-strided views; with a CUDA device involved it
  // is asynchronous on ctx's stream (call ctx.synchronize() before reading on the host).
  void copy_from(const Tensor& src, ExecContext* ctx = nullptr) const;
  Tensor to(Device d, ExecContext* ctx = nullptr) const;  // new contiguous tensor on d
  Tensor clone() const;                                    // contiguous host copy of a host tensor
  Tensor cast(DType t) const;                              // host only: converted contiguous copy
  void zero(ExecContext* ctx = nullptr) const;

  std::string str() const;  // "fp32 (N,H,W,C) cpu"

 private:
  std::shared_ptr<Buffer> buf_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  std::array<int64_t, 4> strides_{0, 0, 0, 0};
  DType dtype_ = DType::f32;
  int64_t flat_offset(int64_t i) const;  // element offset of the i-th NHWC element of the view
};

std::array<int64_t, 4> contiguous_strides(const Shape& s);

// True when `a` and `b` view the same elements (same data pointer, shape, strides and dtype): nothing to copy (a
// concat input that already is its slice of the output, a slice whose output is its input's view).
inline bool same_view(const Tensor& a, const Tensor& b) {
  return a.data() == b.data() && a.shape() == b.shape() && a.strides() == b.strides() && a.dtype() == b.dtype();
}

// Devices.
int cuda_device_count();  // 0 when built without CUDA, without a driver or without a device; never throws
// The CUDA device of a rank whose rank on its node is `local_rank`, with `device_count` devices visible: one device
// per rank when the node has as many, round-robin when it has fewer, 0 when it has none. The one rule for the trainer
// and the NCCL transport (comm::cuda_device_for). Pure.
inline int cuda_device_for_local_rank(int local_rank, int device_count) {
  return device_count > 0 && local_rank >= 0 ? local_rank % device_count : 0;
}
bool have_cuda();          // cuda_device_count() > 0
// What the loaded CUDA driver and runtime report (not the headers): versions as CUDA writes them (13000 = 13.0), 0
// without CUDA or a driver; never throw.
int cuda_driver_version();
int cuda_runtime_version();
struct CudaDeviceInfo {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t memory_bytes = 0;
  int multiprocessors = 0;
};
CudaDeviceInfo cuda_device_info(int device);  // throws for an index outside [0, cuda_device_count())

}  // namespace climseg
