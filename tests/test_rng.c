/* The counter-based generator: Philox-4x32-10 known answers, stream properties, normal
 * statistics, random rotations and translations. */
#include "pxdiff.h"
#include "rng.h"
#include "testutil.h"

/* Random123's kat_vectors, "philox4x32 10" lines: counter[4] key[2] -> output[4]. */
static void test_kat(void) {
  static const uint32_t kat[3][10] = {
      {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5,
       0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
       0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
       0x94fdcceb, 0x5001e420, 0x24126ea1},
  };
  for (int v = 0; v < 3; v++) {
    uint32_t out[4];
    px_philox4x32_10(&kat[v][0], &kat[v][4], out);
    for (int j = 0; j < 4; j++)
      CHECK_MSG(out[j] == kat[v][6 + j], "vector %d word %d: %08x, expected %08x", v, j,
                (unsigned)out[j], (unsigned)kat[v][6 + j]);
  }
}

static int same_floats(const float *a, const float *b, int64_t n) {
  return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void test_streams(uint64_t seed) {
  enum { N = 257 };
  float a[N], b[N], c[N];
  /* prefix stability, odd and even lengths */
  px_rng_normal(seed, 3, 17, PX_RNG_NOISE, a, N);
  for (int64_t n = 1; n <= N; n += (n < 12 ? 1 : 37)) {
    tu_poison(b, N);
    px_rng_normal(seed, 3, 17, PX_RNG_NOISE, b, n);
    CHECK_MSG(same_floats(a, b, n), "prefix of length %lld differs", (long long)n);
    CHECK(n == N || isnan(b[n])); /* nothing written past n */
  }
  /* n <= 0 and NULL write nothing and do not crash */
  tu_poison(b, N);
  px_rng_normal(seed, 3, 17, PX_RNG_NOISE, b, 0);
  px_rng_normal(seed, 3, 17, PX_RNG_NOISE, b, -5);
  px_rng_normal(seed, 3, 17, PX_RNG_NOISE, NULL, 10);
  CHECK(isnan(b[0]));
  /* the element-wise accessor agrees */
  for (int i = 0; i < N; i++)
    CHECK(a[i] == (float)px_rng_normal_at(seed, 3, 17, PX_RNG_NOISE, (uint64_t)i));
  /* deterministic */
  px_rng_normal(seed, 3, 17, PX_RNG_NOISE, b, N);
  CHECK(same_floats(a, b, N));
  /* every coordinate of the stream's name changes every value */
  struct {
    uint64_t seed;
    uint32_t sample, step, purpose;
  } var[] = {
      {seed + 1, 3, 17, PX_RNG_NOISE},      {seed ^ (1ull << 32), 3, 17, PX_RNG_NOISE},
      {seed, 4, 17, PX_RNG_NOISE},          {seed, 3, 18, PX_RNG_NOISE},
      {seed, 3, 17, PX_RNG_INIT},           {seed, 3, 17, PX_RNG_TRANS},
      {seed, 17, 3, PX_RNG_NOISE},          {seed, 0x80000003u, 17, PX_RNG_NOISE},
      {seed, 3, 0x80000011u, PX_RNG_NOISE},
  };
  for (size_t v = 0; v < sizeof var / sizeof var[0]; v++) {
    px_rng_normal(var[v].seed, var[v].sample, var[v].step, var[v].purpose, c, N);
    int equal = 0;
    double dot = 0;
    for (int i = 0; i < N; i++) {
      equal += a[i] == c[i];
      dot += (double)a[i] * c[i];
    }
    CHECK_MSG(equal == 0, "variant %zu: %d equal values", v, equal);
    /* correlation of independent streams: |r| ~ 1/sqrt(N) = 0.06 */
    CHECK_MSG(fabs(dot / N) < 0.35, "variant %zu: correlation %.3f", v, dot / N);
  }
  /* far-away elements (block index above 2^32) are computed and differ from near ones */
  double far0 = px_rng_normal_at(seed, 3, 17, PX_RNG_NOISE, (1ull << 33) + 0);
  double far1 = px_rng_normal_at(seed, 3, 17, PX_RNG_NOISE, (1ull << 33) + 1);
  CHECK(isfinite(far0) && isfinite(far1) && (float)far0 != a[0] && (float)far1 != a[1]);
}

static void test_moments(uint64_t seed) {
  const int64_t n = 1000000;
  float *x = malloc((size_t)n * sizeof(float));
  CHECK(x != NULL);
  if (!x) return;
  px_rng_normal(seed, 0, 0, PX_RNG_INIT, x, n);
  double s = 0, s2 = 0, s3 = 0, s4 = 0, mx = 0;
  int64_t pos = 0, within1 = 0, nonfinite = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = x[i];
    if (!isfinite(v)) nonfinite++;
    s += v;
    s2 += v * v;
    s3 += v * v * v;
    s4 += v * v * v * v;
    pos += v > 0;
    within1 += fabs(v) < 1.0;
    if (fabs(v) > mx) mx = fabs(v);
  }
  double mean = s / n, var = s2 / n - mean * mean;
  printf("1e6 normals: mean %.5f var %.5f skew %.4f kurt %.4f max|x| %.3f\n", mean, var, s3 / n,
         s4 / n, mx);
  CHECK(nonfinite == 0);
  CHECK_MSG(fabs(mean) < 5.0 / sqrt((double)n), "mean %g", mean);
  CHECK_MSG(fabs(var - 1.0) < 0.01, "var %g", var);
  CHECK_MSG(fabs(s3 / n) < 0.02, "third moment %g", s3 / n);        /* sd ~ sqrt(15/n) */
  CHECK_MSG(fabs(s4 / n - 3.0) < 0.06, "fourth moment %g", s4 / n); /* sd ~ sqrt(96/n) */
  CHECK_MSG(fabs((double)pos / n - 0.5) < 0.003, "P(x>0) %g", (double)pos / n);
  CHECK_MSG(fabs((double)within1 / n - 0.6826894921) < 0.003, "P(|x|<1) %g", (double)within1 / n);
  CHECK(mx < 8.6); /* largest possible: sqrt(2 ln 2^53) */
  /* even (cosine) and odd (sine) elements are uncorrelated */
  double c = 0;
  for (int64_t i = 0; i + 1 < n; i += 2) c += (double)x[i] * x[i + 1];
  CHECK_MSG(fabs(c / (n / 2)) < 0.01, "pair correlation %g", c / (n / 2));
  free(x);
}

