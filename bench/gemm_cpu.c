/* The CPU backend's fp32 GEMM alone, per shape: the best of 12 calls of the backend's
 * `linear` (docs/benchmarks.md, "CPU optimization log (round two)"). Shapes are the atom
 * blocks' (K = 128, 256) and the token blocks' (K = 768, 1536); PXDIFF_NUM_THREADS sets
 * the threads. Not built by `make`:
 *
 *   make BUILD=build && cc -std=c11 -O2 -Iinclude -Isrc -fopenmp bench/gemm_cpu.c \
 *       build/libpxdiff.a -lblis -fopenmp -lm -o build/gemm_cpu && PXDIFF_NUM_THREADS=1 build/gemm_cpu
 *
 * (link the BLAS the build used: -lopenblas for BLAS=openblas). */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "platform.h"

int main(void) {
  px_backend *b = px_cpu_backend();
  const int shapes[][3] = {{1250, 256, 128}, {1250, 512, 128}, {1250, 128, 256},
                           {1960, 3072, 768}, {1960, 768, 768}, {1960, 768, 1536}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    float *X = malloc(sizeof(float) * (size_t)M * K), *W = malloc(sizeof(float) * (size_t)N * K);
    float *Y = malloc(sizeof(float) * (size_t)M * N);
    if (!X || !W || !Y) {
      fprintf(stderr, "gemm_cpu: out of memory\n");
      return 1;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) X[i] = (float)(i % 17) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)(i % 13) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 12; r++) {
      const double t0 = px_time_now();
      b->linear(b, M, N, K, X, K, px_weight_f32(W), NULL, Y, N, 0, M, PX_F32, PX_F32);
      const double dt = px_time_now() - t0;
      if (dt < best) best = dt;
    }
    printf("M %d N %d K %d: %.3f ms, %.1f GFLOP/s\n", M, N, K, best * 1e3, 2.0 * M * N * K / best / 1e9);
    free(X), free(W), free(Y);
  }
  return 0;
}
