// The CUDA backend's contexts: the px_backend interface (src/backend.h) on an NVIDIA GPU,
// and everything that is not a kernel. A context (struct Ctx, context.cuh) holds all the
// backend's state for one device, with no globals: its streams (two lanes when the model
// forks), cuBLAS handle and workspaces, scratch, 16-bit weight copies and the caller's
// stream. Work is queued on the context's stream; only download() and sync() wait. This
// file: creation and teardown, memory, errors, lanes, graph capture and replay, the
// per-step sampler work, the operation table, and the C API (cuda_backend.h).
#ifdef __linux__
#include <dlfcn.h>
#endif

#include "cuda/context.cuh"
#include "cuda/sampler_kernels.h"

namespace pxcuda {

// Device memory of every context together, for the testing API's process-wide numbers
// (px_cuda_memory_in_use / _peak); each context keeps its own tally beside it.
std::atomic<int64_t> all_in_use{0}, all_peak{0};

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
  px_attention_tc_init(&g.tc);
  g.no_row_groups = getenv("PXDIFF_NO_ROW_GROUPS") != nullptr;
  g.late_rows = getenv("PXDIFF_NO_LATE_ROWS") == nullptr;
  // Programmatic dependent launch needs sm_90: older devices launch as before.
  int cc = 0;
  cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor, g.device);
  const char *pdl = getenv("PXDIFF_PDL");
  g.pdl = cc >= 9 && pdl && *pdl && *pdl != '0';
  g.tc.pdl = g.pdl;
  g.lt = px_gemm_lt_create();  // this device's shared-memory limits, per context: no process-wide state
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

void be_copy(px_backend *b, void *dst, const void *src, size_t bytes) {
  CTX(b);
  if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g.stream));
}

