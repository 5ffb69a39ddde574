/* The bf16 GEMM kernel (cpu/gemm_bf16.h). */
#include "cpu/gemm_bf16.h"

#include <stdlib.h>
#include <string.h>

/* gemm.h's reduction tree and store (static, so each includer has its own; the fp32 kernels
 * it also defines are not used here). */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include "cpu/gemm.h"
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

int px_bf16_disabled(void) {
  static int off = -1;
  if (off < 0) {
    const char *e = getenv("PXDIFF_CPU_BF16");
    off = e && strcmp(e, "0") == 0; /* threads racing here store the same value */
  }
  return off;
}

void px_bf16_pack(int N, int K, const float *W, uint16_t *Wb) {
  const int ld = px_bf16_ld(K);
  for (int n = 0; n < N; n++) {
    const float *w = W + (size_t)n * K;
    uint16_t *o = Wb + (size_t)n * ld;
    for (int k = 0; k < K; k++) o[k] = px_bf16_round(w[k]);
    for (int k = K; k < ld; k++) o[k] = 0;
  }
}

/* GCC 11 and clang know AVX512_BF16 as a target and in __builtin_cpu_supports. */
#if PX_OWN_GEMM && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))

#define PX_TGTBF16 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx512bf16,avx2,fma" PX_TUNE)))

/* X rows [0, rows) -> bf16 rows of stride ld (zeros past K), nearest even: vcvtne2ps2bf16
 * (the pack's rounding; it reads a denormal as zero, as vdpbf16ps would anyway). */
