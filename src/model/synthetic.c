/* Deterministic synthetic weights and inputs with the released model's layout, for
 * benchmarks and the demo when no checkpoint is at hand. Values follow PyTorch's default
 * initialisation scales (Linear: U(-1/sqrt(in), 1/sqrt(in)); LayerNorm weights near 1),
 * drawn from the project's counter-based generator, so they are the same everywhere.
 * Nothing here is a trained model: outputs are labelled synthetic by the callers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/embedder.h"
#include "pxdiff_synthetic.h"
#include "rng.h"

typedef struct {
  int n, cap;
  char **names;
  int *ndims;
  int64_t (*shapes)[2];
} name_table;

static int add(name_table *t, int64_t d0, int64_t d1, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#include <stdarg.h>
static int add(name_table *t, int64_t d0, int64_t d1, const char *fmt, ...) {
  if (t->n == t->cap) {
    int cap = t->cap ? t->cap * 2 : 512;
    char **nn = realloc(t->names, sizeof(char *) * (size_t)cap);
    if (!nn) return -1;
    t->names = nn;
    int *nd = realloc(t->ndims, sizeof(int) * (size_t)cap);
    if (!nd) return -1;
    t->ndims = nd;
    int64_t(*ns)[2] = realloc(t->shapes, sizeof(int64_t[2]) * (size_t)cap);
    if (!ns) return -1;
    t->shapes = ns;
    t->cap = cap;
  }
  char buf[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  t->names[t->n] = malloc(strlen(buf) + 1);
  if (!t->names[t->n]) return -1;
  strcpy(t->names[t->n], buf);
  t->ndims[t->n] = d1 < 0 ? 1 : 2;
  t->shapes[t->n][0] = d0;
  t->shapes[t->n][1] = d1 < 0 ? 1 : d1;
  t->n++;
  return 0;
}

#define DM "diffusion_module."

static void adaln_names(name_table *t, const char *base, int c, int cs) {
  add(t, cs, -1, "%s.layernorm_s.weight", base);
  add(t, c, cs, "%s.linear_s.weight", base);
  add(t, c, -1, "%s.linear_s.bias", base);
  add(t, c, cs, "%s.linear_nobias_s.weight", base);
}

static void transition_names(name_table *t, const char *base, int c) {
  add(t, c, -1, "%s.layernorm1.weight", base);
  add(t, c, -1, "%s.layernorm1.bias", base);
  add(t, 2 * c, c, "%s.linear_no_bias_a.weight", base);
  add(t, 2 * c, c, "%s.linear_no_bias_b.weight", base);
  add(t, c, 2 * c, "%s.linear_no_bias.weight", base);
}

/* The atom encoder's reference-feature and pair-feature projections, which the diffusion
 * module's encoder and the condition embedder's share (in table order: the synthetic weights
 * are drawn in it). */
static void atom_ref_names(name_table *t, const char *E, int ca, int cp) {
  add(t, ca, 3, "%s.linear_no_bias_ref_pos.weight", E);
  add(t, ca, 1, "%s.linear_no_bias_ref_charge.weight", E);
  add(t, ca, 385, "%s.linear_no_bias_f.weight", E);
  add(t, cp, 3, "%s.linear_no_bias_d.weight", E);
  add(t, cp, 1, "%s.linear_no_bias_invd.weight", E);
  add(t, cp, 1, "%s.linear_no_bias_v.weight", E);
}

static void atom_pair_names(name_table *t, const char *E, int ca, int cp) {
  add(t, cp, ca, "%s.linear_no_bias_cl.weight", E);
  add(t, cp, ca, "%s.linear_no_bias_cm.weight", E);
  add(t, cp, cp, "%s.small_mlp.1.weight", E);
  add(t, cp, cp, "%s.small_mlp.3.weight", E);
  add(t, cp, cp, "%s.small_mlp.5.weight", E);
}

