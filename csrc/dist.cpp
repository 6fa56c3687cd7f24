// lt's distributed backend: libtorch's own c10d (TCPStore rendezvous + ProcessGroupGloo, or
// ProcessGroupNCCL loaded from a separate shared object, see dist_nccl.cpp). Every entry point
// catches every C++ exception and reports it through an error buffer: nothing unwinds into Rust.
// Compiled with -DUSE_C10D_GLOO against Debian's gloo headers (libgloo-dev); the gloo code itself
// is the copy inside libtorch_cpu.so (never -lgloo).
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <dlfcn.h>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "guard.h"
using lt_ffi::guarded;
using lt_ffi::write_str;

namespace {

struct LtPg {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  int rank;
  int size;
  bool native_avg;
};

// Signature of lt_nccl_backend_new in liblt_dist_nccl.so: returns a released
// intrusive_ptr<c10d::Backend> (or null with the message in buf).
typedef c10d::Backend* (*NcclFactory)(const c10::intrusive_ptr<c10d::Store>* store, int rank,
                                      int size, int64_t timeout_ms, char* buf, size_t len);

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

c10d::ReduceOp to_op(int op) {
  switch (op) {
    case 0: return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case 1: return c10d::ReduceOp(c10d::ReduceOp::AVG);
    case 2: return c10d::ReduceOp(c10d::ReduceOp::MAX);
    case 3: return c10d::ReduceOp(c10d::ReduceOp::MIN);
    default: TORCH_CHECK(false, "unknown reduce op code ", op);
  }
}

// Runs `launch` on contiguous stand-ins for `ts` (one work per tensor, all in flight together),
// waits for all of them, and copies results back into tensors that were not contiguous.
template <typename F>
void run_each(LtPg* pg, at::Tensor** ts, size_t n, F launch) {
  std::vector<at::Tensor> work_ts;
  work_ts.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(ts[i] != nullptr && ts[i]->defined(), "tensor ", i, " is undefined");
    at::Tensor t = ts[i]->detach();
    work_ts.push_back(t.is_contiguous() ? t : t.contiguous());
  }
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::vector<at::Tensor> one{work_ts[i]};
    works.push_back(launch(one));
  }
  for (auto& w : works) w->wait(pg->timeout);
  for (size_t i = 0; i < n; ++i) {
    if (!ts[i]->is_contiguous()) ts[i]->detach().copy_(work_ts[i]);
  }
}
}  // namespace

#define LT_TRY try {
#define LT_CATCH                                 \
  }                                              \
  catch (const std::exception& e) {              \
    write_str(e.what(), buf, len);               \
    return 1;                                    \
  }                                              \
  catch (...) {                                  \
    write_str("unknown C++ exception", buf, len); \
    return 1;                                    \
  }

extern "C" {

// Rendezvous through a TCPStore (rank 0 hosts it on `port`, the others connect to host:port) and
// creates the backend: "gloo", or "nccl" (then `nccl_lib` is the path of liblt_dist_nccl.so).
// `timeout_ms` bounds the rendezvous and every collective. 0 on success (handle in *out).
int lt_dist_new(const char* backend, const char* host, int port, int rank, int size,
                int64_t timeout_ms, const char* nccl_lib, void** out, char* buf, size_t len) {
  LT_TRY
  *out = nullptr;
  std::string name(backend), h(host);
  TORCH_CHECK(size >= 1, "world size must be at least 1, got ", size);
  TORCH_CHECK(rank >= 0 && rank < size, "rank ", rank, " is outside world size ", size);
  TORCH_CHECK(port > 0 && port < 65536, "port ", port, " is out of range");
  TORCH_CHECK(timeout_ms > 0, "timeout must be positive");
  auto timeout = std::chrono::milliseconds(timeout_ms);

  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = rank == 0;
  so.numWorkers = static_cast<std::size_t>(size);
  so.waitWorkers = true;
  so.timeout = timeout;
  auto store = c10::make_intrusive<c10d::TCPStore>(h, so);

  auto pg = new LtPg{store, {}, timeout, rank, size, false};
  try {
    if (name == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && ifname[0] != 0) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(h)) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      pg->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(pg->store, rank, size, opts);
    } else if (name == "nccl") {
      TORCH_CHECK(nccl_lib != nullptr && nccl_lib[0] != 0,
                  "this lt was built without the NCCL backend (no CUDA headers or nccl.h)");
      void* so_handle = dlopen(nccl_lib, RTLD_NOW | RTLD_LOCAL);
      if (so_handle == nullptr) {
        const char* err = dlerror();
        TORCH_CHECK(false, "cannot load the NCCL backend ", nccl_lib, ": ", err ? err : "?");
      }
      auto factory = reinterpret_cast<NcclFactory>(dlsym(so_handle, "lt_nccl_backend_new"));
      TORCH_CHECK(factory != nullptr, "lt_nccl_backend_new not found in ", nccl_lib);
      c10d::Backend* raw = factory(&pg->store, rank, size, timeout_ms, buf, len);
      if (raw == nullptr) {
        delete pg;
        return 1;
      }
      pg->backend = c10::intrusive_ptr<c10d::Backend>::reclaim(raw);
      pg->native_avg = true;
    } else {
      TORCH_CHECK(false, "unknown backend '", name, "' (expected gloo or nccl)");
    }
  } catch (...) {
    delete pg;
    throw;
  }
  *out = pg;
  return 0;
  LT_CATCH
}

