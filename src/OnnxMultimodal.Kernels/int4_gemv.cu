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
// Memory-traffic bound: every weight byte is read once per pass, whatever M (rows are processed in passes of up to
// 4 rows by the FMA tiles, up to 8 by the tensor-core tiles below), so the floor is (N*K/2 + 2*N*K/bs [+ zp]) / copy bandwidth; x (M*K*2 bytes)
// and y are tiny next to that. At the 7B shapes a row is 2 KB (K=4096) to 5.4 KB (K=11008) of weights.
//
// Work split: a tile (kTiles) gives each warp kRows consecutive output columns; kSplit warps of a block share
// those columns and take interleaved 512-byte segments of K each (split-K, summed in shared memory in a fixed
// order), so small-N shapes (o, down: N = 4096) still have thousands of warps streaming. Each lane streams
// 16-byte chunks (32 int4 values = one block of 32, or a quarter of a block of 128), kUnroll per column per
// step, and loads step j+1 into a second register stage while step j is multiplied. The nibbles are turned
// into fp16 by OR-ing them into the mantissa of 1024.0 (0x6400, nibbles at bits 0-3 of a half) or of 64.0 (0x5400,
// nibbles at bits 4-7), subtracting 1024+zp or 64+zp (exact), and scaling in fp16 (what a fp16 dequantization does); the 32 products of a chunk are summed in a half2 (16 terms per
// half), then folded into fp32 accumulators. The dequantized weights of a chunk are reused for all M rows
// (M <= 4 per pass: x is read per 8-value group and permuted to the nibble order once for the kRows columns),
// so M = 2..4 read the weights once and add only FMAs (which bound these tiles at M >= 2: the tensor-core tiles below
// take over there).
//
// SiLU-mul mode (kSiluMul, omm_int4_gemv_silu_mul; the MLP down projection of a fused Llama graph): the activation
// input is the gate_up projection's output A[M, 2K] (gate in columns 0..K-1, up in K..2K-1), and the kernel computes
// x[m, k] = silu(A[m, k]) * A[m, K + k] where it loads x: the Split, SiLU and Mul kernels of the stock graph (three
// launches and two [M, K] round trips through memory per layer) vanish, and the GEMV reads 2 x M*K*2 bytes of
// activations instead of M*K*2 -- still tiny next to the N*K/2 weight bytes. The rows of A are 2K apart.
// Its cost is arithmetic, not memory: every warp forms the x values of the chunks it reads, so each x value is formed
// N / kRows times (once per column group), with 2 special-function ops each (__expf's ex2 and __fdividef's rcp). At
// M = 1 and 4 columns per warp that is about 1 special-function op per weight byte, near an H100's rate for them
// (16 per clock per SM, against ~13 weight bytes per clock per SM of HBM bandwidth); at M = 2..4 it is 2-4 per byte,
// so the SiLU-mul mode may become bound by the special-function units there (bench_int4_gemv.py's down+silu_mul lines
// time it against the plain GEMV, every tile). If it is, the remedies are 8-column tiles (half the recomputation),
// forming x once per block in shared memory, or moving the fusion to the gate_up GEMV's epilogue (gate and up columns
// interleaved so one warp holds both), which forms each value exactly once.
//
// SwiGLU mode (kSwiGlu, omm_int4_gemv_swiglu; the MLP's gate_up projection): B holds the gate rows 0..N/2-1 and the up
// rows N/2..N-1 (MatMulNBits' layout of a fused gate_up weight, unchanged), and the kernel writes y[M, N/2] =
// silu(x @ gate^T) * (x @ up^T): each warp's kRows columns are kRows/2 gate columns and the same kRows/2 up columns,
// so the pair meets in the epilogue and each SiLU is formed once. It replaces the stock graph's Split, SiLU and Mul
// launches and writes half the output. Measured on an H100 (docs/kernels.md), the SiLU-mul mode above lost to the
// unfused kernels (19.5 us vs 16.5 us at the 7B down shape, M = 1): its per-warp recomputation costs more than the
// three small launches it removes; this mode has no recomputation.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>

