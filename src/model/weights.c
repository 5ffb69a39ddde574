/* Build the model from named tensors: dimensions are read off shapes, every tensor the
 * model needs must be present with the shape the others imply, else an error names it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/embedder.h"
#include "model/model.h"

/* Where a loader keeps the buffers it allocates: a model's or an embedder's list. */
typedef struct {
  float ***owned;
  size_t **owned_n;
  int *n_owned, *cap_owned;
  int64_t *n_params;
} owner;

typedef struct {
  const px_weight_source *src;
  const char *prefix; /* every name is prefix + suffix */
  px_model *m;        /* the model being built (token transformers), NULL for the embedder */
  owner o;
  int status;
} loader;

static float *own_in(const owner *o, size_t n) {
  if (*o->n_owned == *o->cap_owned) {
    int cap = *o->cap_owned ? 2 * *o->cap_owned : 256;
    float **p = realloc(*o->owned, sizeof(float *) * (size_t)cap);
    if (!p) return NULL;
    *o->owned = p;
    size_t *pn = realloc(*o->owned_n, sizeof(size_t) * (size_t)cap);
    if (!pn) return NULL;
    *o->owned_n = pn;
    *o->cap_owned = cap;
  }
  float *buf = malloc(sizeof(float) * (n ? n : 1));
  if (buf) {
    (*o->owned_n)[*o->n_owned] = n;
    (*o->owned)[(*o->n_owned)++] = buf;
  }
  return buf;
}

static float *own(loader *L, size_t n) { return own_in(&L->o, n); }

/* Free an owned buffer that is no longer needed (a per-block copy folded elsewhere). */
static void disown(px_model *m, float **p) {
  if (!*p) return;
  for (int i = 0; i < m->n_owned; i++)
    if (m->owned[i] == *p) {
      free(m->owned[i]);
      m->owned[i] = m->owned[m->n_owned - 1];
      m->owned_n[i] = m->owned_n[m->n_owned - 1];
      m->n_owned--;
      break;
    }
  *p = NULL;
}

/* Token blocks: stack block k's s-side weights into the transformer's batched arrays
 * (see px_transformer_w), folding the AdaLN LayerNorm scales, then free the originals. */
static void stack_sterms(px_model *m, px_transformer_w *tf, int k) {
  px_block_w *B = &tf->blocks[k];
  const int C = tf->c, cs = tf->c_s;
  const px_adaln_w *ad[2] = {&B->ln_a, &B->ctb_adaln};
  const px_linear *raw[2] = {&B->a_last, &B->ctb_s};
  for (int j = 0; j < 2; j++) {
    const size_t mat = (size_t)(2 * k + j) * C * cs, vec = (size_t)(2 * k + j) * C;
    for (int o = 0; o < C; o++)
      for (int c = 0; c < cs; c++) {
        const size_t at = (size_t)o * cs + c;
        tf->st_w_gate_ln[mat + at] = ad[j]->lin_s.w[at] * ad[j]->ln_s_w[c];
        tf->st_w_shift_ln[mat + at] = ad[j]->lin_nobias_s.w[at] * ad[j]->ln_s_w[c];
        tf->st_w_gate_raw[mat + at] = raw[j]->w[at];
      }
    memcpy(tf->st_b_gate_ln + vec, ad[j]->lin_s.b, sizeof(float) * (size_t)C);
    memcpy(tf->st_b_gate_raw + vec, raw[j]->b, sizeof(float) * (size_t)C);
  }
  float **gone[] = {&B->ln_a.lin_s.w, &B->ln_a.lin_s.b, &B->ln_a.lin_nobias_s.w, &B->ln_a.ln_s_w,
                    &B->ctb_adaln.lin_s.w, &B->ctb_adaln.lin_s.b, &B->ctb_adaln.lin_nobias_s.w,
                    &B->ctb_adaln.ln_s_w, &B->a_last.w, &B->a_last.b, &B->ctb_s.w, &B->ctb_s.b};
  for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) disown(m, gone[i]);
}

