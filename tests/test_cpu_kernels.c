#define _POSIX_C_SOURCE 200809L /* setenv */
/* Every kernel of the CPU backend (src/backend.h) against a plain double-precision
 * reference written here, on fresh random inputs (tu_seed), NaN-poisoned outputs where
 * the kernel overwrites, awkward sizes and strides. fp32 kernels must reach a relative
 * Frobenius error <= 1e-5 (well under the project's 1e-4); NaN never passes.
 * Also: px_expf / px_sigmoidf accuracy, and bit-identical results for 1, 2 and 4 threads (the
 * engine's count, px_set_num_threads: omp_set_num_threads does not reach its regions).
 * Contexts: CPU contexts made per request (px_backend_create) are distinct from the shared one
 * and from each other, compute the same bits, and are freed by px_backend_destroy; the kernel
 * tests above run again on such a context. */
#include <omp.h>

#include "backend.h"
#include "pxdiff.h"
#include "cpu/mathfn.h"
#include "testutil.h"

#define TOL 1e-5
#define GUARD 12345.0f /* sentinel for memory a kernel must not touch */

static px_backend *be;

static float *fbuf(size_t n) {
  float *p = malloc(sizeof(float) * (n ? n : 1));
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}
static double *dbuf(size_t n) {
  double *p = calloc(n ? n : 1, sizeof(double));
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

/* ||got - ref|| / ||mag||, mag[i] the size of the terms summed into ref[i] (sum of their
 * absolute values): the bound for a sum that may cancel, which is exact only to the rounding of
 * its terms, not of its result. NaN anywhere gives NaN (callers check !isnan). */
static double rel_err_terms(const float *got, const double *ref, const double *mag, size_t n) {
  double err = 0, size = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)got[i] - ref[i];
    err += d * d;
    size += mag[i] * mag[i];
  }
  return sqrt(err / (size > 0 ? size : 1));
}
static float *frand(size_t n, double scale) {
  float *p = fbuf(n);
  tu_fill_normal(p, n, scale);
  return p;
}
static void fill_guard(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = GUARD;
}
static int guard_intact(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!(x[i] == GUARD)) return 0;
  return 1;
}
static double dsigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Gather the strided [M, N] block of Y (row stride ld) into a contiguous buffer. */
static float *gather(const float *Y, int M, int N, int ld) {
  float *o = fbuf((size_t)M * N);
  for (int r = 0; r < M; r++) memcpy(o + (size_t)r * N, Y + (size_t)r * ld, sizeof(float) * N);
  return o;
}
/* Check the columns [N, ld) of each row are still GUARD. */
static int stride_gaps_intact(const float *Y, int M, int N, int ld) {
  for (int r = 0; r < M; r++)
    if (!guard_intact(Y + (size_t)r * ld + N, (size_t)(ld - N))) return 0;
  return 1;
}

/* ------------------------------------------------------------------ linear -- */
static void check_linear(int M, int N, int K, int ldx_pad, int ldy_pad, int with_bias, int accumulate) {
  const int ldx = K + ldx_pad, ldy = N + ldy_pad;
  float *X = frand((size_t)M * ldx, 1.0);
  float *W = frand((size_t)N * K, 1.0 / sqrt(K > 0 ? K : 1));
  float *b = with_bias ? frand((size_t)N, 0.5) : NULL;
  float *Y = fbuf((size_t)M * ldy);
  fill_guard(Y, (size_t)M * ldy);
  double *ref = dbuf((size_t)M * N);
  for (int r = 0; r < M; r++) {
    if (accumulate) tu_fill_normal(Y + (size_t)r * ldy, (size_t)N, 1.0);
    else tu_poison(Y + (size_t)r * ldy, (size_t)N);
    for (int n = 0; n < N; n++) {
      double acc = accumulate ? Y[(size_t)r * ldy + n] : 0.0;
      if (b) acc += b[n];
      for (int k = 0; k < K; k++) acc += (double)X[(size_t)r * ldx + k] * W[(size_t)n * K + k];
      ref[(size_t)r * N + n] = acc;
    }
  }
  be->linear(be, M, N, K, X, ldx, px_weight_f32(W), b, Y, ldy, accumulate, 0, PX_F32, PX_F32);
  float *y = gather(Y, M, N, ldy);
  double e = tu_rel_err_fd(y, ref, (size_t)M * N);
  CHECK_MSG(e <= TOL, "linear M=%d N=%d K=%d ldx=%d ldy=%d bias=%d acc=%d: rel err %.3g", M, N, K,
            ldx, ldy, with_bias, accumulate, e);
  CHECK_MSG(stride_gaps_intact(Y, M, N, ldy), "linear M=%d N=%d K=%d wrote outside [M, N] of ldy=%d",
            M, N, K, ldy);
  free(X), free(W), free(b), free(Y), free(ref), free(y);
}

static void test_linear(void) {
  const int shapes[][3] = {{1, 1, 1},    {1, 3, 7},     {7, 1, 5},      {5, 3, 1},
                           {13, 17, 19}, {37, 53, 29},  {129, 33, 65},  {300, 700, 45},
                           {257, 530, 3}, {16, 768, 48}, {70, 16, 385}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int bias = 0; bias < 2; bias++)
      for (int acc = 0; acc < 2; acc++) {
        const int *s = shapes[i];
        check_linear(s[0], s[1], s[2], 0, 0, bias, acc);
        check_linear(s[0], s[1], s[2], 3, 5, bias, acc); /* strided X and Y */
      }
  /* Y columns written into the middle of a wider row (as [A x ; B x] side by side) */
  check_linear(41, 64, 32, 0, 64, 0, 0);
  /* K = 0: Y = bias (or 0), or unchanged plus bias when accumulating */
  for (int bias = 0; bias < 2; bias++)
    for (int acc = 0; acc < 2; acc++) check_linear(9, 11, 0, 0, 2, bias, acc);
}

/* --------------------------------------------------------------- layernorm -- */
static void ref_ln_row(const float *x, int C, double *out) {
  double m = 0, v = 0;
  for (int c = 0; c < C; c++) m += x[c];
  m /= C;
  for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
  v /= C;
  double rs = 1.0 / sqrt(v + 1e-5);
  for (int c = 0; c < C; c++) out[c] = (x[c] - m) * rs;
}

static void test_layernorm(void) {
  const int shapes[][2] = {{1, 1}, {1, 7}, {5, 3}, {13, 37}, {64, 128}, {9, 833}, {300, 16}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const int M = shapes[i][0], C = shapes[i][1];
    for (int mode = 0; mode < 4; mode++) {
      const int has_w = mode & 1, has_b = (mode >> 1) & 1;
      for (int inplace = 0; inplace < 2; inplace++) {
        float *X = fbuf((size_t)M * C);
        /* an offset and a scale per row so the mean and variance matter */
        for (int r = 0; r < M; r++) {
          double off = 5 * tu_normal(), sc = exp(tu_normal());
          for (int c = 0; c < C; c++) X[(size_t)r * C + c] = (float)(off + sc * tu_normal());
        }
        float *w = has_w ? frand((size_t)C, 1.0) : NULL;
        float *bias = has_b ? frand((size_t)C, 1.0) : NULL;
        double *ref = dbuf((size_t)M * C);
        for (int r = 0; r < M; r++) {
          ref_ln_row(X + (size_t)r * C, C, ref + (size_t)r * C);
          for (int c = 0; c < C; c++) {
            double v = ref[(size_t)r * C + c];
            if (w) v *= w[c];
            if (bias) v += bias[c];
            ref[(size_t)r * C + c] = v;
          }
        }
        float *Y = inplace ? X : fbuf((size_t)M * C);
        if (!inplace) tu_poison(Y, (size_t)M * C);
        be->layernorm(be, M, C, X, w, bias, Y);
        double e = tu_rel_err_fd(Y, ref, (size_t)M * C);
        if (C == 1 && !has_b) {
          /* LN of one value is exactly 0 */
          int zero = 1;
          for (int r = 0; r < M; r++) zero &= Y[r] == 0.0f;
          CHECK_MSG(zero, "layernorm C=1 should give 0");
        } else {
          CHECK_MSG(e <= TOL, "layernorm M=%d C=%d w=%d b=%d inplace=%d: rel err %.3g", M, C, has_w,
                    has_b, inplace, e);
        }
        if (!inplace) free(Y);
        free(X), free(w), free(bias), free(ref);
      }
    }
  }
}