namespace {

constexpr int kWarpsPerBlock = 4;
// Modes: plain GEMV; SiLU-mul on the input (x = silu(A[:, :K]) * A[:, K:]); SwiGLU in the epilogue (y = silu(gate) * up).
constexpr int kPlain = 0, kSiluMul = 1, kSwiGlu = 2;

// The weight row (output column of the GEMV) that tile row r of a warp whose first output column is n0 reads. Plain and
// SiLU-mul: n0 + r. SwiGLU: the first kRows/2 tile rows are gate rows n0.., the others the up rows N/2 + n0.. . Rows past
// the end re-read the last valid row (unused).
template <int kMode, int kRows>
__device__ __forceinline__ int weight_row(int n0, int r, int N) {
  if constexpr (kMode == kSwiGlu) {
    constexpr int h = kRows / 2;
    const int half_n = N >> 1;
    const int p = min(n0 + (r < h ? r : r - h), half_n - 1);
    return r < h ? p : half_n + p;
  } else {
    return min(n0 + r, N - 1);
  }
}

// A tile: kRows output columns per warp, kUnroll 16-byte chunks per column per lane and step (bytes in flight
// per lane = kRows * kUnroll * 16, doubled by the prefetch of the next step), kSplit warps of a block
// sharing the same columns, each summing an interleaved quarter/half of K (split-K, reduced in shared memory).
struct TileShape { int rows, unroll, split; };
// tile 1..10, for the micro-benchmark's search (omm_int4_gemv_tile); 0 = default_tile(). Tiles 1..7 were measured in
// phase 2 (H100); 8..10 (8 columns per warp) are candidates for M = 2..4: every x value a lane loads serves 8 columns
// instead of 4, which halves the x loads and permutes per weight byte (at M = 4 a lane loads 4x more x bytes than weight
// bytes with 4 columns, each 16-byte x load of a warp touching 16 cache lines), at more registers.
constexpr TileShape kTiles[] = {{0, 0, 0}, {4, 2, 1}, {4, 1, 1}, {4, 2, 2}, {4, 1, 2}, {4, 2, 4}, {4, 1, 4}, {2, 2, 4},
                                {8, 1, 1}, {8, 1, 2}, {8, 1, 4}};
// Tensor-core tiles (int4_mma_kernel below): ids kTcFirst.. are kTcTiles[id - kTcFirst] = {m16 tiles per warp (16 or 32
// weight rows), 128-K steps per register stage, split-K warps}.
struct TcShape { int mtiles, unroll, split; };
// Split 8 runs 8 warps a block (kTcBlockWarps); the others 4.
constexpr TcShape kTcTiles[] = {{1, 2, 1}, {1, 2, 2}, {1, 2, 4}, {1, 1, 4}, {2, 1, 2}, {2, 1, 4}, {1, 4, 4}, {1, 2, 8}, {1, 1, 8}};
constexpr int kTcFirst = 11;
constexpr int kTileCount = kTcFirst + 9;
constexpr int kTcRowsPerPass = 8;   // the mma's n = 8 columns are the rows of x

// Streaming multiprocessors of the current device (cached per device; 132 on an H100 SXM if the query fails).
int sm_count() {
  static std::atomic<int> cached[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    (void)cudaGetLastError();   // not a launch error: don't let the caller's cudaGetLastError() report it
    return 132;
  }
  int v = cached[dev].load(std::memory_order_relaxed);
  if (v <= 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v <= 0) {
      (void)cudaGetLastError();
      v = 132;
    }
    cached[dev].store(v, std::memory_order_relaxed);
  }
  return v;
}

// The default tile, a rule fitted to the phase-2 H100 search (docs/kernels.md; bench.log of
// results/2026-11-27-h100-kernels-phase2 gives the best tile per shape and M). There the best tile was the same for
// block 32 and 128, and the same for K = 4096 (o) and K = 11008 (down) at equal N, so neither the block size nor K picks
// it; what does is M and g = ceil(N / 4) / SMs, the 4-column groups per SM (H100, 132 SMs: N = 4096 -> 7.8,
// 12288 -> 23, 22016 -> 42, 32000 -> 61):
//   M = 1:   split 2 always; 2 chunks per column and step when g >= 16, else 1      (4x2/2 wide, 4x1/2 narrow)
//   M = 2:   g < 16: 4x1/2;  16 <= g < 32: 4x2/2;  g >= 32: 4x1/1
//   M >= 3:  split 1 always; 2 chunks per step when g < 16, else 1                   (4x2/1 narrow, 4x1/1 wide)
// Reading: few groups per SM (narrow N) need more bytes in flight per warp or more warps (split-K); at M = 1 registers
// are cheap, so split 2 and 2 chunks per step paid even where groups were plenty. As M grows, each step carries more
// math per weight byte, a warp keeps its loads covered by itself, and split-K's shorter per-warp loops (each warp pays
// its first load's latency) and reduction stop paying: at M = 2 once g >= 32, at M >= 3 always. Beyond the measured
// range: split is lowered while a lane would get fewer than 2 chunks of K (K < 2048 * split), so small models
// (K = 64..2048) get whole-K warps.
int fma_tile(int M, int N, int K) {
  const double g = (double)((N + 3) / 4) / sm_count();
  int unroll, split;
  if (M <= 1) {
    split = 2;
    unroll = g >= 16 ? 2 : 1;
  } else if (M == 2) {
    split = g < 32 ? 2 : 1;
    unroll = g >= 16 && g < 32 ? 2 : 1;
  } else {
    split = 1;
    unroll = g < 16 ? 2 : 1;
  }
  while (split > 1 && (K >> 5) < 64 * split) split >>= 1;
  // kTiles: 4x2/1 = 1, 4x1/1 = 2, 4x2/2 = 3, 4x1/2 = 4 (split 4 is never the default: it did not win at any measured M)
  if (split == 1) return unroll == 2 ? 1 : 2;
  return unroll == 2 ? 3 : 4;
}

// The tensor-core tile, fitted to the H100 search of tiles 11-19 (docs/kernels.md, results/2026-11-27-h100-tc; M = 2,
// 4, 8, blocks 32 and 128) by g16 = ceil(N / 16) / SMs, the m16 tiles per SM (H100: N = 4096 -> 1.9, 12288 -> 5.8,
// 22016 -> 10.4, 32000 -> 15.2, 65536 -> 31): more warps won almost everywhere (split-K 8 in blocks of 8 warps), one
// 128-K step a stage where N is narrow, two where it is wide; at the middle width (qkv) split 4 with one step won by
// 2-4 points. Small K lowers the split so each split-K warp keeps at least 4 steps of 128: K < 1024 gets whole-K warps,
// K < 4096 split 2 or 4.
int tc_tile(int N, int K) {
  const double g16 = (double)((N + 15) / 16) / sm_count();
  const int steps = K >> 7;
  if (steps < 8) return kTcFirst + 0;                                         // tc16x2/1
  if (steps < 16) return kTcFirst + 1;                                        // tc16x2/2
  if (steps < 32) return kTcFirst + 2;                                        // tc16x2/4
  if (g16 < 3) return kTcFirst + 8;                                           // tc16x1/8
  if (g16 < 8) return kTcFirst + 3;                                           // tc16x1/4
  return kTcFirst + 7;                                                        // tc16x2/8
}

