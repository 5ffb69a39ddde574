/* DiffusionModule.forward (docs/spec.md, Algorithm 20) over a design cache.
 *
 * Rows are sample-major: token activations are [S*T, C], atom activations [S*N, C],
 * so every projection is one GEMM over all samples. Token-level conditioning s depends
 * only on the noise level: when all samples share t_hat (PXDesign's sampler) it is
 * computed once ([T, c_s]) and broadcast (g_rows = T). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/model.h"

typedef struct {
  float *base;
  size_t used; /* floats */
} bump;

static float *take(bump *b, size_t n) {
  n = (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
  float *p = b->base ? b->base + b->used : NULL;
  b->used += n;
  return p;
}

/* The element type of atom block k's GEMM inputs: PX_F16 when the model gave all five of its
 * matrices fp16 copies (device.c, from fp16_range.c's atom bounds) and the backend has the
 * fused AdaLN pair (the kv AdaLN reads the attention AdaLN's fp32 row before it is stored in
 * 16 bits); else fp32 (also past the last block, with no backend (sizing), on a backend of
 * fp32 activations, and at bf16, whose atom GEMMs keep converting an fp32 input). Only the
 * SwiGLU output is stored scaled (times 2^-ctb_b.e). */
static px_etype atom_dtype(const px_backend *be, const px_transformer_w *tf, int k) {
  if (!be || k >= tf->n_blocks || be->f32_inputs || !be->adaln_pair) return PX_F32;
  const px_block_w *B = &tf->blocks[k];
  const px_linear *ls[5] = {&B->proj1, &B->proj2, &B->o, &B->a12, &B->ctb_b};
  for (int i = 0; i < 5; i++)
    if (!ls[i]->w16 || ls[i]->w16_type != PX_F16 || (i < 4 && ls[i]->e)) return PX_F32;
  return PX_F16;
}

/* The type of a residual update written by l's GEMM from an input of type x: 16-bit when the
 * input is and the model proved the output's range for it (px_linear.y16, device.c), else
 * fp32. The update is then stored times 2^-l->ye. */
static px_etype update_type(const px_linear *l, px_etype x) { return x != PX_F32 && l->y16 ? x : PX_F32; }

/* Atom transformer (encoder or decoder) over q [S*N, C] in place. an, kvin, att, the
 * SwiGLU's input and hs only feed GEMMs or the SwiGLU: in blocks with fp16 matrices
 * (atom_dtype) the kernels producing them write fp16, and one fused kernel writes both the
 * attention AdaLN and the kv AdaLN of a row (the kv AdaLN then normalises the fp32 row). */
static void atom_transformer(px_backend *be, const px_transformer_w *tf,
                             const px_atom_block_cache *cache, int S, int N, float *q, bump *ws) {
  const int C = tf->c, H = tf->n_heads, dh = C / H, h = tf->hidden;
  const int M = S * N;
  const float scale = 1.0f / sqrtf((float)dh);
  size_t mark = ws->used;
  float *an = take(ws, (size_t)M * C), *kvin = take(ws, (size_t)M * C);
  float *qg = take(ws, (size_t)M * 2 * C), *kv = take(ws, (size_t)M * 2 * C);
  float *att = take(ws, (size_t)M * C), *y = take(ws, (size_t)M * C);
  float *a12 = take(ws, (size_t)M * 2 * h), *hs = take(ws, (size_t)M * h);
  if (!ws->base) return; /* sizing pass */
  /* Each gated residual is fused with the AdaLN that follows it (the block's transition
   * AdaLN, or the next block's attention AdaLN, with its kv AdaLN in fp16 blocks). */
  px_etype x = atom_dtype(be, tf, 0);
  if (x == PX_F32)
    be->adaln(be, M, C, q, cache[0].g_a, cache[0].b_a, N, an, PX_F32);
  else
    be->adaln_pair(be, M, C, q, NULL, NULL, PX_F32, 0, cache[0].g_a, cache[0].b_a, cache[0].g_kv, cache[0].b_kv, N,
                   an, kvin, x);
  for (int k = 0; k < tf->n_blocks; k++) {
    const px_block_w *B = &tf->blocks[k];
    const px_atom_block_cache *cb = &cache[k];
    const px_etype xn = atom_dtype(be, tf, k + 1);
    /* AttentionPairBias, cross-attention mode: kv = AdaLN_kv(a_n, s) (in fp16 blocks written
     * with a_n by the previous kernel). */
    if (x == PX_F32) be->adaln(be, M, C, an, cb->g_kv, cb->b_kv, N, kvin, PX_F32);
    /* [q | g] in one GEMM: proj1's bias holds linear_q's bias and zeros for g (adding 0 is exact).
     * att = softmax(...) V, times sigmoid(g) (the gate columns of qg) in the same kernel.
     * In fp16 blocks, on a backend with attention_local_h16, both GEMMs write fp16 without a
     * bias (half the bytes written and read back) and the attention adds q's bias in fp32. */
    if (x == PX_F16 && be->attention_local_h16) {
      be->linear(be, M, 2 * C, C, an, C, px_lw(&B->proj1), NULL, qg, 2 * C, 0, N, x, PX_F16);
      be->linear(be, M, 2 * C, C, kvin, C, px_lw(&B->proj2), NULL, kv, 2 * C, 0, N, x, PX_F16);
      const uint16_t *q16 = (const uint16_t *)qg, *kv16 = (const uint16_t *)kv;
      be->attention_local_h16(be, S, N, H, dh, PX_ATOM_NQ, PX_ATOM_NK, q16, kv16, kv16 + C, q16 + C, 2 * C,
                              B->proj1.b, cb->pair_bias, scale, att);
    } else {
      be->linear(be, M, 2 * C, C, an, C, px_lw(&B->proj1), B->proj1.b, qg, 2 * C, 0, N, x, PX_F32);
      be->linear(be, M, 2 * C, C, kvin, C, px_lw(&B->proj2), NULL, kv, 2 * C, 0, N, x, PX_F32);
      be->attention_local(be, S, N, H, dh, PX_ATOM_NQ, PX_ATOM_NK, qg, kv, kv + C, 2 * C, cb->pair_bias, scale, att,
                          qg + C, 2 * C, x);
    }
    /* The updates y (attention, then transition) in fp16 where proven (update_type). */
    const px_etype yo = update_type(&B->o, x), yb = update_type(&B->ctb_b, x);
    be->linear(be, M, C, C, att, C, px_lw(&B->o), NULL, y, C, 0, N, x, yo);
    /* q += gate * y, then the ConditionedTransitionBlock's AdaLN. */
    be->residual_adaln(be, M, C, q, cb->gate_last, N, y, yo, B->o.ye, cb->g_c, cb->b_c, N, an, x);
    /* With fp16 inputs [x1 | x2] is fp16 too, and the SwiGLU writes the last GEMM's input
     * times 2^-e. */
    be->linear(be, M, 2 * h, C, an, C, px_lw(&B->a12), NULL, a12, 2 * h, 0, N, x, x);
    be->swiglu(be, M, h, a12, hs, x, x, x != PX_F32 ? B->ctb_b.e : 0);
    be->linear(be, M, C, h, hs, h, px_lw(&B->ctb_b), NULL, y, C, 0, N, x, yb);
    if (k + 1 < tf->n_blocks && xn != PX_F32)
      be->adaln_pair(be, M, C, q, cb->gate_ctb, y, yb, B->ctb_b.ye, cache[k + 1].g_a, cache[k + 1].b_a,
                     cache[k + 1].g_kv, cache[k + 1].b_kv, N, an, kvin, xn);
    else if (k + 1 < tf->n_blocks)
      be->residual_adaln(be, M, C, q, cb->gate_ctb, N, y, yb, B->ctb_b.ye, cache[k + 1].g_a, cache[k + 1].b_a, N, an,
                         PX_F32);
    else
      be->gated_residual(be, M, C, q, cb->gate_ctb, N, y, yb, B->ctb_b.ye);
    x = xn;
  }
  ws->used = mark;
}

size_t px_atom_transformer_scratch(const px_transformer_w *tf, int S, int N) {
  bump b = {NULL, 0};
  atom_transformer(NULL, tf, NULL, S, N, NULL, &b);
  return b.used;
}

void px_atom_transformer(px_backend *be, const px_transformer_w *tf, const px_atom_block_cache *cache, int S,
                         int N, float *q, float *scratch) {
  bump b = {scratch, 0};
  atom_transformer(be, tf, cache, S, N, q, &b);
}

/* Token blocks processed per batch of s-side terms: all of them when the terms of every
 * block fit in ~256 MB (the usual case: one noise level per call, so R = T rows), fewer
 * when each sample has its own noise level and T is large. */
static int sterm_group(int n_blocks, int R, int C) {
  const size_t per_block = (size_t)6 * R * C * sizeof(float);
  size_t g = ((size_t)256 << 20) / (per_block ? per_block : 1);
  if (g < 1) g = 1;
  return g > (size_t)n_blocks ? n_blocks : (int)g;
}

/* The s-side terms of token blocks: per block, matrices 2j / 2j+1 of each kind (attention
 * and transition AdaLN gates/shifts, output gates), each [R, C], RC floats apart. */
typedef struct {
  float *gate_ln, *shift_ln, *gate_raw;
} sterms;

/* s-side terms of blocks [k0, k0 + g) over R rows of s (sn = LN(s) without weights). */
static void token_sterms(px_backend *be, const px_transformer_w *tf, int R, int T, const float *s,
                         const float *sn, int k0, int g, const sterms *st) {
  const int C = tf->c, cs = tf->c_s, nm = 2 * g;
  const size_t RC = (size_t)R * C, CS = (size_t)C * cs;
  be->linear_batched(be, nm, R, C, cs, sn, 0, tf->st_w_gate_ln + 2 * (size_t)k0 * CS, CS,
                     tf->st_b_gate_ln + 2 * (size_t)k0 * C, C, st->gate_ln, RC, T);
  be->activation(be, (int64_t)nm * RC, st->gate_ln, PX_ACT_SIGMOID);
  be->linear_batched(be, nm, R, C, cs, sn, 0, tf->st_w_shift_ln + 2 * (size_t)k0 * CS, CS, NULL, 0,
                     st->shift_ln, RC, T);
  be->linear_batched(be, nm, R, C, cs, s, 0, tf->st_w_gate_raw + 2 * (size_t)k0 * CS, CS,
                     tf->st_b_gate_raw + 2 * (size_t)k0 * C, C, st->gate_raw, RC, T);
  be->activation(be, (int64_t)nm * RC, st->gate_raw, PX_ACT_SIGMOID);
}

/* The element type of token block k's GEMM inputs: 16-bit when the model gave all four of its
 * matrices a 16-bit copy (device.c: all or none per block), else fp32 (also past the last
 * block, and always on a backend of fp32 activations: the CPU's bf16 GEMMs round their fp32
 * input themselves). Only the SwiGLU output is stored scaled (times 2^-ctb_b.e): the kernels
 * producing the other three inputs write them unscaled, so those matrices must have e = 0. */
static px_etype block_dtype(const px_backend *be, const px_transformer_w *tf, int k) {
  if (k >= tf->n_blocks || be->f32_inputs) return PX_F32;
  const px_block_w *B = &tf->blocks[k];
  const px_etype t = B->proj1.w16 ? B->proj1.w16_type : PX_F32;
  if (t == PX_F32 || !B->o.w16 || !B->a12.w16 || !B->ctb_b.w16 || B->o.w16_type != t || B->a12.w16_type != t ||
      B->ctb_b.w16_type != t || B->proj1.e || B->o.e || B->a12.e)
    return PX_F32;
  return t;
}

/* Token blocks [k0, k0 + g) over a [S*T, C] in place. Block k0 + j's s-side terms are
 * matrix 2j / 2j+1 of st, starting `off` floats in, and a row r uses term row r % g_rows.
 * an, att, hs and the SwiGLU's input only feed GEMMs or the SwiGLU: in blocks with 16-bit
 * weights (block_dtype) the kernels producing them write them in 16 bits. */
static void token_blocks(px_backend *be, const px_transformer_w *tf, const float *pair_bias, const void *pair_bias16,
                         int ldb16, int S, int T, int k0, int g, const sterms *st, size_t RC, size_t off, int g_rows,
                         float *a, bump *ws) {
  const int C = tf->c, H = tf->n_heads, dh = C / H, h = tf->hidden;
  const int M = S * T;
  const float scale = 1.0f / sqrtf((float)dh);
  size_t mark = ws->used;
  float *an = take(ws, (size_t)M * C);
  float *proj = take(ws, (size_t)M * (4 * C > 2 * h ? 4 * C : 2 * h));
  float *att = take(ws, (size_t)M * C), *y = take(ws, (size_t)M * C), *hs = take(ws, (size_t)M * h);
  const size_t TT = (size_t)T * T;
  if (!ws->base) return; /* sizing pass */
  px_etype x = block_dtype(be, tf, k0);
  for (int j = 0; j < g; j++) {
    const int k = k0 + j;
    const px_etype xn = block_dtype(be, tf, k + 1);
    const px_block_w *B = &tf->blocks[k];
    const float *g_a = st->gate_ln + (size_t)(2 * j) * RC + off, *g_c = st->gate_ln + (size_t)(2 * j + 1) * RC + off;
    const float *b_a = st->shift_ln + (size_t)(2 * j) * RC + off, *b_c = st->shift_ln + (size_t)(2 * j + 1) * RC + off;
    const float *gl = st->gate_raw + (size_t)(2 * j) * RC + off, *gc = st->gate_raw + (size_t)(2 * j + 1) * RC + off;
    if (j == 0) be->adaln(be, M, C, a, g_a, b_a, g_rows, an, x); /* else fused into the last residual */
    /* [q | k v g] in one GEMM; the bias is linear_q's, zeros elsewhere (see atom_transformer).
     * In fp16 blocks, on a backend with attention_full_h16, the GEMM writes fp16 without the
     * bias (half the bytes written and read back) and the attention adds q's bias in fp32. */
    if (x == PX_F16 && be->attention_full_h16) {
      be->linear(be, M, 4 * C, C, an, C, px_lw(&B->proj1), NULL, proj, 4 * C, 0, T, x, PX_F16);
      const uint16_t *p16 = (const uint16_t *)proj;
      const void *b16 = pair_bias16 ? (const uint16_t *)pair_bias16 + (size_t)k * H * T * ldb16 : NULL;
      be->attention_full_h16(be, S, T, H, dh, p16, p16 + C, p16 + 2 * C, p16 + 3 * C, 4 * C, B->proj1.b,
                             pair_bias + (size_t)k * H * TT, b16, ldb16, scale, att);
    } else {
      be->linear(be, M, 4 * C, C, an, C, px_lw(&B->proj1), B->proj1.b, proj, 4 * C, 0, T, x, PX_F32);
      be->attention_full(be, S, T, H, dh, proj, proj + C, proj + 2 * C, 4 * C, pair_bias + (size_t)k * H * TT,
                         scale, att, proj + 3 * C, 4 * C, x);
    }
    /* The updates y (attention, then transition) in 16 bits where proven (update_type). */
    const px_etype yo = update_type(&B->o, x), yb = update_type(&B->ctb_b, x);
    be->linear(be, M, C, C, att, C, px_lw(&B->o), NULL, y, C, 0, T, x, yo);
    be->residual_adaln(be, M, C, a, gl, g_rows, y, yo, B->o.ye, g_c, b_c, g_rows, an, x);
    /* With 16-bit inputs [x1 | x2] is 16-bit too: the SwiGLU reads half the bytes, and writes
     * the last GEMM's input times 2^-e. */
    be->linear(be, M, 2 * h, C, an, C, px_lw(&B->a12), NULL, proj, 2 * h, 0, T, x, x);
    be->swiglu(be, M, h, proj, hs, x, x, x != PX_F32 ? B->ctb_b.e : 0);
    be->linear(be, M, C, h, hs, h, px_lw(&B->ctb_b), NULL, y, C, 0, T, x, yb);
    if (j + 1 < g) /* the residual, fused with the next block's attention AdaLN */
      be->residual_adaln(be, M, C, a, gc, g_rows, y, yb, B->ctb_b.ye, st->gate_ln + (size_t)(2 * j + 2) * RC + off,
                         st->shift_ln + (size_t)(2 * j + 2) * RC + off, g_rows, an, xn);
    else
      be->gated_residual(be, M, C, a, gc, g_rows, y, yb, B->ctb_b.ye);
    x = xn;
  }
  ws->used = mark;
}

/* The token transformer with its s-side terms computed here, G blocks at a time. */
static void token_transformer(px_backend *be, const px_transformer_w *tf, const float *pair_bias,
                              const void *pair_bias16, int ldb16, int S, int T, int Ss, const float *s, float *a,
                              bump *ws) {
  const int C = tf->c, cs = tf->c_s, nb = tf->n_blocks;
  const int R = Ss * T;
  const int G = sterm_group(nb, R, C);
  const size_t RC = (size_t)R * C;
  size_t mark = ws->used;
  float *sn = take(ws, (size_t)R * cs);
  const sterms st = {take(ws, 2 * (size_t)G * RC), take(ws, 2 * (size_t)G * RC), take(ws, 2 * (size_t)G * RC)};
  if (!ws->base) { /* sizing pass: the blocks' scratch comes on top */
    token_blocks(be, tf, pair_bias, pair_bias16, ldb16, S, T, 0, 0, &st, RC, 0, R, a, ws);
    return;
  }
  be->layernorm(be, R, cs, s, NULL, NULL, sn); /* LN(s); each AdaLN's scale is folded into its weights */
  for (int k0 = 0; k0 < nb; k0 += G) {
    const int g = nb - k0 < G ? nb - k0 : G;
    token_sterms(be, tf, R, T, s, sn, k0, g, &st);
    token_blocks(be, tf, pair_bias, pair_bias16, ldb16, S, T, k0, g, &st, RC, 0, R, a, ws);
  }
  ws->used = mark;
}

/* Transition added in place over R rows of width C (conditioning's transition_s*). */
static void transition_rows(px_backend *be, const px_transition_w *t, int R, int T, int C,
                            float *x, bump *ws) {
  size_t mark = ws->used;
  float *xn = take(ws, (size_t)R * C), *ab = take(ws, (size_t)R * 4 * C), *hh = take(ws, (size_t)R * 2 * C);
  if (!ws->base) return; /* sizing pass */
  be->layernorm(be, R, C, x, t->ln_w, t->ln_b, xn);
  be->linear(be, R, 2 * C, C, xn, C, px_lw(&t->a), NULL, ab, 4 * C, 0, T, PX_F32, PX_F32);
  be->linear(be, R, 2 * C, C, xn, C, px_lw(&t->b), NULL, ab + 2 * C, 4 * C, 0, T, PX_F32, PX_F32);
  be->swiglu(be, R, 2 * C, ab, hh, PX_F32, PX_F32, 0);
  be->linear(be, R, C, 2 * C, hh, 2 * C, px_lw(&t->out), NULL, x, C, 1, T, PX_F32, PX_F32);
  ws->used = mark;
}

/* Hand an intermediate to the probe, from host memory whatever the backend. */
static void probe_out(px_backend *be, px_probe_fn probe, void *user, const char *name,
                      const float *data, int64_t n) {
  if (!probe) return;
  if (!be->device_memory) {
    probe(user, name, data, n);
    return;
  }
  float *h = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!h) return;
  be->download(be, h, data, sizeof(float) * (size_t)n);
  probe(user, name, h, n);
  free(h);
}

