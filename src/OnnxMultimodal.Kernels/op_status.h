// Status helpers shared by the custom ops of libomm_kernels.so (matmul_int4_op.cc, sampling_head_op.cc, qk_norm_op.cc):
// an op's errors name the op, and no exception crosses the C boundary into ONNX Runtime.
#pragma once

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
