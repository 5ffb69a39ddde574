/* The CPU backend's bf16 GEMM: Y = X W^T with both operands rounded to bfloat16 (nearest
 * even) and every product accumulated in fp32, on x86 CPUs with AVX512_BF16 (vdpbf16ps:
 * Zen 4, Cooper Lake, Sapphire Rapids and later). Elsewhere px_bf16_supported() is 0 and the
 * backend stays fp32.
 *
 * W is converted once, when the model is prepared (px_bf16_pack: rows padded with zeros to a
 * multiple of 32, so the kernel has no K tail); X, fp32 as every other kernel writes it, is
 * converted per block of rows inside the tile, into a buffer on the stack (it stays in L1/L2
 * while every column block of the tile reuses it).
 *
 * Each output is one dot product accumulated the way gemm.h's fp32 kernel does it: lane l of
 * 16 takes the pairs k = 2l, 2l + 1 (+ 32 j), vdpbf16ps adds the pair's two exact products to
 * the lane, and the 16 lanes are summed by gemm.h's fixed tree. So an output's bits depend on
 * K and its operands alone: tiles, threads and the microkernel shape do not change them. */
#ifndef PX_CPU_GEMM_BF16_H
#define PX_CPU_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

/* 1 when this CPU runs the bf16 kernel (AVX512F/BW/VL + AVX512_BF16), fixed per process. */
int px_bf16_supported(void);

/* 1 when PXDIFF_CPU_BF16=0 turned the CPU's bf16 precision off (read once). */
int px_bf16_disabled(void);

/* Row stride of a packed bf16 matrix of depth K: K rounded up to a multiple of 32. */
static inline int px_bf16_ld(int K) { return (K + 31) & ~31; }

/* The deepest K the kernel takes (its stack buffer holds at least 4 rows of X). */
#define PX_BF16_MAX_K 8192

/* x rounded to bfloat16, nearest even (the hardware's rounding); a NaN stays a (quiet) NaN. */
static inline uint16_t px_bf16_round(float x) {
  union {
    float f;
    uint32_t u;
  } v = {x};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x0040u);
  return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float px_bf16_to_f32(uint16_t h) {
  union {
    uint32_t u;
    float f;
  } v = {(uint32_t)h << 16};
  return v.f;
}

/* W [N, K] fp32 -> Wb [N, px_bf16_ld(K)] bf16, the padding zero. */
void px_bf16_pack(int N, int K, const float *W, uint16_t *Wb);

/* The outputs [0, mr) x [0, nc) of one tile: Y = X Wb^T (+ bias), or Y = (Y + bias) + X Wb^T
 * when accumulating (gemm.h's order), ReLU'd when asked. X [mr, K] fp32 (row stride ldx), Wb
 * the nc packed rows of W (row stride px_bf16_ld(K)), K <= PX_BF16_MAX_K. Only when
 * px_bf16_supported(). */
void px_gemm_bf16_tile(int mr, int nc, int K, const float *X, int ldx, const uint16_t *Wb, const float *bias,
                       float *Y, int ldy, int accumulate, int relu);

/* The AMX kernel (Sapphire Rapids and later: tdpbf16ps, a 16 x 16 block of outputs times 32
 * values of K per instruction, 16 times vdpbf16ps's work). Its W is packed for the tiles
 * (px_bf16_pack_amx), its X converted to bf16 once per GEMM (px_bf16_convert_rows) rather
 * than per tile. Each output is accumulated in one fp32 tile element over K in order, 32
 * values per step (the instruction's order within a step), so its bits depend on K and its
 * operands alone, as the vdpbf16ps kernel's do; but they are not that kernel's bits (another
 * order of the same sums): one process runs one of the two (px_bf16_kernel). */
enum { PX_BF16_NONE = 0, PX_BF16_AVX512 = 1, PX_BF16_AMX = 2 };
/* The kernel this process's bf16 GEMMs run, fixed per process: AMX where the CPU has AMX-BF16
 * and the OS lets the process use the tiles, unless PXDIFF_CPU_BF16_KERNEL=avx512 (A/B timing);
 * else AVX512 where px_bf16_supported(); else none. */
int px_bf16_kernel(void);
/* Why AMX is not used ("": it is). */
const char *px_bf16_amx_why_not(void);
/* Elements of W [N, K] packed for AMX: N rounded up to 16 times px_bf16_ld(K) (so N * K when N
 * is a multiple of 16 and K of 32). */
static inline size_t px_bf16_amx_elems(int N, int K) { return (size_t)((N + 15) & ~15) * (size_t)px_bf16_ld(K); }
/* W [N, K] fp32 -> Wp, bf16 in the tiles' layout: for each block of 16 rows of W (16 outputs)
 * and each step of 32 values of K, 1 KB holding 16 rows (pairs k = 2p, 2p + 1) of 16 outputs'
 * two values; rows past N and values past K zero. The block of outputs c (a multiple of 16)
 * starts at Wp + c * px_bf16_ld(K), as in px_bf16_pack's layout. */
void px_bf16_pack_amx(int N, int K, const float *W, uint16_t *Wp);
/* X rows [0, rows) -> bf16 rows of stride ld (a multiple of 32; zeros from K to ld), nearest
 * even (the AVX512_BF16 conversion: a denormal becomes zero, as in the products anyway). Only
 * when px_bf16_kernel() != PX_BF16_NONE. */
void px_bf16_convert_rows(int rows, int K, const float *X, int ldx, uint16_t *Xb, int ld);
/* px_gemm_bf16_tile for the AMX kernel: Xb the tile's rows converted (stride px_bf16_ld(K)),
 * readable up to the next multiple of 16 rows (those past mr are read, never used); Wp the
 * packed W from output c0 on (c0 a multiple of 16; columns past nc up to the next multiple of
 * 16 read, not used); K <= PX_BF16_MAX_K. Loads its tile configuration itself (each thread
 * has its own) and releases the tiles on return. Only when px_bf16_kernel() == PX_BF16_AMX. */
void px_gemm_bf16_amx_tile(int mr, int nc, int K, const uint16_t *Xb, const uint16_t *Wp, const float *bias,
                           float *Y, int ldy, int accumulate, int relu);

#endif
