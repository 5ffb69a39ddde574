// The per-design feature embeddings (backend.h: copy_cols, relpos_linear, atom_ref_embed,
// atom_pair_bias): what a design cache computes from the features once per design, so that a
// model on the device builds its cache there instead of on the host. The float operations are
// the CPU's (cpu/design_ops.c), in the same order, with no contraction into FMAs (__fmul_rn /
// __fadd_rn), so results differ from the CPU's only where a library function (asinhf, sqrtf
// vs the CPU's) rounds differently. One thread per output value or pair row; no atomics.
#include "cuda/context.cuh"
#include "cuda/launch.cuh"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace pxcuda {

void be_copy_cols(px_backend *b, int M, int C, const float *X, int ldx, float *Y, int ldy) {
  CTX(b);
  PROF("copy_cols");
  if (M <= 0 || C <= 0) return;
  CK(cudaMemcpy2DAsync(Y, sizeof(float) * (size_t)ldy, X, sizeof(float) * (size_t)ldx, sizeof(float) * (size_t)C,
                       (size_t)M, cudaMemcpyDeviceToDevice, g.stream));
}

__device__ __forceinline__ int clampi_d(int64_t v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : (int)v); }

// One thread per (row, channel).
__global__ void k_relpos_linear(int T, int64_t r0, int rows, int C, int rmax, int smax, const int64_t *chain,
                                const int64_t *residue, const int64_t *entity, const int64_t *token,
                                const int64_t *sym, const float *W, float *Y, int ldy) {
  px_pdl_enter();
  const int nr = 2 * rmax + 2, K = 2 * nr + 1 + 2 * smax + 2;
  const int64_t total = (int64_t)rows * C;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int r = (int)(idx / C), c = (int)(idx % C);
    const int64_t ij = r0 + r;
    const int i = (int)(ij / T), j = (int)(ij % T);
    const bool same_chain = chain[i] == chain[j], same_res = residue[i] == residue[j];
    const bool same_ent = entity[i] == entity[j];
    const int a = same_chain ? clampi_d(residue[i] - residue[j] + rmax, 0, 2 * rmax) : 2 * rmax + 1;
    const int t = (same_chain && same_res) ? clampi_d(token[i] - token[j] + rmax, 0, 2 * rmax) : 2 * rmax + 1;
    const int e = same_ent ? clampi_d(sym[i] - sym[j] + smax, 0, 2 * smax) : 2 * smax + 1;
    const float *w = W + (size_t)c * K;
    float v = __fadd_rn(w[a], w[nr + t]);
    if (same_ent) v = __fadd_rn(v, w[2 * nr]);
    Y[(size_t)r * ldy + c] = __fadd_rn(v, w[2 * nr + 1 + e]);
  }
}

void be_relpos_linear(px_backend *b, int T, int64_t r0, int rows, int C, int rmax, int smax, const int64_t *chain,
                      const int64_t *residue, const int64_t *entity, const int64_t *token, const int64_t *sym,
                      const float *W, float *Y, int ldy) {
  CTX(b);
  PROF("relpos_linear");
  if (rows <= 0 || C <= 0) return;
  px_launch(k_relpos_linear, blocks_for((int64_t)rows * C, 256), 256, 0, g.stream, g.pdl, T, r0, rows, C, rmax, smax,
            chain, residue, entity, token, sym, W, Y, ldy);
  LAUNCHED("relpos_linear");
}