static void transformer_names(name_table *t, const char *base, int nb, int H, int c, int cs,
                              int cz, int cross) {
  for (int k = 0; k < nb; k++) {
    char apb[300], ctb[300], s[340];
    snprintf(apb, sizeof apb, "%s.blocks.%d.attention_pair_bias", base, k);
    snprintf(ctb, sizeof ctb, "%s.blocks.%d.conditioned_transition_block", base, k);
    snprintf(s, sizeof s, "%s.layernorm_a", apb);
    adaln_names(t, s, c, cs);
    if (cross) {
      snprintf(s, sizeof s, "%s.layernorm_kv", apb);
      adaln_names(t, s, c, cs);
    }
    add(t, c, c, "%s.attention.linear_q.weight", apb);
    add(t, c, -1, "%s.attention.linear_q.bias", apb);
    add(t, c, c, "%s.attention.linear_k.weight", apb);
    add(t, c, c, "%s.attention.linear_v.weight", apb);
    add(t, c, c, "%s.attention.linear_o.weight", apb);
    add(t, c, c, "%s.attention.linear_g.weight", apb);
    add(t, cz, -1, "%s.layernorm_z.weight", apb);
    add(t, H, cz, "%s.linear_nobias_z.weight", apb);
    add(t, c, cs, "%s.linear_a_last.weight", apb);
    add(t, c, -1, "%s.linear_a_last.bias", apb);
    snprintf(s, sizeof s, "%s.adaln", ctb);
    adaln_names(t, s, c, cs);
    add(t, 2 * c, c, "%s.linear_nobias_a1.weight", ctb);
    add(t, 2 * c, c, "%s.linear_nobias_a2.weight", ctb);
    add(t, c, 2 * c, "%s.linear_nobias_b.weight", ctb);
    add(t, c, cs, "%s.linear_s.weight", ctb);
    add(t, c, -1, "%s.linear_s.bias", ctb);
  }
}

static void all_names(name_table *t, const px_dims *D) {
  const int cs = D->c_s, cz = D->c_z, ct = D->c_token, ca = D->c_atom, cp = D->c_atompair;
  const int nf = D->n_fourier;
  add(t, cz, 139, DM "diffusion_conditioning.relpe.linear_no_bias.weight");
  add(t, 2 * cz, -1, DM "diffusion_conditioning.layernorm_z.weight");
  add(t, cz, 2 * cz, DM "diffusion_conditioning.linear_no_bias_z.weight");
  transition_names(t, DM "diffusion_conditioning.transition_z1", cz);
  transition_names(t, DM "diffusion_conditioning.transition_z2", cz);
  add(t, cs + D->c_s_inputs, -1, DM "diffusion_conditioning.layernorm_s.weight");
  add(t, cs, cs + D->c_s_inputs, DM "diffusion_conditioning.linear_no_bias_s.weight");
  add(t, nf, -1, DM "diffusion_conditioning.fourier_embedding.w");
  add(t, nf, -1, DM "diffusion_conditioning.fourier_embedding.b");
  add(t, nf, -1, DM "diffusion_conditioning.layernorm_n.weight");
  add(t, cs, nf, DM "diffusion_conditioning.linear_no_bias_n.weight");
  transition_names(t, DM "diffusion_conditioning.transition_s1", cs);
  transition_names(t, DM "diffusion_conditioning.transition_s2", cs);
  const char *E = DM "atom_attention_encoder";
  atom_ref_names(t, E, ca, cp);
  add(t, cs, -1, "%s.layernorm_s.weight", E);
  add(t, ca, cs, "%s.linear_no_bias_s.weight", E);
  add(t, cz, -1, "%s.layernorm_z.weight", E);
  add(t, cp, cz, "%s.linear_no_bias_z.weight", E);
  add(t, ca, 3, "%s.linear_no_bias_r.weight", E);
  atom_pair_names(t, E, ca, cp);
  transformer_names(t, DM "atom_attention_encoder.atom_transformer.diffusion_transformer",
                    D->n_enc_blocks, D->n_enc_heads, ca, ca, cp, 1);
  add(t, ct, ca, "%s.linear_no_bias_q.weight", E);
  add(t, cs, -1, DM "layernorm_s.weight");
  add(t, ct, cs, DM "linear_no_bias_s.weight");
  transformer_names(t, DM "diffusion_transformer", D->n_token_blocks, D->n_token_heads, ct, cs, cz, 0);
  add(t, ct, -1, DM "layernorm_a.weight");
  add(t, ca, ct, DM "atom_attention_decoder.linear_no_bias_a.weight");
  add(t, ca, -1, DM "atom_attention_decoder.layernorm_q.weight");
  add(t, 3, ca, DM "atom_attention_decoder.linear_no_bias_out.weight");
  transformer_names(t, DM "atom_attention_decoder.atom_transformer.diffusion_transformer",
                    D->n_dec_blocks, D->n_dec_heads, ca, ca, cp, 1);
}

