/* The fp16 range bounds of the token and atom blocks' GEMM inputs (src/model/fp16_range.c), on the
 * CPU: every bound holds for random and for adversarial conditioning and activations
 * (computed with the CPU backend's kernels, the same algebra as the model), the
 * adversarial inputs come close to the AdaLN bound (so it is not vacuous), and blocks
 * whose weights cannot be fp16 are refused. */
#include "testutil.h"

#include "backend.h"
#include "model/model.h"
#include "pxdiff_synthetic.h"

static px_dims small_dims(void) {
  px_dims d;
  px_dims_released(&d);
  d.c_s = 48;
  d.c_token = 64;
  d.n_token_blocks = 3;
  d.n_token_heads = 4;
  d.c_atom = 16;
  d.c_atompair = 8;
  d.c_z = 16;
  d.n_enc_blocks = d.n_dec_blocks = 1;
  return d;
}

static double max_abs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) return INFINITY;
    if (fabs(x[i]) > m) m = fabs(x[i]);
  }
  return m;
}

/* One token block's GEMM inputs for M rows of a and s (the model's algebra on the CPU
 * backend); returns the largest magnitudes of an (attention, transition), att, the SwiGLU's
 * input [x1 | x2], its output hs, the attention's q, k, v, and the two residual updates
 * W_o att and W_b hs. */
static void block_inputs(const px_model *m, int k, int M, const float *a, const float *s, double out[8]) {
  px_backend *cpu = px_cpu_backend();
  const px_transformer_w *tf = &m->tok_tf;
  const px_block_w *B = &tf->blocks[k];
  const int C = tf->c, cs = tf->c_s, h = tf->hidden, H = tf->n_heads, dh = C / H;
  const size_t CS = (size_t)C * cs;
  float *sn = malloc(sizeof(float) * (size_t)M * cs), *gate = malloc(sizeof(float) * (size_t)M * C);
  float *shift = malloc(sizeof(float) * (size_t)M * C), *an = malloc(sizeof(float) * (size_t)M * C);
  float *proj = malloc(sizeof(float) * (size_t)M * (4 * C > 2 * h ? 4 * C : 2 * h));
  float *att = malloc(sizeof(float) * (size_t)M * C), *hs = malloc(sizeof(float) * (size_t)M * h);
  float *bias = malloc(sizeof(float) * (size_t)H * M * M);
  tu_fill_normal(bias, (size_t)H * M * M, 3.0);
  cpu->layernorm(cpu, M, cs, s, NULL, NULL, sn);
  for (int i = 0; i < 2; i++) {
    cpu->linear(cpu, M, C, cs, sn, cs, px_weight_f32(tf->st_w_gate_ln + (size_t)(2 * k + i) * CS), tf->st_b_gate_ln + (size_t)(2 * k + i) * C,
                gate, C, 0, 0, PX_F32, PX_F32);
    cpu->activation(cpu, (int64_t)M * C, gate, PX_ACT_SIGMOID);
    cpu->linear(cpu, M, C, cs, sn, cs, px_weight_f32(tf->st_w_shift_ln + (size_t)(2 * k + i) * CS), NULL, shift, C, 0, 0, PX_F32, PX_F32);
    cpu->adaln(cpu, M, C, a, gate, shift, M, an, PX_F32);
    out[i] = max_abs(an, (size_t)M * C);
    if (i == 0) { /* the attention: one sample of M tokens, gate columns of proj */
      cpu->linear(cpu, M, 4 * C, C, an, C, px_weight_f32(B->proj1.w), B->proj1.b, proj, 4 * C, 0, 0, PX_F32, PX_F32);
      out[5] = 0;
      for (int r = 0; r < M; r++) {
        const double q = max_abs(proj + (size_t)r * 4 * C, (size_t)3 * C);
        if (q > out[5]) out[5] = q;
      }
      cpu->attention_full(cpu, 1, M, H, dh, proj, proj + C, proj + 2 * C, 4 * C, bias, 1.0f / sqrtf((float)dh), att,
                          proj + 3 * C, 4 * C, PX_F32);
      out[2] = max_abs(att, (size_t)M * C);
      cpu->linear(cpu, M, C, C, att, C, px_weight_f32(B->o.w), NULL, an, C, 0, 0, PX_F32, PX_F32);
      out[6] = max_abs(an, (size_t)M * C);
    } else {
      cpu->linear(cpu, M, 2 * h, C, an, C, px_weight_f32(B->a12.w), NULL, proj, 2 * h, 0, 0, PX_F32, PX_F32);
      out[3] = max_abs(proj, (size_t)M * 2 * h);
      cpu->swiglu(cpu, M, h, proj, hs, PX_F32, PX_F32, 0);
      out[4] = max_abs(hs, (size_t)M * h);
      cpu->linear(cpu, M, C, h, hs, h, px_weight_f32(B->ctb_b.w), NULL, an, C, 0, 0, PX_F32, PX_F32);
      out[7] = max_abs(an, (size_t)M * C);
    }
  }
  free(sn); free(gate); free(shift); free(an); free(proj); free(att); free(hs); free(bias);
}

