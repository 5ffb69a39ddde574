// The CUDA backend: the px_backend interface (src/backend.h) on an NVIDIA GPU.
//
// GEMMs go through cuBLAS (fp32, TF32 tensor cores, or bf16 tensor cores with fp32
// accumulation); LayerNorm/AdaLN, gates, SwiGLU and the token<->atom reductions are
// small kernels here; full attention is two strided-batched GEMMs around a fused
// bias+softmax kernel; the 32x128 local atom attention is one fused kernel per
// (trunk, head, sample). A context (struct Ctx) holds all the backend's state for one
// device, with no globals: its work runs on its own stream (two lanes when the model forks),
// only download() and sync() wait. Reductions never use atomics, so results are
// deterministic run to run and context to context.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#ifdef __linux__
#include <dlfcn.h>
#endif

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
#include "cuda/cuda_backend.h"
#include "error.h"
#include "pxdiff.h"
}
#include "cuda/attention_tc.h"
#include "cuda/gemm_lt.h"
#include "cuda/half_io.cuh"
#include "cuda/sampler_kernels.h"

namespace {

// ------------------------------------------------------------------ state --

constexpr int MAX_LANES = 2;

struct Ctx;

// One view of a context per precision: the px_backend a model or a test holds. The
// context (streams, cuBLAS handle, scratch, 16-bit weight copies) is shared by its views,
// so a model re-prepared at another precision keeps its weights on the device.
struct CudaBackend {
  px_backend base;  // first member: a px_backend* points here
  Ctx *ctx;
  int precision;
};

// A CUDA backend context: everything the backend keeps, for one device. Contexts are
// independent (own streams, handle, scratch, allocation tally), so several can live in one
// process, on one device or on several (tests/test_cuda_contexts.c).
struct Ctx {
  int device = 0;  // the CUDA device every operation of this context runs on
  char name[16] = "cuda";  // "cuda:N", every view's px_backend.name
  const char *op = "setup";  // the operation running now (named in error messages)
  char sticky_msg[256] = {};  // the message of the first kept failure (sticky)
  int init_status = 0;
  CudaBackend views[4] = {};  // indexed by enum px_precision (FP32..FP16)
  // `stream` is where work is queued now: `main` (everything ordered with the caller,
  // graph capture, sync) or, between lanes_fork and lanes_join, one of the lanes.
  cudaStream_t stream = nullptr, main = nullptr;
  cudaStream_t lane[MAX_LANES] = {};  // lane 0 is main
  cudaEvent_t ev_fork = nullptr, ev_join[MAX_LANES] = {};
  int cur_lane = 0, n_lanes = 1;
  cublasHandle_t blas = nullptr;
  int sticky = 0;  // first asynchronous failure (px_status), reported by status()
  std::mutex mu;   // guards the allocation map
  std::unordered_map<void *, size_t> sizes;
  int64_t in_use = 0, peak = 0;
  // Scratch reused across calls (attention logits, bf16 operand copies), one per lane.
  float *logits[MAX_LANES] = {};
  size_t logits_n[MAX_LANES] = {};
  uint16_t *xh[MAX_LANES] = {};  // GEMM inputs converted to bf16 / fp16
  size_t xh_n[MAX_LANES] = {};
  float *ftmp[MAX_LANES] = {};  // fp32 results of the 16-bit producers' fallbacks
  size_t ftmp_n[MAX_LANES] = {};
  // bf16 (BF16 precision) or fp16 (FP16 precision) copies of weight matrices, keyed by
  // the fp32 device pointer: a GEMM whose weight has one runs on those operands.
  // e: the GEMM's 16-bit input is stored times 2^-e (fp16_range.c), undone by alpha = 2^e.
  struct HalfW {
    uint16_t *p;
    int e;
  };
  std::unordered_map<const float *, HalfW> whalf;
  // Bumped whenever scratch that captured graphs point into is reallocated.
  uint64_t generation = 1;
  // Fixed cuBLAS/cuBLASLt workspaces, one per lane (required for graph capture; GEMMs
  // running concurrently must not share one).
  void *blas_ws[MAX_LANES] = {};
  size_t blas_ws_bytes = 32u << 20;
  // Read once at creation (A/B switches for the benchmarks).
  bool no_lt = false;              // PXDIFF_NO_CUBLASLT: cuBLAS instead of cuBLASLt epilogues
  size_t local_smem_configured = 0;  // k_attention_local's dynamic shared memory, set per device
  cudaEvent_t ev_ext = nullptr;      // orders work with the caller's stream
  cudaStream_t external = nullptr;   // the caller's stream (set_external_stream), or none
};

// Device memory of every context together, for the testing API's process-wide numbers
// (px_cuda_memory_in_use / _peak); each context keeps its own tally beside it.
std::atomic<int64_t> all_in_use{0}, all_peak{0};

Ctx &ctx_of(px_backend *b) { return *((CudaBackend *)b)->ctx; }

// Operations run on their context's device; the caller's current device (a PyTorch
// process's, for one) is restored on return. Nothing is switched when it already matches:
// the common one-device case costs one cudaGetDevice per operation.
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int dev) {
    int cur = 0;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != dev && cudaSetDevice(dev) == cudaSuccess) prev = cur;
  }
  ~DeviceGuard() {
    if (prev >= 0) cudaSetDevice(prev);
  }
};
// Opens every operation be_NAME: its context as g, on its device, named NAME in errors.
#define CTX(b)           \
  Ctx &g = ctx_of(b);    \
  g.op = __func__ + 3;   \
  DeviceGuard dev_guard_(g.device)

// Errors. Work is asynchronous, so a failure inside an operation is kept (code and message,
// the operation named) and status() reports the first one; a later failure under another
// operation's name never replaces it. An allocation failure is PX_ERR_NOMEM wherever it is
// met: in an operation's scratch, or as an asynchronous out-of-memory of the runtime.
int keep_failure(Ctx &g, int rc) {
  if (!g.sticky) {
    g.sticky = rc;
    snprintf(g.sticky_msg, sizeof g.sticky_msg, "%s", px_last_error());
  }
  return rc;
}
int fail_cuda(Ctx &g, cudaError_t e, const char *what) {
  if (e == cudaErrorMemoryAllocation)
    return keep_failure(g, px_fail(PX_ERR_NOMEM, "CUDA out of memory in %s (%s) on %s", g.op, what, g.name));
  return keep_failure(g, px_fail(PX_ERR_BACKEND, "CUDA error in %s (%s) on %s: %s", g.op, what, g.name,
                                 cudaGetErrorString(e)));
}
int fail_blas(Ctx &g, cublasStatus_t s, const char *what) {
  const int code = s == CUBLAS_STATUS_ALLOC_FAILED ? PX_ERR_NOMEM : PX_ERR_BACKEND;
  return keep_failure(g, px_fail(code, "cuBLAS error %d in %s (%s) on %s", (int)s, g.op, what, g.name));
}
#define CK(call)                                        \
  do {                                                  \
    cudaError_t e_ = (call);                            \
    if (e_ != cudaSuccess) fail_cuda(g, e_, #call);        \
  } while (0)
#define CKB(call)                                       \
  do {                                                  \
    cublasStatus_t s_ = (call);                         \
    if (s_ != CUBLAS_STATUS_SUCCESS) fail_blas(g, s_, #call); \
  } while (0)
#define LAUNCHED(name)                                  \
  do {                                                  \
    cudaError_t e_ = cudaGetLastError();                \
    if (e_ != cudaSuccess) fail_cuda(g, e_, name);         \
  } while (0)

// Why no CUDA device can be used, named by its real cause. The runtime answers a machine
// with no driver at all with "CUDA driver version is insufficient", which sends users to
// upgrade a driver they do not have: whether libcuda.so.1 loads tells the two apart.
int fail_no_device(cudaError_t e) {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);  // 0 when no driver is loaded
#ifdef __linux__
  if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) {
    void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!h)
      return px_fail(PX_ERR_BACKEND, "no CUDA driver found (libcuda.so.1 could not be loaded): no NVIDIA "
                     "driver is installed or visible here");
    dlclose(h);
  }
#endif
  if (e == cudaErrorInsufficientDriver)
    return px_fail(PX_ERR_BACKEND, "the NVIDIA driver supports CUDA %d.%d, older than the CUDA %d.%d runtime this "
                   "pxdiff was built with: update the driver", drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
  if (e == cudaSuccess || e == cudaErrorNoDevice)
    return px_fail(PX_ERR_BACKEND, "no CUDA device found (NVIDIA driver for CUDA %d.%d loaded, no GPU visible)",
                   drv / 1000, drv % 1000 / 10);
  return px_fail(PX_ERR_BACKEND, "no usable CUDA device: %s", cudaGetErrorString(e));
}

// Streams, cuBLAS handle and workspace of a new context on g.device (the current device).
int ctx_init(Ctx &g) {
  cudaError_t e;
  if ((e = cudaStreamCreateWithFlags(&g.main, cudaStreamNonBlocking)) != cudaSuccess) {
    g.init_status = fail_cuda(g, e, "cudaStreamCreate");
    return g.init_status;
  }
  g.stream = g.lane[0] = g.main;
  cublasStatus_t s = cublasCreate(&g.blas);
  if (s != CUBLAS_STATUS_SUCCESS) {
    g.init_status = fail_blas(g, s, "cublasCreate");
    return g.init_status;
  }
  cublasSetStream(g.blas, g.stream);
  // A fixed workspace keeps cuBLAS from allocating while a graph is being captured.
  if (cudaMalloc(&g.blas_ws[0], g.blas_ws_bytes) == cudaSuccess)
    cublasSetWorkspace(g.blas, g.blas_ws[0], g.blas_ws_bytes);
  return 0;
}

