// Chameleon's qk-norm in one kernel (`omm.OmmQkvHeadNorm`, issue 16: fused layer pieces where the profile shows
// launch-bound time). The fused graph splits the packed qkv projection and runs, for q and for k, Reshape →
// LayerNormalization over each head (scale 1, bias 0) → Mul by a per-head weight → Add a per-head bias → Reshape: seven
// kernels a layer (a Split, two LayerNorms, two Muls, two Adds; the Reshapes launch none), 0.58 ms of a guided
// Chameleon-7B step on an H100 (CUPTI). This kernel reads the packed row once
// and writes q and k normalised and v copied, with the graph's roundings: the normalisation in float32 (mean, then the
// mean square of the deviations; 1 / sqrt(var + eps)), rounded to fp16 as LayerNormalization's output is, then the fp16
// product with the weight and the fp16 sum with the bias, each rounded on its own.
//
//   omm_qkv_head_norm(qkv [T, (H + 2 Hkv) * D] fp16, q_w, q_b [H, D] fp16, k_w, k_b [Hkv, D] fp16,
//                     q [T, H * D], k [T, Hkv * D], v [T, Hkv * D] fp16, T, H, Hkv, D, eps, stream)
// One warp a head of a token (D at most 256: each lane holds up to ceil(D / 32) values), 8 warps a block.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace {

constexpr int kWarps = 8;

template <int kPer>
__global__ void __launch_bounds__(kWarps * 32) qkv_head_norm(const __half* __restrict__ qkv, const __half* __restrict__ q_w,
                                                            const __half* __restrict__ q_b, const __half* __restrict__ k_w,
                                                            const __half* __restrict__ k_b, __half* __restrict__ q,
                                                            __half* __restrict__ k, __half* __restrict__ v, int tokens, int heads,
                                                            int kv_heads, int D, float eps) {
  const int all = heads + 2 * kv_heads;
  const int lane = threadIdx.x & 31;
  const long long slot = static_cast<long long>(blockIdx.x) * kWarps + (threadIdx.x >> 5);   // (token, head) pairs
  if (slot >= static_cast<long long>(tokens) * all) return;
  const long long t = slot / all;
  const int h = static_cast<int>(slot % all);
  const __half* src = qkv + t * all * D + static_cast<long long>(h) * D;
  __half x[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) x[j] = j * 32 + lane < D ? src[j * 32 + lane] : __float2half(0.0f);
  if (h >= heads + kv_heads) {   // v: copied
    __half* dst = v + t * kv_heads * D + static_cast<long long>(h - heads - kv_heads) * D;
#pragma unroll
    for (int j = 0; j < kPer; ++j)
      if (j * 32 + lane < D) dst[j * 32 + lane] = x[j];
    return;
  }
  const bool is_q = h < heads;
  const int hh = is_q ? h : h - heads;
  const __half* w = (is_q ? q_w : k_w) + static_cast<long long>(hh) * D;
  const __half* b = (is_q ? q_b : k_b) + static_cast<long long>(hh) * D;
  __half* dst = (is_q ? q + t * heads * D : k + t * kv_heads * D) + static_cast<long long>(hh) * D;
  float f[kPer], sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) { f[j] = __half2float(x[j]); sum += f[j]; }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float mean = sum / D;
  float sq = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const float d = f[j] - mean;
    if (j * 32 + lane < D) sq += d * d;
  }
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
  const float inv = rsqrtf(sq / D + eps);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    if (j * 32 + lane >= D) continue;
    const __half n = __float2half_rn((f[j] - mean) * inv);
    dst[j * 32 + lane] = __hadd_rn(__hmul_rn(n, w[j * 32 + lane]), b[j * 32 + lane]);   // _rn: never contracted to an fma
  }
}

}  // namespace

extern "C" int omm_qkv_head_norm(const void* qkv, const void* q_w, const void* q_b, const void* k_w, const void* k_b, void* q, void* k,
                                 void* v, long long tokens, int heads, int kv_heads, int head_dim, float eps, void* stream) {
  if (tokens <= 0) return 0;
  if (heads <= 0 || kv_heads <= 0 || heads > 65536 || kv_heads > 65536 || head_dim < 1 || head_dim > 256) return -1;
  const long long slots = tokens * (heads + 2 * kv_heads);
  const long long blocks = (slots + kWarps - 1) / kWarps;
  if (blocks > 0x7fffffffLL || tokens > 0x7fffffffLL) return -1;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto* a = static_cast<const __half*>(qkv);
  const auto *qw = static_cast<const __half*>(q_w), *qb = static_cast<const __half*>(q_b);
  const auto *kw = static_cast<const __half*>(k_w), *kb = static_cast<const __half*>(k_b);
  auto *qo = static_cast<__half*>(q), *ko = static_cast<__half*>(k), *vo = static_cast<__half*>(v);
  const int t = static_cast<int>(tokens);
  switch ((head_dim + 31) / 32) {
    case 1: qkv_head_norm<1><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    case 2: qkv_head_norm<2><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    case 3: qkv_head_norm<3><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    case 4: qkv_head_norm<4><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    case 5: qkv_head_norm<5><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    case 6: qkv_head_norm<6><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    case 7: qkv_head_norm<7><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    case 8: qkv_head_norm<8><<<blocks, kWarps * 32, 0, s>>>(a, qw, qb, kw, kb, qo, ko, vo, t, heads, kv_heads, head_dim, eps); break;
    default: return -1;
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : static_cast<int>(e);
}