// One thread per (atom, output): the one-hot columns' nonzero entries in order, as the CPU sums
// them (a zero entry adds nothing to a finite sum; skipping it keeps the CPU's float).
__global__ void k_atom_ref_embed(int N, int C, const float *pos, const float *q, const float *mask, const float *A,
                                 int na, const float *B, int nb, const float *Wp, const float *Wq, const float *Wf,
                                 float *Y) {
  px_pdl_enter();
  const int cf = 1 + na + nb;
  const int64_t total = (int64_t)N * C;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int n = (int)(idx / C), o = (int)(idx % C);
    const float *ps = pos + (size_t)n * 3, *wp = Wp + (size_t)o * 3, *wfr = Wf + (size_t)o * cf;
    const float a = __fadd_rn(__fadd_rn(__fmul_rn(wp[0], ps[0]), __fmul_rn(wp[1], ps[1])), __fmul_rn(wp[2], ps[2]));
    const float bq = __fmul_rn(Wq[o], asinhf(q[n]));
    const float mk = mask[n];
    float s = __fmul_rn(wfr[0], mk);
    const float *el = A + (size_t)n * na, *nc = B + (size_t)n * nb;
    for (int e = 0; e < na; e++)
      if (el[e] != 0.0f) s = __fadd_rn(s, __fmul_rn(wfr[1 + e], el[e]));
    for (int e = 0; e < nb; e++)
      if (nc[e] != 0.0f) s = __fadd_rn(s, __fmul_rn(wfr[1 + na + e], nc[e]));
    Y[idx] = __fmul_rn(__fadd_rn(__fadd_rn(a, bq), s), mk);
  }
}

void be_atom_ref_embed(px_backend *b, int N, int C, const float *pos, const float *q, const float *mask,
                       const float *A, int na, const float *B, int nb, const float *Wp, const float *Wq,
                       const float *Wf, float *Y) {
  CTX(b);
  PROF("atom_ref_embed");
  if (na < 0 || nb < 0 || na + nb > 1024) {
    keep_failure(g, px_fail(PX_ERR_INPUT, "atom_ref_embed: %d + %d one-hot columns (at most 1024)", na, nb));
    return;
  }
  if (N <= 0 || C <= 0) return;
  px_launch(k_atom_ref_embed, blocks_for((int64_t)N * C, 128), 128, 0, g.stream, g.pdl, N, C, pos, q, mask, A, na, B,
            nb, Wp, Wq, Wf, Y);
  LAUNCHED("atom_ref_embed");
}

// The atom pair pass: one thread per pair row, its C <= 64 channels in registers / local
// memory, the weights read through the read-only cache (every thread of a block reads the same
// weight at the same time: a broadcast). The head planes' pointers travel in the parameters.
constexpr int PAIR_MAX_C = 64;
constexpr int PAIR_MAX_HEADS = 256;
struct PairPlanes {
  float *p[PAIR_MAX_HEADS];
};

__device__ __forceinline__ float relu_d(float v) { return v > 0.0f ? v : 0.0f; }

