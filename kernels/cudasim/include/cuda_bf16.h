// cudasim stand-in for the CUDA toolkit's cuda_bf16.h (see kernels/cudasim/README.md).
#pragma once
#include "cudasim/half.h"
