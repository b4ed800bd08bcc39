// The sampling head as two CUDA kernels (`omm.OmmSamplingHead`, issue 16 item 1 below stock kernels).
//
// The ONNX head (onnx-export/omm_export/sampling_head.py) expresses the next-token choice in ~70 standard ops around one
// TopK that sorts the whole vocabulary: on an H100 that is ~0.25 ms of a 7B decode step, greedy or not, because ONNX
// Runtime runs the whole head whatever outputs are bound. This does the same choice without sorting:
//
//   prep    grid (blocks, B): each element's logit after the guidance mix, the mask and the repetition penalty (the ONNX
//           head's float32 expressions, without contraction), stored as a 32-bit key that orders like the float, and
//           each block's largest (key, lowest id)
//   select  one block of 1024 threads per row: the greedy choice from the blocks' maxima; with a temperature, three
//           order-statistic searches over the keys, each a radix descent (11 + 11 + 10 bits) over histograms of count
//           or probability mass, then the tie among equal keys resolved in id order:
//             top-k   the k-th position of the descending order (count)
//             top-p   the first position whose cumulative probability reaches top_p (mass)
//             draw    the first position whose cumulative probability exceeds u (mass)
//
// The descending order is the host's: larger logit first, equal logits by lower id (every element of a tie has the same
// probability, so a position inside a tie follows from counts alone). Probabilities: exp((x - max) / T) in float32 from
// a float64 difference, summed in float64 (the host sums float64 exps in order; the ONNX head is float32 throughout), so
// a draw can differ from the host's only where u (a float32 input) or top_p falls within float32 rounding of a
// cumulative boundary; the masses are added with shared-memory atomics, so their rounding may vary between runs at
// float64's 1e-16. Fallbacks as the host: a top-p cut that rounding never reaches keeps all top-k ids; a draw past the
// kept mass takes the last kept id with a non-zero probability.
//
// C entry points (stream = the EP's compute stream; scratch from omm_sampling_head_scratch_bytes, on the device):
//   omm_sampling_head(logits [B, V] f32, params [5] f32, uniform [B] f32, rows [B, 2] i64, seen [B, V] f32, mask [V] f32,
//                     next_token [B] i64, next_token_greedy [B] i64, B, V, scratch, stream)
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

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

// Probability masses in fixed point: exp((x - max) / T) in [0, 1] (a float64 difference, a float32 exponential) times
// 2^scale_bits, rounded, with scale_bits = 53 - ceil(log2(V + 1)), so that every sum of them is an integer below 2^53, exact
// in a double too. Integer sums do not depend on the order they are added in, so the choice is the same at every run; a
// mass is within 2^-(scale_bits + 1) of its exponential (2^-39 at V = 32000), below the exponential's own float32 rounding.
struct Probability {
  float max_value;
  double inv_t;
  double scale;
  __device__ __forceinline__ double exponential(uint32_t k) const {   // NaN keys (0) have none
    if (k == 0u) return 0.0;
    const double d = (static_cast<double>(key_value(k)) - static_cast<double>(max_value)) * inv_t;
    return static_cast<double>(expf(static_cast<float>(d)));
  }
  __device__ __forceinline__ uint64_t operator()(uint32_t k) const { return __double2ull_rn(exponential(k) * scale); }
};

struct Chosen {
  uint32_t key;
  int id;
  double mass_through;   // fixed-point mass of every position up to and including the chosen one (mass modes)
};

// The element of the descending order (within `lim`) where the criterion is met:
//   kCount        the position `count` (0-based)
//   kMassReach    the first position whose inclusive cumulative mass is >= target
//   kMassExceed   the first position whose inclusive cumulative mass is > target
// A radix descent over the 32-bit keys (11 + 11 + 10 bits): each pass histograms the elements still in play by the next
// digit and keeps the bucket where the criterion flips. Counts are exact (32-bit shared atomics). Masses: with kExact, exact
// fixed-point sums (64-bit shared atomics, which the hardware runs as compare-and-swap loops: slow where many lanes hit one
// bucket); without, float32 sums (native shared atomics) that only steer the descent, and the element found is then verified
// with exact sums (one more pass, no atomics): `*verified` is false where float32 rounding steered it wrong, and the caller
// repeats the search with kExact. In the mass modes elements of zero mass are skipped (they cannot move a cumulative sum).
// Where rounding leaves no bucket meeting the criterion, the last bucket in play (with mass, in the mass modes) is taken.
// The descent's shared memory (one instance per block, 28 KB, shared by both instantiations below).
struct SelectShared {
  unsigned hc[kMaxBuckets];
  union {
    uint64_t hm[kMaxBuckets];   // kExact: fixed-point masses
    float hf[kMaxBuckets];      // otherwise: the exponentials in float32
  };
  int first_id[1 << 10];        // the last pass: each bucket's lowest id (a tie's first element)
  int chosen_digit, fallback_digit, found_id;
  unsigned chosen_above_c;
  double chosen_above_m;
};

