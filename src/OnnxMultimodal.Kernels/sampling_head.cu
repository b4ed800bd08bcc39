// The sampling head as two CUDA kernels (`omm.OmmSamplingHead`, issue 16 item 1 below stock kernels).
//
// The ONNX head (onnx-export/omm_export/sampling_head.py) expresses the next-token choice in ~70 standard ops around one
// TopK that sorts the whole vocabulary: on an H100 that is ~0.25 ms of a 7B decode step, greedy or not, because ONNX
// Runtime runs the whole head whatever outputs are bound. This does the same choice without sorting:
//
//   prep    grid (blocks, B): each element's logit after the guidance mix, the mask and the repetition penalty (the ONNX
//           head's float32 expressions, without contraction), stored as a 32-bit key that orders like the float, and
//           each block's largest (key, lowest id)
//   select  one block of 1024 threads per row: the greedy choice from the blocks' maxima; with a temperature, the row's
//           keys staged in shared memory where they fit (all of them, or the ids with a non-zero probability), then up to
//           three order-statistic searches, each a radix descent (11 + 11 + 10 bits) over histograms of count or
//           probability mass, the tie among equal keys resolved in id order:
//             top-k   the k-th position of the descending order (count)
//             top-p   the first position whose cumulative probability reaches top_p (mass)
//             draw    the first position whose cumulative probability exceeds u (mass)
//
// The descending order is the host's: larger logit first, equal logits by lower id (every element of a tie has the same
// probability, so a position inside a tie follows from counts alone). Probabilities: exp((x - max) / T) from a float-float
// (x - max) / T and a float32 exponential, in fixed point and summed as exact integers, so the choice is the same at every
// run. The host works in float64 and the ONNX head in float32: a draw can differ from the host's only where u (a float32
// input) or top_p falls within a few 1e-7 of a cumulative boundary (up to 1.5e-5 at a 256k vocabulary: see Probability). Fallback as the host's: a draw past the kept mass (u
// rounded up to 1) takes the last kept id with a non-zero probability.
//
// C entry points (stream = the EP's compute stream; scratch from omm_sampling_head_scratch_bytes, on the device):
//   omm_sampling_head(logits [B, V] f32, params [5] f32, uniform [B] f32, rows [B, 2] i64, seen [B, V] f32, mask [V] f32,
//                     next_token [B] i64, next_token_greedy [B] i64, B, V, scratch, stream)
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

