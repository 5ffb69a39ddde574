/* The kernel interface between the model (src/model/) and a compute backend
 * (src/cpu/ now, src/cuda/ next). Kernels know raw float buffers and shapes, never
 * what a block is. Every buffer passed here lives in the backend's memory.
 *
 * Broadcast convention ("g_rows"): per-row conditioning tensors G with g_rows rows are
 * applied to row r of an [M, C] activation as G[r % g_rows]. With rows ordered
 * sample-major ([S, T, C] flattened), g_rows = T shares one G across samples and
 * g_rows = S*T gives each sample its own.
 *
 * Element types: every activation buffer is float32 unless an op's trailing px_etype
 * argument says otherwise. A backend with 16-bit GEMM operands (CUDA at the bf16 / fp16
 * precisions) lets the kernels that produce a GEMM's input write it in 16 bits, so that no
 * conversion pass runs before the GEMM; a backend without them (the CPU) takes PX_F32 only
 * and reports any other type as an error (px_fail with the op named; nothing is written). */
#ifndef PX_BACKEND_H
#define PX_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Element type of an activation buffer (16-bit buffers: [M, C] contiguous, ld = C). Not
 * io/tensor_types.h px_dtype, the checkpoint readers' on-disk types. */
typedef enum { PX_F32 = 0, PX_BF16 = 1, PX_F16 = 2 } px_etype;

/* A GEMM weight W [N, K] as the model passes it: the fp32 matrix and/or a 16-bit copy, both in
 * the backend's memory and owned by the model (which decides, once when it is prepared for a
 * backend, which matrices get a copy: src/model/device.c). A GEMM runs on 16-bit operands when
 * W has a copy and the backend's view is at a 16-bit precision; its 16-bit input is then stored
 * times 2^-e and the product scaled back by 2^e (exact: a power of two; src/model/fp16_range.c
 * proves the range). f32 may be NULL when every GEMM with W takes a 16-bit input. A 16-bit
 * output (linear's yt) is stored times 2^-ye (alpha = 2^(e - ye)); fp32 outputs ignore ye. */
typedef struct {
  const float *f32;
  const void *h16;  /* NULL: no 16-bit copy */
  px_etype h16_type; /* PX_BF16 or PX_F16 when h16 is set */
  int e;
  int ye;
} px_weight;

/* An fp32-only weight. */
static inline px_weight px_weight_f32(const float *W) {
  px_weight w = {W, NULL, PX_F32, 0, 0};
  return w;
}

typedef struct px_backend px_backend;

struct px_backend {
  const char *name; /* "cpu", "cuda:0", ...: the device, as users name it */
  /* 1 when the buffers alloc returns are device memory the host cannot read (CUDA): the
   * model then reads results through download. 0 (the CPU backend): they are host memory. */
  int device_memory;
  /* 1 when every activation this backend reads or writes is fp32 (the CPU): the model then
   * passes fp32 GEMM inputs even to a weight with a 16-bit copy, and the GEMM rounds its input
   * to the copy's type itself (the CPU's bf16: cpu/gemm_bf16.h). 0: 16-bit activations too. */
  int f32_inputs;
  /* Host threads of this context's parallel regions (set through px_backend_set_threads): n > 0,
   * or 0 to follow the process's count (px_num_threads, src/threads.c), the default. The CPU
   * backend's ops read it at every region (cpu/cpu_threads.h); a device backend has none (0).
   * A plain int, set only between calls on the context (pxdiff.h: px_model_set_num_threads). */
  int threads;
  /* NULL on failure, with the reason set (px_fail PX_ERR_NOMEM naming the operation, the
   * device and the size): the model keeps that message and adds what the buffer was for. */
  void *(*alloc)(px_backend *b, size_t bytes);
  void (*free)(px_backend *b, void *p);
  void (*upload)(px_backend *b, void *dst, const void *src, size_t bytes);
  void (*download)(px_backend *b, void *dst, const void *src, size_t bytes);