static void visit_linear(px_linear *l, px_weight_visitor fn, void *u) {
  fn(&l->w, u);
  fn(&l->b, u);
}
static void visit_adaln(px_adaln_w *a, px_weight_visitor fn, void *u) {
  fn(&a->ln_s_w, u);
  visit_linear(&a->lin_s, fn, u);
  visit_linear(&a->lin_nobias_s, fn, u);
}
static void visit_transition(px_transition_w *t, px_weight_visitor fn, void *u) {
  fn(&t->ln_w, u);
  fn(&t->ln_b, u);
  visit_linear(&t->a, fn, u);
  visit_linear(&t->b, fn, u);
  visit_linear(&t->out, fn, u);
}
static void visit_transformer(px_transformer_w *tf, px_weight_visitor fn, void *u) {
  fn(&tf->st_w_gate_ln, u);
  fn(&tf->st_b_gate_ln, u);
  fn(&tf->st_w_shift_ln, u);
  fn(&tf->st_w_gate_raw, u);
  fn(&tf->st_b_gate_raw, u);
  for (int k = 0; k < tf->n_blocks; k++) {
    px_block_w *B = &tf->blocks[k];
    visit_adaln(&B->ln_a, fn, u);
    visit_adaln(&B->ln_kv, fn, u);
    visit_linear(&B->proj1, fn, u);
    visit_linear(&B->proj2, fn, u);
    visit_linear(&B->o, fn, u);
    fn(&B->ln_z_w, u);
    visit_linear(&B->z, fn, u);
    visit_linear(&B->a_last, fn, u);
    visit_adaln(&B->ctb_adaln, fn, u);
    visit_linear(&B->a12, fn, u);
    visit_linear(&B->ctb_b, fn, u);
    visit_linear(&B->ctb_s, fn, u);
  }
}

void px_model_visit_weights(px_model *m, px_weight_visitor fn, void *u) {
  visit_linear(&m->relpe, fn, u);
  fn(&m->cond_ln_z_w, u);
  visit_linear(&m->cond_z, fn, u);
  visit_transition(&m->tr_z1, fn, u);
  visit_transition(&m->tr_z2, fn, u);
  fn(&m->cond_ln_s_w, u);
  visit_linear(&m->cond_s, fn, u);
  fn(&m->fourier_w, u);
  fn(&m->fourier_b, u);
  fn(&m->cond_ln_n_w, u);
  visit_linear(&m->cond_n, fn, u);
  visit_transition(&m->tr_s1, fn, u);
  visit_transition(&m->tr_s2, fn, u);
  px_linear *enc[] = {&m->enc_ref_pos, &m->enc_ref_charge, &m->enc_f, &m->enc_d, &m->enc_invd,
                      &m->enc_v, &m->enc_s, &m->enc_z, &m->enc_r, &m->enc_cl, &m->enc_cm,
                      &m->enc_mlp1, &m->enc_mlp3, &m->enc_mlp5, &m->enc_q};
  for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) visit_linear(enc[i], fn, u);
  fn(&m->enc_ln_s_w, u);
  fn(&m->enc_ln_z_w, u);
  visit_transformer(&m->enc_tf, fn, u);
  fn(&m->ln_s_w, u);
  visit_linear(&m->lin_s, fn, u);
  visit_transformer(&m->tok_tf, fn, u);
  fn(&m->ln_a_w, u);
  visit_linear(&m->dec_a, fn, u);
  fn(&m->dec_ln_q_w, u);
  visit_linear(&m->dec_out, fn, u);
  visit_transformer(&m->dec_tf, fn, u);
}

/* Shape of a tensor, or ndim = -1 when absent. */
static int probe(loader *L, const char *name, int64_t *shape) {
  int ndim = -1;
  if (!L->src->find(L->src->ctx, name, &ndim, shape)) return -1;
  return ndim;
}

/* Read tensor prefix + suffix with the expected shape (d1 < 0 for 1-D) into dst (or a new
 * buffer). */
