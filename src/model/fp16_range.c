/* Which token blocks may store their GEMM inputs as fp16, and at which scale.
 *
 * At fp16 precision the CUDA backend writes a token block's GEMM inputs (the two AdaLN
 * outputs, the gated attention output, the SwiGLU output) as fp16, and its full attention
 * reads Q, K, V as fp16 operands (src/cuda/attention_tc.cu); fp16's largest finite
 * value is 65504. Instead of watching for overflow while running (a host wait per call,
 * and a rerun), every block's inputs are bounded from its weights alone, once, when the
 * model is prepared. With LN(x) the LayerNorm without affine, ||LN(x)||_2 <= sqrt(width)
 * (its squares sum to width * var / (var + eps)):
 *
 *   AdaLN      an = g * LN(a) + W_shift LN(s), g a sigmoid in (0, 1), so
 *              |an_c| <= sqrt(C) + ||W_shift[c]||_2 sqrt(c_s),
 *              ||an||_2 <= sqrt(C) + ||W_shift||_F sqrt(c_s);
 *   attention  a convex combination of value rows v = W_v an (no bias) times a sigmoid
 *              gate: |o_c| <= max_c ||W_v[c]||_2 ||an||_2 (also the bound on |v|);
 *   q, k, v    the fp16 attention stores them (and q times 1/sqrt(d) <= 1) as fp16:
 *              |[q k v]_r| <= ||W[r]||_2 ||an||_2 + |b_r| (only q has a bias); with the
 *              backend's attention_full_h16 the [q k v g] GEMM itself writes fp16, q without
 *              its bias (|q - b| is within the same bound), and the gate g needs no bound:
 *              an overflow to +-inf gives sigmoid's exact limits 1 and 0, as fp32 does for
 *              |g| > 65504;
 *   SwiGLU     its inputs x = W_1[c] an, y = W_2[c] an (no bias, also stored in 16 bits):
 *              |x|, |y| <= max_c ||W_12[c]||_2 ||an||_2; its output
 *              |silu(x) y| <= |x| |y| <= ||W_1[c]||_2 ||W_2[c]||_2 ||an||_2^2.
 *
 *   updates    the residual updates y = W_o att and y = W_b hs (the output projection's and
 *              the transition's GEMM outputs, no bias) may be stored in fp16 too, times 2^-f:
 *              ||att||_2 <= ||W_v||_F ||an||_2 (per head a convex combination of rows
 *              W_vh an_j, each at most ||W_vh||_F ||an||_2), so |y_c| <= ||W_o[c]||_2
 *              ||W_v||_F ||an||_2; |hs_i| <= |x_i| |y_i| (|silu(x)| <= |x|), so ||hs||_2 <=
 *              min(||x||_inf ||y||_2, ||y||_inf ||x||_2) with ||x||_inf <= max_c ||W_1[c]||_2
 *              ||an||_2 and ||x||_2 <= ||W_1||_F ||an||_2 (y likewise), and |y_c| <=
 *              ||W_b[c]||_2 ||hs||_2. A bound that fits no f <= PX_FP16_MAX_EXP keeps that
 *              update in fp32 (the block's other fp16 operands do not depend on it).
 *
 * The SwiGLU bound is the loose one (a product of two projections); its output may be
 * stored times 2^-e, which the next GEMM undoes exactly with alpha = 2^e (values that
 * become subnormal keep an absolute error under 2^-25 * 2^e, below the rounding of
 * ordinary values). A block whose bounds do not fit even at e = PX_FP16_MAX_EXP, or whose
 * weights lose precision in fp16 (relative Frobenius error over 1e-3: weights near
 * fp16's subnormal range), keeps fp32/TF32 operands. These are bounds of exact
 * arithmetic; the 2% margin covers float rounding in the kernels. */
#include <math.h>
#include <string.h>

#include "model/model.h"

#define FP16_MAX 65504.0
#define FP16_MARGIN 1.02

/* x rounded to fp16 (round to nearest even), for |x| <= 65504. */
static float round_fp16(float x) {
  if (fabsf(x) < 6.103515625e-05f) /* fp16 subnormals: multiples of 2^-24 */
    return rintf(x * 16777216.0f) / 16777216.0f;
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u += 0x0FFFu + ((u >> 13) & 1u); /* 13 dropped mantissa bits, ties to even */
  u &= ~0x1FFFu;
  memcpy(&x, &u, sizeof u);
  return x;
}