static void scale_all(float *w, size_t n, float f) {
  for (size_t i = 0; i < n; i++) w[i] *= f;
}

/* One AdaLN's conditioning of an atom block from s = c (as design.c builds the cache):
 * gate = sigmoid(Lin_s(LN(c) * w)), shift = Lin_nobias_s(LN(c) * w), [M, C] each. */
static void atom_adaln_terms(const px_adaln_w *ad, int M, int C, const float *c, float *gate, float *shift) {
  px_backend *cpu = px_cpu_backend();
  float *cn = malloc(sizeof(float) * (size_t)M * C);
  cpu->layernorm(cpu, M, C, c, ad->ln_s_w, NULL, cn);
  cpu->linear(cpu, M, C, C, cn, C, px_weight_f32(ad->lin_s.w), ad->lin_s.b, gate, C, 0, 0, PX_F32, PX_F32);
  cpu->activation(cpu, (int64_t)M * C, gate, PX_ACT_SIGMOID);
  cpu->linear(cpu, M, C, C, cn, C, px_weight_f32(ad->lin_nobias_s.w), NULL, shift, C, 0, 0, PX_F32, PX_F32);
  free(cn);
}

/* Atom block k of tf over one sample of M atoms (the model's algebra on the CPU backend):
 * the largest magnitudes of the attention AdaLN, the kv AdaLN, the transition AdaLN, the
 * gated local attention output, the SwiGLU's input and its output, and of q (with its bias),
 * k and v. */