/* Host staging of one call (pinned on CUDA): x_noisy and t_hat going in, x_denoised coming out. */
typedef struct {
  float *x, *t, *out;
} host_io;

static size_t host_floats(int S, int N) { return (size_t)S * N * 3 * 2 + (size_t)S + 64; }

static host_io host_layout(float *h, int S, int N) {
  host_io io;
  io.x = h;
  io.t = io.x + (size_t)S * N * 3;
  io.out = io.t + S;
  return io;
}

/* The first workspace buffers: x_noisy, t_hat and x_denoised of a call (px_denoise uploads the
 * caller's host arrays into them, px_denoise_device copies the caller's device tensors). Every
 * call then runs the same backend operations from the noise embedding to the EDM output mix:
 * one implementation per backend, no host copy of the conditioning. */
typedef struct {
  float *x, *t, *out;
} io_bufs;

static io_bufs take_io(bump *ws, int S, int N) {
  io_bufs io;
  io.x = take(ws, (size_t)S * N * 3);
  io.t = take(ws, (size_t)S);
  io.out = take(ws, (size_t)S * N * 3);
  return io;
}

/* Buffers of one call shared by its lanes (sample-major: lane k uses its samples' rows). */
typedef struct {
  io_bufs io;
  float *s, *a, *q, *big, *tok, *r, *rup;
  sterms st;        /* token s-side terms of every block, when hoisted (lanes) */
  int hoisted;
  int t_stride;     /* io.t: 1 level per sample, or 0: one shared level */
} call_bufs;

