/* The CPU backend's own GEMM (src/cpu/gemm.h): against a float64 reference (every K tail
 * of the vector widths, strides, bias, accumulate, ReLU), and the property the backend's
 * tiling relies on: an output's bits depend on K alone, never on the tile, microkernel
 * shape or thread that computed it. Each variant this CPU can run (AVX2, AVX-512) is
 * checked; elsewhere the test skips. Through the backend: bit-identical results for 1, 2
 * and 3 threads and for a sample alone or in a batch, with the kernel chosen. */
#include <omp.h>

#include "backend.h"
#include "pxdiff.h"
#include "cpu/gemm.h"
#include "testutil.h"

static float *frand(size_t n, double scale) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  tu_fill_normal(x, n, scale);
  return x;
}

/* Y[M, N] (ldy) by the float64 reference, then the same epilogue as the backend; mag[i, j]:
 * the sum of the magnitudes of the terms (what fp32 rounding errors scale with). */
static double *ref_gemm(int M, int N, int K, const float *X, int ldx, const float *W, const float *bias,
                        const float *Y0, int ldy, int accumulate, int relu, double **mag) {
  double *r = malloc(sizeof(double) * (size_t)M * N);
  *mag = malloc(sizeof(double) * (size_t)M * N);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0, a = 0;
      for (int k = 0; k < K; k++) {
        const double t = (double)X[(size_t)i * ldx + k] * W[(size_t)j * K + k];
        s += t;
        a += fabs(t);
      }
      if (bias) s += bias[j], a += fabs(bias[j]);
      if (accumulate) s += Y0[(size_t)i * ldy + j], a += fabs(Y0[(size_t)i * ldy + j]);
      if (relu && s < 0) s = 0;
      r[(size_t)i * N + j] = s;
      (*mag)[(size_t)i * N + j] = a;
    }
  return r;
}

static float *gather(const float *Y, int M, int N, int ldy) {
  float *g = malloc(sizeof(float) * (size_t)M * N);
  for (int i = 0; i < M; i++) memcpy(g + (size_t)i * N, Y + (size_t)i * ldy, sizeof(float) * (size_t)N);
  return g;
}

static const char *isa_name(int isa) { return isa == PX_GEMM_AVX512 ? "AVX-512" : "AVX2"; }

static void check_shape(int isa, int M, int N, int K, int pad, int with_bias, int accumulate, int relu) {
  const int ldx = K + pad, ldy = N + pad;
  float *X = frand((size_t)M * ldx, 1.0), *W = frand((size_t)N * K, 0.3), *b = frand((size_t)N, 1.0);
  float *Y = frand((size_t)M * ldy, 1.0), *Y0 = malloc(sizeof(float) * (size_t)M * ldy);
  memcpy(Y0, Y, sizeof(float) * (size_t)M * ldy);
  double *mag;
  double *ref = ref_gemm(M, N, K, X, ldx, W, with_bias ? b : NULL, Y0, ldy, accumulate, relu, &mag);
  float *ws = malloc(sizeof(float) * (px_gemm_ws_floats(N, K) + 1));
  tu_poison(ws, px_gemm_ws_floats(N, K) + 1);
  px_gemm_tile(isa, M, N, K, X, ldx, W, with_bias ? b : NULL, Y, ldy, accumulate, relu, ws);
  float *g = gather(Y, M, N, ldy);
  const double e = tu_rel_err_fd(g, ref, (size_t)M * N);
  /* Each output within a few fp32 roundings of its terms' magnitude (AVX2: 8-lane partial sums
   * and a 3-level tree, within (K/16 + 6) * 2^-24 in practice; AVX-512 with K <= 256: chunks of
   * 16 products in order, then the K/16 chunk sums in order: (K/16 + 17) * 2^-24; deeper: the
   * 16-lane dot products, (K/16 + 6) * 2^-24), and a block of at least 64
   * outputs within 1e-5 relative. Cancellation can make a single output's relative error
   * large, and so a tiny block's: at M = N = 1 one output whose terms nearly cancel gave
   * 3.7e-5 at 8e-9 of its terms' magnitude (seed 8461653442713), so there the per-output
   * bound alone decides. */
  double worst = 0;
  for (size_t i = 0; i < (size_t)M * N; i++) {
    const double d = fabs(g[i] - ref[i]) / (mag[i] > 0 ? mag[i] : 1);
    worst = d > worst || d != d ? d : worst;
  }
  const double bound = (isa == PX_GEMM_AVX512 && K <= PX_OP_MAX_K ? K / 16.0 + 17.0 : K / 16.0 + 6.0) * 5.97e-8;
  CHECK_MSG(worst <= bound && (M * N < 64 || e <= 1e-5), "%s M=%d N=%d K=%d pad=%d bias=%d acc=%d relu=%d: worst error %.3g of the "
            "terms' magnitude (bound %.3g), rel err %.3g", isa_name(isa), M, N, K, pad, with_bias, accumulate, relu,
            worst, bound, e);
  /* the padding between rows is untouched */
  int intact = 1;
  for (int i = 0; i < M; i++)
    for (int j = N; j < ldy; j++) intact &= Y[(size_t)i * ldy + j] == Y0[(size_t)i * ldy + j];
  CHECK_MSG(intact, "%s M=%d N=%d K=%d: wrote outside the [M, N] block", isa_name(isa), M, N, K);
  /* Tile independence: the same outputs cut into random tiles, bit for bit; and without the
   * workspace (the AVX-512 kernel then reads W through gathers) the same bits again. */
  float *T = malloc(sizeof(float) * (size_t)M * ldy);
  for (int pass = 0; pass < 2; pass++) {
    memcpy(T, Y0, sizeof(float) * (size_t)M * ldy);
    for (int r0 = 0; r0 < M;) {
      const int mr = 1 + (int)(tu_u64() % (uint64_t)(M - r0 < 40 ? M - r0 : 40));
      for (int c0 = 0; c0 < N;) {
        const int nc = 1 + (int)(tu_u64() % (uint64_t)(N - c0 < 70 ? N - c0 : 70));
        px_gemm_tile(isa, mr, nc, K, X + (size_t)r0 * ldx, ldx, W + (size_t)c0 * K, with_bias ? b + c0 : NULL,
                     T + (size_t)r0 * ldy + c0, ldy, accumulate, relu, pass ? NULL : ws);
        c0 += nc;
      }
      r0 += mr;
    }
    CHECK_MSG(memcmp(T, Y, sizeof(float) * (size_t)M * ldy) == 0, "%s M=%d N=%d K=%d: %s change the bits",
              isa_name(isa), M, N, K, pass ? "gathers instead of the packed W" : "tiles");
  }
  free(X), free(W), free(b), free(Y), free(Y0), free(ref), free(mag), free(g), free(T), free(ws);
}