void *dev_alloc(Ctx &g, size_t bytes) {
  void *p = nullptr;
  if (bytes == 0) bytes = 256;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    // Reported here, naming the operation; cleared, so that the next launch check does
    // not report it again under another operation's name.
    cudaGetLastError();
    px_fail(PX_ERR_NOMEM, "CUDA out of memory in %s on %s allocating %zu MB: %s", g.op, g.name, bytes >> 20,
            cudaGetErrorString(e));
    return nullptr;
  }
  std::lock_guard<std::mutex> lk(g.mu);
  g.sizes[p] = bytes;
  g.in_use += (int64_t)bytes;
  if (g.in_use > g.peak) g.peak = g.in_use;
  const int64_t all = all_in_use += (int64_t)bytes;
  for (int64_t pk = all_peak.load(); all > pk && !all_peak.compare_exchange_weak(pk, all);) {
  }
  return p;
}

void dev_free(Ctx &g, void *p) {
  if (!p) return;
  // A weight matrix leaving takes its 16-bit copy along (a later buffer at the same
  // address must not find it).
  auto hw = g.whalf.find((const float *)p);
  if (hw != g.whalf.end()) {
    uint16_t *h = hw->second.p;
    g.whalf.erase(hw);
    g.generation++;
    if ((void *)h != p) dev_free(g, h);  // else p is the 16-bit copy itself (a dropped fp32 matrix)
  }
  {
    std::lock_guard<std::mutex> lk(g.mu);
    auto it = g.sizes.find(p);
    if (it != g.sizes.end()) {
      g.in_use -= (int64_t)it->second;
      all_in_use -= (int64_t)it->second;
      g.sizes.erase(it);
    }
  }
  cudaFree(p);
}

template <typename T>
T *grow(Ctx &g, T *&buf, size_t &have, size_t need) {
  if (need <= have && buf) return buf;
  for (int k = 0; k < MAX_LANES; k++)  // the old buffer may still be read by queued work
    if (g.lane[k]) cudaStreamSynchronize(g.lane[k]);
  dev_free(g, buf);
  g.generation++;
  buf = (T *)dev_alloc(g, need * sizeof(T));
  have = buf ? need : 0;
  if (!buf)  // the operation cannot run: reported as its out-of-memory, by status()
    keep_failure(g, px_fail(PX_ERR_NOMEM, "CUDA out of memory in %s on %s: %zu MB of scratch", g.op, g.name,
                            (need * sizeof(T)) >> 20));
  return buf;
}

// ------------------------------------------------------- kernel profile --
// PXDIFF_PROFILE=1: time every backend operation with CUDA events (eager runs only, i.e.
// also set PXDIFF_NO_GRAPHS=1) and print a table per operation at exit. For the
// kernel-level breakdown in docs/benchmarks.md; costs a little per launch.
struct ProfRec {
  const char *name;
  cudaEvent_t a, b;
};
struct Profiler {
  int on = -1;
  std::vector<ProfRec> pending;
  std::vector<std::pair<std::string, std::pair<double, long>>> totals;
  bool enabled() {
    if (on < 0) {
      const char *e = getenv("PXDIFF_PROFILE");
      on = e && *e && strcmp(e, "0") != 0;
      if (on) atexit([] {});
    }
    return on == 1;
  }
  void add(const char *name, float ms) {
    for (auto &t : totals)
      if (t.first == name) {
        t.second.first += ms;
        t.second.second++;
        return;
      }
    totals.push_back({name, {ms, 1}});
  }
  void flush() {
    for (auto &r : pending) {
      float ms = 0;
      cudaEventSynchronize(r.b);
      cudaEventElapsedTime(&ms, r.a, r.b);
      add(r.name, ms);
      cudaEventDestroy(r.a);
      cudaEventDestroy(r.b);
    }
    pending.clear();
  }
  ~Profiler() {
    if (on != 1) return;
    flush();
    double total = 0;
    for (auto &t : totals) total += t.second.first;
    fprintf(stderr, "pxdiff CUDA profile (all calls, ms):\n");
    for (auto &t : totals)
      fprintf(stderr, "  %-22s %10.2f ms %6.1f%% %8ld launches\n", t.first.c_str(), t.second.first,
              100.0 * t.second.first / (total > 0 ? total : 1), t.second.second);
  }
};
Profiler prof;
struct ProfScope {
  ProfRec rec{};
  bool live = false;
  cudaStream_t stream = nullptr;
  ProfScope(const char *name, cudaStream_t s) {
    if (!prof.enabled()) return;
    rec.name = name;
    stream = s;
    cudaEventCreate(&rec.a);
    cudaEventCreate(&rec.b);
    cudaEventRecord(rec.a, stream);
    live = true;
  }
  ~ProfScope() {
    if (!live) return;
    cudaEventRecord(rec.b, stream);
    prof.pending.push_back(rec);
    if (prof.pending.size() > 4096) prof.flush();
  }
};
#define PROF(name) ProfScope prof_scope_(name, g.stream)

// Grid for the row/column kernels: x covers the columns, y the rows (looped past 65535).
inline dim3 grid2d(int M, int C, int threads) {
  int bx = (C + threads - 1) / threads;
  return dim3(bx < 1 ? 1 : bx, M < 1 ? 1 : (M > 65535 ? 65535 : M));
}
inline int threads_for(int C) { return C >= 256 ? 256 : (C >= 128 ? 128 : 64); }

inline int blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return (int)(b > 65535 * 8 ? 65535 * 8 : (b < 1 ? 1 : b));
}

// ---------------------------------------------------------------- kernels --

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + __expf(-x)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__global__ void k_fill_bias(int M, int C, float *Y, int ldy, const float *bias, int accumulate) {
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *y = Y + (size_t)r * ldy;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] = accumulate ? y[c] + bias[c] : bias[c];
  }
}

// One warp per row: mean and variance in two passes over the row (fp32).
// mode 0: Y = LN(X) * w + b (w, b optional); mode 1: Y = LN(X) * G[r % g] + B[r % g].
__global__ void k_layernorm(int M, int C, const float *X, const float *w, const float *b,
                            const float *G, const float *B, int g_rows, float *Y) {
  int warps = blockDim.x / 32;
  int row = blockIdx.x * warps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= M) return;
  const float *x = X + (size_t)row * C;
  float s = 0;
  for (int c = lane; c < C; c += 32) s += x[c];
  const float mean = warp_sum(s) / C;
  float ss = 0;
  for (int c = lane; c < C; c += 32) {
    float d = x[c] - mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(warp_sum(ss) / C + 1e-5f);
  float *y = Y + (size_t)row * C;
  if (G) {
    const float *g = G + (size_t)(row % g_rows) * C, *bb = B + (size_t)(row % g_rows) * C;
    for (int c = lane; c < C; c += 32) y[c] = g[c] * ((x[c] - mean) * rstd) + bb[c];
  } else {
    for (int c = lane; c < C; c += 32) {
      float v = (x[c] - mean) * rstd;
      if (w) v *= w[c];
      if (b) v += b[c];
      y[c] = v;
    }
  }
}

// Register-resident row kernels for C <= 128 * NV with C % 4 == 0 (one warp per row,
// float4 loads, the row read once): LayerNorm / AdaLN, and the fused residual + AdaLN.
// mode 0: Y = LN(X) * w + b; mode 1: Y = LN(X) * G + B; mode 2: X += Gr * R, then mode 1
// on the updated X (written back). Y is stored as OT (store4): 16-bit for GEMM inputs.
template <int NV, int OT>
__global__ void k_row_ln(int M, int C, float *X, const float *w, const float *b, const float *G,
                         const float *B, int g_rows, const float *Gr, int gr_rows, const float *Rr,
                         void *Y, int mode) {
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  const int C4 = C / 4;
  for (int row = blockIdx.x * warps + threadIdx.x / 32; row < M; row += gridDim.x * warps) {
    float4 v[NV], ga[NV], ba[NV];
    float4 *x4 = reinterpret_cast<float4 *>(X + (size_t)row * C);
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int c = lane + 32 * k;
      if (c < C4) {
        v[k] = x4[c];
        // The output's scale and shift are loaded here, with the row, not after the two
        // reductions: a warp then has all its loads in flight at once (the token rows are
        // only ~12 warps per SM, too few to hide three dependent rounds of memory latency).
        if (mode != 0) {
          ga[k] = reinterpret_cast<const float4 *>(G + (size_t)(row % g_rows) * C)[c];
          ba[k] = reinterpret_cast<const float4 *>(B + (size_t)(row % g_rows) * C)[c];
        } else {
          ga[k] = w ? reinterpret_cast<const float4 *>(w)[c] : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
          ba[k] = b ? reinterpret_cast<const float4 *>(b)[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        if (mode == 2) {
          const float4 g = reinterpret_cast<const float4 *>(Gr + (size_t)(row % gr_rows) * C)[c];
          const float4 y = reinterpret_cast<const float4 *>(Rr + (size_t)row * C)[c];
          v[k].x += g.x * y.x;
          v[k].y += g.y * y.y;
          v[k].z += g.z * y.z;
          v[k].w += g.w * y.w;
          x4[c] = v[k];
        }
        s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
      }
    }
    const float mean = warp_sum(s) / C;
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int c = lane + 32 * k;
      if (c < C4) {
        const float a = v[k].x - mean, bb = v[k].y - mean, cc = v[k].z - mean, d = v[k].w - mean;
        ss += (a * a + bb * bb) + (cc * cc + d * d);
      }
    }
    const float rstd = rsqrtf(warp_sum(ss) / C + 1e-5f);
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int c = lane + 32 * k;
      if (c >= C4) continue;
      float4 o = make_float4((v[k].x - mean) * rstd, (v[k].y - mean) * rstd, (v[k].z - mean) * rstd,
                             (v[k].w - mean) * rstd);
      const float4 g = ga[k], bb = ba[k];
      if (mode != 0) {
        o = make_float4(g.x * o.x + bb.x, g.y * o.y + bb.y, g.z * o.z + bb.z, g.w * o.w + bb.w);
      } else {
        if (w) o = make_float4(o.x * g.x, o.y * g.y, o.z * g.z, o.w * g.w);
        if (b) o = make_float4(o.x + bb.x, o.y + bb.y, o.z + bb.z, o.w + bb.w);
      }
      store4<OT>(Y, (size_t)row * C + 4 * c, o);
    }
  }
}

