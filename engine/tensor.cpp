#include "engine/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "engine/device.h"

namespace climseg {

std::string Shape::str() const { return detail::concat("(", n, ",", h, ",", w, ",", c, ")"); }

std::array<int64_t, 4> contiguous_strides(const Shape& s) { return {s.h * s.w * s.c, s.w * s.c, s.c, 1}; }

Buffer::~Buffer() {
  if (release && ptr) release(ptr, bytes);
}

namespace {
void release_host(void* p, size_t) { std::free(p); }
void release_device(void* p, size_t bytes) { detail::device_free(p, bytes); }
}  // namespace

Tensor Tensor::empty(Shape s, DType t, Device d) {
  CS_CHECK(s.n >= 0 && s.h >= 0 && s.w >= 0 && s.c >= 0, "negative extent in shape ", s.str());
  auto buf = std::make_shared<Buffer>();
  size_t bytes = static_cast<size_t>(s.numel()) * dtype_size(t);
  buf->bytes = bytes;
  buf->device = d;
  if (d == Device::cpu) {
    // 256-byte alignment, like cudaMalloc: planned arenas place buffers at multiples of 256 from the base.
    size_t rounded = (bytes + 255) / 256 * 256;
    buf->ptr = std::aligned_alloc(256, rounded ? rounded : 256);
    CS_CHECK(buf->ptr != nullptr, "host allocation of ", bytes, " bytes failed");
    buf->release = release_host;
  } else {
    buf->ptr = bytes ? detail::device_alloc(bytes) : nullptr;
    buf->release = release_device;
  }
  Tensor out;
  out.buf_ = std::move(buf);
  out.shape_ = s;
  out.strides_ = contiguous_strides(s);
  out.dtype_ = t;
  return out;
}

Tensor Tensor::zeros(Shape s, DType t, Device d, ExecContext* ctx) {
  Tensor out = empty(s, t, d);
  out.zero(ctx);
  return out;
}

Tensor Tensor::wrap(void* ptr, Shape s, DType t, Device d, std::shared_ptr<void> owner) {
  auto buf = std::make_shared<Buffer>();
  buf->ptr = ptr;
  buf->bytes = static_cast<size_t>(s.numel()) * dtype_size(t);
  buf->device = d;
  buf->owner = std::move(owner);
  Tensor out;
  out.buf_ = std::move(buf);
  out.shape_ = s;
  out.strides_ = contiguous_strides(s);
  out.dtype_ = t;
  return out;
}

bool Tensor::is_contiguous() const { return numel() == 0 || strides_ == contiguous_strides(shape_); }

bool Tensor::is_pixel_strided() const {
  if (numel() == 0) return true;
  int64_t ps = strides_[2];
  return (strides_[3] == 1 || shape_.c == 1) && ps >= shape_.c && strides_[1] == shape_.w * ps &&
         strides_[0] == shape_.h * shape_.w * ps;
}

int64_t Tensor::pixel_stride() const {
  CS_CHECK(is_pixel_strided(), "tensor ", str(), " is not pixel-strided");
  return strides_[2];
}

Tensor Tensor::channel_slice(int64_t c0, int64_t c) const {
  CS_CHECK(c0 >= 0 && c >= 0 && c0 + c <= shape_.c, "channel slice [", c0, ",", c0 + c, ") out of range for ",
           str());
  Tensor v = *this;
  v.offset_ += static_cast<size_t>(c0 * strides_[3]) * element_size();
  v.shape_.c = c;
  return v;
}

Tensor Tensor::reshape(Shape s) const {
  CS_CHECK(is_contiguous(), "reshape of a non-contiguous tensor ", str());
  CS_CHECK(s.numel() == numel(), "reshape ", shape_.str(), " -> ", s.str(), " changes the element count");
  Tensor v = *this;
  v.shape_ = s;
  v.strides_ = contiguous_strides(s);
  return v;
}

int64_t Tensor::flat_offset(int64_t i) const {
  int64_t c = i % shape_.c;
  i /= shape_.c;
  int64_t w = i % shape_.w;
  i /= shape_.w;
  int64_t h = i % shape_.h;
  int64_t n = i / shape_.h;
  return n * strides_[0] + h * strides_[1] + w * strides_[2] + c * strides_[3];
}

namespace {
double load(const void* base, int64_t off, DType t) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(base)[off];
    case DType::f64: return static_cast<const double*>(base)[off];
    case DType::f16: return half_to_float(static_cast<const Half*>(base)[off]);
    case DType::bf16: return bf16_to_float(static_cast<const BFloat16*>(base)[off]);
    case DType::i32: return static_cast<const int32_t*>(base)[off];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(base)[off]);
    case DType::u8: return static_cast<const uint8_t*>(base)[off];
  }
  return 0;
}
void store(void* base, int64_t off, DType t, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(base)[off] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(base)[off] = v; break;
    case DType::f16: static_cast<Half*>(base)[off] = float_to_half(static_cast<float>(v)); break;
    case DType::bf16: static_cast<BFloat16*>(base)[off] = float_to_bf16(static_cast<float>(v)); break;
    case DType::i32: static_cast<int32_t*>(base)[off] = static_cast<int32_t>(v); break;
    case DType::i64: static_cast<int64_t*>(base)[off] = static_cast<int64_t>(v); break;
    case DType::u8: static_cast<uint8_t*>(base)[off] = static_cast<uint8_t>(v); break;
  }
}
}  // namespace

