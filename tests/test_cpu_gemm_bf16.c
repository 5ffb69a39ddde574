/* The CPU backend's bf16 GEMM kernel (src/cpu/gemm_bf16.h), on fresh random inputs each run:
 *  - px_bf16_round against a float64 statement of round-to-nearest-even to 8 bits (ties, the
 *    overflow to infinity, NaN, infinities, zeros, denormals) and px_bf16_pack's padding;
 *  - the kernel against a float64 reference of the same products with the operands rounded to
 *    bf16 (so within fp32 accumulation of the exact products: the kernel computes the right
 *    dot products), and against the float64 product of the fp32 operands (within bf16
 *    rounding of both: what a bf16 GEMM promises), at every K tail of the 32-wide step, edge
 *    blocks of the 4 x 6 microkernel, strides, bias, accumulate and ReLU;
 *  - a NaN in X gives NaN in its row, never a number;
 *  - an output's bits do not depend on the tile that computed it.
 * The same for the AMX kernel (tdpbf16ps) where this process runs it (px_bf16_kernel(); its
 * weight layout, px_bf16_pack_amx, is checked everywhere), against float64 with the bound of
 * its sequential fp32 accumulation, plus: the rows of X past a tile's (read by its 16-row
 * tiles) never reach an output, and tiles computed by 1 or several threads (each loading its
 * own tile configuration) give the same bits.
 * The kernel checks skip on a CPU without AVX512_BF16 (the rounding checks run everywhere);
 * the AMX checks say why they skip (no AMX, the OS refused it, PXDIFF_CPU_BF16_KERNEL=avx512). */
#include <float.h>

#include "cpu/gemm_bf16.h"
#include "testutil.h"

static float *frand(size_t n, double scale) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  tu_fill_normal(x, n, scale);
  return x;
}

/* bf16 nearest-even, stated in float64: the two neighbours on the 8-bit grid of x's binade. */
static float ref_round(float x) {
  if (x != x) return x;
  if (isinf(x) || x == 0) return x;
  int ex;
  frexp(fabs((double)x), &ex); /* |x| in [2^(ex-1), 2^ex) */
  if (ex < -125) ex = -125;    /* denormal binade: the grid of the smallest normal's */
  const double ulp = ldexp(1.0, ex - 8);
  const double q = fabs((double)x) / ulp, lo = floor(q);
  double r = q - lo > 0.5 ? lo + 1 : q - lo < 0.5 ? lo : (fmod(lo, 2.0) == 0 ? lo : lo + 1);
  r *= ulp;
  if (r >= ldexp(1.0, 128)) r = INFINITY; /* past bf16's largest finite value */
  return (float)(x < 0 ? -r : r);
}

static void check_rounding(void) {
  int bad = 0, n = 0;
  float first_bad = 0;
  const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 1.00390625f /* 1 + 2^-8: a tie, stays 1 */,
                           1.01171875f /* 1 + 3 * 2^-8: a tie, rounds up to 1 + 2^-6 */, 3.3895314e38f, FLT_MAX,
                           -FLT_MAX, INFINITY, -INFINITY, 1e-40f, -3e-39f, FLT_MIN, 1e-45f};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
    const float got = px_bf16_to_f32(px_bf16_round(special[i])), want = ref_round(special[i]);
    n++;
    if (!(got == want && signbit(got) == signbit(want))) bad++, first_bad = special[i];
  }
  for (int i = 0; i < 200000; i++) {
    union {
      uint32_t u;
      float f;
    } v = {(uint32_t)tu_u64()};
    if (v.f != v.f) continue;
    const float got = px_bf16_to_f32(px_bf16_round(v.f)), want = ref_round(v.f);
    n++;
    if (!(got == want)) bad++, first_bad = v.f;
  }
  CHECK_MSG(bad == 0, "px_bf16_round: %d of %d values rounded differently from nearest-even (e.g. %a)", bad, n,
            first_bad);
  const float nan = NAN;
  const float r = px_bf16_to_f32(px_bf16_round(nan));
  CHECK_MSG(r != r, "px_bf16_round(NaN) is not NaN");
  union {
    uint32_t u;
    float f;
  } snan = {0x7f800001u}; /* a NaN whose payload is all in the low half */
  const float rs = px_bf16_to_f32(px_bf16_round(snan.f));
  CHECK_MSG(rs != rs, "px_bf16_round(NaN with a low payload) is not NaN (became %g)", rs);
  /* pack: rows rounded, padding zero */
  const int N = 3, K = 45, ld = px_bf16_ld(K);
  CHECK(ld == 64);
  float *W = frand((size_t)N * K, 1.0);
  uint16_t *Wb = malloc(sizeof(uint16_t) * (size_t)N * ld);
  memset(Wb, 0xff, sizeof(uint16_t) * (size_t)N * ld);
  px_bf16_pack(N, K, W, Wb);
  int ok = 1;
  for (int j = 0; j < N; j++)
    for (int k = 0; k < ld; k++)
      ok &= k < K ? px_bf16_to_f32(Wb[j * ld + k]) == ref_round(W[j * K + k]) : Wb[j * ld + k] == 0;
  CHECK_MSG(ok, "px_bf16_pack: rows not rounded or padding not zero");
  free(W);
  free(Wb);
}

