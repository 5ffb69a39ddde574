// The sampler's per-step work on the GPU (backend.h: sampler_init / sampler_noise /
// sampler_euler), so that `pxdiff sample` keeps coordinates on the device for a whole chunk:
// no host randomness, uploads or downloads between steps.
//
// Same numbers as the host sampler (src/sample/sampler.c, src/rng.c): the random
// streams are the very functions rng.c uses (rng_core.h), and the float arithmetic
// follows sampler.c's operation order with explicitly rounded operations (__fmul_rn /
// __fadd_rn: no FMA contraction, as the host C code is compiled without it). What can
// differ, each only in the double result before it is rounded to float (so the float
// differs only when it straddles a rounding boundary, ~2^-29 per value): CUDA's double
// log/sin/cos against the platform libm (both within about an ulp), nvcc's FMA contraction
// in the rotation's double arithmetic, and the order of the per-sample centring sum.
#include "cuda/sampler_kernels.h"
#include "cuda/launch.cuh"

#include <cstdint>

#include "rng_core.h"  // the host generator's arithmetic, shared

namespace {

constexpr int kInit = 0, kRot = 1, kTrans = 2, kNoise = 3;  // pxdiff.h px_rng_purpose

// x[s] = t0 * normals, one thread per normal pair.
__global__ void k_init(int S, int64_t n3, uint64_t seed, uint32_t sample0, float t0, float *x) {
  px_pdl_enter();
  const int s = blockIdx.y;
  const int64_t npairs = (n3 + 1) / 2;
  float *xs = x + (size_t)s * n3;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < npairs; b += (int64_t)gridDim.x * blockDim.x) {
    double z0, z1;
    px_rng_pair_at(seed, sample0 + s, 0, kInit, (uint64_t)b, &z0, &z1);
    xs[2 * b] = __fmul_rn((float)z0, t0);
    if (2 * b + 1 < n3) xs[2 * b + 1] = __fmul_rn((float)z1, t0);
  }
}

// One block per sample: its rotation and translation (rng.c's px_rng_rotation /
// px_rng_translation), the mean over atoms, then x = R (x - mean) + u in place.
__global__ void k_augment(int N, uint64_t seed, uint32_t sample0, uint32_t step, float *x) {
  px_pdl_enter();
  __shared__ float R[9], u[3], mf[3];
  __shared__ double part[3][32];
  const int s = blockIdx.x, tid = threadIdx.x;
  const uint32_t sample = sample0 + s;
  float *xs = x + (size_t)s * N * 3;
  if (tid == 0) {
    px_rng_rotation_from(seed, sample, step, kRot, R);
    for (int k = 0; k < 3; k++) u[k] = (float)px_rng_at(seed, sample, step, kTrans, (uint64_t)k);
  }
  // Mean over atoms in double (the host sums in order; this sums in a tree: the float
  // mean agrees unless the double straddles a float rounding boundary).
  double acc[3] = {0.0, 0.0, 0.0};
  for (int n = tid; n < N; n += blockDim.x)
    for (int k = 0; k < 3; k++) acc[k] += xs[n * 3 + k];
  for (int k = 0; k < 3; k++) {
    double v = acc[k];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((tid & 31) == 0) part[k][tid >> 5] = v;
  }
  __syncthreads();
  if (tid < 3) {
    double v = 0.0;
    for (int wp = 0; wp < (int)(blockDim.x >> 5); wp++) v += part[tid][wp];
    mf[tid] = (float)(v / N);
  }
  __syncthreads();
  for (int n = tid; n < N; n += blockDim.x) {
    const float p0 = __fsub_rn(xs[n * 3], mf[0]), p1 = __fsub_rn(xs[n * 3 + 1], mf[1]),
                p2 = __fsub_rn(xs[n * 3 + 2], mf[2]);
#pragma unroll
    for (int k = 0; k < 3; k++) {
      const float v = __fadd_rn(__fadd_rn(__fmul_rn(R[k * 3], p0), __fmul_rn(R[k * 3 + 1], p1)),
                                __fmul_rn(R[k * 3 + 2], p2));
      xs[n * 3 + k] = __fadd_rn(v, u[k]);
    }
  }
}

// x_noisy = x + sd * noise (stream kNoise of (seed, sample, step)), one thread per pair.
__global__ void k_noisy(int64_t n3, uint64_t seed, uint32_t sample0, uint32_t step, float sd, const float *x,
                        float *xn) {
  px_pdl_enter();
  const int s = blockIdx.y;
  const int64_t npairs = (n3 + 1) / 2;
  const float *xs = x + (size_t)s * n3;
  float *ys = xn + (size_t)s * n3;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < npairs; b += (int64_t)gridDim.x * blockDim.x) {
    double z0, z1;
    px_rng_pair_at(seed, sample0 + s, step, kNoise, (uint64_t)b, &z0, &z1);
    ys[2 * b] = __fadd_rn(xs[2 * b], __fmul_rn(sd, (float)z0));
    if (2 * b + 1 < n3) ys[2 * b + 1] = __fadd_rn(xs[2 * b + 1], __fmul_rn(sd, (float)z1));
  }
}

// x = x_noisy + step_size * ((x_noisy - x_den) / t_hat).
__global__ void k_euler(int64_t n, const float *xn, const float *xd, float t_hat, float step_size, float *x) {
  px_pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float delta = __fdiv_rn(__fsub_rn(xn[i], xd[i]), t_hat);
    x[i] = __fadd_rn(xn[i], __fmul_rn(step_size, delta));
  }
}

unsigned blocks_for(int64_t n, int threads, unsigned cap) {
  const int64_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

}  // namespace

cudaError_t px_sampler_init_gpu(cudaStream_t st, bool pdl, int S, int N, uint64_t seed, uint32_t sample0, float t0,
                                float *x) {
  if (S <= 0 || N <= 0) return cudaSuccess;
  const int64_t n3 = (int64_t)N * 3;
  px_launch(k_init, dim3(blocks_for((n3 + 1) / 2, 256, 1024), S), 256, 0, st, pdl, S, n3, seed, sample0, t0, x);
  return cudaGetLastError();
}

cudaError_t px_sampler_noise_gpu(cudaStream_t st, bool pdl, int S, int N, uint64_t seed, uint32_t sample0,
                                 uint32_t step, float sd, float *x, float *x_noisy) {
  if (S <= 0 || N <= 0) return cudaSuccess;
  const int64_t n3 = (int64_t)N * 3;
  px_launch(k_augment, S, 256, 0, st, pdl, N, seed, sample0, step, x);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  px_launch(k_noisy, dim3(blocks_for((n3 + 1) / 2, 256, 1024), S), 256, 0, st, pdl, n3, seed, sample0, step, sd, x,
            x_noisy);
  return cudaGetLastError();
}

cudaError_t px_sampler_euler_gpu(cudaStream_t st, bool pdl, int64_t n, const float *x_noisy, const float *x_den,
                                 float t_hat, float step_size, float *x) {
  if (n <= 0) return cudaSuccess;
  px_launch(k_euler, blocks_for(n, 256, 4096), 256, 0, st, pdl, n, x_noisy, x_den, t_hat, step_size, x);
  return cudaGetLastError();
}
