/* The per-design cache: everything docs/spec.md lists as independent of noise level and
 * sample, computed once per design (upstream recomputes it at every step):
 * s0, pair_z and every token block's pair bias, the encoder's c and p, every atom
 * block's pair bias and the s-side AdaLN/gate terms of the atom transformers (s = c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/model.h"

/* Rows of pair tensors processed at a time: bounds temporaries at large T. */
#define PAIR_CHUNK 8192

static int finite_all(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

static int validate(const px_model *m, const px_features *f) {
  if (!m || !f) return px_fail(PX_ERR_INPUT, "NULL model or features");
  const int T = f->n_token, N = f->n_atom;
  if (T <= 0) return px_fail(PX_ERR_INPUT, "design has %d tokens; at least 1 is needed", T);
  if (N <= 0) return px_fail(PX_ERR_INPUT, "design has %d atoms; at least 1 is needed", N);
  if ((int64_t)T * T > (int64_t)1 << 31 || N > (1 << 26))
    return px_fail(PX_ERR_INPUT, "design too large (%d tokens, %d atoms)", T, N);
  struct { const void *p; const char *name; } req[] = {
      {f->s_inputs, "s_inputs"}, {f->s_trunk, "s_trunk"}, {f->z_trunk, "z_trunk"},
      {f->ref_pos, "ref_pos"}, {f->ref_charge, "ref_charge"}, {f->ref_mask, "ref_mask"},
      {f->ref_element, "ref_element"}, {f->ref_atom_name_chars, "ref_atom_name_chars"},
      {f->ref_space_uid, "ref_space_uid"}, {f->atom_to_token_idx, "atom_to_token_idx"},
      {f->asym_id, "asym_id"}, {f->residue_index, "residue_index"}, {f->entity_id, "entity_id"},
      {f->token_index, "token_index"}, {f->sym_id, "sym_id"}};
  for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
    if (!req[i].p) return px_fail(PX_ERR_INPUT, "feature %s is missing", req[i].name);
  const px_dims *D = &m->dims;
  struct { const float *p; int64_t n; const char *name; } fl[] = {
      {f->s_inputs, (int64_t)T * D->c_s_inputs, "s_inputs"},
      {f->s_trunk, (int64_t)T * D->c_s, "s_trunk"},
      {f->z_trunk, (int64_t)T * T * D->c_z, "z_trunk"},
      {f->ref_pos, (int64_t)N * 3, "ref_pos"},
      {f->ref_charge, N, "ref_charge"},
      {f->ref_mask, N, "ref_mask"},
      {f->ref_element, (int64_t)N * 128, "ref_element"},
      {f->ref_atom_name_chars, (int64_t)N * 256, "ref_atom_name_chars"}};
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
    if (!finite_all(fl[i].p, fl[i].n))
      return px_fail(PX_ERR_INPUT, "feature %s contains NaN or Inf", fl[i].name);
  int64_t prev = 0;
  for (int n = 0; n < N; n++) {
    int64_t t = f->atom_to_token_idx[n];
    if (t < 0 || t >= T)
      return px_fail(PX_ERR_INPUT, "atom_to_token_idx[%d] = %lld is out of range [0, %d)", n,
                     (long long)t, T);
    if (t < prev)
      return px_fail(PX_ERR_INPUT, "atom_to_token_idx is not ascending at atom %d (%lld after %lld)",
                     n, (long long)t, (long long)prev);
    prev = t;
  }
  return PX_OK;
}

/* Y[M, C] = silu(A x) * (B x) then W: one Transition (docs/spec.md), added into X in place,
 * processed in row chunks with scratch [chunk, C] + 2 * [chunk, 2C]. */
static void transition_add(px_backend *be, const px_transition_w *t, int64_t M, int C, float *X,
                           float *scratch) {
  float *xn = scratch;
  float *ab = xn + (size_t)PAIR_CHUNK * C;
  float *h = ab + (size_t)PAIR_CHUNK * 4 * C;
  for (int64_t r0 = 0; r0 < M; r0 += PAIR_CHUNK) {
    int rows = (int)(M - r0 < PAIR_CHUNK ? M - r0 : PAIR_CHUNK);
    float *x = X + (size_t)r0 * C;
    be->layernorm(be, rows, C, x, t->ln_w, t->ln_b, xn);
    /* [A x ; B x] side by side: the swiglu kernel reads halves of one row. */
    be->linear(be, rows, 2 * C, C, xn, C, px_lw(&t->a), NULL, ab, 4 * C, 0, 0, PX_F32, PX_F32);
    be->linear(be, rows, 2 * C, C, xn, C, px_lw(&t->b), NULL, ab + 2 * C, 4 * C, 0, 0, PX_F32, PX_F32);
    be->swiglu(be, rows, 2 * C, ab, h, PX_F32, PX_F32, 0);
    be->linear(be, rows, C, 2 * C, h, 2 * C, px_lw(&t->out), NULL, x, C, 1, 0, PX_F32, PX_F32);
  }
}


/* ---- the atom encoder's per-design work, shared with the design condition embedder
 * (model/embedder.c: the same AtomAttentionEncoder without coordinates) ---- */

/* A host array of n floats as the backend's memory: the array itself on a backend of host
 * memory (*owned = NULL), else a copy the caller frees (*owned). NULL on failure (the alloc
 * op has said why). */
static const float *in_backend(px_backend *be, const float *host, size_t n, float **owned) {
  *owned = NULL;
  if (!be->device_memory) return host;
  float *d = be->alloc(be, sizeof(float) * (n ? n : 1));
  if (!d) return NULL;
  be->upload(be, d, host, sizeof(float) * n);
  *owned = d;
  return d;
}

int px_atom_block_cache_build(px_backend *be, const px_transformer_w *tf, const px_transformer_w *tf_host, int N,
                              const float *c, float *scratch, px_atom_block_cache *out, int64_t *bytes) {
  const int C = tf->c;
  float *wfold = malloc(sizeof(float) * 2 * (size_t)C * C); /* host: folded from the host weights */
  if (!wfold) return px_fail(PX_ERR_NOMEM, "out of memory for the design cache");
  float *wf_dev = NULL;
  if (be->device_memory && !(wf_dev = be->alloc(be, sizeof(float) * 2 * (size_t)C * C))) {
    free(wfold);
    return PX_ERR_NOMEM; /* the alloc op has said why */
  }
  const float *wf = wf_dev ? wf_dev : wfold;
  float *cn = scratch;
  be->layernorm(be, N, C, c, NULL, NULL, cn);
  int rc = PX_OK;
  for (int k = 0; k < tf->n_blocks && !rc; k++) {
    const px_block_w *B = &tf->blocks[k], *Bh = &tf_host->blocks[k];
    px_atom_block_cache *o = &out[k];
    float **bufs[8] = {&o->g_a, &o->b_a, &o->g_kv, &o->b_kv, &o->gate_last, &o->g_c, &o->b_c, &o->gate_ctb};
    for (int i = 0; i < 8 && !rc; i++) {
      if (*bufs[i]) continue; /* given by the caller */
      *bufs[i] = be->alloc(be, sizeof(float) * (size_t)N * C);
      if (!*bufs[i]) {
        rc = px_fail(PX_ERR_NOMEM, "out of memory for the design cache");
        break;
      }
      *bytes += (int64_t)sizeof(float) * N * C;
    }
    if (rc) break;
    const px_adaln_w *ad[3] = {&B->ln_a, &B->ln_kv, &B->ctb_adaln}, *adh[3] = {&Bh->ln_a, &Bh->ln_kv, &Bh->ctb_adaln};
    float *gs[3] = {o->g_a, o->g_kv, o->g_c}, *bs[3] = {o->b_a, o->b_kv, o->b_c};
    for (int i = 0; i < 3; i++) {
      /* LN(c) * w then W equals LN(c) without its weight times W with w folded into its
       * columns: one normalization of c serves every AdaLN of every block. */
      for (int r = 0; r < C; r++)
        for (int j = 0; j < C; j++) {
          wfold[(size_t)r * C + j] = adh[i]->lin_s.w[(size_t)r * C + j] * adh[i]->ln_s_w[j];
          wfold[(size_t)(C + r) * C + j] = adh[i]->lin_nobias_s.w[(size_t)r * C + j] * adh[i]->ln_s_w[j];
        }
      /* On a device the copy is queued after the GEMMs that read the previous fold (one stream). */
      if (wf_dev) be->upload(be, wf_dev, wfold, sizeof(float) * 2 * (size_t)C * C);
      be->linear(be, N, C, C, cn, C, px_weight_f32(wf), ad[i]->lin_s.b, gs[i], C, 0, 0, PX_F32, PX_F32);
      be->activation(be, (int64_t)N * C, gs[i], PX_ACT_SIGMOID);
      be->linear(be, N, C, C, cn, C, px_weight_f32(wf + (size_t)C * C), NULL, bs[i], C, 0, 0, PX_F32, PX_F32);
      if (wf_dev && be->sync) be->sync(be); /* the host fold is rewritten next */
    }
    be->linear(be, N, C, C, c, C, px_lw(&B->a_last), B->a_last.b, o->gate_last, C, 0, 0, PX_F32, PX_F32);
    be->activation(be, (int64_t)N * C, o->gate_last, PX_ACT_SIGMOID);
    be->linear(be, N, C, C, c, C, px_lw(&B->ctb_s), B->ctb_s.b, o->gate_ctb, C, 0, 0, PX_F32, PX_F32);
    be->activation(be, (int64_t)N * C, o->gate_ctb, PX_ACT_SIGMOID);
  }
  if (wf_dev) {
    if (be->sync) be->sync(be);
    be->free(be, wf_dev);
  }
  free(wfold);
  return rc;
}

void px_atom_ref_single(px_backend *be, const px_atom_ref_w *w, const px_features *f, float *c) {
  be->atom_ref_embed(be, f->n_atom, w->f.out, f->ref_pos, f->ref_charge, f->ref_mask, f->ref_element, 128,
                     f->ref_atom_name_chars, 256, w->ref_pos.w, w->ref_charge.w, w->f.w, c);
}

/* The most head columns (over every block of the transformers given) one pair pass writes. */
#define PAIR_MAX_HEADS 256
/* The widest pair feature the backend's pass takes (backend.h atom_pair_bias; released: 16). */
#define PAIR_MAX_C 64

int px_atom_pair_bias_build(px_backend *be, const px_atom_ref_w *w, const px_features *f,
                            const float *c, const float *zproj, const px_transformer_w *const *tfs,
                            const px_transformer_w *const *tfs_host, px_atom_block_cache *const *caches, int n_tf,
                            float *p_out, int64_t *bytes) {
  const int N = f->n_atom, ca = w->cl.in, cp = w->d.out;
  const int n_trunks = (N + PX_ATOM_NQ - 1) / PX_ATOM_NQ;
  const int64_t P = (int64_t)n_trunks * PX_ATOM_NQ * PX_ATOM_NK;
  if (cp > PAIR_MAX_C || cp != tfs[0]->c_z)
    return px_fail(PX_ERR_INPUT, "atom pair width %d is not supported (at most %d, and the atom blocks' %d)", cp,
                   PAIR_MAX_C, tfs[0]->c_z);
  int nah = 0;
  for (int t = 0; t < n_tf; t++) nah += tfs[t]->n_blocks * tfs[t]->n_heads;
  if (nah > PAIR_MAX_HEADS)
    return px_fail(PX_ERR_INPUT, "the atom transformers have %d pair-bias heads in all; at most %d are supported", nah,
                   PAIR_MAX_HEADS);
  const size_t n_nah = (size_t)(nah > 0 ? nah : 1);
  float *wf = malloc(sizeof(float) * n_nah * cp + sizeof(float *) * n_nah); /* host: folded on the host */
  float *work = be->alloc(be, sizeof(float) * (size_t)N * (2 * cp + ca));
  if (!wf || !work) {
    free(wf);
    if (work) be->free(be, work);
    return px_fail(PX_ERR_NOMEM, "out of memory for the atom pair features (%d atoms)", N);
  }
  float *cl = work, *cm = cl + (size_t)N * cp, *rc = cm + (size_t)N * cp;
  float **bias = (float **)(void *)(wf + n_nah * cp);
  /* LN(p) * w_k then W_k equals LN(p) times W_k with w_k folded in: the heads of every
   * block (columns in transformer, block, head order) read one normalized row. */
  int col = 0;
  for (int t = 0; t < n_tf; t++)
    for (int k = 0; k < tfs[t]->n_blocks; k++) {
      float *plane = caches[t][k].pair_bias; /* given by the caller, or allocated here */
      if (!plane) {
        plane = be->alloc(be, sizeof(float) * (size_t)tfs[t]->n_heads * P);
        if (!plane) {
          free(wf);
          be->free(be, work);
          return px_fail(PX_ERR_NOMEM, "out of memory for the design cache");
        }
        caches[t][k].pair_bias = plane;
        *bytes += (int64_t)sizeof(float) * tfs[t]->n_heads * P;
      }
      const px_block_w *B = &tfs_host[t]->blocks[k];
      for (int hh = 0; hh < tfs[t]->n_heads; hh++, col++) {
        bias[col] = plane + (size_t)hh * P;
        for (int i = 0; i < cp; i++) wf[(size_t)col * cp + i] = B->z.w[(size_t)hh * cp + i] * B->ln_z_w[i];
      }
    }
  float *wf_own = NULL;
  const float *wf_be = in_backend(be, wf, (size_t)nah * cp, &wf_own);
  if (!wf_be) {
    free(wf);
    be->free(be, work);
    return PX_ERR_NOMEM;
  }
  be->copy(be, rc, c, sizeof(float) * (size_t)N * ca);
  be->activation(be, (int64_t)N * ca, rc, PX_ACT_RELU);
  be->linear(be, N, cp, ca, rc, ca, px_lw(&w->cl), NULL, cl, cp, 0, 0, PX_F32, PX_F32);
  be->linear(be, N, cp, ca, rc, ca, px_lw(&w->cm), NULL, cm, cp, 0, 0, PX_F32, PX_F32);
  be->atom_pair_bias(be, N, f->n_token, cp, PX_ATOM_NQ, PX_ATOM_NK, f->ref_pos, f->ref_space_uid, f->atom_to_token_idx,
                     cl, cm, zproj, w->d.w, w->invd.w, w->v.w, w->mlp1.w, w->mlp3.w, w->mlp5.w, nah, wf_be, bias,
                     p_out);
  if (be->sync) be->sync(be); /* queued work has read wf_be and the scratch */
  if (wf_own) be->free(be, wf_own);
  be->free(be, work);
  free(wf);
  return be->status ? be->status(be) : PX_OK;
}

/* The diffusion module's atom encoder weights, as the shared functions take them. */
static px_atom_ref_w model_ref_w(const px_model *m) {
  px_atom_ref_w w = {m->enc_ref_pos, m->enc_ref_charge, m->enc_f, m->enc_d, m->enc_invd, m->enc_v,
                     m->enc_cl, m->enc_cm, m->enc_mlp1, m->enc_mlp3, m->enc_mlp5};
  return w;
}

/* FNV-1a style mixing over 8-byte words: a pass over the inputs, cheap next to a call. */
static uint64_t mix_bytes(uint64_t h, const void *ptr, size_t nbytes) {
  const unsigned char *p = (const unsigned char *)ptr;
  size_t n = ptr ? nbytes : 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return (h ^ 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
}

uint64_t px_features_hash(const px_model *m, const px_features *f) {
  if (!m || !f) return 0;
  const px_dims *D = &m->dims;
  const size_t T = (size_t)(f->n_token > 0 ? f->n_token : 0), N = (size_t)(f->n_atom > 0 ? f->n_atom : 0);
  uint64_t h = 1469598103934665603ull ^ ((uint64_t)T << 32 | (uint32_t)N);
  h = mix_bytes(h, f->ref_pos, N * 3 * 4);
  h = mix_bytes(h, f->ref_charge, N * 4);
  h = mix_bytes(h, f->ref_mask, N * 4);
  h = mix_bytes(h, f->ref_element, N * 128 * 4);
  h = mix_bytes(h, f->ref_atom_name_chars, N * 256 * 4);
  h = mix_bytes(h, f->ref_space_uid, N * 8);
  h = mix_bytes(h, f->atom_to_token_idx, N * 8);
  h = mix_bytes(h, f->asym_id, T * 8);
  h = mix_bytes(h, f->residue_index, T * 8);
  h = mix_bytes(h, f->entity_id, T * 8);
  h = mix_bytes(h, f->token_index, T * 8);
  h = mix_bytes(h, f->sym_id, T * 8);
  h = mix_bytes(h, f->s_inputs, T * D->c_s_inputs * 4);
  h = mix_bytes(h, f->s_trunk, T * D->c_s * 4);
  h = mix_bytes(h, f->z_trunk, T * T * D->c_z * 4);
  return h;
}

uint64_t px_design_key(const px_design *d) { return d ? d->key : 0; }


/* ---- The design cache's stages, in the order px_design_create_probe runs them. Each is
 * a named function so that what the cache holds, and from what, reads stage by stage
 * (docs/spec.md's list of noise- and sample-independent terms). Every stage runs on the
 * backend it is given (the model's: the CPU, or the device the model is on), with its inputs
 * and outputs in that backend's memory: W is the model's weights there (the model itself, or
 * its device mirror), f the features there; host is the model in host memory, which folded
 * weights are made from. ---- */

/* s0 = Lin_s(LN([s_trunk, s_inputs])) [T, c_s]: the token conditioning before the noise
 * level's term (each call adds that term to s0, docs/spec.md Algorithm 21).
 * scratch: T * (c_s + c_s_inputs) floats. */
static void stage_s0(px_backend *be, const px_model *W, const px_features *f, float *scratch, float *s0) {
  const px_dims *D = &W->dims;
  const int T = f->n_token, cs = D->c_s, cc = cs + D->c_s_inputs;
  float *cat = scratch;
  be->copy_cols(be, T, cs, f->s_trunk, cs, cat, cc);
  be->copy_cols(be, T, D->c_s_inputs, f->s_inputs, D->c_s_inputs, cat + cs, cc);
  be->layernorm(be, T, cc, cat, W->cond_ln_s_w, NULL, cat);
  be->linear(be, T, cs, cc, cat, cc, px_lw(&W->cond_s), NULL, s0, cs, 0, 0, PX_F32, PX_F32);
}

/* pair_z = Lin_z(LN([z_trunk, relpe])) then two Transitions [T*T, c_z]: the pair
 * conditioning every token block's pair bias and the encoder's z projection come from. In
 * PAIR_CHUNK rows at a time (bounds the [rows, 2 c_z] concatenation at large T).
 * scratch: PAIR_CHUNK * 8 * c_z floats (the Transitions' share is the larger). */
static void stage_pair_z(px_backend *be, const px_model *W, const px_features *f, float *scratch, float *pair_z) {
  const int T = f->n_token, cz = W->dims.c_z;
  const int64_t TT = (int64_t)T * T;
  for (int64_t r0 = 0; r0 < TT; r0 += PAIR_CHUNK) {
    int rows = (int)(TT - r0 < PAIR_CHUNK ? TT - r0 : PAIR_CHUNK);
    float *cat = scratch;
    /* relpe's one-hot classes: residue and token offsets clipped at 32, chain (sym) offsets
     * at 2 (docs/spec.md, Algorithm 3), W [cz, 2 * 66 + 1 + 6]. */
    be->copy_cols(be, rows, cz, f->z_trunk + (size_t)r0 * cz, cz, cat, 2 * cz);
    be->relpos_linear(be, T, r0, rows, cz, 32, 2, f->asym_id, f->residue_index, f->entity_id, f->token_index,
                      f->sym_id, W->relpe.w, cat + cz, 2 * cz);
    be->layernorm(be, rows, 2 * cz, cat, W->cond_ln_z_w, NULL, cat);
    be->linear(be, rows, cz, 2 * cz, cat, 2 * cz, px_lw(&W->cond_z), NULL, pair_z + (size_t)r0 * cz, cz, 0, 0,
               PX_F32, PX_F32);
  }
  transition_add(be, &W->tr_z1, TT, cz, pair_z, scratch);
  transition_add(be, &W->tr_z2, TT, cz, pair_z, scratch);
}

/* The token blocks' pair biases rounded to fp16 (d->tok_pair_bias16), when the model's
 * calls run the fp16-input full attention (the FP16 precision, on a backend with
 * attention_full_h16) and the backend can make the copy: the attention then copies half the
 * bias bytes through shared memory (docs/benchmarks.md, GPU round eight). Rounding a bias to
 * fp16 is a relative error of at most 2^-11, the rounding Q and K already take in those blocks;
 * a bias of magnitude above 2^15 (or NaN) would not survive it, so then no block gets a copy
 * (the fp32 biases serve every block). 0 or a px_status code. */
static int stage_token_bias16(px_backend *be, const px_model *m, int T, px_design *d) {
  const px_transformer_w *tt = &m->tok_tf;
  if (m->precision != PX_PRECISION_FP16 || !m->be || !m->be->attention_full_h16 || !be->convert_rows || !be->max_abs ||
      tt->n_blocks <= 0)
    return PX_OK;
  const int64_t TT = (int64_t)T * T, HT = (int64_t)tt->n_heads * T;
  float *amax = malloc(sizeof(float) * (size_t)tt->n_blocks);
  if (!amax) return px_fail(PX_ERR_NOMEM, "out of memory");
  be->max_abs(be, tt->n_blocks, tt->n_heads * TT, d->tok_pair_bias, amax);
  int ok = 1;
  for (int k = 0; k < tt->n_blocks; k++) ok = ok && amax[k] <= 32768.0f; /* false for NaN */
  free(amax);
  int rc = be->status ? be->status(be) : PX_OK;
  if (rc || !ok) return rc;
  /* rows padded to whole 16-byte chunks (to 128-byte lines the kernel was 3% faster alone, the
   * call no faster, for up to a quarter more bytes: docs/benchmarks.md, GPU round eight) */
  const int ldb = (T + 7) / 8 * 8;
  const size_t bytes = sizeof(uint16_t) * (size_t)tt->n_blocks * (size_t)HT * (size_t)ldb;
  d->tok_pair_bias16 = be->alloc(be, bytes);
  if (!d->tok_pair_bias16)
    return px_fail(PX_ERR_NOMEM, "out of memory for the pair biases' fp16 copy (%d tokens) on %s", T, be->name);
  be->convert_rows(be, tt->n_blocks * HT, T, d->tok_pair_bias, T, d->tok_pair_bias16, ldb, PX_F16);
  d->tok_bias16_ld = ldb;
  d->bytes += (int64_t)bytes;
  return PX_OK;
}

/* Every token block's pair bias [n_blocks, H, T, T] and the encoder's z projection zproj
 * [T, T, c_atompair], from LN(pair_z): LN(z) * w_k then W_k equals LN(z) times W_k with w_k
 * folded in, so one GEMM serves all blocks (rows k*H+h) plus the encoder's projection (the
 * last cp rows); pair_z is read once. The GEMM's rows go to the planes column by column
 * (copy_cols of width 1: a strided gather). scratch: PAIR_CHUNK * (2 c_z + n_blocks * H + cp)
 * floats. */
static int stage_token_pair_biases(px_backend *be, const px_model *host, int T, const float *pair_z, float *scratch,
                                   float *tok_pair_bias, float *zproj) {
  const px_transformer_w *tt = &host->tok_tf;
  const int cz = host->dims.c_z, cp = host->dims.c_atompair, H = tt->n_heads, nbh = tt->n_blocks * H;
  const int64_t TT = (int64_t)T * T;
  const int nout = nbh + cp;
  float *wf = malloc(sizeof(float) * (size_t)nout * cz); /* host: folded from the host weights */
  if (!wf) return px_fail(PX_ERR_NOMEM, "out of memory for the design cache");
  for (int k = 0; k < tt->n_blocks; k++)
    for (int h = 0; h < H; h++)
      for (int c = 0; c < cz; c++)
        wf[((size_t)k * H + h) * cz + c] = tt->blocks[k].z.w[(size_t)h * cz + c] * tt->blocks[k].ln_z_w[c];
  for (int o = 0; o < cp; o++)
    for (int c = 0; c < cz; c++)
      wf[((size_t)nbh + o) * cz + c] = host->enc_z.w[(size_t)o * cz + c] * host->enc_ln_z_w[c];
  float *wf_own = NULL;
  const float *wf_be = in_backend(be, wf, (size_t)nout * cz, &wf_own);
  if (!wf_be) {
    free(wf);
    return PX_ERR_NOMEM;
  }
  for (int64_t r0 = 0; r0 < TT; r0 += PAIR_CHUNK) {
    int rows = (int)(TT - r0 < PAIR_CHUNK ? TT - r0 : PAIR_CHUNK);
    float *zn = scratch, *o = scratch + (size_t)PAIR_CHUNK * 2 * cz;
    be->layernorm(be, rows, cz, pair_z + (size_t)r0 * cz, NULL, NULL, zn);
    be->linear(be, rows, nout, cz, zn, cz, px_weight_f32(wf_be), NULL, o, nout, 0, 0, PX_F32, PX_F32);
    for (int kh = 0; kh < nbh; kh++) be->copy_cols(be, rows, 1, o + kh, nout, tok_pair_bias + (size_t)kh * TT + r0, 1);
    be->copy_cols(be, rows, cp, o + nbh, nout, zproj + (size_t)r0 * cp, cp);
  }
  if (be->sync) be->sync(be);
  if (wf_own) be->free(be, wf_own);
  free(wf);
  return PX_OK;
}

/* atom_to_token and 1/atoms per token (0 for a token without atoms): what the atom <-> token
 * maps of every call read. Host memory (from the host features; then uploaded). */
static void stage_atom_index(const px_features *f, int64_t *atom_to_token, float *inv_count) {
  const int T = f->n_token, N = f->n_atom;
  for (int t = 0; t < T; t++) inv_count[t] = 0.0f;
  for (int n = 0; n < N; n++) {
    atom_to_token[n] = f->atom_to_token_idx[n];
    inv_count[f->atom_to_token_idx[n]] += 1.0f;
  }
  for (int t = 0; t < T; t++) inv_count[t] = inv_count[t] > 0 ? 1.0f / inv_count[t] : 0.0f;
}

/* The encoder's c [N, c_atom]: the reference features' single embedding, plus its token's
 * Lin_s(LN(s_trunk)) broadcast to every atom (the encoder's s-term: the trunk is given, so
 * it is per design). scratch: T * (c_s + c_atom) floats. */
static void stage_encoder_c(px_backend *be, const px_model *W, const px_atom_ref_w *ref_w, const px_features *f,
                            const int64_t *atom_to_token, float *scratch, float *c) {
  const int T = f->n_token, N = f->n_atom, cs = W->dims.c_s, ca = W->dims.c_atom;
  px_atom_ref_single(be, ref_w, f, c);
  float *sn = scratch, *st = scratch + (size_t)T * cs;
  be->layernorm(be, T, cs, f->s_trunk, W->enc_ln_s_w, NULL, sn);
  be->linear(be, T, ca, cs, sn, cs, px_lw(&W->enc_s), NULL, st, ca, 0, 0, PX_F32, PX_F32);
  be->tokens_to_atoms_add(be, 1, N, T, ca, 1, st, atom_to_token, c);
}

/* The atom pair pass (encoder p, in trunk layout [n_trunks, 32, 128, cp], written to p only
 * for a probe) and every atom block's pair bias from LN(p), for the encoder's and the
 * decoder's transformers in one pass over the pairs (be's atom_pair_bias). */
static int stage_atom_pair_biases(px_backend *be, const px_model *W, const px_model *host, const px_atom_ref_w *ref_w,
                                  const px_features *f, px_design *d, const float *zproj, float *p) {
  const px_transformer_w *tfs[2] = {&W->enc_tf, &W->dec_tf}, *tfs_host[2] = {&host->enc_tf, &host->dec_tf};
  px_atom_block_cache *caches[2] = {d->enc, d->dec};
  return px_atom_pair_bias_build(be, ref_w, f, d->c, zproj, tfs, tfs_host, caches, 2, p, &d->bytes);
}

/* The atom blocks' s-side AdaLN and gate terms (s = c, the same at every call) for the
 * encoder's and the decoder's transformers. scratch: N * c_atom floats. */
static int stage_atom_block_terms(px_backend *be, const px_model *W, const px_model *host, px_design *d,
                                  float *scratch) {
  int rc = px_atom_block_cache_build(be, &W->enc_tf, &host->enc_tf, d->N, d->c, scratch, d->enc, &d->bytes);
  if (!rc) rc = px_atom_block_cache_build(be, &W->dec_tf, &host->dec_tf, d->N, d->c, scratch, d->dec, &d->bytes);
  return rc;
}

/* ---- features in backend memory ---- */

/* The features the stages read, copied into be's memory: *fb gets f's sizes and pointers to
 * the copies (all in one buffer, *block, which the caller frees with be). On a backend of host
 * memory, f itself (nothing copied, *block NULL). */
static int features_to_backend(px_backend *be, const px_model *m, const px_features *f, px_features *fb,
                               void **block) {
  *fb = *f;
  *block = NULL;
  if (!be->device_memory) return PX_OK;
  const px_dims *D = &m->dims;
  const size_t T = (size_t)f->n_token, N = (size_t)f->n_atom;
  struct { const void *src; size_t bytes; const void **dst; } parts[] = {
      {f->s_inputs, 4 * T * D->c_s_inputs, (const void **)&fb->s_inputs},
      {f->s_trunk, 4 * T * D->c_s, (const void **)&fb->s_trunk},
      {f->z_trunk, 4 * T * T * D->c_z, (const void **)&fb->z_trunk},
      {f->ref_pos, 4 * N * 3, (const void **)&fb->ref_pos},
      {f->ref_charge, 4 * N, (const void **)&fb->ref_charge},
      {f->ref_mask, 4 * N, (const void **)&fb->ref_mask},
      {f->ref_element, 4 * N * 128, (const void **)&fb->ref_element},
      {f->ref_atom_name_chars, 4 * N * 256, (const void **)&fb->ref_atom_name_chars},
      {f->ref_space_uid, 8 * N, (const void **)&fb->ref_space_uid},
      {f->atom_to_token_idx, 8 * N, (const void **)&fb->atom_to_token_idx},
      {f->asym_id, 8 * T, (const void **)&fb->asym_id},
      {f->residue_index, 8 * T, (const void **)&fb->residue_index},
      {f->entity_id, 8 * T, (const void **)&fb->entity_id},
      {f->token_index, 8 * T, (const void **)&fb->token_index},
      {f->sym_id, 8 * T, (const void **)&fb->sym_id}};
  const size_t n_parts = sizeof parts / sizeof parts[0];
  size_t total = 0;
  for (size_t i = 0; i < n_parts; i++) total += (parts[i].bytes + 255) & ~(size_t)255;
  char *buf = be->alloc(be, total);
  if (!buf) return PX_ERR_NOMEM; /* the alloc op has said why */
  size_t at = 0;
  for (size_t i = 0; i < n_parts; i++) {
    be->upload(be, buf + at, parts[i].src, parts[i].bytes);
    *parts[i].dst = buf + at;
    at += (parts[i].bytes + 255) & ~(size_t)255;
  }
  *block = buf;
  return PX_OK;
}

/* A probe's view of n floats in be's memory (downloaded into host memory when they are not
 * there); NULL when out of host memory (that probe is skipped, as a probe only observes). */
static void probe_be(px_backend *be, px_probe_fn probe, void *user, const char *name, const float *x, int64_t n) {
  if (!be->device_memory) {
    probe(user, name, x, n);
    return;
  }
  float *h = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!h) return;
  be->download(be, h, x, sizeof(float) * (size_t)n);
  probe(user, name, h, n);
  free(h);
}

int px_design_create(const px_model *m, const px_features *f, px_design **out) {
  return px_design_create_probe(m, f, NULL, NULL, out);
}

int px_design_create_probe(const px_model *m, const px_features *f, px_probe_fn probe, void *user,
                           px_design **out) {
  if (!out) return px_fail(PX_ERR_INPUT, "px_design_create: NULL output");
  *out = NULL;
  int rc = validate(m, f);
  if (rc) return rc;
  /* The cache is built where the model computes: on the CPU, or on the model's device, there
   * in exact fp32 (the fp32 view of the model's context: the cache feeds every call of the
   * design, and the CPU builds it in fp32); its calls then run on the model's own view. */
  const int on_device = m->device == PX_DEVICE_CUDA && m->cuda_mirror;
  px_backend *be = px_model_cpu(m); /* the handle's CPU context: its thread count */
  if (on_device) {
    be = m->be->at_precision ? m->be->at_precision(m->be, PX_PRECISION_FP32) : m->be;
    if (!be) return px_fail(PX_ERR_BACKEND, "%s has no fp32 view for the design cache", m->be->name);
  }
  const px_model *W = on_device ? m->cuda_mirror : m; /* the weights in be's memory */
  const px_dims *D = &m->dims;
  const int T = f->n_token, N = f->n_atom;
  const int cs = D->c_s, cz = D->c_z, ca = D->c_atom, cp = D->c_atompair;
  const int n_trunks = (N + PX_ATOM_NQ - 1) / PX_ATOM_NQ;
  const int64_t TT = (int64_t)T * T;
  const int64_t P = (int64_t)n_trunks * PX_ATOM_NQ * PX_ATOM_NK; /* pair rows, trunk layout */

  px_design *d = calloc(1, sizeof *d);
  if (!d) return px_fail(PX_ERR_NOMEM, "out of memory");
  d->T = T;
  d->N = N;
  d->n_trunks = n_trunks;
  d->be = on_device ? m->be : be;
  d->W = W;
  d->model_id = m;
  d->precision = m->precision;
  d->key = px_features_hash(m, f);
  const px_transformer_w *tt = &m->tok_tf, *te = &m->enc_tf, *td = &m->dec_tf;
  const int nbh = tt->n_blocks * tt->n_heads;

  /* Scratch: the largest of the stages' (each stage's comment says its share). */
  size_t scratch_n = (size_t)PAIR_CHUNK * (2 * cz + 4 * 2 * cz + 2 * cz);
  size_t s2 = (size_t)PAIR_CHUNK * (2 * cz) + (size_t)PAIR_CHUNK * (nbh + cp);
  if (s2 > scratch_n) scratch_n = s2;
  size_t s3 = (size_t)(cs + D->c_s_inputs) * T + (size_t)T * ca;
  if (s3 > scratch_n) scratch_n = s3;
  size_t s4 = (size_t)N * ca * 2 + (size_t)N * cp * 2;
  if (s4 > scratch_n) scratch_n = s4;
  px_features fb;
  void *fblock = NULL;
  float *scratch = NULL, *pair_z = NULL, *zproj = NULL, *p = NULL;
  int64_t *a2t_h = NULL;
  float *inv_h = NULL;
  rc = features_to_backend(be, m, f, &fb, &fblock);
  if (rc) goto done;
  scratch = be->alloc(be, sizeof(float) * scratch_n);
  pair_z = be->alloc(be, sizeof(float) * (size_t)TT * cz);
  zproj = be->alloc(be, sizeof(float) * (size_t)TT * cp);
  p = probe ? be->alloc(be, sizeof(float) * (size_t)P * cp) : NULL; /* only a probe reads p */
  a2t_h = malloc(sizeof(int64_t) * (size_t)N);
  inv_h = malloc(sizeof(float) * (size_t)T);
  d->s0 = malloc(sizeof(float) * (size_t)T * cs); /* host: the CPU's calls read it there */
  if (on_device) d->s0_dev = be->alloc(be, sizeof(float) * (size_t)T * cs); /* a device's calls read it */
  d->tok_pair_bias = be->alloc(be, sizeof(float) * (size_t)nbh * TT);
  d->c = be->alloc(be, sizeof(float) * (size_t)N * ca);
  d->enc = calloc((size_t)te->n_blocks, sizeof(px_atom_block_cache));
  d->dec = calloc((size_t)td->n_blocks, sizeof(px_atom_block_cache));
  /* The cache lengths, so that px_design_free needs no model (and works on any error path). */
  d->enc_blocks_hint = te->n_blocks;
  d->dec_blocks_hint = td->n_blocks;
  d->atom_to_token = be->alloc(be, sizeof(int64_t) * (size_t)N);
  d->inv_count = be->alloc(be, sizeof(float) * (size_t)T);
  if (!scratch || !pair_z || !zproj || (probe && !p) || !a2t_h || !inv_h || !d->s0 || (on_device && !d->s0_dev) ||
      !d->tok_pair_bias || !d->c || !d->enc || !d->dec || !d->atom_to_token || !d->inv_count) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory building the design cache (%d tokens, %d atoms) on %s", T, N, be->name);
    goto done;
  }
  d->bytes = (int64_t)sizeof(float) * ((int64_t)T * cs + (int64_t)nbh * TT + (int64_t)N * ca + T) +
             (int64_t)sizeof(int64_t) * N;

  float *s0 = on_device ? d->s0_dev : d->s0;
  stage_s0(be, W, &fb, scratch, s0);
  if (on_device) be->download(be, d->s0, s0, sizeof(float) * (size_t)T * cs);
  stage_pair_z(be, W, &fb, scratch, pair_z);
  if (probe) {
    probe(user, "s0", d->s0, (int64_t)T * cs);
    probe_be(be, probe, user, "pair_z", pair_z, TT * cz);
  }
  rc = stage_token_pair_biases(be, m, T, pair_z, scratch, d->tok_pair_bias, zproj);
  if (rc) goto done;
  rc = stage_token_bias16(be, m, T, d);
  if (rc) goto done;
  be->free(be, pair_z);
  pair_z = NULL;
  stage_atom_index(f, a2t_h, inv_h);
  be->upload(be, d->atom_to_token, a2t_h, sizeof(int64_t) * (size_t)N);
  be->upload(be, d->inv_count, inv_h, sizeof(float) * (size_t)T);
  const px_atom_ref_w ref_w = model_ref_w(W);
  stage_encoder_c(be, W, &ref_w, &fb, d->atom_to_token, scratch, d->c);
  rc = stage_atom_pair_biases(be, W, m, &ref_w, &fb, d, zproj, probe ? p : NULL);
  if (rc) goto done;
  be->free(be, zproj);
  zproj = NULL;
  if (probe) {
    probe_be(be, probe, user, "c", d->c, (int64_t)N * ca);
    probe_be(be, probe, user, "p", p, P * cp);
  }
  rc = stage_atom_block_terms(be, W, m, d, scratch);

done:
  if (be->sync) be->sync(be); /* queued work has read the features, the scratch and the host index arrays */
  if (!rc && be->status) rc = be->status(be);
  if (scratch) be->free(be, scratch);
  if (pair_z) be->free(be, pair_z);
  if (zproj) be->free(be, zproj);
  if (p) be->free(be, p);
  if (fblock) be->free(be, fblock);
  free(a2t_h);
  free(inv_h);
  if (rc) {
    px_design_free(d);
    return rc;
  }
  *out = d;
  return PX_OK;
}