template <bool kExact>
__device__ Chosen select_position(SelectShared& sh, const uint32_t* __restrict__ keys, int V, Limit lim, int mode, unsigned count,
                                  double target, Probability prob, bool* verified) {
  unsigned* hc = sh.hc;
  uint64_t* hm = sh.hm;
  float* hf = sh.hf;
  int* first_id = sh.first_id;
  int& chosen_digit = sh.chosen_digit;
  int& fallback_digit = sh.fallback_digit;
  unsigned& chosen_above_c = sh.chosen_above_c;
  double& chosen_above_m = sh.chosen_above_m;
  const bool mass = mode != kCount;
  uint32_t prefix = 0, prefix_mask = 0;
  unsigned above_c = 0;
  double above_m = 0.0;   // fixed-point units (exact below 2^53 with kExact; an estimate otherwise)
#pragma unroll 1
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0), nb = pass == 2 ? 1024 : 2048;
    for (int d = threadIdx.x; d < nb; d += blockDim.x) {
      hc[d] = 0u;
      if (kExact) hm[d] = 0ull; else hf[d] = 0.0f;
      if (pass == 2) first_id[d] = 0x7fffffff;
    }
    if (threadIdx.x == 0) { chosen_digit = -1; fallback_digit = nb; chosen_above_c = 0u; chosen_above_m = 0.0; }
    __syncthreads();