  /* Y[M, N] (ldy) = X[M, K] (ldx) W[N, K]^T + bias[N] (bias may be NULL);
   * accumulate != 0 adds into Y instead. seg (0 = M) is the number of rows of one
   * independent segment (one sample): the CPU backend never lets a GEMM tile cross a
   * segment and sizes tiles by seg alone, so a sample's result is bit-identical whatever
   * other samples share the call (BLAS kernels round differently for different M).
   * xt, yt: X's and Y's types. A 16-bit X (stored times 2^-W.e) needs W.h16 of the same type;
   * a 16-bit Y (the input of a 16-bit SwiGLU) needs a 16-bit X, no bias and no accumulate. */
  void (*linear)(px_backend *b, int M, int N, int K, const void *X, int ldx, px_weight W,
                 const float *bias, void *Y, int ldy, int accumulate, int seg, px_etype xt, px_etype yt);
  /* Y = max(X W^T + bias, 0): linear with the ReLU fused (no accumulate; fp32 X and Y). */
  void (*linear_relu)(px_backend *b, int M, int N, int K, const float *X, int ldx, px_weight W,
                      const float *bias, float *Y, int ldy, int seg);
  /* count GEMMs of one shape: Y_i[M, N] = X_i[M, K] W_i[N, K]^T + bias_i with X_i = X + i*sx,
   * W_i = W + i*sw, bias_i = bias + i*sb (bias may be NULL), Y_i = Y + i*sy; X, Y rows are
   * contiguous (ldx = K, ldy = N). seg as for linear. */
  void (*linear_batched)(px_backend *b, int count, int M, int N, int K, const float *X,
                         int64_t sx, const float *W, int64_t sw, const float *bias, int64_t sb,
                         float *Y, int64_t sy, int seg);
  /* Y = LN(X) * w + bias over the last axis (eps 1e-5, biased variance); w, bias may be NULL. */
  void (*layernorm)(px_backend *b, int M, int C, const float *X, const float *w,
                    const float *bias, float *Y);
  /* Y = LN(X) * G[r % g_rows] + B[r % g_rows] (AdaLN with precomputed conditioning); Y of type yt. */
  void (*adaln)(px_backend *b, int M, int C, const float *X, const float *G, const float *B,
                int g_rows, void *Y, px_etype yt);
  /* A[r] += G[r % g_rows] * Y[r] (adaLN-zero gated residual). Y of type yt: a 16-bit Y (the
   * output of a 16-bit GEMM, stored times 2^-ye) is read times 2^ye; an fp32 Y takes ye = 0.
   * Backends of fp32 activations (f32_inputs) take fp32 Y only. */
  void (*gated_residual)(px_backend *b, int M, int C, float *A, const float *G, int g_rows,
                         const void *Y, px_etype yt, int ye);
  /* Fused: A[r] += Gr[r % gr_rows] * Y[r] (Y of type yt, as gated_residual's); then An = LN(A)
   * * Gn[r % gn_rows] + Bn[r % gn_rows] (a gated residual followed by the next AdaLN); An of
   * type ant. */
  void (*residual_adaln)(px_backend *b, int M, int C, float *A, const float *Gr, int gr_rows,
                         const void *Y, px_etype yt, int ye, const float *Gn, const float *Bn, int gn_rows,
                         void *An, px_etype ant);
  /* Optional (NULL: the model runs residual_adaln or adaln, then adaln): the two AdaLNs of an
   * atom block's cross attention in one pass over the rows. With Gr set, A[r] += Gr[r % g_rows]
   * * R[r] first (R of type rt, as gated_residual's Y; R NULL with Gr NULL: A is only read);
   * then Y1 = LN(A) * G1[r % g_rows] +
   * B1[r % g_rows] and Y2 = LN(Y1) * G2[r % g_rows] + B2[r % g_rows], Y2 normalising the fp32
   * Y1 before Y1 is stored; Y1 and Y2 of type yt. */
  void (*adaln_pair)(px_backend *b, int M, int C, float *A, const float *Gr, const void *R, px_etype rt, int re,
                     const float *G1, const float *B1, const float *G2, const float *B2, int g_rows, void *Y1,
                     void *Y2, px_etype yt);
  /* O[r, c] *= sigmoid(P[r, c]); O has row stride ldo, P row stride ldp. */
  void (*sigmoid_mul)(px_backend *b, int M, int C, float *O, int ldo, const float *P, int ldp);
  /* Y[M, H] = silu(X[:, :H]) * X[:, H:2H] with X [M, 2H] of type xt; a 16-bit Y (yt) is stored
   * times 2^-e (the next GEMM's W.e), an fp32 Y unscaled (e = 0). */
  void (*swiglu)(px_backend *b, int M, int H, const void *X, void *Y, px_etype xt, px_etype yt, int e);
  /* Full attention over T tokens per sample, H heads of width d (head h owns channels
   * h*d..h*d+d-1): O = softmax(scale * Q K^T + bias[h]) V. Q, K, V rows have stride ld;
   * bias [H, T, T]; O [S*T, H*d] contiguous. With a gate G (row stride ldg, NULL for
   * none) the output is O * sigmoid(G), the attention gate applied in the same pass. O of type ot;
   * with ot PX_F16 a backend may also round scale * Q, K, V to fp16 (fp16_range.c bounds them). */
  void (*attention_full)(px_backend *b, int S, int T, int H, int d, const float *Q,
                         const float *K, const float *V, int ld, const float *bias, float scale,
                         void *O, const float *G, int ldg, px_etype ot);
  /* Optional (NULL: the model keeps the [q k v g] projection in fp32 for attention_full):
   * attention_full on fp16 inputs with an fp16 output, O = softmax(scale (Q + q_bias) K^T +
   * bias[h]) V * sigmoid(G). Q, K, V, G are fp16 with row stride ld (elements), q_bias [H*d]
   * fp32 (NULL: none): the projection GEMM writes fp16 without a bias (a 16-bit GEMM output
   * takes none, see linear) and q's bias is added here in fp32. The model takes it only for
   * blocks whose Q, K, V fp16_range.c bounds; G needs no bound (an overflow to +-inf gives
   * the gate's exact limits 1 and 0). bias16 (NULL: none) is bias rounded to fp16, [H, T, ldb16]
   * with ldb16 >= T a multiple of 8, 16-byte aligned, the padding zero (the design cache's
   * copy, where every value is finite in fp16): a backend may read it instead of bias (half the
   * bytes). */
  void (*attention_full_h16)(px_backend *b, int S, int T, int H, int d, const void *Q, const void *K, const void *V,
                             const void *G, int ld, const float *q_bias, const float *bias, const void *bias16,
                             int ldb16, float scale, void *O);
  /* Local atom attention (docs/spec.md): atoms cut into query trunks of nq, each seeing the
   * window of nk keys starting at nq*trunk - (nk - nq)/2; out-of-range keys get weight 0.
   * bias [H, n_trunks, nq, nk]; O [S*N, H*d] of type ot (a 16-bit O feeds the output GEMM;
   * fp16_range.c bounds it); gate G as for attention_full. */
  void (*attention_local)(px_backend *b, int S, int N, int H, int d, int nq, int nk,
                          const float *Q, const float *K, const float *V, int ld,
                          const float *bias, float scale, void *O, const float *G, int ldg, px_etype ot);
  /* Optional (NULL: the model keeps an atom block's [q g] and [k v] projections in fp32):
   * attention_local on fp16 inputs with an fp16 output, softmax(scale (Q + q_bias) K^T + bias)
   * V * sigmoid(G) over attention_local's windows. Q, K, V, G are fp16 with row stride ld
   * (elements), q_bias [H*d] fp32 (NULL: none), added here in fp32 (the projection GEMMs write
   * fp16 without a bias). The model takes it only for blocks whose q, k, v fp16_range.c
   * bounds; G needs no bound (as attention_full_h16). */
  void (*attention_local_h16)(px_backend *b, int S, int N, int H, int d, int nq, int nk, const void *Q,
                              const void *K, const void *V, const void *G, int ld, const float *q_bias,
                              const float *bias, float scale, void *O);
  /* X[i] = sigmoid(X[i]) (kind PX_ACT_SIGMOID) or max(X[i], 0) (PX_ACT_RELU), n values. */
  void (*activation)(px_backend *b, int64_t n, float *X, int kind);
  /* Y[s, t] = inv_count[t] * sum over atoms n of token t of X[s, n]: [S*N, C] -> [S*T, C]. */
  void (*atoms_to_tokens)(px_backend *b, int S, int N, int T, int C, const float *X,
                          const int64_t *atom_to_token, const float *inv_count, float *Y);
  /* Y[s, n] += A[s % a_samples, atom_to_token[n]]: [S*N, C] += broadcast of [a_samples*T, C]. */
  void (*tokens_to_atoms_add)(px_backend *b, int S, int N, int T, int C, int a_samples,
                              const float *A, const int64_t *atom_to_token, float *Y);
  /* Sticky failure of earlier asynchronous work (px_status code, message set), or 0.
   * May be NULL (the CPU backend cannot fail after allocation). */
  int (*status)(px_backend *b);
  /* Y[r] += A[r % a_rows] for an [M, C] Y. */
  void (*add_rows)(px_backend *b, int M, int C, float *Y, const float *A, int a_rows);

