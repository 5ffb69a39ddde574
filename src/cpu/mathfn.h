/* Elementwise math that the compiler can vectorize.
 *
 * libm's expf is a scalar call; the transformer applies sigmoid/SiLU to millions of
 * values per call, so a vectorizable exp matters. px_expf: Cody-Waite range reduction
 * x = k ln2 + r, |r| <= ln2/2, a degree-6 polynomial for e^r, scale by 2^k through the
 * exponent bits. Relative error < 3e-7 (checked against libm's exp in tests/test_cpu_kernels.c). */
#ifndef PX_CPU_MATHFN_H
#define PX_CPU_MATHFN_H

#include <stdint.h>
#include <string.h>

static inline float px_expf(float x) {
  /* Clamp keeps 2^k in the normal range; exp(-87) ~ 1.6e-38 and exp(88) ~ 1.6e38. */
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  /* k = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest even; needs no
   * -ffast-math, which this project never uses). Branch-free, so loops vectorize. */
  const float shifter = 12582912.0f;
  float kf = x * 1.44269504088896341f + shifter;
  kf = kf - shifter;
  /* ln2 split in two so that k*ln2_hi is exact. */
  float r = x - kf * 0.693145751953125f;
  r = r - kf * 1.428606765330187045e-06f;
  float p = 1.3888889e-3f;
  p = p * r + 8.3333333e-3f;
  p = p * r + 4.1666667e-2f;
  p = p * r + 1.6666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  /* A NaN x leaves p NaN, so the result is NaN whatever the scale; but converting a NaN
   * kf to an integer is undefined behaviour, so it is replaced (a select, still
   * branch-free) before the conversion. */
  kf = kf == kf ? kf : 0.0f;
  uint32_t bits = (uint32_t)((int32_t)kf + 127) << 23; /* 2^k through the exponent field */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static inline float px_sigmoidf(float x) { return 1.0f / (1.0f + px_expf(-x)); }
static inline float px_siluf(float x) { return x / (1.0f + px_expf(-x)); }

#endif
