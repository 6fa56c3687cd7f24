// ATen calls the optimizers need and tch does not expose: the `alpha`/`value` forms of add,
// addcmul and addcdiv (one fused kernel each, so results round exactly as in torch.optim), the
// fused multi-tensor Adam/AdamW kernels, grad reset and tensor identity. Every entry point catches
// every C++ exception and reports it through an error buffer: nothing unwinds into Rust.
#include <ATen/ATen.h>
#include <cstring>
#include <string>
#include <vector>

#include "guard.h"
using lt_ffi::guarded;
using lt_ffi::write_str;

namespace {


std::vector<at::Tensor> list(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}
}  // namespace

extern "C" {

// self.add_(other, alpha=alpha)
int lt_add_alpha_(at::Tensor* self, const at::Tensor* other, double alpha, char* err, size_t len) {
  return guarded(err, len, [&] { self->add_(*other, alpha); });
}

// *out = self.add(other, alpha=alpha) (a new tensor handle the caller owns)
int lt_add_alpha(at::Tensor** out, const at::Tensor* self, const at::Tensor* other, double alpha, char* err, size_t len) {
  return guarded(err, len, [&] { *out = new at::Tensor(self->add(*other, alpha)); });
}

// self.addcmul_(t1, t2, value=value)
int lt_addcmul_(at::Tensor* self, const at::Tensor* t1, const at::Tensor* t2, double value, char* err, size_t len) {
  return guarded(err, len, [&] { self->addcmul_(*t1, *t2, value); });
}

// *out = self.addcmul(t1, t2, value=value)
int lt_addcmul(at::Tensor** out, const at::Tensor* self, const at::Tensor* t1, const at::Tensor* t2, double value,
               char* err, size_t len) {
  return guarded(err, len, [&] { *out = new at::Tensor(self->addcmul(*t1, *t2, value)); });
}

// self.addcdiv_(t1, t2, value=value)
int lt_addcdiv_(at::Tensor* self, const at::Tensor* t1, const at::Tensor* t2, double value, char* err, size_t len) {
  return guarded(err, len, [&] { self->addcdiv_(*t1, *t2, value); });
}

// *out = torch.linalg.vector_norm(self, ord)
int lt_vector_norm(at::Tensor** out, const at::Tensor* self, double ord, char* err, size_t len) {
  return guarded(err, len, [&] { *out = new at::Tensor(at::linalg_vector_norm(*self, ord)); });
}

// Identity of the TensorImpl (two handles on one tensor agree).
size_t lt_tensor_impl_id(const at::Tensor* t) {
  return reinterpret_cast<size_t>(t->unsafeGetTensorImpl());
}

// p.grad = None
void lt_reset_grad(at::Tensor* t) {
  try {
    t->mutable_grad().reset();
  } catch (...) {
  }
}

// torch.optim's fused Adam/AdamW over n tensors (all on one device, one dtype): increments the
// step tensors, then runs ATen's fused kernel. max_exp_avg_sqs may be null when !amsgrad.
int lt_fused_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                  at::Tensor** max_exp_avg_sqs, at::Tensor** steps, size_t n, double lr, double beta1, double beta2,
                  double weight_decay, double eps, int amsgrad, int maximize, int decoupled, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto p = list(params, n), g = list(grads, n), m = list(exp_avgs, n), v = list(exp_avg_sqs, n), s = list(steps, n);
    std::vector<at::Tensor> mx;
    if (amsgrad) mx = list(max_exp_avg_sqs, n);
    at::_foreach_add_(s, 1);
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, mx, s, lr, beta1, beta2, weight_decay, eps, amsgrad != 0, maximize != 0);
    } else {
      at::_fused_adam_(p, g, m, v, mx, s, lr, beta1, beta2, weight_decay, eps, amsgrad != 0, maximize != 0);
    }
  });
}

}  // extern "C"