namespace {

constexpr int kPrepThreads = 256;
constexpr int kPrepPerThread = 8;
constexpr int kSelectThreads = 1024;
constexpr int kMaxBuckets = 2048;   // 11-bit digits: passes of 11, 11 and 10 bits over the 32-bit key

__device__ __forceinline__ uint32_t order_key(float f) {
  if (f != f) return 0u;        // NaN: below every number
  if (f == 0.0f) f = 0.0f;      // -0 and +0 tie, as the host compares them
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// (key, lowest id) packed so that the larger packed value is the earlier element of the descending order
__device__ __forceinline__ unsigned long long pack_best(uint32_t key, uint32_t id) {
  return (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - id);
}

__device__ __forceinline__ unsigned long long warp_max(unsigned long long v) {
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

__global__ void __launch_bounds__(kPrepThreads) head_prep(const float* __restrict__ logits, const float* __restrict__ params,
                                                          const int64_t* __restrict__ rows, const float* __restrict__ seen,
                                                          const float* __restrict__ mask, uint32_t* __restrict__ keys,
                                                          unsigned long long* __restrict__ partial, int B, int V) {
  const int b = blockIdx.y;
  int64_t base_row = rows[2 * b], cond_row = rows[2 * b + 1];
  base_row = base_row < 0 ? 0 : (base_row >= B ? B - 1 : base_row);   // the engine writes rows in [0, B); clamp anyway
  cond_row = cond_row < 0 ? 0 : (cond_row >= B ? B - 1 : cond_row);
  const float* base = logits + base_row * static_cast<int64_t>(V);
  const float* cond = logits + cond_row * static_cast<int64_t>(V);
  const float* seen_row = seen + b * static_cast<int64_t>(V);
  const float r = params[3], s = params[4];
  unsigned long long best = 0;
  const int chunk = kPrepThreads * kPrepPerThread;
  for (int i = blockIdx.x * chunk + threadIdx.x; i < V && i < (blockIdx.x + 1) * chunk; i += kPrepThreads) {
    const float bv = base[i];
    // the head's float32 ops, each rounded on its own (ONNX Runtime runs them as separate kernels: no fused multiply-add)
    float x = __fadd_rn(bv, __fmul_rn(s, __fsub_rn(cond[i], bv)));
    x = __fadd_rn(x, mask[i]);
    if (seen_row[i] > 0.0f) x = x > 0.0f ? __fdiv_rn(x, r) : __fmul_rn(x, r);
    const uint32_t k = order_key(x);
    keys[b * static_cast<int64_t>(V) + i] = k;
    const unsigned long long p = pack_best(k, static_cast<uint32_t>(i));
    best = p > best ? p : best;
  }
  __shared__ unsigned long long warp_best[kPrepThreads / 32];
  best = warp_max(best);
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x < 32) {
    unsigned long long v = threadIdx.x < kPrepThreads / 32 ? warp_best[threadIdx.x] : 0ull;
    v = warp_max(v);
    if (threadIdx.x == 0) partial[b * static_cast<int64_t>(gridDim.x) + blockIdx.x] = v;
  }
}

// Block-wide exclusive scan of (count, mass) pairs in thread order; returns the block's totals in *total_c / *total_m.
__device__ void block_scan(unsigned c, double m, unsigned* excl_c, double* excl_m, unsigned* total_c, double* total_m) {
  __shared__ unsigned wc[32];
  __shared__ double wm[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned ic = c;
  double im = m;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned tc = __shfl_up_sync(0xffffffffu, ic, o);
    const double tm = __shfl_up_sync(0xffffffffu, im, o);
    if (lane >= o) { ic += tc; im += tm; }
  }
  if (lane == 31) { wc[warp] = ic; wm[warp] = im; }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    unsigned vc = lane < warps ? wc[lane] : 0u;
    double vm = lane < warps ? wm[lane] : 0.0;
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned tc = __shfl_up_sync(0xffffffffu, vc, o);
      const double tm = __shfl_up_sync(0xffffffffu, vm, o);
      if (lane >= o) { vc += tc; vm += tm; }
    }
    if (lane < warps) { wc[lane] = vc; wm[lane] = vm; }   // inclusive totals of warps 0..lane
  }
  __syncthreads();
  const unsigned before_c = warp > 0 ? wc[warp - 1] : 0u;
  const double before_m = warp > 0 ? wm[warp - 1] : 0.0;
  *excl_c = before_c + ic - c;
  *excl_m = before_m + im - m;
  *total_c = wc[(blockDim.x >> 5) - 1];
  *total_m = wm[(blockDim.x >> 5) - 1];
  __syncthreads();   // the warp totals are reused by the next call
}

enum SelectMode { kCount = 0, kMassReach = 1, kMassExceed = 2 };

// The order's prefix still in play: positions up to the element (key, id), i.e. keys above `key`, and `key` itself up to `id`.
struct Limit {
  uint32_t key;
  int id;
};

__device__ __forceinline__ bool in_limit(uint32_t k, int i, Limit lim) { return k > lim.key || (k == lim.key && i <= lim.id); }

// The elements a search runs over: n keys in id order, with their ids (or, without `ids`, the index is the id). The keys sit
// in shared memory where they fit: the whole row, or only the ids with a non-zero mass (the rest can move no cumulative
// sum and come after every one of them in the order); else the row in global memory (the scratch, through L2).
struct View {
  const uint32_t* keys;
  const int* ids;
  int n;
  __device__ __forceinline__ int id(int i) const { return ids ? ids[i] : i; }
};