/* Lanes (backend.h): a call's samples split in two halves that run concurrently. Opt-in
 * (PXDIFF_LANES=2), and only when the backend has lanes, no probe is attached, all samples
 * share one noise level and every token block's s-side terms fit at once (computed before
 * the split, shared by both halves). They paid when the kernels left the GPU idle between
 * launches (H200, tf32, 10 samples: 12.07 against 12.66 ms at 620 tokens); with the 16-bit
 * blocks one lane's kernels fill the card and the halves only compete: H200, fp16, main
 * 1aadf04, two lanes against one took 2.41 / 4.43 / 8.36 ms against 2.21 / 4.13 / 8.11 at
 * 150 / 330 / 620 tokens and 10 samples, 8.0 / 17.9 / 37.2 against 8.0 / 17.7 / 36.0 at
 * 50 samples. PXDIFF_LANES=1 / 2 forces one / two lanes. */
static int lanes_planned(px_backend *be, const px_transformer_w *tt, int S, int T, int R, px_probe_fn probe) {
  const char *e = getenv("PXDIFF_LANES"); /* read per call: tests switch it within a process */
  const int env = e && *e ? atoi(e) : 0;
  /* One shared level (Ss = 1, PXDesign's sampler; R = T) only: with a level per sample the
   * s-side terms of all blocks rarely fit at once, and that layout is not exercised. */
  if (!be->lanes_fork || probe || S < 2 || env == 1 || R != T) return 1;
  if (sterm_group(tt->n_blocks, R, tt->c) != tt->n_blocks) return 1;
  return env >= 2 ? 2 : 1;
}