void px_dims_released(px_dims *D) {
  memset(D, 0, sizeof *D);
  D->c_s = 384;
  D->c_z = 128;
  D->c_s_inputs = 449;
  D->c_token = 768;
  D->c_atom = 128;
  D->c_atompair = 16;
  D->n_fourier = 256;
  D->n_token_blocks = 16;
  D->n_token_heads = 16;
  D->n_enc_blocks = 4;
  D->n_enc_heads = 4;
  D->n_dec_blocks = 4;
  D->n_dec_heads = 4;
  D->c_ref_f = 385;
  D->n_relpe = 139;
  D->sigma_data = 16.0f;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Uniforms in [0, 1) straight from Philox blocks (4 per block, 24-bit mantissas), and
 * normals from the shared generator only where a normal is wanted. */
static void uniform01(float *x, int64_t n, uint64_t seed, uint32_t idx) {
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  for (int64_t i = 0; i < n; i += 4) {
    uint32_t ctr[4] = {(uint32_t)(i / 4), (uint32_t)((uint64_t)(i / 4) >> 32), idx, 0x5EED0001u}, out[4];
    px_philox4x32_10(ctr, key, out);
    for (int k = 0; k < 4 && i + k < n; k++) x[i + k] = (float)(out[k] >> 8) * (1.0f / 16777216.0f);
  }
}

/* Whether `name` is a LayerNorm's own parameter ("...layernorm_s.weight"), not that of a
 * linear inside an AdaLN module named layernorm_* ("...layernorm_a.linear_s.weight"). */
static int layernorm_param(const char *name, const char *suffix) {
  if (!ends_with(name, suffix)) return 0;
  const size_t n = strlen(name) - strlen(suffix);
  size_t b = n;
  while (b > 0 && name[b - 1] != '.') b--;
  return strncmp(name + b, "layernorm", 9) == 0;
}

static void fill(float *x, int64_t n, const char *name, int64_t fan_in, uint64_t seed, uint32_t idx) {
  if (ends_with(name, "fourier_embedding.w") || ends_with(name, "template_embedder.embedder.weight")) {
    px_rng_normal(seed, idx, 0x5EED, 7, x, n); /* N(0, 1) as upstream (nn.Embedding's default too) */
    return;
  }
  uniform01(x, n, seed, idx);
  if (ends_with(name, "fourier_embedding.b")) {
    /* U(0, 1) */
  } else if (layernorm_param(name, ".weight")) {
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f + 0.2f * (x[i] - 0.5f);
  } else if (layernorm_param(name, ".bias")) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.1f * (x[i] - 0.5f);
  } else {
    /* PyTorch's Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias likewise. */
    const float b = 1.0f / sqrtf((float)(fan_in > 0 ? fan_in : 1));
    for (int64_t i = 0; i < n; i++) x[i] = b * (2.0f * x[i] - 1.0f);
  }
}

/* The condition embedder's tensors (docs/design-spec.md 8.3) at the widths d. */
static void embedder_names(name_table *t, const px_embedder_dims *d) {
  const int ca = d->c_atom, cp = d->c_atompair, ct = d->c_token;
  const char *E = PX_EMBED_PREFIX "input_embedder.atom_attention_encoder";
  atom_ref_names(t, E, ca, cp);
  atom_pair_names(t, E, ca, cp);
  transformer_names(t, PX_EMBED_PREFIX "input_embedder.atom_attention_encoder.atom_transformer.diffusion_transformer",
                    d->n_blocks, d->n_heads, ca, ca, cp, 1);
  add(t, ct, ca, "%s.linear_no_bias_q.weight", E);
  add(t, d->c_s_inputs, ct + PX_EMBED_N_EXTRA, PX_EMBED_PREFIX "input_embedder.input_map.weight");
  add(t, d->c_s_inputs, -1, PX_EMBED_PREFIX "input_embedder.input_map.bias");
  add(t, PX_EMBED_TEMPL_BINS + 1, d->c_z, PX_EMBED_PREFIX "condition_template_embedder.embedder.weight");
}

typedef int (*from_arrays_fn)(int n, const char *const *names, const float *const *data, const int *ndims,
                              const int64_t *const *shapes, void *out);

