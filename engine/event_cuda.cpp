// engine/event.h for a CUDA build.
#include <cuda_runtime.h>

#include <cstdio>
#include <utility>

#include "engine/check_cuda.h"
#include "engine/event.h"

namespace climseg {

namespace {
cudaEvent_t ev(void* e) { return static_cast<cudaEvent_t>(e); }
}  // namespace

Event::Event(Device device, int device_index) : device_index_(device_index) {
  if (device == Device::cpu) return;
  int prev = -1;
  CUDA_CHECK(cudaGetDevice(&prev));
  if (prev != device_index) CUDA_CHECK(cudaSetDevice(device_index));
  cudaEvent_t e = nullptr;
  const cudaError_t s = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  if (prev != device_index) CUDA_CHECK_LOG(cudaSetDevice(prev));
  CUDA_CHECK(s);
  event_ = e;
}

Event::~Event() {
  if (event_) CUDA_CHECK_LOG(cudaEventDestroy(ev(event_)));
}

Event::Event(Event&& o) noexcept : event_(std::exchange(o.event_, nullptr)), device_index_(o.device_index_) {}

Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (event_) CUDA_CHECK_LOG(cudaEventDestroy(ev(event_)));
    event_ = std::exchange(o.event_, nullptr);
    device_index_ = o.device_index_;
  }
  return *this;
}

void Event::record(const ExecContext& ctx) {
  CS_CHECK(ctx.device() == device(), "Event::record: a ", device_name(device()), " event recorded on a ",
           device_name(ctx.device()), " context");
  if (!event_) return;
  CS_CHECK(ctx.device_index() == device_index_, "Event::record: the event is on CUDA device ", device_index_,
           ", the context on device ", ctx.device_index());
  CUDA_CHECK(cudaEventRecord(ev(event_), static_cast<cudaStream_t>(ctx.stream())));
}

void Event::wait(const ExecContext& ctx) const {
  if (!event_) return;
  CS_CHECK(ctx.device() == Device::cuda, "Event::wait: a CUDA event waited on by a CPU context (use synchronize())");
  CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(ctx.stream()), ev(event_), 0));
}

void Event::synchronize() const {
  if (event_) CUDA_CHECK(cudaEventSynchronize(ev(event_)));
}

bool Event::done() const {
  if (!event_) return true;
  const cudaError_t s = cudaEventQuery(ev(event_));
  if (s == cudaErrorNotReady) {
    (void)cudaGetLastError();  // not sticky; cleared so a later CUDA_CHECK_LAUNCH does not report it
    return false;
  }
  CUDA_CHECK(s);
  return true;
}

}  // namespace climseg