// The default: the FMA tiles at M = 1 (phase 2's search; the best tensor-core tile was 5-30 points behind there), the
// tensor-core tiles from M = 2 (at M = 2 they tied the FMA tiles where N is narrow and won elsewhere; at M = 4 and 8
// they won everywhere, by 10-45 points).
int default_tile(int M, int N, int K, int /*block_size*/) {
  return M <= 1 ? fma_tile(M, N, K) : tc_tile(N, K);
}

__device__ __forceinline__ half2 as_half2(uint32_t v) {
  return *reinterpret_cast<half2*>(&v);
}

// Four half2 of (q - zp) * scale from one 32-bit word of 8 nibbles (q0 low nibble of byte 0):
// out[k] = (q_k, q_{k+4}). A nibble at bits 0-3 of a half OR-ed into the mantissa of 1024.0 (0x6400) gives 1024 + q
// exactly; a nibble at bits 4-7 OR-ed into the mantissa of 64.0 (0x5400, whose ulp is 1/16, so bit 4 counts 1) gives
// 64 + q exactly. So one shift by 8 and four mask-and-or (one LOP3 each) give all 8 values, and subtracting
// z1024 = 1024 + zp or z64 = 64 + zp is exact: the same fp16 weights as (q - zp) * scale rounded once.
__device__ __forceinline__ void nibbles_to_half2(uint32_t w, half2 z1024, half2 z64, half2 scale, half2 out[4]) {
  const uint32_t w8 = w >> 8;   // bits 8-15 of each half move to 0-7 (bits 16-23 of w land in 8-15: masked off)
  out[0] = __hmul2(__hsub2(as_half2((w & 0x000F000Fu) | 0x64006400u), z1024), scale);    // (q0, q4)
  out[1] = __hmul2(__hsub2(as_half2((w & 0x00F000F0u) | 0x54005400u), z64), scale);      // (q1, q5)
  out[2] = __hmul2(__hsub2(as_half2((w8 & 0x000F000Fu) | 0x64006400u), z1024), scale);   // (q2, q6)
  out[3] = __hmul2(__hsub2(as_half2((w8 & 0x00F000F0u) | 0x54005400u), z64), scale);    // (q3, q7)
}

// x pairs in nibble order for one 8-value group: (x0,x4) (x1,x5) (x2,x6) (x3,x7).
__device__ __forceinline__ void permute_x(uint4 xv, uint32_t p[4]) {
  p[0] = __byte_perm(xv.x, xv.z, 0x5410);
  p[1] = __byte_perm(xv.x, xv.z, 0x7632);
  p[2] = __byte_perm(xv.y, xv.w, 0x5410);
  p[3] = __byte_perm(xv.y, xv.w, 0x7632);
}

__device__ __forceinline__ uint32_t word(const uint4& v, int g) {
  return g == 0 ? v.x : g == 1 ? v.y : g == 2 ? v.z : v.w;
}

__device__ __forceinline__ uint32_t as_u32(half2 v) {
  return *reinterpret_cast<uint32_t*>(&v);
}

// silu(g) * u for a pair of fp16 values (g, u: two half2 packed in 32-bit words), computed in fp32 and rounded once to
// fp16. The stock graph rounds twice: Sigmoid+Mul (fused by ORT into QuickGelu) writes silu(g) in fp16, then the Mul
// with up rounds the fp16 product again; so each x here is one rounding (at most 2^-11 relative) from the exact
// value, the stock path's two (up to about 2^-10), and the two paths' x differ by at most about 2^-10 relative (__expf's
// and __fdividef's few fp32 ulps are far below fp16's). Limits: g -> -inf gives
// __expf(-g) = inf and g / inf = -0 (silu's limit, 0); g -> +inf gives g / 1 = g; NaN propagates.
__device__ __forceinline__ uint32_t silu_mul2(uint32_t gate2, uint32_t up2) {
  const float2 g = __half22float2(as_half2(gate2));
  const float2 u = __half22float2(as_half2(up2));
  const float s0 = __fdividef(g.x, 1.0f + __expf(-g.x));
  const float s1 = __fdividef(g.y, 1.0f + __expf(-g.y));
  return as_u32(__floats2half2_rn(s0 * u.x, s1 * u.y));
}

// Eight x values (one 16-byte group) of row `row` at column `col` (a multiple of 8). Plain mode: x is [M, K] and the
// values are loaded as they are. SiLU-mul mode: x is A [M, 2K]; gate at A[row, col..], up at A[row, K + col..] (both
// 16-byte aligned: K % 32 == 0), combined by silu_mul2.
template <int kMode>
__device__ __forceinline__ uint4 load_x8(const half* __restrict__ x, int row, int K, size_t col) {
  const size_t stride = kMode == kSiluMul ? 2 * (size_t)K : (size_t)K;
  const half* p = x + (size_t)row * stride + col;
  const uint4 g = __ldg(reinterpret_cast<const uint4*>(p));
  if constexpr (kMode != kSiluMul) {
    return g;
  } else {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p + K));
    return make_uint4(silu_mul2(g.x, u.x), silu_mul2(g.y, u.y), silu_mul2(g.z, u.z), silu_mul2(g.w, u.w));
  }
}

// The weights and scales of one step: chunk c = first + stride * (step * kUnroll + u) of each column.
template <int kRows, int kUnroll, int kMode>
struct Stage {
  uint4 w[kRows][kUnroll];
  half s[kRows][kUnroll];

