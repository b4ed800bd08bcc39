// ONNX Runtime custom-op library: ops `OmmMatMulInt4`, `OmmMatMulInt4SiluMul` and `OmmMatMulInt4SwiGlu` in domain
// `omm`, for the CUDA execution provider (and `OmmSamplingHead`, sampling_head_op.cc; `OmmQkvHeadNorm`, qk_norm_op.cc).
//
//   inputs   A fp16 [..., K]; B uint8 [N, k_blocks, block_size/2]; scales fp16 [N, k_blocks];
//            zero_points uint8 [N, ceil(k_blocks/2)] (optional); g_idx (optional, refused if given);
//            bias fp16 [N] (optional)                 -- MatMulNBits' inputs, in its order
//   output   Y fp16 [..., N]
//   attrs    K, N, bits (must be 4), block_size (power of two >= 32); accuracy_level is accepted and
//            ignored (the kernel accumulates in fp32 across blocks)
// OmmMatMulInt4SiluMul: the same inputs and attributes, except that A is the gate_up projection's output [..., 2K]
//            (gate = A[..., :K], up = A[..., K:]) and Y = (silu(gate) * up) @ dequant(B)^T (+ bias): a fused Llama MLP's
//            Split + SiLU + Mul + down projection in one kernel (measured slower than the unfused kernels: kept for the
//            micro-benchmark; convert no longer writes it).
// OmmMatMulInt4SwiGlu: MatMulNBits' inputs and attributes for the gate_up weight (N = 2I: gate rows, then up rows);
//            Y [..., N/2] = silu(A @ gate^T) * (A @ up^T): a fused Llama MLP's gate_up projection + Split + SiLU + Mul in
//            one kernel (convert --custom-ops omm-fused writes it).
// The kernel runs on the EP's compute stream (KernelContext::GetGPUComputeStream), so the op can be
// captured in an ORT CUDA graph. Memory-traffic bound and layout: see int4_gemv.cu.
// Loaded with SessionOptions.RegisterCustomOpLibrary; the entry point is RegisterCustomOps.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "op_status.h"

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

extern "C" int omm_int4_gemv(const void* x, const void* b, const void* scales, const void* zero_points,
                             const void* bias, void* y, int M, int N, int K, int block_size, void* stream);
extern "C" int omm_int4_gemv_silu_mul(const void* a, const void* b, const void* scales, const void* zero_points,
                                      const void* bias, void* y, int M, int N, int K, int block_size, void* stream);
extern "C" int omm_int4_gemv_swiglu(const void* x, const void* b, const void* scales, const void* zero_points,
                                    const void* bias, void* y, int M, int N, int K, int block_size, void* stream);

void OmmAddSamplingHeadOp(Ort::CustomOpDomain& domain, uint32_t version);   // sampling_head_op.cc
void OmmAddQkvHeadNormOp(Ort::CustomOpDomain& domain, uint32_t version);   // qk_norm_op.cc
void OmmAddSwiGluOp(Ort::CustomOpDomain& domain, uint32_t version);        // swiglu_op.cc
void OmmAddGroupNormOp(Ort::CustomOpDomain& domain, uint32_t version);     // group_norm_op.cc

namespace {

constexpr const char* kDomain = "omm";
constexpr int kMinApiVersion = 16;   // every C API function used here exists since ORT 1.16

// The ops share one kernel struct and one op struct, templated on the mode: 0 is OmmMatMulInt4 (A [..., K]); 1 is
// OmmMatMulInt4SiluMul (A [..., 2K], x = silu(A[..., :K]) * A[..., K:] formed in the kernel); 2 is OmmMatMulInt4SwiGlu
// (A [..., K], Y [..., N/2]).
template <int kMode>
struct Mode;
template <>
struct Mode<0> {
  static constexpr const char* kName = "OmmMatMulInt4";
  static constexpr int64_t kAWidth = 1;   // A's last dimension in units of K
  static constexpr int64_t kOutDivisor = 1;   // Y's last dimension = N / this
  static constexpr auto kGemv = &omm_int4_gemv;
};
template <>
struct Mode<1> {
  static constexpr const char* kName = "OmmMatMulInt4SiluMul";
  static constexpr int64_t kAWidth = 2;
  static constexpr int64_t kOutDivisor = 1;
  static constexpr auto kGemv = &omm_int4_gemv_silu_mul;
};
template <>
struct Mode<2> {
  static constexpr const char* kName = "OmmMatMulInt4SwiGlu";
  static constexpr int64_t kAWidth = 1;
  static constexpr int64_t kOutDivisor = 2;
  static constexpr auto kGemv = &omm_int4_gemv_swiglu;
};


bool Present(const Ort::KernelContext& ctx, size_t index) {
  if (index >= ctx.GetInputCount()) return false;
  const OrtValue* v = ctx.GetInput(index);
  return v != nullptr;
}

template <int kMode>
struct MatMulInt4Kernel {
  int64_t k = 0, n = 0, block_size = 0;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    constexpr const char* kOpName = Mode<kMode>::kName;
    auto Fail = [](const std::string& message) { return OmmFail(kOpName, message); };
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::KernelContext ctx(context);
      Ort::ConstValue a = ctx.GetInput(0);
      Ort::ConstValue b = ctx.GetInput(1);
      Ort::ConstValue scales = ctx.GetInput(2);
      if (Present(ctx, 4)) return Fail("g_idx (act-order) is not supported");
      std::vector<int64_t> shape = a.GetTensorTypeAndShapeInfo().GetShape();
      const int64_t a_width = Mode<kMode>::kAWidth * k;   // K, or 2K (gate and up side by side)
      if (shape.empty() || shape.back() != a_width)
        return Fail(std::string(kMode == 1 ? "A's last dimension must equal 2 * K = " : "A's last dimension must equal K = ") +
                    std::to_string(a_width) + " (got " + (shape.empty() ? std::string("a scalar") : std::to_string(shape.back())) + ")");
      int64_t m = 1;
      for (size_t i = 0; i + 1 < shape.size(); ++i) m *= shape[i];
      const int64_t k_blocks = (k + block_size - 1) / block_size;
      if (b.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(n * k_blocks * block_size / 2))
        return Fail("B must hold N * ceil(K / block_size) * block_size / 2 bytes");
      if (scales.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(n * k_blocks))
        return Fail("scales must hold N * ceil(K / block_size) values");
      const void* zp = nullptr;
      if (Present(ctx, 3)) {
        Ort::ConstValue z = ctx.GetInput(3);
        auto info = z.GetTensorTypeAndShapeInfo();
        if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 ||
            info.GetElementCount() != static_cast<size_t>(n * ((k_blocks + 1) / 2)))
          return Fail("zero_points must be uint8 [N, ceil(k_blocks / 2)] (4-bit packed)");
        zp = z.GetTensorRawData();
      }
      const void* bias = nullptr;
      if (Present(ctx, 5)) {
        Ort::ConstValue bv = ctx.GetInput(5);
        if (bv.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(n)) return Fail("bias must be [N]");
        bias = bv.GetTensorRawData();
      }
      shape.back() = n / Mode<kMode>::kOutDivisor;
      Ort::UnownedValue y = ctx.GetOutput(0, shape);
      if (m == 0) return nullptr;
      if (m > INT32_MAX) return Fail("too many rows");
      const int rc = Mode<kMode>::kGemv(a.GetTensorRawData(), b.GetTensorRawData(), scales.GetTensorRawData(), zp, bias,
                                   y.GetTensorMutableRawData(), static_cast<int>(m), static_cast<int>(n),
                                   static_cast<int>(k), static_cast<int>(block_size), ctx.GetGPUComputeStream());
      return OmmLaunchStatus(kOpName, rc);
    });
  }
};

