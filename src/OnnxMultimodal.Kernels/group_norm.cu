// GroupNorm (+ SiLU) of an NCHW fp32 tensor in two kernels, in place of what the TorchScript exporter writes for
// nn.GroupNorm (Reshape, InstanceNormalization, which ONNX Runtime runs as cuDNN batch norm, Reshape, Mul, Add) and the
// Sigmoid + Mul of the SiLU after it: the VQ image encoder's norms, 4-5 passes over up to 128 MB each.
//
//   stats:  every (image, group) span (C/G channels x S positions, contiguous) is cut into chunks; each block sums one
//           chunk's x - shift and (x - shift)^2 in fp64 (shift = the span's first value, so a large mean does not cancel
//           the variance away) into scratch.
//   apply:  each block folds its span's partial sums into mean and 1/sqrt(var + eps) (biased variance, as
//           InstanceNormalization and torch's GroupNorm), then writes y = (x - mean) * rstd * gamma[c] + beta[c], and
//           silu(y) when asked, for its chunk.
// Both read x once: 2 reads and 1 write in all.
#include <cuda_runtime.h>

#include <cstdint>

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// kVec floats a thread step: 4 (16-byte loads: span, chunk and S multiples of 4, x aligned) or 1.
template <int kVec>
__global__ void __launch_bounds__(kThreads) group_stats(const float* __restrict__ x, double2* __restrict__ partial, long long span,
                                                        long long chunk) {
  const long long ng = blockIdx.y;
  const float* base = x + ng * span;
  const double shift = base[0];
  const long long begin = static_cast<long long>(blockIdx.x) * chunk;
  const long long end = begin + chunk < span ? begin + chunk : span;
  // fp64 from the first sum on: a first value far from the group's mean (an outlier at a border pixel) leaves large
  // shifted values whose squares fp32 would round by more than the variance is wide. Memory-bound either way.
  double s = 0.0, q = 0.0;
  for (long long i = begin + static_cast<long long>(threadIdx.x) * kVec; i < end; i += static_cast<long long>(kThreads) * kVec) {
    if constexpr (kVec == 4) {
      const float4 v = *reinterpret_cast<const float4*>(base + i);
      const double a = static_cast<double>(v.x) - shift, b = static_cast<double>(v.y) - shift, c = static_cast<double>(v.z) - shift,
                   d = static_cast<double>(v.w) - shift;
      s += (a + b) + (c + d);
      q += (a * a + b * b) + (c * c + d * d);
    } else {
      const double a = static_cast<double>(base[i]) - shift;
      s += a;
      q += a * a;
    }
  }
  __shared__ double ws[kThreads / 32], wq[kThreads / 32];
  double ds = WarpSum(s), dq = WarpSum(q);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    ws[warp] = ds;
    wq[warp] = dq;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double ts = 0.0, tq = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) {
      ts += ws[w];
      tq += wq[w];
    }
    partial[ng * gridDim.x + blockIdx.x] = make_double2(ts, tq);
  }
}

__device__ __forceinline__ float Silu(float v) { return v / (1.0f + __expf(-v)); }

template <int kVec>
__global__ void __launch_bounds__(kThreads) group_apply(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ gamma,
                                                        const float* __restrict__ beta, const double2* __restrict__ partial, long long span,
                                                        long long chunk, long long positions, int group_channels, int groups, float eps,
                                                        int silu) {
  const long long ng = blockIdx.y;
  const int g = static_cast<int>(ng % groups);
  const float* base = x + ng * span;
  float* out = y + ng * span;
  __shared__ float s_mean, s_rstd;
  if (threadIdx.x < 32) {
    double ts = 0.0, tq = 0.0;
    for (unsigned c = threadIdx.x; c < gridDim.x; c += 32) {
      const double2 p = partial[ng * gridDim.x + c];
      ts += p.x;
      tq += p.y;
    }
    ts = WarpSum(ts);
    tq = WarpSum(tq);
    if (threadIdx.x == 0) {
      const double m = ts / static_cast<double>(span);   // mean of x - shift
      double var = tq / static_cast<double>(span) - m * m;
      var = var > 0.0 ? var : 0.0;
      s_mean = static_cast<float>(static_cast<double>(base[0]) + m);
      s_rstd = static_cast<float>(1.0 / sqrt(var + static_cast<double>(eps)));
    }
  }
  __syncthreads();
  const float mean = s_mean, rstd = s_rstd;
  const long long begin = static_cast<long long>(blockIdx.x) * chunk;
  const long long end = begin + chunk < span ? begin + chunk : span;
  for (long long i = begin + static_cast<long long>(threadIdx.x) * kVec; i < end; i += static_cast<long long>(kThreads) * kVec) {
    const int c = g * group_channels + static_cast<int>(i / positions);   // kVec values share one channel (S % kVec == 0)
    const float a = gamma[c] * rstd, b = beta[c];   // (x - mean) first: a mean far from 0 keeps its precision
    if constexpr (kVec == 4) {
      float4 v = *reinterpret_cast<const float4*>(base + i);
      v.x = (v.x - mean) * a + b;
      v.y = (v.y - mean) * a + b;
      v.z = (v.z - mean) * a + b;
      v.w = (v.w - mean) * a + b;
      if (silu) {
        v.x = Silu(v.x);
        v.y = Silu(v.y);
        v.z = Silu(v.z);
        v.w = Silu(v.w);
      }
      *reinterpret_cast<float4*>(out + i) = v;
    } else {
      const float v = (base[i] - mean) * a + b;
      out[i] = silu ? Silu(v) : v;
    }
  }
}