double Tensor::get(int64_t n, int64_t h, int64_t w, int64_t c) const {
  CS_CHECK(device() == Device::cpu, "element access on a ", device_name(device()), " tensor");
  CS_CHECK(n >= 0 && n < shape_.n && h >= 0 && h < shape_.h && w >= 0 && w < shape_.w && c >= 0 && c < shape_.c,
           "index (", n, ",", h, ",", w, ",", c, ") out of range for ", shape_.str());
  return load(data(), n * strides_[0] + h * strides_[1] + w * strides_[2] + c * strides_[3], dtype_);
}

void Tensor::set(int64_t n, int64_t h, int64_t w, int64_t c, double v) const {
  CS_CHECK(device() == Device::cpu, "element access on a ", device_name(device()), " tensor");
  CS_CHECK(n >= 0 && n < shape_.n && h >= 0 && h < shape_.h && w >= 0 && w < shape_.w && c >= 0 && c < shape_.c,
           "index (", n, ",", h, ",", w, ",", c, ") out of range for ", shape_.str());
  store(data(), n * strides_[0] + h * strides_[1] + w * strides_[2] + c * strides_[3], dtype_, v);
}

double Tensor::get_flat(int64_t i) const {
  CS_CHECK(device() == Device::cpu, "element access on a ", device_name(device()), " tensor");
  CS_CHECK(i >= 0 && i < numel(), "flat index ", i, " out of range for ", shape_.str());
  return load(data(), flat_offset(i), dtype_);
}

void Tensor::set_flat(int64_t i, double v) const {
  CS_CHECK(device() == Device::cpu, "element access on a ", device_name(device()), " tensor");
  CS_CHECK(i >= 0 && i < numel(), "flat index ", i, " out of range for ", shape_.str());
  store(data(), flat_offset(i), dtype_, v);
}

void Tensor::copy_from(const Tensor& src, ExecContext* ctx) const {
  CS_CHECK(defined() && src.defined(), "copy with an undefined tensor");
  CS_CHECK(shape_ == src.shape_, "copy ", src.str(), " -> ", str(), ": shapes differ");
  CS_CHECK(dtype_ == src.dtype_, "copy ", src.str(), " -> ", str(), ": dtypes differ (use cast)");
  if (numel() == 0) return;
  CS_CHECK(is_pixel_strided() && src.is_pixel_strided(), "copy needs pixel-strided tensors");
  size_t es = element_size();
  size_t width = static_cast<size_t>(shape_.c) * es;
  size_t rows = static_cast<size_t>(shape_.pixels());
  size_t dpitch = static_cast<size_t>(pixel_stride()) * es;
  size_t spitch = static_cast<size_t>(src.pixel_stride()) * es;
  if (device() == Device::cpu && src.device() == Device::cpu) {
    if (dpitch == width && spitch == width) {
      std::memmove(data(), src.data(), width * rows);
    } else {
      for (size_t r = 0; r < rows; ++r)
        std::memmove(static_cast<char*>(data()) + r * dpitch, static_cast<const char*>(src.data()) + r * spitch,
                     width);
    }
    return;
  }
  detail::device_copy_2d(data(), dpitch, device(), src.data(), spitch, src.device(), width, rows, ctx);
}

Tensor Tensor::to(Device d, ExecContext* ctx) const {
  Tensor out = empty(shape_, dtype_, d);
  out.copy_from(*this, ctx);
  return out;
}

Tensor Tensor::clone() const {
  CS_CHECK(device() == Device::cpu, "clone() is for host tensors; use to()");
  return to(Device::cpu);
}

Tensor Tensor::cast(DType t) const {
  CS_CHECK(device() == Device::cpu, "cast() is for host tensors");
  Tensor out = empty(shape_, t, Device::cpu);
  const int64_t n = numel();
  for (int64_t i = 0; i < n; ++i) store(out.data(), i, t, load(data(), flat_offset(i), dtype_));
  return out;
}

void Tensor::zero(ExecContext* ctx) const {
  if (!defined() || numel() == 0) return;
  CS_CHECK(is_pixel_strided(), "zero() needs a pixel-strided tensor");
  size_t es = element_size();
  size_t width = static_cast<size_t>(shape_.c) * es;
  size_t rows = static_cast<size_t>(shape_.pixels());
  size_t pitch = static_cast<size_t>(pixel_stride()) * es;
  if (device() == Device::cpu) {
    if (pitch == width) {
      std::memset(data(), 0, width * rows);
    } else {
      for (size_t r = 0; r < rows; ++r) std::memset(static_cast<char*>(data()) + r * pitch, 0, width);
    }
    return;
  }
  detail::device_memset_2d(data(), pitch, width, rows, ctx);
}

std::string Tensor::str() const {
  return detail::concat(dtype_name(dtype_), " ", shape_.str(), " ", device_name(device()),
                        is_contiguous() ? "" : " (strided)");
}

int cuda_device_count() { return detail::device_count(); }
bool have_cuda() { return cuda_device_count() > 0; }

}  // namespace climseg
