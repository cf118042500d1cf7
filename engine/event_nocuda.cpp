// engine/event.h for a build without CUDA: CPU events only (no-ops).
#include "engine/check.h"
#include "engine/event.h"

namespace climseg {

Event::Event(Device device, int device_index) : device_index_(device_index) {
  CS_CHECK(device == Device::cpu, "a CUDA event was requested, but this climseg was built without CUDA");
}
Event::~Event() = default;
Event::Event(Event&& o) noexcept : event_(nullptr), device_index_(o.device_index_) {}
Event& Event::operator=(Event&& o) noexcept {
  device_index_ = o.device_index_;
  return *this;
}
void Event::record(const ExecContext& ctx) {
  CS_CHECK(ctx.device() == Device::cpu, "Event::record: a CPU event recorded on a CUDA context");
}
void Event::wait(const ExecContext&) const {}
void Event::synchronize() const {}
bool Event::done() const { return true; }

}  // namespace climseg
