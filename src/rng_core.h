/* The arithmetic of pxdiff's random numbers (rng.h has the counter layout), as inline
 * functions compiled both by the host C code (rng.c) and by the GPU sampler kernels
 * (src/cuda/sampler_kernels.cu): one definition, so both draw the same numbers up to the
 * platform's double log/sin/cos (each within about an ulp). */
#ifndef PX_RNG_CORE_H
#define PX_RNG_CORE_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PX_RNG_FN static __host__ __device__ inline
#else
#define PX_RNG_FN static inline
#endif

/* One Philox-4x32-10 block (Salmon, Moraes, Dror, Shaw, SC'11; Random123's philox4x32_10). */
PX_RNG_FN void px_philox_block(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
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

/* Normal pair number b of stream (seed, sample, step, purpose): Box-Muller in double,
 * u1 in (0, 1] and u2 in [0, 1) from 53 bits each (two Philox words per uniform). */
PX_RNG_FN void px_rng_pair_at(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, uint64_t b,
                              double *z0, double *z1) {
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const uint32_t ctr[4] = {(uint32_t)b, (uint32_t)((b >> 32) & 0x00ffffffu) | ((purpose & 0xffu) << 24), sample,
                           step};
  uint32_t w[4];
  px_philox_block(ctr, key, w);
  const double two_m53 = 1.0 / 9007199254740992.0;
  const uint64_t a = ((uint64_t)w[0] << 21) ^ (w[1] >> 11); /* 53 bits */
  const uint64_t c = ((uint64_t)w[2] << 21) ^ (w[3] >> 11);
  const double u1 = ((double)a + 1.0) * two_m53; /* (0, 1] */
  const double u2 = (double)c * two_m53;         /* [0, 1) */
  const double r = sqrt(-2.0 * log(u1));
  const double th = 6.283185307179586476925286766559 * u2;
  *z0 = r * cos(th);
  *z1 = r * sin(th);
}

/* Element i of a stream: the cosine branch of pair i/2 for even i, the sine branch for odd. */
PX_RNG_FN double px_rng_at(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, uint64_t i) {
  double z0, z1;
  px_rng_pair_at(seed, sample, step, purpose, i >> 1, &z0, &z1);
  return (i & 1) ? z1 : z0;
}

/* The rotation of (seed, sample, step) from 4 normals of stream `purpose` (rng.h). */
PX_RNG_FN void px_rng_rotation_from(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, float R[9]) {
  double q[4], n2 = 0.0;
  /* A 4-vector of normals is isotropic; normalised, it is uniform on S^3 and the quaternion
   * gives a Haar-uniform rotation. Its norm is below 1e-150 with probability ~0; should it
   * happen, the next 4 elements of the stream are used. */
  for (uint64_t base = 0;; base += 4) {
    n2 = 0.0;
    for (int k = 0; k < 4; k++) {
      q[k] = px_rng_at(seed, sample, step, purpose, base + (uint64_t)k);
      n2 += q[k] * q[k];
    }
    if (n2 > 1e-300) break;
  }
  const double s = 1.0 / sqrt(n2);
  const double w = q[0] * s, x = q[1] * s, y = q[2] * s, z = q[3] * s;
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

#endif