  /* The noise-level conditioning, for S levels t (in backend memory) over T token rows:
   *   s[u*T + r, c] = s0[r, c] + sum_f Wn[c, f] * LN(F_u)[f] * ln_w[f]
   *   F_u[f] = cos(2 pi (tau_u w[f] + bias[f])),  tau_u = log(t[u] / sigma) / 4
   * (LN over nf values, no offset, eps 1e-5; Wn [C, nf] with fp32 input, as linear takes it).
   * work: S * (2 nf + C) floats of scratch in backend memory. One op rather than four because each backend has one
   * implementation of it: the CPU's is the sequential loop the host always ran (its fp32
   * results are kept bit for bit), CUDA's its kernels and its GEMM. */
  void (*noise_cond)(px_backend *b, int S, int T, int nf, int C, const float *t, float sigma, const float *w,
                     const float *bias, const float *ln_w, px_weight Wn, const float *s0, float *work, float *s);
  /* Device-to-device copy (ordered with the other work). */
  void (*copy)(px_backend *b, void *dst, const void *src, size_t bytes);
  /* The EDM scalings over [S, N, 3] with t_hat in backend memory, sample i's level at
   * t[i * t_stride] (t_stride 0: one level shared by all samples):
   * mode 0: out = x / sqrt(sigma^2 + t^2)                       (r_noisy)
   * mode 1: out = 1 / (1 + (t/sigma)^2) * x + t / sqrt(1 + (t/sigma)^2) * rup   (x_denoised)
   * in this order of float operations (the CPU's results are those of the host code it replaced). */
  void (*edm)(px_backend *b, int mode, int S, int N, const float *x, const float *t, int t_stride,
              float sigma, const float *rup, float *out);

