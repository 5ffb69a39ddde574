/* Minimal test harness for pxdiff's C tests: CHECK macros, fresh random inputs,
 * poisoned outputs and relative Frobenius error. Each test binary exits 1 when any
 * check failed, 77 (TU_SKIP) when it cannot run here, 0 otherwise. */
#ifndef PX_TESTUTIL_H
#define PX_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    tu_checks++;                                                                      \
    if (!(cond)) {                                                                    \
      tu_failures++;                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
    }                                                                                 \
  } while (0)

#define CHECK_MSG(cond, ...)                                                          \
  do {                                                                                \
    tu_checks++;                                                                      \
    if (!(cond)) {                                                                    \
      tu_failures++;                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);        \
      fprintf(stderr, __VA_ARGS__);                                                   \
      fputc('\n', stderr);                                                            \
    }                                                                                 \
  } while (0)

static inline int tu_finish(const char *name) {
  printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
  return tu_failures ? 1 : 0;
}

/* Exit status of a test that cannot run on this machine (automake's convention, 77):
 * scripts/run-tests.sh counts it as skipped, not passed, and reports the reason printed
 * here. Only for what the machine lacks (a GPU, the CUDA build): data the tests need is
 * in the repository, so a missing file is a failed CHECK, never a skip. */
#define TU_SKIP 77
static inline int tu_skip(const char *name, const char *reason) {
  printf("SKIP: %s: %s\n", name, reason);
  return TU_SKIP;
}

/* Fresh inputs every run unless PXDIFF_TEST_SEED is set; the seed is printed so a
 * failure can be replayed. */
static uint64_t tu_rng_state;
static inline void tu_seed(void) {
  const char *s = getenv("PXDIFF_TEST_SEED");
  tu_rng_state = s ? strtoull(s, NULL, 10) : ((uint64_t)time(NULL) ^ (uint64_t)clock() * 2654435761u);
  if (tu_rng_state == 0) tu_rng_state = 1;
  printf("PXDIFF_TEST_SEED=%llu\n", (unsigned long long)tu_rng_state);
}
static inline uint64_t tu_u64(void) {
  uint64_t x = tu_rng_state;
  x ^= x << 13; x ^= x >> 7; x ^= x << 17;
  return tu_rng_state = x;
}
static inline double tu_uniform(void) { return (double)(tu_u64() >> 11) * (1.0 / 9007199254740992.0); }
static inline double tu_normal(void) {
  double u1 = tu_uniform(), u2 = tu_uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static inline void tu_fill_normal(float *x, size_t n, double scale) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(scale * tu_normal());
}
static inline void tu_poison(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}
/* ||a - ref|| / ||ref||; NaN anywhere gives +inf (never passes). */
static inline double tu_rel_err_fd(const float *a, const double *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(ref[i])) return INFINITY;
    double d = (double)a[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}
static inline double tu_rel_err_ff(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(ref[i])) return INFINITY;
    double d = (double)a[i] - (double)ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

/* ---- files (tests that write and read fixtures) ---- */
/* A message is one non-empty line (the engine's error convention). */
static inline int tu_one_line(const char *m) { return m[0] != 0 && strchr(m, '\n') == NULL; }

/* A whole file in memory (malloc'd, with a NUL after its last byte so text can be read as a
 * string; *n its size when n is not NULL), or NULL. */
static inline unsigned char *tu_slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long l = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (l < 0) l = 0;
  unsigned char *b = malloc((size_t)l + 1);
  if (b && fread(b, 1, (size_t)l, f) != (size_t)l) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) b[l] = 0;
  if (n) *n = (size_t)l;
  return b;
}

/* Write n bytes to path; 0 on success. */
static inline int tu_spit(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(b, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* The value of 16-bit h of type ab (1 bf16, 2 fp16): normal, subnormal, inf / NaN. */
static inline float tu_half_value(uint16_t h, int ab) {
  if (ab == 1) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
  }
  const int e = (h >> 10) & 31, man = h & 1023;
  float v = e == 0 ? ldexpf((float)man, -24) : e == 31 ? (man ? NAN : INFINITY) : ldexpf((float)(man | 1024), e - 25);
  return (h & 0x8000) ? -v : v;
}
/* x rounded to the 16-bit type ab (1 bf16, 2 fp16), nearest even (|x| well inside fp16's range). */
static inline uint16_t tu_half_bits(float x, int ab) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if (ab == 1) return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const float a = fabsf(x);
  if (a < 6.103515625e-05f) return (uint16_t)(sign | (uint16_t)rintf(a * 16777216.0f));
  uint32_t au = u & 0x7FFFFFFFu;
  au += 0x0FFFu + ((au >> 13) & 1u);
  return (uint16_t)(sign | ((((au >> 23) - 112u) << 10) | ((au >> 13) & 1023u)));
}

#endif
