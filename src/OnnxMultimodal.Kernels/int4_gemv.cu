// int4 weight-only GEMV/GEMM for few rows (decode and the 2-row guidance step).
//
//   y[M, N] (fp16) = x[M, K] (fp16) @ dequant(B)^T (+ bias[N])
//   B      uint8 [N, k_blocks, block_size/2]  MatMulNBits layout: packed along K, value 2i in the low nibble
//   scales fp16  [N, k_blocks]
//   zp     uint8 [N, ceil(k_blocks/2)]       optional, 4-bit packed (low nibble = even block); 8 when absent
//   dequant(q) = (q - zp) * scale
//   Requirements: K % 32 == 0, block_size a power of two >= 32, 16-byte aligned B and x rows (true for
//   MatMulNBits tensors since rows are block_size/2 >= 16 bytes).
//
// Memory-traffic bound: every weight byte is read once per call, whatever M (rows are processed in
// register tiles of up to 4), so the floor is (N*K/2 + 2*N*K/bs [+ zp]) / copy bandwidth; x (M*K*2 bytes)
// and y are tiny next to that. At the 7B shapes a row is 2 KB (K=4096) to 5.4 KB (K=11008) of weights.
//
// Work split: one warp owns kRows (2 or 4) consecutive output columns n; each lane streams 16-byte
// chunks (32 int4 values = one block of 32, or a quarter of a block of 128), 8 chunks in flight. The
// nibbles are turned into fp16 by OR-ing them into the mantissa of 1024.0 (0x6400), subtracting 1024+zp
// (exact), and scaling in fp16 (what a fp16 dequantization does); the 32 products of a chunk are summed
// in a half2 (16 terms per half), then folded into fp32 accumulators. x pairs are permuted to match the
// nibble order once per chunk and reused for all kRows columns.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

constexpr int kWarpsPerBlock = 4;
// Output columns per warp: more columns share each x load (L1 traffic for x is M*64 bytes per chunk per
// warp-column group), fewer leave more warps. Chunks in flight per lane = kRows * kUnroll = 8 (128 bytes).
template <int M> struct Tile { static constexpr int kRows = M <= 2 ? 2 : 4; static constexpr int kUnroll = 8 / kRows; };

__device__ __forceinline__ half2 as_half2(uint32_t v) {
  return *reinterpret_cast<half2*>(&v);
}

// Four half2 of (q - zp) from one 32-bit word of 8 nibbles (q0 low nibble of byte 0):
// out[k] = (q_k - zp, q_{k+4} - zp).
__device__ __forceinline__ void nibbles_to_half2(uint32_t w, half2 zsub, half2 scale, half2 out[4]) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    uint32_t v = ((w >> (4 * k)) & 0x000F000Fu) | 0x64006400u;   // (1024 + q_k, 1024 + q_{k+4})
    out[k] = __hmul2(__hsub2(as_half2(v), zsub), scale);
  }
}

// x pairs in nibble order for one 8-value group: (x0,x4) (x1,x5) (x2,x6) (x3,x7).
__device__ __forceinline__ void permute_x(uint4 xv, uint32_t p[4]) {
  p[0] = __byte_perm(xv.x, xv.z, 0x5410);
  p[1] = __byte_perm(xv.x, xv.z, 0x7632);
  p[2] = __byte_perm(xv.y, xv.w, 0x5410);
  p[3] = __byte_perm(xv.y, xv.w, 0x7632);
}

__device__ __forceinline__ uint4 load_stream(const uint8_t* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));   // weights are read once: don't keep them in L1
}

template <int M, int kRows, int kUnroll>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
int4_gemv_kernel(const half* __restrict__ x, const uint8_t* __restrict__ b, const half* __restrict__ scales,
                 const uint8_t* __restrict__ zp, const half* __restrict__ bias, half* __restrict__ y,
                 int N, int K, int row_bytes, int k_blocks, int block_shift) {
  const int lane = threadIdx.x & 31;
  const int warp = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  const int n0 = warp * kRows;
  if (n0 >= N) return;
  const int chunks = K >> 5;                       // 16-byte chunks per row
  const int zp_row_bytes = (k_blocks + 1) >> 1;
  const half2 zdefault = __float2half2_rn(1032.0f);

  float acc[M][kRows];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[m][r] = 0.0f;

  for (int c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
    uint4 wv[kRows][kUnroll];
    half sc[kRows][kUnroll];
    // Issue every weight load of this step before any math.
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int n = min(n0 + r, N - 1);           // a missing last column re-reads its neighbour, unused
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + u * 32;
        if (c < chunks) {
          wv[r][u] = load_stream(b + (size_t)n * row_bytes + (size_t)c * 16);
          sc[r][u] = scales[(size_t)n * k_blocks + ((c << 5) >> block_shift)];
        } else {
          wv[r][u] = make_uint4(0, 0, 0, 0);
          sc[r][u] = __float2half(0.0f);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u * 32;
      if (c >= chunks) break;
      // x[m, 32c .. 32c+31] as 4 groups of 8 halfs, permuted to nibble order.
      uint32_t xp[M][4][4];
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4* xr = reinterpret_cast<const uint4*>(x + (size_t)m * K + ((size_t)c << 5));
#pragma unroll
        for (int g = 0; g < 4; ++g) permute_x(__ldg(xr + g), xp[m][g]);
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        half2 zsub = zdefault;
        if (zp != nullptr) {
          const int n = min(n0 + r, N - 1);
          const int blk = (c << 5) >> block_shift;
          const int q = (zp[(size_t)n * zp_row_bytes + (blk >> 1)] >> ((blk & 1) * 4)) & 0xF;
          zsub = __float2half2_rn(1024.0f + (float)q);
        }
        const half2 s2 = __half2half2(sc[r][u]);
        half2 w[4][4];
        nibbles_to_half2(wv[r][u].x, zsub, s2, w[0]);
        nibbles_to_half2(wv[r][u].y, zsub, s2, w[1]);
        nibbles_to_half2(wv[r][u].z, zsub, s2, w[2]);
        nibbles_to_half2(wv[r][u].w, zsub, s2, w[3]);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          half2 s = __hmul2(w[0][0], as_half2(xp[m][0][0]));
#pragma unroll
          for (int g = 0; g < 4; ++g)
#pragma unroll
            for (int k = 0; k < 4; ++k)
              if (g != 0 || k != 0) s = __hfma2(w[g][k], as_half2(xp[m][g][k]), s);
          const float2 f = __half22float2(s);
          acc[m][r] += f.x + f.y;
        }
      }
    }
  }