  __device__ __forceinline__ void load(const uint8_t* b, const half* scales, int n0, int N, int row_bytes, int k_blocks,
                                       int block_shift, int chunks, int first, int stride, int step) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int n = weight_row<kMode, kRows>(n0, r, N);   // a missing last column re-reads its neighbour, unused
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = first + stride * (step * kUnroll + u);
        if (c < chunks) {
          // 128-bit streaming load: weights are read once per call, don't keep them in L1.
          w[r][u] = __ldcs(reinterpret_cast<const uint4*>(b + (size_t)n * row_bytes + (size_t)c * 16));
          s[r][u] = scales[(size_t)n * k_blocks + ((c << 5) >> block_shift)];
        } else {
          w[r][u] = make_uint4(0, 0, 0, 0);
          s[r][u] = __float2half(0.0f);
        }
      }
    }
  }
};

// acc[m][r] += x[m, chunk] . dequant(B[n0 + r, chunk]) for the chunks of one stage. The 32 products of a
// chunk are summed in a half2 (16 terms a half, scaled weights so no overflow risk), then added in fp32.
// x is read per 8-value group for all M rows (L1/L2 hits: every warp reads the same x) and reused for
// every column of the tile. kSiluMul: x is A [M, 2K] and silu(gate) * up is formed here (load_x8).
template <int M, int kRows, int kUnroll, int kMode>
__device__ __forceinline__ void accumulate(const Stage<kRows, kUnroll, kMode>& st, float (&acc)[M][kRows], const half* __restrict__ x,
                                           const uint8_t* __restrict__ zp, int n0, int N, int K, int k_blocks, int block_shift,
                                           int chunks, int first, int stride, int step) {
  const int zp_row_bytes = (k_blocks + 1) >> 1;
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int c = first + stride * (step * kUnroll + u);
    if (c >= chunks) continue;
    half2 z1024[kRows], z64[kRows], s2[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float q = 8.0f;                               // the default zero point
      if (zp != nullptr) {
        const int n = weight_row<kMode, kRows>(n0, r, N);
        const int blk = (c << 5) >> block_shift;
        q = (float)((zp[(size_t)n * zp_row_bytes + (blk >> 1)] >> ((blk & 1) * 4)) & 0xF);
      }
      z1024[r] = __float2half2_rn(1024.0f + q);
      z64[r] = __float2half2_rn(64.0f + q);
      s2[r] = __half2half2(st.s[r][u]);
    }
    half2 part[M][kRows];
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      uint32_t xp[M][4];
#pragma unroll
      for (int m = 0; m < M; ++m)
        permute_x(load_x8<kMode>(x, m, K, ((size_t)c << 5) + 8 * g), xp[m]);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        half2 w[4];
        nibbles_to_half2(word(st.w[r][u], g), z1024[r], z64[r], s2[r], w);
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
          for (int k = 0; k < 4; ++k)
            part[m][r] = (g == 0 && k == 0) ? __hmul2(w[k], as_half2(xp[m][k])) : __hfma2(w[k], as_half2(xp[m][k]), part[m][r]);
      }
    }
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float2 f = __half22float2(part[m][r]);
        acc[m][r] += f.x + f.y;
      }
  }
}