/* ------------------------------------------------------------------- adaln -- */
static void test_adaln(void) {
  const int cases[][3] = {{1, 1, 5}, {6, 3, 37}, {12, 4, 64}, {12, 12, 64}, {50, 25, 33}, {7, 1, 128}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int M = cases[i][0], g_rows = cases[i][1], C = cases[i][2];
    float *X = frand((size_t)M * C, 3.0);
    for (int r = 0; r < M; r++)
      for (int c = 0; c < C; c++) X[(size_t)r * C + c] += (float)r; /* row offsets */
    float *G = frand((size_t)g_rows * C, 1.0), *B = frand((size_t)g_rows * C, 1.0);
    double *ref = dbuf((size_t)M * C);
    for (int r = 0; r < M; r++) {
      ref_ln_row(X + (size_t)r * C, C, ref + (size_t)r * C);
      const float *g = G + (size_t)(r % g_rows) * C, *bb = B + (size_t)(r % g_rows) * C;
      for (int c = 0; c < C; c++) ref[(size_t)r * C + c] = g[c] * ref[(size_t)r * C + c] + bb[c];
    }
    float *Y = fbuf((size_t)M * C);
    tu_poison(Y, (size_t)M * C);
    be->adaln(be, M, C, X, G, B, g_rows, Y, PX_F32);
    double e = tu_rel_err_fd(Y, ref, (size_t)M * C);
    CHECK_MSG(e <= TOL, "adaln M=%d g_rows=%d C=%d: rel err %.3g", M, g_rows, C, e);
    free(X), free(G), free(B), free(ref), free(Y);
  }
}

/* ---------------------------------------------------------- gated_residual -- */
static void test_gated_residual(void) {
  const int cases[][3] = {{1, 1, 1}, {6, 3, 37}, {12, 12, 64}, {40, 8, 128}, {33, 1, 7}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int M = cases[i][0], g_rows = cases[i][1], C = cases[i][2];
    float *A = frand((size_t)M * C, 1.0), *G = frand((size_t)g_rows * C, 1.0), *Y = frand((size_t)M * C, 1.0);
    double *ref = dbuf((size_t)M * C), *mag = dbuf((size_t)M * C);
    /* Against the terms' size |a| + |g y| (rel_err_terms): a one-element sum a = -g y cancels. */
    for (int r = 0; r < M; r++)
      for (int c = 0; c < C; c++) {
        const double a = A[(size_t)r * C + c], gy = (double)G[(size_t)(r % g_rows) * C + c] * Y[(size_t)r * C + c];
        ref[(size_t)r * C + c] = a + gy;
        mag[(size_t)r * C + c] = fabs(a) + fabs(gy);
      }
    be->gated_residual(be, M, C, A, G, g_rows, Y, PX_F32, 0);
    const double e = rel_err_terms(A, ref, mag, (size_t)M * C);
    CHECK_MSG(e <= TOL && !isnan(e), "gated_residual M=%d g_rows=%d C=%d: rel err %.3g", M, g_rows, C, e);
    free(A), free(G), free(Y), free(ref), free(mag);
  }
  /* A 16-bit update (a device backend's 16-bit GEMM output) is refused on the CPU, which has
   * fp32 activations only: the op's error names it, and A is left as it was. */
  {
    const int M = 4, C = 8;
    float *A = frand((size_t)M * C, 1.0), *G = frand((size_t)C, 1.0), *An = frand((size_t)M * C, 1.0);
    float *keep = malloc(sizeof(float) * (size_t)M * C);
    uint16_t Y16[32] = {0};
    memcpy(keep, A, sizeof(float) * (size_t)M * C);
    be->gated_residual(be, M, C, A, G, 1, Y16, PX_F16, 0);
    CHECK_MSG(strstr(px_last_error(), "gated_residual") != NULL, "fp16 update: error '%s'", px_last_error());
    be->residual_adaln(be, M, C, A, G, 1, Y16, PX_F16, 0, G, G, 1, An, PX_F32);
    CHECK_MSG(strstr(px_last_error(), "residual_adaln") != NULL, "fp16 update: error '%s'", px_last_error());
    CHECK_MSG(memcmp(keep, A, sizeof(float) * (size_t)M * C) == 0, "a refused fp16 update changed A");
    free(A), free(G), free(An), free(keep);
  }
}

/* ------------------------------------------------------------- sigmoid_mul -- */
static void test_sigmoid_mul(void) {
  const int cases[][4] = {{1, 1, 1, 1}, {5, 7, 7, 7}, {9, 13, 20, 15}, {33, 64, 64, 192}, {17, 48, 768, 2304}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int M = cases[i][0], C = cases[i][1], ldo = cases[i][2], ldp = cases[i][3];
    float *O = fbuf((size_t)M * ldo);
    fill_guard(O, (size_t)M * ldo);
    for (int r = 0; r < M; r++) tu_fill_normal(O + (size_t)r * ldo, (size_t)C, 1.0);
    float *P = frand((size_t)M * ldp, 4.0);
    double *ref = dbuf((size_t)M * C);
    for (int r = 0; r < M; r++)
      for (int c = 0; c < C; c++)
        ref[(size_t)r * C + c] = O[(size_t)r * ldo + c] * dsigmoid(P[(size_t)r * ldp + c]);
    be->sigmoid_mul(be, M, C, O, ldo, P, ldp);
    float *o = gather(O, M, C, ldo);
    double e = tu_rel_err_fd(o, ref, (size_t)M * C);
    CHECK_MSG(e <= TOL, "sigmoid_mul M=%d C=%d ldo=%d ldp=%d: rel err %.3g", M, C, ldo, ldp, e);
    CHECK_MSG(stride_gaps_intact(O, M, C, ldo), "sigmoid_mul wrote outside [M, C] (ldo=%d)", ldo);
    free(O), free(P), free(ref), free(o);
  }
}

/* ------------------------------------------------------------------ swiglu -- */
static void test_swiglu(void) {
  const int cases[][2] = {{1, 1}, {3, 5}, {17, 37}, {64, 256}, {5, 1536}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int M = cases[i][0], H = cases[i][1];
    float *X = frand((size_t)M * 2 * H, 3.0);
    double *ref = dbuf((size_t)M * H);
    for (int r = 0; r < M; r++)
      for (int c = 0; c < H; c++) {
        double a = X[(size_t)r * 2 * H + c], b = X[(size_t)r * 2 * H + H + c];
        ref[(size_t)r * H + c] = a * dsigmoid(a) * b;
      }
    float *Y = fbuf((size_t)M * H);
    tu_poison(Y, (size_t)M * H);
    be->swiglu(be, M, H, X, Y, PX_F32, PX_F32, 0);
    double e = tu_rel_err_fd(Y, ref, (size_t)M * H);
    CHECK_MSG(e <= TOL, "swiglu M=%d H=%d: rel err %.3g", M, H, e);
    free(X), free(ref), free(Y);
  }
}

/* --------------------------------------------------------- attention_full -- */
/* Q, K, V in one [S*T, ld] buffer each (ld >= H*d); bias [H, T, T]. */
static void ref_attention_full(int S, int T, int H, int d, const float *Q, const float *K,
                               const float *V, int ld, const float *bias, float scale, double *O) {
  double *l = dbuf((size_t)T);
  const int C = H * d;
  for (int s = 0; s < S; s++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < T; i++) {
        const float *q = Q + ((size_t)s * T + i) * ld + (size_t)h * d;
        double mx = -INFINITY;
        for (int j = 0; j < T; j++) {
          const float *k = K + ((size_t)s * T + j) * ld + (size_t)h * d;
          double acc = 0;
          for (int c = 0; c < d; c++) acc += (double)q[c] * k[c];
          l[j] = scale * acc + bias[((size_t)h * T + i) * T + j];
          if (l[j] > mx) mx = l[j];
        }
        double sum = 0;
        for (int j = 0; j < T; j++) sum += (l[j] = exp(l[j] - mx));
        double *o = O + ((size_t)s * T + i) * C + (size_t)h * d;
        for (int c = 0; c < d; c++) o[c] = 0;
        for (int j = 0; j < T; j++) {
          const float *v = V + ((size_t)s * T + j) * ld + (size_t)h * d;
          for (int c = 0; c < d; c++) o[c] += l[j] / sum * v[c];
        }
      }
  free(l);
}

/* Q/K/V sit between NaN guard rows, O is followed by a GUARD tail: reading or writing
 * rows outside [0, S*T) shows. */
