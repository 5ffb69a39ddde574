/* Philox-4x32-10 and Box-Muller normals; see rng.h for the counter layout.
 *
 * Box-Muller runs in double: u1 in (0, 1] and u2 in [0, 1) from 53 bits each (two Philox
 * words per uniform), z = sqrt(-2 ln u1) * (cos | sin)(2 pi u2). u1 > 0 always, so log(0)
 * never happens; the largest magnitude is sqrt(2 ln 2^53) ~ 8.57. log/cos/sin come from the
 * platform's libm: these are accurate to about an ulp of double everywhere, and a difference
 * of one double ulp changes the float result only when it straddles a float rounding
 * boundary (about 2^-29 per value), so streams agree across platforms to that extent. */
#include "sample/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

#define PX_TWO_PI 6.283185307179586476925286766559

void px_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

static void block(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, uint64_t b,
                  uint32_t w[4]) {
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const uint32_t ctr[4] = {
      (uint32_t)b, (uint32_t)((b >> 32) & 0x00ffffffu) | ((purpose & 0xffu) << 24), sample, step};
  px_philox4x32_10(ctr, key, w);
}

/* The normal pair of one block. */
static void pair(const uint32_t w[4], double *z0, double *z1) {
  const double two_m53 = 1.0 / 9007199254740992.0;
  uint64_t a = ((uint64_t)w[0] << 21) ^ (w[1] >> 11); /* 53 bits */
  uint64_t c = ((uint64_t)w[2] << 21) ^ (w[3] >> 11);
  double u1 = ((double)a + 1.0) * two_m53; /* (0, 1] */
  double u2 = (double)c * two_m53;         /* [0, 1) */
  double r = sqrt(-2.0 * log(u1));
  double th = PX_TWO_PI * u2;
  *z0 = r * cos(th);
  *z1 = r * sin(th);
}

double px_rng_normal_at(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose,
                        uint64_t i) {
  uint32_t w[4];
  double z0, z1;
  block(seed, sample, step, purpose, i >> 1, w);
  pair(w, &z0, &z1);
  return (i & 1) ? z1 : z0;
}

void px_rng_normal(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, float *out,
                   int64_t n) {
  if (!out || n <= 0) return;
  /* Element j depends only on its index, so the blocks can be drawn in any order: large
   * draws are spread over threads (the values do not depend on the thread count). */
  const int64_t npairs = (n + 1) / 2;
#pragma omp parallel for schedule(static) if (npairs >= 8192)
  for (int64_t b = 0; b < npairs; b++) {
    uint32_t w[4];
    double z0, z1;
    const int64_t j = 2 * b;
    block(seed, sample, step, purpose, (uint64_t)b, w);
    pair(w, &z0, &z1);
    out[j] = (float)z0;
    if (j + 1 < n) out[j + 1] = (float)z1;
  }
}

void px_rng_rotation(uint64_t seed, uint32_t sample, uint32_t step, float R[9]) {
  double q[4], n2 = 0.0;
  /* A 4-vector of normals is isotropic; normalised, it is uniform on S^3 and the quaternion
   * gives a Haar-uniform rotation. Its norm is below 1e-150 with probability ~0; should it
   * happen, the next 4 elements of the stream are used. */
  for (uint64_t base = 0;; base += 4) {
    n2 = 0.0;
    for (int k = 0; k < 4; k++) {
      q[k] = px_rng_normal_at(seed, sample, step, PX_RNG_ROT, base + (uint64_t)k);
      n2 += q[k] * q[k];
    }
    if (n2 > 1e-300) break;
  }
  double s = 1.0 / sqrt(n2);
  double w = q[0] * s, x = q[1] * s, y = q[2] * s, z = q[3] * s;
  R[0] = (float)(1.0 - 2.0 * (y * y + z * z));
  R[1] = (float)(2.0 * (x * y - w * z));
  R[2] = (float)(2.0 * (x * z + w * y));
  R[3] = (float)(2.0 * (x * y + w * z));
  R[4] = (float)(1.0 - 2.0 * (x * x + z * z));
  R[5] = (float)(2.0 * (y * z - w * x));
  R[6] = (float)(2.0 * (x * z - w * y));
  R[7] = (float)(2.0 * (y * z + w * x));
  R[8] = (float)(1.0 - 2.0 * (x * x + y * y));
}

void px_rng_translation(uint64_t seed, uint32_t sample, uint32_t step, float u[3]) {
  px_rng_normal(seed, sample, step, PX_RNG_TRANS, u, 3);
}