template <int M, int kRows, int kUnroll, int kSplit, int kMode>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
int4_gemv_kernel(const half* __restrict__ x, const uint8_t* __restrict__ b, const half* __restrict__ scales,
                 const uint8_t* __restrict__ zp, const half* __restrict__ bias, half* __restrict__ y,
                 int N, int K, int row_bytes, int k_blocks, int block_shift) {
  static_assert(kWarpsPerBlock % kSplit == 0, "split-K groups must tile the block");
  static_assert(kMode != kSwiGlu || kRows % 2 == 0, "SwiGLU pairs a gate and an up column per output");
  constexpr int kGroups = kWarpsPerBlock / kSplit;   // column groups per block
  constexpr int kCols = kMode == kSwiGlu ? kRows / 2 : kRows;   // output columns per warp
  const int n_out = kMode == kSwiGlu ? N >> 1 : N;
  __shared__ float red[kSplit > 1 ? kWarpsPerBlock : 1][M][kRows];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int slice = warp % kSplit;
  const int n0 = (blockIdx.x * kGroups + warp / kSplit) * kCols;   // first output column
  const int chunks = K >> 5;                          // 16-byte chunks per row
  const int first = slice * 32 + lane;                // this lane's first chunk
  const int stride = 32 * kSplit;                     // between its chunks
  const int per_step = stride * kUnroll;
  // No early return for columns past N: the split-K reduction below synchronises the whole block.
  const int steps = n0 < n_out ? (chunks - first + per_step - 1) / per_step : 0;

  float acc[M][kRows];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[m][r] = 0.0f;

  // Two register stages: the next step's weights are in flight while this step's are multiplied.
  Stage<kRows, kUnroll, kMode> a, bb;
  if (steps > 0) a.load(b, scales, n0, N, row_bytes, k_blocks, block_shift, chunks, first, stride, 0);
  for (int j = 0; j < steps; j += 2) {
    if (j + 1 < steps) bb.load(b, scales, n0, N, row_bytes, k_blocks, block_shift, chunks, first, stride, j + 1);
    accumulate<M, kRows, kUnroll, kMode>(a, acc, x, zp, n0, N, K, k_blocks, block_shift, chunks, first, stride, j);
    if (j + 1 >= steps) break;
    if (j + 2 < steps) a.load(b, scales, n0, N, row_bytes, k_blocks, block_shift, chunks, first, stride, j + 2);
    accumulate<M, kRows, kUnroll, kMode>(bb, acc, x, zp, n0, N, K, k_blocks, block_shift, chunks, first, stride, j + 1);
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
  if constexpr (kSplit > 1) {
    if (lane == 0)
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int r = 0; r < kRows; ++r) red[warp][m][r] = acc[m][r];
    __syncthreads();
    if (slice != 0) return;
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float v = 0.0f;
#pragma unroll
        for (int s = 0; s < kSplit; ++s) v += red[warp + s][m][r];   // fixed order: deterministic
        acc[m][r] = v;
      }
  }
  if (lane != 0 || n0 >= n_out) return;
  if constexpr (kMode == kSwiGlu) {
    // The stock graph's roundings, in its order: the gate_up output to fp16, SiLU of the fp16 gate to fp16, then the
    // product of two fp16 values to fp16 (a fp32 product of two halves is exact, so only the last rounding counts).
#pragma unroll
    for (int r = 0; r < kCols; ++r) {
      const int p = n0 + r;
      if (p < n_out) {
        const float bg = bias != nullptr ? __half2float(bias[p]) : 0.0f;
        const float bu = bias != nullptr ? __half2float(bias[n_out + p]) : 0.0f;
#pragma unroll
        for (int m = 0; m < M; ++m) {
          const float g = __half2float(__float2half_rn(acc[m][r] + bg));
          const float u = __half2float(__float2half_rn(acc[m][r + kCols] + bu));
          const float sg = __half2float(__float2half_rn(g / (1.0f + __expf(-g))));
          y[(size_t)m * n_out + p] = __float2half_rn(sg * u);
        }
      }
    }
  } else {
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

// ---- Tensor-core tiles: mma.sync m16n8k16 (fp16 in, fp32 accumulate) ----
//
// At M = 2..4 the FMA tiles above are bound by issue slots, not memory: every dequantized weight costs M HFMA2 per pair
// (docs/kernels.md counts 110 / 160 instructions per chunk and column at M = 2 / 4 against 85 at M = 1). Here the
// dequantized weights are the mma's A operand (16 weight rows x 16 K) and x is its B operand (16 K x 8 columns: the M
// rows, zero beyond M), so a 16-byte chunk costs its dequantization (the same nibbles_to_half2 as above, the same fp16
// weights bit for bit) plus one mma per 8 nibbles of two rows, whatever M <= 8.
//
// The fragment layout of m16n8k16 (PTX ISA): lane = 4 * g + t. A's registers: (row g, k 2t..2t+1), (row g+8, same k),
// (row g, k 2t+8..2t+9), (row g+8, same k); B's: (k 2t..2t+1, column g), (k 2t+8..2t+9, column g); C's: (row g, columns
// 2t, 2t+1), (row g+8, the same). Lane t holds the k slots {2t, 2t+1, 2t+8, 2t+9} of A and of B alike, so the k slots
// can stand for any K indices as long as both operands agree: lane (g, t) streams chunk c = 4 * step + t (32
// consecutive K) of weight rows g and g+8 and of x row g, and each 32-bit word of 8 nibbles feeds two mmas with the
// pairs nibbles_to_half2 and permute_x already produce: (q0,q4) (q1,q5) with (x0,x4) (x1,x5), then (q2,q6) (q3,q7)
// with (x2,x6) (x3,x7). A quad (the 4 lanes of one g) reads 64 contiguous bytes of a row per step and 64 * kUnroll per
// stage; a warp covers 128 K per step. C's columns are x's rows: lane t ends with rows 2t and 2t+1 of the output.
// SwiGLU: the m16 tile's rows 0..7 are 8 gate rows and rows 8..15 the same 8 up rows, so each lane holds gate and up of
// the same output column and row. Split-K and the epilogue's roundings are those of the FMA kernel.
__device__ __forceinline__ void mma_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                          uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The weight row that lane group g reads for half h (rows g / g+8) of m16 tile mt of a warp whose first output column is
// n0. Plain and SiLU-mul: n0 + 16 mt + 8 h + g. SwiGLU: output column p = n0 + 8 mt + g, gate row p (h = 0) or up row
// N/2 + p (h = 1). Rows past the end re-read the last valid row (its outputs are not written).
template <int kMode>
__device__ __forceinline__ int tc_weight_row(int n0, int mt, int h, int g, int N) {
  if constexpr (kMode == kSwiGlu) {
    const int half_n = N >> 1;
    const int p = min(n0 + mt * 8 + g, half_n - 1);
    return h == 0 ? p : half_n + p;
  } else {
    return min(n0 + mt * 16 + h * 8 + g, N - 1);
  }
}

// One register stage: the chunks c = 4 * (step0 + u) + t of the lane's 2 * kMT weight rows, u < kUnroll.
template <int kMT, int kUnroll>
struct TcStage {
  uint4 w[kMT][2][kUnroll];
  half s[kMT][2][kUnroll];

  __device__ __forceinline__ void load(const uint8_t* b, const half* scales, const int (&rows)[kMT][2], int row_bytes,
                                       int k_blocks, int block_shift, int chunks, int t, int step0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = 4 * (step0 + u) + t;
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if (c < chunks) {
            w[mt][h][u] = __ldcs(reinterpret_cast<const uint4*>(b + (size_t)rows[mt][h] * row_bytes + (size_t)c * 16));
            s[mt][h][u] = scales[(size_t)rows[mt][h] * k_blocks + ((c << 5) >> block_shift)];
          } else {   // past K: zero weights and scale (the mma is warp-wide, so the lane still takes part)
            w[mt][h][u] = make_uint4(0, 0, 0, 0);
            s[mt][h][u] = __float2half(0.0f);
          }
        }
    }
  }
};