#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float v = acc[m][r];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      acc[m][r] = v;
    }
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int n = n0 + r;
      if (n < N) {
        const float bv = bias != nullptr ? __half2float(bias[n]) : 0.0f;
#pragma unroll
        for (int m = 0; m < M; ++m) y[(size_t)m * N + n] = __float2half_rn(acc[m][r] + bv);
      }
    }
  }
}

template <int M, int kRows, int kUnroll>
void launch_tile(const half* x, const uint8_t* b, const half* scales, const uint8_t* zp, const half* bias, half* y,
                 int N, int K, int row_bytes, int k_blocks, int block_shift, cudaStream_t stream) {
  const int warps = (N + kRows - 1) / kRows;
  const int blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  int4_gemv_kernel<M, kRows, kUnroll><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(x, b, scales, zp, bias, y, N, K,
                                                                                   row_bytes, k_blocks, block_shift);
}

// tile 0: the default (Tile<M>); 1..5: (columns per warp, chunks in flight per column) = (1,8) (2,4) (4,2) (2,8)
// (4,4), for the micro-benchmark's search.
template <int M>
void launch(int tile, const half* x, const uint8_t* b, const half* scales, const uint8_t* zp, const half* bias, half* y,
            int N, int K, int row_bytes, int k_blocks, int block_shift, cudaStream_t stream) {
  switch (tile) {
    case 1: launch_tile<M, 1, 8>(x, b, scales, zp, bias, y, N, K, row_bytes, k_blocks, block_shift, stream); break;
    case 2: launch_tile<M, 2, 4>(x, b, scales, zp, bias, y, N, K, row_bytes, k_blocks, block_shift, stream); break;
    case 3: launch_tile<M, 4, 2>(x, b, scales, zp, bias, y, N, K, row_bytes, k_blocks, block_shift, stream); break;
    case 4: launch_tile<M, 2, 8>(x, b, scales, zp, bias, y, N, K, row_bytes, k_blocks, block_shift, stream); break;
    case 5: launch_tile<M, 4, 4>(x, b, scales, zp, bias, y, N, K, row_bytes, k_blocks, block_shift, stream); break;
    default:
      launch_tile<M, Tile<M>::kRows, Tile<M>::kUnroll>(x, b, scales, zp, bias, y, N, K, row_bytes, k_blocks,
                                                       block_shift, stream);
  }
}

}  // namespace

// C entry points, shared by the micro-benchmark (ctypes) and the ONNX Runtime custom op: omm_int4_gemv (the
// default tile) and omm_int4_gemv_tile (tile 0..5, see launch()).
// Any M >= 1 is accepted: rows are done 4 at a time (each pass re-reads the weights, so large M, e.g.
// a long prefill, is correct but not fast). Returns 0, or a negative code for bad arguments, or the
// cudaError_t of the launch.
extern "C" int omm_int4_gemv_tile(const void* x, const void* b, const void* scales, const void* zero_points,
                                  const void* bias, void* y, int M, int N, int K, int block_size, void* stream,
                                  int tile) {
  if (tile < 0 || tile > 5) return -4;
  if (M < 1 || N < 1 || K < 32 || (K & 31) != 0) return -1;
  if (block_size < 32 || (block_size & (block_size - 1)) != 0) return -2;
  if (((uintptr_t)x & 15) != 0 || ((uintptr_t)b & 15) != 0) return -3;
  int block_shift = 0;
  while ((1 << block_shift) < block_size) ++block_shift;
  const int k_blocks = (K + block_size - 1) / block_size;
  const int row_bytes = k_blocks * block_size / 2;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const half* xh = static_cast<const half*>(x);
  half* yh = static_cast<half*>(y);
  const uint8_t* bb = static_cast<const uint8_t*>(b);
  const half* sh = static_cast<const half*>(scales);
  const uint8_t* zb = static_cast<const uint8_t*>(zero_points);
  const half* bh = static_cast<const half*>(bias);
  for (int m0 = 0; m0 < M; m0 += 4) {
    const int rows = M - m0 < 4 ? M - m0 : 4;
    const half* xm = xh + (size_t)m0 * K;
    half* ym = yh + (size_t)m0 * N;
    switch (rows) {
      case 1: launch<1>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
      case 2: launch<2>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
      case 3: launch<3>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
      default: launch<4>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
    }
  }
  return (int)cudaGetLastError();
}

extern "C" int omm_int4_gemv(const void* x, const void* b, const void* scales, const void* zero_points,
                             const void* bias, void* y, int M, int N, int K, int block_size, void* stream) {
  return omm_int4_gemv_tile(x, b, scales, zero_points, bias, y, M, N, K, block_size, stream, 0);
}
