/* The CPU backend's own fp32 GEMM for Y = X W^T (X [M, K] rows, W [N, K] rows), x86 only.
 *
 * Why not cblas for these: the backend cuts every GEMM into tiles of one sample's rows (a
 * sample's bits must not depend on the batch or the thread count), and a BLAS call packs both
 * operands again for every tile. At 80 tokens that repacking of the weights was a quarter of
 * the GEMM time (perf: sgemm_incopy 11.5% of the call against 43.6% in the kernel), and tiles
 * small enough to spread over 16 threads would repack the activations too.
 *
 * Both kernels make each output's arithmetic depend on K alone, never on which tile, thread
 * or microkernel shape computed it, so tiles can be cut freely:
 *
 * - AVX-512, K <= 256 (px_gemm_tile512): outer products. A task packs its W rows once into panels of 32
 *   columns, [k][32] (px_gemm_ws_floats; without a workspace the same products read W through
 *   gathers: slower, the same bits), and a 4 x 32 block of outputs takes, for every k, one
 *   broadcast X value times two W vectors. Each output sums its K products in order, in chunks
 *   of 16 (a chunk's FMA chain starts from zero and is then added to the running total), so
 *   its rounding grows with 16 + K / 16 terms, not K. No horizontal sums: at K = 128 the
 *   dot-product kernel it replaced spent ~1/3 of its time in them (65 against ~90 GFLOP/s
 *   per Zen 4 core; docs/benchmarks.md).
 * - AVX-512, K > 256 (px_gemm_tile512dot) and AVX2 + FMA (px_gemm_tile256): dot products of
 *   an X row and a W row, both contiguous along K, accumulated in 16 (8) vector lanes (lane l
 *   sums k = l, l + 16, ...; the K tail a masked load) and reduced by one fixed tree; a 4 x 6
 *   (3 x 4) block of outputs per step.
 *
 * The variant is chosen at run time by the CPU (one per process, so results never depend on
 * anything but the machine). Elsewhere px_gemm_isa() is 0 and the backend uses cblas. The
 * bf16 kernel (gemm_bf16.c) keeps the dot-product form and this file's 16-lane reduction. */
#ifndef PX_CPU_GEMM_H
#define PX_CPU_GEMM_H

#include <stddef.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(PX_NO_OWN_GEMM)
#define PX_OWN_GEMM 1
#include <immintrin.h>

enum { PX_GEMM_BLAS = 0, PX_GEMM_AVX2 = 2, PX_GEMM_AVX512 = 3 };

/* ---------------------------------------------------------------- AVX-512 -- */
/* GCC tuned for Zen (-mtune=native here) folds each W load into every FMA that uses it (MR
 * loads instead of one): measured 2x slower, so GCC tunes these generically. */
#if defined(__clang__)
#define PX_TUNE ""
#else
#define PX_TUNE ",tune=generic"
#endif
#define PX_TGT512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma" PX_TUNE)))