template <int CMAX>
__global__ void __launch_bounds__(128) k_atom_pair_bias(int N, int T, int C, int nq, int nk, int64_t P,
                                                        const float *__restrict__ pos, const int64_t *__restrict__ uid,
                                                        const int64_t *__restrict__ tok, const float *__restrict__ cl,
                                                        const float *__restrict__ cm, const float *__restrict__ zp,
                                                        const float *__restrict__ Wd, const float *__restrict__ Wi,
                                                        const float *__restrict__ Wv, const float *__restrict__ M1,
                                                        const float *__restrict__ M2, const float *__restrict__ M3,
                                                        int nh, const float *__restrict__ Wh, PairPlanes planes,
                                                        float *p_out) {
  px_pdl_enter();
  const int off = (nk - nq) / 2;
  for (int64_t row = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; row < P; row += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bq = row / nk;
    const int j = (int)(row % nk);
    const int trunk = (int)(bq / nq), qa = (int)bq;
    const int ka = trunk * nq - off + j;
    const bool q_real = qa < N, k_real = ka >= 0 && ka < N;
    float pq0 = 0, pq1 = 0, pq2 = 0, pk0 = 0, pk1 = 0, pk2 = 0;
    int64_t uq = 0, tq = 0, uk = 0, tk = 0;
    if (q_real) pq0 = pos[(size_t)qa * 3], pq1 = pos[(size_t)qa * 3 + 1], pq2 = pos[(size_t)qa * 3 + 2], uq = uid[qa], tq = tok[qa];
    if (k_real) pk0 = pos[(size_t)ka * 3], pk1 = pos[(size_t)ka * 3 + 1], pk2 = pos[(size_t)ka * 3 + 2], uk = uid[ka], tk = tok[ka];
    const float dx = __fsub_rn(pq0, pk0), dy = __fsub_rn(pq1, pk1), dz = __fsub_rn(pq2, pk2);
    const float v = uq == uk ? 1.0f : 0.0f;
    const float vm = __fmul_rn(v, (q_real && k_real) ? 1.0f : 0.0f);
    const float d2 = __fadd_rn(__fadd_rn(__fadd_rn(1.0f, __fmul_rn(dx, dx)), __fmul_rn(dy, dy)), __fmul_rn(dz, dz));
    const float vinvd = __fmul_rn(__fdiv_rn(1.0f, d2), v);
    float x[CMAX], h[CMAX], gg[CMAX];
    const float *zr = zp ? zp + ((size_t)tq * T + (size_t)tk) * C : nullptr;
    for (int o = 0; o < C; o++) {
      const float *wd = Wd + (size_t)o * 3;
      float val = __fmul_rn(__fadd_rn(__fadd_rn(__fmul_rn(wd[0], dx), __fmul_rn(wd[1], dy)), __fmul_rn(wd[2], dz)), vm);
      val = __fadd_rn(val, __fmul_rn(Wi[o], vinvd));
      val = __fadd_rn(val, __fmul_rn(Wv[o], v));
      if (zr) val = __fadd_rn(val, zr[o]);
      if (q_real) val = __fadd_rn(val, cl[(size_t)qa * C + o]);
      val = __fadd_rn(val, k_real ? cm[(size_t)ka * C + o] : 0.0f);
      x[o] = val;
    }
    // p += M3 relu(M2 relu(M1 relu(p)))
    for (int o = 0; o < C; o++) h[o] = relu_d(x[o]);
    for (int o = 0; o < C; o++) {
      float acc = 0.0f;
      for (int i = 0; i < C; i++) acc = __fadd_rn(acc, __fmul_rn(M1[(size_t)o * C + i], h[i]));
      gg[o] = relu_d(acc);
    }
    for (int o = 0; o < C; o++) {
      float acc = 0.0f;
      for (int i = 0; i < C; i++) acc = __fadd_rn(acc, __fmul_rn(M2[(size_t)o * C + i], gg[i]));
      h[o] = relu_d(acc);
    }
    for (int o = 0; o < C; o++) {
      float acc = 0.0f;
      for (int i = 0; i < C; i++) acc = __fadd_rn(acc, __fmul_rn(M3[(size_t)o * C + i], h[i]));
      x[o] = __fadd_rn(x[o], acc);
    }
    if (p_out)
      for (int o = 0; o < C; o++) p_out[(size_t)row * C + o] = x[o];
    // LN without its weight (folded into Wh), then each head's column.
    float mean = 0.0f, var = 0.0f;
    for (int o = 0; o < C; o++) mean = __fadd_rn(mean, x[o]);
    mean = __fmul_rn(mean, __fdiv_rn(1.0f, (float)C));
    for (int o = 0; o < C; o++) {
      x[o] = __fsub_rn(x[o], mean);
      var = __fadd_rn(var, __fmul_rn(x[o], x[o]));
    }
    const float rstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fmul_rn(var, __fdiv_rn(1.0f, (float)C)), 1e-5f)));
    for (int o = 0; o < C; o++) x[o] = __fmul_rn(x[o], rstd);
    for (int hh = 0; hh < nh; hh++) {
      float acc = 0.0f;
      for (int i = 0; i < C; i++) acc = __fadd_rn(acc, __fmul_rn(Wh[(size_t)hh * C + i], x[i]));
      planes.p[hh][row] = acc;
    }
  }
}

