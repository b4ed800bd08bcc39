// Helpers shared by the custom ops of libomm_kernels.so (matmul_int4_op.cc, sampling_head_op.cc, qk_norm_op.cc, ...): an
// op's errors name the op, no exception crosses the C boundary into ONNX Runtime, and device scratch comes from the
// session's arena.
#pragma once

#include <cstdint>
#include <exception>
#include <string>

#include "onnxruntime_cxx_api.h"

// An invalid-argument status naming the op: "OmmSamplingHead: logits must be ...".
inline OrtStatusPtr OmmFail(const char* op, const std::string& message) {
  return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, (std::string(op) + ": " + message).c_str());
}

// nullptr for a kernel launch that returned 0, else an EP failure naming the op and the code.
inline OrtStatusPtr OmmLaunchStatus(const char* op, int rc) {
  if (rc == 0) return nullptr;
  return Ort::GetApi().CreateStatus(ORT_EP_FAIL, (std::string(op) + ": kernel launch failed, code " + std::to_string(rc)).c_str());
}

// Runs body (returning an OrtStatusPtr) and turns an exception into a status.
template <class Body>
OrtStatusPtr OmmGuard(Body&& body) noexcept {
  try {
    return body();
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
}

// The C API version RegisterCustomOps settled on (set there, before any op is added).
inline uint32_t& OmmApiVersion() {
  static uint32_t version = 0;
  return version;
}

// Device scratch for one Compute call, from the session's arena on the device of `like` (an input), freed when this goes
// out of scope: after the call's kernels are queued. KernelContext_GetScratchBuffer (C API 18+) tags the block with the
// run's compute stream, so the arena hands it to no other stream (a concurrent Run) before the kernels ran; a plain Alloc
// carries no stream, so it is the fallback for older runtimes only. get() is null when the arena has no memory.
class OmmScratch {
 public:
  OmmScratch(OrtKernelContext* context, const Ort::ConstValue& like, size_t bytes)
      : info_(static_cast<const OrtMemoryInfo*>(like.GetTensorMemoryInfo())), allocator_(Ort::KernelContext(context).GetAllocator(*info_)) {
    if (OmmApiVersion() >= 18) Ort::ThrowOnError(Ort::GetApi().KernelContext_GetScratchBuffer(context, info_, bytes, &data_));
    else data_ = allocator_.Alloc(bytes);
  }
  ~OmmScratch() {
    if (data_ != nullptr) allocator_.Free(data_);
  }
  OmmScratch(const OmmScratch&) = delete;
  OmmScratch& operator=(const OmmScratch&) = delete;
  void* get() const { return data_; }

 private:
  const OrtMemoryInfo* info_;
  Ort::Allocator allocator_;
  void* data_ = nullptr;
};
