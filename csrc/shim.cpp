// The few ATen/autograd calls that tch does not expose. Every entry point catches every C++
// exception and reports it through an error buffer: nothing unwinds into Rust.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <cstring>
#include <string>

namespace {
void write_str(const std::string& s, char* buf, size_t len) {
  if (len == 0) return;
  size_t n = s.size() < len - 1 ? s.size() : len - 1;
  std::memcpy(buf, s.data(), n);
  buf[n] = 0;
}
}  // namespace

extern "C" {

// Name of the autograd node that produced `t` ("AddBackward0"), or "" for leaves. Returns 0 on
// success, 1 on error (message in buf).
int lt_grad_fn_name(const at::Tensor* t, char* buf, size_t len) {
  try {
    const auto& fn = t->grad_fn();
    write_str(fn ? fn->name() : std::string(), buf, len);
    return 0;
  } catch (const std::exception& e) {
    write_str(e.what(), buf, len);
    return 1;
  } catch (...) {
    write_str("unknown C++ exception", buf, len);
    return 1;
  }
}

}  // extern "C"

#include <torch/version.h>
extern "C" const char* lt_torch_version() { return TORCH_VERSION; }