template <int NV>
void launch_row_ln(Ctx &g, int ot, int blocks, int M, int C, float *X, const float *w, const float *b, const float *G,
                   const float *B, int g_rows, const float *Gr, int gr_rows, const float *Rr, void *Y, int mode) {
  if (ot == 0)
    k_row_ln<NV, 0><<<blocks, 256, 0, g.stream>>>(M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
  else if (ot == 1)
    k_row_ln<NV, 1><<<blocks, 256, 0, g.stream>>>(M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
  else
    k_row_ln<NV, 2><<<blocks, 256, 0, g.stream>>>(M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
}

// Launch k_row_ln when the row fits registers and is float4-aligned; false otherwise.
// ot: Y's type (0 float, 1 bf16, 2 fp16).
bool row_ln(Ctx &g, int M, int C, float *X, const float *w, const float *b, const float *G, const float *B,
            int g_rows, const float *Gr, int gr_rows, const float *Rr, void *Y, int mode, int ot = 0) {
  auto al = [](const void *p) { return p == nullptr || ((uintptr_t)p % 16) == 0; };
  if (C % 4 || C > 1024 || !al(X) || !al(w) || !al(b) || !al(G) || !al(B) || !al(Gr) || !al(Rr) || !al(Y))
    return false;
  const int nv = (C / 4 + 31) / 32;
  const int blocks = (M + 7) / 8 > 65535 * 4 ? 65535 * 4 : (M + 7) / 8;
  if (nv <= 1)
    launch_row_ln<1>(g, ot, blocks, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
  else if (nv <= 2)
    launch_row_ln<2>(g, ot, blocks, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
  else if (nv <= 4)
    launch_row_ln<4>(g, ot, blocks, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
  else if (nv <= 6)
    launch_row_ln<6>(g, ot, blocks, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
  else
    launch_row_ln<8>(g, ot, blocks, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, Y, mode);
  LAUNCHED("row_ln");
  return true;
}

__global__ void k_gated_residual(int M, int C, float *A, const float *G, int g_rows, const float *Y) {
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *a = A + (size_t)r * C;
    const float *g = G + (size_t)(r % g_rows) * C, *y = Y + (size_t)r * C;
    if ((C & 3) == 0) { /* float4 path (buffers are 16-byte aligned, rows C floats) */
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C / 4; c += gridDim.x * blockDim.x) {
        float4 av = reinterpret_cast<float4 *>(a)[c];
        const float4 gv = reinterpret_cast<const float4 *>(g)[c], yv = reinterpret_cast<const float4 *>(y)[c];
        av.x += gv.x * yv.x;
        av.y += gv.y * yv.y;
        av.z += gv.z * yv.z;
        av.w += gv.w * yv.w;
        reinterpret_cast<float4 *>(a)[c] = av;
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) a[c] += g[c] * y[c];
    }
  }
}

__global__ void k_sigmoid_mul(int M, int C, float *O, int ldo, const float *P, int ldp) {
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *o = O + (size_t)r * ldo;
    const float *p = P + (size_t)r * ldp;
    if (((C | ldo | ldp) & 3) == 0) {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C / 4; c += gridDim.x * blockDim.x) {
        float4 ov = reinterpret_cast<float4 *>(o)[c];
        const float4 pv = reinterpret_cast<const float4 *>(p)[c];
        ov.x *= sigmoidf_(pv.x);
        ov.y *= sigmoidf_(pv.y);
        ov.z *= sigmoidf_(pv.z);
        ov.w *= sigmoidf_(pv.w);
        reinterpret_cast<float4 *>(o)[c] = ov;
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) o[c] *= sigmoidf_(p[c]);
    }
  }
}

// Y = silu(X[:, :C]) * X[:, C:] * sc (sc a power of two: exact; 1 for fp32 outputs), X of
// type IT and Y of type OT (load4 / store4: 16-bit GEMM inputs and outputs); four values per
// thread when vec (C % 4 == 0 and aligned rows, checked by the caller).
template <int IT, int OT>
__global__ void k_swiglu(int M, int C, const void *X, void *Y, float sc, int vec) {
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const size_t xa = (size_t)r * 2 * C, xb = xa + C;
    if (vec) {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C / 4; c += gridDim.x * blockDim.x) {
        const float4 a = load4<IT>(X, xa + 4 * c), b = load4<IT>(X, xb + 4 * c);
        float4 y = make_float4(a.x * sigmoidf_(a.x) * b.x, a.y * sigmoidf_(a.y) * b.y, a.z * sigmoidf_(a.z) * b.z,
                               a.w * sigmoidf_(a.w) * b.w);
        if (OT) y = make_float4(y.x * sc, y.y * sc, y.z * sc, y.w * sc);
        store4<OT>(Y, (size_t)r * C + 4 * c, y);
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        const float a = load1<IT>(X, xa + c);
        float y = a * sigmoidf_(a) * load1<IT>(X, xb + c);
        if (OT) y *= sc;
        store1<OT>(Y, (size_t)r * C + c, y);
      }
    }
  }
}

// Launch k_swiglu for X of type it and Y of type ot (0 float, 1 bf16, 2 fp16).
void swiglu_typed(Ctx &g, int it, int ot, int M, int H, const void *X, void *Y, float sc) {
  const size_t xa = it ? 8 : 16, ya = ot ? 8 : 16;  // alignment the vector loads / stores need
  const int vec = H % 4 == 0 && (uintptr_t)X % xa == 0 && (uintptr_t)Y % ya == 0;
  const int cols = vec ? H / 4 : H;
  const dim3 grid = grid2d(M, cols, threads_for(cols));
  const int thr = threads_for(cols);
#define PX_SWIGLU(I, O) \
  if (it == I && ot == O) k_swiglu<I, O><<<grid, thr, 0, g.stream>>>(M, H, X, Y, sc, vec);
  PX_SWIGLU(0, 0)
  PX_SWIGLU(0, 1)
  PX_SWIGLU(0, 2)
  PX_SWIGLU(1, 1)
  PX_SWIGLU(2, 2)
#undef PX_SWIGLU
  LAUNCHED("swiglu");
}

__global__ void k_relu_rows(int N, float *Y, int ldy) {
  float *y = Y + (size_t)blockIdx.y * ldy;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < N) y[c] = fmaxf(y[c], 0.0f);
}

// Four values per thread when X is 16-byte aligned (the s-side gates: ~8M values per call).
__global__ void k_activation4(int64_t n4, float4 *X, int kind) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    float4 v = X[i];
    if (kind == PX_ACT_SIGMOID) {
      v.x = sigmoidf_(v.x); v.y = sigmoidf_(v.y); v.z = sigmoidf_(v.z); v.w = sigmoidf_(v.w);
    } else {
      v.x = fmaxf(v.x, 0.0f); v.y = fmaxf(v.y, 0.0f); v.z = fmaxf(v.z, 0.0f); v.w = fmaxf(v.w, 0.0f);
    }
    X[i] = v;
  }
}

__global__ void k_activation(int64_t n, float *X, int kind) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    X[i] = kind == PX_ACT_SIGMOID ? sigmoidf_(X[i]) : fmaxf(X[i], 0.0f);
}

__global__ void k_add_rows(int M, int C, float *Y, const float *A, int a_rows) {
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *y = Y + (size_t)r * C;
    const float *a = A + (size_t)(r % a_rows) * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] += a[c];
  }
}

// First atom index with token >= t (atoms of a token are contiguous and ascending).
__device__ int lower_bound_tok(const int64_t *a2t, int N, int64_t t) {
  int lo = 0, hi = N;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (a2t[mid] < t) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// grid (T, S): each block sums its token's atoms in atom order (deterministic).
__global__ void k_atoms_to_tokens(int N, int T, int C, const float *X, const int64_t *a2t,
                                  const float *inv_count, float *Y) {
  int t = blockIdx.x, s = blockIdx.y;
  __shared__ int range[2];
  if (threadIdx.x == 0) {
    range[0] = lower_bound_tok(a2t, N, t);
    range[1] = lower_bound_tok(a2t, N, t + 1);
  }
  __syncthreads();
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float acc = 0;
    for (int n = range[0]; n < range[1]; n++) acc += X[((size_t)s * N + n) * C + c];
    Y[((size_t)s * T + t) * C + c] = acc * inv_count[t];
  }
}

__global__ void k_tokens_to_atoms_add(int S, int N, int T, int C, int a_samples, const float *A,
                                      const int64_t *a2t, float *Y) {
  const int M = S * N;
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const int s = r / N, n = r % N;
    const float *a = A + ((size_t)(s % a_samples) * T + (size_t)a2t[n]) * C;
    float *y = Y + (size_t)r * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] += a[c];
  }
}

// Rows of T logits (one warp each): L = softmax(L + bias) in place; bias row = L row index
// modulo (H*T) (bias is [H, T, T], the logits [H, T, T] of one sample).
__global__ void k_softmax_bias(int rows, int T, float *L, const float *bias) {
  int warps = blockDim.x / 32;
  int row = blockIdx.x * warps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;
  float *l = L + (size_t)row * T;
  const float *b = bias + (size_t)row * T;
  float mx = -INFINITY;
  for (int j = lane; j < T; j += 32) {
    float v = l[j] + b[j];
    l[j] = v;
    mx = fmaxf(mx, v);
  }
  mx = warp_max(mx);
  float sum = 0;
  for (int j = lane; j < T; j += 32) {
    float e = __expf(l[j] - mx);
    l[j] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int j = lane; j < T; j += 32) l[j] *= inv;
}