/* First sample and sample count of lane k of nl. */
static int lane_first(int S, int nl, int k) { return (int)((int64_t)S * k / nl); }

/* Scratch one lane of Sk samples needs (dry runs of its transformers), and the
 * conditioning's transitions (run in lane 0's region before the split). */
static size_t lane_scratch(px_backend *be, const px_model *W, int Sk, int T, int N, int Ss, int R,
                           int hoisted, int cs) {
  size_t need = 0;
  for (int part = 0; part < 4; part++) {
    bump b = {NULL, 0};
    if (part == 0) atom_transformer(be, &W->enc_tf, NULL, Sk, N, NULL, &b);
    if (part == 1) atom_transformer(be, &W->dec_tf, NULL, Sk, N, NULL, &b);
    if (part == 2) {
      const sterms none = {NULL, NULL, NULL};
      if (hoisted)
        token_blocks(be, &W->tok_tf, NULL, NULL, 0, Sk, T, 0, 0, &none, 0, 0, 0, NULL, &b);
      else
        token_transformer(be, &W->tok_tf, NULL, NULL, 0, Sk, T, Ss, NULL, NULL, &b);
    }
    if (part == 3) transition_rows(be, &W->tr_s1, R, T, cs, NULL, &b);
    if (b.used > need) need = b.used;
  }
  return need;
}

