/* The bf16 GEMM kernel (cpu/gemm_bf16.h). */
#include "cpu/gemm_bf16.h"

#include <stdlib.h>
#include <string.h>

#include "platform.h"

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

void px_bf16_pack_amx(int N, int K, const float *W, uint16_t *Wp) {
  const int ld = px_bf16_ld(K), steps = ld / 32, N16 = (N + 15) & ~15;
  for (int c = 0; c < N16; c += 16)
    for (int s = 0; s < steps; s++) {
      uint16_t *blk = Wp + (size_t)c * ld + (size_t)s * 512; /* 16 pair rows x 16 outputs x 2 */
      for (int p = 0; p < 16; p++)
        for (int n = 0; n < 16; n++)
          for (int e = 0; e < 2; e++) {
            const int k = s * 32 + 2 * p + e, row = c + n;
            blk[p * 32 + n * 2 + e] = row < N && k < K ? px_bf16_round(W[(size_t)row * K + k]) : 0;
          }
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
        px_gemm_store(out, PX_GEMM_MAXNR, rr, nr, Y + (size_t)r * ldy + c, ldy, bb, accumulate, relu);
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

void px_bf16_convert_rows(int rows, int K, const float *X, int ldx, uint16_t *Xb, int ld) {
  convert_rows(rows, K, X, ldx, Xb, ld);
}

/* ---- AMX: Linux on x86-64 only (the OS must grant the tile state: platform.c), GCC >= 11 or
 * clang (the tile intrinsics); elsewhere px_bf16_kernel() never answers PX_BF16_AMX. ---- */
#if defined(__linux__) && defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 11)
#define PX_BF16_AMX_BUILD 1
#include <cpuid.h>

#define PX_TGTAMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512dq,avx512vl,avx512bw,avx512bf16,avx2,fma" PX_TUNE)))

/* The CPU's half: CPUID.(7,0):EDX AMX-BF16 (bit 22) and AMX-TILE (bit 24), and the OS saving
 * the tile state (XCR0 bits 17 and 18, read with xgetbv where CPUID.1:ECX.OSXSAVE says it may). */
static int amx_cpu(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & (3u << 17)) == (3u << 17);
}

/* Palette 1, every tile 16 rows of 64 bytes: tmm0-3 the 2 x 2 blocks of fp32 outputs, tmm4-5
 * two blocks of 16 rows of X (32 bf16 values of K each), tmm6-7 two blocks of 16 outputs' W
 * (16 pairs of K each). Static and constant: ldtilecfg reads all 64 bytes. */
static const unsigned char amx_cfg[64] __attribute__((aligned(64))) = {
    1,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* palette, start row, reserved */
    64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, /* bytes per row, tmm0-7 */
    0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* tmm8-15 unused */
    16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0}; /* rows, tmm0-7 */

/* Up to 32 x 32 outputs over all of K, in tmm0-3, stored to buf (tile t at buf + 256 t, 16
 * floats a row). TWO_R / TWO_C: a second block of 16 rows / outputs (constants after inlining). */
PX_TGTAMX static inline __attribute__((always_inline)) void amx_block(int TWO_R, int TWO_C, int steps, int ld,
                                                                      const uint16_t *x, const uint16_t *w,
                                                                      float *buf) {
  const long xs = (long)ld * 2; /* bytes between rows of X */
  const uint16_t *x2 = x + (size_t)16 * ld, *w2 = w + (size_t)16 * ld;
  _tile_zero(0);
  if (TWO_C) _tile_zero(1);
  if (TWO_R) _tile_zero(2);
  if (TWO_R && TWO_C) _tile_zero(3);
  for (int s = 0; s < steps; s++) {
    _tile_loadd(4, x + s * 32, xs);
    _tile_loadd(6, w + (size_t)s * 512, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (TWO_C) {
      _tile_loadd(7, w2 + (size_t)s * 512, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (TWO_R) {
      _tile_loadd(5, x2 + s * 32, xs);
      _tile_dpbf16ps(2, 5, 6);
      if (TWO_C) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, buf, 64);
  if (TWO_C) _tile_stored(1, buf + 256, 64);
  if (TWO_R) _tile_stored(2, buf + 512, 64);
  if (TWO_R && TWO_C) _tile_stored(3, buf + 768, 64);
  __asm__ volatile("" ::: "memory"); /* the tile stores write buf (the intrinsics do not say so) */
}

/* gemm.h's epilogue (px_gemm_store's order: Y = acc (+ bias), or acc + (Y + bias); ReLU as
 * v > 0 ? v : 0, which max(v, 0) is, NaN and -0 included), 16 outputs at once. */
PX_TGTAMX static void amx_store(const float *buf, int rr, int nr, float *Y, int ldy, const float *bias,
                                int accumulate, int relu) {
  for (int i = 0; i < rr; i++)
    for (int h = 0; h < 2 && 16 * h < nr; h++) {
      const int n = nr - 16 * h < 16 ? nr - 16 * h : 16;
      const __mmask16 m = n == 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
      __m512 v = _mm512_loadu_ps(buf + ((i >= 16) * 2 + h) * 256 + (i & 15) * 16);
      float *y = Y + (size_t)i * ldy + 16 * h;
      const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + 16 * h) : _mm512_setzero_ps();
      if (accumulate) {
        __m512 t = _mm512_maskz_loadu_ps(m, y);
        if (bias) t = _mm512_add_ps(t, b);
        v = _mm512_add_ps(v, t);
      } else if (bias) {
        v = _mm512_add_ps(v, b);
      }
      if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(y, m, v);
    }
}

PX_TGTAMX static void amx_tile(int mr, int nc, int K, const uint16_t *Xb, const uint16_t *Wp, const float *bias,
                               float *Y, int ldy, int accumulate, int relu) {
  const int ld = px_bf16_ld(K), steps = ld / 32;
  float buf[4 * 256] __attribute__((aligned(64)));
  __asm__ volatile("ldtilecfg %0" ::"m"(*(const unsigned char(*)[64])amx_cfg) : "memory");
  /* Rows of 32 outer: their X (<= 64 KB at K 1024) stays near while the outputs go by. */
  for (int r = 0; r < mr; r += 32) {
    const int rr = mr - r < 32 ? mr - r : 32;
    const uint16_t *x = Xb + (size_t)r * ld;
    for (int c = 0; c < nc; c += 32) {
      const int nr = nc - c < 32 ? nc - c : 32;
      const uint16_t *w = Wp + (size_t)c * ld;
      if (rr > 16 && nr > 16) amx_block(1, 1, steps, ld, x, w, buf);
      else if (rr > 16) amx_block(1, 0, steps, ld, x, w, buf);
      else if (nr > 16) amx_block(0, 1, steps, ld, x, w, buf);
      else amx_block(0, 0, steps, ld, x, w, buf);
      amx_store(buf, rr, nr, Y + (size_t)r * ldy + c, ldy, bias ? bias + c : NULL, accumulate, relu);
    }
  }
  _tile_release(); /* the tile state back to its initial state: cheaper context switches */
}

void px_gemm_bf16_amx_tile(int mr, int nc, int K, const uint16_t *Xb, const uint16_t *Wp, const float *bias,
                           float *Y, int ldy, int accumulate, int relu) {
  amx_tile(mr, nc, K, Xb, Wp, bias, Y, ldy, accumulate, relu);
}
#endif /* AMX */

static const char *amx_why = "";

int px_bf16_kernel(void) {
  static int kind = -1;
  if (kind < 0) { /* threads racing here compute and store the same value */
    int k = PX_BF16_NONE;
    const char *why = "";
    if (px_bf16_supported()) {
      k = PX_BF16_AVX512;
#ifdef PX_BF16_AMX_BUILD
      const char *e = getenv("PXDIFF_CPU_BF16_KERNEL");
      if (!amx_cpu()) why = "this CPU has no AMX-BF16";
      else if (!px_amx_tile_permit()) why = "the OS refused the tile state (arch_prctl ARCH_REQ_XCOMP_PERM)";
      else if (e && strcmp(e, "avx512") == 0) why = "off (PXDIFF_CPU_BF16_KERNEL=avx512)";
      else k = PX_BF16_AMX;
#else
      why = "this build has no AMX kernel (x86-64 Linux with GCC >= 11 or clang only)";
#endif
    } else {
      why = "no AVX512_BF16";
    }
    amx_why = why;
    kind = k;
  }
  return kind;
}

const char *px_bf16_amx_why_not(void) {
  px_bf16_kernel();
  return amx_why;
}

#ifndef PX_BF16_AMX_BUILD
void px_gemm_bf16_amx_tile(int mr, int nc, int K, const uint16_t *Xb, const uint16_t *Wp, const float *bias,
                           float *Y, int ldy, int accumulate, int relu) {
  (void)mr, (void)nc, (void)K, (void)Xb, (void)Wp, (void)bias, (void)Y, (void)ldy, (void)accumulate, (void)relu;
  abort(); /* unreachable: px_bf16_kernel() is never PX_BF16_AMX here */
}
#endif

#else /* not x86-64 with GCC >= 11 / clang: no bf16 kernel; the backend never calls it */

int px_bf16_supported(void) { return 0; }

void px_gemm_bf16_tile(int mr, int nc, int K, const float *X, int ldx, const uint16_t *Wb, const float *bias,
                       float *Y, int ldy, int accumulate, int relu) {
  (void)mr, (void)nc, (void)K, (void)X, (void)ldx, (void)Wb, (void)bias, (void)Y, (void)ldy;
  (void)accumulate, (void)relu;
  abort(); /* unreachable: px_bf16_supported() is 0 */
}

int px_bf16_kernel(void) { return PX_BF16_NONE; }
const char *px_bf16_amx_why_not(void) { return "no AVX512_BF16 kernel in this build"; }
void px_bf16_convert_rows(int rows, int K, const float *X, int ldx, uint16_t *Xb, int ld) {
  (void)rows, (void)K, (void)X, (void)ldx, (void)Xb, (void)ld;
  abort(); /* unreachable: px_bf16_kernel() is PX_BF16_NONE */
}
void px_gemm_bf16_amx_tile(int mr, int nc, int K, const uint16_t *Xb, const uint16_t *Wp, const float *bias,
                           float *Y, int ldy, int accumulate, int relu) {
  (void)mr, (void)nc, (void)K, (void)Xb, (void)Wp, (void)bias, (void)Y, (void)ldy, (void)accumulate, (void)relu;
  abort(); /* unreachable */
}

#endif
