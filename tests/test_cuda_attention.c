#define _POSIX_C_SOURCE 200809L /* setenv */
/* The tensor-core attention (src/cuda/attention_tc.cu) used by the CUDA backend's TF32,
 * BF16 and FP16 precisions (fp16 outputs: the fp16-operand kernel), against the CPU backend (fp32) on fresh random inputs at awkward
 * sizes, outputs poisoned with NaN before each run: relative error <= 2e-3 and finite.
 * The FP32 backend must still give the exact kernel (1e-5). Also prints, without
 * checking, a CPU emulation of the error that tf32 and bf16 operands give (to compare
 * with the measured tf32 error), and with PXDIFF_ATT_BENCH=1 times the model's shapes.
 * Without a GPU (or without the CUDA build) it exits 77 (skipped). */
#include "testutil.h"
#include "devutil.h"

#include "backend.h"
#include "pxdiff.h"
#ifdef PX_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#ifndef PX_HAVE_CUDA
int main(void) {
  return tu_skip("test_cuda_attention", "pxdiff was built without CUDA");
}
#else

static px_backend *cpu;

static float *rnd(size_t n, double scale) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  tu_fill_normal(x, n, scale);
  return x;
}
static float *up(px_backend *g, const float *h, size_t n) {
  float *d = g->alloc(g, sizeof(float) * (n ? n : 1));
  g->upload(g, d, h, sizeof(float) * n);
  return d;
}
static float *dev_poison(px_backend *g, size_t n) {
  float *h = malloc(sizeof(float) * (n ? n : 1));
  tu_poison(h, n);
  float *d = up(g, h, n);
  free(h);
  return d;
}
/* X as n fp16 values on g (nearest even); with round set, X then holds the values stored. */
static uint16_t *up_half(px_backend *g, float *X, size_t n, int round) {
  uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    h[i] = tu_half_bits(X[i], 2);
    if (round) X[i] = tu_half_value(h[i], 2);
  }
  uint16_t *d = g->alloc(g, sizeof(uint16_t) * (n ? n : 1));
  g->upload(g, d, h, sizeof(uint16_t) * n);
  free(h);
  return d;
}
/* Check an fp16 result on g against an fp32 reference (relative Frobenius error <= tol, no
 * CUDA error) and print its error under `what`. */
static void check16(px_backend *g, const char *what, const uint16_t *dO, const float *want, size_t n, double tol) {
  uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
  float *got = malloc(sizeof(float) * (n ? n : 1));
  g->download(g, h, dO, sizeof(uint16_t) * n);
  for (size_t i = 0; i < n; i++) got[i] = tu_half_value(h[i], 2);
  const double e = tu_rel_err_ff(got, want, n);
  CHECK_MSG(e <= tol, "%s: rel err %.3g (tol %.1g)", what, e, tol);
  CHECK_MSG(g->status(g) == 0, "%s: CUDA error %s", what, px_last_error());
  printf("  %-58s rel err %.2e\n", what, e);
  free(h);
  free(got);
}

static double compare(px_backend *g, const char *what, const float *got_dev, const float *want,
                      size_t n, double tol) {
  float *got = malloc(sizeof(float) * (n ? n : 1));
  g->download(g, got, got_dev, sizeof(float) * n);
  double e = tu_rel_err_ff(got, want, n);
  CHECK_MSG(e <= tol, "%s: rel err %.3g (tol %.1g)", what, e, tol);
  CHECK_MSG(g->status(g) == 0, "%s: CUDA error %s", what, px_last_error());
  printf("  %-58s rel err %.2e\n", what, e);
  free(got);
  return e;
}

static const char *prec_name(int p) {
  return p == PX_PRECISION_FP32 ? "fp32" : p == PX_PRECISION_TF32 ? "tf32" : "bf16";
}