static float *load_into(loader *L, float *dst, const char *suffix, int64_t d0, int64_t d1) {
  if (L->status) return NULL;
  char name[512];
  snprintf(name, sizeof name, "%s%s", L->prefix, suffix);
  int64_t shape[8];
  int ndim = probe(L, name, shape);
  if (ndim < 0) {
    L->status = px_fail(PX_ERR_WEIGHTS, "missing tensor %s", name);
    return NULL;
  }
  int want = d1 < 0 ? 1 : 2;
  if (ndim != want || shape[0] != d0 || (want == 2 && shape[1] != d1)) {
    char got[128] = "", exp[64];
    for (int i = 0; i < ndim && i < 8; i++)
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "x" : "",
               (long long)shape[i]);
    if (want == 1)
      snprintf(exp, sizeof exp, "%lld", (long long)d0);
    else
      snprintf(exp, sizeof exp, "%lldx%lld", (long long)d0, (long long)d1);
    L->status = px_fail(PX_ERR_WEIGHTS, "tensor %s has shape %s, expected %s", name,
                        ndim == 0 ? "scalar" : got, exp);
    return NULL;
  }
  size_t n = (size_t)d0 * (size_t)(d1 < 0 ? 1 : d1);
  if (!dst) {
    dst = own(L, n);
    if (!dst) {
      L->status = px_fail(PX_ERR_NOMEM, "out of memory loading %s", name);
      return NULL;
    }
  }
  int rc = L->src->read(L->src->ctx, name, dst);
  if (rc) {
    L->status = rc;
    return NULL;
  }
  *L->o.n_params += (int64_t)n;
  return dst;
}

static float *vec(loader *L, const char *fmt, int64_t n, ...) {
  char s[400];
  va_list ap;
  va_start(ap, n);
  vsnprintf(s, sizeof s, fmt, ap);
  va_end(ap);
  return load_into(L, NULL, s, n, -1);
}

static px_linear lin(loader *L, int out, int in, int bias, const char *fmt, ...) {
  char base[400], s[440];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(base, sizeof base, fmt, ap);
  va_end(ap);
  px_linear l = {0};
  l.out = out;
  l.in = in;
  snprintf(s, sizeof s, "%s.weight", base);
  l.w = load_into(L, NULL, s, out, in);
  if (bias) {
    snprintf(s, sizeof s, "%s.bias", base);
    l.b = load_into(L, NULL, s, out, -1);
  }
  return l;
}

/* Leading dimension of a tensor, or -1. */
static int64_t dim_of(loader *L, const char *suffix, int axis) {
  char name[512];
  snprintf(name, sizeof name, "%s%s", L->prefix, suffix);
  int64_t shape[8];
  int ndim = probe(L, name, shape);
  if (ndim <= axis) {
    if (!L->status)
      L->status = px_fail(PX_ERR_WEIGHTS, ndim < 0 ? "missing tensor %s" : "tensor %s has too few dimensions", name);
    return -1;
  }
  return shape[axis];
}

static px_adaln_w adaln_w(loader *L, int c_a, int c_s, const char *base) {
  px_adaln_w w;
  w.ln_s_w = vec(L, "%s.layernorm_s.weight", c_s, base);
  w.lin_s = lin(L, c_a, c_s, 1, "%s.linear_s", base);
  w.lin_nobias_s = lin(L, c_a, c_s, 0, "%s.linear_nobias_s", base);
  return w;
}

static px_transition_w transition_w(loader *L, int c, const char *base) {
  px_transition_w t;
  t.ln_w = vec(L, "%s.layernorm1.weight", c, base);
  t.ln_b = vec(L, "%s.layernorm1.bias", c, base);
  t.a = lin(L, 2 * c, c, 0, "%s.linear_no_bias_a", base);
  t.b = lin(L, 2 * c, c, 0, "%s.linear_no_bias_b", base);
  t.out = lin(L, c, 2 * c, 0, "%s.linear_no_bias", base);
  return t;
}

static int count_blocks(loader *L, const char *base) {
  int n = 0;
  for (;; n++) {
    char name[512];
    int64_t shape[8];
    snprintf(name, sizeof name, "%s%s.blocks.%d.attention_pair_bias.linear_nobias_z.weight", L->prefix,
             base, n);
    if (probe(L, name, shape) < 0) break;
  }
  return n;
}