/* The fixed reduction tree of 16 lanes: halves, then quarters, ... (same for every output). */
PX_TGT512 static inline float px_hsum512(__m512 v) {
  __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

/* One MR x NR block of dot products (MR, NR compile-time constants after inlining). */
#define PX_DOT512_BODY(MR, NR)                                                                  \
  __m512 acc[MR][NR];                                                                           \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();                               \
  int k = 0;                                                                                    \
  for (; k + 16 <= K; k += 16) {                                                                \
    __m512 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm512_loadu_ps(X + (size_t)i * ldx + k);              \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m512 wv = _mm512_loadu_ps(W + (size_t)j * K + k);                                 \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  if (k < K) {                                                                                  \
    const __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);                                      \
    __m512 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm512_maskz_loadu_ps(m, X + (size_t)i * ldx + k);     \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m512 wv = _mm512_maskz_loadu_ps(m, W + (size_t)j * K + k);                        \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  PX_DOT512_REDUCE(MR, NR)

#define PX_DOT512_REDUCE(MR, NR)                                                                \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) out[i * PX_GEMM_MAXNR + j] = px_hsum512(acc[i][j]);

#define PX_GEMM_MAXNR 6

/* px_hsum512 of 16 vectors at once, the same tree for each (so the same bits): r[4 l + g] is
 * the sum of v[4 g + l]. Two vectors' quarters are paired before each add, so one add works
 * for 2, 4, 8 and 16 sums in turn: 45 instructions for 16 sums instead of ~130. */
PX_TGT512 static inline void px_hsum512_x16(const __m512 *v, float *r) {
  __m512 t[4], u[2];
  for (int g = 0; g < 4; g++) {
    __m512 s[2];
    for (int p = 0; p < 2; p++) { /* [a8.lo a8.hi b8.lo b8.hi], a8 = lo256(a) + hi256(a) */
      const __m512 a = v[4 * g + 2 * p], b = v[4 * g + 2 * p + 1];
      s[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    /* [a4 b4 c4 d4], a4 = a8.lo + a8.hi */
    t[g] = _mm512_add_ps(_mm512_shuffle_f32x4(s[0], s[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(s[0], s[1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  for (int p = 0; p < 2; p++) /* per 128-bit lane l: [x0 + x2, x1 + x3] of groups 2p and 2p + 1 */
    u[p] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * p], t[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(t[2 * p], t[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  /* per lane l: [g0, g1, g2, g3] of member l */
  _mm512_storeu_ps(r, _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1))));
}

PX_TGT512 static inline __attribute__((always_inline)) void px_dot512_4x6(int K, const float *X, int ldx,
                                                                        const float *W, float *out) {
#undef PX_DOT512_REDUCE
#define PX_DOT512_REDUCE(MR, NR)                                                                \
  {                                                                                             \
    __m512 v[16];                                                                               \
    float r[16];                                                                                \
    for (int k2 = 0; k2 < 16; k2++) v[k2] = acc[k2 / 4][k2 % 4];                                \
    px_hsum512_x16(v, r);                                                                       \
    for (int k2 = 0; k2 < 16; k2++) out[(k2 / 4) * PX_GEMM_MAXNR + k2 % 4] = r[4 * (k2 % 4) + k2 / 4]; \
    for (int k2 = 0; k2 < 8; k2++) v[k2] = acc[k2 / 2][4 + k2 % 2];                            \
    for (int k2 = 8; k2 < 16; k2++) v[k2] = _mm512_setzero_ps();                                \
    px_hsum512_x16(v, r);                                                                       \
    for (int k2 = 0; k2 < 8; k2++) out[(k2 / 2) * PX_GEMM_MAXNR + 4 + k2 % 2] = r[4 * (k2 % 4) + k2 / 4]; \
  }
  PX_DOT512_BODY(4, 6)
#undef PX_DOT512_REDUCE
#define PX_DOT512_REDUCE(MR, NR)                                                                \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) out[i * PX_GEMM_MAXNR + j] = px_hsum512(acc[i][j]);
}
/* Edge blocks: the same per-output arithmetic, fewer outputs. */
PX_TGT512 static void px_dot512_1x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT512_BODY(1, 1)
}
PX_TGT512 static void px_dot512_4x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT512_BODY(4, 1)
}
PX_TGT512 static void px_dot512_1x6(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT512_BODY(1, 6)
}

/* ------------------------------------------------------------------- AVX2 -- */
#define PX_TGT256 __attribute__((target("avx2,fma" PX_TUNE)))

PX_TGT256 static inline float px_hsum256(__m256 v) {
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

#define PX_DOT256_BODY(MR, NR)                                                                  \
  __m256 acc[MR][NR];                                                                           \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();                               \
  int k = 0;                                                                                    \
  for (; k + 8 <= K; k += 8) {                                                                  \
    __m256 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm256_loadu_ps(X + (size_t)i * ldx + k);              \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m256 wv = _mm256_loadu_ps(W + (size_t)j * K + k);                                 \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  if (k < K) {                                                                                  \
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(K - k),                              \
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));            \
    __m256 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm256_maskload_ps(X + (size_t)i * ldx + k, m);        \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m256 wv = _mm256_maskload_ps(W + (size_t)j * K + k, m);                           \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) out[i * PX_GEMM_MAXNR + j] = px_hsum256(acc[i][j]);

PX_TGT256 static inline __attribute__((always_inline)) void px_dot256_3x4(int K, const float *X, int ldx,
                                                                        const float *W, float *out) {
  PX_DOT256_BODY(3, 4)
}
PX_TGT256 static void px_dot256_1x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT256_BODY(1, 1)
}
PX_TGT256 static void px_dot256_3x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT256_BODY(3, 1)
}
PX_TGT256 static void px_dot256_1x4(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT256_BODY(1, 4)
}

/* Store an mr x nr block of sums (out: rows of ldo): y = sum (+ bias) (or y = (y + bias) + sum
 * when accumulating), ReLU'd when asked. Every kernel's epilogue, so all round alike. */
static inline __attribute__((always_inline)) void px_gemm_store(const float *out, int ldo, int mr, int nr, float *Y,
                                                                int ldy, const float *bias, int accumulate,
                                                                int relu) {
  for (int i = 0; i < mr; i++) {
    float *y = Y + (size_t)i * ldy;
    for (int j = 0; j < nr; j++) {
      float v = out[i * ldo + j];
      if (accumulate) v += bias ? y[j] + bias[j] : y[j];
      else if (bias) v += bias[j];
      if (relu) v = v > 0.0f ? v : 0.0f;
      y[j] = v;
    }
  }
}

/* Rows of X per block: about 96 KB of them, a multiple of 12 (both kernels' heights divide it). */
static inline int px_gemm_row_block(int K) {
  int rb = (24 * 1024) / (K > 0 ? K : 1) / 12 * 12;
  return rb < 12 ? 12 : rb;
}

/* The outputs [0, mr) x [0, nc) of one tile. The caller keeps the tile's nc W rows small
 * enough for L2; X goes through in blocks of px_gemm_row_block rows (also L2), and within a
 * block, column blocks of NR W rows (L1) meet every MR rows of X in turn. */
#define PX_GEMM_TILE(NAME, TGT, MR, NR, FULL, ROW1, COL1, ONE)                                       \
  TGT static void NAME(int mr_all, int nc, int K, const float *X_all, int ldx, const float *W,       \
                       const float *bias, float *Y_all, int ldy, int accumulate, int relu) {         \
    float out[MR * PX_GEMM_MAXNR];                                                               \
    const int RB = px_gemm_row_block(K);                                                         \
    for (int rb = 0; rb < mr_all; rb += RB) {                                                    \
    const int mr = mr_all - rb < RB ? mr_all - rb : RB;                                          \
    const float *X = X_all + (size_t)rb * ldx;                                                   \
    float *Y = Y_all + (size_t)rb * ldy;                                                         \
    for (int c = 0; c < nc; c += NR) {                                                           \
      const int nr = nc - c < NR ? nc - c : NR;                                                  \
      const float *w = W + (size_t)c * K;                                                        \
      const float *bb = bias ? bias + c : NULL;                                                  \
      for (int r = 0; r < mr; r += MR) {                                                         \
        const int rr = mr - r < MR ? mr - r : MR;                                                \
        const float *x = X + (size_t)r * ldx;                                                    \
        if (rr == MR && nr == NR) {                                                              \
          FULL(K, x, ldx, w, out);                                                               \
        } else if (nr == NR) {                                                                   \
          for (int i = 0; i < rr; i++) ROW1(K, x + (size_t)i * ldx, ldx, w, out + i * PX_GEMM_MAXNR); \
        } else if (rr == MR) {                                                                   \
          for (int j = 0; j < nr; j++) {                                                         \
            float o1[MR * PX_GEMM_MAXNR];                                                        \
            COL1(K, x, ldx, w + (size_t)j * K, o1);                                              \
            for (int i = 0; i < MR; i++) out[i * PX_GEMM_MAXNR + j] = o1[i * PX_GEMM_MAXNR];     \
          }                                                                                      \
        } else {                                                                                 \
          for (int i = 0; i < rr; i++)                                                           \
            for (int j = 0; j < nr; j++) {                                                       \
              float o1[PX_GEMM_MAXNR];                                                           \
              ONE(K, x + (size_t)i * ldx, ldx, w + (size_t)j * K, o1);                           \
              out[i * PX_GEMM_MAXNR + j] = o1[0];                                                \
            }                                                                                    \
        }                                                                                        \
        px_gemm_store(out, PX_GEMM_MAXNR, rr, nr, Y + (size_t)r * ldy + c, ldy, bb, accumulate, relu); \
      }                                                                                          \
    }                                                                                            \
    }                                                                                            \
  }

PX_GEMM_TILE(px_gemm_tile512dot, PX_TGT512, 4, 6, px_dot512_4x6, px_dot512_1x6, px_dot512_4x1, px_dot512_1x1)
PX_GEMM_TILE(px_gemm_tile256, PX_TGT256, 3, 4, px_dot256_3x4, px_dot256_1x4, px_dot256_3x1, px_dot256_1x1)

/* ------------------------------------------------- AVX-512 outer products -- */
/* The outer-product kernel serves K <= PX_OP_MAX_K (the atom blocks' K = 128 and 256, where the
 * dot products' horizontal sums cost most); deeper GEMMs keep the 4 x 6 dot-product kernel,
 * which is as fast there and needs no packing (packing per task costs ~K / 16 / rows of the
 * task's time: 15% for 80 tokens' 160 rows at K = 768). Chosen by K alone: a given GEMM always
 * takes the same kernel, whatever its rows. */
enum { PX_OP_NR = 32, PX_OP_MR = 4, PX_OP_KC = 16, PX_OP_MAX_K = 256 };

/* Floats of the workspace px_gemm_tile512 packs nc W rows of depth K into. */
static inline size_t px_gemm_ws_floats(int nc, int K) {
  return (size_t)((nc + PX_OP_NR - 1) / PX_OP_NR) * PX_OP_NR * (size_t)(K > 0 ? K : 1);
}

/* W rows [0, nc) into panels of 32 columns: P[p][k][j] = W[32 p + j][k], zeros past nc. */
PX_TGT512 static void px_op512_pack(int nc, int K, const float *W, float *P) {
  for (int n0 = 0; n0 < nc; n0 += PX_OP_NR) {
    const int nn = nc - n0 < PX_OP_NR ? nc - n0 : PX_OP_NR;
    float *dst = P + (size_t)(n0 / PX_OP_NR) * K * PX_OP_NR;
    for (int k = 0; k < K; k++) {
      float *d = dst + (size_t)k * PX_OP_NR;
      for (int j = 0; j < nn; j++) d[j] = W[(size_t)(n0 + j) * K + k];
      for (int j = nn; j < PX_OP_NR; j++) d[j] = 0.0f;
    }
  }
}

/* out[i][0, 32) = the sums of MR rows of X against one panel: packed (P, [k][32]) or, with P
 * NULL, W's rows n0 .. n0 + nn read through gathers (zeros past nn): the same products in the
 * same order either way. */
#define PX_OP512_BODY(MR, LOADW)                                                                \
  __m512 tot[MR][2];                                                                            \
  for (int i = 0; i < MR; i++) tot[i][0] = tot[i][1] = _mm512_setzero_ps();                     \
  for (int k0 = 0; k0 < K; k0 += PX_OP_KC) {                                                    \
    const int k1 = K - k0 < PX_OP_KC ? K : k0 + PX_OP_KC;                                       \
    __m512 acc[MR][2];                                                                          \
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();                   \
    for (int k = k0; k < k1; k++) {                                                             \
      __m512 w0, w1;                                                                            \
      LOADW                                                                                     \
      for (int i = 0; i < MR; i++) {                                                            \
        const __m512 xb = _mm512_set1_ps(X[(size_t)i * ldx + k]);                               \
        acc[i][0] = _mm512_fmadd_ps(xb, w0, acc[i][0]);                                         \
        acc[i][1] = _mm512_fmadd_ps(xb, w1, acc[i][1]);                                         \
      }                                                                                         \
    }                                                                                           \
    for (int i = 0; i < MR; i++) {                                                              \
      tot[i][0] = _mm512_add_ps(tot[i][0], acc[i][0]);                                          \
      tot[i][1] = _mm512_add_ps(tot[i][1], acc[i][1]);                                          \
    }                                                                                           \
  }                                                                                             \
  for (int i = 0; i < MR; i++) {                                                                \
    _mm512_storeu_ps(out + i * PX_OP_NR, tot[i][0]);                                            \
    _mm512_storeu_ps(out + i * PX_OP_NR + 16, tot[i][1]);                                       \
  }

#define PX_OP512_LOAD_PACKED                                                                    \
  w0 = _mm512_loadu_ps(P + (size_t)k * PX_OP_NR);                                               \
  w1 = _mm512_loadu_ps(P + (size_t)k * PX_OP_NR + 16);
#define PX_OP512_LOAD_GATHER                                                                    \
  w0 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, idx, W + k, 4);                        \
  w1 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, idx, W + (size_t)16 * K + k, 4);

#define PX_OP512_KERNEL(MR)                                                                     \
  PX_TGT512 static void px_op512_packed_##MR(int K, const float *X, int ldx, const float *P, float *out) { \
    PX_OP512_BODY(MR, PX_OP512_LOAD_PACKED)                                                     \
  }                                                                                             \
  PX_TGT512 static void px_op512_gather_##MR(int K, const float *X, int ldx, const float *W, int nn, \
                                             float *out) {                                      \
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, \
                                                             13, 14, 15), _mm512_set1_epi32(K)); \
    const __mmask16 m0 = (__mmask16)(nn >= 16 ? 0xffffu : (1u << nn) - 1u);                     \
    const __mmask16 m1 = (__mmask16)(nn >= 32 ? 0xffffu : nn <= 16 ? 0u : (1u << (nn - 16)) - 1u); \
    PX_OP512_BODY(MR, PX_OP512_LOAD_GATHER)                                                     \
  }
