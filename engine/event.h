// Ordering work between streams without stopping the host: a CUDA event (timing disabled, the cheap kind) that one
// context records and another context's stream waits on. The input pipeline (io/pipeline.h) copies batches on its
// own stream and makes the compute stream wait for the copy, and the copy of a later batch into the same buffer
// wait for the compute work that read it (engine.md section 3: no implicit synchronisation).
//
// On a CPU context everything is already ordered (work runs when it is called), so a CPU Event is a no-op.
// Implemented by event_cuda.cpp and event_nocuda.cpp (which accepts CPU events only).
#pragma once

#include "engine/context.h"
#include "engine/dtype.h"

namespace climseg {

class Event {
 public:
  Event() = default;                                    // a CPU event: every call is a no-op
  explicit Event(Device device, int device_index = 0);  // cuda: cudaEventCreateWithFlags(cudaEventDisableTiming)
  ~Event();
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  Device device() const { return event_ ? Device::cuda : Device::cpu; }

  // Captures the work queued on ctx's stream so far (ctx on the event's device; a CPU event needs a CPU context).
  void record(const ExecContext& ctx);
  // ctx's stream waits, on the device, until the work captured by the last record() has run. No host wait.
  // Waiting on an event never recorded returns at once.
  void wait(const ExecContext& ctx) const;
  // The host waits until the captured work has run.
  void synchronize() const;
  // True when the captured work has run (or nothing was recorded).
  bool done() const;

 private:
  void* event_ = nullptr;  // cudaEvent_t; null for a CPU event
  int device_index_ = 0;
};

}  // namespace climseg