/* Float64 references: with the operands as given (exact = 0) or rounded to bf16 (exact = 1),
 * then the backend's epilogue; mag: the sum of the terms' magnitudes. */
static double *ref_gemm(int M, int N, int K, const float *X, int ldx, const float *W, const float *bias,
                        const float *Y0, int ldy, int accumulate, int relu, int rounded, double **mag) {
  double *r = malloc(sizeof(double) * (size_t)M * N);
  *mag = malloc(sizeof(double) * (size_t)M * N);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0, a = 0;
      for (int k = 0; k < K; k++) {
        double x = X[(size_t)i * ldx + k], w = W[(size_t)j * K + k];
        if (rounded) x = ref_round((float)x), w = ref_round((float)w);
        s += x * w;
        a += fabs(x * w);
      }
      if (bias) s += bias[j], a += fabs(bias[j]);
      if (accumulate) s += Y0[(size_t)i * ldy + j], a += fabs(Y0[(size_t)i * ldy + j]);
      if (relu && s < 0) s = 0;
      r[(size_t)i * N + j] = s;
      (*mag)[(size_t)i * N + j] = a;
    }
  return r;
}

/* The worst |y - ref| / mag over the block; NaN when any output is NaN (never passes). */
static double worst_err(const float *Y, int M, int N, int ldy, const double *ref, const double *mag) {
  double worst = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      const size_t t = (size_t)i * N + j;
      const double d = fabs(Y[(size_t)i * ldy + j] - ref[t]) / (mag[t] > 0 ? mag[t] : 1);
      if (d != d || d > worst) worst = d;
      if (d != d) return d;
    }
  return worst;
}

static void check_shape(int M, int N, int K, int pad, int with_bias, int accumulate, int relu) {
  const int ldx = K + pad, ldy = N + pad, ld = px_bf16_ld(K);
  float *X = frand((size_t)M * ldx, 1.0), *W = frand((size_t)N * K, 0.3), *b = frand((size_t)N, 1.0);
  float *Y = frand((size_t)M * ldy, 1.0), *Y0 = malloc(sizeof(float) * (size_t)M * ldy);
  uint16_t *Wb = malloc(sizeof(uint16_t) * (size_t)N * ld);
  memcpy(Y0, Y, sizeof(float) * (size_t)M * ldy);
  px_bf16_pack(N, K, W, Wb);
  px_gemm_bf16_tile(M, N, K, X, ldx, Wb, with_bias ? b : NULL, Y, ldy, accumulate, relu);
  double *mag_r, *mag_x;
  double *ref_r = ref_gemm(M, N, K, X, ldx, W, with_bias ? b : NULL, Y0, ldy, accumulate, relu, 1, &mag_r);
  double *ref_x = ref_gemm(M, N, K, X, ldx, W, with_bias ? b : NULL, Y0, ldy, accumulate, relu, 0, &mag_x);
  /* The rounded operands' products are exact in fp32; what remains is fp32 accumulation: per
   * lane K/32 vdpbf16ps of two roundings each, then a 4-level tree: (K/16 + 6) * 2^-24. */
  const double acc_bound = (K / 16.0 + 6.0) * 5.97e-8;
  const double e_r = worst_err(Y, M, N, ldy, ref_r, mag_r);
  CHECK_MSG(e_r <= acc_bound, "M=%d N=%d K=%d pad=%d bias=%d acc=%d relu=%d: %.3g of the terms' magnitude from "
            "the bf16 operands' exact products (bound %.3g)", M, N, K, pad, with_bias, accumulate, relu, e_r, acc_bound);
  /* Against the fp32 operands: bf16 keeps 8 significant bits, so each operand is off by at
   * most 2^-8 relative and each product by (1 + 2^-8)^2 - 1. */
  const double bf_bound = 2.0 * 0.00390625 + 0.00390625 * 0.00390625 + acc_bound;
  const double e_x = worst_err(Y, M, N, ldy, ref_x, mag_x);
  CHECK_MSG(e_x <= bf_bound, "M=%d N=%d K=%d: %.3g of the terms' magnitude from the fp32 product (bound %.3g)", M,
            N, K, e_x, bf_bound);
  int intact = 1;
  for (int i = 0; i < M; i++)
    for (int j = N; j < ldy; j++) intact &= Y[(size_t)i * ldy + j] == Y0[(size_t)i * ldy + j];
  CHECK_MSG(intact, "M=%d N=%d K=%d: wrote outside the [M, N] block", M, N, K);
  /* Tile independence: random tiles give the same bits. */
  float *Z = malloc(sizeof(float) * (size_t)M * ldy);
  memcpy(Z, Y0, sizeof(float) * (size_t)M * ldy);
  for (int r0 = 0; r0 < M;) {
    const int mr = 1 + (int)(tu_u64() % 9), rr = M - r0 < mr ? M - r0 : mr;
    for (int c0 = 0; c0 < N;) {
      const int nc = 1 + (int)(tu_u64() % 14), cc = N - c0 < nc ? N - c0 : nc;
      px_gemm_bf16_tile(rr, cc, K, X + (size_t)r0 * ldx, ldx, Wb + (size_t)c0 * ld, with_bias ? b + c0 : NULL,
                        Z + (size_t)r0 * ldy + c0, ldy, accumulate, relu);
      c0 += cc;
    }
    r0 += rr;
  }
  CHECK_MSG(memcmp(Z, Y, sizeof(float) * (size_t)M * ldy) == 0, "M=%d N=%d K=%d: other tiles, other bits", M, N, K);
  free(X), free(W), free(b), free(Y), free(Y0), free(Wb), free(Z);
  free(ref_r), free(ref_x), free(mag_r), free(mag_x);
}