PX_OP512_KERNEL(1)
PX_OP512_KERNEL(2)
PX_OP512_KERNEL(3)
PX_OP512_KERNEL(4)

/* The outputs [0, mr) x [0, nc) of one tile; ws: px_gemm_ws_floats(nc, K) floats, or NULL
 * (gathers instead of the packed copy). X goes through in blocks of px_gemm_row_block rows
 * (L2); within a block, each 32-column panel (L1 / L2) meets every 4 rows of X in turn (4, not 6: with 6, the 12
 * accumulators and 12 running totals leave GCC too few registers for W, which it then spills). */
PX_TGT512 static void px_gemm_tile512(int mr_all, int nc, int K, const float *X_all, int ldx, const float *W,
                                      const float *bias, float *Y_all, int ldy, int accumulate, int relu,
                                      float *ws) {
  if (mr_all <= 0 || nc <= 0) return;
  if (ws) px_op512_pack(nc, K, W, ws);
  float out[PX_OP_MR * PX_OP_NR];
  const int RB = px_gemm_row_block(K);
  for (int rb = 0; rb < mr_all; rb += RB) {
    const int mr = mr_all - rb < RB ? mr_all - rb : RB;
    const float *X = X_all + (size_t)rb * ldx;
    float *Y = Y_all + (size_t)rb * ldy;
    for (int c = 0; c < nc; c += PX_OP_NR) {
      const int nr = nc - c < PX_OP_NR ? nc - c : PX_OP_NR;
      const float *P = ws ? ws + (size_t)(c / PX_OP_NR) * K * PX_OP_NR : NULL;
      const float *w = W + (size_t)c * K;
      for (int r = 0; r < mr; r += PX_OP_MR) {
        const int rr = mr - r < PX_OP_MR ? mr - r : PX_OP_MR;
        const float *x = X + (size_t)r * ldx;
        if (P) {
          switch (rr) {
          case 4: px_op512_packed_4(K, x, ldx, P, out); break;
          case 3: px_op512_packed_3(K, x, ldx, P, out); break;
          case 2: px_op512_packed_2(K, x, ldx, P, out); break;
          default: px_op512_packed_1(K, x, ldx, P, out); break;
          }
        } else {
          switch (rr) {
          case 4: px_op512_gather_4(K, x, ldx, w, nr, out); break;
          case 3: px_op512_gather_3(K, x, ldx, w, nr, out); break;
          case 2: px_op512_gather_2(K, x, ldx, w, nr, out); break;
          default: px_op512_gather_1(K, x, ldx, w, nr, out); break;
          }
        }
        px_gemm_store(out, PX_OP_NR, rr, nr, Y + (size_t)r * ldy + c, ldy, bias ? bias + c : NULL, accumulate,
                      relu);
      }
    }
  }
}

