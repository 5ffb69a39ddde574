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
 * The kernel checks skip on a CPU without AVX512_BF16 (the rounding checks run everywhere). */
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

int main(void) {
  tu_seed();
  check_rounding();
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
  return tu_finish("test_cpu_gemm_bf16");
}