/* A NaN anywhere in a row of X makes that row's outputs NaN, and only that row's. */
static void check_nan(int K) {
  const int M = 5, N = 7;
  float *X = frand((size_t)M * K, 1.0), *W = frand((size_t)N * K, 0.3), *Y = malloc(sizeof(float) * M * N);
  uint16_t *Wb = malloc(sizeof(uint16_t) * (size_t)N * px_bf16_ld(K));
  px_bf16_pack(N, K, W, Wb);
  const int row = 2, col = (int)(tu_u64() % (uint64_t)K);
  X[(size_t)row * K + col] = NAN;
  px_gemm_bf16_tile(M, N, K, X, K, Wb, NULL, Y, N, 0, 0);
  int nan_row = 1, others = 1;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      const float y = Y[i * N + j];
      if (i == row) nan_row &= y != y;
      else others &= y == y;
    }
  CHECK_MSG(nan_row && others, "K=%d: a NaN at X[%d, %d] gave NaN in its row: %d, numbers elsewhere: %d", K, row, col,
            nan_row, others);
  free(X), free(W), free(Y), free(Wb);
}

/* px_bf16_pack_amx against its statement (gemm_bf16.h): output n, value k at block n / 16, step
 * k / 32, pair row (k % 32) / 2, column n % 16, half k % 2; padding zero. No AMX needed. */
static void check_pack_amx(int N, int K) {
  const int ld = px_bf16_ld(K), N16 = (N + 15) & ~15;
  CHECK(px_bf16_amx_elems(N, K) == (size_t)N16 * ld);
  float *W = frand((size_t)N * K, 1.0);
  uint16_t *Wp = malloc(sizeof(uint16_t) * px_bf16_amx_elems(N, K));
  memset(Wp, 0xff, sizeof(uint16_t) * px_bf16_amx_elems(N, K));
  px_bf16_pack_amx(N, K, W, Wp);
  int ok = 1;
  for (int n = 0; n < N16; n++)
    for (int k = 0; k < ld; k++) {
      const uint16_t v = Wp[(size_t)(n / 16) * 16 * ld + (size_t)(k / 32) * 512 + (k % 32) / 2 * 32 + (n % 16) * 2 + k % 2];
      ok &= n < N && k < K ? px_bf16_to_f32(v) == ref_round(W[(size_t)n * K + k]) : v == 0;
    }
  CHECK_MSG(ok, "px_bf16_pack_amx N=%d K=%d: not the tiles' layout, or padding not zero", N, K);
  free(W), free(Wp);
}

/* X's bf16 rows for the AMX kernel, 16 rows more than M, those filled with NaN's bits: rows past
 * a tile's are read, and must not reach its outputs. */