// Local atom attention, one block per (trunk, head, sample), nk threads (one per key).
// Shared memory: K and V windows [nk][d+1], the trunk's queries [nq][d+1], P [nq][nk].
__global__ void k_attention_local(int N, int H, int d, int nq, int nk, const float *Q,
                                  const float *K, const float *V, int ld, const float *bias,
                                  float scale, float *O) {
  extern __shared__ float sm[];
  const int dp = d + 1;
  float *Ks = sm, *Vs = Ks + nk * dp, *Qs = Vs + nk * dp, *P = Qs + nq * dp;
  const int t = blockIdx.x, h = blockIdx.y, s = blockIdx.z, n_trunks = gridDim.x;
  const int q0 = t * nq, kstart = q0 - (nk - nq) / 2;
  const int C = H * d;
  const size_t base = (size_t)s * N;
  for (int idx = threadIdx.x; idx < nk * d; idx += blockDim.x) {
    int j = idx / d, c = idx % d, a = kstart + j;
    bool ok = a >= 0 && a < N;
    Ks[j * dp + c] = ok ? K[(base + a) * ld + h * d + c] : 0.0f;
    Vs[j * dp + c] = ok ? V[(base + a) * ld + h * d + c] : 0.0f;
  }
  for (int idx = threadIdx.x; idx < nq * d; idx += blockDim.x) {
    int i = idx / d, c = idx % d, a = q0 + i;
    Qs[i * dp + c] = a < N ? Q[(base + a) * ld + h * d + c] : 0.0f;
  }
  __syncthreads();
  const float *bt = bias + (((size_t)h * n_trunks + t) * nq) * nk;
  for (int j = threadIdx.x; j < nk; j += blockDim.x) {
    const int a = kstart + j;
    const bool ok = a >= 0 && a < N;
    for (int i = 0; i < nq; i++) {
      float acc = 0;
      for (int c = 0; c < d; c++) acc += Qs[i * dp + c] * Ks[j * dp + c];
      P[i * nk + j] = ok ? acc * scale + bt[(size_t)i * nk + j] : -INFINITY;
    }
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  for (int i = warp; i < nq; i += nw) {
    float *p = P + i * nk;
    float mx = -INFINITY;
    for (int j = lane; j < nk; j += 32) mx = fmaxf(mx, p[j]);
    mx = warp_max(mx);
    float sum = 0;
    for (int j = lane; j < nk; j += 32) {
      float e = __expf(p[j] - mx);  // exp(-inf) = 0 for masked keys
      p[j] = e;
      sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < nk; j += 32) p[j] *= inv;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < nq * d; idx += blockDim.x) {
    int i = idx / d, c = idx % d;
    if (q0 + i >= N) continue;
    float acc = 0;
    const float *p = P + i * nk;
    for (int j = 0; j < nk; j++) acc += p[j] * Vs[j * dp + c];
    O[(base + q0 + i) * C + h * d + c] = acc;
  }
}

// Fused attention: one block per (32-query tile, head, sample), 4 threads per query, each
// taking every 4th key of a 64-key tile staged in shared memory together with the tile
// of pair bias; online softmax in fp32 (exact arithmetic, no tensor cores); the four
// partial (max, sum, output) triples of a query are merged at the end. Full attention
// sweeps all L keys; local attention (atom transformers) the 128-key window of its
// 32-atom trunk starting 48 atoms before it, clipped to [0, N): masked keys never enter
// the softmax, which is what upstream's -1e10 gives (weight exactly 0).
constexpr int AQ = 32, ASPLIT = 4, AKT = 64;

template <int D>
__global__ void __launch_bounds__(AQ * ASPLIT)
k_attention_fused(int L, int H, int ld, const float *__restrict__ Q, const float *__restrict__ K,
                  const float *__restrict__ V, const float *__restrict__ bias, int local,
                  int n_trunks, float scale, float *__restrict__ O, const float *__restrict__ G,
                  int ldg) {
  constexpr int DP = D + 4;  // shared row stride: float4-aligned, splits land on other banks
  __shared__ __align__(16) float kv[2 * AKT * DP];
  __shared__ float Bs[AQ * (AKT + 1)];
  float *Ks = kv, *Vs = kv + AKT * DP;
  const int tile = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, qi = tid / ASPLIT, sp = tid % ASPLIT;
  const int q0 = tile * AQ, i = q0 + qi;
  const bool qvalid = i < L;
  const size_t base = (size_t)s * L;
  const int kstart = q0 - 48;  // local window origin (window position 0)
  const int kbeg = local ? max(kstart, 0) : 0;
  const int kend = local ? min(kstart + 128, L) : L;
  float q[D], o[D];
#pragma unroll
  for (int c = 0; c < D; c++) {
    q[c] = qvalid ? Q[(base + i) * ld + h * D + c] * scale : 0.0f;
    o[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int t0 = kbeg; t0 < kend; t0 += AKT) {
    const int nk = min(AKT, kend - t0);
    __syncthreads();
    for (int idx = tid; idx < nk * (D / 4); idx += AQ * ASPLIT) {
      const int j = idx / (D / 4), c4 = (idx % (D / 4)) * 4;
      const size_t g = (base + t0 + j) * ld + h * D + c4;
      *reinterpret_cast<float4 *>(Ks + j * DP + c4) = *reinterpret_cast<const float4 *>(K + g);
      *reinterpret_cast<float4 *>(Vs + j * DP + c4) = *reinterpret_cast<const float4 *>(V + g);
    }
    for (int idx = tid; idx < AQ * nk; idx += AQ * ASPLIT) {
      const int r = idx / nk, j = idx % nk, ii = q0 + r;
      float b = 0.0f;
      if (ii < L)
        b = local ? bias[(((size_t)h * n_trunks + tile) * AQ + r) * 128 + (t0 + j - kstart)]
                  : bias[((size_t)h * L + ii) * L + t0 + j];
      Bs[r * (AKT + 1) + j] = b;
    }
    __syncthreads();
    if (qvalid) {
      for (int jj = sp; jj < nk; jj += ASPLIT) {
        const float *kr = Ks + jj * DP;
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma unroll
        for (int c = 0; c < D; c += 4) {
          const float4 k4 = *reinterpret_cast<const float4 *>(kr + c);
          a0 += q[c] * k4.x;
          a1 += q[c + 1] * k4.y;
          a2 += q[c + 2] * k4.z;
          a3 += q[c + 3] * k4.w;
        }
        const float sc = (a0 + a1) + (a2 + a3) + Bs[qi * (AKT + 1) + jj];
        if (sc > m) {
          const float f = __expf(m - sc);  // 0 on the first key (m = -inf)
          l *= f;
#pragma unroll
          for (int c = 0; c < D; c++) o[c] *= f;
          m = sc;
        }
        const float p = __expf(sc - m);
        l += p;
        const float *vr = Vs + jj * DP;
#pragma unroll
        for (int c = 0; c < D; c += 4) {
          const float4 v4 = *reinterpret_cast<const float4 *>(vr + c);
          o[c] += p * v4.x;
          o[c + 1] += p * v4.y;
          o[c + 2] += p * v4.z;
          o[c + 3] += p * v4.w;
        }
      }
    }
  }
  // Merge the ASPLIT partial results of each query through shared memory.
  __syncthreads();
  float *part = kv;  // AQ*ASPLIT*(D+2) <= 2*AKT*DP floats for D in {16, 32, 48, 64}
  part[tid * (D + 2)] = m;
  part[tid * (D + 2) + 1] = l;
#pragma unroll
  for (int c = 0; c < D; c++) part[tid * (D + 2) + 2 + c] = o[c];
  __syncthreads();
  if (!qvalid) return;
  const float *pq = part + qi * ASPLIT * (D + 2);
  float M = -INFINITY;
#pragma unroll
  for (int k = 0; k < ASPLIT; k++) M = fmaxf(M, pq[k * (D + 2)]);
  float w[ASPLIT], lsum = 0.0f;
#pragma unroll
  for (int k = 0; k < ASPLIT; k++) {
    w[k] = __expf(pq[k * (D + 2)] - M);
    lsum += pq[k * (D + 2) + 1] * w[k];
  }
  const float inv = 1.0f / lsum;
  float *out = O + (base + i) * (size_t)(H * D) + h * D;
  for (int c = sp; c < D; c += ASPLIT) {
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < ASPLIT; k++) acc += pq[k * (D + 2) + 2 + c] * w[k];
    out[c] = G ? acc * inv * sigmoidf_(G[(base + i) * (size_t)ldg + h * D + c]) : acc * inv;
  }
}

// Launch the fused kernel for head widths it is compiled for; false otherwise.
bool attention_fused(Ctx &g, int S, int L, int H, int d, int ld, const float *Q, const float *K,
                     const float *V, const float *bias, int local, float scale, float *O,
                     const float *G, int ldg) {
  const int tiles = (L + AQ - 1) / AQ;
  // float4 loads need 16-byte aligned rows.
  if ((ld % 4) || ((uintptr_t)Q % 16) || ((uintptr_t)K % 16) || ((uintptr_t)V % 16)) return false;
  dim3 grid(tiles, H, S);
  switch (d) {
#define PX_ATT_CASE(DD)                                                                         \
  case DD:                                                                                     \
    k_attention_fused<DD><<<grid, AQ * ASPLIT, 0, g.stream>>>(L, H, ld, Q, K, V, bias, local,  \
                                                              tiles, scale, O, G, ldg);        \
    LAUNCHED("attention_fused");                                                               \
    return true;
    PX_ATT_CASE(16)
    PX_ATT_CASE(32)
    PX_ATT_CASE(48)
    PX_ATT_CASE(64)
#undef PX_ATT_CASE
    default:
      return false;
  }
}

// Y [M, K] (contiguous) = X [M, K] (row stride ldx) in bf16 (AB = 1) or fp16 (AB = 2);
// four values per thread when the rows allow 16-byte loads.
// Times sc (a power of two: exact), as GEMM inputs stored times 2^-e are.
template <int AB>
__global__ void k_to_half(int M, int K, const float *X, int ldx, uint16_t *Y, float sc) {
  const bool v4 = ((K | ldx) & 3) == 0 && ((uintptr_t)X & 15) == 0 && ((uintptr_t)Y & 7) == 0;
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const float *x = X + (size_t)r * ldx;
    const size_t y = (size_t)r * K;
    if (v4) {
      for (int c = (blockIdx.x * blockDim.x + threadIdx.x) * 4; c < K; c += gridDim.x * blockDim.x * 4) {
        const float4 v = *reinterpret_cast<const float4 *>(x + c);
        store4<AB>(Y, y + c, make_float4(v.x * sc, v.y * sc, v.z * sc, v.w * sc));
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < K; c += gridDim.x * blockDim.x)
        store1<AB>(Y, y + c, x[c] * sc);
    }
  }
}