// Probability masses in fixed point: e = exp((x - max) / T) in [0, 1] times 2^scale_bits, with scale_bits =
// 53 - ceil(log2(V + 1)), so that every sum of them is an integer below 2^53 (exact in a double too). Integer sums do not
// depend on the order they are added in, so the choice is the same at every run. The rounding to that unit (masses below
// half a unit become 0) moves a cumulative sum by at most V * 2^-(54 - ceil(log2(V + 1))) of the largest mass: 6e-8 at
// V = 32,000, 5e-7 at 65,536, 1.5e-5 at 256k. (x - max) / T is formed in float-float
// (an exact difference, times 1/T held as two floats), so its error stays near float32's rounding of the result itself
// (about 6e-8 of it) rather than of x / T; e is a float32 exponential of it corrected to first order by the low part (a
// few 1e-7 relative), and the scaling by a power of two is exact, so no FP64 work runs per element.
struct Probability {
  float max_value;
  float inv_t_hi, inv_t_lo;   // 1 / T = hi + lo
  float scale;                // 2^scale_bits
  __device__ __forceinline__ float exponential(uint32_t k) const {   // NaN keys (0) have none
    if (k == 0u) return 0.0f;
    const float x = key_value(k);
    // TwoSum: x - max = s + err exactly
    const float s = __fsub_rn(x, max_value);
    const float bb = __fsub_rn(s, x);
    const float err = __fadd_rn(__fsub_rn(x, __fsub_rn(s, bb)), __fsub_rn(-max_value, bb));
    // (s + err) * (hi + lo): the product's high part and its rounding error by fma, plus the cross terms
    const float p = __fmul_rn(s, inv_t_hi);
    if (!(p > -110.0f)) return 0.0f;   // exp underflows to 0 (and a banned id's -3e38 / T may overflow to -inf: no NaN below)
    const float p_err = fmaf(s, inv_t_hi, -p);
    const float low = fmaf(s, inv_t_lo, fmaf(err, inv_t_hi, p_err));
    const float e = expf(p);
    return fmaf(e, low, e);   // exp(p + low) = exp(p) * (1 + low) to first order (|low| is below an ulp of p)
  }
  __device__ __forceinline__ uint64_t operator()(uint32_t k) const {
    return static_cast<uint64_t>(__float2ull_rn(__fmul_rn(exponential(k), scale)));
  }
};

struct Chosen {
  uint32_t key;
  int id;
};

// The descent's shared memory (36 KB a block).
struct SelectShared {
  unsigned hc[kMaxBuckets];     // counts
  unsigned hp[3][kMaxBuckets];  // masses in three parts
  int first_id[1 << 10];        // the last pass: each bucket's lowest id (a tie's first element)
  int chosen_digit, fallback_digit, found_id;
  unsigned chosen_above_c;
  double chosen_above_m;
};

// The element of the descending order (within `lim`) where the criterion is met:
//   kCount        the position `count` (0-based)
//   kMassReach    the first position whose inclusive cumulative mass is >= fraction * (the mass in play)
//   kMassExceed   the first position whose inclusive cumulative mass is > fraction * (the mass in play)
// A radix descent over the 32-bit keys (11 + 11 + 10 bits): each pass histograms the elements still in play by the next
// digit and keeps the bucket where the criterion flips. Counts and masses are exact integers: a mass (below 2^53) is added
// as three parts of `part_bits` bits with native 32-bit shared atomics (a part's sum over at most 2^20 ids stays below
// 2^32), since 64-bit shared atomics run as compare-and-swap loops that crawl where many lanes hit one bucket. In the mass
// modes elements of zero mass are skipped (they cannot move a cumulative sum). The first pass's histogram holds every
// element in play, so its total is the mass the fraction applies to (no separate pass sums it). Where no bucket meets the
// criterion (a fraction of 1 or more), the last element with a mass is taken.
__device__ Chosen select(SelectShared& sh, View view, Limit lim, int mode, unsigned count, double fraction, Probability prob,
                         int part_bits) {
  double target = 0.0;
  const uint32_t* keys = view.keys;
  const int V = view.n;
  const bool mass = mode != kCount;
  const unsigned part_mask = (1u << part_bits) - 1u;
  uint32_t prefix = 0, prefix_mask = 0;
  unsigned above_c = 0;
  double above_m = 0.0;   // exact: an integer below 2^53
#pragma unroll 1
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0), nb = pass == 2 ? 1024 : 2048;
    for (int d = threadIdx.x; d < nb; d += blockDim.x) {
      sh.hc[d] = 0u;
      sh.hp[0][d] = sh.hp[1][d] = sh.hp[2][d] = 0u;
      if (pass == 2) sh.first_id[d] = 0x7fffffff;
    }
    if (threadIdx.x == 0) { sh.chosen_digit = -1; sh.fallback_digit = nb; sh.chosen_above_c = 0u; sh.chosen_above_m = 0.0; }
    __syncthreads();