/* Whether an fp16 copy of n weights keeps them: all within range, relative Frobenius
 * error <= 1e-3 (rounding alone gives ~3e-4). */
static int fp16_keeps(const float *w, size_t n) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < n; i++) {
    const double v = w[i];
    if (!(fabs(v) <= FP16_MAX)) return 0;
    const double d = v - (double)round_fp16(w[i]);
    err += d * d;
    ref += v * v;
  }
  return err <= 1e-6 * ref;
}

/* ||w||_2 of one row of K weights. */
static double row_norm(const float *w, int K) {
  double s = 0;
  for (int k = 0; k < K; k++) s += (double)w[k] * w[k];
  return sqrt(s);
}

/* Rows [r0, r1) of W [*, K]: the largest ||W[r]||_2, and their Frobenius norm. */
static void row_norms(const float *W, int r0, int r1, int K, double *max_row, double *frob) {
  double mx = 0, tot = 0;
  for (int r = r0; r < r1; r++) {
    const double n = row_norm(W + (size_t)r * K, K);
    tot += n * n;
    if (n > mx) mx = n;
  }
  *max_row = mx;
  *frob = sqrt(tot);
}

/* Bounds on the two residual updates of a block (above): the output projection W_o [C, C]
 * after values W_v (rows [C, C] of width C) over an input of norm an_att, and the transition's
 * W_b [C, h] after a SwiGLU of W_12 [2h, C] over an input of norm an_tr. */
static void update_bounds(const float *Wv, const float *Wo, const float *W12, const float *Wb, int C, int h,
                          double an_att, double an_tr, double *y_att, double *y_tr) {
  double v_row, v_fr, o_row, o_fr, x_row, x_fr, y_row, y_fr, b_row, b_fr;
  row_norms(Wv, 0, C, C, &v_row, &v_fr);
  row_norms(Wo, 0, C, C, &o_row, &o_fr);
  *y_att = o_row * v_fr * an_att;
  row_norms(W12, 0, h, C, &x_row, &x_fr);
  row_norms(W12, h, 2 * h, C, &y_row, &y_fr);
  row_norms(Wb, 0, C, h, &b_row, &b_fr);
  const double a = x_row * y_fr, bb = y_row * x_fr;
  *y_tr = b_row * (a < bb ? a : bb) * an_tr * an_tr;
}

int px_fp16_out_exp(double bound) {
  const double lim = FP16_MAX / FP16_MARGIN;
  int f = 0;
  while (!(bound <= lim * ldexp(1.0, f))) /* also stops on NaN */
    if (++f > PX_FP16_MAX_EXP) return -1;
  return f;
}

int px_token_block_fp16_bounds(const px_model *m, int k, px_fp16_bounds *out) {
  const px_transformer_w *tf = &m->tok_tf;
  if (k < 0 || k >= tf->n_blocks || !tf->st_w_shift_ln) return -1;
  const px_block_w *B = &tf->blocks[k];
  const int C = tf->c, cs = tf->c_s, h = tf->hidden;
  const double sC = sqrt((double)C), sS = sqrt((double)cs);
  double an_norm[2];
  for (int i = 0; i < 2; i++) { /* matrix 2k: attention AdaLN, 2k+1: transition AdaLN */
    double mx, fr;
    row_norms(tf->st_w_shift_ln + (size_t)(2 * k + i) * C * cs, 0, C, cs, &mx, &fr);
    out->an[i] = sC + mx * sS;
    an_norm[i] = sC + fr * sS;
  }
  double v_row, fr;
  row_norms(B->proj1.w, 2 * C, 3 * C, C, &v_row, &fr); /* [q k v g]: the value rows */
  out->att = v_row * an_norm[0];
  out->qkv = 0;
  for (int r = 0; r < 3 * C; r++) {
    const double q = row_norm(B->proj1.w + (size_t)r * C, C) * an_norm[0] + fabs((double)B->proj1.b[r]);
    if (q > out->qkv) out->qkv = q;
  }
  double hmax = 0, rmax = 0;
  for (int c = 0; c < h; c++) { /* w_a12 stacks W_1 (rows 0..h-1) and W_2 (rows h..2h-1) */
    const double w1 = row_norm(B->a12.w + (size_t)c * C, C), w2 = row_norm(B->a12.w + (size_t)(h + c) * C, C);
    if (w1 * w2 > hmax) hmax = w1 * w2;
    if (w1 > rmax) rmax = w1;
    if (w2 > rmax) rmax = w2;
  }
  out->swiglu_in = rmax * an_norm[1];
  out->swiglu = hmax * an_norm[1] * an_norm[1];
  if (!B->o.w || !B->ctb_b.w) return -1;
  update_bounds(B->proj1.w + (size_t)2 * C * C, B->o.w, B->a12.w, B->ctb_b.w, C, h, an_norm[0], an_norm[1],
                &out->y_att, &out->y_tr);
  return 0;
}