static uint16_t *amx_rows(int M, int K, const float *X, int ldx) {
  const int ld = px_bf16_ld(K);
  uint16_t *Xb = malloc(sizeof(uint16_t) * (size_t)(M + 16) * ld);
  memset(Xb, 0xff, sizeof(uint16_t) * (size_t)(M + 16) * ld);
  px_bf16_convert_rows(M, K, X, ldx, Xb, ld);
  return Xb;
}

/* The product in tiles of rows (random heights, or `rows` each) and columns (multiples of 16),
 * spread over `threads` OpenMP threads. */
static void amx_tiled(int M, int N, int K, const uint16_t *Xb, const uint16_t *Wp, const float *bias, float *Y,
                      int ldy, int accumulate, int relu, int rows, int threads) {
  const int ld = px_bf16_ld(K);
  int r0s[512], n = 0;
  for (int r = 0; r < M && n < 511; n++) {
    r0s[n] = r;
    r += rows > 0 ? rows : 1 + (int)(tu_u64() % 40);
  }
  r0s[n] = M;
  const int cw = 16 * (1 + (int)(tu_u64() % 3));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int t = 0; t < n; t++)
    for (int c0 = 0; c0 < N; c0 += cw) {
      const int nc = N - c0 < cw ? N - c0 : cw;
      px_gemm_bf16_amx_tile(r0s[t + 1] - r0s[t], nc, K, Xb + (size_t)r0s[t] * ld, Wp + (size_t)c0 * ld,
                            bias ? bias + c0 : NULL, Y + (size_t)r0s[t] * ldy + c0, ldy, accumulate, relu);
    }
}

static void check_shape_amx(int M, int N, int K, int pad, int with_bias, int accumulate, int relu) {
  const int ldx = K + pad, ldy = N + pad;
  float *X = frand((size_t)M * ldx, 1.0), *W = frand((size_t)N * K, 0.3), *b = frand((size_t)N, 1.0);
  float *Y = frand((size_t)M * ldy, 1.0), *Y0 = malloc(sizeof(float) * (size_t)M * ldy);
  memcpy(Y0, Y, sizeof(float) * (size_t)M * ldy);
  uint16_t *Wp = malloc(sizeof(uint16_t) * px_bf16_amx_elems(N, K)), *Xb = amx_rows(M, K, X, ldx);
  px_bf16_pack_amx(N, K, W, Wp);
  const float *bi = with_bias ? b : NULL;
  px_gemm_bf16_amx_tile(M, N, K, Xb, Wp, bi, Y, ldy, accumulate, relu);
  double *mag_r, *mag_x;
  double *ref_r = ref_gemm(M, N, K, X, ldx, W, bi, Y0, ldy, accumulate, relu, 1, &mag_r);
  double *ref_x = ref_gemm(M, N, K, X, ldx, W, bi, Y0, ldy, accumulate, relu, 0, &mag_x);
  /* Exact products of the rounded operands, added one after another into one fp32 value (at
   * most one rounding each: the padded K's ld of them), then bias and Y: (ld + 2) * 2^-24. */
  const double acc_bound = (px_bf16_ld(K) + 2.0) * 5.97e-8;
  const double e_r = worst_err(Y, M, N, ldy, ref_r, mag_r);
  CHECK_MSG(e_r <= acc_bound, "AMX M=%d N=%d K=%d pad=%d bias=%d acc=%d relu=%d: %.3g of the terms' magnitude from "
            "the bf16 operands' exact products (bound %.3g)", M, N, K, pad, with_bias, accumulate, relu, e_r, acc_bound);
  const double bf_bound = 2.0 * 0.00390625 + 0.00390625 * 0.00390625 + acc_bound;
  const double e_x = worst_err(Y, M, N, ldy, ref_x, mag_x);
  CHECK_MSG(e_x <= bf_bound, "AMX M=%d N=%d K=%d: %.3g of the terms' magnitude from the fp32 product (bound %.3g)",
            M, N, K, e_x, bf_bound);
  int intact = 1;
  for (int i = 0; i < M; i++)
    for (int j = N; j < ldy; j++) intact &= Y[(size_t)i * ldy + j] == Y0[(size_t)i * ldy + j];
  CHECK_MSG(intact, "AMX M=%d N=%d K=%d: wrote outside the [M, N] block", M, N, K);
  /* Other tiles, one thread or four (each its own tile configuration): the same bits. */
  float *Z = malloc(sizeof(float) * (size_t)M * ldy);
  for (int threads = 1; threads <= 4; threads += 3) {
    memcpy(Z, Y0, sizeof(float) * (size_t)M * ldy);
    amx_tiled(M, N, K, Xb, Wp, bi, Z, ldy, accumulate, relu, threads == 1 ? 0 : 16, threads);
    CHECK_MSG(memcmp(Z, Y, sizeof(float) * (size_t)M * ldy) == 0, "AMX M=%d N=%d K=%d: other tiles (%d threads), "
              "other bits", M, N, K, threads);
  }
  free(X), free(W), free(b), free(Y), free(Y0), free(Wp), free(Xb), free(Z);
  free(ref_r), free(ref_x), free(mag_r), free(mag_x);
}