#pragma unroll 4
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const uint32_t k = keys[i];
      if ((k & prefix_mask) != prefix || !in_limit(k, i, lim)) continue;
      const int d = static_cast<int>((k >> shift) & static_cast<uint32_t>(nb - 1));
      if (mass) {
        if (kExact) {
          const uint64_t e = prob(k);
          if (e == 0) continue;
          atomicAdd(reinterpret_cast<unsigned long long*>(&hm[d]), static_cast<unsigned long long>(e));
        } else {
          const double ex = prob.exponential(k);
          if (__double2ull_rn(ex * prob.scale) == 0) continue;
          atomicAdd(&hf[d], static_cast<float>(ex));
        }
      }
      atomicAdd(&hc[d], 1u);
      if (pass == 2) atomicMin(&first_id[d], i);
    }
    __syncthreads();
    // buckets in descending digit order, `per` consecutive ones a thread
    const int per = (nb + blockDim.x - 1) / blockDim.x;
    auto bucket_mass = [&](int d) { return kExact ? static_cast<double>(hm[d]) : static_cast<double>(hf[d]) * prob.scale; };
    unsigned lc = 0;
    double lm = 0.0;
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (threadIdx.x * per + j);
      if (d >= 0) { lc += hc[d]; lm += bucket_mass(d); }
    }
    unsigned ec, tc;
    double em, tm;
    block_scan(lc, lm, &ec, &em, &tc, &tm);
    unsigned run_c = above_c + ec;
    double run_m = above_m + em;
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (threadIdx.x * per + j);
      if (d < 0) break;
      const unsigned c = hc[d];
      const double m = bucket_mass(d);
      bool hit;
      if (mode == kCount) hit = c > 0 && run_c <= count && count < run_c + c;
      else if (mode == kMassReach) hit = m > 0.0 && run_m < target && target <= run_m + m;
      else hit = m > 0.0 && run_m <= target && target < run_m + m;
      // the sums are monotone, but the scan adds in another order than a run along the buckets: where two neighbours
      // both meet the criterion by rounding, the earlier in the order (the higher digit) wins
      if (hit) atomicMax(&chosen_digit, d);
      if (mass ? m > 0.0 : c > 0) atomicMin(&fallback_digit, d);   // the last bucket in play, if none meets it
      run_c += c;
      run_m += m;
    }
    __syncthreads();
    const int pick = chosen_digit >= 0 ? chosen_digit : (fallback_digit < nb ? fallback_digit : -1);
    if (pick >= 0 && (nb - 1 - pick) / per == static_cast<int>(threadIdx.x)) {   // its owner: the sums before it
      unsigned bc = above_c + ec;
      double bm = above_m + em;
      for (int d = nb - 1 - threadIdx.x * per; d > pick; --d) { bc += hc[d]; bm += bucket_mass(d); }
      chosen_above_c = bc;
      chosen_above_m = bm;
    }
    __syncthreads();
    if (pick < 0) {   // nothing in play at all (cannot happen for a row with a number): the first position
      *verified = true;
      return Chosen{prefix, 0, 0.0};
    }
    above_c = chosen_above_c;
    above_m = chosen_above_m;
    prefix |= static_cast<uint32_t>(pick) << shift;
    prefix_mask |= static_cast<uint32_t>(nb - 1) << shift;
    __syncthreads();
  }
  // `prefix` is now the chosen key; its tie (every element of it has the same mass e) is ordered by id
  unsigned tie = hc[prefix & 1023u];
  const uint64_t e_fixed = mass ? prob(prefix) : 0ull;
  const double e = static_cast<double>(e_fixed);
  bool ok = true;
  if (mass && !kExact) {   // the exact sums before the key and of its tie (no atomics: per-thread sums, one scan)
    uint64_t a = 0;
    unsigned t = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const uint32_t k = keys[i];
      if (!in_limit(k, i, lim)) continue;
      if (k > prefix) a += prob(k);
      else if (k == prefix) ++t;
    }
    unsigned ec, tc;
    double em, tm;
    block_scan(t, static_cast<double>(a), &ec, &em, &tc, &tm);   // (a double sum of exact integers: exact below 2^53)
    above_m = tm;
    tie = tc;
    const double lo = above_m, hi = above_m + static_cast<double>(tie) * e;
    ok = tie > 0 && e > 0.0 && (mode == kMassReach ? (lo < target && target <= hi) : (lo <= target && target < hi));
  }
  *verified = ok;
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
  out.mass_through = above_m + static_cast<double>(m + 1) * e;
  if (m == 0 || !ok) {   // the tie's first id (most choices: a tie at the boundary is rare)
    out.id = first_id[prefix & 1023u];
    __syncthreads();
    return out;
  }
  // the m-th id (ascending) of the tie in play: contiguous id ranges per thread, counted, scanned, then found
  const int per_ids = (V + blockDim.x - 1) / blockDim.x;
  const int lo = threadIdx.x * per_ids, hi = min(V, lo + per_ids);
  unsigned mine = 0;
  for (int i = lo; i < hi; ++i) mine += (keys[i] == prefix && in_limit(prefix, i, lim)) ? 1u : 0u;
  unsigned ec, tc;
  double em, tm;
  block_scan(mine, 0.0, &ec, &em, &tc, &tm);
  int& found_id = sh.found_id;
  if (threadIdx.x == 0) found_id = -1;
  __syncthreads();
  if (static_cast<long long>(ec) <= m && m < static_cast<long long>(ec) + mine) {
    long long left = m - ec;
    for (int i = lo; i < hi; ++i)
      if (keys[i] == prefix && in_limit(prefix, i, lim) && left-- == 0) { found_id = i; break; }
  }
  __syncthreads();
  out.id = found_id < 0 ? 0 : found_id;
  __syncthreads();
  return out;
}

// select_position fast, then exact where the fast descent's float32 masses steered it wrong
__device__ Chosen select(SelectShared& sh, const uint32_t* __restrict__ keys, int V, Limit lim, int mode, unsigned count, double target,
                         Probability prob) {
  bool verified = true;
  if (mode == kCount) return select_position<true>(sh, keys, V, lim, mode, count, target, prob, &verified);
  const Chosen fast = select_position<false>(sh, keys, V, lim, mode, count, target, prob, &verified);
  if (verified) return fast;
  return select_position<true>(sh, keys, V, lim, mode, count, target, prob, &verified);
}

// Sum over the prefix in play of `prob` (mass) and of the elements with a non-zero probability (count).
__device__ void prefix_sums(const uint32_t* __restrict__ keys, int V, Limit lim, Probability prob, double* mass, unsigned* live) {
  uint64_t m = 0;
  unsigned c = 0;
#pragma unroll 4
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const uint32_t k = keys[i];
    if (!in_limit(k, i, lim)) continue;
    const uint64_t e = prob(k);
    m += e;
    c += e > 0 ? 1u : 0u;
  }
  unsigned ec, tc;
  double em, tm;
  block_scan(c, static_cast<double>(m), &ec, &em, &tc, &tm);   // integers: exact while the row's sum is below 2^53
  *mass = tm;
  *live = tc;
}