  /* ---- per-design feature embeddings (a design cache's host loops, now backend ops; the
   * CPU's are those loops, bit for bit, cpu/design_ops.c; CUDA's src/cuda/design_cache.cu) ---- */
  /* Y[r, 0:C] = X[r, 0:C] for M rows of strides ldx, ldy (a strided copy: concatenating
   * feature blocks side by side). */
  void (*copy_cols)(px_backend *b, int M, int C, const float *X, int ldx, float *Y, int ldy);
  /* Relative position one-hot classes of token pairs (i, j), then a linear map of the one-hot
   * vector (a sum of W's columns): rows r0 .. r0 + rows - 1 of the T x T pairs, row i*T + j at
   * Y + (r - r0) * ldy, C outputs. With nr = 2 rmax + 2, W [C, 2 nr + 1 + 2 smax + 2]:
   *   same chain (chain[i] == chain[j]): a = clamp(residue[i] - residue[j] + rmax, 0, 2 rmax),
   *     else a = 2 rmax + 1; t = clamp(token[i] - token[j] + rmax, 0, 2 rmax) for the same
   *     chain and residue, else 2 rmax + 1; same entity: e = clamp(sym[i] - sym[j] + smax, 0,
   *     2 smax), else 2 smax + 1;
   *   Y[c] = ((W[c, a] + W[c, nr + t]) [+ W[c, 2 nr] for the same entity]) + W[c, 2 nr + 1 + e]
   * in this order. Index arrays: T values each, in backend memory. */
  void (*relpos_linear)(px_backend *b, int T, int64_t r0, int rows, int C, int rmax, int smax,
                        const int64_t *chain, const int64_t *residue, const int64_t *entity, const int64_t *token,
                        const int64_t *sym, const float *W, float *Y, int ldy);
  /* A per-atom embedding of reference features, N rows of C outputs:
   *   Y[n, o] = (Wp[o, :] . pos[n, 0:3] + Wq[o] * asinh(q[n]) + Wf[o, :] . [mask[n], A[n, 0:na],
   *             B[n, 0:nb]]) * mask[n]
   * (Wp [C, 3], Wq [C], Wf [C, 1 + na + nb]; A and B are mostly zero (one-hot rows): a backend
   * may skip their zero entries, the sum keeping its order). na + nb <= 1024. */
  void (*atom_ref_embed)(px_backend *b, int N, int C, const float *pos, const float *q, const float *mask,
                         const float *A, int na, const float *B, int nb, const float *Wp, const float *Wq,
                         const float *Wf, float *Y);
  /* Pairwise atom features over local windows, a small MLP, LayerNorm and per-head bias planes.
   * N atoms cut into query trunks of nq, each with the window of nk keys starting at
   * nq*trunk - (nk - nq)/2 (as attention_local); P = ceil(N / nq) * nq * nk rows, row
   * (trunk*nq + i) * nk + j for query q = trunk*nq + i and key k = nq*trunk - (nk-nq)/2 + j.
   * An atom outside [0, N) has position 0, uid 0, token 0, cm 0 (and a query there no cl).
   * With dv = pos[q] - pos[k], v = (uid[q] == uid[k]), m = v when q and k are both in [0, N)
   * (else 0), channel o < C (C <= 64) of the row is, added in this order:
   *   x = (Wd[o,0] dv0 + Wd[o,1] dv1 + Wd[o,2] dv2) m + Wi[o] (1 / (1 + |dv|^2) v) + Wv[o] v
   *       + zp[tok[q], tok[k], o] (zp [T, T, C], when not NULL) + cl[q, o] (q < N) + cm[k, o]
   *   x += M3 relu(M2 relu(M1 relu(x)))           (M1, M2, M3 [C, C], no biases)
   *   bias[h][row] = Wh[h, :] . (x - mean(x)) / sqrt(var(x) + 1e-5)   for h < nh (<= 256)
   * bias: nh pointers (a host array) to planes of P floats in backend memory; x after the MLP
   * goes to p_out [P, C] when p_out is not NULL. nk must be a multiple of 16 and nk - nq even.
   * pos [N, 3], uid, tok [N], cl, cm [N, C]: backend memory. */
  void (*atom_pair_bias)(px_backend *b, int N, int T, int C, int nq, int nk, const float *pos, const int64_t *uid,
                         const int64_t *tok, const float *cl, const float *cm, const float *zp, const float *Wd,
                         const float *Wi, const float *Wv, const float *M1, const float *M2, const float *M3, int nh,
                         const float *Wh, float *const *bias, float *p_out);