#pragma unroll 4
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const uint32_t k = keys[i];
      if ((k & prefix_mask) != prefix || !in_limit(k, view.id(i), lim)) continue;
      const int d = static_cast<int>((k >> shift) & static_cast<uint32_t>(nb - 1));
      if (mass) {
        const uint64_t e = prob(k);
        if (e == 0) continue;
        atomicAdd(&sh.hp[0][d], static_cast<unsigned>(e) & part_mask);
        atomicAdd(&sh.hp[1][d], static_cast<unsigned>(e >> part_bits) & part_mask);
        atomicAdd(&sh.hp[2][d], static_cast<unsigned>(e >> (2 * part_bits)));
      }
      atomicAdd(&sh.hc[d], 1u);
      if (pass == 2) atomicMin(&sh.first_id[d], view.id(i));
    }
    __syncthreads();
    // buckets in descending digit order, `per` consecutive ones a thread
    const int per = (nb + blockDim.x - 1) / blockDim.x;
    auto bucket_mass = [&](int d) {
      return static_cast<double>(static_cast<uint64_t>(sh.hp[0][d]) + (static_cast<uint64_t>(sh.hp[1][d]) << part_bits) +
                                 (static_cast<uint64_t>(sh.hp[2][d]) << (2 * part_bits)));
    };
    unsigned lc = 0;
    double lm = 0.0;
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (threadIdx.x * per + j);
      if (d >= 0) { lc += sh.hc[d]; lm += bucket_mass(d); }
    }
    unsigned ec, tc;
    double em, tm;
    block_scan(lc, lm, &ec, &em, &tc, &tm);
    if (pass == 0) target = fraction * tm;   // every bucket's mass: the whole mass in play (an exact integer)
    unsigned run_c = above_c + ec;
    double run_m = above_m + em;
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (threadIdx.x * per + j);
      if (d < 0) break;
      const unsigned c = sh.hc[d];
      const double m = bucket_mass(d);
      bool hit;
      if (mode == kCount) hit = c > 0 && run_c <= count && count < run_c + c;
      else if (mode == kMassReach) hit = m > 0.0 && run_m < target && target <= run_m + m;
      else hit = m > 0.0 && run_m <= target && target < run_m + m;
      if (hit) atomicMax(&sh.chosen_digit, d);   // one bucket (exact sums); the earliest if several ever did
      if (mass ? m > 0.0 : c > 0) atomicMin(&sh.fallback_digit, d);   // the last bucket in play, if none meets it
      run_c += c;
      run_m += m;
    }
    __syncthreads();
    const int pick = sh.chosen_digit >= 0 ? sh.chosen_digit : (sh.fallback_digit < nb ? sh.fallback_digit : -1);
    if (pick >= 0 && (nb - 1 - pick) / per == static_cast<int>(threadIdx.x)) {   // its owner: the sums before it
      unsigned bc = above_c + ec;
      double bm = above_m + em;
      for (int d = nb - 1 - threadIdx.x * per; d > pick; --d) { bc += sh.hc[d]; bm += bucket_mass(d); }
      sh.chosen_above_c = bc;
      sh.chosen_above_m = bm;
    }
    __syncthreads();
    if (pick < 0) return Chosen{0u, -1};   // nothing in play (no mass at all, e.g. every logit -inf): the caller decides
    above_c = sh.chosen_above_c;
    above_m = sh.chosen_above_m;
    prefix |= static_cast<uint32_t>(pick) << shift;
    prefix_mask |= static_cast<uint32_t>(nb - 1) << shift;
    __syncthreads();
  }
  // `prefix` is now the chosen key; its tie (every element of it has the same mass e) is ordered by id
  const unsigned tie = sh.hc[prefix & 1023u];
  const double e = mass ? static_cast<double>(prob(prefix)) : 0.0;
  long long m;
  if (mode == kCount) m = static_cast<long long>(count) - above_c;
  else if (e > 0.0) {
    const double steps = (target - above_m) / e;
    m = mode == kMassReach ? static_cast<long long>(ceil(steps)) - 1 : static_cast<long long>(floor(steps));
  } else m = static_cast<long long>(tie) - 1;
  if (m < 0) m = 0;
  if (m > static_cast<long long>(tie) - 1) m = static_cast<long long>(tie) - 1;
  Chosen out;
  out.key = prefix;
  if (m == 0) {   // the tie's first id (most choices: a tie at the boundary is rare)
    out.id = sh.first_id[prefix & 1023u];
    __syncthreads();
    return out;
  }
  // the m-th id (ascending) of the tie in play: contiguous index ranges per thread (the view is in id order), counted,
  // scanned, then found
  const int per_ids = (V + blockDim.x - 1) / blockDim.x;
  const int lo = min(V, static_cast<int>(threadIdx.x) * per_ids), hi = min(V, lo + per_ids);
  unsigned mine = 0;
  for (int i = lo; i < hi; ++i) mine += (keys[i] == prefix && in_limit(prefix, view.id(i), lim)) ? 1u : 0u;
  unsigned ec, tc;
  double em, tm;
  block_scan(mine, 0.0, &ec, &em, &tc, &tm);
  if (threadIdx.x == 0) sh.found_id = -1;
  __syncthreads();
  if (static_cast<long long>(ec) <= m && m < static_cast<long long>(ec) + mine) {
    long long left = m - ec;
    for (int i = lo; i < hi; ++i)
      if (keys[i] == prefix && in_limit(prefix, view.id(i), lim) && left-- == 0) { sh.found_id = view.id(i); break; }
  }
  __syncthreads();
  out.id = sh.found_id < 0 ? 0 : sh.found_id;
  __syncthreads();
  return out;
}

