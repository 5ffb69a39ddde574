/* Philox-4x32-10 and Box-Muller normals; see rng.h for the counter layout.
 *
 * Box-Muller runs in double: u1 in (0, 1] and u2 in [0, 1) from 53 bits each (two Philox
 * words per uniform), z = sqrt(-2 ln u1) * (cos | sin)(2 pi u2). u1 > 0 always, so log(0)
 * never happens; the largest magnitude is sqrt(2 ln 2^53) ~ 8.57. log/cos/sin come from the
 * platform's libm: these are accurate to about an ulp of double everywhere, and a difference
 * of one double ulp changes the float result only when it straddles a float rounding
 * boundary (about 2^-29 per value), so streams agree across platforms to that extent. */
#include "rng.h"

#include "rng_core.h"

void px_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  px_philox_block(ctr, key, out);
}

double px_rng_normal_at(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose,
                        uint64_t i) {
  return px_rng_at(seed, sample, step, purpose, i);
}

void px_rng_normal(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, float *out,
                   int64_t n) {
  if (!out || n <= 0) return;
  /* Element j depends only on its index, so the blocks can be drawn in any order: large
   * draws are spread over threads (the values do not depend on the thread count). Below every
   * backend, so the process's count (px_num_threads), not a context's. */
  const int64_t npairs = (n + 1) / 2;
#pragma omp parallel for num_threads(px_num_threads()) schedule(static) if (npairs >= 8192)
  for (int64_t b = 0; b < npairs; b++) {
    double z0, z1;
    const int64_t j = 2 * b;
    px_rng_pair_at(seed, sample, step, purpose, (uint64_t)b, &z0, &z1);
    out[j] = (float)z0;
    if (j + 1 < n) out[j + 1] = (float)z1;
  }
}

void px_rng_rotation(uint64_t seed, uint32_t sample, uint32_t step, float R[9]) {
  px_rng_rotation_from(seed, sample, step, PX_RNG_ROT, R);
}

void px_rng_translation(uint64_t seed, uint32_t sample, uint32_t step, float u[3]) {
  px_rng_normal(seed, sample, step, PX_RNG_TRANS, u, 3);
}