/* Full attention; ld_extra widens the rows (Q, K, V at columns 0, C, 2C of a 4C+extra row). */
static void run_full(int prec, int S, int T, int H, int d, int ld_extra, double tol) {
  px_backend *g = px_cuda_backend(prec);
  const int C = H * d, ld = 4 * C + ld_extra;
  const size_t nq = (size_t)S * T * ld, no = (size_t)S * T * C, nb = (size_t)H * T * T;
  float *P = rnd(nq, 1.0), *bias = rnd(nb, 2.0), *want = malloc(sizeof(float) * no);
  float *dP = up(g, P, nq), *dbias = up(g, bias, nb), *dO = dev_poison(g, no);
  const float scale = 1.0f / sqrtf((float)d);
  cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, want, NULL, 0, PX_F32);
  g->attention_full(g, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, scale, dO, NULL, 0, PX_F32);
  char what[128];
  snprintf(what, sizeof what, "%s full S=%d T=%d H=%d d=%d ld=%d", prec_name(prec), S, T, H, d, ld);
  compare(g, what, dO, want, no, tol);
  free(P); free(bias); free(want);
  g->free(g, dP); g->free(g, dbias); g->free(g, dO);
}

/* Full attention with an fp16 output, the FP16 precision's token blocks: the fp16-operand
 * kernel (or with PXDIFF_NO_H16_ATTENTION the TF32 one); gated: times sigmoid(G), G at
 * column 3C. Output poisoned (0xFFFF, NaN) before the run. */
static void run_full16(int S, int T, int H, int d, int ld_extra, int gated, double tol) {
  px_backend *g = px_cuda_backend(PX_PRECISION_FP16);
  const int C = H * d, ld = 4 * C + ld_extra;
  const size_t nq = (size_t)S * T * ld, no = (size_t)S * T * C, nb = (size_t)H * T * T;
  float *P = rnd(nq, 1.0), *bias = rnd(nb, 2.0), *want = malloc(sizeof(float) * no);
  float *dP = up(g, P, nq), *dbias = up(g, bias, nb);
  uint16_t *dO = tu_dev_poison16(g, no);
  const float scale = 1.0f / sqrtf((float)d);
  cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, want, gated ? P + 3 * C : NULL, ld,
                      PX_F32);
  g->attention_full(g, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, scale, dO, gated ? dP + 3 * C : NULL, ld,
                    PX_F16);
  char what[128];
  snprintf(what, sizeof what, "fp16 full S=%d T=%d H=%d d=%d ld=%d%s", S, T, H, d, ld, gated ? " gated" : "");
  check16(g, what, dO, want, no, tol);
  free(P); free(bias); free(want);
  g->free(g, dP); g->free(g, dbias); g->free(g, dO);
}

/* attention_full_h16 (the FP16 precision's token blocks with fp16 [q k v g] rows): random
 * rows rounded to fp16, q's bias (qb) added in fp32, against the fp32 CPU kernel on the
 * same rounded values plus the bias. ld_extra 4 makes ld not a multiple of 8 (the
 * conversion fallback), as do d = 16 and d = 24. Output poisoned (NaN) before the run.
 * b16: also with the bias's fp16 copy (rows padded to 8 halves, or to 64 where b16 is 2; the
 * padding NaN: never read into a result), against the CPU on the rounded bias and on the
 * exact one; where the fp16-input kernel takes the shape (and T > 1: one key's weight is 1
 * whatever its bias) its bits must differ from the fp32 bias's (the copy was read), elsewhere
 * (the fallback) they must not. */
