// cudasim stand-in for NVTX v3 (header-only in the toolkit): ranges are no-ops without a profiler attached, as in
// the real library; the return values follow NVTX (the range depth, or a negative value when not tracked).
#pragma once

inline int nvtxRangePushA(const char*) { return -1; }
inline int nvtxRangePop() { return -1; }
inline void nvtxMarkA(const char*) {}