// How a span of `span` values is cut: chunk values a block (a multiple of 4, which keeps the vector path aligned) and the
// number of chunks; enough blocks to fill the card (about 1024 in all), none below 2048 values.
void Chunks(long long images_groups, long long span, long long* chunk, long long* count) {
  long long want = (1024 + images_groups - 1) / images_groups;
  const long long most = (span + 2047) / 2048;
  if (want > most) want = most;
  if (want > 4096) want = 4096;
  if (want < 1) want = 1;
  *chunk = ((span + want - 1) / want + 3) / 4 * 4;
  *count = (span + *chunk - 1) / *chunk;   // rounding the chunk up can leave fewer
}

}  // namespace

// Scratch bytes omm_group_norm needs for x [n, channels, positions] in `groups` groups (0 for sizes it refuses).
extern "C" size_t omm_group_norm_scratch_bytes(long long n, long long channels, long long positions, long long groups) {
  if (n < 1 || channels < 1 || positions < 1 || groups < 1 || channels % groups || n * groups > 65535) return 0;
  long long chunk = 0, count = 0;
  Chunks(n * groups, channels / groups * positions, &chunk, &count);
  return static_cast<size_t>(n * groups * count) * sizeof(double2);
}

// y = GroupNorm(x) * gamma + beta (then silu(y) when silu != 0) for fp32 x, y [n, channels, positions] (positions: the
// product of the spatial sizes), gamma and beta [channels], on `stream`, with `scratch` of omm_group_norm_scratch_bytes on
// the device. 0, -1 for refused sizes (channels not a multiple of groups or above 2^31 - 1, n * groups above 65535, more than 2^40
// values),
// else the CUDA error.
extern "C" int omm_group_norm(const void* x, void* y, const void* gamma, const void* beta, long long n, long long channels,
                              long long positions, long long groups, float eps, int silu, void* scratch, void* stream) {
  if (n < 0 || channels < 1 || positions < 0 || groups < 1 || channels % groups || !(eps >= 0.0f)) return -1;
  if (n == 0 || positions == 0) return 0;
  if (n * groups > 65535 || channels > 2147483647LL || channels > (1LL << 40) / positions || n > (1LL << 40) / (channels * positions))
    return -1;
  const long long span = channels / groups * positions;
  long long chunk = 0, used = 0;
  Chunks(n * groups, span, &chunk, &used);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto* in = static_cast<const float*>(x);
  auto* out = static_cast<float*>(y);
  auto* partial = static_cast<double2*>(scratch);
  const dim3 grid(static_cast<unsigned>(used), static_cast<unsigned>(n * groups));
  const bool vec = positions % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  const int group_channels = static_cast<int>(channels / groups);
  if (vec) {
    group_stats<4><<<grid, kThreads, 0, s>>>(in, partial, span, chunk);
    group_apply<4><<<grid, kThreads, 0, s>>>(in, out, static_cast<const float*>(gamma), static_cast<const float*>(beta), partial, span,
                                             chunk, positions, group_channels, static_cast<int>(groups), eps, silu);
  } else {
    group_stats<1><<<grid, kThreads, 0, s>>>(in, partial, span, chunk);
    group_apply<1><<<grid, kThreads, 0, s>>>(in, out, static_cast<const float*>(gamma), static_cast<const float*>(beta), partial, span,
                                             chunk, positions, group_channels, static_cast<int>(groups), eps, silu);
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : static_cast<int>(e);
}