  /* ---- optional: device backends with several precisions (NULL on the CPU) ---- */
  /* The same context (memory, streams) seen at another precision. */
  px_backend *(*at_precision)(px_backend *b, int precision);
  /* Y[i] = X[i] rounded to nearest in type yt (PX_BF16 / PX_F16), n values in this backend's
   * memory: how the model makes a weight's 16-bit copy. NULL: no 16-bit operands. The CPU has
   * it (PX_BF16 only) where it has AVX512_BF16: its linear then runs a weight with a bf16 copy
   * and K a multiple of 32 on bf16 operands (model/cpu_bf16.c decides which). */
  void (*convert)(px_backend *b, int64_t n, const float *X, void *Y, px_etype yt);
  /* Optional (NULL: none; the model then keeps fp32 copies only): Y [M, ldy] of 16-bit type
   * yt = X [M, C] (row stride ldx) rounded to nearest as convert's, columns C .. ldy - 1 of
   * each row zero. How the design cache makes a pair bias's fp16 copy. */
  void (*convert_rows)(px_backend *b, int64_t M, int C, const float *X, int ldx, void *Y, int ldy, px_etype yt);
  /* Optional (NULL: none): out[i] = max |X[i n + j]| over j < n, for i < count, on the host
   * (waits for the queued work); NaN where a segment holds a NaN. */
  void (*max_abs)(px_backend *b, int count, int64_t n, const float *X, float *out);
  /* A weight W [N, K]'s 16-bit copy of type yt in the layout this backend's linear reads (the
   * same N * K values as convert's, rounded the same way, in another order), where that is not
   * convert's row-major one; NULL: the model makes copies with convert. The CPU has it where
   * its bf16 GEMM is the AMX kernel (cpu/gemm_bf16.h), for N a multiple of 16 and K of 32. */
  void (*pack16)(px_backend *b, int N, int K, const float *W, void *Y, px_etype yt);

