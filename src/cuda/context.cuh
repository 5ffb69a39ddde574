// Internal to the CUDA backend (src/cuda/*.cu): the context every operation runs in, the
// error and allocation helpers, the launch-geometry and warp helpers, and the operations'
// prototypes (make_backend in context.cu fills the px_backend table from them). Split out of
// one 1.9k-line file so that each kernel family lives in its own file:
//   context.cu      contexts, memory, streams and lanes, graphs, errors, the C API
//   row_kernels.cu  LayerNorm/AdaLN, gated residuals, SwiGLU, activations, token<->atom maps,
//                   noise embedding, EDM mix
//   attention.cu    the exact fp32 attention (fused kernels; cuBLAS + softmax fallback)
//   gemm.cu         projections: cuBLASLt/cuBLAS glue, 16-bit operands, weight conversion
//   attention_tc.cu, gemm_lt.cu, sampler_kernels.cu: as before.
#ifndef PX_CUDA_CONTEXT_CUH
#define PX_CUDA_CONTEXT_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cuda/attention_tc.h"
#include "cuda/gemm_lt.h"

extern "C" {
#include "cuda/cuda_backend.h"
#include "error.h"
#include "pxdiff.h"
}

namespace pxcuda {

constexpr int MAX_LANES = 2;

struct Ctx;

// ------------------------------------------------------- kernel profile --
// PXDIFF_PROFILE=1: time every backend operation with CUDA events (eager runs only, i.e.
// also set PXDIFF_NO_GRAPHS=1) and print a table per operation, per context: when the
// context is destroyed, or at exit for the process's shared contexts. For the
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
  // The table so far (nothing when profiling is off or nothing ran), then forgets it.
  void report(const char *ctx_name) {
    if (on != 1) return;
    flush();
    if (totals.empty()) return;
    double total = 0;
    for (auto &t : totals) total += t.second.first;
    fprintf(stderr, "pxdiff CUDA profile of %s (all calls, ms):\n", ctx_name);
    for (auto &t : totals)
      fprintf(stderr, "  %-22s %10.2f ms %6.1f%% %8ld launches\n", t.first.c_str(), t.second.first,
              100.0 * t.second.first / (total > 0 ? total : 1), t.second.second);
    totals.clear();
  }
};