/* Fill every tensor of t (freed here) and hand them to build. */
static int synth_build(name_table t, uint64_t seed, from_arrays_fn build, void *out) {
  int rc = PX_OK;
  float **data = calloc((size_t)t.n, sizeof(float *));
  const int64_t **shapes = calloc((size_t)t.n, sizeof(int64_t *));
  if (!data || !shapes) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < t.n; i++) {
    int64_t n = t.shapes[i][0] * t.shapes[i][1];
    data[i] = malloc(sizeof(float) * (size_t)n);
    if (!data[i]) {
      rc = px_fail(PX_ERR_NOMEM, "out of memory");
      goto done;
    }
    /* fan_in: the input width of a weight matrix; a bias uses its matrix's. */
    int64_t fan_in = t.ndims[i] == 2 ? t.shapes[i][1] : (i > 0 ? t.shapes[i - 1][1] : 1);
    fill(data[i], n, t.names[i], fan_in, seed, (uint32_t)i);
    shapes[i] = t.shapes[i];
  }
  rc = build(t.n, (const char *const *)t.names, (const float *const *)data, t.ndims, shapes, out);
done:
  for (int i = 0; i < t.n; i++) {
    if (data) free(data[i]);
    free(t.names[i]);
  }
  free(data);
  free(shapes);
  free(t.names);
  free(t.ndims);
  free(t.shapes);
  return rc;
}

static int model_from_arrays(int n, const char *const *names, const float *const *data, const int *ndims,
                             const int64_t *const *shapes, void *out) {
  return px_model_from_arrays(n, names, data, ndims, shapes, (px_model **)out);
}

static int embedder_from_arrays(int n, const char *const *names, const float *const *data, const int *ndims,
                                const int64_t *const *shapes, void *out) {
  return px_embedder_from_arrays(n, names, data, ndims, shapes, (px_embedder **)out);
}

int px_model_synthetic(const px_dims *D, uint64_t seed, px_model **out) {
  if (!D || !out) return px_fail(PX_ERR_INPUT, "px_model_synthetic: NULL argument");
  *out = NULL;
  name_table t = {0};
  all_names(&t, D);
  return synth_build(t, seed, model_from_arrays, out);
}

int px_embedder_synthetic(const px_embedder_dims *d, uint64_t seed, px_embedder **out) {
  if (!d || !out) return px_fail(PX_ERR_INPUT, "px_embedder_synthetic: NULL argument");
  *out = NULL;
  if (d->c_atom <= 0 || d->c_atompair <= 0 || d->c_token <= 0 || d->c_s_inputs <= 0 || d->c_z <= 0 ||
      d->n_blocks <= 0 || d->n_heads <= 0 || d->c_atom % d->n_heads)
    return px_fail(PX_ERR_INPUT, "px_embedder_synthetic: invalid widths");
  name_table t = {0};
  embedder_names(&t, d);
  return synth_build(t, seed, embedder_from_arrays, out);
}

/* ------------------------------------------------------------------ inputs -- */

int px_features_alloc(const px_dims *D, int T, int N, px_features *f) {
  memset(f, 0, sizeof *f);
  f->n_token = T;
  f->n_atom = N;
  f->s_inputs = calloc((size_t)T * D->c_s_inputs, sizeof(float));
  f->s_trunk = calloc((size_t)T * D->c_s, sizeof(float));
  f->z_trunk = calloc((size_t)T * T * D->c_z, sizeof(float));
  f->ref_pos = calloc((size_t)N * 3, sizeof(float));
  f->ref_charge = calloc((size_t)N, sizeof(float));
  f->ref_mask = calloc((size_t)N, sizeof(float));
  f->ref_element = calloc((size_t)N * 128, sizeof(float));
  f->ref_atom_name_chars = calloc((size_t)N * 256, sizeof(float));
  f->ref_space_uid = calloc((size_t)N, sizeof(int64_t));
  f->atom_to_token_idx = calloc((size_t)N, sizeof(int64_t));
  f->asym_id = calloc((size_t)T, sizeof(int64_t));
  f->residue_index = calloc((size_t)T, sizeof(int64_t));
  f->entity_id = calloc((size_t)T, sizeof(int64_t));
  f->token_index = calloc((size_t)T, sizeof(int64_t));
  f->sym_id = calloc((size_t)T, sizeof(int64_t));
  if (!f->s_inputs || !f->s_trunk || !f->z_trunk || !f->ref_pos || !f->ref_charge || !f->ref_mask ||
      !f->ref_element || !f->ref_atom_name_chars || !f->ref_space_uid || !f->atom_to_token_idx ||
      !f->asym_id || !f->residue_index || !f->entity_id || !f->token_index || !f->sym_id) {
    px_features_free(f);
    return PX_ERR_NOMEM;
  }
  return PX_OK;
}

