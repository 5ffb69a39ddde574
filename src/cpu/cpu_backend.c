/* The CPU backend: GEMMs through its own x86 kernel (cpu/gemm.h; K >= 128) or cblas,
 * everything else in plain C with OpenMP over rows. No kernel reduces across threads, so
 * results do not depend on the thread count.
 * Contexts: px_cpu_backend() is the process's shared one; px_cpu_backend_create makes another
 * that owns its table (its operations, chosen for this CPU) and its thread count, freed by
 * px_cpu_backend_destroy. A context keeps nothing else: scratch (the AMX kernel's bf16 rows) is
 * allocated per call, so that calls on one context may run concurrently (pxdiff.h's CPU
 * contract). Its thread count (backend.h px_backend.threads, set by px_backend_set_threads; a
 * model's through px_model_set_num_threads) is 0 unless set: the context then follows the
 * engine's process-wide count (px_num_threads, src/threads.c), as the shared context always
 * does. The statics below and in gemm.h / gemm_bf16.c are facts of the machine and of the
 * environment read once (the ISA the GEMM kernels take, AVX512_BF16 / AMX, the BLAS loaded,
 * PXDIFF_CPU_BF16*): the same for every context, so process-wide.
 * Every parallel region asks for px_cpu_threads(b) threads explicitly (cpu/cpu_threads.h: the
 * context's count, else the engine's), independent of the host process's OpenMP setting (which
 * it never changes); the GEMM helpers below, which have no context, take the count P. */
#if defined(PX_BLAS_BLIS) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* BLIS's cblas.h needs pthread_barrier_t (cpu/blas.h) */
#endif
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/blas.h"
#include "cpu/cpu_threads.h"
#include "cpu/design_ops.h"
#include "cpu/gemm.h"
#include "cpu/gemm_bf16.h"
#include "cpu/mathfn.h"
#include "error.h"
#include "pxdiff.h"

#define LN_EPS 1e-5

static void *cpu_alloc(px_backend *b, size_t bytes) {
  (void)b;
  if (bytes == 0) bytes = 64;
  /* 64-byte alignment for vector loads; aligned_alloc needs a multiple of the alignment. */
  size_t rounded = (bytes + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, rounded);
  if (!p) px_fail(PX_ERR_NOMEM, "out of memory in alloc on cpu allocating %zu MB", rounded >> 20); /* backend.h */
  return p;
}
static void cpu_free(px_backend *b, void *p) {
  (void)b;
  free(p);
}
static void cpu_copy(px_backend *b, void *dst, const void *src, size_t bytes) {
  (void)b;
  if (bytes) memcpy(dst, src, bytes);
}

/* GEMMs are cut into fixed tiles, each a single-threaded cblas call, spread over the
 * OpenMP threads. Two reasons: OpenBLAS's own worker threads and OpenMP's spinning
 * workers fight over the cores when they alternate (measured: 2-7x slower calls on
 * 2 cores), and fixed tile boundaries make every output element's arithmetic
 * independent of the thread count. */
#define GEMM_TARGET_M 128
#define GEMM_TARGET_N 512

/* Split `n` into near-equal parts of about `target`, a multiple of 16: boundaries depend
 * on the shape alone. */
static int tile_size(int n, int target) {
  int parts = (n + target - 1) / target;
  int t = (n + parts - 1) / parts;
  return (t + 15) & ~15;
}

/* Our own GEMM (cpu/gemm.h) for depths of at least this: below, its per-output reduction
 * costs more than cblas's packing saves (at K = 128, in the atom transformer, the two are
 * even on one core; the own kernel's free tiling then wins on many). PXDIFF_CPU_GEMM=blas
 * forces cblas (A/B timing). */
#define OWN_GEMM_MIN_K 128

static int own_gemm(int K) {
  if (K < OWN_GEMM_MIN_K) return PX_GEMM_BLAS;
  const char *e = getenv("PXDIFF_CPU_GEMM");
  if (e && strcmp(e, "blas") == 0) return PX_GEMM_BLAS;
  return px_gemm_isa();
}

#ifdef _OPENMP
#include <omp.h>
static int px_omp_thread(void) { return omp_get_thread_num(); }
#else
static int px_omp_thread(void) { return 0; }
#endif

/* Round n / parts up to a multiple of `mult`. */
static int split_up(int n, int parts, int mult) {
  int t = (n + parts - 1) / parts;
  return (t + mult - 1) / mult * mult;
}

/* Y = X W^T (+ bias) through gemm.h's kernel, for `count` GEMMs of one shape at once (X_i =
 * X + i*sx, ...). Its per-output arithmetic depends on K alone, so the tiles are cut for the
 * cache and the threads, across samples. A task owns a tile of W rows (~256 KB, L2) and
 * runs all rows of X past it, so every weight is read from memory once per call; when that
 * gives fewer than ~4 tasks per thread, the columns are cut finer (down to the kernel's width)
 * and then the rows into groups. One parallel region for all `count` GEMMs. */
/* With Wb (count 1), W's bf16 copy (cpu/gemm_bf16.h) replaces W: the same tiles, the bf16
 * kernel. */
static void own_linear(int P, int isa, int count, int M, int N, int K, const float *X, int ldx, int64_t sx,
                       const float *W, int64_t sw, const uint16_t *Wb, const float *bias, int64_t sb, float *Y,
                       int ldy, int64_t sy, int accumulate, int relu) {
  /* Column tiles in multiples of the kernel's width: 32 for the AVX-512 outer-product panels,
   * 12 for the dot-product kernels (their 4 x 6 and 3 x 4 blocks). */
  const int packs = !Wb && isa == PX_GEMM_AVX512 && K <= PX_OP_MAX_K, gn = packs ? 32 : 12;
  int64_t want = (4 * (int64_t)P + count - 1) / count; /* tasks per GEMM */
  const int64_t work = (int64_t)M * N * K;
  if (want > work / 65536) want = work / 65536;
  if (want < 1) want = 1;
  const int max_cols = (64 * 1024) / K / gn * gn > gn ? (64 * 1024) / K / gn * gn : gn;
  int tn_parts = (N + max_cols - 1) / max_cols;
  const int max_parts = (N + gn - 1) / gn;
  if (tn_parts < want) tn_parts = want < max_parts ? (int)want : max_parts;
  const int TN = split_up(N, tn_parts, gn), tn = (N + TN - 1) / TN;
  int tm_parts = (int)((want + tn - 1) / tn);
  if (tm_parts > (M + 11) / 12) tm_parts = (M + 11) / 12;
  const int TM = split_up(M, tm_parts, 12), tm = (M + TM - 1) / TM;
  const int per = tm * tn;
  /* The AVX-512 kernel's packed copy of a task's W rows, one per thread. Without it (out of
   * memory) the kernel reads W through gathers: slower, the same bits. */
  const size_t ws_n = packs ? px_gemm_ws_floats(TN, K) : 0;
  const int nthreads = count * per > 1 ? P : 1;
  float *ws_all = ws_n ? aligned_alloc(64, (ws_n * nthreads * sizeof(float) + 63) & ~(size_t)63) : NULL;
#pragma omp parallel num_threads(P) if (count * per > 1)
  {
    float *ws = ws_all ? ws_all + ws_n * (size_t)px_omp_thread() : NULL;
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < count * per; task++) {
      const int i = task / per, t = task % per;
      const int r0 = (t % tm) * TM, c0 = (t / tm) * TN;
      const int mr = M - r0 < TM ? M - r0 : TM, nc = N - c0 < TN ? N - c0 : TN;
      const float *bi = bias ? bias + i * sb + c0 : NULL;
      if (Wb)
        px_gemm_bf16_tile(mr, nc, K, X + (size_t)r0 * ldx, ldx, Wb + (size_t)c0 * px_bf16_ld(K), bi,
                          Y + (size_t)r0 * ldy + c0, ldy, accumulate, relu);
      else
        px_gemm_tile(isa, mr, nc, K, X + i * sx + (size_t)r0 * ldx, ldx, W + i * sw + (size_t)c0 * K, bi,
                     Y + i * sy + (size_t)r0 * ldy + c0, ldy, accumulate, relu, ws);
    }
  }
  free(ws_all);
}