static void run_attention_full(int S, int T, int H, int d, int ld_pad, float *out_O, int check) {
  const int C = H * d, ld = C + ld_pad;
  const size_t rows = (size_t)S * T, gr = 20;
  float *Qb = fbuf((rows + 2 * gr) * ld), *Kb = fbuf((rows + 2 * gr) * ld), *Vb = fbuf((rows + 2 * gr) * ld);
  tu_poison(Qb, (rows + 2 * gr) * ld);
  tu_poison(Kb, (rows + 2 * gr) * ld);
  tu_poison(Vb, (rows + 2 * gr) * ld);
  float *Q = Qb + gr * ld, *K = Kb + gr * ld, *V = Vb + gr * ld;
  tu_fill_normal(Q, rows * ld, 1.0);
  tu_fill_normal(K, rows * ld, 1.0);
  tu_fill_normal(V, rows * ld, 1.0);
  float *bias = frand((size_t)H * T * T, 2.0);
  const float scale = 1.0f / sqrtf((float)d);
  const size_t tail = 20 * (size_t)C;
  float *O = out_O ? out_O : fbuf(rows * C + tail);
  tu_poison(O, rows * C);
  fill_guard(O + rows * C, tail);
  be->attention_full(be, S, T, H, d, Q, K, V, ld, bias, scale, O, NULL, 0, PX_F32);
  if (check) {
    double *ref = dbuf(rows * C);
    ref_attention_full(S, T, H, d, Q, K, V, ld, bias, scale, ref);
    double e = tu_rel_err_fd(O, ref, rows * C);
    CHECK_MSG(e <= TOL, "attention_full S=%d T=%d H=%d d=%d ld=%d: rel err %.3g", S, T, H, d, ld, e);
    CHECK_MSG(guard_intact(O + rows * C, tail), "attention_full T=%d wrote past [S*T, H*d]", T);
    free(ref);
  }
  if (!out_O) free(O);
  free(Qb), free(Kb), free(Vb), free(bias);
}