struct ProfScope {
  ProfRec rec{};
  bool live = false;
  cudaStream_t stream = nullptr;
  Profiler &prof;
  ProfScope(Profiler &p, const char *name, cudaStream_t s) : prof(p) {
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

#define PROF(name) ProfScope prof_scope_(g.prof, name, g.stream)

// One view of a context per precision: the px_backend a model or a test holds. The
// context (streams, cuBLAS handle, scratch) is shared by its views, so a model re-prepared
// at another precision keeps its weights on the device.
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
  // Bumped whenever scratch that captured graphs point into is reallocated.
  uint64_t generation = 1;
  // Fixed cuBLAS/cuBLASLt workspaces, one per lane (required for graph capture; GEMMs
  // running concurrently must not share one).
  void *blas_ws[MAX_LANES] = {};
  size_t blas_ws_bytes = 32u << 20;
  // Read once at creation (A/B switches for the benchmarks).
  bool no_lt = false;              // PXDIFF_NO_CUBLASLT: cuBLAS instead of cuBLASLt epilogues
  bool cublas_attention = false;   // PXDIFF_CUBLAS_ATTENTION: cuBLAS + softmax, not the fused kernels
  bool no_row_groups = false;      // PXDIFF_NO_ROW_GROUPS: one row per warp in the row kernels
  bool late_rows = true;           // PXDIFF_NO_LATE_ROWS: wide rows' G, B with the row (k_row_ln)
  bool pdl = false;                // PXDIFF_PDL=1 on sm_90+: programmatic dependent launch (launch.cuh)
  PxTcDevice tc = {};
  PxLt *lt = nullptr;              // cuBLASLt handle and GEMM plans (gemm_lt.cu)
  Profiler prof;                   // PXDIFF_PROFILE's timings of this context's operations
  size_t local_smem_configured = 0;  // k_attention_local's dynamic shared memory, set per device
  cudaEvent_t ev_ext = nullptr;      // orders work with the caller's stream
  cudaStream_t external = nullptr;   // the caller's stream (set_external_stream), or none
};

inline Ctx &ctx_of(px_backend *b) { return *((CudaBackend *)b)->ctx; }

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

int keep_failure(Ctx &g, int rc);
int fail_cuda(Ctx &g, cudaError_t e, const char *what);
int fail_blas(Ctx &g, cublasStatus_t s, const char *what);
void *dev_alloc(Ctx &g, size_t bytes);
void dev_free(Ctx &g, void *p);

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

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + __expf(-x)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

inline int precision_of(px_backend *b) { return ((CudaBackend *)b)->precision; }

// The 16-bit type of a precision's GEMM operands: 1 bf16, 2 fp16, 0 none.
inline int half_type(int prec) { return prec == PX_PRECISION_BF16 ? 1 : prec == PX_PRECISION_FP16 ? 2 : 0; }

inline float *f32_scratch(Ctx &g, size_t n) { return grow(g, g.ftmp[g.cur_lane], g.ftmp_n[g.cur_lane], n); }

// ---------------------------------------------------------------- shared helpers --
void to_half(Ctx &g, int ab, int M, int K, const float *X, int ldx, uint16_t *Y, int e = 0);
// cuBLAS math mode for fp32 operands: exact fp32 (no reduced-precision reductions) or TF32.
void gemm_math_mode(Ctx &g, int precision);

// ------------------------------------------------------------------ operations --
// context.cu
void *be_alloc(px_backend *b, size_t bytes);
void be_free(px_backend *b, void *p);
void be_upload(px_backend *b, void *dst, const void *src, size_t bytes);
void be_download(px_backend *b, void *dst, const void *src, size_t bytes);
void be_copy(px_backend *b, void *dst, const void *src, size_t bytes);
void *be_host_alloc(px_backend *b, size_t bytes);
void be_host_free(px_backend *b, void *p);
void be_download_async(px_backend *b, void *dst, const void *src, size_t bytes);
void be_sync(px_backend *b);
int be_lanes_fork(px_backend *b, int n);
void be_lane_select(px_backend *b, int k);
void be_lanes_join(px_backend *b);
int be_capture_begin(px_backend *b);
void *be_capture_end(px_backend *b);
int be_graph_launch(px_backend *b, void *graph);
void be_graph_free(px_backend *b, void *graph);
uint64_t be_generation(px_backend *b);
void be_set_external_stream(px_backend *b, void *stream);
int be_join_external(px_backend *b, int direction);
int be_status(px_backend *b);
px_backend *be_at_precision(px_backend *b, int precision);
void be_sampler_init(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, float t0, float *x);
void be_sampler_noise(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, uint32_t step, float sd, float *x,
                      float *x_noisy);
void be_sampler_euler(px_backend *b, int64_t n, const float *x_noisy, const float *x_den, float t_hat,
                      float step_size, float *x);

// row_kernels.cu
void be_layernorm(px_backend *b, int M, int C, const float *X, const float *w, const float *bias,
                  float *Y);
void be_adaln(px_backend *b, int M, int C, const float *X, const float *G, const float *B, int g_rows, void *Y,
              px_etype yt);
void be_gated_residual(px_backend *b, int M, int C, float *A, const float *G, int g_rows, const void *Y,
                       px_etype yt, int ye);
void be_residual_adaln(px_backend *b, int M, int C, float *A, const float *Gr, int gr_rows, const void *Y,
                       px_etype yt, int ye, const float *Gn, const float *Bn, int gn_rows, void *An, px_etype ant);
void be_sigmoid_mul(px_backend *b, int M, int C, float *O, int ldo, const float *P, int ldp);
void be_swiglu(px_backend *b, int M, int H, const void *X, void *Y, px_etype xt, px_etype yt, int e);
void be_activation(px_backend *b, int64_t n, float *X, int kind);
void be_add_rows(px_backend *b, int M, int C, float *Y, const float *A, int a_rows);
void be_atoms_to_tokens(px_backend *b, int S, int N, int T, int C, const float *X,
                        const int64_t *a2t, const float *inv_count, float *Y);
void be_tokens_to_atoms_add(px_backend *b, int S, int N, int T, int C, int a_samples,
                            const float *A, const int64_t *a2t, float *Y);
void be_noise_cond(px_backend *b, int S, int T, int nf, int C, const float *t, float sigma, const float *w,
                   const float *bias, const float *ln_w, px_weight Wn, const float *s0, float *work, float *s);
void be_adaln_pair(px_backend *b, int M, int C, float *A, const float *Gr, const void *Rr, px_etype rt, int re,
                   const float *G1, const float *B1, const float *G2, const float *B2, int g_rows, void *Y1, void *Y2,
                   px_etype yt);
void be_edm(px_backend *b, int mode, int S, int N, const float *x, const float *t, int t_stride, float sigma,
            const float *rup, float *out);

// attention.cu
void be_attention_full(px_backend *b, int S, int T, int H, int d, const float *Q, const float *K, const float *V,
                       int ld, const float *bias, float scale, void *O, const float *G, int ldg, px_etype ot);
void be_attention_full_h16(px_backend *b, int S, int T, int H, int d, const void *Q, const void *K, const void *V,
                           const void *G, int ld, const float *q_bias, const float *bias, const void *bias16, int ldb16,
                           float scale, void *O);
void be_attention_local(px_backend *b, int S, int N, int H, int d, int nq, int nk, const float *Q,
                        const float *K, const float *V, int ld, const float *bias, float scale,
                        void *O, const float *G, int ldg, px_etype ot);
void be_attention_local_h16(px_backend *b, int S, int N, int H, int d, int nq, int nk, const void *Q, const void *K,
                            const void *V, const void *G, int ld, const float *q_bias, const float *bias, float scale,
                            void *O);

// gemm.cu
void be_linear(px_backend *b, int M, int N, int K, const void *X, int ldx, px_weight W, const float *bias, void *Y,
               int ldy, int accumulate, int seg, px_etype xt, px_etype yt);
void be_linear_relu(px_backend *b, int M, int N, int K, const float *X, int ldx, px_weight W, const float *bias,
                    float *Y, int ldy, int seg);
void be_linear_batched(px_backend *b, int count, int M, int N, int K, const float *X, int64_t sx,
                       const float *W, int64_t sw, const float *bias, int64_t sb, float *Y, int64_t sy,
                       int /*seg*/);
void be_convert(px_backend *b, int64_t n, const float *X, void *Y, px_etype yt);
void be_convert_rows(px_backend *b, int64_t M, int C, const float *X, int ldx, void *Y, int ldy, px_etype yt);

// design_cache.cu
void be_copy_cols(px_backend *b, int M, int C, const float *X, int ldx, float *Y, int ldy);
void be_max_abs(px_backend *b, int count, int64_t n, const float *X, float *out);
void be_relpos_linear(px_backend *b, int T, int64_t r0, int rows, int C, int rmax, int smax, const int64_t *chain,
                      const int64_t *residue, const int64_t *entity, const int64_t *token, const int64_t *sym,
                      const float *W, float *Y, int ldy);
void be_atom_ref_embed(px_backend *b, int N, int C, const float *pos, const float *q, const float *mask,
                       const float *A, int na, const float *B, int nb, const float *Wp, const float *Wq,
                       const float *Wf, float *Y);
void be_atom_pair_bias(px_backend *b, int N, int T, int C, int nq, int nk, const float *pos, const int64_t *uid,
                       const int64_t *tok, const float *cl, const float *cm, const float *zp, const float *Wd,
                       const float *Wi, const float *Wv, const float *M1, const float *M2, const float *M3, int nh,
                       const float *Wh, float *const *bias, float *p_out);

}  // namespace pxcuda

#endif