/* Which variant this CPU runs (fixed for the process). */
static inline int px_gemm_isa(void) {
  static int isa = -1;
  if (isa < 0) {
    __builtin_cpu_init();
    int v = PX_GEMM_BLAS;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
      v = PX_GEMM_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      v = PX_GEMM_AVX2;
    isa = v;
  }
  return isa;
}

/* ws: px_gemm_ws_floats(nc, K) floats of scratch for the AVX-512 kernel (NULL: it reads W
 * through gathers, the same bits); the AVX2 kernel needs none. */
static inline void px_gemm_tile(int isa, int mr, int nc, int K, const float *X, int ldx, const float *W,
                                const float *bias, float *Y, int ldy, int accumulate, int relu, float *ws) {
  if (isa == PX_GEMM_AVX512 && K <= PX_OP_MAX_K) px_gemm_tile512(mr, nc, K, X, ldx, W, bias, Y, ldy, accumulate, relu, ws);
  else if (isa == PX_GEMM_AVX512) px_gemm_tile512dot(mr, nc, K, X, ldx, W, bias, Y, ldy, accumulate, relu);
  else px_gemm_tile256(mr, nc, K, X, ldx, W, bias, Y, ldy, accumulate, relu);
}

#else
#define PX_OWN_GEMM 0
enum { PX_GEMM_BLAS = 0, PX_GEMM_AVX2 = 2, PX_GEMM_AVX512 = 3 };
static inline int px_gemm_isa(void) { return PX_GEMM_BLAS; }
enum { PX_OP_MAX_K = 0 };
static inline size_t px_gemm_ws_floats(int nc, int K) { return (void)nc, (void)K, 0; }
static inline void px_gemm_tile(int isa, int mr, int nc, int K, const float *X, int ldx, const float *W,
                                const float *bias, float *Y, int ldy, int accumulate, int relu, float *ws) {
  (void)isa, (void)mr, (void)nc, (void)K, (void)X, (void)ldx, (void)W, (void)bias, (void)Y, (void)ldy;
  (void)accumulate, (void)relu, (void)ws;
}
#endif

#endif