template <int kMT, int kUnroll, int kMode>
__device__ __forceinline__ void tc_accumulate(const TcStage<kMT, kUnroll>& st, float (&acc)[kMT][4], const half* __restrict__ x,
                                              const uint8_t* __restrict__ zp, const int (&rows)[kMT][2], int x_row, bool has_x,
                                              int K, int k_blocks, int block_shift, int chunks, int t, int step0) {
  const int zp_row_bytes = (k_blocks + 1) >> 1;
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int c = 4 * (step0 + u) + t;
    const bool valid = c < chunks;
    half2 z1024[kMT][2], z64[kMT][2], s2[kMT][2];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float q = 8.0f;   // the default zero point
        if (zp != nullptr && valid) {
          const int blk = (c << 5) >> block_shift;
          q = (float)((zp[(size_t)rows[mt][h] * zp_row_bytes + (blk >> 1)] >> ((blk & 1) * 4)) & 0xF);
        }
        z1024[mt][h] = __float2half2_rn(1024.0f + q);
        z64[mt][h] = __float2half2_rn(64.0f + q);
        s2[mt][h] = __half2half2(st.s[mt][h][u]);
      }
    // x row g of this chunk: lanes past M (and chunks past K) load a valid address and zero it, so no lane branches
    // around the mma.
    const size_t col = (size_t)(valid ? c : chunks - 1) << 5;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      uint4 xv = load_x8<kMode>(x, x_row, K, col + 8 * j);
      if (!(has_x && valid)) xv = make_uint4(0, 0, 0, 0);
      uint32_t xp[4];
      permute_x(xv, xp);
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        half2 wa[4], wb[4];
        nibbles_to_half2(word(st.w[mt][0][u], j), z1024[mt][0], z64[mt][0], s2[mt][0], wa);
        nibbles_to_half2(word(st.w[mt][1][u], j), z1024[mt][1], z64[mt][1], s2[mt][1], wb);
        mma_16816(acc[mt], as_u32(wa[0]), as_u32(wb[0]), as_u32(wa[1]), as_u32(wb[1]), xp[0], xp[1]);
        mma_16816(acc[mt], as_u32(wa[2]), as_u32(wb[2]), as_u32(wa[3]), as_u32(wb[3]), xp[2], xp[3]);
      }
    }
  }
}

// M <= 8 rows of x. Warp slice s of a split-K group takes the stages (kUnroll consecutive 128-K steps each) s, s + kSplit,
// s + 2 kSplit, ...
template <int kSplit>
constexpr int kTcBlockWarps = kSplit > kWarpsPerBlock ? kSplit : kWarpsPerBlock;

template <int kMT, int kUnroll, int kSplit, int kMode>
__global__ void __launch_bounds__(kTcBlockWarps<kSplit> * 32)
int4_mma_kernel(const half* __restrict__ x, const uint8_t* __restrict__ b, const half* __restrict__ scales,
                const uint8_t* __restrict__ zp, const half* __restrict__ bias, half* __restrict__ y,
                int M, int N, int K, int row_bytes, int k_blocks, int block_shift) {
  constexpr int kWarps = kTcBlockWarps<kSplit>;
  static_assert(kWarps % kSplit == 0, "split-K groups must tile the block");
  constexpr int kGroups = kWarps / kSplit;
  constexpr int kCols = kMode == kSwiGlu ? 8 * kMT : 16 * kMT;   // output columns per warp
  const int n_out = kMode == kSwiGlu ? N >> 1 : N;
  __shared__ float red[kSplit > 1 ? kWarps : 1][kMT][4][32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int slice = warp % kSplit;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = (blockIdx.x * kGroups + warp / kSplit) * kCols;
  const int chunks = K >> 5;
  const int stages = ((chunks + 3) / 4 + kUnroll - 1) / kUnroll;
  // No early return for columns past N: the split-K reduction below synchronises the whole block.
  const int iters = n0 < n_out && slice < stages ? (stages - slice + kSplit - 1) / kSplit : 0;
  int rows[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) rows[mt][h] = tc_weight_row<kMode>(n0, mt, h, g, N);
  const bool has_x = g < M;
  const int x_row = has_x ? g : M - 1;

  float acc[kMT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[mt][i] = 0.0f;

  TcStage<kMT, kUnroll> a, bb;
  if (iters > 0) a.load(b, scales, rows, row_bytes, k_blocks, block_shift, chunks, t, slice * kUnroll);
  for (int i = 0; i < iters; i += 2) {
    const int s0 = (slice + i * kSplit) * kUnroll, s1 = s0 + kSplit * kUnroll;
    if (i + 1 < iters) bb.load(b, scales, rows, row_bytes, k_blocks, block_shift, chunks, t, s1);
    tc_accumulate<kMT, kUnroll, kMode>(a, acc, x, zp, rows, x_row, has_x, K, k_blocks, block_shift, chunks, t, s0);
    if (i + 1 >= iters) break;
    if (i + 2 < iters) a.load(b, scales, rows, row_bytes, k_blocks, block_shift, chunks, t, s1 + kSplit * kUnroll);
    tc_accumulate<kMT, kUnroll, kMode>(bb, acc, x, zp, rows, x_row, has_x, K, k_blocks, block_shift, chunks, t, s1);
  }

  if constexpr (kSplit > 1) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) red[warp][mt][i][lane] = acc[mt][i];
    __syncthreads();
    if (slice != 0) return;
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float v = 0.0f;
#pragma unroll
        for (int s = 0; s < kSplit; ++s) v += red[warp + s][mt][i][lane];   // fixed order: deterministic
        acc[mt][i] = v;
      }
  }
  if (n0 >= n_out) return;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int m = 2 * t + e;   // C's column = the row of x
      if (m >= M) continue;
      if constexpr (kMode == kSwiGlu) {
        // The FMA kernel's roundings: gate_up output to fp16, SiLU of the fp16 gate to fp16, the product to fp16.
        const int p = n0 + mt * 8 + g;
        if (p < n_out) {
          const float bg = bias != nullptr ? __half2float(bias[p]) : 0.0f;
          const float bu = bias != nullptr ? __half2float(bias[n_out + p]) : 0.0f;
          const float gv = __half2float(__float2half_rn(acc[mt][e] + bg));
          const float uv = __half2float(__float2half_rn(acc[mt][2 + e] + bu));
          const float sg = __half2float(__float2half_rn(gv / (1.0f + __expf(-gv))));
          y[(size_t)m * n_out + p] = __float2half_rn(sg * uv);
        }
      } else {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int n = n0 + mt * 16 + h * 8 + g;
          if (n < N) {
            const float bv = bias != nullptr ? __half2float(bias[n]) : 0.0f;
            y[(size_t)m * N + n] = __float2half_rn(acc[mt][2 * h + e] + bv);
          }
        }
      }
    }
}