static void atom_block_inputs(const px_transformer_w *tf, int k, int M, const float *a, const float *c, double out[9]) {
  px_backend *cpu = px_cpu_backend();
  const px_block_w *B = &tf->blocks[k];
  const int C = tf->c, h = tf->hidden, H = tf->n_heads, dh = C / H, nt = (M + 31) / 32;
  const size_t MC = (size_t)M * C;
  float *g = malloc(sizeof(float) * MC), *b = malloc(sizeof(float) * MC), *an = malloc(sizeof(float) * MC);
  float *kvin = malloc(sizeof(float) * MC), *qg = malloc(sizeof(float) * 2 * MC), *kv = malloc(sizeof(float) * 2 * MC);
  float *att = malloc(sizeof(float) * MC), *a12 = malloc(sizeof(float) * (size_t)M * 2 * h);
  float *hs = malloc(sizeof(float) * (size_t)M * h), *bias = malloc(sizeof(float) * (size_t)H * nt * 32 * 128);
  tu_fill_normal(bias, (size_t)H * nt * 32 * 128, 3.0);
  atom_adaln_terms(&B->ln_a, M, C, c, g, b);
  cpu->adaln(cpu, M, C, a, g, b, M, an, PX_F32);
  out[0] = max_abs(an, MC);
  atom_adaln_terms(&B->ln_kv, M, C, c, g, b);
  cpu->adaln(cpu, M, C, an, g, b, M, kvin, PX_F32);
  out[1] = max_abs(kvin, MC);
  cpu->linear(cpu, M, 2 * C, C, an, C, px_weight_f32(B->proj1.w), B->proj1.b, qg, 2 * C, 0, 0, PX_F32, PX_F32);
  cpu->linear(cpu, M, 2 * C, C, kvin, C, px_weight_f32(B->proj2.w), NULL, kv, 2 * C, 0, 0, PX_F32, PX_F32);
  out[6] = max_abs(kv, 2 * MC);
  for (int r = 0; r < M; r++) /* q: the first C columns of [q g] */
    for (int j = 0; j < C; j++) {
      const double v = fabs((double)qg[(size_t)r * 2 * C + j]);
      if (v > out[6]) out[6] = v;
    }
  cpu->attention_local(cpu, 1, M, H, dh, 32, 128, qg, kv, kv + C, 2 * C, bias, 1.0f / sqrtf((float)dh), att, qg + C,
                       2 * C, PX_F32);
  out[3] = max_abs(att, MC);
  cpu->linear(cpu, M, C, C, att, C, px_weight_f32(B->o.w), NULL, kvin, C, 0, 0, PX_F32, PX_F32);
  out[7] = max_abs(kvin, MC);
  atom_adaln_terms(&B->ctb_adaln, M, C, c, g, b);
  cpu->adaln(cpu, M, C, a, g, b, M, an, PX_F32);
  out[2] = max_abs(an, MC);
  cpu->linear(cpu, M, 2 * h, C, an, C, px_weight_f32(B->a12.w), NULL, a12, 2 * h, 0, 0, PX_F32, PX_F32);
  out[4] = max_abs(a12, (size_t)M * 2 * h);
  cpu->swiglu(cpu, M, h, a12, hs, PX_F32, PX_F32, 0);
  out[5] = max_abs(hs, (size_t)M * h);
  cpu->linear(cpu, M, C, h, hs, h, px_weight_f32(B->ctb_b.w), NULL, an, C, 0, 0, PX_F32, PX_F32);
  out[8] = max_abs(an, MC);
  free(g); free(b); free(an); free(kvin); free(qg); free(kv); free(att); free(a12); free(hs); free(bias);
}

/* The atom blocks' bounds (encoder and decoder): they hold for random and adversarial inputs,
 * the adversarial rows come near the AdaLN bound, and blocks with huge weights are refused. */
