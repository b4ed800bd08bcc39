// Kernel timestamps without performance counters: a CUDA injection library (CUDA_INJECTION64_PATH; the driver calls
// InitializeInjection at cuInit) that records kernels, memcpys and memsets through CUPTI's Activity API, which needs
// no counter permission, one TSV line each. Graph replays give one record per kernel node, with graph and node ids.
// Env: KERNEL_TRACE_OUT (default kernel_trace.tsv; "%p" = pid), KERNEL_TRACE_KERNELS_ONLY=1, KERNEL_TRACE_MAX_RECORDS
// (default 5,000,000; the rest counted), KERNEL_TRACE_FLUSH_MS (> 0: flush completed records every N ms).
// Output: '#' lines are metadata (the second names the columns, the last "# end ..." counts written / skipped /
// dropped records), then start_ns end_ns duration_ns name grid_x..z block_x..z stream graph_id graph_node_id kind
// bytes correlation device; names demangled. Never fatal: if the file or CUPTI cannot be set up, one stderr line and
// the process runs untraced; no exception leaves a callback; lines are written as CUPTI hands buffers back (memory
// bounded by its buffers), the rest flushed at exit.
#include <cupti.h>
#include <cxxabi.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

// The activity record structs are versioned (CUpti_ActivityKernel10 in CUDA 13.0, 11 in 13.2, 12 in 13.3, ...); a
// newer version appends fields, so any version from 5 on has the fields read here. build.sh passes the newest one
// cupti_activity.h defines; without it, a guess from CUPTI_API_VERSION (130000 = 13.0).
#ifndef KT_KERNEL_RECORD
#if defined(CUPTI_API_VERSION) && CUPTI_API_VERSION >= 130300
#define KT_KERNEL_RECORD CUpti_ActivityKernel12
#elif defined(CUPTI_API_VERSION) && CUPTI_API_VERSION >= 130200
#define KT_KERNEL_RECORD CUpti_ActivityKernel11
#elif defined(CUPTI_API_VERSION) && CUPTI_API_VERSION >= 130000
#define KT_KERNEL_RECORD CUpti_ActivityKernel10
#else
#define KT_KERNEL_RECORD CUpti_ActivityKernel9
#endif
#endif
#ifndef KT_KERNELS_ONLY
#ifndef KT_MEMCPY_RECORD
#define KT_MEMCPY_RECORD CUpti_ActivityMemcpy6
#endif
#ifndef KT_MEMSET_RECORD
#define KT_MEMSET_RECORD CUpti_ActivityMemset4
#endif
#endif

#define KT_STR2(x) #x
#define KT_STR(x) KT_STR2(x)

namespace {

constexpr size_t kBufferBytes = 8u << 20;   // per CUPTI buffer: ~40k kernel records
constexpr size_t kAlign = 8;                // ACTIVITY_RECORD_ALIGNMENT
constexpr size_t kMaxName = 4096;           // longer (template-heavy) names are cut

std::mutex g_mu;                 // guards g_out and the counters
FILE* g_out = nullptr;
uint64_t g_written = 0, g_skipped = 0, g_dropped = 0, g_no_buffer = 0;
uint64_t g_max_records = 5000000;
std::atomic<bool> g_started{false};
std::atomic<bool> g_stop{false};
std::thread* g_flusher = nullptr;

void note(const char* what, CUptiResult r) {
  const char* s = nullptr;
  if (cuptiGetResultString(r, &s) != CUPTI_SUCCESS || s == nullptr) s = "unknown CUPTI error";
  std::fprintf(stderr, "kernel_trace: %s failed (%s); continuing untraced\n", what, s);
}

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  unsigned long long x = std::strtoull(v, &end, 10);
  return (end != nullptr && *end == '\0') ? (uint64_t)x : fallback;
}

