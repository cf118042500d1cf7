// cudasim: force-included (g++ -include cudasim.h) into every .cu file of the emulation build, after the build step
// has rewritten its <<<>>> launches (kernels/cudasim/rewrite_cu.py). Defines what nvcc provides implicitly: the
// qualifiers, the built-in variables and functions, the half types. See kernels/cudasim/README.md.
#pragma once

// nvcc defines __CUDACC__ for .cu files; __CUDA_ARCH__ stays undefined (our code takes its host branches, which
// compute the same thing: see the README for the list of device-only branches).
#ifndef __CUDACC__
#define __CUDACC__ 1
#endif

#include <math.h>  // the C maths functions (expf, logf, sqrtf, isfinite...) in the global namespace, as in CUDA

#include <cmath>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"
#include "cudasim/defs.h"
#include "cudasim/device.h"