// The row's keys in shared memory (`staged_bytes` of it): all of them where they fit (ids implicit), else the ids with a
// non-zero mass in id order with their keys (each warp compacts a contiguous range: counted, scanned, written), else none.
__device__ View stage(const uint32_t* __restrict__ keys, int V, Probability prob, int staged_bytes) {
  extern __shared__ uint32_t staged[];
  if (static_cast<long long>(V) * 4 <= staged_bytes) {
#pragma unroll 4
    for (int i = threadIdx.x; i < V; i += blockDim.x) staged[i] = keys[i];
    __syncthreads();
    return View{staged, nullptr, V};
  }
  const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int range = ((V + warps - 1) / warps + 31) / 32 * 32;
  const int lo = min(V, warp * range), hi = min(V, lo + range);
  unsigned count = 0;
  for (int base = lo; base < hi; base += 32) {
    const int i = base + lane;
    count += __popc(__ballot_sync(0xffffffffu, i < hi && prob(keys[i]) > 0));
  }
  unsigned ec, tc;
  double em, tm;
  block_scan(lane == 0 ? count : 0u, 0.0, &ec, &em, &tc, &tm);   // lane 0's exclusive sum: the warps before it
  if (static_cast<long long>(tc) * 8 > staged_bytes) return View{keys, nullptr, V};
  uint32_t* sk = staged;
  int* si = reinterpret_cast<int*>(staged + tc);
  unsigned pos = __shfl_sync(0xffffffffu, ec, 0);
  for (int base = lo; base < hi; base += 32) {
    const int i = base + lane;
    const uint32_t k = i < hi ? keys[i] : 0u;
    const bool live = i < hi && prob(k) > 0;
    const unsigned ballot = __ballot_sync(0xffffffffu, live);
    if (live) {
      const unsigned at = pos + __popc(ballot & ((1u << lane) - 1u));
      sk[at] = k;
      si[at] = i;
    }
    pos += __popc(ballot);
  }
  __syncthreads();
  return View{sk, si, static_cast<int>(tc)};
}