/* Y = X Wp^T (+ bias) on the AMX kernel, Wp packed for it (cpu/gemm_bf16.h; N a multiple of
 * 16, K of 32). X is converted to bf16 once, in its own pass (rows padded with zeros to a
 * multiple of 16, which the tiles read): converting it per tile, as the vdpbf16ps kernel does,
 * would cost as much as the tiles' products (each tdpbf16ps does 8192 multiply-adds). Tasks are
 * tiles of 32-multiples: a W tile of <= 256 KB (L2) against rows of X, cut finer, rows first,
 * until there are ~4 per thread. The kernel's outputs depend on K and their operands alone, so
 * none of this changes a bit. 1 when done, 0 when out of memory (reported). */
static int amx_linear(int P, int M, int N, int K, const float *X, int ldx, const uint16_t *Wp, const float *bias, float *Y,
                      int ldy, int accumulate) {
  const int ld = K, M16 = (M + 15) & ~15;
  uint16_t *Xb = aligned_alloc(64, ((size_t)M16 * ld * sizeof(uint16_t) + 63) & ~(size_t)63);
  if (!Xb) {
    px_fail(PX_ERR_NOMEM, "linear on the CPU: out of memory (%d x %d bf16 rows)", M16, K);
    return 0;
  }
  const int groups = M16 / 16;
#pragma omp parallel for num_threads(P) schedule(static) if ((int64_t)M * K > 65536)
  for (int g = 0; g < groups; g++) {
    const int r0 = g * 16, rows = M - r0 < 16 ? M - r0 : 16;
    px_bf16_convert_rows(rows, K, X + (size_t)r0 * ldx, ldx, Xb + (size_t)r0 * ld, ld);
    if (rows < 16) memset(Xb + (size_t)(r0 + rows) * ld, 0, sizeof(uint16_t) * (size_t)(16 - rows) * ld);
  }
  const int64_t want = 4 * (int64_t)P;
  int max_cols = (128 * 1024) / K / 32 * 32;
  if (max_cols < 32) max_cols = 32;
  int tn_parts = (N + max_cols - 1) / max_cols;
  const int max_tn = (N + 31) / 32, max_tm = (M + 31) / 32;
  int tm_parts = (int)((want + tn_parts - 1) / tn_parts);
  if (tm_parts > max_tm) tm_parts = max_tm;
  if ((int64_t)tm_parts * tn_parts < want) {
    tn_parts = (int)((want + tm_parts - 1) / tm_parts);
    if (tn_parts > max_tn) tn_parts = max_tn;
  }
  const int TN = split_up(N, tn_parts, 32), tn = (N + TN - 1) / TN;
  const int TM = split_up(M, tm_parts, 32), tm = (M + TM - 1) / TM;
#pragma omp parallel for num_threads(P) schedule(dynamic, 1) if (tm * tn > 1)
  for (int t = 0; t < tm * tn; t++) {
    const int r0 = (t % tm) * TM, c0 = (t / tm) * TN;
    const int mr = M - r0 < TM ? M - r0 : TM, nc = N - c0 < TN ? N - c0 : TN;
    px_gemm_bf16_amx_tile(mr, nc, K, Xb + (size_t)r0 * ld, Wp + (size_t)c0 * ld, bias ? bias + c0 : NULL,
                          Y + (size_t)r0 * ldy + c0, ldy, accumulate, 0);
  }
  free(Xb);
  return 1;
}

static void gemm(int P, int M, int N, int K, const float *X, int ldx, const float *W, const float *bias, float *Y,
                 int ldy, int accumulate, int seg, int relu) {
  if (M <= 0 || N <= 0) return;
  const int isa = own_gemm(K);
  if (isa != PX_GEMM_BLAS) {
    own_linear(P, isa, 1, M, N, K, X, ldx, 0, W, 0, NULL, bias, 0, Y, ldy, 0, accumulate, relu);
    return;
  }
  /* One BLAS thread per tile, for this call only: OpenBLAS's count is process-wide and the
   * host's (PyTorch on Debian calls the same libopenblas), so it is restored afterwards. */
  const int blas_prev = px_blas_get_threads();
  if (blas_prev != 1) px_blas_set_threads(1);
  if (seg <= 0 || seg > M) seg = M;
  const int nseg = (M + seg - 1) / seg;
  const int TM = tile_size(seg, GEMM_TARGET_M), TN = tile_size(N, GEMM_TARGET_N);
  const int tm = (seg + TM - 1) / TM, tn = (N + TN - 1) / TN;
#pragma omp parallel for num_threads(P) schedule(dynamic, 1) if (nseg * tm * tn > 1)
  for (int task = 0; task < nseg * tm * tn; task++) {
    const int sg = task / (tm * tn), tt = task % (tm * tn);
    const int s0 = sg * seg, s_end = s0 + seg < M ? s0 + seg : M;
    const int r0 = s0 + (tt / tn) * TM, c0 = (tt % tn) * TN;
    if (r0 >= s_end) continue;
    const int mr = s_end - r0 < TM ? s_end - r0 : TM;
    const int nc = N - c0 < TN ? N - c0 : TN;
    float *y = Y + (size_t)r0 * ldy + c0;
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias) {
      for (int r = 0; r < mr; r++) {
        float *yr = y + (size_t)r * ldy;
        if (accumulate)
          for (int c = 0; c < nc; c++) yr[c] += bias[c0 + c];
        else
          memcpy(yr, bias + c0, sizeof(float) * (size_t)nc);
      }
      beta = 1.0f;
    }
    if (K == 0) {
      if (beta == 0.0f)
        for (int r = 0; r < mr; r++) memset(y + (size_t)r * ldy, 0, sizeof(float) * (size_t)nc);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mr, nc, K, 1.0f, X + (size_t)r0 * ldx, ldx,
                  W + (size_t)c0 * K, K, beta, y, ldy);
    }
    if (relu)
      for (int r = 0; r < mr; r++) {
        float *yr = y + (size_t)r * ldy;
        for (int c = 0; c < nc; c++) yr[c] = yr[c] > 0.0f ? yr[c] : 0.0f;
      }
  }
  if (blas_prev != 1) px_blas_set_threads(blas_prev);
}