  /* ---- optional: asynchronous execution and graph replay (NULL on the CPU) ---- */
  /* The caller's stream (a cudaStream_t; NULL: none) this context orders its work with. The
   * stream belongs to the backend context, shared by every view and user of it. */
  void (*set_external_stream)(px_backend *b, void *stream);
  /* Order this backend's work after (direction 0) or before (direction 1) the work queued
   * so far on the caller's stream, without waiting on the host; 0 when no stream is set. */
  int (*join_external)(px_backend *b, int direction);
  /* Host memory that upload/download_async can use asynchronously (pinned on CUDA); NULL on
   * failure with the reason set, as alloc. */
  void *(*host_alloc)(px_backend *b, size_t bytes);
  void (*host_free)(px_backend *b, void *p);
  /* Device-to-host copy ordered after the work issued so far; complete after sync(). */
  void (*download_async)(px_backend *b, void *dst, const void *src, size_t bytes);
  void (*sync)(px_backend *b);
  /* Record the work issued between capture_begin and capture_end as a replayable graph
   * (NULL when capture failed: the caller then runs the work directly). Graphs hold
   * raw pointers: a graph is valid while its buffers and generation() are unchanged. */
  int (*capture_begin)(px_backend *b);
  void *(*capture_end)(px_backend *b);
  int (*graph_launch)(px_backend *b, void *graph);
  void (*graph_free)(px_backend *b, void *graph);
  /* Changes whenever the backend reallocates internal scratch that graphs may reference. */
  uint64_t (*generation)(px_backend *b);
  /* Concurrent lanes: lanes_fork(n) returns how many lanes it opened (1: none; each lane
   * starts after the work issued so far); lane_select(k) sends the following work to lane
   * k; lanes_join() makes lane 0 wait for all lanes and selects it. Work in different
   * lanes must touch disjoint buffers. */
  int (*lanes_fork)(px_backend *b, int n);
  void (*lane_select)(px_backend *b, int k);
  void (*lanes_join)(px_backend *b);