template <int kMT, int kUnroll, int kSplit, int kMode>
void launch_tc_tile(const half* x, const uint8_t* b, const half* scales, const uint8_t* zp, const half* bias, half* y,
                    int M, int N, int K, int row_bytes, int k_blocks, int block_shift, cudaStream_t stream) {
  constexpr int kWarps = kTcBlockWarps<kSplit>;
  constexpr int kGroups = kWarps / kSplit;
  constexpr int kCols = kMode == kSwiGlu ? 8 * kMT : 16 * kMT;
  const int n_out = kMode == kSwiGlu ? N / 2 : N;
  const int groups = (n_out + kCols - 1) / kCols;
  const int blocks = (groups + kGroups - 1) / kGroups;
  int4_mma_kernel<kMT, kUnroll, kSplit, kMode><<<blocks, kWarps * 32, 0, stream>>>(
      x, b, scales, zp, bias, y, M, N, K, row_bytes, k_blocks, block_shift);
}

template <int kMode>
void launch_tc(int tile, const half* x, const uint8_t* b, const half* scales, const uint8_t* zp, const half* bias, half* y,
               int M, int N, int K, int row_bytes, int k_blocks, int block_shift, cudaStream_t stream) {
#define OMM_TC_TILE(i)                                                                                                     \
  case i:                                                                                                                  \
    launch_tc_tile<kTcTiles[i].mtiles, kTcTiles[i].unroll, kTcTiles[i].split, kMode>(x, b, scales, zp, bias, y, M, N, K,   \
                                                                                     row_bytes, k_blocks, block_shift, stream); \
    break;
  switch (tile - kTcFirst) {
    OMM_TC_TILE(0) OMM_TC_TILE(1) OMM_TC_TILE(2) OMM_TC_TILE(3) OMM_TC_TILE(4) OMM_TC_TILE(5) OMM_TC_TILE(6) OMM_TC_TILE(7)
    OMM_TC_TILE(8)
    default: break;
  }
#undef OMM_TC_TILE
}

template <int M, int kRows, int kUnroll, int kSplit, int kMode>
void launch_tile(const half* x, const uint8_t* b, const half* scales, const uint8_t* zp, const half* bias, half* y,
                 int N, int K, int row_bytes, int k_blocks, int block_shift, cudaStream_t stream) {
  constexpr int kGroups = kWarpsPerBlock / kSplit;
  constexpr int kCols = kMode == kSwiGlu ? kRows / 2 : kRows;   // output columns per warp
  const int n_out = kMode == kSwiGlu ? N / 2 : N;
  const int groups = (n_out + kCols - 1) / kCols;
  const int blocks = (groups + kGroups - 1) / kGroups;
  int4_gemv_kernel<M, kRows, kUnroll, kSplit, kMode><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(
      x, b, scales, zp, bias, y, N, K, row_bytes, k_blocks, block_shift);
}

template <int M, int kMode>
void launch(int tile, const half* x, const uint8_t* b, const half* scales, const uint8_t* zp, const half* bias, half* y,
            int N, int K, int row_bytes, int k_blocks, int block_shift, cudaStream_t stream) {
  if (tile == 0) tile = fma_tile(M, N, K);   // run() resolves the default; kept for a direct call
#define OMM_TILE(i)                                                                                                    \
  case i:                                                                                                              \
    launch_tile<M, kTiles[i].rows, kTiles[i].unroll, kTiles[i].split, kMode>(x, b, scales, zp, bias, y, N, K,          \
                                                                                row_bytes, k_blocks, block_shift, stream); \
    break;
  switch (tile) {
    OMM_TILE(1) OMM_TILE(2) OMM_TILE(3) OMM_TILE(4) OMM_TILE(5) OMM_TILE(6) OMM_TILE(7) OMM_TILE(8) OMM_TILE(9)
    OMM_TILE(10)
    default: break;
  }
#undef OMM_TILE
}