/* The CPU computes in fp32 only: another element type, or a weight without its fp32 matrix,
 * is the caller's error (the model never prepares 16-bit operands for a backend without
 * convert). Nothing is written; 1 when the op must not run. */
static int not_f32(const char *op, int n, ...) {
  va_list ap;
  va_start(ap, n);
  int bad = 0;
  for (int i = 0; i < n; i++) bad |= va_arg(ap, int) != PX_F32;
  va_end(ap);
  if (bad) px_fail(PX_ERR_BACKEND, "%s on the CPU: 16-bit operands are not supported (fp32 only)", op);
  return bad;
}
static int no_f32_weight(const char *op, px_weight W) {
  if (W.f32) return 0;
  px_fail(PX_ERR_BACKEND, "%s on the CPU: the weight has no fp32 matrix", op);
  return 1;
}

/* A weight with a bf16 copy (made by convert, which the CPU has only where it runs the bf16
 * kernel) and K a multiple of 32 (the copy's rows are then the kernel's packed rows,
 * gemm_bf16.h) runs on bf16 operands: X is rounded as the tiles read it, the products
 * accumulate in fp32, with the own GEMM's tiling (an output's bits do not depend on it).
 * Anything else runs fp32. */
static int bf16_weight(px_weight W, int K) {
  return W.h16 && W.h16_type == PX_BF16 && K % 32 == 0 && K <= PX_BF16_MAX_K && px_bf16_supported() &&
         !px_bf16_disabled();
}

static void cpu_linear(px_backend *b, int M, int N, int K, const void *X, int ldx, px_weight W,
                       const float *bias, void *Y, int ldy, int accumulate, int seg, px_etype xt, px_etype yt) {
  (void)b;
  if (not_f32("linear", 2, (int)xt, (int)yt)) return;
  if (bf16_weight(W, K)) {
    if (M <= 0 || N <= 0) return;
    if (px_bf16_kernel() == PX_BF16_AMX) { /* its copies are packed for it (cpu_pack16) */
      amx_linear(px_cpu_threads(b), M, N, K, (const float *)X, ldx, (const uint16_t *)W.h16, bias, (float *)Y, ldy, accumulate);
      return;
    }
    own_linear(px_cpu_threads(b), PX_GEMM_AVX512, 1, M, N, K, (const float *)X, ldx, 0, NULL, 0, (const uint16_t *)W.h16, bias, 0,
                 (float *)Y, ldy, 0, accumulate, 0);
    return;
  }
  if (no_f32_weight("linear", W)) return;
  gemm(px_cpu_threads(b), M, N, K, (const float *)X, ldx, W.f32, bias, (float *)Y, ldy, accumulate, seg, 0);
}

/* backend.h convert, bf16 only (the CPU's one 16-bit type), nearest even. */
static void cpu_convert(px_backend *b, int64_t n, const float *X, void *Y, px_etype yt) {
  (void)b;
  if (yt != PX_BF16) {
    px_fail(PX_ERR_BACKEND, "convert on the CPU: only bf16 copies are supported");
    return;
  }
  uint16_t *y = Y;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = px_bf16_round(X[i]);
}

/* backend.h pack16: the AMX kernel's layout (px_bf16_pack_amx), rows of W in parallel blocks
 * of 16 outputs. Only where px_bf16_kernel() is AMX (px_cpu_backend sets it then). */
static void cpu_pack16(px_backend *b, int N, int K, const float *W, void *Y, px_etype yt) {
  (void)b;
  if (yt != PX_BF16 || N % 16 || K % 32) {
    px_fail(PX_ERR_BACKEND, "pack16 on the CPU: bf16 with N a multiple of 16 and K of 32 only (got N %d, K %d)", N,
            K);
    return;
  }
  uint16_t *y = Y;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int c = 0; c < N; c += 16) px_bf16_pack_amx(16, K, W + (size_t)c * K, y + (size_t)c * K);
}

static void cpu_linear_batched(px_backend *b, int count, int M, int N, int K, const float *X,
                               int64_t sx, const float *W, int64_t sw, const float *bias, int64_t sb,
                               float *Y, int64_t sy, int seg) {
  if (count <= 0 || M <= 0 || N <= 0) return;
  const int isa = own_gemm(K);
  if (isa != PX_GEMM_BLAS) { /* one parallel region for all of them */
    own_linear(px_cpu_threads(b), isa, count, M, N, K, X, K, sx, W, sw, NULL, bias, sb, Y, N, sy, 0, 0);
    return;
  }
  for (int i = 0; i < count; i++)
    gemm(px_cpu_threads(b), M, N, K, X + i * sx, K, W + i * sw, bias ? bias + i * sb : NULL, Y + i * sy, N, 0, seg, 0);
}

/* Mean and 1/std of one row, accumulated in double (C <= a few thousand). */
static inline void row_stats(const float *x, int C, float *mean, float *rstd) {
  double s = 0, ss = 0;
  for (int c = 0; c < C; c++) s += x[c];
  double m = s / C;
  for (int c = 0; c < C; c++) {
    double d = x[c] - m;
    ss += d * d;
  }
  *mean = (float)m;
  *rstd = (float)(1.0 / sqrt(ss / C + LN_EPS));
}

static void cpu_layernorm(px_backend *b, int M, int C, const float *X, const float *w,
                          const float *bias, float *Y) {
  (void)b;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) {
    const float *x = X + (size_t)r * C;
    float *y = Y + (size_t)r * C;
    float m, rs;
    row_stats(x, C, &m, &rs);
    for (int c = 0; c < C; c++) {
      float v = (x[c] - m) * rs;
      if (w) v *= w[c];
      if (bias) v += bias[c];
      y[c] = v;
    }
  }
}

static void cpu_adaln(px_backend *b, int M, int C, const float *X, const float *G, const float *B,
                      int g_rows, void *Yv, px_etype yt) {
  (void)b;
  if (not_f32("adaln", 1, (int)yt)) return;
  float *Y = (float *)Yv;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) {
    const float *x = X + (size_t)r * C;
    const float *g = G + (size_t)(r % g_rows) * C;
    const float *bb = B + (size_t)(r % g_rows) * C;
    float *y = Y + (size_t)r * C;
    float m, rs;
    row_stats(x, C, &m, &rs);
    for (int c = 0; c < C; c++) y[c] = g[c] * ((x[c] - m) * rs) + bb[c];
  }
}