static void transformer_w(loader *L, px_transformer_w *tf, const char *base, int c, int c_s,
                          int c_z, int cross) {
  tf->n_blocks = count_blocks(L, base);
  tf->c = c;
  tf->c_s = c_s;
  tf->c_z = c_z;
  tf->cross = cross;
  tf->hidden = 2 * c;
  if (tf->n_blocks == 0) {
    if (!L->status)
      L->status = px_fail(PX_ERR_WEIGHTS, "missing tensor %s%s.blocks.0.* (no blocks)", L->prefix, base);
    return;
  }
  char nb[400];
  snprintf(nb, sizeof nb, "%s.blocks.0.attention_pair_bias.linear_nobias_z.weight", base);
  tf->n_heads = (int)dim_of(L, nb, 0);
  if (L->status) return;
  if (tf->n_heads <= 0 || c % tf->n_heads) {
    L->status = px_fail(PX_ERR_WEIGHTS, "%s: %d heads do not divide width %d", base, tf->n_heads, c);
    return;
  }
  tf->blocks = calloc((size_t)tf->n_blocks, sizeof(px_block_w));
  if (!tf->blocks) {
    L->status = px_fail(PX_ERR_NOMEM, "out of memory");
    return;
  }
  const int H = tf->n_heads, h = tf->hidden;
  if (!cross) {
    const size_t nm = (size_t)2 * tf->n_blocks;
    tf->st_w_gate_ln = own(L, nm * c * c_s);
    tf->st_b_gate_ln = own(L, nm * c);
    tf->st_w_shift_ln = own(L, nm * c * c_s);
    tf->st_w_gate_raw = own(L, nm * c * c_s);
    tf->st_b_gate_raw = own(L, nm * c);
    if (!tf->st_w_gate_ln || !tf->st_b_gate_ln || !tf->st_w_shift_ln || !tf->st_w_gate_raw ||
        !tf->st_b_gate_raw) {
      L->status = px_fail(PX_ERR_NOMEM, "out of memory");
      return;
    }
  }
  for (int k = 0; k < tf->n_blocks && !L->status; k++) {
    px_block_w *B = &tf->blocks[k];
    char apb[400], ctb[400], s[480];
    snprintf(apb, sizeof apb, "%s.blocks.%d.attention_pair_bias", base, k);
    snprintf(ctb, sizeof ctb, "%s.blocks.%d.conditioned_transition_block", base, k);
    snprintf(s, sizeof s, "%s.layernorm_a", apb);
    B->ln_a = adaln_w(L, c, c_s, s);
    if (cross) {
      snprintf(s, sizeof s, "%s.layernorm_kv", apb);
      B->ln_kv = adaln_w(L, c, c_s, s);
    }
    /* Fused projections: rows [q; k; v; g] (token) or [q; g] and [k; v] (atom). */
    int np1 = cross ? 2 : 4;
    B->proj1.w = own(L, (size_t)np1 * c * c);
    B->proj1.b = own(L, (size_t)np1 * c);
    if (cross) B->proj2.w = own(L, (size_t)2 * c * c);
    if (!B->proj1.w || !B->proj1.b || (cross && !B->proj2.w)) {
      L->status = px_fail(PX_ERR_NOMEM, "out of memory");
      return;
    }
    memset(B->proj1.b, 0, sizeof(float) * (size_t)np1 * c);
    B->proj1.out = np1 * c;
    B->proj1.in = c;
    if (cross) {
      B->proj2.out = 2 * c;
      B->proj2.in = c;
    }
    const size_t cc = (size_t)c * c;
    snprintf(s, sizeof s, "%s.attention.linear_q.weight", apb);
    load_into(L, B->proj1.w, s, c, c);
    snprintf(s, sizeof s, "%s.attention.linear_q.bias", apb);
    load_into(L, B->proj1.b, s, c, -1);
    snprintf(s, sizeof s, "%s.attention.linear_g.weight", apb);
    load_into(L, B->proj1.w + (cross ? 1 : 3) * cc, s, c, c);
    float *kv = cross ? B->proj2.w : B->proj1.w + cc;
    snprintf(s, sizeof s, "%s.attention.linear_k.weight", apb);
    load_into(L, kv, s, c, c);
    snprintf(s, sizeof s, "%s.attention.linear_v.weight", apb);
    load_into(L, kv + cc, s, c, c);
    B->o = lin(L, c, c, 0, "%s.attention.linear_o", apb);
    B->ln_z_w = vec(L, "%s.layernorm_z.weight", c_z, apb);
    B->z = lin(L, H, c_z, 0, "%s.linear_nobias_z", apb);
    B->a_last = lin(L, c, c_s, 1, "%s.linear_a_last", apb);
    snprintf(s, sizeof s, "%s.adaln", ctb);
    B->ctb_adaln = adaln_w(L, c, c_s, s);
    B->a12.w = own(L, (size_t)2 * h * c);
    if (!B->a12.w) {
      L->status = px_fail(PX_ERR_NOMEM, "out of memory");
      return;
    }
    snprintf(s, sizeof s, "%s.linear_nobias_a1.weight", ctb);
    load_into(L, B->a12.w, s, h, c);
    snprintf(s, sizeof s, "%s.linear_nobias_a2.weight", ctb);
    load_into(L, B->a12.w + (size_t)h * c, s, h, c);
    B->a12.out = 2 * h;
    B->a12.in = c;
    B->ctb_b = lin(L, c, h, 0, "%s.linear_nobias_b", ctb);
    B->ctb_s = lin(L, c, c_s, 1, "%s.linear_s", ctb);
    if (!cross && L->m && !L->status) stack_sterms(L->m, tf, k);
  }
}

