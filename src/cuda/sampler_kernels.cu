// The sampler's per-step work on the GPU (backend.h: sampler_init / sampler_noise /
// sampler_euler), so that `pxdiff sample` keeps coordinates on the device for a whole chunk:
// no host randomness, uploads or downloads between steps.
//
// Same numbers as the host sampler (src/sample/sampler.c, src/sample/rng.c): the same
// Philox-4x32-10 counters, Box-Muller in double, the same float operation order with
// explicitly rounded operations (__fmul_rn / __fadd_rn: no FMA contraction, as the host
// C code is compiled without it). What can differ: CUDA's double log/sin/cos against the
// platform libm (both within about an ulp of double, so a float differs only when the
// double straddles a float rounding boundary, ~2^-29 per value) and the order of the
// per-sample centring sum (in double, then rounded to float).
#include "cuda/sampler_kernels.h"

#include <cstdint>

namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr int kInit = 0, kRot = 1, kTrans = 2, kNoise = 3;  // pxdiff.h px_rng_purpose

__device__ void philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                       uint32_t w[4]) {
#pragma unroll
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

// Normal pair number b of stream (seed, sample, step, purpose): rng.c's block() and pair().
__device__ void normal_pair(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, uint64_t b,
                            double *z0, double *z1) {
  uint32_t w[4];
  philox((uint32_t)b, (uint32_t)((b >> 32) & 0x00ffffffu) | ((purpose & 0xffu) << 24), sample, step,
         (uint32_t)seed, (uint32_t)(seed >> 32), w);
  const double two_m53 = 1.0 / 9007199254740992.0;
  const uint64_t a = ((uint64_t)w[0] << 21) ^ (w[1] >> 11);
  const uint64_t c = ((uint64_t)w[2] << 21) ^ (w[3] >> 11);
  const double u1 = ((double)a + 1.0) * two_m53, u2 = (double)c * two_m53;
  const double r = sqrt(-2.0 * log(u1)), th = kTwoPi * u2;
  *z0 = r * cos(th);
  *z1 = r * sin(th);
}

__device__ double normal_at(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, uint64_t i) {
  double z0, z1;
  normal_pair(seed, sample, step, purpose, i >> 1, &z0, &z1);
  return (i & 1) ? z1 : z0;
}

// x[s] = t0 * normals, one thread per normal pair.
__global__ void k_init(int S, int64_t n3, uint64_t seed, uint32_t sample0, float t0, float *x) {
  const int s = blockIdx.y;
  const int64_t npairs = (n3 + 1) / 2;
  float *xs = x + (size_t)s * n3;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < npairs; b += (int64_t)gridDim.x * blockDim.x) {
    double z0, z1;
    normal_pair(seed, sample0 + s, 0, kInit, (uint64_t)b, &z0, &z1);
    xs[2 * b] = __fmul_rn((float)z0, t0);
    if (2 * b + 1 < n3) xs[2 * b + 1] = __fmul_rn((float)z1, t0);
  }
}

// One block per sample: its rotation and translation (rng.c's px_rng_rotation /
// px_rng_translation), the mean over atoms, then x = R (x - mean) + u in place.
__global__ void k_augment(int N, uint64_t seed, uint32_t sample0, uint32_t step, float *x) {
  __shared__ float R[9], u[3], mf[3];
  __shared__ double part[3][32];
  const int s = blockIdx.x, tid = threadIdx.x;
  const uint32_t sample = sample0 + s;
  float *xs = x + (size_t)s * N * 3;
  if (tid == 0) {
    double q[4], n2 = 0.0;
    for (uint64_t base = 0;; base += 4) {
      n2 = 0.0;
      for (int k = 0; k < 4; k++) {
        q[k] = normal_at(seed, sample, step, kRot, base + (uint64_t)k);
        n2 += q[k] * q[k];
      }
      if (n2 > 1e-300) break;
    }
    const double sc = 1.0 / sqrt(n2);
    const double w = q[0] * sc, xq = q[1] * sc, y = q[2] * sc, z = q[3] * sc;
    R[0] = (float)(1.0 - 2.0 * (y * y + z * z));
    R[1] = (float)(2.0 * (xq * y - w * z));
    R[2] = (float)(2.0 * (xq * z + w * y));
    R[3] = (float)(2.0 * (xq * y + w * z));
    R[4] = (float)(1.0 - 2.0 * (xq * xq + z * z));
    R[5] = (float)(2.0 * (y * z - w * xq));
    R[6] = (float)(2.0 * (xq * z - w * y));
    R[7] = (float)(2.0 * (y * z + w * xq));
    R[8] = (float)(1.0 - 2.0 * (xq * xq + y * y));
    for (int k = 0; k < 3; k++) u[k] = (float)normal_at(seed, sample, step, kTrans, (uint64_t)k);
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
  const int s = blockIdx.y;
  const int64_t npairs = (n3 + 1) / 2;
  const float *xs = x + (size_t)s * n3;
  float *ys = xn + (size_t)s * n3;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < npairs; b += (int64_t)gridDim.x * blockDim.x) {
    double z0, z1;
    normal_pair(seed, sample0 + s, step, kNoise, (uint64_t)b, &z0, &z1);
    ys[2 * b] = __fadd_rn(xs[2 * b], __fmul_rn(sd, (float)z0));
    if (2 * b + 1 < n3) ys[2 * b + 1] = __fadd_rn(xs[2 * b + 1], __fmul_rn(sd, (float)z1));
  }
}

// x = x_noisy + step_size * ((x_noisy - x_den) / t_hat).
__global__ void k_euler(int64_t n, const float *xn, const float *xd, float t_hat, float step_size, float *x) {
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

cudaError_t px_sampler_init_gpu(cudaStream_t st, int S, int N, uint64_t seed, uint32_t sample0, float t0, float *x) {
  if (S <= 0 || N <= 0) return cudaSuccess;
  const int64_t n3 = (int64_t)N * 3;
  k_init<<<dim3(blocks_for((n3 + 1) / 2, 256, 1024), S), 256, 0, st>>>(S, n3, seed, sample0, t0, x);
  return cudaGetLastError();
}

cudaError_t px_sampler_noise_gpu(cudaStream_t st, int S, int N, uint64_t seed, uint32_t sample0, uint32_t step,
                                 float sd, float *x, float *x_noisy) {
  if (S <= 0 || N <= 0) return cudaSuccess;
  const int64_t n3 = (int64_t)N * 3;
  k_augment<<<S, 256, 0, st>>>(N, seed, sample0, step, x);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  k_noisy<<<dim3(blocks_for((n3 + 1) / 2, 256, 1024), S), 256, 0, st>>>(n3, seed, sample0, step, sd, x, x_noisy);
  return cudaGetLastError();
}

cudaError_t px_sampler_euler_gpu(cudaStream_t st, int64_t n, const float *x_noisy, const float *x_den, float t_hat,
                                 float step_size, float *x) {
  if (n <= 0) return cudaSuccess;
  k_euler<<<blocks_for(n, 256, 4096), 256, 0, st>>>(n, x_noisy, x_den, t_hat, step_size, x);
  return cudaGetLastError();
}