static void test_atom_blocks(px_model *m) {
  const px_transformer_w *tfs[2] = {&m->enc_tf, &m->dec_tf};
  const char *tname[2] = {"encoder", "decoder"};
  const int M = 70; /* three trunks, the last partial */
  for (int w = 0; w < 2; w++) {
    const px_transformer_w *tf = tfs[w];
    const int C = tf->c;
    CHECK(tf->cross && tf->n_blocks > 0);
    for (int k = 0; k < tf->n_blocks; k++) {
      px_block_w *B = &tf->blocks[k];
      /* larger shifts than the synthetic default make the bounds bite */
      scale_all(B->ln_a.lin_nobias_s.w, (size_t)C * C, 4.0f);
      scale_all(B->ln_kv.lin_nobias_s.w, (size_t)C * C, 4.0f);
      px_atom_fp16_bounds b;
      CHECK(px_atom_block_fp16_bounds(tf, k, &b) == 0);
      double worst[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0}, seen[9];
      for (int trial = 0; trial < 6; trial++) {
        float *a = malloc(sizeof(float) * (size_t)M * C), *c = malloc(sizeof(float) * (size_t)M * C);
        tu_fill_normal(a, (size_t)M * C, trial < 3 ? 1.0 : 1e3);
        tu_fill_normal(c, (size_t)M * C, trial < 3 ? 1.0 : 50.0);
        if (trial % 3 == 2) { /* adversarial: LN(c) * w along a row of W_shift, a spiking at that channel */
          const float *W = B->ln_a.lin_nobias_s.w, *lw = B->ln_a.ln_s_w;
          for (int r = 0; r < M; r++) {
            const int ch = (r * 5) % C;
            double mean = 0;
            for (int j = 0; j < C; j++) mean += W[(size_t)ch * C + j] * lw[j];
            mean /= C;
            for (int j = 0; j < C; j++) c[(size_t)r * C + j] = (float)(W[(size_t)ch * C + j] * lw[j] - mean);
            for (int j = 0; j < C; j++) a[(size_t)r * C + j] = j == ch ? 1.0f : 0.0f;
          }
        }
        atom_block_inputs(tf, k, M, a, c, seen);
        for (int i = 0; i < 9; i++)
          if (seen[i] > worst[i]) worst[i] = seen[i];
        free(a);
        free(c);
      }
      const double bound[9] = {b.an[0], b.an[1], b.an[2], b.att, b.swiglu_in, b.swiglu, b.qkv, b.y_att, b.y_tr};
      const char *name[9] = {"attention AdaLN", "kv AdaLN", "transition AdaLN", "attention output", "SwiGLU input",
                             "SwiGLU",          "q, k, v",  "attention update", "transition update"};
      for (int i = 0; i < 9; i++)
        CHECK_MSG(worst[i] <= bound[i], "%s block %d %s: max |x| %.4g over the bound %.4g", tname[w], k, name[i],
                  worst[i], bound[i]);
      CHECK_MSG(worst[0] >= 0.3 * b.an[0], "%s block %d: AdaLN bound %.4g far above what inputs reach (%.4g)",
                tname[w], k, b.an[0], worst[0]);
      const int e0 = px_atom_block_fp16_exp(tf, k);
      CHECK_MSG(e0 >= 0, "%s block %d: synthetic weights refused fp16", tname[w], k);
      /* huge weights: the kv AdaLN's shift (through its LayerNorm scale), the value rows, the
       * transition: each refused alone, and accepted again once restored */
      float *lw = B->ln_kv.ln_s_w;
      scale_all(lw, (size_t)C, 1e5f);
      CHECK_MSG(px_atom_block_fp16_exp(tf, k) == -1, "%s block %d: kv AdaLN shift x1e5 accepted", tname[w], k);
      scale_all(lw, (size_t)C, 1e-5f);
      CHECK(px_atom_block_fp16_exp(tf, k) == e0);
      float *v = B->proj2.w + (size_t)C * C; /* value rows */
      scale_all(v, (size_t)C * C, 3e3f);
      CHECK_MSG(px_atom_block_fp16_exp(tf, k) == -1, "%s block %d: value weights x3e3 accepted", tname[w], k);
      scale_all(v, (size_t)C * C, 1.0f / 3e3f);
      CHECK(px_atom_block_fp16_exp(tf, k) == e0);
      /* the transition AdaLN's shift: a larger exponent first, then refused */
      float *ts = B->ctb_adaln.lin_nobias_s.w;
      scale_all(ts, (size_t)C * C, 64.0f);
      const int e1 = px_atom_block_fp16_exp(tf, k);
      CHECK_MSG(e1 > e0, "%s block %d: exponent %d after scaling the transition shift 64x (was %d)", tname[w], k, e1,
                e0);
      scale_all(ts, (size_t)C * C, 1e4f);
      CHECK_MSG(px_atom_block_fp16_exp(tf, k) == -1, "%s block %d: transition shift x6.4e5 accepted", tname[w], k);
      scale_all(ts, (size_t)C * C, 1.0f / 6.4e5f);
      CHECK(px_atom_block_fp16_exp(tf, k) == e0);
      /* the query rows alone (only the q, k, v bound sees them), then q's bias */
      float *qw = B->proj1.w;
      scale_all(qw, (size_t)C * C, 3e3f);
      CHECK_MSG(px_atom_block_fp16_exp(tf, k) == -1, "%s block %d: query weights x3e3 accepted", tname[w], k);
      scale_all(qw, (size_t)C * C, 1.0f / 3e3f);
      CHECK(px_atom_block_fp16_exp(tf, k) == e0);
      const float keep_b = B->proj1.b[1];
      B->proj1.b[1] = 7e4f;
      CHECK_MSG(px_atom_block_fp16_exp(tf, k) == -1, "%s block %d: a query bias of 7e4 accepted", tname[w], k);
      B->proj1.b[1] = keep_b;
      CHECK(px_atom_block_fp16_exp(tf, k) == e0);
      float *o = B->o.w;
      const float keep = o[3];
      o[3] = 1e5f;
      CHECK_MSG(px_atom_block_fp16_exp(tf, k) == -1, "%s block %d: an output weight of 1e5 accepted", tname[w], k);
      o[3] = keep;
      CHECK(px_atom_block_fp16_exp(tf, k) == e0);
    }
    CHECK(px_atom_block_fp16_bounds(tf, tf->n_blocks, &(px_atom_fp16_bounds){{0, 0, 0}, 0, 0, 0, 0, 0, 0}) == -1);
  }
  /* the token transformer is not an atom transformer */
  CHECK(px_atom_block_fp16_exp(&m->tok_tf, 0) == -1);
}