/* One lane's share of the call: samples [s0, s0 + Sk), encoder to output. */
static void forward_lane(const px_model *m, px_design *d, int S, int Ss, int s0, int Sk, const call_bufs *cb,
                         bump *lw, px_probe_fn probe, void *user) {
  px_backend *be = d->be;
  const px_model *W = d->W;
  const px_dims *D = &m->dims;
  const int T = d->T, N = d->N, ct = D->c_token, ca = D->c_atom, cw = ct > ca ? ct : ca;
  const int R = Ss * T;
  /* This lane's rows of the per-sample buffers; conditioning rows are per sample only
   * when each sample has its own level (Ss = S). */
  float *a = cb->a + (size_t)s0 * T * ct, *q = cb->q + (size_t)s0 * N * ca, *big = cb->big + (size_t)s0 * N * cw;
  const float *r = cb->r + (size_t)s0 * N * 3;
  float *rup = cb->rup + (size_t)s0 * N * 3;
  const size_t srow = Ss == 1 ? 0 : (size_t)s0 * T; /* first conditioning row of this lane */
  const int g_rows = Ss == 1 ? T : Sk * T;
  /* ---- encoder: q = c + W_r r, atom transformer, mean of relu(W_q q) per token ---- */
  be->linear(be, Sk * N, ca, 3, r, 3, px_lw(&W->enc_r), NULL, q, ca, 0, N, PX_F32, PX_F32);
  be->add_rows(be, Sk * N, ca, q, d->c, N);
  atom_transformer(be, &W->enc_tf, d->enc, Sk, N, q, lw);
  be->linear_relu(be, Sk * N, ct, ca, q, ca, px_lw(&W->enc_q), NULL, big, ct, N);
  be->atoms_to_tokens(be, Sk, N, T, ct, big, d->atom_to_token, d->inv_count, a);
  probe_out(be, probe, user, "a_enc", a, (int64_t)Sk * T * ct);
  probe_out(be, probe, user, "q_skip", q, (int64_t)Sk * N * ca);
  /* ---- a += Lin_s(LN(s)) (computed before the split); token transformer; LN ---- */
  be->add_rows(be, Sk * T, ct, a, cb->tok + srow * ct, g_rows);
  probe_out(be, probe, user, "a_in", a, (int64_t)Sk * T * ct);
  if (cb->hoisted)
    token_blocks(be, &W->tok_tf, d->tok_pair_bias, d->tok_pair_bias16, d->tok_bias16_ld, Sk, T, 0, W->tok_tf.n_blocks,
                 &cb->st, (size_t)R * W->tok_tf.c, srow * W->tok_tf.c, g_rows, a, lw);
  else
    token_transformer(be, &W->tok_tf, d->tok_pair_bias, d->tok_pair_bias16, d->tok_bias16_ld, Sk, T, Ss, cb->s, a, lw);
  probe_out(be, probe, user, "a_trans", a, (int64_t)Sk * T * ct);
  be->layernorm(be, Sk * T, ct, a, W->ln_a_w, NULL, a);
  probe_out(be, probe, user, "a_ln", a, (int64_t)Sk * T * ct);
  /* ---- decoder: q = broadcast(Lin_a(a)) + q_skip; atom transformer; Lin_out(LN(q)) ---- */
  be->linear(be, Sk * T, ca, ct, a, ct, px_lw(&W->dec_a), NULL, big, ca, 0, T, PX_F32, PX_F32);
  be->tokens_to_atoms_add(be, Sk, N, T, ca, Sk, big, d->atom_to_token, q);
  atom_transformer(be, &W->dec_tf, d->dec, Sk, N, q, lw);
  be->layernorm(be, Sk * N, ca, q, W->dec_ln_q_w, NULL, big);
  be->linear(be, Sk * N, 3, ca, big, ca, px_lw(&W->dec_out), NULL, rup, 3, 0, N, PX_F32, PX_F32);
  be->edm(be, 1, Sk, N, cb->io.x + (size_t)s0 * N * 3, cb->io.t + (size_t)s0 * cb->t_stride, cb->t_stride,
          D->sigma_data, rup, cb->io.out + (size_t)s0 * N * 3);
}