// n floats to bf16 / fp16 (weights, once).
template <int AB>
__global__ void k_to_half_flat(int64_t n, const float *X, uint16_t *Y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Y[i] = to_half1<AB>(X[i]);
}

void to_half(Ctx &g, int ab, int M, int K, const float *X, int ldx, uint16_t *Y, int e = 0) {
  const int threads = 256;
  const dim3 grid((unsigned)((K + 4 * threads - 1) / (4 * threads)), (unsigned)(M < 65535 ? M : 65535));
  const float sc = ldexpf(1.0f, -e);
  if (ab == 1)
    k_to_half<1><<<grid, threads, 0, g.stream>>>(M, K, X, ldx, Y, sc);
  else
    k_to_half<2><<<grid, threads, 0, g.stream>>>(M, K, X, ldx, Y, sc);
  LAUNCHED("to_half");
}

// ------------------------------------------------------------- interface --

int precision_of(px_backend *b) { return ((CudaBackend *)b)->precision; }

void *be_alloc(px_backend *b, size_t bytes) {
  CTX(b);
  return dev_alloc(g, bytes);
}
void be_free(px_backend *b, void *p) {
  CTX(b);
  dev_free(g, p);
}
void be_upload(px_backend *b, void *dst, const void *src, size_t bytes) {
  CTX(b);
  if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g.stream));
}
void be_download(px_backend *b, void *dst, const void *src, size_t bytes) {
  CTX(b);
  if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g.stream));
  CK(cudaStreamSynchronize(g.stream));
}

void gemm_math_mode(Ctx &g, int precision) {
  cublasSetMathMode(g.blas, precision == PX_PRECISION_FP32
                                ? (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
                                : CUBLAS_TF32_TENSOR_OP_MATH);
}

// cuBLASLt with the bias (and ReLU) in the epilogue; 1 when it took the GEMM.
bool linear_lt(Ctx &g, int precision, const PxGemm &p) {
  if (g.no_lt) return false;
  void *ws = g.blas_ws[g.cur_lane];
  const int r = px_gemm_lt(g.stream, ws, ws ? g.blas_ws_bytes : 0, precision != PX_PRECISION_FP32, p);
  if (r < 0) fail_blas(g, CUBLAS_STATUS_EXECUTION_FAILED, "cublasLtMatmul");
  return r != 0;
}

void relu_rows(Ctx &g, int M, int N, float *Y, int ldy) {
  for (int r = 0; r < M; r += 65535) {  // rows may be strided (ldy > N)
    const int rows = M - r < 65535 ? M - r : 65535;
    k_relu_rows<<<dim3((N + 255) / 256, rows), 256, 0, g.stream>>>(N, Y + (size_t)r * ldy, ldy);
  }
  LAUNCHED("relu_rows");
}

// For the cuBLAS fallbacks (no epilogue): Y = bias (or Y += bias), then the GEMM with the
// returned beta accumulates onto it.
float prefill_bias(Ctx &g, int M, int N, float *Y, int ldy, const float *bias, int accumulate) {
  if (!bias) return accumulate ? 1.0f : 0.0f;
  k_fill_bias<<<grid2d(M, N, threads_for(N)), threads_for(N), 0, g.stream>>>(M, N, Y, ldy, bias, accumulate);
  LAUNCHED("fill_bias");
  return 1.0f;
}

// The 16-bit type of a precision's GEMM operands: 1 bf16, 2 fp16, 0 none.
int half_type(int prec) { return prec == PX_PRECISION_BF16 ? 1 : prec == PX_PRECISION_FP16 ? 2 : 0; }

// Y = 2^w.e X16 W16^T (+ bias) on 16-bit operands, fp32 accumulation; X16 [M, K] contiguous.
// yt: Y's type, 0 float or the operands' 16-bit type (then no bias, accumulate or ReLU).
void gemm_half(Ctx &g, int ab, int M, int N, int K, const uint16_t *xh, const Ctx::HalfW &w, const float *bias, void *Y,
               int ldy, int accumulate, int relu, int yt = 0) {
  const int prec = ab == 1 ? PX_PRECISION_BF16 : PX_PRECISION_FP16;
  if (linear_lt(g, prec, PxGemm{1, M, N, K, xh, K, 0, w.p, 0, bias, 0, relu, accumulate, (float *)Y, ldy, 0, ab, w.e,
                             yt}))
    return;
  // No cuBLASLt algorithm: cublasGemmEx after a bias fill, ReLU after.
  const float beta = yt ? 0.0f : prefill_bias(g, M, N, (float *)Y, ldy, bias, accumulate);
  const float alpha = ldexpf(1.0f, w.e);
  const cudaDataType_t t = ab == 1 ? CUDA_R_16BF : CUDA_R_16F;
  CKB(cublasGemmEx(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w.p, t, K, xh, t, K, &beta, Y,
                   yt ? t : CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (relu) relu_rows(g, M, N, (float *)Y, ldy);
}

// A GEMM on 16-bit operands (BF16 / FP16 precisions) when W has a 16-bit copy: X is
// converted into per-lane scratch, accumulation stays fp32. False: the caller runs it in fp32/tf32.
bool linear_half(Ctx &g, int prec, int M, int N, int K, const float *X, int ldx, const float *W, const float *bias,
                 float *Y, int ldy, int accumulate, int relu) {
  const int ab = half_type(prec);
  if (!ab) return false;
  auto it = g.whalf.find(W);
  if (it == g.whalf.end() || K < 16) return false;
  uint16_t *xh = grow(g, g.xh[g.cur_lane], g.xh_n[g.cur_lane], (size_t)M * K);
  if (!xh) return false;
  to_half(g, ab, M, K, X, ldx, xh, it->second.e);
  gemm_half(g, ab, M, N, K, xh, it->second, bias, Y, ldy, accumulate, relu);
  return true;
}

void linear_impl(px_backend *b, int M, int N, int K, const float *X, int ldx, const float *W,
                 const float *bias, float *Y, int ldy, int accumulate, int relu) {
  Ctx &g = ctx_of(b);
  if (M <= 0 || N <= 0) return;
  const int prec = precision_of(b);
  if (linear_half(g, prec, M, N, K, X, ldx, W, bias, Y, ldy, accumulate, relu)) return;
  // fp32 operands: exact fp32, or TF32 tensor cores for every reduced precision.
  const int fprec = prec == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32;
  if (linear_lt(g, fprec, PxGemm{1, M, N, K, X, ldx, 0, W, 0, bias, 0, relu, accumulate, Y, ldy, 0, 0})) return;
  const float beta = prefill_bias(g, M, N, Y, ldy, bias, accumulate);
  const float one = 1.0f;
  // Row-major Y = X W^T is column-major Y^T = W X^T: cuBLAS(op_T on W, op_N on X).
  gemm_math_mode(g, fprec);
  CKB(cublasSgemm(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, K, X, ldx, &beta, Y, ldy));
  if (relu) relu_rows(g, M, N, Y, ldy);
}

void be_linear(px_backend *b, int M, int N, int K, const float *X, int ldx, const float *W,
               const float *bias, float *Y, int ldy, int accumulate, int /*seg*/) {
  CTX(b);
  PROF("linear");
  linear_impl(b, M, N, K, X, ldx, W, bias, Y, ldy, accumulate, 0);
}

void be_linear_relu(px_backend *b, int M, int N, int K, const float *X, int ldx, const float *W,
                    const float *bias, float *Y, int ldy, int /*seg*/) {
  CTX(b);
  PROF("linear_relu");
  linear_impl(b, M, N, K, X, ldx, W, bias, Y, ldy, 0, 1);
}

__global__ void k_fill_bias_batched(int count, int M, int N, float *Y, int64_t sy, const float *bias,
                                    int64_t sb) {
  for (int r = blockIdx.y; r < count * M; r += gridDim.y) {
    const int i = r / M, row = r % M;
    float *y = Y + i * sy + (size_t)row * N;
    const float *bb = bias + i * sb;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < N; c += gridDim.x * blockDim.x) y[c] = bb[c];
  }
}

void be_linear_batched(px_backend *b, int count, int M, int N, int K, const float *X, int64_t sx,
                       const float *W, int64_t sw, const float *bias, int64_t sb, float *Y, int64_t sy,
                       int /*seg*/) {
  CTX(b);
  PROF("linear_batched");
  if (count <= 0 || M <= 0 || N <= 0) return;
  const int prec = precision_of(b) == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32;
  if (linear_lt(g, prec, PxGemm{count, M, N, K, X, K, sx, W, sw, bias, sb, 0, 0, Y, N, sy})) return;
  float beta = 0.0f;
  if (bias) {
    k_fill_bias_batched<<<grid2d(count * M, N, threads_for(N)), threads_for(N), 0, g.stream>>>(count, M, N, Y, sy, bias, sb);
    LAUNCHED("fill_bias_batched");
    beta = 1.0f;
  }
  const float one = 1.0f;
  gemm_math_mode(g, precision_of(b) == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32);
  CKB(cublasSgemmStridedBatched(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, K, sw, X, K, sx, &beta,
                                Y, N, sy, count));
}

void be_layernorm(px_backend *b, int M, int C, const float *X, const float *w, const float *bias,
                  float *Y) {
  CTX(b);
  PROF("layernorm");
  if (X != Y && row_ln(g, M, C, const_cast<float *>(X), w, bias, nullptr, nullptr, 1, nullptr, 1, nullptr, Y, 0)) return;
  if (X == Y && row_ln(g, M, C, Y, w, bias, nullptr, nullptr, 1, nullptr, 1, nullptr, Y, 0)) return;
  k_layernorm<<<(M + 7) / 8, 256, 0, g.stream>>>(M, C, X, w, bias, nullptr, nullptr, 1, Y);
  LAUNCHED("layernorm");
}
void be_adaln(px_backend *b, int M, int C, const float *X, const float *G, const float *B,
              int g_rows, float *Y) {
  CTX(b);
  PROF("adaln");
  if (row_ln(g, M, C, const_cast<float *>(X), nullptr, nullptr, G, B, g_rows, nullptr, 1, nullptr, Y, 1)) return;
  k_layernorm<<<(M + 7) / 8, 256, 0, g.stream>>>(M, C, X, nullptr, nullptr, G, B, g_rows, Y);
  LAUNCHED("adaln");
}
void be_gated_residual(px_backend *b, int M, int C, float *A, const float *G, int g_rows,
                       const float *Y) {
  CTX(b);
  PROF("gated_residual");
  const int cols = (C & 3) ? C : C / 4;
  k_gated_residual<<<grid2d(M, cols, threads_for(cols)), threads_for(cols), 0, g.stream>>>(M, C, A, G, g_rows, Y);
  LAUNCHED("gated_residual");
}
void be_residual_adaln(px_backend *b, int M, int C, float *A, const float *Gr, int gr_rows,
                       const float *Y, const float *Gn, const float *Bn, int gn_rows, float *An) {
  CTX(b);
  PROF("residual_adaln");
  if (row_ln(g, M, C, A, nullptr, nullptr, Gn, Bn, gn_rows, Gr, gr_rows, Y, An, 2)) return;
  be_gated_residual(b, M, C, A, Gr, gr_rows, Y);
  be_adaln(b, M, C, A, Gn, Bn, gn_rows, An);
}

void be_sigmoid_mul(px_backend *b, int M, int C, float *O, int ldo, const float *P, int ldp) {
  CTX(b);
  PROF("sigmoid_mul");
  const int cols = ((C | ldo | ldp) & 3) ? C : C / 4;
  k_sigmoid_mul<<<grid2d(M, cols, threads_for(cols)), threads_for(cols), 0, g.stream>>>(M, C, O, ldo, P, ldp);
  LAUNCHED("sigmoid_mul");
}
void be_swiglu(px_backend *b, int M, int H, const float *X, float *Y) {
  CTX(b);
  PROF("swiglu");
  swiglu_typed(g, 0, 0, M, H, X, Y, 1.0f);
}
void be_activation(px_backend *b, int64_t n, float *X, int kind) {
  CTX(b);
  PROF("activation");
  if (n > 0 && n % 4 == 0 && (uintptr_t)X % 16 == 0) {
    k_activation4<<<blocks_for(n / 4, 256), 256, 0, g.stream>>>(n / 4, reinterpret_cast<float4 *>(X), kind);
    LAUNCHED("activation4");
    return;
  }
  k_activation<<<blocks_for(n, 256), 256, 0, g.stream>>>(n, X, kind);
  LAUNCHED("activation");
}
void be_add_rows(px_backend *b, int M, int C, float *Y, const float *A, int a_rows) {
  CTX(b);
  PROF("add_rows");
  k_add_rows<<<grid2d(M, C, threads_for(C)), threads_for(C), 0, g.stream>>>(M, C, Y, A, a_rows);
  LAUNCHED("add_rows");
}
void be_atoms_to_tokens(px_backend *b, int S, int N, int T, int C, const float *X,
                        const int64_t *a2t, const float *inv_count, float *Y) {
  CTX(b);
  PROF("atoms_to_tokens");
  dim3 grid(T, S);
  k_atoms_to_tokens<<<grid, 256, 0, g.stream>>>(N, T, C, X, a2t, inv_count, Y);
  LAUNCHED("atoms_to_tokens");
}
void be_tokens_to_atoms_add(px_backend *b, int S, int N, int T, int C, int a_samples,
                            const float *A, const int64_t *a2t, float *Y) {
  CTX(b);
  PROF("tokens_to_atoms_add");
  k_tokens_to_atoms_add<<<grid2d(S * N, C, threads_for(C)), threads_for(C), 0, g.stream>>>(S, N, T, C, a_samples, A, a2t, Y);
  LAUNCHED("tokens_to_atoms_add");
}

void be_sigmoid_mul(px_backend *, int M, int C, float *O, int ldo, const float *P, int ldp);

void be_attention_full(px_backend *b, int S, int T, int H, int d, const float *Q, const float *K,
                       const float *V, int ld, const float *bias, float scale, float *O,
                       const float *G, int ldg) {
  CTX(b);
  PROF("attention_full");
  if (precision_of(b) != PX_PRECISION_FP32 &&
      px_attention_tc(g.stream, S, T, H, d, ld, Q, K, V, bias, 0, 0, 0, scale, O, G, ldg, 0)) {
    LAUNCHED("attention_tc");  // tensor cores (tf32) for the reduced precisions
    return;
  }
  if (!getenv("PXDIFF_CUBLAS_ATTENTION") && attention_fused(g, S, T, H, d, ld, Q, K, V, bias, 0, scale, O, G, ldg)) return;
  const size_t per = (size_t)H * T * T;
  float *L = grow(g, g.logits[g.cur_lane], g.logits_n[g.cur_lane], per);
  if (!L) return;
  gemm_math_mode(g, precision_of(b));
  const float zero = 0.0f, one = 1.0f;
  const int C = H * d;
  for (int s = 0; s < S; s++) {
    const size_t off = (size_t)s * T * ld;
    // L[h] (row-major [T_q, T_k]) = scale * Q_h K_h^T, as column-major L^T = K Q^T.
    CKB(cublasSgemmStridedBatched(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, d, &scale, K + off, ld, d,
                                  Q + off, ld, d, &zero, L, T, (long long)T * T, H));
    k_softmax_bias<<<(H * T + 7) / 8, 256, 0, g.stream>>>(H * T, T, L, bias);
    LAUNCHED("softmax_bias");
    // O_h (row-major [T, d], row stride C) = P_h V_h, as column-major O^T = V^T P^T.
    CKB(cublasSgemmStridedBatched(g.blas, CUBLAS_OP_N, CUBLAS_OP_N, d, T, T, &one, V + off, ld, d,
                                  L, T, (long long)T * T, &zero, O + (size_t)s * T * C, C, d, H));
  }
  if (G) be_sigmoid_mul(b, S * T, C, O, C, G, ldg);
}

// ------------------------------------------- 16-bit GEMM inputs (x16) --
// At fp16 / bf16 the token blocks' GEMM inputs are written in 16 bits by the kernels that
// produce them (AdaLN, residual + AdaLN, attention, SwiGLU), so that no conversion pass
// reads them back in fp32 before each GEMM. Each producer has a fallback for shapes its
// fast kernel does not take: the fp32 result into scratch, then converted.

int be_x16_weight(px_backend *b, const float *W, int K) {
  CTX(b);
  if (!half_type(precision_of(b)) || K < 16) return -1;
  auto it = g.whalf.find(W);
  return it == g.whalf.end() ? -1 : it->second.e;
}

void be_linear_x16(px_backend *b, int M, int N, int K, const void *X16, const float *W, const float *bias,
                   void *Y, int ldy, int y16) {
  CTX(b);
  PROF("linear_x16");
  if (M <= 0 || N <= 0) return;
  const int ab = half_type(precision_of(b));
  auto it = g.whalf.find(W);
  if (!ab || it == g.whalf.end() || (y16 && bias)) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "internal: linear_x16 without a 16-bit weight, or a 16-bit Y with a bias"));
    return;
  }
  gemm_half(g, ab, M, N, K, (const uint16_t *)X16, it->second, bias, Y, ldy, 0, 0, y16 ? ab : 0);
}