static void run_full_h16in(int S, int T, int H, int d, int ld_extra, int gated, int qb, int b16, double tol) {
  px_backend *g = px_cuda_backend(PX_PRECISION_FP16);
  CHECK_MSG(g->attention_full_h16 != NULL, "the FP16 backend has no attention_full_h16 (PXDIFF_NO_X16_QKV set?)");
  if (!g->attention_full_h16) return;
  const int C = H * d, ld = 4 * C + ld_extra, ldb = b16 == 2 ? (T + 63) / 64 * 64 : (T + 7) / 8 * 8;
  const size_t nq = (size_t)S * T * ld, no = (size_t)S * T * C, nb = (size_t)H * T * T;
  float *P = rnd(nq, 1.0), *bias = rnd(nb, 2.0), *qbias = rnd((size_t)C, 0.5), *want = malloc(sizeof(float) * no);
  uint16_t *dP = up_half(g, P, nq, 1), *dO = tu_dev_poison16(g, no);
  for (size_t r = 0; qb && r < (size_t)S * T; r++)
    for (int c = 0; c < C; c++) P[r * ld + c] += qbias[c];
  float *dbias = up(g, bias, nb), *dqb = up(g, qbias, (size_t)C);
  const float scale = 1.0f / sqrtf((float)d);
  cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, want, gated ? P + 3 * C : NULL, ld,
                      PX_F32);
  g->attention_full_h16(g, S, T, H, d, dP, dP + C, dP + 2 * C, gated ? dP + 3 * C : NULL, ld, qb ? dqb : NULL, dbias,
                        NULL, 0, scale, dO);
  char what[128];
  snprintf(what, sizeof what, "fp16-input full S=%d T=%d H=%d d=%d ld=%d%s%s", S, T, H, d, ld, gated ? " gated" : "",
           qb ? " q-bias" : "");
  check16(g, what, dO, want, no, tol);
  if (b16) {
    uint16_t *hb = malloc(sizeof(uint16_t) * (size_t)H * T * ldb);
    float *rb = malloc(sizeof(float) * nb), *want16 = malloc(sizeof(float) * no);
    for (size_t r = 0; r < (size_t)H * T; r++)
      for (int c = 0; c < ldb; c++) {
        hb[r * ldb + c] = c < T ? tu_half_bits(bias[r * T + c], 2) : 0x7e00; /* NaN padding */
        if (c < T) rb[r * T + c] = tu_half_value(hb[r * ldb + c], 2);
      }
    uint16_t *db16 = g->alloc(g, sizeof(uint16_t) * (size_t)H * T * ldb), *dO16 = tu_dev_poison16(g, no);
    g->upload(g, db16, hb, sizeof(uint16_t) * (size_t)H * T * ldb);
    cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, rb, scale, want16, gated ? P + 3 * C : NULL, ld,
                        PX_F32);
    g->attention_full_h16(g, S, T, H, d, dP, dP + C, dP + 2 * C, gated ? dP + 3 * C : NULL, ld, qb ? dqb : NULL,
                          dbias, db16, ldb, scale, dO16);
    const int kernel = (d == 32 || d == 48 || d == 64) && ld % 8 == 0; /* else the fallback, fp32 bias */
    snprintf(what, sizeof what, "  fp16 bias%s, vs the rounded bias", kernel ? "" : " (fallback)");
    check16(g, what, dO16, kernel ? want16 : want, no, tol);
    snprintf(what, sizeof what, "  fp16 bias%s, vs the exact bias", kernel ? "" : " (fallback)");
    check16(g, what, dO16, want, no, tol);
    const size_t bytes = sizeof(uint16_t) * no, at = tu_dev_first_difference(g, dO, g, dO16, bytes);
    CHECK_MSG(kernel && T > 1 ? at < bytes : at == bytes, "S=%d T=%d d=%d ld=%d: the fp16 bias %s", S, T, d, ld,
              kernel ? "changed no bit (not read?)" : "changed the fallback's result");
    free(hb); free(rb); free(want16);
    g->free(g, db16); g->free(g, dO16);
  }
  free(P); free(bias); free(qbias); free(want);
  g->free(g, dP); g->free(g, dO); g->free(g, dbias); g->free(g, dqb);
}

/* Local attention; gated: the output times sigmoid(G), G interleaved with Q (the model's
 * [q | g] rows). */