PX_TGTBF16 static void convert_rows(int rows, int K, const float *X, int ldx, uint16_t *Xb, int ld) {
  for (int r = 0; r < rows; r++) {
    const float *x = X + (size_t)r * ldx;
    uint16_t *o = Xb + (size_t)r * ld;
    for (int k = 0; k < ld; k += 32) {
      const int n0 = K - k, n1 = K - k - 16;
      const __mmask16 m0 = n0 >= 16 ? (__mmask16)0xffff : n0 > 0 ? (__mmask16)((1u << n0) - 1u) : 0;
      const __mmask16 m1 = n1 >= 16 ? (__mmask16)0xffff : n1 > 0 ? (__mmask16)((1u << n1) - 1u) : 0;
      const __m512 lo = _mm512_maskz_loadu_ps(m0, x + k), hi = _mm512_maskz_loadu_ps(m1, x + k + 16);
      _mm512_storeu_si512((void *)(o + k), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

/* One MR x NR block of dot products over ld (a multiple of 32) bf16 values. */
#define PX_DOTBF16_BODY(MR, NR)                                                                 \
  __m512 acc[MR][NR];                                                                           \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();                               \
  for (int k = 0; k < ld; k += 32) {                                                            \
    __m512bh xv[MR];                                                                            \
    for (int i = 0; i < MR; i++) xv[i] = (__m512bh)_mm512_loadu_si512((const void *)(X + (size_t)i * ld + k)); \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m512bh wv = (__m512bh)_mm512_loadu_si512((const void *)(W + (size_t)j * ld + k)); \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);          \
    }                                                                                           \
  }

/* The full block: its 24 sums through gemm.h's 16-at-once tree (the same tree as px_hsum512,
 * so the same bits as the edge blocks give). */
PX_TGTBF16 static inline __attribute__((always_inline)) void dot_bf16_4x6(int ld, const uint16_t *X,
                                                                          const uint16_t *W, float *out) {
  PX_DOTBF16_BODY(4, 6)
  __m512 v[16];
  float r[16];
  for (int k2 = 0; k2 < 16; k2++) v[k2] = acc[k2 / 4][k2 % 4];
  px_hsum512_x16(v, r);
  for (int k2 = 0; k2 < 16; k2++) out[(k2 / 4) * PX_GEMM_MAXNR + k2 % 4] = r[4 * (k2 % 4) + k2 / 4];
  for (int k2 = 0; k2 < 8; k2++) v[k2] = acc[k2 / 2][4 + k2 % 2];
  for (int k2 = 8; k2 < 16; k2++) v[k2] = _mm512_setzero_ps();
  px_hsum512_x16(v, r);
  for (int k2 = 0; k2 < 8; k2++) out[(k2 / 2) * PX_GEMM_MAXNR + 4 + k2 % 2] = r[4 * (k2 % 4) + k2 / 4];
}

/* Edge blocks: mr rows (<= 4) against nr columns (<= 6), one output at a time. */
PX_TGTBF16 static void dot_bf16_1x1(int ld, const uint16_t *X, const uint16_t *W, float *out) {
  PX_DOTBF16_BODY(1, 1)
  out[0] = px_hsum512(acc[0][0]);
}
PX_TGTBF16 static void dot_bf16_1x6(int ld, const uint16_t *X, const uint16_t *W, float *out) {
  PX_DOTBF16_BODY(1, 6)
  for (int j = 0; j < 6; j++) out[j] = px_hsum512(acc[0][j]);
}

#define BF16_MR 4
#define BF16_NR 6
/* bf16 values of X converted at once: 64 KB on the stack. */
#define BF16_XBUF (32 * 1024)

PX_TGTBF16 static void tile_bf16(int mr_all, int nc, int K, const float *X_all, int ldx, const uint16_t *W,
                                 const float *bias, float *Y_all, int ldy, int accumulate, int relu) {
  const int ld = px_bf16_ld(K);
  /* Rows per block: gemm.h's L2-sized block, no more than the buffer holds, a multiple of MR. */
  int RB = px_gemm_row_block(K);
  if (RB > BF16_XBUF / ld) RB = BF16_XBUF / ld / BF16_MR * BF16_MR;
  uint16_t Xb[BF16_XBUF] __attribute__((aligned(64)));
  float out[BF16_MR * PX_GEMM_MAXNR];
  for (int rb = 0; rb < mr_all; rb += RB) {
    const int mr = mr_all - rb < RB ? mr_all - rb : RB;
    convert_rows(mr, K, X_all + (size_t)rb * ldx, ldx, Xb, ld);
    float *Y = Y_all + (size_t)rb * ldy;
    for (int c = 0; c < nc; c += BF16_NR) {
      const int nr = nc - c < BF16_NR ? nc - c : BF16_NR;
      const uint16_t *w = W + (size_t)c * ld;
      const float *bb = bias ? bias + c : NULL;
      for (int r = 0; r < mr; r += BF16_MR) {
        const int rr = mr - r < BF16_MR ? mr - r : BF16_MR;
        const uint16_t *x = Xb + (size_t)r * ld;
        if (rr == BF16_MR && nr == BF16_NR) {
          dot_bf16_4x6(ld, x, w, out);
        } else if (nr == BF16_NR) {
          for (int i = 0; i < rr; i++) dot_bf16_1x6(ld, x + (size_t)i * ld, w, out + i * PX_GEMM_MAXNR);
        } else {
          for (int i = 0; i < rr; i++)
            for (int j = 0; j < nr; j++)
              dot_bf16_1x1(ld, x + (size_t)i * ld, w + (size_t)j * ld, out + i * PX_GEMM_MAXNR + j);
        }
        px_gemm_store(out, rr, nr, Y + (size_t)r * ldy + c, ldy, bb, accumulate, relu);
      }
    }
  }
}

int px_bf16_supported(void) {
  static int ok = -1;
  if (ok < 0) {
    __builtin_cpu_init();
    int v = px_gemm_isa() == PX_GEMM_AVX512 && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512bf16");
    ok = v; /* threads racing here store the same value */
  }
  return ok;
}

void px_gemm_bf16_tile(int mr, int nc, int K, const float *X, int ldx, const uint16_t *Wb, const float *bias,
                       float *Y, int ldy, int accumulate, int relu) {
  tile_bf16(mr, nc, K, X, ldx, Wb, bias, Y, ldy, accumulate, relu);
}

#else /* not x86-64 with GCC >= 11 / clang: no bf16 kernel; the backend never calls it */

int px_bf16_supported(void) { return 0; }

void px_gemm_bf16_tile(int mr, int nc, int K, const float *X, int ldx, const uint16_t *Wb, const float *bias,
                       float *Y, int ldy, int accumulate, int relu) {
  (void)mr, (void)nc, (void)K, (void)X, (void)ldx, (void)Wb, (void)bias, (void)Y, (void)ldy;
  (void)accumulate, (void)relu;
  abort(); /* unreachable: px_bf16_supported() is 0 */
}

#endif