template <int kMode>
struct MatMulInt4Op : Ort::CustomOpBase<MatMulInt4Op<kMode>, MatMulInt4Kernel<kMode>, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    return OmmGuard([&]() -> OrtStatusPtr {
      Ort::ConstKernelInfo ki(info);
      auto attr = [&](const char* name) { return ki.GetAttribute<int64_t>(name); };
      const int64_t k = attr("K"), n = attr("N"), block_size = attr("block_size"), bits = attr("bits");
      if (bits != 4 || k < 32 || k % 32 != 0 || n < 1 || n > INT32_MAX || k > INT32_MAX || block_size < 32 ||
          (block_size & (block_size - 1)) != 0 || n % Mode<kMode>::kOutDivisor != 0)
        return OmmFail(Mode<kMode>::kName, "needs bits = 4, K a multiple of 32, block_size a power of two >= 32 (and N even for SwiGLU; got bits " +
                                                 std::to_string(bits) + ", K " + std::to_string(k) + ", N " + std::to_string(n) + ", block_size " +
                                                 std::to_string(block_size) + ")");
      auto* kern = new MatMulInt4Kernel<kMode>();
      kern->k = k;
      kern->n = n;
      kern->block_size = block_size;
      *kernel = kern;
      return nullptr;
    });
  }
  const char* GetName() const { return Mode<kMode>::kName; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 6; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    switch (index) {
      case 0: case 2: case 5: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
      case 4: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
      default: return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    }
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index >= 3 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16; }
};

}  // namespace

extern "C" ORT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  // Ask for the newest API this runtime knows, down to the oldest one this file needs.
  const OrtApi* api = nullptr;
  int version = ORT_API_VERSION;
  for (; version >= kMinApiVersion && api == nullptr; --version) api = api_base->GetApi(version);
  if (api == nullptr) return nullptr;  // cannot even build a status; ORT reports the missing op at load
  ++version;
  Ort::InitApi(api);
  OmmApiVersion() = static_cast<uint32_t>(version);
  static MatMulInt4Op<0> op;
  static MatMulInt4Op<1> silu_mul_op;
  static MatMulInt4Op<2> swiglu_op;
  static std::mutex lock;
  static std::vector<Ort::CustomOpDomain> domains;   // must outlive every session that uses them
  std::lock_guard<std::mutex> guard(lock);
  op.version = static_cast<uint32_t>(version);
  silu_mul_op.version = static_cast<uint32_t>(version);
  swiglu_op.version = static_cast<uint32_t>(version);
  try {
    Ort::CustomOpDomain domain(kDomain);
    domain.Add(&op);
    domain.Add(&silu_mul_op);
    domain.Add(&swiglu_op);
    OmmAddSamplingHeadOp(domain, static_cast<uint32_t>(version));
    OmmAddQkvHeadNormOp(domain, static_cast<uint32_t>(version));
    OmmAddSwiGluOp(domain, static_cast<uint32_t>(version));
    OmmAddGroupNormOp(domain, static_cast<uint32_t>(version));
    Ort::UnownedSessionOptions(options).Add(domain);
    domains.push_back(std::move(domain));
    return nullptr;
  } catch (const Ort::Exception& e) {
    return api->CreateStatus(e.GetOrtErrorCode(), e.what());
  }
}