int px_token_block_fp16_exp(const px_model *m, int k) {
  px_fp16_bounds b;
  if (px_token_block_fp16_bounds(m, k, &b)) return -1;
  const double lim = FP16_MAX / FP16_MARGIN;
  if (!(b.an[0] <= lim && b.an[1] <= lim && b.att <= lim && b.swiglu_in <= lim && b.qkv <= lim)) return -1;
  int e = 0;
  while (!(b.swiglu <= lim * ldexp(1.0, e))) /* also stops on NaN */
    if (++e > PX_FP16_MAX_EXP) return -1;
  const px_transformer_w *tf = &m->tok_tf;
  const px_block_w *B = &tf->blocks[k];
  const size_t C = (size_t)tf->c, h = (size_t)tf->hidden;
  if (!fp16_keeps(B->proj1.w, 4 * C * C) || !fp16_keeps(B->o.w, C * C) || !fp16_keeps(B->a12.w, 2 * h * C) ||
      !fp16_keeps(B->ctb_b.w, C * h))
    return -1;
  return e;
}

void px_token_fp16_exps(const px_model *m, int *exps) {
  const int nb = m->tok_tf.n_blocks;
  /* The process's count: preparing a model for a device, not CPU work of its context. */
#pragma omp parallel for num_threads(px_num_threads()) schedule(dynamic)
  for (int k = 0; k < nb; k++) exps[k] = px_token_block_fp16_exp(m, k);
}

/* ---- The atom blocks (encoder and decoder atom transformers) ----
 *
 * The same method. An atom block's three AdaLNs (attention, its cross-attention kv, the
 * transition) all take s = c, the atom single conditioning, through LN(c) * w (w the
 * AdaLN's LayerNorm scale, ||LN(c)||_2 <= sqrt(c_s)), so with W_shift's columns scaled by w:
 *
 *   AdaLN      |an_c| <= sqrt(C) + ||(W_shift diag(w))[c]||_2 sqrt(c_s),
 *              ||an||_2 <= sqrt(C) + ||W_shift diag(w)||_F sqrt(c_s); the kv input
 *              kvin = AdaLN_kv(an) normalises an again, so its bound does not depend on an's;
 *   attention  a convex combination of value rows v = W_v kvin (proj2's rows C..2C-1, no
 *              bias; every window holds its own queries, so no row is empty) times a
 *              sigmoid gate: |o_c| <= max_c ||W_v[c]||_2 ||kvin||_2;
 *   SwiGLU     as the token blocks': |x|, |y| <= max_c ||W_12[c]||_2 ||an_t||_2 and
 *              |silu(x) y| <= ||W_1[c]||_2 ||W_2[c]||_2 ||an_t||_2^2, stored times 2^-e;
 *   q, k, v    with the backend's attention_local_h16 the [q g] and [k v] GEMMs write fp16 (q
 *              without its bias, added in fp32 as the attention loads Q) and the attention
 *              rounds q + b (times 1/sqrt(d) <= 1) to fp16: |q_r| <= ||W_q[r]||_2 ||an||_2 +
 *              |b_r| (proj1's first C rows, an the attention AdaLN's), |[k v]_r| <=
 *              ||W_kv[r]||_2 ||kvin||_2 (proj2, no bias); g needs no bound (as the token
 *              blocks'). */