int px_model_build(const px_weight_source *src, px_model **out) {
  *out = NULL;
  px_model *m = calloc(1, sizeof *m);
  if (!m) return px_fail(PX_ERR_NOMEM, "out of memory");
  loader L = {src, PX_DM_PREFIX, m, {&m->owned, &m->owned_n, &m->n_owned, &m->cap_owned, &m->n_params}, 0};
  m->device = PX_DEVICE_CPU;
  m->precision = PX_PRECISION_FP32;
  px_dims *D = &m->dims;
  D->sigma_data = 16.0f;
  D->c_token = (int)dim_of(&L, "layernorm_a.weight", 0);
  D->c_s = (int)dim_of(&L, "layernorm_s.weight", 0);
  D->c_z = (int)dim_of(&L, "diffusion_conditioning.linear_no_bias_z.weight", 0);
  int64_t c_cat = dim_of(&L, "diffusion_conditioning.layernorm_s.weight", 0);
  D->n_fourier = (int)dim_of(&L, "diffusion_conditioning.fourier_embedding.w", 0);
  D->n_relpe = (int)dim_of(&L, "diffusion_conditioning.relpe.linear_no_bias.weight", 1);
  D->c_atom = (int)dim_of(&L, "atom_attention_encoder.linear_no_bias_ref_pos.weight", 0);
  D->c_atompair = (int)dim_of(&L, "atom_attention_encoder.linear_no_bias_d.weight", 0);
  D->c_ref_f = (int)dim_of(&L, "atom_attention_encoder.linear_no_bias_f.weight", 1);
  if (L.status) goto fail;
  D->c_s_inputs = (int)(c_cat - D->c_s);
  if (D->c_token <= 0 || D->c_s <= 0 || D->c_z <= 0 || D->c_s_inputs <= 0 || D->n_fourier <= 0 ||
      D->c_atom <= 0 || D->c_atompair <= 0) {
    L.status = px_fail(PX_ERR_WEIGHTS, "inconsistent dimensions in checkpoint (c_token %d, c_s %d, c_z %d, c_s_inputs %d)",
                       D->c_token, D->c_s, D->c_z, D->c_s_inputs);
    goto fail;
  }
  if (D->n_relpe != 139) {
    L.status = px_fail(PX_ERR_WEIGHTS, "tensor " PX_DM_PREFIX "diffusion_conditioning.relpe.linear_no_bias.weight has %d input features, expected 139 (r_max 32, s_max 2)", D->n_relpe);
    goto fail;
  }
  if (D->c_ref_f != 1 + 128 + 256) {
    L.status = px_fail(PX_ERR_WEIGHTS, "tensor " PX_DM_PREFIX "atom_attention_encoder.linear_no_bias_f.weight has %d input features, expected 385", D->c_ref_f);
    goto fail;
  }
  const int cs = D->c_s, cz = D->c_z, ct = D->c_token, ca = D->c_atom, cp = D->c_atompair;
  /* diffusion_conditioning */
  m->relpe = lin(&L, cz, 139, 0, "diffusion_conditioning.relpe.linear_no_bias");
  m->cond_ln_z_w = vec(&L, "diffusion_conditioning.layernorm_z.weight", 2 * cz);
  m->cond_z = lin(&L, cz, 2 * cz, 0, "diffusion_conditioning.linear_no_bias_z");
  m->tr_z1 = transition_w(&L, cz, "diffusion_conditioning.transition_z1");
  m->tr_z2 = transition_w(&L, cz, "diffusion_conditioning.transition_z2");
  m->cond_ln_s_w = vec(&L, "diffusion_conditioning.layernorm_s.weight", cs + D->c_s_inputs);
  m->cond_s = lin(&L, cs, cs + D->c_s_inputs, 0, "diffusion_conditioning.linear_no_bias_s");
  m->fourier_w = vec(&L, "diffusion_conditioning.fourier_embedding.w", D->n_fourier);
  m->fourier_b = vec(&L, "diffusion_conditioning.fourier_embedding.b", D->n_fourier);
  m->cond_ln_n_w = vec(&L, "diffusion_conditioning.layernorm_n.weight", D->n_fourier);
  m->cond_n = lin(&L, cs, D->n_fourier, 0, "diffusion_conditioning.linear_no_bias_n");
  m->tr_s1 = transition_w(&L, cs, "diffusion_conditioning.transition_s1");
  m->tr_s2 = transition_w(&L, cs, "diffusion_conditioning.transition_s2");
  /* atom_attention_encoder */
  const char *E = "atom_attention_encoder";
  m->enc_ref_pos = lin(&L, ca, 3, 0, "%s.linear_no_bias_ref_pos", E);
  m->enc_ref_charge = lin(&L, ca, 1, 0, "%s.linear_no_bias_ref_charge", E);
  m->enc_f = lin(&L, ca, D->c_ref_f, 0, "%s.linear_no_bias_f", E);
  m->enc_d = lin(&L, cp, 3, 0, "%s.linear_no_bias_d", E);
  m->enc_invd = lin(&L, cp, 1, 0, "%s.linear_no_bias_invd", E);
  m->enc_v = lin(&L, cp, 1, 0, "%s.linear_no_bias_v", E);
  m->enc_ln_s_w = vec(&L, "%s.layernorm_s.weight", cs, E);
  m->enc_s = lin(&L, ca, cs, 0, "%s.linear_no_bias_s", E);
  m->enc_ln_z_w = vec(&L, "%s.layernorm_z.weight", cz, E);
  m->enc_z = lin(&L, cp, cz, 0, "%s.linear_no_bias_z", E);
  m->enc_r = lin(&L, ca, 3, 0, "%s.linear_no_bias_r", E);
  m->enc_cl = lin(&L, cp, ca, 0, "%s.linear_no_bias_cl", E);
  m->enc_cm = lin(&L, cp, ca, 0, "%s.linear_no_bias_cm", E);
  m->enc_mlp1 = lin(&L, cp, cp, 0, "%s.small_mlp.1", E);
  m->enc_mlp3 = lin(&L, cp, cp, 0, "%s.small_mlp.3", E);
  m->enc_mlp5 = lin(&L, cp, cp, 0, "%s.small_mlp.5", E);
  m->enc_q = lin(&L, ct, ca, 0, "%s.linear_no_bias_q", E);
  transformer_w(&L, &m->enc_tf, "atom_attention_encoder.atom_transformer.diffusion_transformer", ca, ca, cp, 1);
  /* token level */
  m->ln_s_w = vec(&L, "layernorm_s.weight", cs);
  m->lin_s = lin(&L, ct, cs, 0, "linear_no_bias_s");
  transformer_w(&L, &m->tok_tf, "diffusion_transformer", ct, cs, cz, 0);
  m->ln_a_w = vec(&L, "layernorm_a.weight", ct);
  /* atom_attention_decoder */
  m->dec_a = lin(&L, ca, ct, 0, "atom_attention_decoder.linear_no_bias_a");
  m->dec_ln_q_w = vec(&L, "atom_attention_decoder.layernorm_q.weight", ca);
  m->dec_out = lin(&L, 3, ca, 0, "atom_attention_decoder.linear_no_bias_out");
  transformer_w(&L, &m->dec_tf, "atom_attention_decoder.atom_transformer.diffusion_transformer", ca, ca, cp, 1);
  if (L.status) goto fail;
  D->n_token_blocks = m->tok_tf.n_blocks;
  D->n_token_heads = m->tok_tf.n_heads;
  D->n_enc_blocks = m->enc_tf.n_blocks;
  D->n_enc_heads = m->enc_tf.n_heads;
  D->n_dec_blocks = m->dec_tf.n_blocks;
  D->n_dec_heads = m->dec_tf.n_heads;
  /* Its CPU context (its thread count), freed by px_model_free. */
  m->cpu_ctx = px_backend_create(PX_DEVICE_CPU, 0, PX_PRECISION_FP32);
  if (!m->cpu_ctx) {
    L.status = PX_ERR_NOMEM; /* the reason is set */
    goto fail;
  }
  *out = m;
  return PX_OK;
fail:
  px_model_weights_free(m); /* not on a backend yet (and no CPU context made), nothing else to free */
  return L.status ? L.status : PX_ERR_WEIGHTS;
}