int main(void) {
  tu_seed();
  px_dims d = small_dims();
  px_model *m = NULL;
  CHECK_MSG(px_model_synthetic(&d, tu_u64(), &m) == PX_OK, "synthetic model: %s", px_last_error());
  if (!m) return tu_finish("test_fp16_range");
  test_atom_blocks(m);
  const px_transformer_w *tf = &m->tok_tf;
  const int C = tf->c, cs = tf->c_s, M = 9;
  /* larger weights than the synthetic default make the bounds (and the test) bite */
  scale_all(tf->st_w_shift_ln, (size_t)2 * tf->n_blocks * C * cs, 4.0f);
  for (int k = 0; k < tf->n_blocks; k++) {
    px_fp16_bounds b;
    CHECK(px_token_block_fp16_bounds(m, k, &b) == 0);
    double worst[8] = {0, 0, 0, 0, 0, 0, 0, 0}, seen[8];
    for (int trial = 0; trial < 6; trial++) {
      float *a = malloc(sizeof(float) * (size_t)M * C), *s = malloc(sizeof(float) * (size_t)M * cs);
      tu_fill_normal(a, (size_t)M * C, trial < 3 ? 1.0 : 1e3);
      tu_fill_normal(s, (size_t)M * cs, trial < 3 ? 1.0 : 50.0);
      if (trial % 3 == 2) { /* adversarial: LN(s) along a row of W_shift, a spiking at that channel */
        const float *W = tf->st_w_shift_ln + (size_t)(2 * k) * C * cs;
        for (int r = 0; r < M; r++) {
          const int c = (r * 7) % C;
          double mean = 0;
          for (int j = 0; j < cs; j++) mean += W[(size_t)c * cs + j];
          mean /= cs;
          for (int j = 0; j < cs; j++) s[(size_t)r * cs + j] = (float)(W[(size_t)c * cs + j] - mean);
          for (int j = 0; j < C; j++) a[(size_t)r * C + j] = j == c ? 1.0f : 0.0f;
        }
      }
      block_inputs(m, k, M, a, s, seen);
      for (int i = 0; i < 8; i++)
        if (seen[i] > worst[i]) worst[i] = seen[i];
      free(a);
      free(s);
    }
    const double bound[8] = {b.an[0], b.an[1], b.att, b.swiglu_in, b.swiglu, b.qkv, b.y_att, b.y_tr};
    const char *name[8] = {"attention AdaLN",   "transition AdaLN", "attention output", "SwiGLU input", "SwiGLU",
                           "attention q, k, v", "attention update", "transition update"};
    for (int i = 0; i < 8; i++)
      CHECK_MSG(worst[i] <= bound[i], "block %d %s: max |x| %.4g over the bound %.4g", k, name[i], worst[i], bound[i]);
    /* the adversarial rows reach the AdaLN bound up to the sigmoid gate on LN(a) */
    CHECK_MSG(worst[0] >= 0.4 * b.an[0], "block %d: AdaLN bound %.4g far above what inputs reach (%.4g)", k, b.an[0],
              worst[0]);
    CHECK_MSG(px_token_block_fp16_exp(m, k) >= 0, "block %d: synthetic weights refused fp16", k);
  }
  CHECK(px_token_block_fp16_bounds(m, tf->n_blocks, &(px_fp16_bounds){{0, 0}, 0, 0, 0, 0, 0, 0}) == -1);
  /* an update's exponent: the least f with bound <= 65504 / 1.02 * 2^f, -1 past 2^10 or NaN */
  CHECK(px_fp16_out_exp(0.0) == 0 && px_fp16_out_exp(64000.0) == 0);
  CHECK(px_fp16_out_exp(64300.0) == 1 && px_fp16_out_exp(1e6) == 4);
  CHECK(px_fp16_out_exp(64000.0 * 1024) == 10 && px_fp16_out_exp(64300.0 * 1024) == -1);
  CHECK(px_fp16_out_exp(NAN) == -1 && px_fp16_out_exp(INFINITY) == -1);

  /* The SwiGLU bound grows with the square of the AdaLN shift: a larger shift is absorbed
   * by a larger exponent, then refused. */
  const int e0 = px_token_block_fp16_exp(m, 0);
  float *shift1 = tf->st_w_shift_ln + (size_t)1 * C * cs; /* block 0, transition AdaLN */
  scale_all(shift1, (size_t)C * cs, 64.0f);
  const int e1 = px_token_block_fp16_exp(m, 0);
  CHECK_MSG(e1 > e0, "exponent %d after scaling the shift 64x (was %d)", e1, e0);
  scale_all(shift1, (size_t)C * cs, 1e4f);
  CHECK_MSG(px_token_block_fp16_exp(m, 0) == -1, "shift 6.4e5x larger: block still accepted");
  scale_all(shift1, (size_t)C * cs, 1.0f / 6.4e5f);
  CHECK(px_token_block_fp16_exp(m, 0) == e0);
  /* weights fp16 cannot hold: out of range, or so small that fp16 loses their precision */
  float *o = tf->blocks[1].o.w;
  const float keep = o[5];
  o[5] = 1e5f;
  CHECK_MSG(px_token_block_fp16_exp(m, 1) == -1, "a weight of 1e5 accepted");
  o[5] = keep;
  CHECK(px_token_block_fp16_exp(m, 1) >= 0);
  /* a q beyond fp16 through linear_q's bias alone (kept in fp32, feeds only the fp16 attention) */
  float *qb = tf->blocks[1].proj1.b;
  const float qkeep = qb[3];
  qb[3] = 7e4f;
  CHECK_MSG(px_token_block_fp16_exp(m, 1) == -1, "a q bias of 7e4 accepted");
  qb[3] = qkeep;
  CHECK(px_token_block_fp16_exp(m, 1) >= 0);
  scale_all(tf->blocks[2].a12.w, (size_t)2 * tf->hidden * C, 1e-6f);
  CHECK_MSG(px_token_block_fp16_exp(m, 2) == -1, "weights near fp16's subnormal range accepted");
  int exps[3] = {-7, -7, -7};
  px_token_fp16_exps(m, exps);
  CHECK(exps[0] == e0 && exps[1] >= 0 && exps[2] == -1);

  /* At fp16 some token matrices exist on the device only as fp16 copies, so a design made
   * at another precision must be refused, not run (here the precision is changed by hand:
   * px_model_set_backend does it on a GPU). */
  px_synthetic_design sd;
  memset(&sd, 0, sizeof sd);
  px_design *dz = NULL;
  int made = px_synthetic_design_make(&d, 6, 2, 30, tu_u64(), &sd) == PX_OK;
  made = made && px_design_create(m, &sd.f, &dz) == PX_OK;
  CHECK_MSG(made, "synthetic design: %s", px_last_error());
  if (made) {
    const int N = sd.f.n_atom;
    float *x = malloc(sizeof(float) * 2 * N * 3), *y = malloc(sizeof(float) * 2 * N * 3), t[2] = {2.0f, 30.0f};
    tu_fill_normal(x, (size_t)2 * N * 3, 5.0);
    CHECK(px_denoise(m, dz, 2, x, t, y) == PX_OK);
    m->precision = PX_PRECISION_FP16;
    CHECK(px_denoise(m, dz, 2, x, t, y) == PX_ERR_INPUT);
    CHECK_MSG(strstr(px_last_error(), "precision fp32") && strstr(px_last_error(), "now at fp16") &&
                  tu_one_line(px_last_error()),
              "message: %s", px_last_error());
    m->precision = PX_PRECISION_FP32;
    CHECK(px_denoise(m, dz, 2, x, t, y) == PX_OK);
    free(x);
    free(y);
  }
  px_design_free(dz);
  px_synthetic_free(&sd);
  px_model_free(m);
  return tu_finish("test_fp16_range");
}