// Demangled name (or the raw one), tabs and line breaks turned into spaces, cut at kMaxName.
std::string clean_name(const char* raw) {
  if (raw == nullptr) return "?";
  std::string name;
  int status = -1;
  char* d = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
  name = (status == 0 && d != nullptr) ? d : raw;
  std::free(d);
  if (name.size() > kMaxName) name.resize(kMaxName);
  for (char& c : name)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return name;
}

[[maybe_unused]] const char* copy_kind(unsigned k) {
  static const char* const names[] = {"?", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA", "AtoD", "DtoA", "DtoD", "HtoH", "PtoP"};
  return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

// One line; the caller holds g_mu and has checked g_out.
// The ids are taken as uint64_t whatever their width in this record version.
void write_line(uint64_t start, uint64_t end, const std::string& name, const int32_t grid[3], const int32_t block[3],
                uint64_t stream, uint64_t graph, uint64_t node, const char* kind, uint64_t bytes, uint64_t corr,
                uint64_t device) {
  if (g_written >= g_max_records) {
    ++g_skipped;
    return;
  }
  const unsigned long long dur = end >= start ? (unsigned long long)(end - start) : 0ull;
  std::fprintf(g_out, "%llu\t%llu\t%llu\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%llu\t%llu\t%llu\t%s\t%llu\t%llu\t%llu\n",
               (unsigned long long)start, (unsigned long long)end, dur, name.c_str(), (int)grid[0], (int)grid[1],
               (int)grid[2], (int)block[0], (int)block[1], (int)block[2], (unsigned long long)stream,
               (unsigned long long)graph, (unsigned long long)node, kind, (unsigned long long)bytes,
               (unsigned long long)corr, (unsigned long long)device);
  ++g_written;
}

void write_record(const CUpti_Activity* rec) {
  [[maybe_unused]] const int32_t none[3] = {0, 0, 0};
  switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      const auto* k = reinterpret_cast<const KT_KERNEL_RECORD*>(rec);
      const int32_t grid[3] = {k->gridX, k->gridY, k->gridZ};
      const int32_t block[3] = {k->blockX, k->blockY, k->blockZ};
      write_line(k->start, k->end, clean_name(k->name), grid, block, k->streamId, k->graphId, k->graphNodeId, "kernel", 0,
                 k->correlationId, k->deviceId);
      break;
    }
#ifndef KT_KERNELS_ONLY
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const auto* m = reinterpret_cast<const KT_MEMCPY_RECORD*>(rec);
      write_line(m->start, m->end, std::string("[memcpy ") + copy_kind(m->copyKind) + "]", none, none, m->streamId, 0, 0,
                 "memcpy", m->bytes, m->correlationId, m->deviceId);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const auto* m = reinterpret_cast<const KT_MEMSET_RECORD*>(rec);
      write_line(m->start, m->end, "[memset]", none, none, m->streamId, 0, 0, "memset", m->bytes, m->correlationId,
                 m->deviceId);
      break;
    }
#endif
    default:
      break;
  }
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  void* p = nullptr;
  if (posix_memalign(&p, kAlign, kBufferBytes) != 0) p = nullptr;
  *buffer = static_cast<uint8_t*>(p);
  *size = p != nullptr ? kBufferBytes : 0;   // a null buffer makes CUPTI drop records (counted as dropped)
  *max_records = 0;                          // as many as fit
  if (p == nullptr) {
    std::lock_guard<std::mutex> lock(g_mu);
    ++g_no_buffer;
  }
}

void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t* buffer, size_t /*size*/, size_t valid) {
  try {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_out != nullptr && buffer != nullptr && valid > 0) {
      CUpti_Activity* rec = nullptr;
      while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) write_record(rec);
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS) g_dropped += dropped;
  } catch (...) {
    // a bad_alloc from a name: the buffer's remaining records are lost, the process goes on
  }
  std::free(buffer);
}