__global__ void __launch_bounds__(kSelectThreads) head_select(const uint32_t* __restrict__ all_keys,
                                                              const unsigned long long* __restrict__ partial, int blocks,
                                                              const float* __restrict__ params, const float* __restrict__ uniform,
                                                              int64_t* __restrict__ next_token, int64_t* __restrict__ next_greedy, int V) {
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
  Probability prob{key_value(max_key), 1.0 / static_cast<double>(temperature), ldexp(1.0, 53 - bits)};
  if (max_key == 0u) {   // every logit NaN: nothing to draw from; the greedy id, as the host's argmax would give some id
    if (threadIdx.x == 0) next_token[b] = greedy;
    return;
  }
  const float top_k = params[1], top_p = params[2];
  Limit lim{0u, V - 1};   // everything
  // top-k: positions i < k (k as the head compares: a float)
  if (top_k > 0.0f && top_k < static_cast<float>(V)) {
    const unsigned last = static_cast<unsigned>(ceilf(top_k)) - 1u;
    const Chosen c = select(sh, keys, V, lim, kCount, last, 0.0, prob);
    lim = Limit{c.key, c.id};
  }
  double kept_mass;
  unsigned live;
  prefix_sums(keys, V, lim, prob, &kept_mass, &live);
  double q = kept_mass;   // the masses are exact integers: a prefix's sum below is exactly what a pass over it would add
  if (top_p < 1.0f) {
    const double target = static_cast<double>(top_p) * kept_mass;
    if (target > 0.0) {   // top_p <= 0 keeps the first position alone (its cumulative probability reaches it)
      const Chosen c = select(sh, keys, V, lim, kMassReach, 0u, target, prob);
      if (c.mass_through >= target) { lim = Limit{c.key, c.id}; q = c.mass_through; }
      // else rounding never reaches top_p: every top-k id stays (the host's fallback)
    } else {
      lim = Limit{max_key, greedy};
      q = static_cast<double>(prob(max_key));
    }
  }
  const double u = static_cast<double>(uniform[b]) * q;
  int chosen;
  if (u < q) {
    chosen = select(sh, keys, V, lim, kMassExceed, 0u, u, prob).id;
  } else {   // rounding left u past the kept mass: the last kept id with a non-zero probability
    prefix_sums(keys, V, lim, prob, &q, &live);
    chosen = select(sh, keys, V, lim, kCount, live > 0 ? live - 1 : 0u, 0.0, prob).id;
  }
  if (threadIdx.x == 0) next_token[b] = chosen;
}

int prep_blocks(int V) { return (V + kPrepThreads * kPrepPerThread - 1) / (kPrepThreads * kPrepPerThread); }

size_t align_up(size_t n) { return (n + 255) & ~static_cast<size_t>(255); }

}  // namespace

extern "C" size_t omm_sampling_head_scratch_bytes(int B, int V) {
  if (B <= 0 || V <= 0) return 0;
  return align_up(static_cast<size_t>(B) * V * sizeof(uint32_t)) + align_up(static_cast<size_t>(B) * prep_blocks(V) * sizeof(unsigned long long));
}

extern "C" int omm_sampling_head(const void* logits, const void* params, const void* uniform, const void* rows, const void* seen,
                                 const void* mask, void* next_token, void* next_greedy, int B, int V, void* scratch, void* stream) {
  if (B <= 0 || V <= 0) return 0;
  if (V >= (1 << 30) || B > 65535) return -1;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  uint32_t* keys = static_cast<uint32_t*>(scratch);
  auto* partial = reinterpret_cast<unsigned long long*>(static_cast<char*>(scratch) + align_up(static_cast<size_t>(B) * V * sizeof(uint32_t)));
  const int blocks = prep_blocks(V);
  head_prep<<<dim3(blocks, B), kPrepThreads, 0, s>>>(static_cast<const float*>(logits), static_cast<const float*>(params),
                                                     static_cast<const int64_t*>(rows), static_cast<const float*>(seen),
                                                     static_cast<const float*>(mask), keys, partial, B, V);
  head_select<<<B, kSelectThreads, 0, s>>>(keys, partial, blocks, static_cast<const float*>(params), static_cast<const float*>(uniform),
                                           static_cast<int64_t*>(next_token), static_cast<int64_t*>(next_greedy), V);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : static_cast<int>(e);
}