// Checks the arguments and runs the rows in passes (4 rows for the FMA tiles, 8 for the tensor-core tiles). x: [M, K] (plain, SwiGLU) or A [M, 2K] (SiLU-mul), rows 16-byte
// aligned; y: [M, N], or [M, N/2] for SwiGLU (N even: gate and up rows).
template <int kMode>
int run(const void* x, const void* b, const void* scales, const void* zero_points, const void* bias, void* y, int M, int N,
        int K, int block_size, void* stream, int tile) {
  if (tile < 0 || tile >= kTileCount) return -4;
  if (M < 1 || N < 1 || K < 32 || (K & 31) != 0) return -1;
  if (block_size < 32 || (block_size & (block_size - 1)) != 0) return -2;
  if (((uintptr_t)x & 15) != 0 || ((uintptr_t)b & 15) != 0) return -3;
  if (kMode == kSwiGlu && (N & 1) != 0) return -5;
  const int n_out = kMode == kSwiGlu ? N / 2 : N;
  int block_shift = 0;
  while ((1 << block_shift) < block_size) ++block_shift;
  const int k_blocks = (K + block_size - 1) / block_size;
  const int row_bytes = k_blocks * block_size / 2;
  const size_t x_stride = kMode == kSiluMul ? 2 * (size_t)K : (size_t)K;   // halves between rows of x
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const half* xh = static_cast<const half*>(x);
  half* yh = static_cast<half*>(y);
  const uint8_t* bb = static_cast<const uint8_t*>(b);
  const half* sh = static_cast<const half*>(scales);
  const uint8_t* zb = static_cast<const uint8_t*>(zero_points);
  const half* bh = static_cast<const half*>(bias);
  if (tile == 0) tile = default_tile(M, N, K, block_size);
  if (tile >= kTcFirst) {   // tensor-core tiles: up to 8 rows a pass
    for (int m0 = 0; m0 < M; m0 += kTcRowsPerPass) {
      const int rows = M - m0 < kTcRowsPerPass ? M - m0 : kTcRowsPerPass;
      launch_tc<kMode>(tile, xh + (size_t)m0 * x_stride, bb, sh, zb, bh, yh + (size_t)m0 * n_out, rows, N, K, row_bytes,
                       k_blocks, block_shift, s);
    }
    return (int)cudaGetLastError();
  }
  for (int m0 = 0; m0 < M; m0 += 4) {
    const int rows = M - m0 < 4 ? M - m0 : 4;
    const half* xm = xh + (size_t)m0 * x_stride;
    half* ym = yh + (size_t)m0 * n_out;
    switch (rows) {
      case 1: launch<1, kMode>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
      case 2: launch<2, kMode>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
      case 3: launch<3, kMode>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
      default: launch<4, kMode>(tile, xm, bb, sh, zb, bh, ym, N, K, row_bytes, k_blocks, block_shift, s); break;
    }
  }
  return (int)cudaGetLastError();
}

}  // namespace

// C entry points, shared by the micro-benchmark (ctypes) and the ONNX Runtime custom ops: omm_int4_gemv (the
// default tile) and omm_int4_gemv_tile (tile 0..19: 0 = default_tile(), 1..10 kTiles[tile], 11..19 the tensor-core
// kTcTiles[tile - 11]); omm_int4_gemv_silu_mul and
// omm_int4_gemv_silu_mul_tile the same with x = silu(A[:, :K]) * A[:, K:] formed from A [M, 2K] (K is the GEMV's
// inner dimension, the down projection's input width; A's rows are 2K halves apart); omm_int4_gemv_swiglu and
// omm_int4_gemv_swiglu_tile: y [M, N/2] = silu(x @ B[:N/2]^T) * (x @ B[N/2:]^T), B the gate_up weight (N even).
// Any M >= 1 is accepted: rows are done 4 (FMA tiles) or 8 (tensor-core tiles) at a time (each pass re-reads the
// weights, so large M, e.g. a long prefill, is correct but not fast). Returns 0, or a negative code for bad arguments, or the
// cudaError_t of the launch.
extern "C" int omm_int4_gemv_tile(const void* x, const void* b, const void* scales, const void* zero_points,
                                  const void* bias, void* y, int M, int N, int K, int block_size, void* stream,
                                  int tile) {
  return run<kPlain>(x, b, scales, zero_points, bias, y, M, N, K, block_size, stream, tile);
}

extern "C" int omm_int4_gemv(const void* x, const void* b, const void* scales, const void* zero_points,
                             const void* bias, void* y, int M, int N, int K, int block_size, void* stream) {
  return run<kPlain>(x, b, scales, zero_points, bias, y, M, N, K, block_size, stream, 0);
}

extern "C" int omm_int4_gemv_silu_mul_tile(const void* a, const void* b, const void* scales, const void* zero_points,
                                           const void* bias, void* y, int M, int N, int K, int block_size, void* stream,
                                           int tile) {
  return run<kSiluMul>(a, b, scales, zero_points, bias, y, M, N, K, block_size, stream, tile);
}

extern "C" int omm_int4_gemv_silu_mul(const void* a, const void* b, const void* scales, const void* zero_points,
                                      const void* bias, void* y, int M, int N, int K, int block_size, void* stream) {
  return run<kSiluMul>(a, b, scales, zero_points, bias, y, M, N, K, block_size, stream, 0);
}

extern "C" int omm_int4_gemv_swiglu_tile(const void* x, const void* b, const void* scales, const void* zero_points,
                                         const void* bias, void* y, int M, int N, int K, int block_size, void* stream,
                                         int tile) {
  return run<kSwiGlu>(x, b, scales, zero_points, bias, y, M, N, K, block_size, stream, tile);
}

extern "C" int omm_int4_gemv_swiglu(const void* x, const void* b, const void* scales, const void* zero_points,
                                    const void* bias, void* y, int M, int N, int K, int block_size, void* stream) {
  return run<kSwiGlu>(x, b, scales, zero_points, bias, y, M, N, K, block_size, stream, 0);
}

// The tile omm_int4_gemv would pick for these arguments on the current device (default_tile): the micro-benchmark
// compares it with its Python mirror (emulate_int4_gemv.default_tile), so the "default" it reports is the kernel's.
extern "C" int omm_int4_gemv_default_tile(int M, int N, int K, int block_size) {
  return default_tile(M, N, K, block_size);
}