/* One call on the backend, from io.x / io.t (in its memory) to io.out; nothing here waits for
 * the device, so it can be captured as a graph. A dry run (ws->base NULL) only sizes the
 * workspace. */
static void forward_device(const px_model *m, px_design *d, int S, int Ss, bump *ws, px_probe_fn probe,
                           void *user) {
  px_backend *be = d->be;
  const px_model *W = d->W;
  const px_dims *D = &m->dims;
  const int T = d->T, N = d->N, cs = D->c_s, ct = D->c_token, ca = D->c_atom, cw = ct > ca ? ct : ca;
  const int R = Ss * T;
  const px_transformer_w *tt = &W->tok_tf;
  const int nl = lanes_planned(be, tt, S, T, R, probe);
  const size_t RC = (size_t)R * tt->c;

  call_bufs cb;
  memset(&cb, 0, sizeof cb);
  cb.io = take_io(ws, S, N);
  cb.s = take(ws, (size_t)R * cs);
  float *ncw = take(ws, (size_t)S * (2 * (size_t)D->n_fourier + cs)); /* noise_cond's scratch */
  cb.a = take(ws, (size_t)S * T * ct);
  cb.q = take(ws, (size_t)S * N * ca);
  cb.big = take(ws, (size_t)S * N * cw); /* [S*N, c_token] scratch */
  float *sn = take(ws, (size_t)R * cs);
  cb.tok = take(ws, (size_t)R * cw);
  cb.r = take(ws, (size_t)S * N * 3);
  cb.rup = take(ws, (size_t)S * N * 3);
  cb.hoisted = nl > 1;
  float *snt = NULL;
  if (cb.hoisted) {
    snt = take(ws, (size_t)R * cs);
    cb.st.gate_ln = take(ws, 2 * (size_t)tt->n_blocks * RC);
    cb.st.shift_ln = take(ws, 2 * (size_t)tt->n_blocks * RC);
    cb.st.gate_raw = take(ws, 2 * (size_t)tt->n_blocks * RC);
  }
  bump lw[2];
  for (int k = 0; k < nl; k++) {
    const int Sk = lane_first(S, nl, k + 1) - lane_first(S, nl, k);
    lw[k].base = take(ws, lane_scratch(be, W, Sk, T, N, Ss, R, cb.hoisted, cs));
    lw[k].used = 0;
  }
  if (!ws->base) return; /* sizing pass */
  /* ---- conditioning: s = s0 + Lin_n(LN(fourier(t))), then two transitions over s ---- */
  /* io.t holds Ss levels (1 when they are shared); the noise embedding is computed once per level. */
  cb.t_stride = Ss == S ? 1 : 0;
  be->noise_cond(be, Ss, T, D->n_fourier, cs, cb.io.t, D->sigma_data, W->fourier_w, W->fourier_b, W->cond_ln_n_w,
                 px_lw(&W->cond_n), d->s0_dev ? d->s0_dev : d->s0, ncw, cb.s);
  transition_rows(be, &W->tr_s1, R, T, cs, cb.s, &lw[0]);
  transition_rows(be, &W->tr_s2, R, T, cs, cb.s, &lw[0]);
  probe_out(be, probe, user, "s", cb.s, (int64_t)R * cs);
  be->edm(be, 0, S, N, cb.io.x, cb.io.t, cb.t_stride, D->sigma_data, NULL, cb.r);
  /* Token-level conditioning terms, shared by every sample (and both lanes). */
  be->layernorm(be, R, cs, cb.s, W->ln_s_w, NULL, sn);
  be->linear(be, R, ct, cs, sn, cs, px_lw(&W->lin_s), NULL, cb.tok, ct, 0, T, PX_F32, PX_F32);
  if (cb.hoisted) {
    be->layernorm(be, R, cs, cb.s, NULL, NULL, snt); /* each AdaLN's scale is folded into its weights */
    token_sterms(be, tt, R, T, cb.s, snt, 0, tt->n_blocks, &cb.st);
  }
  /* ---- per sample: encoder, token transformer, decoder, in nl lanes ---- */
  const int opened = nl > 1 ? be->lanes_fork(be, nl) : 1; /* 1: the lanes run one after another */
  for (int k = 0; k < nl; k++) {
    if (opened > 1) be->lane_select(be, k);
    const int s0 = lane_first(S, nl, k), Sk = lane_first(S, nl, k + 1) - s0;
    forward_lane(m, d, S, Ss, s0, Sk, &cb, &lw[k], probe, user);
  }
  if (opened > 1) be->lanes_join(be);
  probe_out(be, probe, user, "r_update", cb.rup, (int64_t)S * N * 3);
}


static void drop_graph(px_design *d) {
  if (d->graph) d->be->graph_free(d->be, d->graph);
  d->graph = NULL;
  d->graph_seen = 0;
}

/* Run the device part, through a captured graph when the backend has them: the first
 * call of a shape runs directly (it also grows the backend's scratch), the second
 * captures, later ones replay the graph (one launch instead of ~1000). */
