// SiLU(gate) * up of a fused MLP's packed gate_up projection output in one kernel, in place of Split + SiLU (ORT fuses
// Sigmoid + Mul into QuickGelu) + Mul: three passes over a [rows, 2K] fp16 tensor become one read of it and one write of
// [rows, K]. The long-prompt form of the fusion our int4 GEMV does in its epilogue (OmmMatMulInt4SwiGlu), for stock
// MatMul / MatMulNBits graphs such as an fp16 prefill decoder. SiLU is rounded to fp16 before the product, as the
// unfused graph stores it.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace {

__device__ __forceinline__ __half SiluMul(__half gate, __half up) {
  const float x = __half2float(gate);
  const __half silu = __float2half_rn(x / (1.0f + __expf(-x)));
  return __hmul_rn(silu, up);
}

// kVec halves a thread: 8 (16-byte loads and stores, K % 8 == 0 and aligned pointers) or 1.
template <int kVec>
__global__ void __launch_bounds__(256) swiglu(const __half* __restrict__ x, __half* __restrict__ y, long long rows, long long k) {
  const long long per_row = k / kVec;
  const long long n = rows * per_row;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = i / per_row, c = (i - r * per_row) * kVec;
    const __half* gate = x + r * 2 * k + c;
    const __half* up = gate + k;
    __half* out = y + r * k + c;
    if constexpr (kVec == 8) {
      const uint4 g = *reinterpret_cast<const uint4*>(gate);
      const uint4 u = *reinterpret_cast<const uint4*>(up);
      uint4 o;
      const __half* gh = reinterpret_cast<const __half*>(&g);
      const __half* uh = reinterpret_cast<const __half*>(&u);
      __half* oh = reinterpret_cast<__half*>(&o);
#pragma unroll
      for (int j = 0; j < 8; ++j) oh[j] = SiluMul(gh[j], uh[j]);
      *reinterpret_cast<uint4*>(out) = o;
    } else {
      out[0] = SiluMul(gate[0], up[0]);
    }
  }
}

}  // namespace

// y [rows, k] = silu(x[:, :k]) * x[:, k:] for x [rows, 2k], fp16, on `stream`. 0, -1 for bad sizes, else the CUDA error.
extern "C" int omm_swiglu(const void* x, void* y, long long rows, long long k, void* stream) {
  if (rows < 0 || k < 0) return -1;
  if (rows == 0 || k == 0) return 0;
  if (rows > (1LL << 40) / k) return -1;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto* in = static_cast<const __half*>(x);
  auto* out = static_cast<__half*>(y);
  const bool vec = k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  const long long n = rows * (vec ? k / 8 : k);
  const long long blocks = (n + 255) / 256 < 65536LL * 16 ? (n + 255) / 256 : 65536LL * 16;   // grid-stride beyond
  if (vec)
    swiglu<8><<<static_cast<unsigned>(blocks), 256, 0, s>>>(in, out, rows, k);
  else
    swiglu<1><<<static_cast<unsigned>(blocks), 256, 0, s>>>(in, out, rows, k);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : static_cast<int>(e);
}
