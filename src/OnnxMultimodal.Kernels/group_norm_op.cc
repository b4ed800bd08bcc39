// ONNX Runtime custom op `omm.OmmGroupNorm` (CUDA execution provider): nn.GroupNorm, and the SiLU after it when
// `activation` is 1, in two kernels (group_norm.cu), in place of the exporter's Reshape + InstanceNormalization + Reshape +
// Mul + Add (+ Sigmoid + Mul).
//
//   inputs   x fp32 [N, C, ...]; gamma, beta fp32 with C values each (any shape: the exporter's [C, 1, 1] initializers)
//   output   y fp32, x's shape
//   attrs    num_groups G (C a multiple of it), epsilon, activation (0 none, 1 SiLU)
// Registered by RegisterCustomOps (matmul_int4_op.cc) in the `omm` domain.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "op_status.h"

#include <cstdint>
#include <string>
#include <vector>

extern "C" size_t omm_group_norm_scratch_bytes(long long n, long long channels, long long positions, long long groups);
extern "C" int omm_group_norm(const void* x, void* y, const void* gamma, const void* beta, long long n, long long channels,
                              long long positions, long long groups, float eps, int silu, void* scratch, void* stream);

namespace {

constexpr const char* kOpName = "OmmGroupNorm";

OrtStatusPtr Fail(const std::string& message) { return OmmFail(kOpName, message); }

struct GroupNormKernel {
  int64_t groups = 0, activation = 0;
  float eps = 0.0f;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::KernelContext ctx(context);
      Ort::ConstValue x = ctx.GetInput(0);
      const std::vector<int64_t> shape = x.GetTensorTypeAndShapeInfo().GetShape();
      if (shape.size() < 2) return Fail("x must be [N, C, ...] (rank 2 or more, got " + std::to_string(shape.size()) + ")");
      const int64_t n = shape[0], c = shape[1];
      if (c < 1 || c % groups != 0)
        return Fail("x's channels (" + std::to_string(c) + ") must be a positive multiple of num_groups (" + std::to_string(groups) + ")");
      int64_t positions = 1;
      for (size_t i = 2; i < shape.size(); ++i) {
        if (shape[i] != 0 && positions > (int64_t{1} << 40) / shape[i]) return Fail("x holds more than 2^40 values");
        positions *= shape[i];
      }
      if (c > 2147483647 || (positions > 0 && n > (int64_t{1} << 40) / (c * positions)))
        return Fail("x holds more than 2^40 values or 2^31 - 1 channels");
      const char* names[] = {"gamma", "beta"};
      for (size_t i = 1; i <= 2; ++i)
        if (ctx.GetInput(i).GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(c))
          return Fail(std::string(names[i - 1]) + " must hold one value per channel (" + std::to_string(c) + ")");
      Ort::UnownedValue y = ctx.GetOutput(0, shape);
      if (n == 0 || positions == 0) return nullptr;
      if (n * groups > 65535) return Fail("at most 65535 (image, group) pairs (got " + std::to_string(n * groups) + ")");
      const size_t bytes = omm_group_norm_scratch_bytes(n, c, positions, groups);
      if (bytes == 0) return Fail("x's sizes are out of range");
      OmmScratch scratch(context, x, bytes);   // the partial sums, until the kernels are queued
      if (scratch.get() == nullptr) return Fail("no device memory for the partial sums (" + std::to_string(bytes) + " bytes)");
      const int rc = omm_group_norm(x.GetTensorRawData(), y.GetTensorMutableRawData(), ctx.GetInput(1).GetTensorRawData(),
                                    ctx.GetInput(2).GetTensorRawData(), n, c, positions, groups, eps, static_cast<int>(activation),
                                    scratch.get(), ctx.GetGPUComputeStream());
      return OmmLaunchStatus(kOpName, rc);
    });
  }
};

struct GroupNormOp : Ort::CustomOpBase<GroupNormOp, GroupNormKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::ConstKernelInfo ki(info);
      const int64_t groups = ki.GetAttribute<int64_t>("num_groups"), activation = ki.GetAttribute<int64_t>("activation");
      const float eps = ki.GetAttribute<float>("epsilon");
      if (groups < 1 || groups > 65535 || (activation != 0 && activation != 1) || !(eps >= 0.0f))
        return Fail("needs num_groups in [1, 65535], activation 0 or 1 and epsilon >= 0 (got " + std::to_string(groups) + ", " +
                    std::to_string(activation) + ", " + std::to_string(eps) + ")");
      auto* kern = new GroupNormKernel();
      kern->groups = groups;
      kern->activation = activation;
      kern->eps = eps;
      *kernel = kern;
      return nullptr;
    });
  }
  const char* GetName() const { return kOpName; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetInputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

// Adds the op to `domain` (called by RegisterCustomOps with the API version it settled on).
void OmmAddGroupNormOp(Ort::CustomOpDomain& domain, uint32_t version) {
  static GroupNormOp op;
  op.version = version;
  domain.Add(&op);
}
