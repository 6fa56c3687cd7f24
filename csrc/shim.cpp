// The few ATen/autograd calls that tch does not expose. Every entry point catches every C++
// exception and reports it through an error buffer: nothing unwinds into Rust.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <cstring>
#include <string>

#include "guard.h"
using lt_ffi::guarded;
using lt_ffi::write_str;


extern "C" {

// Name of the autograd node that produced `t` ("AddBackward0"), or "" for leaves. Returns 0 on
// success, 1 on error (message in buf).
int lt_grad_fn_name(const at::Tensor* t, char* buf, size_t len) {
  return guarded(buf, len, [&] {
    const auto& fn = t->grad_fn();
    write_str(fn ? fn->name() : std::string(), buf, len);
  });
}

}  // extern "C"

#include <torch/version.h>
extern "C" const char* lt_torch_version() { return TORCH_VERSION; }

#include <ATen/autocast_mode.h>
extern "C" {

// Turns autocast on or off for a device type (0 = CPU, 1 = CUDA) with a dtype (a c10::ScalarType
// code), returning the previous enabled state. On leaving (enabled = 0) the cast cache is cleared
// when the outermost region ends, as torch.autocast does. 0 on success, 1 on error (message in buf).
int lt_autocast_set(int device, int enabled, int dtype, int* prev, char* buf, size_t len) {
  return guarded(buf, len, [&] {
    auto dev = device == 1 ? at::DeviceType::CUDA : at::DeviceType::CPU;
    *prev = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    if (enabled) {
      at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(dtype));
      at::autocast::set_autocast_enabled(dev, true);
      at::autocast::increment_nesting();
    } else {
      at::autocast::set_autocast_enabled(dev, false);
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    }
  });
}

}  // extern "C"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
extern "C" {

// The default CPU generator's state as a new uint8 tensor (torch.get_rng_state()).
int lt_rng_get_state(at::Tensor** out, char* buf, size_t len) {
  return guarded(buf, len, [&] {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    *out = new at::Tensor(gen.get_state());
  });
}

// Restores the default CPU generator's state (torch.set_rng_state(state)).
int lt_rng_set_state(const at::Tensor* state, char* buf, size_t len) {
  return guarded(buf, len, [&] {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(*state);
  });
}

}  // extern "C"

#include <ATen/Context.h>
#include <torch/csrc/autograd/anomaly_mode.h>
extern "C" {

// Trainer(deterministic=...) and Trainer(detect_anomaly=...): libtorch's global switches.
int lt_set_flags(int deterministic, int detect_anomaly, char* buf, size_t len) {
  return guarded(buf, len, [&] {
    if (deterministic >= 0) at::globalContext().setDeterministicAlgorithms(deterministic != 0, /*warn_only=*/false);
    if (detect_anomaly >= 0) torch::autograd::AnomalyMode::set_enabled(detect_anomaly != 0);
  });
}

}  // extern "C"