static void run_device(const px_model *m, px_design *d, int S, int Ss, bump *ws, px_probe_fn probe, void *user) {
  px_backend *be = d->be;
  if (probe || !be->capture_begin || getenv("PXDIFF_NO_GRAPHS")) {
    forward_device(m, d, S, Ss, ws, probe, user);
    return;
  }
  const uint64_t gen = be->generation ? be->generation(be) : 0;
  const int same = d->graph_S == S && d->graph_Ss == Ss && d->graph_gen == gen;
  if (d->graph && !same) drop_graph(d);
  if (d->graph) {
    be->graph_launch(be, d->graph);
    return;
  }
  if (!(d->graph_seen && same)) {
    forward_device(m, d, S, Ss, ws, probe, user);
    d->graph_seen = 1;
    d->graph_S = S;
    d->graph_Ss = Ss;
    d->graph_gen = be->generation ? be->generation(be) : 0;
    return;
  }
  if (be->capture_begin(be) == 0) {
    forward_device(m, d, S, Ss, ws, probe, user);
    void *g = be->capture_end(be);
    if (g) {
      d->graph = g;
      be->graph_launch(be, g);
      return;
    }
  }
  forward_device(m, d, S, Ss, ws, probe, user); /* capture failed: run directly */
}

int px_denoise(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
               const float *t_hat, float *x_out) {
  return px_denoise_probe(m, d, n_sample, x_noisy, t_hat, x_out, NULL, NULL);
}

static int check_call(const px_model *m, const px_design *d, int n_sample, const char *who) {
  if (n_sample <= 0) return px_fail(PX_ERR_INPUT, "%s: n_sample must be positive, got %d", who, n_sample);
  if (d->model_id != (const void *)m)
    return px_fail(PX_ERR_INPUT, "%s: the design was built for another model", who);
  if ((m->device == PX_DEVICE_CUDA) != (d->be->device_memory != 0) ||
      (m->device == PX_DEVICE_CUDA && d->W != m->cuda_mirror))
    return px_fail(PX_ERR_INPUT, "%s: the design was built for another backend; create it again", who);
  /* At fp16 some device weights exist only as fp16 copies: a design made at another
   * precision would run kernels that read them as fp32. */
  if (d->precision != m->precision)
    return px_fail(PX_ERR_INPUT, "%s: the design was built at precision %s, the model is now at %s; create it again",
                   who, px_precision_label(d->precision), px_model_precision_name(m));
  return PX_OK;
}

static int check_t_hat(const float *t_hat, int n_sample, const char *who, int *Ss) {
  int shared = 1;
  for (int i = 0; i < n_sample; i++) {
    if (!(t_hat[i] > 0.0f) || !isfinite(t_hat[i]))
      return px_fail(PX_ERR_INPUT, "%s: t_hat[%d] = %g; noise levels must be finite and > 0", who, i,
                     (double)t_hat[i]);
    if (t_hat[i] != t_hat[0]) shared = 0;
  }
  *Ss = shared ? 1 : n_sample;
  return PX_OK;
}

/* An allocation for a call failed: the backend has said so (backend.h: its operation, device
 * and size); the message adds what the buffer was for. */
static int call_alloc_failed(const char *what, int S) {
  char why[256];
  snprintf(why, sizeof why, "%s", px_last_error());
  return px_fail(PX_ERR_NOMEM, "%s of a %d-sample call: %s", what, S, why);
}

/* Size the call's workspace (dry run) and make sure the design's device workspace and
 * host staging are large enough; a reallocation drops the captured graph. */
static int prepare(const px_model *m, px_design *d, int S, int Ss, bump *ws) {
  px_backend *be = d->be;
  *ws = (bump){NULL, 0};
  forward_device(m, d, S, Ss, ws, NULL, NULL);
  const size_t need = ws->used * sizeof(float);
  if (need > d->ws_bytes) {
    drop_graph(d);
    if (d->ws) be->free(be, d->ws);
    d->ws = be->alloc(be, need);
    d->ws_bytes = d->ws ? need : 0;
    if (!d->ws) return call_alloc_failed("the workspace", S);
  }
  const size_t hneed = host_floats(S, d->N) * sizeof(float);
  if (hneed > d->host_bytes) {
    drop_graph(d);
    if (d->host) {
      if (be->host_free) be->host_free(be, d->host);
      else free(d->host);
    }
    d->host = be->host_alloc ? be->host_alloc(be, hneed) : malloc(hneed);
    d->host_bytes = d->host ? hneed : 0;
    if (!d->host && !be->host_alloc)
      return px_fail(PX_ERR_NOMEM, "out of memory: the host staging of a %d-sample call (%zu KB)", S, hneed >> 10);
    if (!d->host) return call_alloc_failed("the host staging", S);
  }
  ws->base = d->ws;
  ws->used = 0;
  return PX_OK;
}

int px_denoise_probe(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                     const float *t_hat, float *x_out, px_probe_fn probe, void *user) {
  if (!m || !d || !x_noisy || !t_hat || !x_out)
    return px_fail(PX_ERR_INPUT, "px_denoise: NULL argument");
  int rc = check_call(m, d, n_sample, "px_denoise"), Ss = 1;
  if (!rc) rc = check_t_hat(t_hat, n_sample, "px_denoise", &Ss);
  if (rc) return rc;
  const size_t nx = (size_t)n_sample * d->N * 3;
  for (size_t i = 0; i < nx; i++)
    if (!isfinite(x_noisy[i])) return px_fail(PX_ERR_INPUT, "px_denoise: x_noisy contains NaN or Inf");
  px_backend *be = d->be;
  bump ws;
  if ((rc = prepare(m, d, n_sample, Ss, &ws))) return rc;
  /* The caller's arrays go through the staging buffer (pinned on CUDA: asynchronous copies),
   * which also lets x_out alias x_noisy. */
  const host_io h = host_layout(d->host, n_sample, d->N);
  memcpy(h.x, x_noisy, sizeof(float) * nx);
  memcpy(h.t, t_hat, sizeof(float) * (size_t)Ss);
  bump io_ws = ws;
  const io_bufs io = take_io(&io_ws, n_sample, d->N); /* where forward_device expects them */
  be->upload(be, io.x, h.x, sizeof(float) * nx);
  be->upload(be, io.t, h.t, sizeof(float) * (size_t)Ss);
  run_device(m, d, n_sample, Ss, &ws, probe, user);
  if (be->download_async)
    be->download_async(be, h.out, io.out, sizeof(float) * nx);
  else
    be->download(be, h.out, io.out, sizeof(float) * nx);
  if (be->sync) be->sync(be);
  rc = be->status ? be->status(be) : 0;
  if (!rc) memcpy(x_out, h.out, sizeof(float) * nx);
  return rc;
}