static void run_local(int prec, int S, int N, int H, int d, int nk, int gated, double tol) {
  px_backend *g = px_cuda_backend(prec);
  const int C = H * d, ld = 2 * C, nt = (N + 31) / 32;
  const size_t nqg = (size_t)S * N * ld, nb = (size_t)H * nt * 32 * nk, no = (size_t)S * N * C;
  float *QG = rnd(nqg, 1.0), *KV = rnd(nqg, 1.0), *bias = rnd(nb, 2.0), *want = malloc(sizeof(float) * no);
  float *dQG = up(g, QG, nqg), *dKV = up(g, KV, nqg), *dbias = up(g, bias, nb), *dO = dev_poison(g, no);
  const float scale = 1.0f / sqrtf((float)d);
  cpu->attention_local(cpu, S, N, H, d, 32, nk, QG, KV, KV + C, ld, bias, scale, want,
                       gated ? QG + C : NULL, ld, PX_F32);
  g->attention_local(g, S, N, H, d, 32, nk, dQG, dKV, dKV + C, ld, dbias, scale, dO,
                     gated ? dQG + C : NULL, ld, PX_F32);
  char what[128];
  snprintf(what, sizeof what, "%s local S=%d N=%d H=%d d=%d nk=%d%s", prec_name(prec), S, N, H, d, nk,
           gated ? " gated" : "");
  compare(g, what, dO, want, no, tol);
  free(QG); free(KV); free(bias); free(want);
  g->free(g, dQG); g->free(g, dKV); g->free(g, dbias); g->free(g, dO);
}

/* attention_local_h16 (the FP16 precision's atom blocks with fp16 [q g] and [k v] rows):
 * random rows rounded to fp16, q's bias added in fp32, against the fp32 CPU kernel on the
 * same rounded values plus the bias. ld_extra 4 (ld not a multiple of 8), d = 16 / 20 and
 * odd nk - 32 take the conversion fallback. Output poisoned (NaN) before the run. */
static void run_local_h16in(int S, int N, int H, int d, int nk, int ld_extra, int gated, int qb, double tol) {
  px_backend *g = px_cuda_backend(PX_PRECISION_FP16);
  CHECK_MSG(g->attention_local_h16 != NULL, "the FP16 backend has no attention_local_h16 (PXDIFF_NO_X16_QKV set?)");
  if (!g->attention_local_h16) return;
  const int C = H * d, ld = 2 * C + ld_extra, nt = (N + 31) / 32;
  const size_t nqg = (size_t)S * N * ld, nb = (size_t)H * nt * 32 * nk, no = (size_t)S * N * C;
  float *QG = rnd(nqg, 1.0), *KV = rnd(nqg, 1.0), *bias = rnd(nb, 2.0), *qbias = rnd((size_t)C, 0.5);
  float *want = malloc(sizeof(float) * no);
  uint16_t *dQG = up_half(g, QG, nqg, 1), *dKV = up_half(g, KV, nqg, 1), *dO = tu_dev_poison16(g, no);
  for (size_t r = 0; qb && r < (size_t)S * N; r++)
    for (int c = 0; c < C; c++) QG[r * ld + c] += qbias[c];
  float *dbias = up(g, bias, nb), *dqb = up(g, qbias, (size_t)C);
  const float scale = 1.0f / sqrtf((float)d);
  cpu->attention_local(cpu, S, N, H, d, 32, nk, QG, KV, KV + C, ld, bias, scale, want, gated ? QG + C : NULL, ld,
                       PX_F32);
  g->attention_local_h16(g, S, N, H, d, 32, nk, dQG, dKV, dKV + C, gated ? dQG + C : NULL, ld, qb ? dqb : NULL,
                         dbias, scale, dO);
  char what[128];
  snprintf(what, sizeof what, "fp16-input local S=%d N=%d H=%d d=%d nk=%d ld=%d%s%s", S, N, H, d, nk, ld,
           gated ? " gated" : "", qb ? " q-bias" : "");
  check16(g, what, dO, want, no, tol);
  free(QG); free(KV); free(bias); free(qbias); free(want);
  g->free(g, dQG); g->free(g, dKV); g->free(g, dO); g->free(g, dbias); g->free(g, dqb);
}