static void test_attention_full(void) {
  const int cases[][5] = {/* S, T, H, d, ld_pad */
                          {1, 1, 1, 1, 0},   {1, 1, 3, 4, 5},   {2, 5, 2, 3, 0},  {1, 16, 4, 8, 0},
                          {3, 17, 4, 16, 7}, {2, 45, 3, 48, 96}, {1, 70, 16, 48, 1536}, {2, 33, 1, 5, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int *c = cases[i];
    run_attention_full(c[0], c[1], c[2], c[3], c[4], NULL, 1);
  }
}

/* -------------------------------------------------------- attention_local -- */
static void ref_attention_local(int S, int N, int H, int d, int nq, int nk, const float *Q,
                                const float *K, const float *V, int ld, const float *bias,
                                float scale, double *O) {
  const int C = H * d, nt = (N + nq - 1) / nq, off = (nk - nq) / 2;
  double *l = dbuf((size_t)nk);
  for (int s = 0; s < S; s++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < N; i++) {
        const int b = i / nq, iq = i % nq, j0 = nq * b - off;
        const float *q = Q + ((size_t)s * N + i) * ld + (size_t)h * d;
        double mx = -INFINITY;
        for (int m = 0; m < nk; m++) {
          const int j = j0 + m;
          if (j < 0 || j >= N) {
            l[m] = -INFINITY;
            continue;
          }
          const float *k = K + ((size_t)s * N + j) * ld + (size_t)h * d;
          double acc = 0;
          for (int c = 0; c < d; c++) acc += (double)q[c] * k[c];
          l[m] = scale * acc + bias[(((size_t)h * nt + b) * nq + iq) * nk + m];
          if (l[m] > mx) mx = l[m];
        }
        double sum = 0;
        for (int m = 0; m < nk; m++) sum += (l[m] = (l[m] == -INFINITY ? 0.0 : exp(l[m] - mx)));
        double *o = O + ((size_t)s * N + i) * C + (size_t)h * d;
        for (int c = 0; c < d; c++) o[c] = 0;
        for (int m = 0; m < nk; m++) {
          const int j = j0 + m;
          if (j < 0 || j >= N) continue;
          const float *v = V + ((size_t)s * N + j) * ld + (size_t)h * d;
          for (int c = 0; c < d; c++) o[c] += l[m] / sum * v[c];
        }
      }
  (void)nt;
  free(l);
}

/* Q/K/V live inside buffers with NaN guard rows before and after (a read of a key
 * outside [0, N) of sample 0 / S-1 would give NaN); bias entries of out-of-range keys
 * and of padded query rows are large (+40) or NaN, so giving them any weight shows. */
static void run_attention_local(int S, int N, int H, int d, int nq, int nk, int ld_pad,
                                float *out_O, int check) {
  const int C = H * d, ld = C + ld_pad, nt = (N + nq - 1) / nq, off = (nk - nq) / 2;
  const size_t rows = (size_t)S * N, guard_rows = (size_t)nk + 2;
  float *Qb = fbuf((rows + 2 * guard_rows) * ld), *Kb = fbuf((rows + 2 * guard_rows) * ld),
        *Vb = fbuf((rows + 2 * guard_rows) * ld);
  tu_poison(Qb, (rows + 2 * guard_rows) * ld);
  tu_poison(Kb, (rows + 2 * guard_rows) * ld);
  tu_poison(Vb, (rows + 2 * guard_rows) * ld);
  float *Q = Qb + guard_rows * ld, *K = Kb + guard_rows * ld, *V = Vb + guard_rows * ld;
  for (size_t r = 0; r < rows; r++) {
    /* every row fully finite, including the ld padding columns */
    tu_fill_normal(Q + r * ld, (size_t)ld, 1.0);
    tu_fill_normal(K + r * ld, (size_t)ld, 1.0);
    tu_fill_normal(V + r * ld, (size_t)ld, 1.0);
  }
  const size_t nb = (size_t)H * nt * nq * nk;
  float *bias = frand(nb, 2.0);
  for (int h = 0; h < H; h++)
    for (int b = 0; b < nt; b++)
      for (int iq = 0; iq < nq; iq++)
        for (int m = 0; m < nk; m++) {
          const int i = b * nq + iq, j = b * nq - off + m;
          float *x = &bias[(((size_t)h * nt + b) * nq + iq) * nk + m];
          if (i >= N) *x = NAN;                   /* padded query row: never output */
          else if (j < 0 || j >= N) *x = 40.0f;   /* masked key: must get weight 0 */
        }
  const float scale = 1.0f / sqrtf((float)d);
  const size_t tail = 64 * (size_t)C;
  float *Ob = out_O ? out_O : fbuf(rows * C + tail);
  tu_poison(Ob, rows * C);
  fill_guard(Ob + rows * C, tail);
  be->attention_local(be, S, N, H, d, nq, nk, Q, K, V, ld, bias, scale, Ob, NULL, 0, PX_F32);
  if (check) {
    double *ref = dbuf(rows * C);
    ref_attention_local(S, N, H, d, nq, nk, Q, K, V, ld, bias, scale, ref);
    double e = tu_rel_err_fd(Ob, ref, rows * C);
    CHECK_MSG(e <= TOL, "attention_local S=%d N=%d H=%d d=%d nq=%d nk=%d ld=%d: rel err %.3g", S, N,
              H, d, nq, nk, ld, e);
    CHECK_MSG(guard_intact(Ob + rows * C, tail),
              "attention_local N=%d wrote past [S*N, H*d] (padded query rows?)", N);
    free(ref);
  }
  if (!out_O) free(Ob);
  free(Qb), free(Kb), free(Vb), free(bias);
}

static void test_attention_local(void) {
  const int cases[][7] = {/* S, N, H, d, nq, nk, ld_pad */
                          {1, 1, 1, 4, 32, 128, 0},    {2, 1, 4, 32, 32, 128, 0},  {1, 7, 2, 8, 32, 128, 3},
                          {1, 31, 4, 32, 32, 128, 0},  {1, 32, 4, 32, 32, 128, 0}, {2, 33, 4, 32, 32, 128, 5},
                          {1, 45, 4, 32, 32, 128, 0},  {3, 80, 2, 16, 32, 128, 0}, {1, 96, 4, 32, 32, 128, 256},
                          {2, 150, 4, 32, 32, 128, 0}, {1, 333, 4, 8, 32, 128, 0}, {2, 50, 3, 5, 16, 48, 2},
                          {1, 29, 2, 6, 8, 24, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int *c = cases[i];
    run_attention_local(c[0], c[1], c[2], c[3], c[4], c[5], c[6], NULL, 1);
  }
}

/* The AVX-512 local-attention kernel (attend_rows512, d a multiple of 16) against a float64
 * reference with the gate, and against the generic kernel (PXDIFF_CPU_ATTN=generic): the same
 * bits. Fresh random inputs at head widths 16..64 and 8 (the generic path), windows cut by
 * both ends of the atoms (key counts that are not a multiple of 32), partial last trunks
 * (fewer than 8 query rows left), padded rows, and NaN: a NaN query channel, key value or gate
 * must make exactly the outputs NaN that the reference's arithmetic makes NaN, as must a NaN
 * key channel (which would leak into other windows if a kernel read keys outside its own). */
static void ref_attention_local_gated(int N, int H, int d, int nq, int nk, const float *Q, const float *K,
                                      const float *V, int ld, const float *bias, float scale, const float *G,
                                      double *O) {
  ref_attention_local(1, N, H, d, nq, nk, Q, K, V, ld, bias, scale, O);
  for (int i = 0; i < N; i++)
    for (int c = 0; c < H * d; c++) O[(size_t)i * H * d + c] *= dsigmoid(G[(size_t)i * H * d + c]);
}

static void run_attention_kernels(int N, int H, int d, int nq, int nk, int ld_pad, int nan_case) {
  const int C = H * d, ld = C + ld_pad, nt = (N + nq - 1) / nq, off = (nk - nq) / 2;
  float *Q = frand((size_t)N * ld, 1.0), *K = frand((size_t)N * ld, 1.0), *V = frand((size_t)N * ld, 1.0);
  float *G = frand((size_t)N * C, 1.5);
  const size_t nb = (size_t)H * nt * nq * nk;
  float *bias = frand(nb, 2.0);
  for (int h = 0; h < H; h++)
    for (int b = 0; b < nt; b++)
      for (int iq = 0; iq < nq; iq++)
        for (int m = 0; m < nk; m++) {
          const int i = b * nq + iq, j = b * nq - off + m;
          float *x = &bias[(((size_t)h * nt + b) * nq + iq) * nk + m];
          if (i >= N) *x = NAN;
          else if (j < 0 || j >= N) *x = 40.0f;
        }
  const int ni = (int)(tu_uniform() * N), nc = (int)(tu_uniform() * C);
  if (nan_case == 1) Q[(size_t)ni * ld + nc] = NAN;
  if (nan_case == 2) V[(size_t)ni * ld + nc] = NAN;
  if (nan_case == 3) G[(size_t)ni * C + nc] = NAN;
  if (nan_case == 4) K[(size_t)ni * ld + nc] = NAN; /* every row whose window holds key ni, no other */
  const float scale = 1.0f / sqrtf((float)d);
  float *O[2];
  for (int v = 0; v < 2; v++) {
    O[v] = fbuf((size_t)N * C + 64);
    tu_poison(O[v], (size_t)N * C);
    fill_guard(O[v] + (size_t)N * C, 64);
    if (v == 0) setenv("PXDIFF_CPU_ATTN", "generic", 1);
    be->attention_local(be, 1, N, H, d, nq, nk, Q, K, V, ld, bias, scale, O[v], G, C, PX_F32);
    unsetenv("PXDIFF_CPU_ATTN");
    CHECK_MSG(guard_intact(O[v] + (size_t)N * C, 64), "attention_local N=%d d=%d wrote past its rows", N, d);
  }
  double *ref = dbuf((size_t)N * C);
  ref_attention_local_gated(N, H, d, nq, nk, Q, K, V, ld, bias, scale, G, ref);
  /* NaN exactly where the reference has NaN; elsewhere the relative error of the rest */
  size_t nan_mismatch = 0, n_nan = 0, same = 0;
  double num = 0, den = 0;
  for (size_t k = 0; k < (size_t)N * C; k++) {
    const int rn = isnan(ref[k]);
    n_nan += rn;
    nan_mismatch += rn != (isnan(O[1][k]) != 0);
    same += !memcmp(&O[0][k], &O[1][k], sizeof(float));
    if (!rn) {
      num += (O[1][k] - ref[k]) * (O[1][k] - ref[k]);
      den += ref[k] * ref[k];
    }
  }
  const double e = sqrt(num / (den > 0 ? den : 1));
  CHECK_MSG(nan_mismatch == 0, "attention_local N=%d H=%d d=%d nan case %d: %zu outputs NaN in one of kernel and reference only",
            N, H, d, nan_case, nan_mismatch);
  CHECK_MSG(!(e > TOL), "attention_local N=%d H=%d d=%d nk=%d ld=%d gated, nan case %d: rel err %.3g", N, H, d, nk, ld,
            nan_case, e);
  CHECK_MSG(same == (size_t)N * C, "attention_local N=%d H=%d d=%d nan case %d: %zu outputs differ from the generic kernel's bits",
            N, H, d, nan_case, (size_t)N * C - same);
  /* the NaN cases must poison something, or they test nothing */
  if (nan_case) CHECK_MSG(n_nan > 0, "nan case %d made no NaN", nan_case);
  else CHECK(n_nan == 0);
  free(Q), free(K), free(V), free(G), free(bias), free(O[0]), free(O[1]), free(ref);
}

static void test_attention_kernels(void) {
  const int cases[][6] = {/* N, H, d, nq, nk, ld_pad */
                          {1, 1, 32, 32, 128, 0},   {5, 4, 32, 32, 128, 0},   {39, 4, 32, 32, 128, 3},
                          {77, 2, 32, 32, 128, 0},  {130, 4, 32, 32, 128, 1}, {301, 4, 32, 32, 128, 0},
                          {96, 3, 16, 32, 128, 0},  {61, 2, 48, 32, 128, 5},  {200, 2, 64, 32, 128, 0},
                          {45, 3, 16, 16, 48, 2},   {70, 2, 8, 32, 128, 0},   {50, 2, 32, 8, 24, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int *c = cases[i];
    for (int nan_case = 0; nan_case < 5; nan_case++)
      run_attention_kernels(c[0], c[1], c[2], c[3], c[4], c[5], nan_case);
  }
}

/* attention_full through the same kernels: bit for bit against the generic one (which
 * test_attention_full checks against float64), with the gate and a NaN query. */
static void test_attention_full_kernels(void) {
  const int cases[][4] = {/* S, T, H, d */ {1, 1, 1, 16}, {2, 45, 3, 48}, {1, 80, 4, 32}, {2, 33, 2, 64}, {1, 17, 2, 8}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int S = cases[i][0], T = cases[i][1], H = cases[i][2], d = cases[i][3], C = H * d;
    const size_t rows = (size_t)S * T;
    float *Q = frand(rows * C, 1.0), *K = frand(rows * C, 1.0), *V = frand(rows * C, 1.0);
    float *G = frand(rows * C, 1.5), *bias = frand((size_t)H * T * T, 2.0);
    if (T > 3) Q[(size_t)2 * C + 1] = NAN;
    float *O[2];
    for (int v = 0; v < 2; v++) {
      O[v] = fbuf(rows * C);
      tu_poison(O[v], rows * C);
      if (v == 0) setenv("PXDIFF_CPU_ATTN", "generic", 1);
      be->attention_full(be, S, T, H, d, Q, K, V, C, bias, 1.0f / sqrtf((float)d), O[v], G, C, PX_F32);
      unsetenv("PXDIFF_CPU_ATTN");
    }
    size_t nan = 0;
    for (size_t k = 0; k < rows * C; k++) nan += isnan(O[1][k]) != 0;
    CHECK_MSG(!memcmp(O[0], O[1], sizeof(float) * rows * C), "attention_full S=%d T=%d H=%d d=%d: kernels differ", S, T, H, d);
    CHECK_MSG(nan == (T > 3 ? (size_t)d : 0), "attention_full T=%d d=%d: %zu NaN outputs", T, d, nan);
    free(Q), free(K), free(V), free(G), free(bias), free(O[0]), free(O[1]);
  }
}

/* -------------------------------------------------------------- activation -- */
static void test_activation(void) {
  const int n = 20011;
  float *X = fbuf(n), *Y = fbuf(n);
  double *ref = dbuf(n);
  /* sigmoid over [-120, 120] */
  for (int i = 0; i < n; i++) X[i] = (float)(-120.0 + 240.0 * tu_uniform());
  X[0] = 0.0f, X[1] = -87.0f, X[2] = 88.0f, X[3] = -120.0f, X[4] = 120.0f, X[5] = 1e-8f;
  memcpy(Y, X, sizeof(float) * n);
  be->activation(be, n, Y, PX_ACT_SIGMOID);
  int bad = 0, nonfinite = 0;
  double worst = 0;
  for (int i = 0; i < n; i++) {
    ref[i] = dsigmoid((double)X[i]);
    if (!isfinite(Y[i])) nonfinite++;
    double err = fabs(Y[i] - ref[i]);
    /* where sigmoid is a normal float, relative error; below (x < -87) absolute */
    if (X[i] >= -86.0f) {
      double rel = err / ref[i];
      if (rel > worst) worst = rel;
      if (rel > 2e-6) bad++;
    } else if (err > 1e-37) {
      bad++;
    }
  }
  CHECK_MSG(nonfinite == 0, "sigmoid: %d non-finite outputs", nonfinite);
  CHECK_MSG(bad == 0, "sigmoid: %d values out of tolerance (worst rel %.3g)", bad, worst);
  double e = tu_rel_err_fd(Y, ref, n);
  CHECK_MSG(e <= TOL, "sigmoid activation: rel err %.3g", e);
  printf("sigmoid over [-120, 120]: worst rel err %.3g where normal\n", worst);

  /* relu, odd n */
  for (int i = 0; i < n; i++) X[i] = (float)tu_normal();
  X[7] = -0.0f;
  memcpy(Y, X, sizeof(float) * n);
  be->activation(be, n - 2, Y, PX_ACT_RELU);
  int relu_ok = 1;
  for (int i = 0; i < n - 2; i++) relu_ok &= Y[i] == (X[i] > 0 ? X[i] : 0.0f);
  relu_ok &= Y[n - 2] == X[n - 2] && Y[n - 1] == X[n - 1]; /* beyond n untouched */
  CHECK_MSG(relu_ok, "relu mismatch");
  /* n = 0 and n = 1 */
  float one = -3.0f;
  be->activation(be, 0, &one, PX_ACT_RELU);
  CHECK(one == -3.0f);
  be->activation(be, 1, &one, PX_ACT_RELU);
  CHECK(one == 0.0f);
  one = 2.0f;
  be->activation(be, 1, &one, PX_ACT_SIGMOID);
  CHECK(fabs(one - dsigmoid(2.0)) <= 1e-6 * dsigmoid(2.0));
  free(X), free(Y), free(ref);
}

/* ---------------------------------------------------------------- mathfn -- */
static void test_expf(void) {
  /* dense sweep over [-87, 88] plus random points and the ends */
  const int n = 2000001;
  double worst = 0, worst_x = 0;
  int bad = 0;
  for (int i = 0; i < n + 20000; i++) {
    float x = i < n ? (float)(-87.0 + 175.0 * i / (n - 1)) : (float)(-87.0 + 175.0 * tu_uniform());
    if (i == n) x = -87.0f;
    if (i == n + 1) x = 88.0f;
    if (i == n + 2) x = 0.0f;
    if (i == n + 3) x = -0.0f;
    if (i == n + 4) x = 1e-30f;
    if (i == n + 5) x = 0.69314718f;
    float y = px_expf(x);
    double r = exp((double)x);
    double rel = fabs(y - r) / r;
    if (!(rel < 1e-6)) {
      if (bad < 5) fprintf(stderr, "px_expf(%.9g) = %.9g, exp = %.17g, rel %.3g\n", x, y, r, rel);
      bad++;
    }
    if (rel > worst || rel != rel) worst = rel, worst_x = x;
  }
  CHECK_MSG(bad == 0, "px_expf: %d points with rel err >= 1e-6 (worst %.3g at %.9g)", bad, worst, worst_x);
  printf("px_expf over [-87, 88]: worst rel err %.3g at x = %.9g\n", worst, worst_x);
  /* clamping: finite beyond the range, monotone at the ends */
  CHECK(isfinite(px_expf(1000.0f)) && px_expf(1000.0f) >= px_expf(88.0f));
  CHECK(px_expf(-1000.0f) >= 0.0f && px_expf(-1000.0f) <= px_expf(-87.0f));
  /* px_sigmoidf and px_siluf over a wide range */
  double ws = 0, wl = 0;
  int sbad = 0;
  for (int i = 0; i < 400001; i++) {
    float x = (float)(-100.0 + 200.0 * i / 400000.0);
    double s = dsigmoid(x), ys = px_sigmoidf(x), yl = px_siluf(x);
    if (!isfinite(ys) || !isfinite(yl)) {
      sbad++;
      continue;
    }
    if (x >= -86.0f) {
      const double lref = x * s;
      double rs = fabs(ys - s) / s, rl = lref != 0.0 ? fabs(yl - lref) / fabs(lref) : fabs(yl);
      if (rs > ws) ws = rs;
      if (rl > wl) wl = rl;
      if (rs > 2e-6 || rl > 2e-6) sbad++;
    } else if (fabs(ys - s) > 1e-37 || fabs(yl - x * s) > 1e-35) {
      sbad++;
    }
  }
  CHECK_MSG(sbad == 0, "px_sigmoidf/px_siluf: %d bad points (worst rel %.3g / %.3g)", sbad, ws, wl);
  printf("px_sigmoidf / px_siluf over [-86, 100]: worst rel err %.3g / %.3g\n", ws, wl);
}

/* --------------------------------------------------------- atoms <-> tokens -- */
/* Random ascending atom_to_token over T tokens; some tokens (including the first and
 * last when asked) get no atoms. Returns N. */
static int make_a2t(int T, int64_t **out, float **inv_count, int empty_ends) {
  int *cnt = calloc((size_t)T, sizeof(int));
  int N = 0;
  for (int t = 0; t < T; t++) {
    double u = tu_uniform();
    cnt[t] = u < 0.25 ? 0 : 1 + (int)(14 * tu_uniform());
    if (empty_ends && (t == 0 || t == T - 1) && T > 2) cnt[t] = 0;
    N += cnt[t];
  }
  if (N == 0) cnt[T / 2] = 3, N = 3;
  int64_t *a2t = malloc(sizeof(int64_t) * (size_t)N);
  float *inv = fbuf((size_t)T);
  int n = 0;
  for (int t = 0; t < T; t++) {
    for (int k = 0; k < cnt[t]; k++) a2t[n++] = t;
    inv[t] = cnt[t] ? 1.0f / (float)cnt[t] : 0.0f;
  }
  free(cnt);
  *out = a2t;
  *inv_count = inv;
  return N;
}

static void test_atoms_tokens(void) {
  const int cases[][3] = {/* S, T, C */ {1, 1, 1}, {1, 5, 3}, {2, 9, 17}, {3, 20, 64}, {1, 40, 768}, {2, 3, 5}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int S = cases[ci][0], T = cases[ci][1], C = cases[ci][2];
    for (int empty_ends = 0; empty_ends < 2; empty_ends++) {
      int64_t *a2t;
      float *inv;
      const int N = make_a2t(T, &a2t, &inv, empty_ends);
      /* atoms_to_tokens */
      float *X = frand((size_t)S * N * C, 1.0);
      double *ref = dbuf((size_t)S * T * C);
      for (int s = 0; s < S; s++)
        for (int n = 0; n < N; n++)
          for (int c = 0; c < C; c++)
            ref[((size_t)s * T + a2t[n]) * C + c] += X[((size_t)s * N + n) * C + c];
      int has_empty = 0;
      for (int s = 0; s < S; s++)
        for (int t = 0; t < T; t++) {
          if (inv[t] == 0.0f) has_empty = 1;
          for (int c = 0; c < C; c++) ref[((size_t)s * T + t) * C + c] *= inv[t];
        }
      float *Y = fbuf((size_t)S * T * C);
      tu_poison(Y, (size_t)S * T * C);
      be->atoms_to_tokens(be, S, N, T, C, X, a2t, inv, Y);
      /* against the terms' size inv * sum |x| (rel_err_terms): few atoms whose sum cancels */
      double *mag = dbuf((size_t)S * T * C);
      for (int s = 0; s < S; s++)
        for (int n = 0; n < N; n++)
          for (int c = 0; c < C; c++)
            mag[((size_t)s * T + a2t[n]) * C + c] += fabs((double)X[((size_t)s * N + n) * C + c]) * inv[a2t[n]];
      const double e = rel_err_terms(Y, ref, mag, (size_t)S * T * C);
      free(mag);
      CHECK_MSG(e <= TOL && !isnan(e), "atoms_to_tokens S=%d N=%d T=%d C=%d: rel err %.3g", S, N, T, C, e);
      /* tokens without atoms give exactly 0 */
      int zeros_ok = 1;
      for (int s = 0; s < S; s++)
        for (int t = 0; t < T; t++)
          if (inv[t] == 0.0f)
            for (int c = 0; c < C; c++) zeros_ok &= Y[((size_t)s * T + t) * C + c] == 0.0f;
      CHECK_MSG(zeros_ok, "atoms_to_tokens: a token with no atoms is not 0 (T=%d)", T);
      (void)has_empty;

      /* tokens_to_atoms_add, a_samples = 1 and = S */
      for (int mode = 0; mode < 2; mode++) {
        const int as = mode ? S : 1;
        float *A = frand((size_t)as * T * C, 1.0), *Ya = frand((size_t)S * N * C, 1.0);
        double *r2 = dbuf((size_t)S * N * C);
        for (int s = 0; s < S; s++)
          for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
              r2[((size_t)s * N + n) * C + c] =
                  (double)Ya[((size_t)s * N + n) * C + c] + A[((size_t)(s % as) * T + a2t[n]) * C + c];
        be->tokens_to_atoms_add(be, S, N, T, C, as, A, a2t, Ya);
        double e2 = tu_rel_err_fd(Ya, r2, (size_t)S * N * C);
        CHECK_MSG(e2 <= TOL, "tokens_to_atoms_add S=%d N=%d T=%d C=%d a_samples=%d: rel err %.3g", S, N,
                  T, C, as, e2);
        free(A), free(Ya), free(r2);
      }
      free(a2t), free(inv), free(X), free(ref), free(Y);
    }
  }
}

/* ---------------------------------------------------------------- add_rows -- */
static void test_add_rows(void) {
  const int cases[][3] = {{1, 1, 1}, {7, 1, 5}, {12, 4, 33}, {12, 12, 64}, {60, 20, 128}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int M = cases[i][0], a_rows = cases[i][1], C = cases[i][2];
    float *Y = frand((size_t)M * C, 1.0), *A = frand((size_t)a_rows * C, 1.0);
    double *ref = dbuf((size_t)M * C);
    for (int r = 0; r < M; r++)
      for (int c = 0; c < C; c++)
        ref[(size_t)r * C + c] = (double)Y[(size_t)r * C + c] + A[(size_t)(r % a_rows) * C + c];
    be->add_rows(be, M, C, Y, A, a_rows);
    double e = tu_rel_err_fd(Y, ref, (size_t)M * C);
    CHECK_MSG(e <= TOL, "add_rows M=%d a_rows=%d C=%d: rel err %.3g", M, a_rows, C, e);
    free(Y), free(A), free(ref);
  }
}

/* ------------------------------------------- per-design feature embeddings -- */
static void test_copy_cols(void) {
  const int cases[][4] = {/* M, C, ldx, ldy */ {1, 1, 1, 1}, {7, 3, 5, 9}, {33, 17, 17, 40}, {5, 64, 70, 128}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int M = cases[i][0], C = cases[i][1], ldx = cases[i][2], ldy = cases[i][3];
    float *X = frand((size_t)M * ldx, 1.0), *Y = fbuf((size_t)M * ldy);
    fill_guard(Y, (size_t)M * ldy);
    be->copy_cols(be, M, C, X, ldx, Y, ldy);
    int ok = 1;
    for (int r = 0; r < M; r++)
      for (int c = 0; c < C; c++) ok &= Y[(size_t)r * ldy + c] == X[(size_t)r * ldx + c];
    CHECK_MSG(ok, "copy_cols M=%d C=%d ldx=%d ldy=%d: a value differs", M, C, ldx, ldy);
    CHECK_MSG(stride_gaps_intact(Y, M, C, ldy), "copy_cols M=%d C=%d wrote past C of ldy=%d", M, C, ldy);
    free(X), free(Y);
  }
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static void test_relpos_linear(void) {
  const int cases[][5] = {/* T, C, rmax, smax, chunk */ {1, 8, 32, 2, 1}, {5, 3, 2, 1, 7}, {37, 16, 32, 2, 100},
                          {23, 128, 4, 2, 529}, {60, 33, 32, 2, 611}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int T = cases[ci][0], C = cases[ci][1], rmax = cases[ci][2], smax = cases[ci][3], chunk = cases[ci][4];
    const int nr = 2 * rmax + 2, K = 2 * nr + 1 + 2 * smax + 2, ldy = C + 3;
    int64_t *ix = malloc(sizeof(int64_t) * 5 * (size_t)T);
    int64_t *chain = ix, *res = ix + T, *ent = ix + 2 * T, *tok = ix + 3 * T, *sym = ix + 4 * T;
    /* a few chains and entities, residues with repeats and gaps wider than rmax, symmetric copies */
    for (int t = 0; t < T; t++) {
      chain[t] = (int64_t)(tu_u64() % 3);
      ent[t] = chain[t] == 2 ? 0 : chain[t];
      res[t] = (int64_t)(tu_u64() % (uint64_t)(3 * rmax + 3)) - rmax;
      tok[t] = (int64_t)(tu_u64() % (uint64_t)(3 * rmax + 3));
      sym[t] = (int64_t)(tu_u64() % (uint64_t)(2 * smax + 4));
    }
    float *W = frand((size_t)C * K, 1.0);
    const int64_t TT = (int64_t)T * T;
    double *ref = dbuf((size_t)TT * C);
    for (int64_t ij = 0; ij < TT; ij++) {
      const int i = (int)(ij / T), j = (int)(ij % T);
      const int sc = chain[i] == chain[j], sr = res[i] == res[j], se = ent[i] == ent[j];
      const int64_t a = sc ? clamp64(res[i] - res[j] + rmax, 0, 2 * rmax) : 2 * rmax + 1;
      const int64_t tt = sc && sr ? clamp64(tok[i] - tok[j] + rmax, 0, 2 * rmax) : 2 * rmax + 1;
      const int64_t e = se ? clamp64(sym[i] - sym[j] + smax, 0, 2 * smax) : 2 * smax + 1;
      for (int c = 0; c < C; c++) {
        const float *w = W + (size_t)c * K;
        ref[(size_t)ij * C + c] = (double)w[a] + w[nr + tt] + (se ? (double)w[2 * nr] : 0.0) + w[2 * nr + 1 + e];
      }
    }
    float *Y = fbuf((size_t)TT * ldy);
    fill_guard(Y, (size_t)TT * ldy);
    for (int r = 0; r < TT; r++) tu_poison(Y + (size_t)r * ldy, (size_t)C);
    for (int64_t r0 = 0; r0 < TT; r0 += chunk) {
      const int rows = (int)(TT - r0 < chunk ? TT - r0 : chunk);
      be->relpos_linear(be, T, r0, rows, C, rmax, smax, chain, res, ent, tok, sym, W, Y + (size_t)r0 * ldy, ldy);
    }
    float *y = gather(Y, (int)TT, C, ldy);
    double err = tu_rel_err_fd(y, ref, (size_t)TT * C);
    CHECK_MSG(err <= TOL, "relpos_linear T=%d C=%d rmax=%d smax=%d chunk=%d: rel err %.3g", T, C, rmax, smax, chunk,
              err);
    CHECK_MSG(stride_gaps_intact(Y, (int)TT, C, ldy), "relpos_linear T=%d C=%d wrote past C", T, C);
    free(ix), free(W), free(ref), free(Y), free(y);
  }
}

static void test_atom_ref_embed(void) {
  const int cases[][4] = {/* N, C, na, nb */ {1, 8, 1, 0}, {7, 5, 3, 4}, {65, 128, 128, 256}, {30, 17, 0, 9}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int N = cases[ci][0], C = cases[ci][1], na = cases[ci][2], nb = cases[ci][3], cf = 1 + na + nb;
    float *pos = frand((size_t)N * 3, 3.0), *q = frand((size_t)N, 1.0), *mask = fbuf((size_t)N);
    float *A = fbuf((size_t)N * (na ? na : 1)), *B = fbuf((size_t)N * (nb ? nb : 1));
    for (int n = 0; n < N; n++) {
      mask[n] = (tu_u64() % 5) ? 1.0f : 0.0f;
      for (int e = 0; e < na; e++) A[(size_t)n * na + e] = 0.0f;
      for (int e = 0; e < nb; e++) B[(size_t)n * nb + e] = 0.0f;
      if (na) A[(size_t)n * na + tu_u64() % (uint64_t)na] = 1.0f;
      for (int k = 0; k < 4 && nb; k++) B[(size_t)n * nb + tu_u64() % (uint64_t)nb] = (float)(1 + k); /* not only 1s */
    }
    float *Wp = frand((size_t)C * 3, 0.5), *Wq = frand((size_t)C, 0.5), *Wf = frand((size_t)C * cf, 0.5);
    double *ref = dbuf((size_t)N * C);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < C; o++) {
        double s = (double)Wp[o * 3] * pos[n * 3] + (double)Wp[o * 3 + 1] * pos[n * 3 + 1] +
                   (double)Wp[o * 3 + 2] * pos[n * 3 + 2] + (double)Wq[o] * asinh((double)q[n]) +
                   (double)Wf[(size_t)o * cf] * mask[n];
        for (int e = 0; e < na; e++) s += (double)Wf[(size_t)o * cf + 1 + e] * A[(size_t)n * na + e];
        for (int e = 0; e < nb; e++) s += (double)Wf[(size_t)o * cf + 1 + na + e] * B[(size_t)n * nb + e];
        ref[(size_t)n * C + o] = s * mask[n];
      }
    float *Y = fbuf((size_t)N * C);
    tu_poison(Y, (size_t)N * C);
    be->atom_ref_embed(be, N, C, pos, q, mask, A, na, B, nb, Wp, Wq, Wf, Y);
    double err = tu_rel_err_fd(Y, ref, (size_t)N * C);
    CHECK_MSG(err <= TOL, "atom_ref_embed N=%d C=%d na=%d nb=%d: rel err %.3g", N, C, na, nb, err);
    free(pos), free(q), free(mask), free(A), free(B), free(Wp), free(Wq), free(Wf), free(ref), free(Y);
  }
}

/* The pair pass in float64, straight from backend.h's definition: row by row, no tiles. */
static void ref_atom_pair(int N, int T, int C, int nq, int nk, const float *pos, const int64_t *uid,
                          const int64_t *tok, const float *cl, const float *cm, const float *zp, const float *Wd,
                          const float *Wi, const float *Wv, const float *M1, const float *M2, const float *M3, int nh,
                          const float *Wh, double *bias, double *p) {
  const int64_t P = (int64_t)((N + nq - 1) / nq) * nq * nk;
  double x[64], h[64], g[64];
  for (int64_t row = 0; row < P; row++) {
    const int qa = (int)(row / nk), j = (int)(row % nk), trunk = qa / nq;
    const int ka = trunk * nq - (nk - nq) / 2 + j;
    const int qr = qa < N, kr = ka >= 0 && ka < N;
    double pq[3] = {0, 0, 0}, pk[3] = {0, 0, 0};
    int64_t uq = 0, uk = 0, tq = 0, tk = 0;
    for (int d = 0; d < 3; d++) {
      if (qr) pq[d] = pos[(size_t)qa * 3 + d];
      if (kr) pk[d] = pos[(size_t)ka * 3 + d];
    }
    if (qr) uq = uid[qa], tq = tok[qa];
    if (kr) uk = uid[ka], tk = tok[ka];
    const double v = uq == uk, m = qr && kr ? v : 0.0;
    const double dv[3] = {pq[0] - pk[0], pq[1] - pk[1], pq[2] - pk[2]};
    const double invd = 1.0 / (1.0 + dv[0] * dv[0] + dv[1] * dv[1] + dv[2] * dv[2]) * v;
    for (int o = 0; o < C; o++) {
      double s = ((double)Wd[o * 3] * dv[0] + (double)Wd[o * 3 + 1] * dv[1] + (double)Wd[o * 3 + 2] * dv[2]) * m;
      s += (double)Wi[o] * invd + (double)Wv[o] * v;
      if (zp) s += zp[((size_t)tq * T + (size_t)tk) * C + o];
      if (qr) s += cl[(size_t)qa * C + o];
      if (kr) s += cm[(size_t)ka * C + o];
      x[o] = s;
    }
    const float *Ms[3] = {M1, M2, M3};
    for (int o = 0; o < C; o++) h[o] = x[o] > 0 ? x[o] : 0;
    for (int l = 0; l < 3; l++) {
      for (int o = 0; o < C; o++) {
        double s = 0;
        for (int i = 0; i < C; i++) s += (double)Ms[l][(size_t)o * C + i] * h[i];
        g[o] = s;
      }
      for (int o = 0; o < C; o++) h[o] = l < 2 ? (g[o] > 0 ? g[o] : 0) : g[o];
    }
    for (int o = 0; o < C; o++) x[o] += h[o];
    if (p)
      for (int o = 0; o < C; o++) p[(size_t)row * C + o] = x[o];
    double mean = 0, var = 0;
    for (int o = 0; o < C; o++) mean += x[o];
    mean /= C;
    for (int o = 0; o < C; o++) var += (x[o] - mean) * (x[o] - mean);
    const double rs = 1.0 / sqrt(var / C + 1e-5);
    for (int hh = 0; hh < nh; hh++) {
      double s = 0;
      for (int i = 0; i < C; i++) s += (double)Wh[(size_t)hh * C + i] * (x[i] - mean) * rs;
      bias[(size_t)hh * P + row] = s;
    }
  }
}

static void test_atom_pair_bias(void) {
  const int cases[][6] = {/* N, T, C, nq, nk, nh */ {1, 1, 1, 32, 128, 1},  {37, 9, 16, 32, 128, 24},
                          {70, 20, 5, 8, 16, 7},  {100, 31, 17, 32, 128, 12}, {33, 4, 64, 16, 48, 3}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (int with_z = 0; with_z < 2; with_z++) {
      const int N = cases[ci][0], T = cases[ci][1], C = cases[ci][2], nq = cases[ci][3], nk = cases[ci][4];
      const int nh = cases[ci][5];
      const int64_t P = (int64_t)((N + nq - 1) / nq) * nq * nk;
      float *pos = frand((size_t)N * 3, 2.0), *cl = frand((size_t)N * C, 1.0), *cm = frand((size_t)N * C, 1.0);
      float *zp = with_z ? frand((size_t)T * T * C, 1.0) : NULL;
      int64_t *uid = malloc(sizeof(int64_t) * (size_t)N), *tok = malloc(sizeof(int64_t) * (size_t)N);
      int64_t u = 0, t = 0;
      for (int n = 0; n < N; n++) { /* residues of a few atoms: uid and token ascending together */
        if (n && tu_u64() % 4 == 0) u++, t = t + 1 < T ? t + 1 : t;
        uid[n] = u, tok[n] = t;
      }
      const double sc = 1.0 / sqrt((double)C);
      float *Wd = frand((size_t)C * 3, 0.5), *Wi = frand((size_t)C, 1.0), *Wv = frand((size_t)C, 1.0);
      float *M1 = frand((size_t)C * C, sc), *M2 = frand((size_t)C * C, sc), *M3 = frand((size_t)C * C, sc);
      float *Wh = frand((size_t)nh * C, sc);
      float *planes = fbuf((size_t)nh * P + 8), *p = fbuf((size_t)P * C);
      tu_poison(planes, (size_t)nh * P);
      tu_poison(p, (size_t)P * C);
      fill_guard(planes + (size_t)nh * P, 8);
      float *bias[256];
      for (int h = 0; h < nh; h++) bias[h] = planes + (size_t)h * P;
      double *rb = dbuf((size_t)nh * P), *rp = dbuf((size_t)P * C);
      ref_atom_pair(N, T, C, nq, nk, pos, uid, tok, cl, cm, zp, Wd, Wi, Wv, M1, M2, M3, nh, Wh, rb, rp);
      be->atom_pair_bias(be, N, T, C, nq, nk, pos, uid, tok, cl, cm, zp, Wd, Wi, Wv, M1, M2, M3, nh, Wh, bias, p);
      const double eb = tu_rel_err_fd(planes, rb, (size_t)nh * P), ep = tu_rel_err_fd(p, rp, (size_t)P * C);
      CHECK_MSG(eb <= TOL && ep <= TOL, "atom_pair_bias N=%d T=%d C=%d nq=%d nk=%d nh=%d z=%d: rel err %.3g (planes) %.3g (p)",
                N, T, C, nq, nk, nh, with_z, eb, ep);
      CHECK_MSG(guard_intact(planes + (size_t)nh * P, 8), "atom_pair_bias wrote past the last plane");
      /* without p_out: the same planes, bit for bit */
      float *planes2 = fbuf((size_t)nh * P);
      tu_poison(planes2, (size_t)nh * P);
      for (int h = 0; h < nh; h++) bias[h] = planes2 + (size_t)h * P;
      be->atom_pair_bias(be, N, T, C, nq, nk, pos, uid, tok, cl, cm, zp, Wd, Wi, Wv, M1, M2, M3, nh, Wh, bias, NULL);
      CHECK_MSG(memcmp(planes, planes2, sizeof(float) * (size_t)nh * P) == 0,
                "atom_pair_bias N=%d C=%d: planes differ without p_out", N, C);
      free(pos), free(cl), free(cm), free(zp), free(uid), free(tok), free(Wd), free(Wi), free(Wv);
      free(M1), free(M2), free(M3), free(Wh), free(planes), free(planes2), free(p), free(rb), free(rp);
    }
}

/* ------------------------------------------------------------- allocation -- */
static void test_alloc(void) {
  size_t sizes[] = {0, 1, 63, 64, 65, 1000003};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    float *p = be->alloc(be, sizes[i]);
    CHECK_MSG(p != NULL && ((uintptr_t)p % 64) == 0, "alloc(%zu) not 64-byte aligned", sizes[i]);
    if (p && sizes[i] >= sizeof(float)) {
      float src[1] = {3.5f}, dst[1] = {0};
      be->upload(be, p, src, sizeof src);
      be->download(be, dst, p, sizeof dst);
      CHECK(dst[0] == 3.5f);
    }
    be->free(be, p);
  }
}

/* ------------------------------------------------------------- determinism -- */
static void test_threads(void) {
  const uint64_t seed0 = tu_u64();
  struct { int M, N, K; } lin[] = {{300, 700, 130}, {1000, 48, 768}, {37, 2304, 64}};
  for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
    const int M = lin[i].M, N = lin[i].N, K = lin[i].K;
    float *out[3];
    for (int th = 0; th < 3; th++) {
      tu_rng_state = seed0 + i;
      float *X = frand((size_t)M * K, 1.0), *W = frand((size_t)N * K, 0.1), *b = frand((size_t)N, 1.0);
      out[th] = fbuf((size_t)M * N);
      tu_poison(out[th], (size_t)M * N);
      px_set_num_threads(1 << th); /* 1, 2, 4 */
      be->linear(be, M, N, K, X, K, px_weight_f32(W), b, out[th], N, 0, 0, PX_F32, PX_F32);
      free(X), free(W), free(b);
    }
    CHECK_MSG(memcmp(out[0], out[1], sizeof(float) * (size_t)M * N) == 0 && memcmp(out[0], out[2], sizeof(float) * (size_t)M * N) == 0,
              "linear %dx%dx%d: 1, 2 and 4 threads differ", M, N, K);
    free(out[0]), free(out[1]), free(out[2]);
  }
  {
    const int S = 2, T = 70, H = 4, d = 48;
    float *out[3];
    for (int th = 0; th < 3; th++) {
      tu_rng_state = seed0 + 100;
      out[th] = fbuf((size_t)S * T * H * d + 20 * (size_t)H * d);
      px_set_num_threads(1 << th); /* 1, 2, 4 */
      run_attention_full(S, T, H, d, 0, out[th], 0);
    }
    CHECK_MSG(memcmp(out[0], out[1], sizeof(float) * (size_t)S * T * H * d) == 0 && memcmp(out[0], out[2], sizeof(float) * (size_t)S * T * H * d) == 0,
              "attention_full: 1, 2 and 4 threads differ");
    free(out[0]), free(out[1]), free(out[2]);
  }
  {
    const int S = 2, N = 301, H = 4, d = 32;
    const size_t n = (size_t)S * N * H * d + 64 * (size_t)H * d;
    float *out[3];
    for (int th = 0; th < 3; th++) {
      tu_rng_state = seed0 + 200;
      out[th] = fbuf(n);
      px_set_num_threads(1 << th); /* 1, 2, 4 */
      run_attention_local(S, N, H, d, 32, 128, 0, out[th], 0);
    }
    CHECK_MSG(memcmp(out[0], out[1], sizeof(float) * n) == 0 && memcmp(out[0], out[2], sizeof(float) * n) == 0, "attention_local: 1, 2 and 4 threads differ");
    free(out[0]), free(out[1]), free(out[2]);
  }
  {
    /* the row kernels too (static schedules, but cheap to check) */
    const int M = 517, C = 384;
    float *out[3];
    for (int th = 0; th < 3; th++) {
      tu_rng_state = seed0 + 300;
      float *X = frand((size_t)M * C, 2.0), *w = frand((size_t)C, 1.0);
      out[th] = fbuf((size_t)M * C);
      px_set_num_threads(1 << th); /* 1, 2, 4 */
      be->layernorm(be, M, C, X, w, NULL, out[th]);
      be->activation(be, (int64_t)M * C, out[th], PX_ACT_SIGMOID);
      free(X), free(w);
    }
    CHECK_MSG(memcmp(out[0], out[1], sizeof(float) * (size_t)M * C) == 0 && memcmp(out[0], out[2], sizeof(float) * (size_t)M * C) == 0,
              "layernorm+sigmoid: 1, 2 and 4 threads differ");
    free(out[0]), free(out[1]), free(out[2]);
  }
  px_set_num_threads(0);
}

/* --------------------------------------------------------------- contexts -- */
static void test_contexts(void) {
  px_backend *shared = px_cpu_backend();
  px_backend *a = px_backend_create(PX_DEVICE_CPU, 0, PX_PRECISION_FP32);
  px_backend *b = px_backend_create(PX_DEVICE_CPU, 0, PX_PRECISION_DEFAULT);
  CHECK(a && b && a != b && a != shared && b != shared);
  CHECK(px_backend_get(PX_DEVICE_CPU, 0, PX_PRECISION_FP32) == shared);
  if (!a || !b) return;
  CHECK(px_cpu_backend_is(a) && px_cpu_backend_is(b) && px_cpu_backend_is(shared));
  CHECK(!strcmp(a->name, "cpu") && a->device_memory == 0 && px_backend_index(a) == 0);
  CHECK(a->linear == shared->linear && a->convert == shared->convert && a->pack16 == shared->pack16);
  /* the same GEMM on the three contexts: the same bits */
  const int M = 37, N = 53, K = 160; /* K >= 128: the own GEMM kernel where there is one */
  float *X = fbuf((size_t)M * K), *W = fbuf((size_t)N * K), *bias = fbuf(N);
  float *Y[3] = {fbuf((size_t)M * N), fbuf((size_t)M * N), fbuf((size_t)M * N)};
  tu_fill_normal(X, (size_t)M * K, 1.0);
  tu_fill_normal(W, (size_t)N * K, 0.1);
  tu_fill_normal(bias, N, 1.0);
  px_backend *ctx[3] = {shared, a, b};
  for (int i = 0; i < 3; i++) {
    for (size_t j = 0; j < (size_t)M * N; j++) Y[i][j] = NAN;
    ctx[i]->linear(ctx[i], M, N, K, X, K, px_weight_f32(W), bias, Y[i], N, 0, 0, PX_F32, PX_F32);
  }
  CHECK(memcmp(Y[0], Y[1], sizeof(float) * M * N) == 0 && memcmp(Y[0], Y[2], sizeof(float) * M * N) == 0);
  CHECK(!isnan(Y[1][0]) && !isnan(Y[2][(size_t)M * N - 1]));
  for (int i = 0; i < 3; i++) free(Y[i]);
  free(X), free(W), free(bias);
  /* the kernel tests on a context of its own */
  px_backend *keep = be;
  be = a;
  test_alloc();
  test_linear();
  test_layernorm();
  test_attention_local();
  be = keep;
  px_backend_destroy(a);
  px_backend_destroy(b);
  px_backend_destroy(shared); /* a no-op: the shared context stays usable */
  CHECK(px_cpu_backend() == shared && shared->alloc != NULL);
  CHECK(px_backend_create(PX_DEVICE_CPU, 1, PX_PRECISION_FP32) == NULL && strstr(px_last_error(), "CPU"));
  CHECK(px_backend_create(PX_DEVICE_CPU, 0, PX_PRECISION_FP16) == NULL && strstr(px_last_error(), "fp16"));
}

int main(void) {
  tu_seed();
  be = px_cpu_backend();
  CHECK(be != NULL && be->name != NULL);
  test_alloc();
  test_linear();
  test_layernorm();
  test_adaln();
  test_gated_residual();
  test_sigmoid_mul();
  test_swiglu();
  test_attention_full();
  test_attention_local();
  test_attention_kernels();
  test_attention_full_kernels();
  test_activation();
  test_expf();
  test_atoms_tokens();
  test_add_rows();
  test_copy_cols();
  test_relpos_linear();
  test_atom_ref_embed();
  test_atom_pair_bias();
  test_threads();
  test_contexts();
  return tu_finish("test_cpu_kernels");
}
