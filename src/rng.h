/* pxdiff's counter-based random numbers (internal): Philox-4x32-10 and what is built on it.
 *
 * Every value is a pure function of (seed, sample, step, purpose, element index), so any
 * split of a run into calls, chunks or threads draws the same numbers.
 *
 * Philox key   = (seed & 0xffffffff, seed >> 32)
 * Philox counter (4 x 32 bits):
 *   c0 = block index, bits 0..31
 *   c1 = block index, bits 32..55 | purpose << 24   (purpose: its low 8 bits, 0..255)
 *   c2 = sample
 *   c3 = step
 * One block gives two normals (element 2b is the cosine branch of Box-Muller, element 2b+1
 * the sine branch of the same pair), so a stream holds up to 2^57 elements. For a fixed key
 * Philox is a bijection of the counter, so distinct (sample, step, purpose, block) tuples give
 * distinct, statistically independent blocks. */
#ifndef PX_RNG_H
#define PX_RNG_H

#include <stdint.h>

#include "pxdiff.h"

/* One Philox-4x32-10 block (Salmon, Moraes, Dror, Shaw, SC'11; Random123's philox4x32_10). */
void px_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Element i of stream (seed, sample, step, purpose) as a double-precision N(0,1) value;
 * px_rng_normal stores these rounded to float. */
double px_rng_normal_at(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose,
                        uint64_t i);

/* A uniformly random rotation (Haar measure on SO(3)) for (seed, sample, step): a unit
 * quaternion from 4 normals of stream PX_RNG_ROT, converted in double. Row-major, x_new = R x. */
void px_rng_rotation(uint64_t seed, uint32_t sample, uint32_t step, float R[9]);

/* A translation u ~ N(0, I_3) for (seed, sample, step): elements 0..2 of stream PX_RNG_TRANS. */
void px_rng_translation(uint64_t seed, uint32_t sample, uint32_t step, float u[3]);

#endif