float *f32_scratch(Ctx &g, size_t n) { return grow(g, g.ftmp[g.cur_lane], g.ftmp_n[g.cur_lane], n); }

void be_adaln_x16(px_backend *b, int M, int C, const float *X, const float *G, const float *B, int g_rows,
                  void *Y16) {
  CTX(b);
  PROF("adaln_x16");
  const int ab = half_type(precision_of(b));
  if (row_ln(g, M, C, const_cast<float *>(X), nullptr, nullptr, G, B, g_rows, nullptr, 1, nullptr, Y16, 1, ab)) return;
  float *t = f32_scratch(g, (size_t)M * C);
  if (!t) return;
  be_adaln(b, M, C, X, G, B, g_rows, t);
  to_half(g, ab, M, C, t, C, (uint16_t *)Y16);
}

void be_residual_adaln_x16(px_backend *b, int M, int C, float *A, const float *Gr, int gr_rows, const float *Y,
                           const float *Gn, const float *Bn, int gn_rows, void *An16) {
  CTX(b);
  PROF("residual_adaln_x16");
  if (row_ln(g, M, C, A, nullptr, nullptr, Gn, Bn, gn_rows, Gr, gr_rows, Y, An16, 2, half_type(precision_of(b))))
    return;
  be_gated_residual(b, M, C, A, Gr, gr_rows, Y);
  be_adaln_x16(b, M, C, A, Gn, Bn, gn_rows, An16);
}

void be_swiglu_x16(px_backend *b, int M, int H, const void *X, int x16, void *Y16, int e) {
  CTX(b);
  PROF("swiglu_x16");
  const int ab = half_type(precision_of(b));
  swiglu_typed(g, x16 ? ab : 0, ab, M, H, X, Y16, ldexpf(1.0f, -e));
}

void be_attention_full_x16(px_backend *b, int S, int T, int H, int d, const float *Q, const float *K,
                           const float *V, int ld, const float *bias, float scale, void *O16, const float *G,
                           int ldg) {
  CTX(b);
  PROF("attention_full_x16");
  const int ab = half_type(precision_of(b));
  if (px_attention_tc(g.stream, S, T, H, d, ld, Q, K, V, bias, 0, 0, 0, scale, O16, G, ldg, ab)) {
    LAUNCHED("attention_tc_x16");
    return;
  }
  float *t = f32_scratch(g, (size_t)S * T * H * d);
  if (!t) return;
  be_attention_full(b, S, T, H, d, Q, K, V, ld, bias, scale, t, G, ldg);
  to_half(g, ab, S * T, H * d, t, H * d, (uint16_t *)O16);
}

