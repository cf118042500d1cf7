// Staging copies for the cuDNN convolution wrapper (kernels/cudnn/stage.cu): moves a 4-D NHWC window between two
// views with arbitrary pixel, row and image strides (channels contiguous), bit for bit. Used to pack channel-slice
// views into packed workspace buffers and back, and to place X inside a zero-padded buffer (asymmetric 'SAME'
// padding) or crop a gradient out of one. Only for CUDA translation units (called from kernels/cudnn/conv.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/context.h"

namespace climseg::cudnn::detail {

// dst[b, i, j, ch] = src[b, i, j, ch] for b < n, i < h, j < w, ch < c. Strides are in elements: element (b, i, j, ch)
// of src is at src + (b * sn + i * sh + j * sw + ch) * elem_bytes. elem_bytes: 2 or 4. Queued on ctx.stream().
void copy_window(ExecContext& ctx, int64_t n, int64_t h, int64_t w, int64_t c, size_t elem_bytes, const void* src,
                 int64_t sn, int64_t sh, int64_t sw, void* dst, int64_t dn, int64_t dh, int64_t dw);

}  // namespace climseg::cudnn::detail