void px_features_free(px_features *f) {
  if (!f) return;
  void *bufs[] = {(void *)f->s_inputs, (void *)f->s_trunk, (void *)f->z_trunk, (void *)f->ref_pos,
                  (void *)f->ref_charge, (void *)f->ref_mask, (void *)f->ref_element,
                  (void *)f->ref_atom_name_chars, (void *)f->ref_space_uid, (void *)f->atom_to_token_idx,
                  (void *)f->asym_id, (void *)f->residue_index, (void *)f->entity_id,
                  (void *)f->token_index, (void *)f->sym_id};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(f, 0, sizeof *f);
}

void px_synthetic_free(px_synthetic_design *s) {
  if (!s) return;
  px_features_free(&s->f);
  free(s->is_binder);
  memset(s, 0, sizeof *s);
}

int px_synthetic_design_make(const px_dims *D, int n_target, int n_binder, int n_atom,
                             uint64_t seed, px_synthetic_design *s) {
  memset(s, 0, sizeof *s);
  const int T = n_target + n_binder;
  if (n_target < 0 || n_binder < 0 || T <= 0 || n_atom < T)
    return px_fail(PX_ERR_INPUT, "synthetic design needs tokens > 0 and atoms >= tokens (got %d tokens, %d atoms)", T, n_atom);
  const int N = n_atom;
  px_features *f = &s->f;
  s->is_binder = malloc((size_t)T);
  if (!s->is_binder || px_features_alloc(D, T, N, f)) { /* s_trunk stays 0, as PXDesign passes it */
    px_synthetic_free(s);
    return px_fail(PX_ERR_NOMEM, "out of memory for synthetic inputs");
  }
  unsigned char *binder = s->is_binder;
  float *s_inputs = (float *)f->s_inputs, *z_trunk = (float *)f->z_trunk, *ref_pos = (float *)f->ref_pos;
  float *ref_charge = (float *)f->ref_charge, *ref_mask = (float *)f->ref_mask;
  float *ref_element = (float *)f->ref_element, *ref_chars = (float *)f->ref_atom_name_chars;
  int64_t *uid = (int64_t *)f->ref_space_uid, *a2t = (int64_t *)f->atom_to_token_idx;
  int64_t *asym = (int64_t *)f->asym_id, *res = (int64_t *)f->residue_index, *ent = (int64_t *)f->entity_id;
  int64_t *tok = (int64_t *)f->token_index, *sym = (int64_t *)f->sym_id;
  px_rng_normal(seed, 0, 0xD00D, 8, s_inputs, (int64_t)T * D->c_s_inputs);
  px_rng_normal(seed, 1, 0xD00D, 8, z_trunk, (int64_t)T * T * D->c_z);
  /* Tokens: chain 0 the target, chain 1 the binder; atoms spread as evenly as possible
   * (the target gets the remainder first, like real proteins with larger side chains). */
  for (int t = 0; t < T; t++) {
    int is_b = t >= n_target;
    binder[t] = (unsigned char)is_b;
    asym[t] = is_b;
    ent[t] = is_b;
    sym[t] = 0;
    res[t] = is_b ? t - n_target + 1 : t + 1;
    tok[t] = t;
  }
  float *noise = malloc(sizeof(float) * (size_t)N * 4);
  if (!noise) {
    px_synthetic_free(s);
    return px_fail(PX_ERR_NOMEM, "out of memory for synthetic inputs");
  }
  px_rng_normal(seed, 2, 0xD00D, 8, noise, (int64_t)N * 4);
  int n = 0;
  for (int t = 0; t < T; t++) {
    int count = N / T + (t < N % T ? 1 : 0);
    for (int k = 0; k < count; k++, n++) {
      a2t[n] = t;
      uid[n] = t;
      ref_mask[n] = 1.0f;
      for (int c = 0; c < 3; c++) ref_pos[n * 3 + c] = 1.5f * noise[n * 4 + c];
      static const int elements[4] = {5, 6, 7, 15}; /* C, N, O, S one-hot slots */
      int e = k == 0 ? 1 : (k == 1 ? 0 : (k == 2 ? 0 : (k == 3 ? 2 : 0)));
      if (k > 4 && (t % 7 == 0)) e = 3;
      ref_element[(size_t)n * 128 + elements[e]] = 1.0f;
      for (int ch = 0; ch < 4; ch++) {
        int code = ch == 0 ? 33 + e : (ch == 1 && k > 0 ? 16 + k % 20 : 0);
        ref_chars[(size_t)n * 256 + ch * 64 + code] = 1.0f;
      }
      ref_charge[n] = (k == 5 && t % 5 == 0) ? 1.0f : 0.0f;
    }
  }
  free(noise);
  return PX_OK;
}