static void cpu_gated_residual(px_backend *b, int M, int C, float *A, const float *G, int g_rows,
                               const void *Yv, px_etype yt, int ye) {
  (void)b;
  (void)ye; /* fp32 Y only: unscaled */
  if (not_f32("gated_residual", 1, (int)yt)) return;
  const float *Y = (const float *)Yv;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) {
    float *a = A + (size_t)r * C;
    const float *g = G + (size_t)(r % g_rows) * C;
    const float *y = Y + (size_t)r * C;
    for (int c = 0; c < C; c++) a[c] += g[c] * y[c];
  }
}

/* One pass per row: the residual update, then that row's AdaLN (same arithmetic as the two
 * kernels in turn; one parallel region instead of two, the row still in L1). */
static void cpu_residual_adaln(px_backend *b, int M, int C, float *A, const float *Gr, int gr_rows,
                               const void *Yv, px_etype yt, int ye, const float *Gn, const float *Bn, int gn_rows,
                               void *Anv, px_etype ant) {
  (void)b;
  (void)ye; /* fp32 Y only: unscaled */
  if (not_f32("residual_adaln", 2, (int)ant, (int)yt)) return;
  const float *Y = (const float *)Yv;
  float *An = (float *)Anv;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) {
    float *a = A + (size_t)r * C;
    const float *gr = Gr + (size_t)(r % gr_rows) * C;
    const float *y = Y + (size_t)r * C;
    for (int c = 0; c < C; c++) a[c] += gr[c] * y[c];
    const float *g = Gn + (size_t)(r % gn_rows) * C;
    const float *bb = Bn + (size_t)(r % gn_rows) * C;
    float *o = An + (size_t)r * C;
    float m, rs;
    row_stats(a, C, &m, &rs);
    for (int c = 0; c < C; c++) o[c] = g[c] * ((a[c] - m) * rs) + bb[c];
  }
}

static void cpu_sigmoid_mul(px_backend *b, int M, int C, float *O, int ldo, const float *P,
                            int ldp) {
  (void)b;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) {
    float *o = O + (size_t)r * ldo;
    const float *p = P + (size_t)r * ldp;
    for (int c = 0; c < C; c++) o[c] *= px_sigmoidf(p[c]);
  }
}

static void cpu_swiglu(px_backend *b, int M, int H, const void *Xv, void *Yv, px_etype xt, px_etype yt, int e) {
  (void)b;
  if (not_f32("swiglu", 2, (int)xt, (int)yt)) return;
  if (e) { /* only 16-bit outputs are scaled */
    px_fail(PX_ERR_BACKEND, "swiglu on the CPU: an fp32 output takes no scale (e = %d)", e);
    return;
  }
  const float *X = (const float *)Xv;
  float *Y = (float *)Yv;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) {
    const float *xa = X + (size_t)r * 2 * H;
    const float *xb = xa + H;
    float *y = Y + (size_t)r * H;
    for (int c = 0; c < H; c++) y[c] = px_siluf(xa[c]) * xb[c];
  }
}

/* Softmax of one row of n logits in place (fp32, max-subtracted). The max and the sum run
 * in 16 lanes (lane k takes j = k mod 16) and the sum's lanes are added by one fixed tree:
 * vectorized, and the same arithmetic for a row wherever it is computed. (A single running
 * sum was a chain of dependent scalar adds: at 128-196 keys it cost more than the logits.) */
#define SM_LANES 16
static inline void softmax_row(float *l, int n) {
  float mx[SM_LANES], sp[SM_LANES];
  for (int k = 0; k < SM_LANES; k++) mx[k] = l[0], sp[k] = 0.0f;
  int j = 0;
  for (; j + SM_LANES <= n; j += SM_LANES)
    for (int k = 0; k < SM_LANES; k++) mx[k] = l[j + k] > mx[k] ? l[j + k] : mx[k];
  for (int k = 0; j + k < n; k++) mx[k] = l[j + k] > mx[k] ? l[j + k] : mx[k];
  float m = mx[0];
  for (int k = 1; k < SM_LANES; k++) m = mx[k] > m ? mx[k] : m;
  j = 0;
  for (; j + SM_LANES <= n; j += SM_LANES)
    for (int k = 0; k < SM_LANES; k++) {
      const float e = px_expf(l[j + k] - m);
      l[j + k] = e;
      sp[k] += e;
    }
  for (int k = 0; j + k < n; k++) {
    const float e = px_expf(l[j + k] - m);
    l[j + k] = e;
    sp[k] += e;
  }
  for (int w = SM_LANES / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) sp[k] += sp[k + w];
  const float inv = 1.0f / sp[0];
  for (j = 0; j < n; j++) l[j] *= inv;
}

/* a * b + c: one rounding where the hardware fuses it (the build's -march), else two. */
#if defined(__FMA__) || defined(__aarch64__)
#define PX_MADD(a, b, c) fmaf((a), (b), (c))
#else
#define PX_MADD(a, b, c) ((a) * (b) + (c))
#endif

/* Register blocks of attend_rows: AR query rows at a time, logits AJ keys at a time, the
 * output AC channels at a time (the accumulators, AR x 16 floats, stay in registers). */
#define AR 4
#define AJ 16
#define AC 16

/* Keys per row of the logit scratch and of the transposed keys: rounded up to AJ, so logit
 * blocks never need a tail (the extra columns are computed from zero keys and not used). */
static int keys_ld(int n) { return (n + AJ - 1) / AJ * AJ; }

/* One head's attention for `nr` query rows against `n` keys:
 *   L[i, j] = scale * q_i . k_j + bias[i, j]
 *   o_i = sum_j softmax(L_i)_j v_j
 * Kt holds the keys transposed, [d][ldkt] with ldkt >= keys_ld(n) (columns past n are
 * read, any finite values, and their logits dropped), so the key loop vectorizes; L is
 * AR x keys_ld(n) scratch. Masked keys are simply not passed:
 * their softmax weight is exactly 0, as upstream's -1e10 gives. With G (row stride ldg; NULL
 * for none) the output row is then multiplied by sigmoid(G). Every output's arithmetic is a
 * fixed sequence over c (logits) and j (output), whatever the blocking. */