void be_atom_pair_bias(px_backend *b, int N, int T, int C, int nq, int nk, const float *pos, const int64_t *uid,
                       const int64_t *tok, const float *cl, const float *cm, const float *zp, const float *Wd,
                       const float *Wi, const float *Wv, const float *M1, const float *M2, const float *M3, int nh,
                       const float *Wh, float *const *bias, float *p_out) {
  CTX(b);
  PROF("atom_pair_bias");
  if (C < 1 || C > PAIR_MAX_C || nh < 0 || nh > PAIR_MAX_HEADS || nq < 1 || nk < nq || nk % 16 || (nk - nq) % 2 ||
      N < 1) {
    keep_failure(g, px_fail(PX_ERR_INPUT,
                            "atom_pair_bias: unsupported shape (%d atoms, width %d (at most %d), %d heads (at most "
                            "%d), windows %d/%d (keys a multiple of 16))",
                            N, C, PAIR_MAX_C, nh, PAIR_MAX_HEADS, nq, nk));
    return;
  }
  PairPlanes planes;
  for (int h = 0; h < PAIR_MAX_HEADS; h++) planes.p[h] = h < nh ? bias[h] : nullptr;
  const int64_t P = (int64_t)((N + nq - 1) / nq) * nq * nk;
  const int threads = 128;
  if (C <= 16)
    px_launch((k_atom_pair_bias<16>), blocks_for(P, threads), threads, 0, g.stream, g.pdl, N, T, C, nq, nk, P, pos, uid,
              tok, cl, cm, zp, Wd, Wi, Wv, M1, M2, M3, nh, Wh, planes, p_out);
  else
    px_launch((k_atom_pair_bias<PAIR_MAX_C>), blocks_for(P, threads), threads, 0, g.stream, g.pdl, N, T, C, nq, nk, P,
              pos, uid, tok, cl, cm, zp, Wd, Wi, Wv, M1, M2, M3, nh, Wh, planes, p_out);
  LAUNCHED("atom_pair_bias");
}

// max |X| of each of count segments of n values into M[segment] (zeroed before): the bits of
// |x| compared as unsigned integers, which orders non-negative floats and puts a NaN above
// +inf, so a segment holding a NaN reports one. Segments on y.
__global__ void k_max_abs(int64_t n, const float *X, unsigned *M) {
  px_pdl_enter();
  const float *x = X + (int64_t)blockIdx.y * n;
  unsigned m = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    m = max(m, __float_as_uint(fabsf(x[i])));
  for (int o = 16; o; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) atomicMax(M + blockIdx.y, m);
}

void be_max_abs(px_backend *b, int count, int64_t n, const float *X, float *out) {
  CTX(b);
  PROF("max_abs");
  if (count <= 0) return;
  for (int i = 0; i < count; i++) out[i] = NAN;  // what a failure leaves
  if (count > 65535) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "max_abs on %s: %d segments (at most 65535)", g.name, count));
    return;
  }
  unsigned *m = (unsigned *)dev_alloc(g, sizeof(unsigned) * (size_t)count);
  if (!m) return;
  CK(cudaMemsetAsync(m, 0, sizeof(unsigned) * (size_t)count, g.stream));
  const int64_t per = (n + 255) / 256;
  const dim3 grid((unsigned)(per < 1024 ? (per > 0 ? per : 1) : 1024), (unsigned)count);
  px_launch(k_max_abs, grid, 256, 0, g.stream, g.pdl, n, X, m);
  LAUNCHED("max_abs");
  unsigned *h = (unsigned *)malloc(sizeof(unsigned) * (size_t)count);
  if (h && cudaMemcpyAsync(h, m, sizeof(unsigned) * (size_t)count, cudaMemcpyDeviceToHost, g.stream) == cudaSuccess &&
      cudaStreamSynchronize(g.stream) == cudaSuccess)
    for (int i = 0; i < count; i++) memcpy(&out[i], &h[i], sizeof(float));
  else
    keep_failure(g, px_fail(PX_ERR_BACKEND, "max_abs on %s: %s", g.name, h ? "the copy back failed" : "out of memory"));
  free(h);
  dev_free(g, m);
}

}  // namespace pxcuda
