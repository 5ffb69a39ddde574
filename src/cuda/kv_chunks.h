/* Which 16-byte chunk of staged K / V rows each thread copies, in the fp16-input attentions
 * (attention_tc.cu): the full attention's tile is 2 * 64 rows (64 K rows, then 64 V rows) of
 * `ch` chunks (ch = d / 8: 4, 6 or 8), stored at a row stride of d + 8 halves, each of a
 * block's `warps` warps copying `2 * 64 * ch / (32 * warps)` chunks per thread; the local
 * attention stages a span of rows (K and V at the same row and chunk) once per block.
 *
 * Plain C (the mapping is checked on the host by tests/test_kv_chunks.c) and CUDA.
 *
 * Why two mappings: shared memory takes a warp's 16-byte stores in four phases of 8 lanes,
 * one pass per phase when the 8 chunks fall in 8 different 16-byte bank groups. The row
 * stride of d + 8 halves (2d + 16 bytes: 80, 112, 144) keeps ldmatrix's reads of 8 rows
 * conflict-free, but with chunks taken row by row (row-major) a phase's 8 chunks span two
 * rows and share groups: 2 passes a phase at d = 48 (8 a store instead of 4), and ncu counted
 * 3.6 times the ideal shared wavefronts on these copies (GPU round seven, docs/benchmarks.md).
 * The spread mapping gives a phase rows r, r+2, r+4, r+6 and two adjacent chunks of each:
 * the row stride is an odd number of groups (5, 7, 9), so the 8 chunks fall in 8 different
 * groups, and every pair of lanes still reads one whole 32-byte sector of a row. */
#ifndef PX_CUDA_KV_CHUNKS_H
#define PX_CUDA_KV_CHUNKS_H

#if defined(__CUDACC__)
#define PX_KV_FN static __host__ __device__ __forceinline__
#else
#define PX_KV_FN static inline
#endif

/* Row-major: copy i of thread tid of nthreads takes chunk idx = tid + i * nthreads in order. */
PX_KV_FN void px_kv_chunk_rowmajor(int tid, int i, int nthreads, int ch, int *row, int *chunk) {
  const int idx = tid + i * nthreads;
  *row = idx / ch;
  *chunk = idx % ch;
}

/* Spread: one warp copy is a unit of 16 rows x 2 chunks, units numbered along the rows first
 * (nrow16 units of 16 rows, then the next chunk pair); within unit u lane l (phase q = l / 8,
 * e = l % 8) takes row 16 (u % nrow16) + 8 (q / 2) + 2 (e / 2) + q % 2 and chunk e % 2 of
 * pair u / nrow16. Needs ch even (every head width the kernels take). */
PX_KV_FN void px_kv_chunk_unit(int u, int nrow16, int lane, int *row, int *chunk) {
  const int q = lane >> 3, e = lane & 7;
  *row = (u % nrow16) * 16 + (q >> 1) * 8 + (e >> 1) * 2 + (q & 1);
  *chunk = (u / nrow16) * 2 + (e & 1);
}
/* The full attention's tile (128 rows): copy i of warp w (of `warps`) is unit w + warps * i. */
PX_KV_FN void px_kv_chunk_spread(int w, int lane, int i, int warps, int *row, int *chunk) {
  px_kv_chunk_unit(w + warps * i, 8, lane, row, chunk);
}

#undef PX_KV_FN
#endif