static void attend_rows(int nr, int n, int d, const float *Q, int ldq, const float *Kt, int ldkt,
                        const float *V, int ldv, const float *bias, int ldb, float scale,
                        float *O, int ldo, const float *G, int ldg, float *L) {
  const int ldl = keys_ld(n);
  for (int i0 = 0; i0 < nr; i0 += AR) {
    const int rr = nr - i0 < AR ? nr - i0 : AR;
    const float *q[AR];
    for (int r = 0; r < AR; r++) q[r] = Q + (size_t)(i0 + (r < rr ? r : 0)) * ldq; /* spare rows: row 0 again */
    for (int j0 = 0; j0 < n; j0 += AJ) {
      float acc[AR][AJ];
      for (int r = 0; r < AR; r++)
        for (int jj = 0; jj < AJ; jj++) acc[r][jj] = 0.0f;
      for (int c = 0; c < d; c++) {
        const float *kt = Kt + (size_t)c * ldkt + j0;
        for (int r = 0; r < AR; r++) {
          const float qv = q[r][c];
#pragma omp simd
          for (int jj = 0; jj < AJ; jj++) acc[r][jj] = PX_MADD(qv, kt[jj], acc[r][jj]);
        }
      }
      for (int r = 0; r < AR; r++) memcpy(L + (size_t)r * ldl + j0, acc[r], sizeof acc[r]);
    }
    for (int r = 0; r < rr; r++) {
      float *l = L + (size_t)r * ldl;
      const float *bi = bias + (size_t)(i0 + r) * ldb;
      for (int j = 0; j < n; j++) l[j] = l[j] * scale + bi[j];
      softmax_row(l, n);
    }
    for (int c0 = 0; c0 < d; c0 += AC) {
      float acc[AR][AC];
      for (int r = 0; r < AR; r++)
        for (int cc = 0; cc < AC; cc++) acc[r][cc] = 0.0f;
      const int cw = d - c0 < AC ? d - c0 : AC;
      if (cw == AC && rr == AR) {
        for (int j = 0; j < n; j++) {
          const float *v = V + (size_t)j * ldv + c0;
          for (int r = 0; r < AR; r++) {
            const float p = L[(size_t)r * ldl + j];
#pragma omp simd
            for (int cc = 0; cc < AC; cc++) acc[r][cc] = PX_MADD(p, v[cc], acc[r][cc]);
          }
        }
      } else { /* the same sums, rows or channels short */
        for (int j = 0; j < n; j++) {
          const float *v = V + (size_t)j * ldv + c0;
          for (int r = 0; r < rr; r++) {
            const float p = L[(size_t)r * ldl + j];
            for (int cc = 0; cc < cw; cc++) acc[r][cc] = PX_MADD(p, v[cc], acc[r][cc]);
          }
        }
      }
      for (int r = 0; r < rr; r++) {
        float *o = O + (size_t)(i0 + r) * ldo + c0;
        if (G) { /* the attention gate, o * sigmoid(g), while the block is in registers */
          const float *g = G + (size_t)(i0 + r) * ldg + c0;
          if (cw == AC) { /* the sigmoids first, in a loop of their own, so that they vectorize */
            float gs[AC];
            for (int cc = 0; cc < AC; cc++) gs[cc] = px_sigmoidf(g[cc]);
            for (int cc = 0; cc < AC; cc++) o[cc] = acc[r][cc] * gs[cc];
          } else {
            for (int cc = 0; cc < cw; cc++) o[cc] = acc[r][cc] * px_sigmoidf(g[cc]);
          }
        } else {
          for (int cc = 0; cc < cw; cc++) o[cc] = acc[r][cc];
        }
      }
    }
  }
}

/* attend_rows with AVX-512 register blocks, for head widths d that are a multiple of 16 (the
 * atom transformers' d = 32): 8 query rows x 32 keys of logits and 8 rows x 32 channels of
 * output per block (16 accumulators; per step 2 vector loads and 8 broadcasts feed 16 FMAs,
 * where attend_rows's 4 x 16 blocks, compiled with GCC's znver tuning, load the keys again for
 * every FMA). The arithmetic of every output is attend_rows's exactly: each logit one fused
 * multiply-add per c in order from 0, then * scale + bias, the same softmax_row, each output
 * channel one fused multiply-add per key in order from 0, then the gate; so the two give the
 * same bits (test_cpu_kernels checks it) and the choice never changes a result. Built only
 * where PX_MADD is fmaf on x86 (the same rounding as _mm512_fmadd_ps). L: AR512 x keys_ld(n). */
#if PX_OWN_GEMM && defined(__FMA__)
#define PX_ATTN512 1
#define AR512 8
/* px_expf / px_sigmoidf / softmax_row in 16 lanes, operation for operation (each multiply and
 * add rounded on its own, as the C is compiled here: ISO C, no contraction), so the same bits;
 * the clamps keep a NaN as the C's comparisons do. */
PX_TGT512 static inline __m512 px_expf512(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x); /* -87 > x ? -87 : x */
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);  /* 88 < x ? 88 : x */
  const __m512 shifter = _mm512_set1_ps(12582912.0f);
  __m512 kf = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), shifter);
  kf = _mm512_sub_ps(kf, shifter);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(kf, _mm512_set1_ps(0.693145751953125f)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(kf, _mm512_set1_ps(1.428606765330187045e-06f)));
  __m512 p = _mm512_set1_ps(1.3888889e-3f);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3333333e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1666667e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666667e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(0.5f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(kf), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}