void at_exit() {
  if (!g_started.load()) return;
  g_stop.store(true);
  if (g_flusher != nullptr && g_flusher->joinable()) g_flusher->join();
  // Forced: also the records of kernels still in flight (CUPTI hands every buffer back through buffer_completed).
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_out == nullptr) return;
  std::fprintf(g_out, "# end written=%llu skipped_over_cap=%llu dropped_by_cupti=%llu null_buffers=%llu\n",
               (unsigned long long)g_written, (unsigned long long)g_skipped, (unsigned long long)g_dropped,
               (unsigned long long)g_no_buffer);
  std::fclose(g_out);
  g_out = nullptr;
}

void flush_loop(uint64_t ms) {
  while (!g_stop.load()) {
    for (uint64_t waited = 0; waited < ms && !g_stop.load(); waited += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!g_stop.load()) cuptiActivityFlushAll(0);   // completed records only
  }
}

std::string out_path() {
  const char* v = std::getenv("KERNEL_TRACE_OUT");
  std::string path = (v != nullptr && *v != '\0') ? v : "kernel_trace.tsv";
  const size_t at = path.find("%p");
  if (at != std::string::npos) path.replace(at, 2, std::to_string((long)getpid()));
  return path;
}

void start() {
  const std::string path = out_path();
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "kernel_trace: cannot write %s (%s); continuing untraced\n", path.c_str(), std::strerror(errno));
    return;
  }
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);
  uint32_t version = 0;
  if (cuptiGetVersion(&version) != CUPTI_SUCCESS) version = 0;
  std::fprintf(f, "# kernel_trace pid=%ld cupti_api=%u record=%s\n", (long)getpid(), version, KT_STR(KT_KERNEL_RECORD));
  std::fprintf(f, "#start_ns\tend_ns\tduration_ns\tname\tgrid_x\tgrid_y\tgrid_z\tblock_x\tblock_y\tblock_z\tstream\t"
                  "graph_id\tgraph_node_id\tkind\tbytes\tcorrelation\tdevice\n");
  std::fflush(f);
  g_max_records = env_u64("KERNEL_TRACE_MAX_RECORDS", g_max_records);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_out = f;
  }
  auto give_up = [&](const char* what, CUptiResult r) {
    note(what, r);
    std::lock_guard<std::mutex> lock(g_mu);
    std::fprintf(g_out, "# error %s failed: untraced\n", what);
    std::fclose(g_out);
    g_out = nullptr;
  };
  CUptiResult r = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
  if (r != CUPTI_SUCCESS) return give_up("cuptiActivityRegisterCallbacks", r);
  r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  if (r != CUPTI_SUCCESS) return give_up("cuptiActivityEnable(CONCURRENT_KERNEL)", r);
#ifndef KT_KERNELS_ONLY
  if (env_u64("KERNEL_TRACE_KERNELS_ONLY", 0) == 0) {
    if ((r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY)) != CUPTI_SUCCESS) note("cuptiActivityEnable(MEMCPY)", r);
    if ((r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET)) != CUPTI_SUCCESS) note("cuptiActivityEnable(MEMSET)", r);
  }
#endif
  g_started.store(true);
  if (std::atexit(at_exit) != 0) std::fprintf(stderr, "kernel_trace: atexit failed; records after the last full buffer may be lost\n");
  const uint64_t ms = env_u64("KERNEL_TRACE_FLUSH_MS", 0);
  if (ms > 0) g_flusher = new std::thread(flush_loop, ms);
}

}  // namespace

// Called once by the CUDA driver (CUDA_INJECTION64_PATH). Always reports success: a tracing failure must not stop
// the traced process from using CUDA.
extern "C" __attribute__((visibility("default"))) int InitializeInjection(void) {
  static std::atomic<bool> once{false};
  if (once.exchange(true)) return 1;
  try {
    start();
  } catch (...) {
    std::fprintf(stderr, "kernel_trace: set-up threw; continuing untraced\n");
  }
  return 1;
}
