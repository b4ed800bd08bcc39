// ONNX Runtime custom op `omm.OmmQkvHeadNorm` (CUDA execution provider): Chameleon's qk-norm on the packed qkv projection
// in one kernel (qk_norm.cu), in place of Split + (Reshape, LayerNormalization, Mul, Add, Reshape) for q and for k.
//
//   inputs   qkv fp16 [B, S, (H + 2 Hkv) * D]; q_weight, q_bias fp16 [H, D]; k_weight, k_bias fp16 [Hkv, D]
//   outputs  q [B, S, H * D], k [B, S, Hkv * D], v [B, S, Hkv * D] fp16
//   attrs    num_heads H, kv_num_heads Hkv, head_dim D (at most 256), epsilon
// Registered by RegisterCustomOps (matmul_int4_op.cc) in the `omm` domain.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "op_status.h"

#include <cstdint>
#include <string>
#include <vector>

extern "C" int omm_qkv_head_norm(const void* qkv, const void* q_w, const void* q_b, const void* k_w, const void* k_b, void* q, void* k,
                                 void* v, long long tokens, int heads, int kv_heads, int head_dim, float eps, void* stream);

namespace {

constexpr const char* kOpName = "OmmQkvHeadNorm";

OrtStatusPtr Fail(const std::string& message) { return OmmFail(kOpName, message); }

struct QkvHeadNormKernel {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float eps = 0.0f;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::KernelContext ctx(context);
      Ort::ConstValue qkv = ctx.GetInput(0);
      std::vector<int64_t> shape = qkv.GetTensorTypeAndShapeInfo().GetShape();
      // the graph this op replaces reshapes to [d0, d1, heads, D] and back to [d0, d1, heads * D]: rank 3 only
      if (shape.size() != 3) return Fail("qkv must be [batch, sequence, (num_heads + 2 kv_num_heads) * head_dim] (rank 3)");
      const int64_t width = (heads + 2 * kv_heads) * head_dim;
      if (shape.empty() || shape.back() != width)
        return Fail("qkv's last dimension must be (num_heads + 2 kv_num_heads) * head_dim = " + std::to_string(width));
      int64_t tokens = 1;
      for (size_t i = 0; i + 1 < shape.size(); ++i) tokens *= shape[i];
      const char* names[] = {"q_weight", "q_bias", "k_weight", "k_bias"};
      for (size_t i = 1; i <= 4; ++i) {
        const size_t want = static_cast<size_t>((i <= 2 ? heads : kv_heads) * head_dim);
        if (ctx.GetInput(i).GetTensorTypeAndShapeInfo().GetElementCount() != want)
          return Fail(std::string(names[i - 1]) + " must hold " + std::to_string(want) + " values");
      }
      shape.back() = heads * head_dim;
      Ort::UnownedValue q = ctx.GetOutput(0, shape);
      shape.back() = kv_heads * head_dim;
      Ort::UnownedValue k = ctx.GetOutput(1, shape);
      Ort::UnownedValue v = ctx.GetOutput(2, shape);
      if (tokens == 0) return nullptr;
      const int rc = omm_qkv_head_norm(qkv.GetTensorRawData(), ctx.GetInput(1).GetTensorRawData(), ctx.GetInput(2).GetTensorRawData(),
                                       ctx.GetInput(3).GetTensorRawData(), ctx.GetInput(4).GetTensorRawData(),
                                       q.GetTensorMutableRawData(), k.GetTensorMutableRawData(), v.GetTensorMutableRawData(), tokens,
                                       static_cast<int>(heads), static_cast<int>(kv_heads), static_cast<int>(head_dim), eps,
                                       ctx.GetGPUComputeStream());
      return OmmLaunchStatus(kOpName, rc);
    });
  }
};

struct QkvHeadNormOp : Ort::CustomOpBase<QkvHeadNormOp, QkvHeadNormKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::ConstKernelInfo ki(info);
      const int64_t heads = ki.GetAttribute<int64_t>("num_heads"), kv_heads = ki.GetAttribute<int64_t>("kv_num_heads"),
                    head_dim = ki.GetAttribute<int64_t>("head_dim");
      const float eps = ki.GetAttribute<float>("epsilon");
      if (heads < 1 || kv_heads < 1 || heads > 4096 || kv_heads > 4096 || head_dim < 1 || head_dim > 256 || !(eps >= 0.0f))
        return Fail("needs num_heads and kv_num_heads in [1, 4096], head_dim in [1, 256] and epsilon >= 0 (got " +
                    std::to_string(heads) + ", " + std::to_string(kv_heads) + ", " + std::to_string(head_dim) + ", " + std::to_string(eps) + ")");
      auto* kern = new QkvHeadNormKernel();
      kern->heads = heads;
      kern->kv_heads = kv_heads;
      kern->head_dim = head_dim;
      kern->eps = eps;
      *kernel = kern;
      return nullptr;
    });
  }
  const char* GetName() const { return kOpName; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 5; }
  ONNXTensorElementDataType GetInputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16; }
  size_t GetOutputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16; }
};

}  // namespace

// Adds the op to `domain` (called by RegisterCustomOps with the API version it settled on).
void OmmAddQkvHeadNormOp(Ort::CustomOpDomain& domain, uint32_t version) {
  static QkvHeadNormOp op;
  op.version = version;
  domain.Add(&op);
}