void px_model_weights_free(px_model *m) {
  if (!m) return;
  free(m->owned_n);
  for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
  free(m->owned);
  free(m->enc_tf.blocks);
  free(m->tok_tf.blocks);
  free(m->dec_tf.blocks);
  free(m);
}

int px_model_get_dims(const px_model *m, px_dims *out) {
  if (!m || !out) return px_fail(PX_ERR_INPUT, "px_model_get_dims: NULL argument");
  *out = m->dims;
  return PX_OK;
}

int64_t px_model_n_params(const px_model *m) { return m ? m->n_params : 0; }

/* ------------------------------------------------------------------ embedder -- */

void px_embedder_w_visit(px_embedder_w *w, px_weight_visitor fn, void *u) {
  px_linear *ls[] = {&w->ref.ref_pos, &w->ref.ref_charge, &w->ref.f, &w->ref.d, &w->ref.invd, &w->ref.v,
                     &w->ref.cl, &w->ref.cm, &w->ref.mlp1, &w->ref.mlp3, &w->ref.mlp5, &w->q,
                     &w->map_a, &w->map_x};
  for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) visit_linear(ls[i], fn, u);
  fn(&w->templ, u);
  visit_transformer(&w->tf, fn, u);
}

void px_embedder_w_free(px_embedder_w *w) {
  if (!w) return;
  for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
  free(w->owned);
  free(w->owned_n);
  free(w->tf.blocks);
  memset(w, 0, sizeof *w);
}