__global__ void __launch_bounds__(kSelectThreads) head_select(const uint32_t* __restrict__ all_keys,
                                                              const unsigned long long* __restrict__ partial, int blocks,
                                                              const float* __restrict__ params, const float* __restrict__ uniform,
                                                              int64_t* __restrict__ next_token, int64_t* __restrict__ next_greedy, int V,
                                                              int staged_bytes) {
  const int b = blockIdx.x;
  const uint32_t* keys = all_keys + b * static_cast<int64_t>(V);
  __shared__ SelectShared sh;
  __shared__ unsigned long long best_shared;
  if (threadIdx.x < 32) {
    unsigned long long v = 0;
    for (int j = threadIdx.x; j < blocks; j += 32) {
      const unsigned long long p = partial[b * static_cast<int64_t>(blocks) + j];
      v = p > v ? p : v;
    }
    v = warp_max(v);
    if (threadIdx.x == 0) best_shared = v;
  }
  __syncthreads();
  const unsigned long long best = best_shared;
  const int greedy = static_cast<int>(0xffffffffu - static_cast<uint32_t>(best & 0xffffffffull));
  const float temperature = params[0];
  if (threadIdx.x == 0) next_greedy[b] = greedy;
  if (!(temperature > 0.0f)) {   // 0: greedy (the engine refuses negative and non-finite temperatures)
    if (threadIdx.x == 0) next_token[b] = greedy;
    return;
  }
  const uint32_t max_key = static_cast<uint32_t>(best >> 32);
  int bits = 0;
  while ((1ll << bits) <= static_cast<long long>(V)) ++bits;   // ceil(log2(V + 1))
  const double inv_t = 1.0 / static_cast<double>(temperature);
  const float inv_t_hi = static_cast<float>(inv_t);
  if (!isfinite(inv_t_hi)) {   // T below ~3e-39 (the engine refuses T in (0, 1e-3) for this head): the limit is greedy
    if (threadIdx.x == 0) next_token[b] = greedy;
    return;
  }
  const Probability prob{key_value(max_key), inv_t_hi, static_cast<float>(inv_t - static_cast<double>(inv_t_hi)), ldexpf(1.0f, 53 - bits)};
  const int part_bits = (54 - bits + 2) / 3;   // three parts of a mass; each bucket's sum of one part stays below 2^32
  if (max_key == 0u) {   // every logit NaN: nothing to draw from; the greedy id, as the host's argmax would give some id
    if (threadIdx.x == 0) next_token[b] = greedy;
    return;
  }
  const View view = stage(keys, V, prob, staged_bytes);
  const float top_k = params[1], top_p = params[2];
  Limit lim{0u, V - 1};   // everything
  // top-k: positions i < k (k as the head compares: a float); a staged view holds the ids with a mass, which come first
  if (top_k > 0.0f && top_k < static_cast<float>(view.n)) {
    const unsigned last = static_cast<unsigned>(ceilf(top_k)) - 1u;
    const Chosen c = select(sh, view, lim, kCount, last, 0.0, prob, part_bits);
    if (c.id >= 0) lim = Limit{c.key, c.id};
  }
  if (top_p < 1.0f) {   // the shortest prefix whose cumulative probability reaches top_p
    if (top_p > 0.0f) {
      const Chosen c = select(sh, view, lim, kMassReach, 0u, static_cast<double>(top_p), prob, part_bits);
      if (c.id >= 0) lim = Limit{c.key, c.id};
    } else {   // top_p <= 0: the first position alone (its cumulative probability reaches it)
      lim = Limit{max_key, greedy};
    }
  }
  // the first position whose cumulative probability exceeds u (renormalised over the kept: u times the kept mass)
  const int drawn = select(sh, view, lim, kMassExceed, 0u, static_cast<double>(uniform[b]), prob, part_bits).id;
  const int chosen = drawn >= 0 ? drawn : greedy;   // no id with a mass (an infinite logit, every one -inf): the argmax
  if (threadIdx.x == 0) next_token[b] = chosen;
}