void be_attention_local(px_backend *b, int S, int N, int H, int d, int nq, int nk, const float *Q,
                        const float *K, const float *V, int ld, const float *bias, float scale,
                        float *O, const float *G, int ldg) {
  CTX(b);
  PROF("attention_local");
  if (precision_of(b) != PX_PRECISION_FP32 &&
      px_attention_tc(g.stream, S, N, H, d, ld, Q, K, V, bias, 1, nq, nk, scale, O, G, ldg, 0)) {
    LAUNCHED("attention_tc_local");
    return;
  }
  if (nq == AQ && nk == 128 && attention_fused(g, S, N, H, d, ld, Q, K, V, bias, 1, scale, O, G, ldg)) return;
  const int n_trunks = (N + nq - 1) / nq;
  const size_t smem = sizeof(float) * ((size_t)(2 * nk + nq) * (d + 1) + (size_t)nq * nk);
  if (smem > 48 * 1024 && smem > g.local_smem_configured) {
    CK(cudaFuncSetAttribute(k_attention_local, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    g.local_smem_configured = smem;
  }
  dim3 grid(n_trunks, H, S);
  k_attention_local<<<grid, nk, smem, g.stream>>>(N, H, d, nq, nk, Q, K, V, ld, bias, scale, O);
  LAUNCHED("attention_local");
  if (G) be_sigmoid_mul(b, S * N, H * d, O, H * d, G, ldg);
}

void *be_host_alloc(px_backend *b, size_t bytes) {
  CTX(b);
  void *p = nullptr;
  if (cudaMallocHost(&p, bytes ? bytes : 64) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}
void be_host_free(px_backend *b, void *p) {
  CTX(b);
  if (p) cudaFreeHost(p);
}
void be_download_async(px_backend *b, void *dst, const void *src, size_t bytes) {
  CTX(b);
  if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g.stream));
}
void be_sync(px_backend *b) {
  CTX(b);
  CK(cudaStreamSynchronize(g.main));
}

// Lanes: the model runs independent halves of a batch on two streams, so that one half's
// kernels fill the gaps and tails of the other's (launch gaps, the last partial wave of a
// GEMM, latency-bound attention). Fork and join are event edges, so a captured graph gets
// two parallel branches.
int be_lanes_fork(px_backend *b, int n) {
  CTX(b);
  if (n > MAX_LANES) n = MAX_LANES;
  if (n < 2) return 1;
  for (int k = 1; k < n; k++) {
    if (!g.lane[k] && cudaStreamCreateWithFlags(&g.lane[k], cudaStreamNonBlocking) != cudaSuccess) {
      g.lane[k] = nullptr;
      cudaGetLastError();
      return 1;
    }
    if (!g.ev_join[k] && cudaEventCreateWithFlags(&g.ev_join[k], cudaEventDisableTiming) != cudaSuccess) {
      g.ev_join[k] = nullptr;
      cudaGetLastError();
      return 1;
    }
    if (!g.blas_ws[k] && cudaMalloc(&g.blas_ws[k], g.blas_ws_bytes) != cudaSuccess) {
      g.blas_ws[k] = nullptr;
      cudaGetLastError();
      return 1;
    }
  }
  if (!g.ev_fork && cudaEventCreateWithFlags(&g.ev_fork, cudaEventDisableTiming) != cudaSuccess) {
    g.ev_fork = nullptr;
    cudaGetLastError();
    return 1;
  }
  CK(cudaEventRecord(g.ev_fork, g.main));
  for (int k = 1; k < n; k++) CK(cudaStreamWaitEvent(g.lane[k], g.ev_fork, 0));
  g.n_lanes = n;
  return n;
}
void be_lane_select(px_backend *b, int k) {
  CTX(b);
  if (k < 0 || k >= g.n_lanes) k = 0;
  g.cur_lane = k;
  g.stream = g.lane[k];
  cublasSetStream(g.blas, g.stream);
  if (g.blas_ws[k]) cublasSetWorkspace(g.blas, g.blas_ws[k], g.blas_ws_bytes);
}
void be_lanes_join(px_backend *b) {
  CTX(b);
  for (int k = 1; k < g.n_lanes; k++) {
    CK(cudaEventRecord(g.ev_join[k], g.lane[k]));
    CK(cudaStreamWaitEvent(g.main, g.ev_join[k], 0));
  }
  g.n_lanes = 1;
  be_lane_select(b, 0);
}

void be_sampler_init(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, float t0, float *x) {
  CTX(b);
  PROF("sampler_init");
  CK(px_sampler_init_gpu(g.stream, S, N, seed, sample0, t0, x));
}
void be_sampler_noise(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, uint32_t step, float sd, float *x,
                      float *x_noisy) {
  CTX(b);
  PROF("sampler_noise");
  CK(px_sampler_noise_gpu(g.stream, S, N, seed, sample0, step, sd, x, x_noisy));
}
void be_sampler_euler(px_backend *b, int64_t n, const float *x_noisy, const float *x_den, float t_hat,
                      float step_size, float *x) {
  CTX(b);
  PROF("sampler_euler");
  CK(px_sampler_euler_gpu(g.stream, n, x_noisy, x_den, t_hat, step_size, x));
}

int be_capture_begin(px_backend *b) {
  CTX(b);
  cudaError_t e = cudaStreamBeginCapture(g.main, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return 0;
}
void *be_capture_end(px_backend *b) {
  CTX(b);
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(g.main, &graph);
  if (e != cudaSuccess || !graph || g.sticky) {
    // A capture that failed leaves no work queued: the caller runs the call directly.
    cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    g.sticky = 0;
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return (void *)exec;
}
int be_graph_launch(px_backend *b, void *graph) {
  CTX(b);
  cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)graph, g.main);
  if (e != cudaSuccess) return fail_cuda(g, e, "cudaGraphLaunch");
  return 0;
}
void be_graph_free(px_backend *b, void *graph) {
  CTX(b);
  if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}
uint64_t be_generation(px_backend *b) { return ctx_of(b).generation; }

__global__ void k_edm(int mode, int S, int N, const float *x, const float *t, int t_stride, float sigma,
                      const float *rup, float *out) {
  const int64_t total = (int64_t)S * N * 3;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float th = t[i / (3 * (int64_t)N) * t_stride], sr = th / sigma;
    if (mode == 0) {
      out[i] = x[i] / sqrtf(sigma * sigma + th * th);
    } else {
      out[i] = 1.0f / (1.0f + sr * sr) * x[i] + th / sqrtf(1.0f + sr * sr) * rup[i];
    }
  }
}
__global__ void k_fourier(int S, int nf, const float *t, float sigma, const float *w, const float *b,
                          float *F) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < S * nf; i += gridDim.x * blockDim.x) {
    const int u = i / nf, f = i % nf;
    const float tau = logf(t[u] / sigma) / 4.0f;
    F[i] = cosf(2.0f * 3.14159265358979323846f * (tau * w[f] + b[f]));
  }
}
__global__ void k_rows_plus_vec(int S, int T, int C, const float *A, const float *v, float *Y) {
  const int M = S * T;
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const float *a = A + (size_t)(r % T) * C, *vv = v + (size_t)(r / T) * C;
    float *y = Y + (size_t)r * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] = a[c] + vv[c];
  }
}
void be_fourier(px_backend *b, int S, int nf, const float *t, float sigma, const float *w, const float *bias,
                float *F) {
  CTX(b);
  k_fourier<<<blocks_for((int64_t)S * nf, 256), 256, 0, g.stream>>>(S, nf, t, sigma, w, bias, F);
  LAUNCHED("fourier");
}
void be_rows_plus_vec(px_backend *b, int S, int T, int C, const float *A, const float *v, float *Y) {
  CTX(b);
  k_rows_plus_vec<<<grid2d(S * T, C, threads_for(C)), threads_for(C), 0, g.stream>>>(S, T, C, A, v, Y);
  LAUNCHED("rows_plus_vec");
}
void be_copy(px_backend *b, void *dst, const void *src, size_t bytes) {
  CTX(b);
  if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g.stream));
}
void be_edm(px_backend *b, int mode, int S, int N, const float *x, const float *t, int t_stride, float sigma,
            const float *rup, float *out) {
  CTX(b);
  PROF("edm");
  k_edm<<<blocks_for((int64_t)S * N * 3, 256), 256, 0, g.stream>>>(mode, S, N, x, t, t_stride, sigma, rup, out);
  LAUNCHED("edm");
}
void be_set_external_stream(px_backend *b, void *stream) { ctx_of(b).external = (cudaStream_t)stream; }
int be_join_external(px_backend *b, int direction) {
  CTX(b);
  if (!g.external) return 0;
  if (!g.ev_ext) CK(cudaEventCreateWithFlags(&g.ev_ext, cudaEventDisableTiming));
  cudaEvent_t ev = g.ev_ext;
  cudaStream_t ext = g.external;
  if (direction == 0) {
    CK(cudaEventRecord(ev, ext));
    CK(cudaStreamWaitEvent(g.main, ev, 0));
  } else {
    CK(cudaEventRecord(ev, g.main));
    CK(cudaStreamWaitEvent(ext, ev, 0));
  }
  return 1;
}

int be_status(px_backend *b) {
  CTX(b);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail_cuda(g, e, "asynchronous work");
  int rc = g.sticky;
  if (rc) px_fail(rc, "%s", g.sticky_msg);  // the first failure's own message
  g.sticky = 0;
  return rc;
}

int be_weight_x16_make(px_backend *b, const float *W, size_t n, int e);
float *be_weight_drop_fp32(px_backend *b, float *W);
px_backend *be_at_precision(px_backend *b, int precision);

