// The NCCL backend, built as its own shared object (liblt_dist_nccl.so) that dist.cpp dlopens only
// when a run asks for "nccl": linking libtorch_cuda into the lt binary would cost every CPU run
// ~0.15 s and ~400 MB RSS at start-up. Compiled with -DUSE_C10D_NCCL against the CUDA headers and
// nccl.h of the nvidia-* wheels installed beside torch. Nothing unwinds out of this file.
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <chrono>
#include <cstring>
#include <string>

#include "guard.h"
using lt_ffi::guarded;
using lt_ffi::write_str;


extern "C" __attribute__((visibility("default"))) c10d::Backend* lt_nccl_backend_new(
    const c10::intrusive_ptr<c10d::Store>* store, int rank, int size, int64_t timeout_ms, char* buf,
    size_t len) {
  try {
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(*store, rank, size, opts);
    return pg.release();
  } catch (const std::exception& e) {
    write_str(e.what(), buf, len);
    return nullptr;
  } catch (...) {
    write_str("unknown C++ exception", buf, len);
    return nullptr;
  }
}