void *be_host_alloc(px_backend *b, size_t bytes) {
  CTX(b);
  void *p = nullptr;
  const cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 64);
  if (e != cudaSuccess) {
    cudaGetLastError();  // reported here, as alloc's failures are (not sticky)
    px_fail(PX_ERR_NOMEM, "CUDA out of memory in host_alloc on %s allocating %zu MB of pinned host memory: %s",
            g.name, bytes >> 20, cudaGetErrorString(e));
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

px_backend *be_at_precision(px_backend *b, int precision) {
  return precision >= 0 && precision <= PX_PRECISION_FP16 ? &ctx_of(b).views[precision].base : nullptr;
}

void be_sampler_init(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, float t0, float *x) {
  CTX(b);
  PROF("sampler_init");
  CK(px_sampler_init_gpu(g.stream, g.pdl, S, N, seed, sample0, t0, x));
}

void be_sampler_noise(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, uint32_t step, float sd, float *x,
                      float *x_noisy) {
  CTX(b);
  PROF("sampler_noise");
  CK(px_sampler_noise_gpu(g.stream, g.pdl, S, N, seed, sample0, step, sd, x, x_noisy));
}

void be_sampler_euler(px_backend *b, int64_t n, const float *x_noisy, const float *x_den, float t_hat,
                      float step_size, float *x) {
  CTX(b);
  PROF("sampler_euler");
  CK(px_sampler_euler_gpu(g.stream, g.pdl, n, x_noisy, x_den, t_hat, step_size, x));
}

CudaBackend make_backend(Ctx *ctx, int precision) {
  CudaBackend c;
  std::memset(&c, 0, sizeof c);
  c.base.name = ctx->name;
  c.base.device_memory = 1;
  c.base.set_external_stream = be_set_external_stream;
  c.base.at_precision = be_at_precision;
  c.base.convert = be_convert;
  // the design cache's fp16 pair-bias copy; PXDIFF_NO_BIAS16 (read when the context is made)
  // keeps the fp32 biases alone (comparisons)
  if (!getenv("PXDIFF_NO_BIAS16")) c.base.convert_rows = be_convert_rows;
  c.base.max_abs = be_max_abs;
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
  c.base.adaln_pair = be_adaln_pair;
  c.base.sigmoid_mul = be_sigmoid_mul;
  c.base.swiglu = be_swiglu;
  c.base.attention_full = be_attention_full;
  c.base.attention_local = be_attention_local;
  // fp16 [q k v g] projections and attentions reading them (the FP16 precision's token and
  // atom blocks); PXDIFF_NO_X16_QKV (read when the context is made) keeps both fp32,
  // PXDIFF_NO_X16_ATOM_QKV the atom blocks' alone (comparisons).
  if (precision == PX_PRECISION_FP16 && !getenv("PXDIFF_NO_X16_QKV")) {
    c.base.attention_full_h16 = be_attention_full_h16;
    if (!getenv("PXDIFF_NO_X16_ATOM_QKV")) c.base.attention_local_h16 = be_attention_local_h16;
  }
  c.base.activation = be_activation;
  c.base.linear_relu = be_linear_relu;
  c.base.atoms_to_tokens = be_atoms_to_tokens;
  c.base.tokens_to_atoms_add = be_tokens_to_atoms_add;
  c.base.status = be_status;
  c.base.add_rows = be_add_rows;
  c.base.copy = be_copy;
  c.base.noise_cond = be_noise_cond;
  c.base.edm = be_edm;
  c.base.copy_cols = be_copy_cols;
  c.base.relpos_linear = be_relpos_linear;
  c.base.atom_ref_embed = be_atom_ref_embed;
  c.base.atom_pair_bias = be_atom_pair_bias;
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
  g->cublas_attention = getenv("PXDIFF_CUBLAS_ATTENTION") != nullptr;
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
  g.prof.report(g.name);
  for (int k = 0; k < MAX_LANES; k++) {
    dev_free(g, g.logits[k]);
    dev_free(g, g.xh[k]);
    dev_free(g, g.ftmp[k]);
  }
  {
    std::lock_guard<std::mutex> lk(g.mu);
    for (auto &kv : g.sizes) all_in_use -= (int64_t)kv.second;  // buffers its users leaked
  }
  if (g.blas) cublasDestroy(g.blas);
  px_gemm_lt_destroy(g.lt);
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

// The registry of shared contexts: process-wide by definition (one per device), the only
// mutable state of the backend outside its contexts. Its destructor prints the contexts'
// PXDIFF_PROFILE tables at exit (the contexts themselves are not torn down then: the CUDA
// runtime may already be going away).
struct SharedContexts {
  std::mutex mu;
  Ctx *ctx[MAX_DEVICES] = {};
  ~SharedContexts() {
    for (Ctx *g : ctx)
      if (g) g->prof.report(g->name);
  }
};
SharedContexts shared;

Ctx *shared_context(int device) {
  if (device < 0 || device >= MAX_DEVICES) {
    px_fail(PX_ERR_BACKEND, "no CUDA device cuda:%d", device);
    return nullptr;
  }
  std::lock_guard<std::mutex> lk(shared.mu);
  if (!shared.ctx[device]) shared.ctx[device] = ctx_create(device);
  return shared.ctx[device];
}

}  // namespace pxcuda

using namespace pxcuda;

// ------------------------------------------------------------------- C API --

extern "C" int px_cuda_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

namespace pxcuda {
int clamp_precision(int precision) {
  return precision < 0 || precision > PX_PRECISION_FP16 ? PX_PRECISION_FP32 : precision;
}
}  // namespace pxcuda

extern "C" px_backend *px_cuda_backend_create(int device, int precision) {
  Ctx *g = ctx_create(device);
  return g ? &g->views[clamp_precision(precision)].base : nullptr;
}

extern "C" void px_cuda_backend_destroy(px_backend *b) {
  if (!b) return;
  Ctx *g = &ctx_of(b);
  {
    std::lock_guard<std::mutex> lk(shared.mu);
    for (Ctx *s : shared.ctx)
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

extern "C" int px_cuda_mem_info(int device, int64_t *free_bytes, int64_t *total_bytes) {
  *free_bytes = *total_bytes = 0;
  if (device < 0 || device >= px_cuda_count())
    return px_fail(PX_ERR_BACKEND, "no CUDA device cuda:%d (%d visible)", device, px_cuda_count());
  DeviceGuard guard(device);
  size_t f = 0, t = 0;
  const cudaError_t e = cudaMemGetInfo(&f, &t);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return px_fail(PX_ERR_BACKEND, "cuda:%d: cudaMemGetInfo: %s", device, cudaGetErrorString(e));
  }
  *free_bytes = (int64_t)f;
  *total_bytes = (int64_t)t;
  return PX_OK;
}

extern "C" int64_t px_cuda_memory_in_use(void) { return all_in_use.load(); }
extern "C" int64_t px_cuda_memory_peak(void) { return all_peak.load(); }
extern "C" void px_cuda_memory_reset_peak(void) { all_peak.store(all_in_use.load()); }