CudaBackend make_backend(Ctx *ctx, int precision) {
  CudaBackend c;
  std::memset(&c, 0, sizeof c);
  c.base.name = ctx->name;
  c.base.device_memory = 1;
  c.base.set_external_stream = be_set_external_stream;
  c.base.at_precision = be_at_precision;
  c.base.weight_x16_make = be_weight_x16_make;
  c.base.weight_drop_fp32 = be_weight_drop_fp32;
  c.base.alloc = be_alloc;
  c.base.free = be_free;
  c.base.upload = be_upload;
  c.base.download = be_download;
  c.base.linear = be_linear;
  c.base.linear_batched = be_linear_batched;
  c.base.layernorm = be_layernorm;
  c.base.adaln = be_adaln;
  c.base.gated_residual = be_gated_residual;
  c.base.residual_adaln = be_residual_adaln;
  c.base.sigmoid_mul = be_sigmoid_mul;
  c.base.swiglu = be_swiglu;
  c.base.attention_full = be_attention_full;
  c.base.attention_local = be_attention_local;
  c.base.activation = be_activation;
  c.base.linear_relu = be_linear_relu;
  c.base.atoms_to_tokens = be_atoms_to_tokens;
  c.base.tokens_to_atoms_add = be_tokens_to_atoms_add;
  c.base.status = be_status;
  c.base.add_rows = be_add_rows;
  c.base.copy = be_copy;
  c.base.fourier = be_fourier;
  c.base.rows_plus_vec = be_rows_plus_vec;
  c.base.edm = be_edm;
  c.base.join_external = be_join_external;
  c.base.host_alloc = be_host_alloc;
  c.base.host_free = be_host_free;
  c.base.download_async = be_download_async;
  c.base.sync = be_sync;
  c.base.lanes_fork = be_lanes_fork;
  c.base.lane_select = be_lane_select;
  c.base.lanes_join = be_lanes_join;
  c.base.sampler_init = be_sampler_init;
  c.base.sampler_noise = be_sampler_noise;
  c.base.sampler_euler = be_sampler_euler;
  c.base.capture_begin = be_capture_begin;
  c.base.capture_end = be_capture_end;
  c.base.graph_launch = be_graph_launch;
  c.base.graph_free = be_graph_free;
  c.base.generation = be_generation;
  if (half_type(precision)) {
    c.base.x16_weight = be_x16_weight;
    c.base.linear_x16 = be_linear_x16;
    c.base.adaln_x16 = be_adaln_x16;
    c.base.residual_adaln_x16 = be_residual_adaln_x16;
    c.base.attention_full_x16 = be_attention_full_x16;
    c.base.swiglu_x16 = be_swiglu_x16;
  }
  c.precision = precision;
  c.ctx = ctx;
  return c;
}

void ctx_destroy(Ctx *g);

// A new context on `device` (its streams and cuBLAS handle made there); nullptr with the
// reason set (px_fail) when the device cannot be used.
Ctx *ctx_create(int device) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();  // not sticky: later probes ask again
    fail_no_device(e);
    return nullptr;
  }
  if (device < 0 || device >= n) {
    px_fail(PX_ERR_BACKEND, "no CUDA device cuda:%d (%d visible)", device, n);
    return nullptr;
  }
  Ctx *g = new (std::nothrow) Ctx();
  if (!g) {
    px_fail(PX_ERR_NOMEM, "out of memory creating a CUDA context");
    return nullptr;
  }
  g->device = device;
  snprintf(g->name, sizeof g->name, "cuda:%d", device);
  g->no_lt = getenv("PXDIFF_NO_CUBLASLT") != nullptr;
  for (int p = 0; p < 4; p++) g->views[p] = make_backend(g, p);
  DeviceGuard guard(device);
  if (ctx_init(*g)) {
    const int rc = g->init_status;
    const std::string why = px_last_error();
    ctx_destroy(g);
    px_fail(rc, "CUDA context on cuda:%d: %s", device, why.c_str());
    return nullptr;
  }
  return g;
}

// Everything the context holds; its users have freed their buffers (the scratch and the
// 16-bit weight copies go here).
void ctx_destroy(Ctx *gp) {
  if (!gp) return;
  Ctx &g = *gp;
  DeviceGuard guard(g.device);
  for (int k = 0; k < MAX_LANES; k++)
    if (g.lane[k]) cudaStreamSynchronize(g.lane[k]);
  for (int k = 0; k < MAX_LANES; k++) {
    dev_free(g, g.logits[k]);
    dev_free(g, g.xh[k]);
    dev_free(g, g.ftmp[k]);
  }
  std::vector<uint16_t *> halves;
  for (auto &kv : g.whalf)
    if ((const void *)kv.second.p != (const void *)kv.first) halves.push_back(kv.second.p);
  g.whalf.clear();
  for (uint16_t *h : halves) dev_free(g, h);
  {
    std::lock_guard<std::mutex> lk(g.mu);
    for (auto &kv : g.sizes) all_in_use -= (int64_t)kv.second;  // buffers its users leaked
  }
  if (g.blas) cublasDestroy(g.blas);
  for (int k = 0; k < MAX_LANES; k++) {
    if (g.blas_ws[k]) cudaFree(g.blas_ws[k]);
    if (g.ev_join[k]) cudaEventDestroy(g.ev_join[k]);
    if (k > 0 && g.lane[k]) cudaStreamDestroy(g.lane[k]);
  }
  if (g.ev_fork) cudaEventDestroy(g.ev_fork);
  if (g.ev_ext) cudaEventDestroy(g.ev_ext);
  if (g.main) cudaStreamDestroy(g.main);
  cudaGetLastError();
  delete gp;
}

// The process's shared context per device (px_cuda_device_backend): models and the
// condition embedder on one device share it, as they share the device. Made on first use,
// kept until exit.
constexpr int MAX_DEVICES = 64;
std::mutex shared_mu;
Ctx *shared_ctx[MAX_DEVICES] = {};

Ctx *shared_context(int device) {
  if (device < 0 || device >= MAX_DEVICES) {
    px_fail(PX_ERR_BACKEND, "no CUDA device cuda:%d", device);
    return nullptr;
  }
  std::lock_guard<std::mutex> lk(shared_mu);
  if (!shared_ctx[device]) shared_ctx[device] = ctx_create(device);
  return shared_ctx[device];
}

// ------------------------------------------------------ 16-bit weights --
// The model decides which matrices get a 16-bit copy (src/model/device.c); the backend
// keeps the copies, keyed by the matrix's device address, for linear / linear_x16.

// A 16-bit copy of a device weight matrix (converted on the device), used by linear_half
// and linear_x16; its GEMM input is stored times 2^-e.
int add_half_weight(Ctx &g, const float *W, size_t n, int precision, int e) {
  if (g.whalf.count(W)) return 0;
  auto *dst = (uint16_t *)dev_alloc(g, n * sizeof(uint16_t) + 16);
  if (!dst) return PX_ERR_NOMEM;
  const unsigned blocks = (unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
  if (precision == PX_PRECISION_BF16)
    k_to_half_flat<1><<<blocks, 256, 0, g.stream>>>((int64_t)n, W, dst);
  else
    k_to_half_flat<2><<<blocks, 256, 0, g.stream>>>((int64_t)n, W, dst);
  LAUNCHED("to_half_flat");
  g.whalf[W] = Ctx::HalfW{dst, e};
  return g.sticky;
}

int be_weight_x16_make(px_backend *b, const float *W, size_t n, int e) {
  CTX(b);
  const int prec = precision_of(b);
  if (!half_type(prec)) return px_fail(PX_ERR_INPUT, "weight_x16_make: the %s view has no 16-bit weights", g.name);
  int rc = add_half_weight(g, W, n, prec, e);
  if (rc) g.sticky = 0;  // reported here, by this op
  return rc;
}

// Free the fp32 copy of W, which has a 16-bit copy that its GEMMs use instead (FP16: every
// GEMM on it goes through linear_x16). The 16-bit buffer's address then names the matrix
// (a live allocation, so no later buffer can share it): returned, for the caller's slot.
float *be_weight_drop_fp32(px_backend *b, float *W) {
  CTX(b);
  auto it = g.whalf.find(W);
  if (it == g.whalf.end()) return nullptr;
  const Ctx::HalfW hw = it->second;
  CK(cudaStreamSynchronize(g.main));  // queued conversions have read the fp32 copy
  g.whalf.erase(it);
  dev_free(g, W);
  float *key = reinterpret_cast<float *>(hw.p);
  g.whalf[key] = hw;
  g.generation++;
  return key;
}

px_backend *be_at_precision(px_backend *b, int precision) {
  return precision >= 0 && precision <= PX_PRECISION_FP16 ? &ctx_of(b).views[precision].base : nullptr;
}

}  // namespace

// ------------------------------------------------------------------- C API --

extern "C" int px_cuda_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

namespace {
int clamp_precision(int precision) {
  return precision < 0 || precision > PX_PRECISION_FP16 ? PX_PRECISION_FP32 : precision;
}
}  // namespace

extern "C" px_backend *px_cuda_backend_create(int device, int precision) {
  Ctx *g = ctx_create(device);
  return g ? &g->views[clamp_precision(precision)].base : nullptr;
}

extern "C" void px_cuda_backend_destroy(px_backend *b) {
  if (!b) return;
  Ctx *g = &ctx_of(b);
  {
    std::lock_guard<std::mutex> lk(shared_mu);
    for (Ctx *&s : shared_ctx)
      if (s == g) return;  // a shared context lives until exit
  }
  ctx_destroy(g);
}

extern "C" px_backend *px_cuda_backend_view(px_backend *b, int precision) {
  return b ? &ctx_of(b).views[clamp_precision(precision)].base : nullptr;
}

extern "C" px_backend *px_cuda_device_backend(int device, int precision) {
  Ctx *g = shared_context(device);
  return g ? &g->views[clamp_precision(precision)].base : nullptr;
}

extern "C" px_backend *px_cuda_backend(int precision) { return px_cuda_device_backend(0, precision); }

extern "C" int px_cuda_backend_device(const px_backend *b) { return b ? ((const CudaBackend *)b)->ctx->device : -1; }

extern "C" int64_t px_cuda_memory_in_use(void) { return all_in_use.load(); }
extern "C" int64_t px_cuda_memory_peak(void) { return all_peak.load(); }
extern "C" void px_cuda_memory_reset_peak(void) { all_peak.store(all_in_use.load()); }

extern "C" int px_cuda_half_weight(const float *W, size_t n, int precision, int e) {
  if (precision != PX_PRECISION_BF16 && precision != PX_PRECISION_FP16)
    return px_fail(PX_ERR_INPUT, "px_cuda_half_weight: precision %d has no 16-bit weights", precision);
  if (e < 0 || e > 30) return px_fail(PX_ERR_INPUT, "px_cuda_half_weight: exponent %d out of range", e);
  Ctx *gp = shared_context(0);
  if (!gp) return PX_ERR_BACKEND;
  Ctx &g = *gp;
  DeviceGuard guard(g.device);
  int rc = add_half_weight(g, W, n, precision, e);
  g.sticky = 0;
  return rc;
}