static void test_kernel(int isa) {
  /* K around every vector width (8, 16) and the backend's depths */
  const int Ks[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 128, 256, 384, 769};
  for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++) check_shape(isa, 13, 17, Ks[i], 0, 1, 0, 0);
  const int shapes[][3] = {{1, 1, 256}, {4, 6, 64}, {3, 4, 40}, {5, 7, 300}, {49, 37, 257}, {96, 130, 768}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int v = 0; v < 8; v++)
      check_shape(isa, shapes[i][0], shapes[i][1], shapes[i][2], (v & 1) ? 5 : 0, (v >> 1) & 1, (v >> 2) & 1, v == 7);
  check_shape(isa, 30, 20, 100, 3, 1, 1, 1);
  /* a large row block: more rows than one L2 block of the tile loop */
  check_shape(isa, 200, 24, 512, 0, 0, 0, 0);
}

/* Through the backend: thread count and batch composition do not change a bit. */
static void test_backend(void) {
  px_backend *be = px_cpu_backend();
  const int S = 3, seg = 45, M = S * seg, N = 200, K = 384;
  float *X = frand((size_t)M * K, 1.0), *W = frand((size_t)N * K, 0.1), *b = frand((size_t)N, 1.0);
  float *out[3];
  for (int th = 1; th <= 3; th++) {
    out[th - 1] = malloc(sizeof(float) * (size_t)M * N);
    px_set_num_threads(th);
    be->linear(be, M, N, K, X, K, px_weight_f32(W), b, out[th - 1], N, 0, seg, PX_F32, PX_F32);
  }
  CHECK_MSG(memcmp(out[0], out[1], sizeof(float) * (size_t)M * N) == 0, "linear: 1 vs 2 threads differ");
  CHECK_MSG(memcmp(out[0], out[2], sizeof(float) * (size_t)M * N) == 0, "linear: 1 vs 3 threads differ");
  /* sample 1 alone */
  float *one = malloc(sizeof(float) * (size_t)seg * N);
  be->linear(be, seg, N, K, X + (size_t)seg * K, K, px_weight_f32(W), b, one, N, 0, seg, PX_F32, PX_F32);
  CHECK_MSG(memcmp(one, out[0] + (size_t)seg * N, sizeof(float) * (size_t)seg * N) == 0,
            "linear: a sample alone differs from the same sample in a batch");
  /* linear_relu = relu(linear) exactly */
  float *rl = malloc(sizeof(float) * (size_t)M * N);
  be->linear_relu(be, M, N, K, X, K, px_weight_f32(W), b, rl, N, seg);
  int same = 1;
  for (size_t i = 0; i < (size_t)M * N; i++) same &= rl[i] == (out[0][i] > 0.0f ? out[0][i] : 0.0f);
  CHECK_MSG(same, "linear_relu differs from max(linear, 0)");
  px_set_num_threads(0);
  free(X), free(W), free(b), free(out[0]), free(out[1]), free(out[2]), free(one), free(rl);
}

int main(void) {
  tu_seed();
#if PX_OWN_GEMM
  __builtin_cpu_init();
  int ran = 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    test_kernel(PX_GEMM_AVX2);
    ran++;
  }
  if (px_gemm_isa() == PX_GEMM_AVX512) {
    test_kernel(PX_GEMM_AVX512);
    ran++;
  }
  test_backend();
  if (!ran) return tu_skip("test_cpu_gemm", "this CPU has neither AVX2+FMA nor AVX-512 (the backend uses cblas)");
  return tu_finish("test_cpu_gemm");
#else
  return tu_skip("test_cpu_gemm", "not an x86-64 build: the backend uses cblas for every GEMM");
#endif
}
