// cudasim stand-in for the CUDA toolkit's cuda_runtime.h (see kernels/cudasim/README.md): the qualifiers, dim3,
// the cudart API and the kernel launch entry point that the <<<>>> rewrite calls.
#pragma once

#include "cudasim/defs.h"
#include "cuda_runtime_api.h"
#include "driver_types.h"
#include "library_types.h"
#include "cudasim/launch.h"