int prep_blocks(int V) { return (V + kPrepThreads * kPrepPerThread - 1) / (kPrepThreads * kPrepPerThread); }

size_t align_up(size_t n) { return (n + 255) & ~static_cast<size_t>(255); }

// Dynamic shared memory for the select kernel's staged keys: up to 8 bytes an id, within what this device lets one block
// opt into beside the kernel's static shared memory. The opt-in is set once a device (the first call of a session runs
// before ONNX Runtime captures a graph); 0 where it cannot be had (the kernel then reads the keys from global memory).
int staged_bytes(int V) {
  static std::mutex lock;
  static int limit[64];
  static bool known[64];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 0;
  std::lock_guard<std::mutex> guard(lock);
  if (!known[device]) {
    known[device] = true;
    int optin = 0;
    cudaFuncAttributes attr{};
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess &&
        cudaFuncGetAttributes(&attr, head_select) == cudaSuccess && optin > static_cast<int>(attr.sharedSizeBytes) + 1024) {
      const int avail = optin - static_cast<int>(attr.sharedSizeBytes) - 1024;
      if (cudaFuncSetAttribute(head_select, cudaFuncAttributeMaxDynamicSharedMemorySize, avail) == cudaSuccess) limit[device] = avail;
    }
  }
  const long long want = static_cast<long long>(V) * 8;
  return static_cast<int>(want < limit[device] ? want : limit[device]);
}

}  // namespace

extern "C" size_t omm_sampling_head_scratch_bytes(int B, int V) {
  if (B <= 0 || V <= 0) return 0;
  return align_up(static_cast<size_t>(B) * V * sizeof(uint32_t)) + align_up(static_cast<size_t>(B) * prep_blocks(V) * sizeof(unsigned long long));
}

extern "C" int omm_sampling_head(const void* logits, const void* params, const void* uniform, const void* rows, const void* seen,
                                 const void* mask, void* next_token, void* next_greedy, int B, int V, void* scratch, void* stream) {
  if (B <= 0 || V <= 0) return 0;
  if (V > (1 << 20) || B > 65535) return -1;   // the op refuses both first, naming them
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  uint32_t* keys = static_cast<uint32_t*>(scratch);
  auto* partial = reinterpret_cast<unsigned long long*>(static_cast<char*>(scratch) + align_up(static_cast<size_t>(B) * V * sizeof(uint32_t)));
  const int blocks = prep_blocks(V);
  head_prep<<<dim3(blocks, B), kPrepThreads, 0, s>>>(static_cast<const float*>(logits), static_cast<const float*>(params),
                                                     static_cast<const int64_t*>(rows), static_cast<const float*>(seen),
                                                     static_cast<const float*>(mask), keys, partial, B, V);
  const int staged = staged_bytes(V);
  head_select<<<B, kSelectThreads, staged, s>>>(keys, partial, blocks, static_cast<const float*>(params),
                                                static_cast<const float*>(uniform), static_cast<int64_t*>(next_token),
                                                static_cast<int64_t*>(next_greedy), V, staged);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : static_cast<int>(e);
}
