#include "kernels/cpu/isa.h"

#include <cstdlib>
#include <string>

#include "engine/check.h"

namespace climseg::cpu {

namespace {

CpuDispatch read_dispatch() {
  const char* v = std::getenv("CLIMSEG_CPU_DISPATCH");
  const std::string s = v != nullptr ? v : "";
  if (s.empty() || s == "auto") return CpuDispatch::automatic;
  if (s == "portable") return CpuDispatch::portable;
  CS_THROW("CLIMSEG_CPU_DISPATCH=", s, ": expected auto or portable (docs/tolerances.md)");
}

}  // namespace

CpuDispatch cpu_dispatch() {
  static const CpuDispatch d = read_dispatch();  // a bad value throws again at every call
  return d;
}

bool cpu_use_avx512() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool yes = __builtin_cpu_supports("avx512f") && cpu_dispatch() == CpuDispatch::automatic;
  return yes;
#else
  return false;
#endif
}

}  // namespace climseg::cpu
