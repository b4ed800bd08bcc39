// ONNX Runtime custom op `omm.OmmSamplingHead` (CUDA execution provider): the sampling head of
// onnx-export/omm_export/sampling_head.py in one op, run by the kernels of sampling_head.cu.
//
//   inputs   logits  f32 [B, 1, V] or [B, V]  the last position's logits
//            params  f32 [5]       temperature (0: greedy), top_k (<= 0: all), top_p (>= 1: all), repetition penalty,
//                                  guidance scale
//            uniform f32 [B]       each row's draw
//            rows    i64 [B, 2]    per row (base, cond) of the guidance mix
//            seen    f32 [B, V]    1 where the id is in the row's sequence
//            mask    f32 [V]       added to every row after the mix
//   outputs  next_token [B, 1] i64; next_token_greedy [B, 1] i64
// Registered by RegisterCustomOps (matmul_int4_op.cc) in the same `omm` domain.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "op_status.h"

#include <cstdint>
#include <string>
#include <vector>

extern "C" size_t omm_sampling_head_scratch_bytes(int B, int V);
extern "C" int omm_sampling_head(const void* logits, const void* params, const void* uniform, const void* rows, const void* seen,
                                 const void* mask, void* next_token, void* next_greedy, int B, int V, void* scratch, void* stream);

namespace {

constexpr const char* kOpName = "OmmSamplingHead";

OrtStatusPtr Fail(const std::string& message) { return OmmFail(kOpName, message); }

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

struct SamplingHeadKernel {
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::KernelContext ctx(context);
      Ort::ConstValue logits = ctx.GetInput(0);
      const std::vector<int64_t> ls = logits.GetTensorTypeAndShapeInfo().GetShape();
      if (!((ls.size() == 3 && ls[1] == 1) || ls.size() == 2))
        return Fail("logits must be [B, 1, V] or [B, V] (got " + ShapeText(ls) + ")");
      const int64_t b = ls[0], v = ls.back();
      if (v < 1 || v > (int64_t{1} << 20))
        return Fail("logits' vocabulary must be in [1, 2^20], the sampling head's bound (got " + std::to_string(v) + ")");
      if (b > 65535) return Fail("at most 65535 rows (got " + std::to_string(b) + ")");
      auto expect = [&](size_t index, const char* name, size_t count) -> OrtStatusPtr {
        const size_t got = ctx.GetInput(index).GetTensorTypeAndShapeInfo().GetElementCount();
        if (got != count)
          return Fail(std::string(name) + " must hold " + std::to_string(count) + " values (got " + std::to_string(got) + ")");
        return nullptr;
      };
      if (OrtStatusPtr s = expect(1, "params", 5)) return s;
      if (OrtStatusPtr s = expect(2, "uniform", static_cast<size_t>(b))) return s;
      if (OrtStatusPtr s = expect(3, "rows", static_cast<size_t>(b) * 2)) return s;
      if (OrtStatusPtr s = expect(4, "seen", static_cast<size_t>(b * v))) return s;
      if (OrtStatusPtr s = expect(5, "mask", static_cast<size_t>(v))) return s;
      const std::vector<int64_t> out_shape{b, 1};
      Ort::UnownedValue next = ctx.GetOutput(0, out_shape);
      Ort::UnownedValue greedy = ctx.GetOutput(1, out_shape);
      if (b == 0) return nullptr;
      const size_t bytes = omm_sampling_head_scratch_bytes(static_cast<int>(b), static_cast<int>(v));
      OmmScratch scratch(context, logits, bytes);   // freed once the step's work is queued
      if (scratch.get() == nullptr) return Fail("no device memory for the scratch (" + std::to_string(bytes) + " bytes)");
      const int rc = omm_sampling_head(logits.GetTensorRawData(), ctx.GetInput(1).GetTensorRawData(), ctx.GetInput(2).GetTensorRawData(),
                                       ctx.GetInput(3).GetTensorRawData(), ctx.GetInput(4).GetTensorRawData(),
                                       ctx.GetInput(5).GetTensorRawData(), next.GetTensorMutableRawData(),
                                       greedy.GetTensorMutableRawData(), static_cast<int>(b), static_cast<int>(v), scratch.get(),
                                       ctx.GetGPUComputeStream());
      return OmmLaunchStatus(kOpName, rc);
    });
  }
};

struct SamplingHeadOp : Ort::CustomOpBase<SamplingHeadOp, SamplingHeadKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* /*info*/, void** kernel) const {
    return OmmGuard([&]() -> OrtStatusPtr {
      *kernel = new SamplingHeadKernel();
      return nullptr;
    });
  }
  const char* GetName() const { return kOpName; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 6; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64; }
};

}  // namespace

// Adds the op to `domain` (called by RegisterCustomOps with the API version it settled on).
void OmmAddSamplingHeadOp(Ort::CustomOpDomain& domain, uint32_t version) {
  static SamplingHeadOp op;
  op.version = version;
  domain.Add(&op);
}