void lt_dist_free(void* handle) {
  try {
    delete static_cast<LtPg*>(handle);
  } catch (...) {
  }
}

// All-reduce each tensor in place. op: 0 sum, 1 avg, 2 max, 3 min. Avg on a backend without it
// (Gloo) is a sum divided by the world size.
int lt_dist_all_reduce(void* handle, at::Tensor** ts, size_t n, int op, char* buf, size_t len) {
  LT_TRY
  auto pg = static_cast<LtPg*>(handle);
  bool divide = op == 1 && !pg->native_avg;
  if (op == 1) {
    for (size_t i = 0; i < n; ++i)
      TORCH_CHECK(ts[i] && ts[i]->defined() && at::isFloatingType(ts[i]->scalar_type()),
                  "average needs floating-point tensors, tensor ", i, " is not");
  }
  c10d::AllreduceOptions opts;
  opts.reduceOp = to_op(divide ? 0 : op);
  opts.timeout = pg->timeout;
  run_each(pg, ts, n, [&](std::vector<at::Tensor>& one) { return pg->backend->allreduce(one, opts); });
  if (divide && pg->size > 1) {
    for (size_t i = 0; i < n; ++i) ts[i]->detach().div_(pg->size);
  }
  return 0;
  LT_CATCH
}

// Broadcast each tensor in place from `root`.
int lt_dist_broadcast(void* handle, at::Tensor** ts, size_t n, int root, char* buf, size_t len) {
  LT_TRY
  auto pg = static_cast<LtPg*>(handle);
  TORCH_CHECK(root >= 0 && root < pg->size, "root ", root, " is outside world size ", pg->size);
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  opts.rootTensor = 0;
  opts.timeout = pg->timeout;
  run_each(pg, ts, n, [&](std::vector<at::Tensor>& one) { return pg->backend->broadcast(one, opts); });
  return 0;
  LT_CATCH
}

// Gathers `input` from every rank into outs[0..size) (preallocated like `input`).
int lt_dist_all_gather(void* handle, const at::Tensor* input, at::Tensor** outs, size_t n, char* buf,
                       size_t len) {
  LT_TRY
  auto pg = static_cast<LtPg*>(handle);
  TORCH_CHECK(static_cast<int>(n) == pg->size, "all_gather needs ", pg->size, " outputs, got ", n);
  TORCH_CHECK(input && input->defined(), "input is undefined");
  std::vector<at::Tensor> in{input->detach().contiguous()};
  std::vector<std::vector<at::Tensor>> out(1);
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(outs[i] && outs[i]->defined() && outs[i]->is_contiguous(), "output ", i, " is not a contiguous tensor");
    out[0].push_back(outs[i]->detach());
  }
  c10d::AllgatherOptions opts;
  opts.timeout = pg->timeout;
  pg->backend->allgather(out, in, opts)->wait(pg->timeout);
  return 0;
  LT_CATCH
}

int lt_dist_barrier(void* handle, char* buf, size_t len) {
  LT_TRY
  auto pg = static_cast<LtPg*>(handle);
  c10d::BarrierOptions opts;
  opts.timeout = pg->timeout;
  pg->backend->barrier(opts)->wait(pg->timeout);
  return 0;
  LT_CATCH
}

// Gives `param` the gradient `grad` (for parameters that had none before a gradient sync).
int lt_dist_set_grad(const at::Tensor* param, const at::Tensor* grad, char* buf, size_t len) {
  LT_TRY
  TORCH_CHECK(param && param->defined() && grad && grad->defined(), "undefined tensor");
  param->mutable_grad() = *grad;
  return 0;
  LT_CATCH
}

}  // extern "C"