/* ---- CPU emulation of reduced-precision operands (report only) ---- */
static float round_tf32(float x) { /* cvt.rna.tf32.f32: nearest, ties away */
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  memcpy(&x, &u, 4);
  return x;
}
static float round_bf16(float x) { /* nearest even */
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}
/* Full attention with scaled Q, K, V and the unnormalised P rounded by rnd_fn, in double. */
static void emulate_full(int S, int T, int H, int d, const float *Q, const float *K,
                         const float *V, int ld, const float *bias, float scale,
                         float (*rnd_fn)(float), float *O) {
  const int C = H * d;
  double *s = malloc(sizeof(double) * T), *o = malloc(sizeof(double) * d);
  for (int sm = 0; sm < S; sm++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < T; i++) {
        const float *q = Q + ((size_t)sm * T + i) * ld + h * d;
        double mx = -INFINITY;
        for (int j = 0; j < T; j++) {
          const float *k = K + ((size_t)sm * T + j) * ld + h * d;
          double a = 0;
          for (int c = 0; c < d; c++) a += (double)rnd_fn(q[c] * scale) * rnd_fn(k[c]);
          s[j] = a + bias[((size_t)h * T + i) * T + j];
          if (s[j] > mx) mx = s[j];
        }
        double l = 0;
        for (int c = 0; c < d; c++) o[c] = 0;
        for (int j = 0; j < T; j++) {
          const double p = rnd_fn((float)exp(s[j] - mx));
          const float *v = V + ((size_t)sm * T + j) * ld + h * d;
          l += p;
          for (int c = 0; c < d; c++) o[c] += p * rnd_fn(v[c]);
        }
        for (int c = 0; c < d; c++) O[((size_t)sm * T + i) * C + h * d + c] = (float)(o[c] / l);
      }
  free(s);
  free(o);
}
static void emulation_report(void) {
  const int S = 2, T = 330, H = 16, d = 48, C = H * d, ld = 4 * C;
  const size_t nq = (size_t)S * T * ld, no = (size_t)S * T * C;
  float *P = rnd(nq, 1.0), *bias = rnd((size_t)H * T * T, 2.0);
  float *want = malloc(sizeof(float) * no), *got = malloc(sizeof(float) * no);
  const float scale = 1.0f / sqrtf((float)d);
  cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, want, NULL, 0, PX_F32);
  emulate_full(S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, round_tf32, got);
  const double e_tf = tu_rel_err_ff(got, want, no);
  emulate_full(S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, round_bf16, got);
  const double e_bf = tu_rel_err_ff(got, want, no);
  printf("  emulated operand rounding, full S=%d T=%d H=%d d=%d: tf32 %.2e, bf16 %.2e (rel err vs fp32)\n",
         S, T, H, d, e_tf, e_bf);
  free(P); free(bias); free(want); free(got);
}