PX_TGT512 static inline __m512 px_sigmoidf512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 neg = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))); /* -x */
  return _mm512_div_ps(one, _mm512_add_ps(one, px_expf512(neg)));
}
/* l[0, n) = softmax(l * scale + bias), softmax_row's lanes and trees. */
PX_TGT512 static void softmax_row512(float *l, const float *bi, float scale, int n) {
  const int nf = n / 16 * 16;
  const __mmask16 tail = (__mmask16)((1u << (n - nf)) - 1u);
  const __m512 sc = _mm512_set1_ps(scale);
  __m512 mx = _mm512_set1_ps(l[0] * scale + bi[0]);
  for (int j = 0; j < nf; j += 16) {
    const __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(l + j), sc), _mm512_loadu_ps(bi + j));
    _mm512_storeu_ps(l + j, v);
    mx = _mm512_max_ps(v, mx); /* l > mx ? l : mx */
  }
  if (tail) {
    const __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(tail, l + nf), sc),
                                   _mm512_maskz_loadu_ps(tail, bi + nf));
    _mm512_mask_storeu_ps(l + nf, tail, v);
    mx = _mm512_mask_max_ps(mx, tail, v, mx);
  }
  float t[16];
  _mm512_storeu_ps(t, mx);
  float m = t[0];
  for (int k = 1; k < 16; k++) m = t[k] > m ? t[k] : m;
  const __m512 mv = _mm512_set1_ps(m);
  __m512 sp = _mm512_setzero_ps();
  for (int j = 0; j < nf; j += 16) {
    const __m512 e = px_expf512(_mm512_sub_ps(_mm512_loadu_ps(l + j), mv));
    _mm512_storeu_ps(l + j, e);
    sp = _mm512_add_ps(sp, e);
  }
  if (tail) {
    const __m512 e = px_expf512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, l + nf), mv));
    _mm512_mask_storeu_ps(l + nf, tail, e);
    sp = _mm512_mask_add_ps(sp, tail, sp, e);
  }
  _mm512_storeu_ps(t, sp);
  for (int w = 8; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) t[k] += t[k + w];
  const __m512 inv = _mm512_set1_ps(1.0f / t[0]);
  for (int j = 0; j < nf; j += 16) _mm512_storeu_ps(l + j, _mm512_mul_ps(_mm512_loadu_ps(l + j), inv));
  if (tail) _mm512_mask_storeu_ps(l + nf, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, l + nf), inv));
}
PX_TGT512 static void attend_rows512(int nr, int n, int d, const float *Q, int ldq, const float *Kt, int ldkt,
                                     const float *V, int ldv, const float *bias, int ldb, float scale, float *O,
                                     int ldo, const float *G, int ldg, float *L) {
  const int ldl = keys_ld(n);
  for (int i0 = 0; i0 < nr; i0 += AR512) {
    const int rr = nr - i0 < AR512 ? nr - i0 : AR512;
    const float *q[AR512];
    for (int r = 0; r < AR512; r++) q[r] = Q + (size_t)(i0 + (r < rr ? r : 0)) * ldq; /* spare rows: row 0 again */
    /* logits, 32 keys (then a last 16) at a time */
    for (int j0 = 0; j0 < ldl; j0 += 32) {
      if (j0 + 32 <= ldl) {
        __m512 acc[AR512][2];
        for (int r = 0; r < AR512; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        for (int c = 0; c < d; c++) {
          const float *kt = Kt + (size_t)c * ldkt + j0;
          const __m512 k0 = _mm512_loadu_ps(kt), k1 = _mm512_loadu_ps(kt + 16);
          for (int r = 0; r < AR512; r++) {
            const __m512 qv = _mm512_set1_ps(q[r][c]);
            acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
          }
        }
        for (int r = 0; r < AR512; r++) {
          _mm512_storeu_ps(L + (size_t)r * ldl + j0, acc[r][0]);
          _mm512_storeu_ps(L + (size_t)r * ldl + j0 + 16, acc[r][1]);
        }
      } else {
        __m512 acc[AR512];
        for (int r = 0; r < AR512; r++) acc[r] = _mm512_setzero_ps();
        for (int c = 0; c < d; c++) {
          const __m512 k0 = _mm512_loadu_ps(Kt + (size_t)c * ldkt + j0);
          for (int r = 0; r < AR512; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][c]), k0, acc[r]);
        }
        for (int r = 0; r < AR512; r++) _mm512_storeu_ps(L + (size_t)r * ldl + j0, acc[r]);
      }
    }
    for (int r = 0; r < rr; r++) softmax_row512(L + (size_t)r * ldl, bias + (size_t)(i0 + r) * ldb, scale, n);
    /* output, 32 channels (then a last 16) at a time; the spare rows' sums are not stored */
    for (int c0 = 0; c0 < d; c0 += 32) {
      const int nv = d - c0 >= 32 ? 2 : 1;
      __m512 acc[AR512][2];
      for (int r = 0; r < AR512; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
      if (nv == 2) {
        for (int j = 0; j < n; j++) {
          const float *v = V + (size_t)j * ldv + c0;
          const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
          for (int r = 0; r < AR512; r++) {
            const __m512 p = _mm512_set1_ps(L[(size_t)r * ldl + j]);
            acc[r][0] = _mm512_fmadd_ps(p, v0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(p, v1, acc[r][1]);
          }
        }
      } else {
        for (int j = 0; j < n; j++) {
          const __m512 v0 = _mm512_loadu_ps(V + (size_t)j * ldv + c0);
          for (int r = 0; r < AR512; r++)
            acc[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(L[(size_t)r * ldl + j]), v0, acc[r][0]);
        }
      }
      for (int r = 0; r < rr; r++) {
        float *o = O + (size_t)(i0 + r) * ldo + c0;
        for (int h = 0; h < nv; h++) {
          __m512 y = acc[r][h];
          if (G) /* o * sigmoid(g) */
            y = _mm512_mul_ps(y, px_sigmoidf512(_mm512_loadu_ps(G + (size_t)(i0 + r) * ldg + c0 + 16 * h)));
          _mm512_storeu_ps(o + 16 * h, y);
        }
      }
    }
  }
}
#else
#define PX_ATTN512 0
#define AR512 AR
#endif

/* Which attention kernel a call uses: attend_rows512 where it is built, the CPU has AVX-512
 * and d is a multiple of 16 (PXDIFF_CPU_ATTN=generic forces attend_rows: tests, A/B timing;
 * both give the same bits). */
static int attn512_ok(int d) {
#if PX_ATTN512
  if (d % 16 != 0 || px_gemm_isa() != PX_GEMM_AVX512) return 0;
  const char *e = getenv("PXDIFF_CPU_ATTN");
  return !(e && strcmp(e, "generic") == 0);
#else
  (void)d;
  return 0;
#endif
}

static void attend(int fast, int nr, int n, int d, const float *Q, int ldq, const float *Kt, int ldkt,
                   const float *V, int ldv, const float *bias, int ldb, float scale, float *O, int ldo,
                   const float *G, int ldg, float *L) {
#if PX_ATTN512
  if (fast) {
    attend_rows512(nr, n, d, Q, ldq, Kt, ldkt, V, ldv, bias, ldb, scale, O, ldo, G, ldg, L);
    return;
  }
#endif
  (void)fast;
  attend_rows(nr, n, d, Q, ldq, Kt, ldkt, V, ldv, bias, ldb, scale, O, ldo, G, ldg, L);
}

static void cpu_attention_full(px_backend *b, int S, int T, int H, int d, const float *Q,
                               const float *K, const float *V, int ld, const float *bias,
                               float scale, void *Ov, const float *G, int ldg, px_etype ot) {
  (void)b;
  if (not_f32("attention_full", 1, (int)ot)) return;
  float *O = (float *)Ov;
  const int C = H * d;
  const int RB = 16; /* query rows per task */
  const int nrb = (T + RB - 1) / RB;
#pragma omp parallel num_threads(px_cpu_threads(b))
  {
    const int ldk = keys_ld(T), fast = attn512_ok(d);
    float *Kt = calloc((size_t)d * ldk, sizeof(float)); /* columns past T stay zero */
    float *L = malloc(sizeof(float) * (size_t)(AR > AR512 ? AR : AR512) * ldk);
    int cur = -1;
#pragma omp for schedule(static)
    for (int task = 0; task < S * H * nrb; task++) {
      int sh = task / nrb, rb = task % nrb;
      int s = sh / H, h = sh % H;
      const float *Qs = Q + (size_t)s * T * ld + (size_t)h * d;
      const float *Ks = K + (size_t)s * T * ld + (size_t)h * d;
      const float *Vs = V + (size_t)s * T * ld + (size_t)h * d;
      if (sh != cur) { /* transpose this head's keys once per (sample, head) run */
        for (int j = 0; j < T; j++)
          for (int c = 0; c < d; c++) Kt[(size_t)c * ldk + j] = Ks[(size_t)j * ld + c];
        cur = sh;
      }
      int r0 = rb * RB, nr = T - r0 < RB ? T - r0 : RB;
      attend(fast, nr, T, d, Qs + (size_t)r0 * ld, ld, Kt, ldk, Vs, ld,
                  bias + (size_t)h * T * T + (size_t)r0 * T, T, scale,
                  O + ((size_t)s * T + r0) * C + (size_t)h * d, C,
                  G ? G + ((size_t)s * T + r0) * ldg + (size_t)h * d : NULL, ldg, L);
    }
    free(Kt);
    free(L);
  }
}

static void cpu_attention_local(px_backend *b, int S, int N, int H, int d, int nq, int nk,
                                const float *Q, const float *K, const float *V, int ld,
                                const float *bias, float scale, void *Ov, const float *G, int ldg, px_etype ot) {
  (void)b;
  if (not_f32("attention_local", 1, (int)ot)) return;
  float *O = (float *)Ov;
  const int C = H * d;
  const int n_trunks = (N + nq - 1) / nq;
  const int off = (nk - nq) / 2;
  /* Every (sample, head)'s keys transposed once, [d][ldN] (the windows overlap: per window
   * that was nk / nq times the transposes); the columns past N are zero, since a window's
   * key loop reads up to keys_ld(n) columns. Without the memory, per window as before. */
  const int ldN = keys_ld(N) + AJ, nblk = (N + 63) / 64;
  float *KT = malloc(sizeof(float) * (size_t)S * H * d * ldN);
#pragma omp parallel num_threads(px_cpu_threads(b))
  {
    const int ldk = keys_ld(nk), fast = attn512_ok(d);
    float *Kt = KT ? NULL : calloc((size_t)d * ldk, sizeof(float));
    float *L = malloc(sizeof(float) * (size_t)(AR > AR512 ? AR : AR512) * ldk);
    if (KT) {
#pragma omp for schedule(static)
      for (int task = 0; task < S * H * nblk; task++) {
        const int sh = task / nblk, a_lo = task % nblk * 64, s = sh / H, h = sh % H;
        const int a_hi = a_lo + 64 < N ? a_lo + 64 : N;
        const float *Ks = K + (size_t)s * N * ld + (size_t)h * d;
        float *kt = KT + (size_t)sh * d * ldN;
        for (int a = a_lo; a < a_hi; a++)
          for (int c = 0; c < d; c++) kt[(size_t)c * ldN + a] = Ks[(size_t)a * ld + c];
        if (a_hi == N)
          for (int c = 0; c < d; c++) memset(kt + (size_t)c * ldN + N, 0, sizeof(float) * (size_t)(ldN - N));
      }
    }
#pragma omp for schedule(static)
    for (int task = 0; task < S * n_trunks * H; task++) {
      int h = task % H;
      int st = task / H;
      int s = st / n_trunks, t = st % n_trunks;
      int q0 = t * nq, nr = N - q0 < nq ? N - q0 : nq;
      int kstart = q0 - off; /* atom index of window position 0 */
      int kbeg = kstart < 0 ? -kstart : 0;
      int kend = kstart + nk > N ? N - kstart : nk;
      const float *Ks = K + (size_t)s * N * ld + (size_t)h * d;
      const float *Vs = V + (size_t)s * N * ld + (size_t)h * d;
      const int n = kend - kbeg, a0 = kstart + kbeg; /* valid keys: atoms a0 .. a0+n-1 */
      const float *kt = KT ? KT + (size_t)(s * H + h) * d * ldN + a0 : Kt;
      if (!KT)
        for (int j = 0; j < n; j++)
          for (int c = 0; c < d; c++) Kt[(size_t)c * ldk + j] = Ks[(size_t)(a0 + j) * ld + c];
      attend(fast, nr, n, d, Q + ((size_t)s * N + q0) * ld + (size_t)h * d, ld, kt, KT ? ldN : ldk,
                  Vs + (size_t)a0 * ld, ld, bias + (((size_t)h * n_trunks + t) * nq) * nk + kbeg,
                  nk, scale, O + ((size_t)s * N + q0) * C + (size_t)h * d, C,
                  G ? G + ((size_t)s * N + q0) * ldg + (size_t)h * d : NULL, ldg, L);
    }
    free(Kt);
    free(L);
  }
  free(KT);
}

static void cpu_linear_relu(px_backend *b, int M, int N, int K, const float *X, int ldx, px_weight W,
                            const float *bias, float *Y, int ldy, int seg) {
  (void)b;
  if (no_f32_weight("linear_relu", W)) return;
  gemm(px_cpu_threads(b), M, N, K, X, ldx, W.f32, bias, Y, ldy, 0, seg, 1); /* the ReLU inside each tile, while it is in cache */
}

static void cpu_activation(px_backend *b, int64_t n, float *X, int kind) {
  (void)b;
  if (kind == PX_ACT_SIGMOID) {
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
    for (int64_t i = 0; i < n; i++) X[i] = px_sigmoidf(X[i]);
  } else {
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
    for (int64_t i = 0; i < n; i++) X[i] = X[i] > 0.0f ? X[i] : 0.0f;
  }
}

static void cpu_atoms_to_tokens(px_backend *b, int S, int N, int T, int C, const float *X,
                                const int64_t *atom_to_token, const float *inv_count, float *Y) {
  (void)b;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int s = 0; s < S; s++) {
    float *ys = Y + (size_t)s * T * C;
    memset(ys, 0, sizeof(float) * (size_t)T * C);
    /* Atoms of a token are contiguous (validated at design creation): sum in atom order. */
    for (int n = 0; n < N; n++) {
      const float *x = X + ((size_t)s * N + n) * C;
      float *y = ys + (size_t)atom_to_token[n] * C;
      for (int c = 0; c < C; c++) y[c] += x[c];
    }
    for (int t = 0; t < T; t++) {
      float *y = ys + (size_t)t * C;
      for (int c = 0; c < C; c++) y[c] *= inv_count[t];
    }
  }
}

