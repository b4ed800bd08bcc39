// ONNX Runtime custom op `omm.OmmSwiGlu` (CUDA execution provider): SiLU(gate) * up of a packed gate_up projection output in
// one kernel (swiglu.cu), in place of Split (two halves along the last axis) + SiLU + Mul.
//
//   input   gate_up fp16 [..., 2K] (gate the first half, up the second)
//   output  fp16 [..., K]
// Registered by RegisterCustomOps (matmul_int4_op.cc) in the `omm` domain.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "op_status.h"

#include <cstdint>
#include <string>
#include <vector>

extern "C" int omm_swiglu(const void* x, void* y, long long rows, long long k, void* stream);

namespace {

constexpr const char* kOpName = "OmmSwiGlu";

struct SwiGluKernel {
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::KernelContext ctx(context);
      Ort::ConstValue x = ctx.GetInput(0);
      std::vector<int64_t> shape = x.GetTensorTypeAndShapeInfo().GetShape();
      if (shape.empty() || shape.back() % 2 != 0)
        return OmmFail(kOpName, "gate_up's last dimension must be 2K, gate then up (got rank " + std::to_string(shape.size()) +
                                    (shape.empty() ? std::string() : ", last " + std::to_string(shape.back())) + ")");
      const int64_t k = shape.back() / 2;
      int64_t rows = 1;
      for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
      if (k > 0 && rows > (int64_t{1} << 40) / k) return OmmFail(kOpName, "gate_up holds more than 2^40 values");
      shape.back() = k;
      Ort::UnownedValue y = ctx.GetOutput(0, shape);
      if (rows == 0 || k == 0) return nullptr;
      return OmmLaunchStatus(kOpName, omm_swiglu(x.GetTensorRawData(), y.GetTensorMutableRawData(), rows, k, ctx.GetGPUComputeStream()));
    });
  }
};

struct SwiGluOp : Ort::CustomOpBase<SwiGluOp, SwiGluKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* /*info*/, void** kernel) const {
    return OmmGuard([&]() -> OrtStatusPtr {
      *kernel = new SwiGluKernel();
      return nullptr;
    });
  }
  const char* GetName() const { return kOpName; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16; }
};

}  // namespace

// Adds the op to `domain` (called by RegisterCustomOps with the API version it settled on).
void OmmAddSwiGluOp(Ort::CustomOpDomain& domain, uint32_t version) {
  static SwiGluOp op;
  op.version = version;
  domain.Add(&op);
}
