// What the profilers need from libtorch: time spent inside ATen ops on this thread (a thread-local
// RecordFunction callback, registered only while the simple profiler runs, so there is no cost
// otherwise), and libtorch's own autograd profiler (Kineto) for the advanced profiler's Chrome
// trace. Every entry point catches every C++ exception.
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <chrono>
#include <set>

#include "guard.h"
using lt_ffi::guarded;

namespace {
thread_local int depth = 0;
thread_local int64_t op_start_ns = 0;
thread_local uint64_t total_ns = 0;
thread_local bool registered = false;
thread_local at::CallbackHandle handle = 0;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Only the outermost op counts: an op's inner ops (and autograd's) are inside its own time.
std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction&) {
  if (depth++ == 0) op_start_ns = now_ns();
  return nullptr;
}

void on_end(const at::RecordFunction&, at::ObserverContext*) {
  if (depth > 0 && --depth == 0) total_ns += static_cast<uint64_t>(now_ns() - op_start_ns);
}
}  // namespace

extern "C" {

// Starts counting the time this thread spends inside ATen ops (idempotent).
int lt_op_timer_start(char* buf, size_t len) {
  return guarded(buf, len, [&] {
    if (registered) return;
    handle = at::addThreadLocalCallback(at::RecordFunctionCallback(on_start, on_end)
                                            .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
    registered = true;
  });
}

// Stops counting (idempotent).
int lt_op_timer_stop(char* buf, size_t len) {
  return guarded(buf, len, [&] {
    if (!registered) return;
    at::removeCallback(handle);
    registered = false;
    depth = 0;
  });
}

// Nanoseconds this thread has spent inside ATen ops while the timer ran.
uint64_t lt_op_time_ns() { return total_ns; }

// Starts libtorch's Kineto profiler for CPU (and CUDA when `cuda`) activity, recording input
// shapes, as torch.profiler.profile(activities=..., record_shapes=True).
int lt_kineto_start(int cuda, char* buf, size_t len) {
  return guarded(buf, len, [&] {
    using namespace torch::profiler::impl;
    ProfilerConfig cfg(ProfilerState::KINETO, /*report_input_shapes=*/true);
    std::set<ActivityType> acts{ActivityType::CPU};
    if (cuda) acts.insert(ActivityType::CUDA);
    torch::autograd::profiler::prepareProfiler(cfg, acts);
    torch::autograd::profiler::enableProfiler(cfg, acts);
  });
}

// Stops the Kineto profiler and writes its Chrome trace (JSON) to `path`.
int lt_kineto_stop_save(const char* path, char* buf, size_t len) {
  return guarded(buf, len, [&] {
    auto result = torch::autograd::profiler::disableProfiler();
    if (!result) throw std::runtime_error("the profiler returned no result");
    result->save(path);
  });
}

}  // extern "C"