static void cpu_tokens_to_atoms_add(px_backend *b, int S, int N, int T, int C, int a_samples,
                                    const float *A, const int64_t *atom_to_token, float *Y) {
  (void)b;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < S * N; r++) {
    int s = r / N, n = r % N;
    const float *a = A + ((size_t)(s % a_samples) * T + (size_t)atom_to_token[n]) * C;
    float *y = Y + (size_t)r * C;
    for (int c = 0; c < C; c++) y[c] += a[c];
  }
}

static void cpu_add_rows(px_backend *b, int M, int C, float *Y, const float *A, int a_rows) {
  (void)b;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) {
    float *y = Y + (size_t)r * C;
    const float *a = A + (size_t)(r % a_rows) * C;
    for (int c = 0; c < C; c++) y[c] += a[c];
  }
}

/* The float operations of the host code this replaced (x / den for r_noisy; c_skip * x + c_out
 * * rup for x_denoised), so the CPU's results are unchanged bit for bit; the CUDA kernel
 * computes the same expressions. */
static void cpu_edm(px_backend *b, int mode, int S, int N, const float *x, const float *t, int t_stride,
                    float sigma, const float *rup, float *out) {
  (void)b;
  for (int i = 0; i < S; i++) {
    const float th = t[(size_t)i * t_stride], sr = th / sigma;
    const float den = sqrtf(sigma * sigma + th * th);
    const float c_skip = 1.0f / (1.0f + sr * sr), c_out = th / sqrtf(1.0f + sr * sr);
    for (int k = 0; k < N * 3; k++) {
      const size_t idx = (size_t)i * N * 3 + k;
      out[idx] = mode == 0 ? x[idx] / den : c_skip * x[idx] + c_out * rup[idx];
    }
  }
}