static void free_atom_caches(px_backend *be, px_atom_block_cache *c, int n) {
  if (!c) return;
  for (int k = 0; k < n; k++) {
    float *bufs[9] = {c[k].g_a, c[k].b_a, c[k].g_kv, c[k].b_kv, c[k].gate_last,
                      c[k].g_c, c[k].b_c, c[k].gate_ctb, c[k].pair_bias};
    for (int i = 0; i < 9; i++)
      if (bufs[i]) be->free(be, bufs[i]);
  }
  free(c);
}

void px_design_free(px_design *d) {
  if (!d) return;
  px_backend *be = d->be;
  free(d->s0);
  if (d->s0_dev) be->free(be, d->s0_dev);
  if (d->tok_pair_bias) be->free(be, d->tok_pair_bias);
  if (d->tok_pair_bias16) be->free(be, d->tok_pair_bias16);
  if (d->c) be->free(be, d->c);
  free_atom_caches(be, d->enc, d->enc_blocks_hint);
  free_atom_caches(be, d->dec, d->dec_blocks_hint);
  if (d->atom_to_token) be->free(be, d->atom_to_token);
  if (d->inv_count) be->free(be, d->inv_count);
  if (d->graph) be->graph_free(be, d->graph);
  if (d->ws) be->free(be, d->ws);
  if (d->host) {
    if (be->host_free) be->host_free(be, d->host);
    else free(d->host);
  }
  free(d);
}

int64_t px_design_bytes(const px_design *d) { return d ? d->bytes : 0; }

int px_design_n_atoms(const px_design *d) { return d ? d->N : 0; }
int px_design_n_tokens(const px_design *d) { return d ? d->T : 0; }