static void test_rotations(uint64_t seed) {
  const int n = 100000;
  double mean[9] = {0}, sq[9] = {0}, tr = 0;
  double worst_orth = 0, worst_det = 0;
  for (int s = 0; s < n; s++) {
    float R[9];
    uint32_t sample = (uint32_t)(s % 1000), step = (uint32_t)(s / 1000);
    px_rng_rotation(seed, sample, step, R);
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++) {
        double d = 0;
        for (int k = 0; k < 3; k++) d += (double)R[3 * i + k] * R[3 * j + k];
        double e = fabs(d - (i == j));
        if (e > worst_orth) worst_orth = e;
      }
    double det = (double)R[0] * ((double)R[4] * R[8] - (double)R[5] * R[7]) -
                 (double)R[1] * ((double)R[3] * R[8] - (double)R[5] * R[6]) +
                 (double)R[2] * ((double)R[3] * R[7] - (double)R[4] * R[6]);
    if (fabs(det - 1.0) > worst_det) worst_det = fabs(det - 1.0);
    for (int k = 0; k < 9; k++) {
      mean[k] += R[k];
      sq[k] += (double)R[k] * R[k];
    }
    tr += (double)R[0] + R[4] + R[8];
  }
  printf("rotations: max |R R^T - I| %.2e, max |det - 1| %.2e\n", worst_orth, worst_det);
  CHECK(worst_orth < 1e-6);
  CHECK(worst_det < 1e-6);
  for (int k = 0; k < 9; k++) {
    CHECK_MSG(fabs(mean[k] / n) < 0.01, "E[R_%d] = %g", k, mean[k] / n);
    CHECK_MSG(fabs(sq[k] / n - 1.0 / 3.0) < 0.01, "E[R_%d^2] = %g", k, sq[k] / n);
  }
  /* Haar measure: trace 1 + 2 cos(angle) has mean 0 and E[tr^2] = 1 */
  CHECK_MSG(fabs(tr / n) < 0.02, "E[trace] = %g", tr / n);
  /* deterministic, and distinct per (sample, step) */
  float A[9], B[9];
  px_rng_rotation(seed, 5, 9, A);
  px_rng_rotation(seed, 5, 9, B);
  CHECK(same_floats(A, B, 9));
  px_rng_rotation(seed, 9, 5, B);
  CHECK(!same_floats(A, B, 9));
  px_rng_rotation(seed + 1, 5, 9, B);
  CHECK(!same_floats(A, B, 9));
}

static void test_translations(uint64_t seed) {
  float u[3], v[4];
  px_rng_translation(seed, 7, 11, u);
  px_rng_normal(seed, 7, 11, PX_RNG_TRANS, v, 4);
  CHECK(same_floats(u, v, 3));
  px_rng_normal(seed, 7, 11, PX_RNG_NOISE, v, 3);
  CHECK(!same_floats(u, v, 3));
  const int n = 100000;
  double s[3] = {0}, s2[3] = {0};
  for (int i = 0; i < n; i++) {
    px_rng_translation(seed, (uint32_t)i, 2, u);
    for (int k = 0; k < 3; k++) {
      s[k] += u[k];
      s2[k] += (double)u[k] * u[k];
    }
  }
  for (int k = 0; k < 3; k++) {
    CHECK_MSG(fabs(s[k] / n) < 5.0 / sqrt((double)n), "E[u_%d] = %g", k, s[k] / n);
    CHECK_MSG(fabs(s2[k] / n - 1.0) < 0.03, "E[u_%d^2] = %g", k, s2[k] / n);
  }
}

int main(void) {
  tu_seed();
  test_kat();
  uint64_t seed = tu_u64();
  test_streams(seed);
  test_streams(0);
  test_moments(tu_u64());
  test_rotations(tu_u64());
  test_translations(tu_u64());
  return tu_finish("test_rng");
}