/* ---- optional timing of the model's shapes (PXDIFF_ATT_BENCH=1) ---- */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static void bench(void) {
  const int reps = 50;
  { /* fp16 outputs (FP16 precision, gated as the model's): S = 10 and 100 (a design's chunk),
     * T = 150 / 330 / 620, H = 16, d = 48; fp32 inputs (attention_full) and fp16 inputs
     * (attention_full_h16, with q's bias) */
    px_backend *g = px_cuda_backend(PX_PRECISION_FP16);
    static const int Ss[] = {10, 100}, Ts[] = {150, 330, 620};
    for (int si = 0; si < 2; si++)
      for (int i = 0; i < 3; i++) {
        const int S = Ss[si], T = Ts[i], H = 16, d = 48, C = H * d, ld = 4 * C;
        const size_t nq = (size_t)S * T * ld, nb = (size_t)H * T * T;
        float *P = rnd(nq, 1.0), *bias = rnd(nb, 2.0);
        float *dP = up(g, P, nq), *dbias = up(g, bias, nb);
        uint16_t *dP16 = up_half(g, P, nq, 0), *dO = g->alloc(g, sizeof(uint16_t) * (size_t)S * T * C);
        const int ldb = (T + 7) / 8 * 8; /* the design cache's rows */
        uint16_t *db16 = g->alloc(g, sizeof(uint16_t) * (size_t)H * T * ldb);
        if (g->convert_rows) g->convert_rows(g, (int64_t)H * T, T, dbias, T, db16, ldb, PX_F16);
        for (int path = 0; path < 3; path++) {
          if (path >= 1 && !g->attention_full_h16) break;
          double t0 = 0;
          for (int r = -3; r < reps; r++) {
            if (r == 0) {
              g->sync(g);
              t0 = now_s();
            }
            if (path == 0)
              g->attention_full(g, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, 0.144f, dO, dP + 3 * C, ld, PX_F16);
            else
              g->attention_full_h16(g, S, T, H, d, dP16, dP16 + C, dP16 + 2 * C, dP16 + 3 * C, ld, dbias, dbias,
                                    path == 2 ? db16 : NULL, ldb, 0.144f, dO);
          }
          g->sync(g);
          printf("  bench fp16 attention_full gated, %s inputs%s S=%d T=%d H=%d d=%d: %.1f us/call\n",
                 path == 2 ? "fp16 bias, fp16" : path ? "fp16" : "fp32",
                 !path && getenv("PXDIFF_NO_H16_ATTENTION") ? " (tf32 kernel)" : "", S, T, H, d,
                 (now_s() - t0) / reps * 1e6);
        }
        free(P); free(bias);
        g->free(g, dP); g->free(g, dbias); g->free(g, dP16); g->free(g, dO); g->free(g, db16);
      }
    CHECK_MSG(g->status(g) == 0, "bench: CUDA error %s", px_last_error());
  }
  { /* local attention at the FP16 precision (fp16 outputs, gated, q's bias on the fp16 path):
     * fp32 inputs (attention_local) against fp16 inputs (attention_local_h16), 2320 atoms
     * with 10 samples, 1786 with 100 (a design's chunk at 330 tokens) */
    px_backend *g = px_cuda_backend(PX_PRECISION_FP16);
    static const int cases[][2] = {{10, 2320}, {100, 1786}};
    for (int ci = 0; ci < 2; ci++) {
      const int S = cases[ci][0], N = cases[ci][1], H = 4, d = 32, C = H * d, ld = 2 * C, nt = (N + 31) / 32;
      const size_t nqg = (size_t)S * N * ld, nb = (size_t)H * nt * 32 * 128;
      float *QG = rnd(nqg, 1.0), *bias = rnd(nb, 2.0);
      float *dQG = up(g, QG, nqg), *dbias = up(g, bias, nb);
      uint16_t *dQG16 = up_half(g, QG, nqg, 0), *dO = g->alloc(g, sizeof(uint16_t) * (size_t)S * N * C);
      for (int path = 0; path < 2; path++) {
        if (path == 1 && !g->attention_local_h16) break;
        double t0 = 0;
        for (int r = -3; r < reps; r++) {
          if (r == 0) {
            g->sync(g);
            t0 = now_s();
          }
          if (path == 0) /* K and V read from the [q g] rows: the same bytes as separate ones */
            g->attention_local(g, S, N, H, d, 32, 128, dQG, dQG, dQG + C, ld, dbias, 0.177f, dO, dQG + C, ld, PX_F16);
          else
            g->attention_local_h16(g, S, N, H, d, 32, 128, dQG16, dQG16, dQG16 + C, dQG16 + C, ld, dbias, dbias,
                                   0.177f, dO);
        }
        g->sync(g);
        printf("  bench fp16 attention_local gated, %s inputs S=%d N=%d H=%d d=%d: %.1f us/call\n",
               path ? "fp16" : "fp32", S, N, H, d, (now_s() - t0) / reps * 1e6);
      }
      free(QG); free(bias);
      g->free(g, dQG); g->free(g, dbias); g->free(g, dQG16); g->free(g, dO);
    }
    CHECK_MSG(g->status(g) == 0, "bench: CUDA error %s", px_last_error());
  }
  for (int prec = PX_PRECISION_FP32; prec <= PX_PRECISION_TF32; prec++) {
    px_backend *g = px_cuda_backend(prec);
    { /* full: S=10, T=330, H=16, d=48 */
      const int S = 10, T = 330, H = 16, d = 48, C = H * d, ld = 4 * C;
      const size_t nq = (size_t)S * T * ld, nb = (size_t)H * T * T;
      float *P = rnd(nq, 1.0), *bias = rnd(nb, 2.0);
      float *dP = up(g, P, nq), *dbias = up(g, bias, nb), *dO = dev_poison(g, (size_t)S * T * C);
      for (int r = 0; r < 3; r++) g->attention_full(g, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, 0.144f, dO, NULL, 0, PX_F32);
      g->sync(g);
      double t0 = now_s();
      for (int r = 0; r < reps; r++) g->attention_full(g, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, 0.144f, dO, NULL, 0, PX_F32);
      g->sync(g);
      printf("  bench %s attention_full S=%d T=%d H=%d d=%d: %.1f us/call\n", prec_name(prec), S, T, H, d,
             (now_s() - t0) / reps * 1e6);
      free(P); free(bias);
      g->free(g, dP); g->free(g, dbias); g->free(g, dO);
    }
    { /* local: S=10, N=2320, H=4, d=32 */
      const int S = 10, N = 2320, H = 4, d = 32, C = H * d, ld = 2 * C, nt = (N + 31) / 32;
      const size_t nqg = (size_t)S * N * ld, nb = (size_t)H * nt * 32 * 128;
      float *QG = rnd(nqg, 1.0), *KV = rnd(nqg, 1.0), *bias = rnd(nb, 2.0);
      float *dQG = up(g, QG, nqg), *dKV = up(g, KV, nqg), *dbias = up(g, bias, nb);
      float *dO = dev_poison(g, (size_t)S * N * C);
      for (int r = 0; r < 3; r++) g->attention_local(g, S, N, H, d, 32, 128, dQG, dKV, dKV + C, ld, dbias, 0.177f, dO, NULL, 0, PX_F32);
      g->sync(g);
      double t0 = now_s();
      for (int r = 0; r < reps; r++) g->attention_local(g, S, N, H, d, 32, 128, dQG, dKV, dKV + C, ld, dbias, 0.177f, dO, NULL, 0, PX_F32);
      g->sync(g);
      printf("  bench %s attention_local S=%d N=%d H=%d d=%d: %.1f us/call\n", prec_name(prec), S, N, H, d,
             (now_s() - t0) / reps * 1e6);
      free(QG); free(KV); free(bias);
      g->free(g, dQG); g->free(g, dKV); g->free(g, dbias); g->free(g, dO);
    }
    CHECK_MSG(g->status(g) == 0, "bench: CUDA error %s", px_last_error());
  }
}

