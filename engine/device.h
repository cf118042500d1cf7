// The boundary between device-independent engine code and the CUDA runtime. Implemented by device_cuda.cpp in a
// CUDA build and by device_nocuda.cpp (which throws "built without CUDA") otherwise. Only engine code calls these.
#pragma once

#include <cstddef>

#include "engine/dtype.h"

namespace climseg {
class ExecContext;
namespace detail {

void* device_alloc(size_t bytes);              // from the caching allocator (engine/device_allocator.h)
void device_free(void* ptr, size_t bytes);     // back to the allocator's cache
// 2-D copy: `rows` rows of `width` bytes; pitches in bytes. Asynchronous on ctx's stream when ctx is given,
// otherwise on the default stream followed by a synchronisation.
void device_copy_2d(void* dst, size_t dpitch, Device dst_dev, const void* src, size_t spitch, Device src_dev,
                    size_t width, size_t rows, ExecContext* ctx);
void device_memset_2d(void* dst, size_t pitch, size_t width, size_t rows, ExecContext* ctx);
int device_count();

}  // namespace detail
}  // namespace climseg