/* Lin_n is a sequential dot product per output, not the GEMM: the host has always computed it
 * so (it is nf x C multiply-adds per level, once per call), and the CPU's fp32 results stay
 * what they were. */
static void cpu_noise_cond(px_backend *b, int S, int T, int nf, int C, const float *t, float sigma,
                           const float *w, const float *bias, const float *ln_w, px_weight Wn, const float *s0,
                           float *work, float *s) {
  float *F = work, *Fn = F + (size_t)S * nf, *v = Fn + (size_t)S * nf;
  for (int u = 0; u < S; u++) {
    const float tau = logf(t[u] / sigma) / 4.0f;
    for (int f = 0; f < nf; f++)
      F[(size_t)u * nf + f] = cosf(2.0f * 3.14159265358979323846f * (tau * w[f] + bias[f]));
  }
  cpu_layernorm(b, S, nf, F, ln_w, NULL, Fn);
  for (int u = 0; u < S; u++)
    for (int o = 0; o < C; o++) {
      const float *wo = Wn.f32 + (size_t)o * nf, *x = Fn + (size_t)u * nf;
      float acc = 0;
      for (int f = 0; f < nf; f++) acc += wo[f] * x[f];
      v[(size_t)u * C + o] = acc;
    }
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < S * T; r++) {
    const float *a = s0 + (size_t)(r % T) * C, *vv = v + (size_t)(r / T) * C;
    float *y = s + (size_t)r * C;
    for (int c = 0; c < C; c++) y[c] = a[c] + vv[c];
  }
}

static px_backend cpu_backend = {
    .name = "cpu",
    .f32_inputs = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .linear = cpu_linear,
    .linear_relu = cpu_linear_relu,
    .linear_batched = cpu_linear_batched,
    .layernorm = cpu_layernorm,
    .adaln = cpu_adaln,
    .gated_residual = cpu_gated_residual,
    .residual_adaln = cpu_residual_adaln,
    .sigmoid_mul = cpu_sigmoid_mul,
    .swiglu = cpu_swiglu,
    .attention_full = cpu_attention_full,
    .attention_local = cpu_attention_local,
    .activation = cpu_activation,
    .atoms_to_tokens = cpu_atoms_to_tokens,
    .tokens_to_atoms_add = cpu_tokens_to_atoms_add,
    .add_rows = cpu_add_rows,
    .copy = cpu_copy,
    .noise_cond = cpu_noise_cond,
    .edm = cpu_edm,
    .copy_cols = px_cpu_copy_cols,
    .relpos_linear = px_cpu_relpos_linear,
    .atom_ref_embed = px_cpu_atom_ref_embed,
    .atom_pair_bias = px_cpu_atom_pair_bias,
};

px_backend *px_cpu_backend(void) { /* the shared context */
  static int init;
  if (!init) { /* the bf16 ops where this CPU runs the kernel; threads racing here store the same */
    if (px_bf16_supported() && !px_bf16_disabled()) {
      cpu_backend.convert = cpu_convert;
      if (px_bf16_kernel() == PX_BF16_AMX) cpu_backend.pack16 = cpu_pack16;
    }
    init = 1;
  }
  return &cpu_backend;
}

px_backend *px_cpu_backend_create(void) {
  px_backend *b = malloc(sizeof *b);
  if (!b) {
    px_fail(PX_ERR_NOMEM, "out of memory creating a CPU backend context");
    return NULL;
  }
  *b = *px_cpu_backend(); /* the table, with the bf16 operations this CPU has */
  b->threads = 0;          /* the process's count until px_backend_set_threads */
  return b;
}

int px_cpu_backend_is(const px_backend *b) { return b && b->alloc == cpu_alloc; }

void px_cpu_backend_destroy(px_backend *b) {
  if (px_cpu_backend_is(b) && b != &cpu_backend) free(b);
}

const char *px_cpu_bf16_describe(void) {
  if (!px_bf16_supported()) return "this CPU has no AVX512_BF16 (or this build no kernel for it)";
  if (px_bf16_disabled()) return "off (PXDIFF_CPU_BF16=0)";
  static char line[256];
  static int done;
  if (done) return line; /* threads racing here write the same bytes */
  if (px_bf16_kernel() == PX_BF16_AMX)
    snprintf(line, sizeof line, "AMX kernel (tdpbf16ps 16 x 16 tiles), fp32 accumulation");
  else
    snprintf(line, sizeof line, "AVX512_BF16 kernel (vdpbf16ps), fp32 accumulation; AMX: %s", px_bf16_amx_why_not());
  done = 1;
  return line;
}

const char *px_cpu_blas_describe(void) {
  static char line[512];
  static int done;
  if (done) return line; /* threads racing here write the same bytes */
  char lib[320];
#if defined(PX_BLAS_ACCELERATE)
  snprintf(lib, sizeof lib, "Accelerate");
#else
  if (PX_OPENBLAS_LOADED) {
    const int par = openblas_get_parallel();
    snprintf(lib, sizeof lib, "%s (%s)", openblas_get_config(),
             par == 0 ? "sequential" : par == 1 ? "pthreads" : par == 2 ? "OpenMP" : "threading unknown");
  } else if (mkl_get_version_string) {
    char v[200];
    mkl_get_version_string(v, (int)sizeof v);
    snprintf(lib, sizeof lib, "MKL (%s)", v);
  } else if (bli_info_get_version_str) {
    snprintf(lib, sizeof lib, "BLIS %s", bli_info_get_version_str());
  } else {
    snprintf(lib, sizeof lib, "cblas (library not identified)");
  }
#endif
  const int isa = px_gemm_isa();
  if (isa == PX_GEMM_BLAS)
    snprintf(line, sizeof line, "%s; loaded: %s", PX_BLAS_BUILT, lib);
  else
    snprintf(line, sizeof line, "%s; loaded: %s; GEMMs of depth >= %d: pxdiff's %s kernel", PX_BLAS_BUILT, lib,
             OWN_GEMM_MIN_K, isa == PX_GEMM_AVX512 ? "AVX-512" : "AVX2");
  done = 1;
  return line;
}