int main(void) {
  if (px_cuda_device_count() <= 0) {
    return tu_skip("test_cuda_attention", "no CUDA device");
  }
  tu_seed();
  cpu = px_cpu_backend();
  const char *b = getenv("PXDIFF_ATT_BENCH");
  if (b && !strcmp(b, "only")) { /* the timings alone (profiling a kernel) */
    bench();
    return tu_finish("test_cuda_attention");
  }
  const double tol = 2e-3;
  /* full attention: awkward T, d in {16, 32, 48, 64}; d = 24 takes the exact fallback. The
   * launches of {10, 150, 16, 48} and {9, 190, 16, 32} take 64-query blocks on an H100 or
   * H200 (132 SMs, 228 KB of shared memory each: fewer waves than 128-query blocks,
   * attention_tc.cu), the others 128. */
  static const int full[][5] = {
      {1, 1, 2, 32, 0},   {2, 7, 3, 48, 0},   {1, 31, 2, 32, 4}, {2, 33, 4, 48, 0},
      {3, 64, 2, 48, 0},  {2, 65, 2, 64, 8},  {1, 130, 3, 16, 0}, {10, 330, 16, 48, 0},
      {1, 620, 4, 48, 4}, {2, 620, 2, 32, 0}, {2, 40, 2, 24, 0},  {1, 1, 1, 48, 4},
      {10, 150, 16, 48, 0}, {9, 190, 16, 32, 4}};
  for (size_t i = 0; i < sizeof full / sizeof full[0]; i++)
    run_full(PX_PRECISION_TF32, full[i][0], full[i][1], full[i][2], full[i][3], full[i][4], tol);
  /* local attention: trunks of 32, windows of 128 (the model's) and other widths; blocks
   * take up to 4 trunks, so also trunk counts that leave the last block part-empty (N = 129,
   * 161, 390, 500), and windows reaching past both ends of short sequences */
  static const int local[][6] = {
      {1, 1, 4, 32, 128, 0},   {2, 7, 4, 32, 128, 0},   {2, 31, 4, 32, 128, 0},  {2, 33, 4, 32, 128, 0},
      {3, 200, 4, 32, 128, 0}, {10, 2320, 4, 32, 128, 1}, {1, 96, 2, 48, 128, 0}, {1, 150, 2, 64, 128, 0},
      {2, 77, 3, 20, 128, 0},  {2, 100, 4, 32, 64, 0},  {1, 300, 2, 48, 96, 0},  {1, 50, 2, 32, 32, 0},
      {2, 129, 4, 32, 128, 1}, {2, 97, 3, 32, 96, 0},   {1, 161, 2, 48, 128, 1}, {1, 390, 2, 32, 32, 0},
      {1, 260, 2, 16, 64, 0},  {1, 65, 2, 16, 96, 0},   {1, 500, 2, 64, 128, 0}, {1, 33, 2, 64, 32, 0},
      {2, 127, 4, 32, 64, 1},  {1, 100, 2, 32, 33, 0}};
  for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
    run_local(PX_PRECISION_TF32, local[i][0], local[i][1], local[i][2], local[i][3], local[i][4], local[i][5], tol);
  /* FP16 backend, fp16 outputs: the fp16-operand kernel at the same awkward shapes (64- and
   * 128-query blocks, partial last tiles, odd T without 8-byte bias loads, wide rows),
   * gated every other shape */
  for (size_t i = 0; i < sizeof full / sizeof full[0]; i++)
    run_full16(full[i][0], full[i][1], full[i][2], full[i][3], full[i][4], (int)(i % 2), tol);
  /* FP16 backend, fp16 inputs (attention_full_h16): the same shapes, q's bias on two of three */
  for (size_t i = 0; i < sizeof full / sizeof full[0]; i++)
    run_full_h16in(full[i][0], full[i][1], full[i][2], full[i][3], full[i][4], (int)(i % 2), (int)(i % 3 != 0),
                   (int)(i % 2 == 0), tol);
  /* the model's width with T % 4 == 0, T % 4 == 2 and T odd (16-, 8- and 4-byte bias copies;
   * the fp16 bias's rows padded by 4, 6 and 5 halves, none at 64), 64- and 128-query blocks,
   * gated with q's bias, with the fp32 and the fp16 bias */
  static const int h16in[][2] = {{10, 332}, {10, 330}, {10, 331}, {3, 150}, {100, 64}, {2, 129}};
  for (size_t i = 0; i < sizeof h16in / sizeof h16in[0]; i++)
    for (int b16 = 1; b16 <= 2; b16++) run_full_h16in(h16in[i][0], h16in[i][1], 16, 48, 0, 1, 1, b16, tol);
  /* FP16 backend, fp16 inputs (attention_local_h16): the local shapes, gated with q's bias
   * on alternate shapes; ld not a multiple of 8 on every fifth */
  for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
    run_local_h16in(local[i][0], local[i][1], local[i][2], local[i][3], local[i][4], i % 5 == 4 ? 4 : 0,
                    (int)(i % 2 == 0), (int)(i % 3 != 1), tol);
  /* BF16 backend (same tensor-core path) and the exact FP32 kernel kept for fp32 */
  run_full(PX_PRECISION_BF16, 2, 330, 16, 48, 0, tol);
  run_local(PX_PRECISION_BF16, 2, 2320, 4, 32, 128, 0, tol);
  run_full(PX_PRECISION_FP32, 2, 130, 16, 48, 0, 1e-5);
  run_local(PX_PRECISION_FP32, 2, 200, 4, 32, 128, 0, 1e-5);
  emulation_report();
  if (b && *b && *b != '0') bench();
  return tu_finish("test_cuda_attention");
}
#endif