/* docs/design-spec.md 8.3: the DesignConditionEmbedder's 96 tensors; every width is read off
 * them (the released ones: c_atom 128, c_atompair 16, c_token 384, c_s_inputs 449, c_z 128;
 * 3 blocks of 4 heads). */
int px_embedder_w_build(const px_weight_source *src, px_embedder_w *w) {
  memset(w, 0, sizeof *w);
  loader L = {src, PX_EMBED_PREFIX, NULL, {&w->owned, &w->owned_n, &w->n_owned, &w->cap_owned, &w->n_params}, 0};
  px_embedder_dims *D = &w->dims;
  const char *E = "input_embedder.atom_attention_encoder";
  char s[400];
#define EMB_DIM(var, fmt, axis)                        \
  do {                                                 \
    snprintf(s, sizeof s, fmt, E);                     \
    var = (int)dim_of(&L, s, axis);                    \
  } while (0)
  EMB_DIM(D->c_atom, "%s.linear_no_bias_ref_pos.weight", 0);
  EMB_DIM(D->c_atompair, "%s.linear_no_bias_d.weight", 0);
  EMB_DIM(D->c_token, "%s.linear_no_bias_q.weight", 0);
  int c_ref_f = 0;
  EMB_DIM(c_ref_f, "%s.linear_no_bias_f.weight", 1);
#undef EMB_DIM
  D->c_s_inputs = (int)dim_of(&L, "input_embedder.input_map.weight", 0);
  const int map_in = (int)dim_of(&L, "input_embedder.input_map.weight", 1);
  const int n_rows = (int)dim_of(&L, "condition_template_embedder.embedder.weight", 0);
  D->c_z = (int)dim_of(&L, "condition_template_embedder.embedder.weight", 1);
  if (L.status) goto fail;
  if (D->c_atom <= 0 || D->c_atompair <= 0 || D->c_token <= 0 || D->c_s_inputs <= 0 || D->c_z <= 0) {
    L.status = px_fail(PX_ERR_WEIGHTS, "inconsistent dimensions in the condition embedder's tensors (c_atom %d, c_atompair %d, c_token %d, c_s_inputs %d, c_z %d)",
                       D->c_atom, D->c_atompair, D->c_token, D->c_s_inputs, D->c_z);
    goto fail;
  }
  if (c_ref_f != 1 + 128 + 256) {
    L.status = px_fail(PX_ERR_WEIGHTS, "tensor " PX_EMBED_PREFIX "%s.linear_no_bias_f.weight has %d input features, expected 385", E, c_ref_f);
    goto fail;
  }
  if (map_in != D->c_token + PX_EMBED_N_EXTRA) {
    L.status = px_fail(PX_ERR_WEIGHTS, "tensor " PX_EMBED_PREFIX "input_embedder.input_map.weight has %d input features, expected %d (c_token %d + %d)",
                       map_in, D->c_token + PX_EMBED_N_EXTRA, D->c_token, PX_EMBED_N_EXTRA);
    goto fail;
  }
  if (n_rows != PX_EMBED_TEMPL_BINS + 1) {
    L.status = px_fail(PX_ERR_WEIGHTS, "tensor " PX_EMBED_PREFIX "condition_template_embedder.embedder.weight has %d rows, expected %d (64 distance bins + 1)",
                       n_rows, PX_EMBED_TEMPL_BINS + 1);
    goto fail;
  }
  const int ca = D->c_atom, cp = D->c_atompair, ct = D->c_token, cs = D->c_s_inputs;
  px_atom_ref_w *r = &w->ref;
  r->ref_pos = lin(&L, ca, 3, 0, "%s.linear_no_bias_ref_pos", E);
  r->ref_charge = lin(&L, ca, 1, 0, "%s.linear_no_bias_ref_charge", E);
  r->f = lin(&L, ca, c_ref_f, 0, "%s.linear_no_bias_f", E);
  r->d = lin(&L, cp, 3, 0, "%s.linear_no_bias_d", E);
  r->invd = lin(&L, cp, 1, 0, "%s.linear_no_bias_invd", E);
  r->v = lin(&L, cp, 1, 0, "%s.linear_no_bias_v", E);
  r->cl = lin(&L, cp, ca, 0, "%s.linear_no_bias_cl", E);
  r->cm = lin(&L, cp, ca, 0, "%s.linear_no_bias_cm", E);
  r->mlp1 = lin(&L, cp, cp, 0, "%s.small_mlp.1", E);
  r->mlp3 = lin(&L, cp, cp, 0, "%s.small_mlp.3", E);
  r->mlp5 = lin(&L, cp, cp, 0, "%s.small_mlp.5", E);
  snprintf(s, sizeof s, "%s.atom_transformer.diffusion_transformer", E);
  transformer_w(&L, &w->tf, s, ca, ca, cp, 1);
  w->q = lin(&L, ct, ca, 0, "%s.linear_no_bias_q", E);
  /* input_map [cs, c_token + 46] kept as two matrices: the columns over the token mean a
   * (with the bias) and those over the 46 token features, one GEMM each. */
  w->map_a.out = w->map_x.out = cs;
  w->map_a.in = ct;
  w->map_x.in = PX_EMBED_N_EXTRA;
  w->map_a.w = own(&L, (size_t)cs * ct);
  w->map_x.w = own(&L, (size_t)cs * PX_EMBED_N_EXTRA);
  float *full = malloc(sizeof(float) * (size_t)cs * map_in);
  if (!w->map_a.w || !w->map_x.w || !full) {
    free(full);
    if (!L.status) L.status = px_fail(PX_ERR_NOMEM, "out of memory");
    goto fail;
  }
  if (load_into(&L, full, "input_embedder.input_map.weight", cs, map_in))
    for (int o = 0; o < cs; o++) {
      memcpy(w->map_a.w + (size_t)o * ct, full + (size_t)o * map_in, sizeof(float) * (size_t)ct);
      memcpy(w->map_x.w + (size_t)o * PX_EMBED_N_EXTRA, full + (size_t)o * map_in + ct,
             sizeof(float) * PX_EMBED_N_EXTRA);
    }
  free(full);
  w->map_a.b = vec(&L, "input_embedder.input_map.bias", cs);
  w->templ = load_into(&L, NULL, "condition_template_embedder.embedder.weight", n_rows, D->c_z);
  if (L.status) goto fail;
  D->n_blocks = w->tf.n_blocks;
  D->n_heads = w->tf.n_heads;
  return PX_OK;
fail:
  px_embedder_w_free(w);
  return L.status ? L.status : PX_ERR_WEIGHTS;
}