/* ||(W diag(w))[r]||_2 over rows [0, R) of W [R, K]: the largest, and the Frobenius norm. */
static void scaled_row_norms(const float *W, const float *w, int R, int K, double *max_row, double *frob) {
  double mx = 0, tot = 0;
  for (int r = 0; r < R; r++) {
    double s = 0;
    for (int k = 0; k < K; k++) {
      const double v = (double)W[(size_t)r * K + k] * (w ? (double)w[k] : 1.0);
      s += v * v;
    }
    tot += s;
    if (sqrt(s) > mx) mx = sqrt(s);
  }
  *max_row = mx;
  *frob = sqrt(tot);
}

int px_atom_block_fp16_bounds(const px_transformer_w *tf, int k, px_atom_fp16_bounds *out) {
  if (!tf || k < 0 || k >= tf->n_blocks || !tf->cross || !tf->blocks) return -1;
  const px_block_w *B = &tf->blocks[k];
  const int C = tf->c, h = tf->hidden;
  const px_adaln_w *ad[3] = {&B->ln_a, &B->ln_kv, &B->ctb_adaln};
  double an_norm[3];
  for (int i = 0; i < 3; i++) {
    const px_linear *sh = &ad[i]->lin_nobias_s;
    if (!sh->w || sh->out != C || sh->in <= 0 || !B->proj1.w || !B->proj2.w || !B->a12.w) return -1;
    double mx, fr;
    scaled_row_norms(sh->w, ad[i]->ln_s_w, C, sh->in, &mx, &fr);
    const double sC = sqrt((double)C), sS = sqrt((double)sh->in);
    out->an[i] = sC + mx * sS;
    an_norm[i] = sC + fr * sS;
  }
  double v_row, fr;
  row_norms(B->proj2.w, C, 2 * C, C, &v_row, &fr); /* [k v]: the value rows */
  out->att = v_row * an_norm[1];
  double hmax = 0, rmax = 0;
  for (int c = 0; c < h; c++) {
    const double w1 = row_norm(B->a12.w + (size_t)c * C, C), w2 = row_norm(B->a12.w + (size_t)(h + c) * C, C);
    if (w1 * w2 > hmax) hmax = w1 * w2;
    if (w1 > rmax) rmax = w1;
    if (w2 > rmax) rmax = w2;
  }
  out->swiglu_in = rmax * an_norm[2];
  out->swiglu = hmax * an_norm[2] * an_norm[2];
  out->qkv = 0;
  for (int r = 0; r < C; r++) { /* q: proj1's first C rows (then g's, unbounded) */
    const double q = row_norm(B->proj1.w + (size_t)r * C, C) * an_norm[0] + (B->proj1.b ? fabs((double)B->proj1.b[r]) : 0);
    if (!(q <= out->qkv)) out->qkv = q; /* NaN propagates */
  }
  for (int r = 0; r < 2 * C; r++) { /* k, v: proj2 */
    const double kv = row_norm(B->proj2.w + (size_t)r * C, C) * an_norm[1];
    if (!(kv <= out->qkv)) out->qkv = kv;
  }
  if (!B->o.w || !B->ctb_b.w) return -1;
  update_bounds(B->proj2.w + (size_t)C * C, B->o.w, B->a12.w, B->ctb_b.w, C, h, an_norm[1], an_norm[2], &out->y_att,
                &out->y_tr);
  return 0;
}

int px_atom_block_fp16_exp(const px_transformer_w *tf, int k) {
  px_atom_fp16_bounds b;
  if (px_atom_block_fp16_bounds(tf, k, &b)) return -1;
  const double lim = FP16_MAX / FP16_MARGIN;
  if (!(b.an[0] <= lim && b.an[1] <= lim && b.an[2] <= lim && b.att <= lim && b.swiglu_in <= lim && b.qkv <= lim))
    return -1;
  int e = 0;
  while (!(b.swiglu <= lim * ldexp(1.0, e))) /* also stops on NaN */
    if (++e > PX_FP16_MAX_EXP) return -1;
  const px_block_w *B = &tf->blocks[k];
  const size_t C = (size_t)tf->c, h = (size_t)tf->hidden;
  if (!B->o.w || !B->ctb_b.w || !fp16_keeps(B->proj1.w, 2 * C * C) || !fp16_keeps(B->proj2.w, 2 * C * C) ||
      !fp16_keeps(B->o.w, C * C) || !fp16_keeps(B->a12.w, 2 * h * C) || !fp16_keeps(B->ctb_b.w, C * h))
    return -1;
  return e;
}