int px_set_cuda_stream(px_model *m, void *stream) {
  if (!m) return px_fail(PX_ERR_INPUT, "px_set_cuda_stream: NULL model");
  /* The stream belongs to the backend context the model's weights live on (on the CPU
   * there is nothing to order with). */
  if (m->be && m->be->set_external_stream) m->be->set_external_stream(m->be, stream);
  return PX_OK;
}

static int denoise_device(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                          const float *t_hat, int t_shared, int wait, float *x_out, const char *who) {
  if (!m || !d || !x_noisy || !t_hat || !x_out) return px_fail(PX_ERR_INPUT, "%s: NULL argument", who);
  /* On the CPU backend, "device" memory is host memory. */
  if (!d->be->device_memory && !t_shared) return px_denoise(m, d, n_sample, x_noisy, t_hat, x_out);
  if (!d->be->device_memory) {
    if (n_sample <= 0) return px_fail(PX_ERR_INPUT, "%s: n_sample must be positive, got %d", who, n_sample);
    float *t = malloc(sizeof(float) * (size_t)n_sample);
    if (!t) return px_fail(PX_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_sample; i++) t[i] = t_hat[0];
    int rc = px_denoise(m, d, n_sample, x_noisy, t, x_out);
    free(t);
    return rc;
  }
  int rc = check_call(m, d, n_sample, who);
  if (rc) return rc;
  px_backend *be = d->be;
  /* Nothing is read back: coordinates and noise levels stay on the device, and the noise
   * embedding is computed there, once per level. */
  const int Ss = t_shared ? 1 : n_sample;
  bump ws;
  if ((rc = prepare(m, d, n_sample, Ss, &ws))) return rc;
  if (be->join_external) be->join_external(be, 0); /* after the caller's queued work, if any */
  bump io_ws = ws;
  const io_bufs io = take_io(&io_ws, n_sample, d->N); /* where forward_device expects them */
  const size_t nx = (size_t)n_sample * d->N * 3;
  be->copy(be, io.x, x_noisy, sizeof(float) * nx);
  be->copy(be, io.t, t_hat, sizeof(float) * (size_t)Ss);
  run_device(m, d, n_sample, Ss, &ws, NULL, NULL);
  be->copy(be, x_out, io.out, sizeof(float) * nx);
  /* The caller's stream (when one is set) waits for this call, with no host wait. */
  const int joined = be->join_external && be->join_external(be, 1);
  if (!joined && wait && be->sync) be->sync(be);
  return be->status ? be->status(be) : 0;
}

int px_denoise_device(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                      const float *t_hat, float *x_out) {
  return denoise_device(m, d, n_sample, x_noisy, t_hat, 0, 1, x_out, "px_denoise_device");
}

int px_denoise_device_shared_t(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                               const float *t_hat, float *x_out) {
  return denoise_device(m, d, n_sample, x_noisy, t_hat, 1, 1, x_out, "px_denoise_device_shared_t");
}

int px_denoise_device_queued(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                             const float *t_hat, float *x_out) {
  return denoise_device(m, d, n_sample, x_noisy, t_hat, 1, 0, x_out, "px_denoise_device_queued");
}

/* The sizing pass of forward_device on a design that exists only as its shape (it reads
 * nothing but T, N, the backend and the weights' shapes), plus the design cache as
 * px_design_create lays it out on the device, plus the device sampler's three coordinate
 * arrays. The backend's own scratch (per context, shared by its designs) is not counted. */
int64_t px_sample_bytes(const px_model *m, int n_token, int n_atom, int chunk) {
  if (!m || n_token < 1 || n_atom < 1 || chunk < 1) return -1;
  px_design stub;
  memset(&stub, 0, sizeof stub);
  stub.T = n_token;
  stub.N = n_atom;
  stub.n_trunks = (n_atom + PX_ATOM_NQ - 1) / PX_ATOM_NQ;
  stub.be = m->device == PX_DEVICE_CUDA && m->be ? m->be : px_model_cpu(m);
  stub.W = m->device == PX_DEVICE_CUDA && m->cuda_mirror ? m->cuda_mirror : m;
  stub.precision = m->precision;
  bump ws = {NULL, 0};
  forward_device(m, &stub, chunk, 1, &ws, NULL, NULL);
  const px_dims *D = &m->dims;
  const int64_t T = n_token, N = n_atom, f = (int64_t)sizeof(float);
  const int64_t P = (int64_t)stub.n_trunks * PX_ATOM_NQ * PX_ATOM_NK;
  int64_t cache = f * ((int64_t)m->tok_tf.n_blocks * m->tok_tf.n_heads * T * T + N * D->c_atom + T * D->c_s + T) +
                  (int64_t)sizeof(int64_t) * N;
  const px_transformer_w *tfs[2] = {&m->enc_tf, &m->dec_tf};
  for (int w = 0; w < 2; w++)
    cache += f * tfs[w]->n_blocks * (8 * N * tfs[w]->c + (int64_t)tfs[w]->n_heads * P);
  return (int64_t)ws.used * f + cache + 3 * f * chunk * N * 3;
}