  /* ---- optional: the sampler's per-step work where the coordinates live (NULL on the
   * CPU, whose sampler runs on the host arrays). Same streams and float arithmetic as
   * src/sample/sampler.c; x, x_noisy, x_den are [S, N, 3] in backend memory. ---- */
  /* x[s] = t0 * N(0, I) from stream (seed, sample0 + s, 0, PX_RNG_INIT). */
  void (*sampler_init)(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, float t0, float *x);
  /* Step `step`'s augmentation (centre, x = R x + u, in place) and x_noisy = x + sd * noise. */
  void (*sampler_noise)(px_backend *b, int S, int N, uint64_t seed, uint32_t sample0, uint32_t step, float sd,
                        float *x, float *x_noisy);
  /* x = x_noisy + step_size * (x_noisy - x_den) / t_hat over n values. */
  void (*sampler_euler)(px_backend *b, int64_t n, const float *x_noisy, const float *x_den, float t_hat,
                        float step_size, float *x);
};

enum { PX_ACT_SIGMOID = 0, PX_ACT_RELU = 1 };

/* The CPU backend (cblas + OpenMP): the process's shared context (its thread count is always
 * the process's, px_num_threads). */
px_backend *px_cpu_backend(void);
/* A CPU context of its own (its table; NULL with the reason set when out of memory), freed by
 * px_cpu_backend_destroy (a no-op for the shared one); px_cpu_backend_is says whether b is a CPU
 * context. What a CPU context keeps and what is process-wide: cpu/cpu_backend.c's first comment. */
px_backend *px_cpu_backend_create(void);
void px_cpu_backend_destroy(px_backend *b);
int px_cpu_backend_is(const px_backend *b);
/* The CPU backend's BLAS and GEMM kernels in one line (`pxdiff info`, px_blas_name). */
const char *px_cpu_blas_describe(void);
/* The CPU's bf16 GEMM in one line: its kernel, or why there is none (`pxdiff info`). */
const char *px_cpu_bf16_describe(void);

/* The backend registry (src/backends.c): the one place that knows which backends this
 * build has. kind is an enum px_device (PX_DEVICE_CPU, PX_DEVICE_CUDA). */
/* Devices of a kind (CPU: 1; CUDA: visible GPUs, 0 without the CUDA build). */
int px_backend_device_count(int kind);
/* 1 when this build has the backend of a kind (CUDA: compiled with nvcc), else 0. */
int px_backend_built(int kind);
/* The process's shared backend of device `index` of a kind, seen at `precision` (an enum
 * px_precision; the CPU has fp32, and bf16 where it has AVX512_BF16: the same backend, with
 * convert, whose bf16 weight copies the model then makes); NULL with the reason set
 * (px_fail) when the build or the machine lacks it. */
px_backend *px_backend_get(int kind, int index, int precision);
/* A context of its own on device `index` (CUDA: new streams, scratch, cuBLAS handle; the CPU:
 * its own table), seen at `precision`, for a model handle that computes concurrently with
 * others on the same device. Freed by px_backend_destroy after every buffer made on it (a no-op
 * for the shared contexts). */
px_backend *px_backend_create(int kind, int index, int precision);
void px_backend_destroy(px_backend *b);
/* The device index a backend runs on (0 for the CPU). */
int px_backend_index(const px_backend *b);
/* A context's thread count (the `threads` field above): n > 0 (capped at 4096) or 0 (follow
 * px_num_threads). PX_ERR_INPUT for n < 0; PX_ERR_BACKEND for the shared CPU context (it is
 * the process's: px_set_num_threads sets its count) and for a device backend (its ops run on the
 * device; they have no host threads to set). The message is set; nothing changes on failure. */
int px_backend_set_threads(px_backend *b, int n);
/* The threads b's parallel regions run on now: its own count, else px_num_threads(). */
int px_backend_threads(const px_backend *b);

#endif
