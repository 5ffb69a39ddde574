// The sampler's per-step kernels (see sampler_kernels.cu); launched by the CUDA backend
// (`pdl`: programmatic dependent launch, launch.cuh).
#ifndef PX_CUDA_SAMPLER_KERNELS_H
#define PX_CUDA_SAMPLER_KERNELS_H

#include <cuda_runtime.h>

#include <cstdint>

// x[s] = t0 * N(0, I), stream (seed, sample0 + s, step 0, PX_RNG_INIT); x [S, N, 3].
cudaError_t px_sampler_init_gpu(cudaStream_t st, bool pdl, int S, int N, uint64_t seed, uint32_t sample0, float t0,
                                float *x);
// Step `step`: centre each sample, x = R x + u in place, then x_noisy = x + sd * noise.
cudaError_t px_sampler_noise_gpu(cudaStream_t st, bool pdl, int S, int N, uint64_t seed, uint32_t sample0,
                                 uint32_t step, float sd, float *x, float *x_noisy);
// x = x_noisy + step_size * (x_noisy - x_den) / t_hat over n values.
cudaError_t px_sampler_euler_gpu(cudaStream_t st, bool pdl, int64_t n, const float *x_noisy, const float *x_den,
                                 float t_hat, float step_size, float *x);

#endif