/* A NaN in a row of X: NaN in that row's outputs only; a NaN in a row of W: in its column only. */
static void check_nan_amx(int K) {
  const int M = 37, N = 40;
  float *X = frand((size_t)M * K, 1.0), *W = frand((size_t)N * K, 0.3), *Y = malloc(sizeof(float) * M * N);
  const int row = (int)(tu_u64() % M), col = (int)(tu_u64() % N);
  X[(size_t)row * K + tu_u64() % (uint64_t)K] = NAN;
  W[(size_t)col * K + tu_u64() % (uint64_t)K] = NAN;
  uint16_t *Wp = malloc(sizeof(uint16_t) * px_bf16_amx_elems(N, K)), *Xb = amx_rows(M, K, X, K);
  px_bf16_pack_amx(N, K, W, Wp);
  px_gemm_bf16_amx_tile(M, N, K, Xb, Wp, NULL, Y, N, 0, 0);
  int ok = 1;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      const float y = Y[i * N + j];
      ok &= (i == row || j == col) ? y != y : y == y;
    }
  CHECK_MSG(ok, "AMX K=%d: NaNs at X row %d and W row %d: not NaN exactly in that row and column", K, row, col);
  free(X), free(W), free(Y), free(Wp), free(Xb);
}

static void check_amx(void) {
  const int Ks[] = {1, 2, 15, 31, 32, 33, 63, 64, 65, 100, 128, 129, 384, 768, 1536};
  for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++) {
    const int K = Ks[i];
    check_shape_amx(16, 16, K, 0, 0, 0, 0);
    check_shape_amx(32, 32, K, 0, 1, 0, 0);
    check_shape_amx(1 + (int)(tu_u64() % 70), 1 + (int)(tu_u64() % 70), K, (int)(tu_u64() % 5), 1, 0, 0);
    check_shape_amx(33, 47, K, 3, 1, 1, 0);
    check_shape_amx(17, 15, K, 0, 1, 0, 1);
    check_shape_amx(50, 64, K, 1, 0, 1, 1);
    check_nan_amx(K);
  }
  check_shape_amx(130, 96, 768, 0, 1, 0, 0);
  check_shape_amx(70, 30, 3000, 1, 1, 1, 0);
}

int main(void) {
  tu_seed();
  check_rounding();
  check_pack_amx(1, 1);
  check_pack_amx(17, 45);
  check_pack_amx(32, 64);
  check_pack_amx(40, 100);
  if (!px_bf16_supported()) {
    tu_finish("test_cpu_gemm_bf16 (rounding)");
    return tu_skip("test_cpu_gemm_bf16", "this CPU has no AVX512_BF16: the kernel is off");
  }
  const int Ks[] = {1, 2, 15, 31, 32, 33, 63, 64, 65, 100, 128, 129, 384, 768, 1536};
  for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++) {
    const int K = Ks[i];
    check_shape(4, 6, K, 0, 0, 0, 0);
    check_shape(1 + (int)(tu_u64() % 13), 1 + (int)(tu_u64() % 17), K, (int)(tu_u64() % 5), 1, 0, 0);
    check_shape(9, 13, K, 3, 1, 1, 0);
    check_shape(8, 12, K, 0, 1, 0, 1);
    check_nan(K);
  }
  check_shape(37, 50, 768, 0, 1, 0, 0); /* several row blocks (768: 32 rows of X per block) */
  check_shape(70, 30, 3000, 1, 1, 1, 0);
  if (px_bf16_kernel() == PX_BF16_AMX) {
    check_amx();
    return tu_finish("test_cpu_gemm_bf16 (AVX512_BF16 and AMX kernels)");
  }
  printf("test_cpu_gemm_bf16: AMX kernel skipped: %s\n", px_bf16_amx_why_not());
  return tu_finish("test_cpu_gemm_bf16 (AVX512_BF16 kernel; AMX skipped)");
}
