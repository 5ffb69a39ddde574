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

/* relpe one-hot classes (docs/spec.md, Algorithm 3). */
static inline int clampi(int64_t v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : (int)v); }

/* ---- the atom encoder's per-design work, shared with the design condition embedder
 * (model/embedder.c: the same AtomAttentionEncoder without coordinates) ---- */

int px_atom_block_cache_build(px_backend *be, const px_transformer_w *tf, int N, const float *c,
                              float *scratch, px_atom_block_cache *out, int64_t *bytes) {
  const int C = tf->c;
  float *wfold = malloc(sizeof(float) * 2 * (size_t)C * C);
  if (!wfold) return px_fail(PX_ERR_NOMEM, "out of memory for the design cache");
  float *cn = scratch;
  be->layernorm(be, N, C, c, NULL, NULL, cn);
  for (int k = 0; k < tf->n_blocks; k++) {
    const px_block_w *B = &tf->blocks[k];
    px_atom_block_cache *o = &out[k];
    float **bufs[8] = {&o->g_a, &o->b_a, &o->g_kv, &o->b_kv, &o->gate_last, &o->g_c, &o->b_c, &o->gate_ctb};
    for (int i = 0; i < 8; i++) {
      if (*bufs[i]) continue; /* given by the caller */
      *bufs[i] = be->alloc(be, sizeof(float) * (size_t)N * C);
      if (!*bufs[i]) {
        free(wfold);
        return px_fail(PX_ERR_NOMEM, "out of memory for the design cache");
      }
      *bytes += (int64_t)sizeof(float) * N * C;
    }
    const px_adaln_w *ad[3] = {&B->ln_a, &B->ln_kv, &B->ctb_adaln};
    float *gs[3] = {o->g_a, o->g_kv, o->g_c}, *bs[3] = {o->b_a, o->b_kv, o->b_c};
    for (int i = 0; i < 3; i++) {
      /* LN(c) * w then W equals LN(c) without its weight times W with w folded into its
       * columns: one normalization of c serves every AdaLN of every block. */
      for (int r = 0; r < C; r++)
        for (int j = 0; j < C; j++) {
          wfold[(size_t)r * C + j] = ad[i]->lin_s.w[(size_t)r * C + j] * ad[i]->ln_s_w[j];
          wfold[(size_t)(C + r) * C + j] = ad[i]->lin_nobias_s.w[(size_t)r * C + j] * ad[i]->ln_s_w[j];
        }
      be->linear(be, N, C, C, cn, C, px_weight_f32(wfold), ad[i]->lin_s.b, gs[i], C, 0, 0, PX_F32, PX_F32);
      be->activation(be, (int64_t)N * C, gs[i], PX_ACT_SIGMOID);
      be->linear(be, N, C, C, cn, C, px_weight_f32(wfold + (size_t)C * C), NULL, bs[i], C, 0, 0, PX_F32, PX_F32);
    }
    be->linear(be, N, C, C, c, C, px_lw(&B->a_last), B->a_last.b, o->gate_last, C, 0, 0, PX_F32, PX_F32);
    be->activation(be, (int64_t)N * C, o->gate_last, PX_ACT_SIGMOID);
    be->linear(be, N, C, C, c, C, px_lw(&B->ctb_s), B->ctb_s.b, o->gate_ctb, C, 0, 0, PX_F32, PX_F32);
    be->activation(be, (int64_t)N * C, o->gate_ctb, PX_ACT_SIGMOID);
  }
  free(wfold);
  return PX_OK;
}

void px_atom_ref_single(const px_atom_ref_w *w, const px_features *f, float *c) {
  const int N = f->n_atom, ca = w->f.out, cf = w->f.in;
  /* linear_no_bias_f over [ref_mask, ref_element, ref_atom_name_chars] as sums over the
   * one-hot rows, without building the [N, 385] feature matrix. */
#pragma omp parallel for num_threads(px_num_threads()) schedule(static)
  for (int n = 0; n < N; n++) {
    float *cr = c + (size_t)n * ca;
    const float *pos = f->ref_pos + (size_t)n * 3;
    const float ch = asinhf(f->ref_charge[n]);
    const float *el = f->ref_element + (size_t)n * 128;
    const float *nc = f->ref_atom_name_chars + (size_t)n * 256;
    /* The row's nonzero columns, in order: a one-hot row has 5 of 384, and a term w * 0
     * adds nothing to a finite sum, so summing only these (in the same order) gives the same
     * float as the whole dot product at a hundredth of the work. */
    int nzi[384];
    float nzv[384];
    int nz = 0;
    for (int e = 0; e < 128; e++)
      if (el[e] != 0.0f) nzi[nz] = 1 + e, nzv[nz++] = el[e];
    for (int e = 0; e < 256; e++)
      if (nc[e] != 0.0f) nzi[nz] = 129 + e, nzv[nz++] = nc[e];
    for (int o = 0; o < ca; o++) {
      const float *wp = w->ref_pos.w + (size_t)o * 3;
      float a = wp[0] * pos[0] + wp[1] * pos[1] + wp[2] * pos[2];
      float b = w->ref_charge.w[o] * ch;
      const float *wfr = w->f.w + (size_t)o * cf;
      float s = wfr[0] * f->ref_mask[n];
      for (int k = 0; k < nz; k++) s += wfr[nzi[k]] * nzv[k];
      cr[o] = (a + b + s) * f->ref_mask[n];
    }
  }
}

/* Rows of pair features handled together by the fused pair pass (8 or 16, below): its inner
 * loops run across these rows (channel-major tiles), which the compiler turns into vector code. */
/* The widest pair feature the fused pass holds in its tiles (released: c_atompair = 16). */
#define PAIR_MAX_C 64
/* The most head columns (over every block of the transformers given) one pass writes. */
#define PAIR_MAX_HEADS 256

typedef struct {
  const px_atom_ref_w *w;
  const px_features *f;
  /* Key-side inputs channel-major over padded atoms: atom a at index a + pad; the pads hold
   * what the reference gives a key outside [0, N): position 0, space uid 0, token 0, no c. */
  const float *kx, *ky, *kz, *kcm; /* [3][Np], [cp][Np] */
  const int64_t *kuid, *ktok;      /* [Np] */
  int pad, Np;
  const float *cl, *zproj; /* [N, cp], [T, T, cp] or NULL */
  const float *wf;              /* [nah, cp]: every head's Lin_z with its LN weight folded in */
  float **bias;                 /* [nah]: head column -> its [P] plane in the cache */
  float *p_out;                 /* p itself when asked for (a probe), else NULL */
  int64_t P;
  int N, T, cp, nah;
} pair_pass;

/* The tile at 8 rows (AVX2: one register per channel; everywhere), and on x86 at 16 rows for
 * CPUs with AVX-512 (one register per channel: half the broadcasts and instructions per row;
 * chosen at run time, PXDIFF_CPU_PAIR=generic forces 8 rows; the same bits either way). */
#define PT_TILE 8
#define PT_NAME(x) x##_8
#define PT_ATTR
#include "model/pair_tile.inc"
#undef PT_TILE
#undef PT_NAME
#undef PT_ATTR
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && defined(__AVX2__)
#define PAIR_WIDE 1
#if defined(__clang__)
#define PT_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#else
#define PT_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma,tune=generic")))
#endif
#define PT_TILE 16
#define PT_NAME(x) x##_16
#include "model/pair_tile.inc"
#undef PT_TILE
#undef PT_NAME
#undef PT_ATTR
#else
#define PAIR_WIDE 0
#endif

/* 16-row tiles: built, the CPU has AVX-512, and not PXDIFF_CPU_PAIR=generic. */
static int pair_wide(void) {
#if PAIR_WIDE
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
    return 0;
  const char *e = getenv("PXDIFF_CPU_PAIR");
  return !(e && strcmp(e, "generic") == 0);
#else
  return 0;
#endif
}

int px_atom_pair_bias_build(px_backend *be, const px_atom_ref_w *w, const px_features *f, const float *c,
                            const float *zproj, const px_transformer_w *const *tfs,
                            px_atom_block_cache *const *caches, int n_tf, float *p_out, int64_t *bytes) {
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
  float *scratch = malloc(sizeof(float) * ((size_t)N * (2 * cp + ca) + n_nah * cp) + sizeof(float *) * n_nah);
  if (!scratch) return px_fail(PX_ERR_NOMEM, "out of memory for the atom pair features (%d atoms)", N);
  float *cl = scratch, *cm = cl + (size_t)N * cp, *rc = cm + (size_t)N * cp, *wf = rc + (size_t)N * ca;
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
          free(scratch);
          return px_fail(PX_ERR_NOMEM, "out of memory for the design cache");
        }
        caches[t][k].pair_bias = plane;
        *bytes += (int64_t)sizeof(float) * tfs[t]->n_heads * P;
      }
      for (int hh = 0; hh < tfs[t]->n_heads; hh++, col++) {
        bias[col] = plane + (size_t)hh * P;
        for (int i = 0; i < cp; i++)
          wf[(size_t)col * cp + i] = tfs[t]->blocks[k].z.w[(size_t)hh * cp + i] * tfs[t]->blocks[k].ln_z_w[i];
      }
    }
  memcpy(rc, c, sizeof(float) * (size_t)N * ca);
  be->activation(be, (int64_t)N * ca, rc, PX_ACT_RELU);
  be->linear(be, N, cp, ca, rc, ca, px_lw(&w->cl), NULL, cl, cp, 0, 0, PX_F32, PX_F32);
  be->linear(be, N, cp, ca, rc, ca, px_lw(&w->cm), NULL, cm, cp, 0, 0, PX_F32, PX_F32);
  /* The key side, channel-major and padded (pair_pass). */
  const int pad = (PX_ATOM_NK - PX_ATOM_NQ) / 2, Np = n_trunks * PX_ATOM_NQ + 2 * pad;
  float *kf = calloc((size_t)Np * (3 + cp), sizeof(float));
  int64_t *ki = calloc((size_t)Np * 2, sizeof(int64_t));
  if (!kf || !ki) {
    free(kf);
    free(ki);
    free(scratch);
    return px_fail(PX_ERR_NOMEM, "out of memory for the atom pair features (%d atoms)", N);
  }
  for (int a = 0; a < N; a++) {
    for (int d = 0; d < 3; d++) kf[(size_t)d * Np + pad + a] = f->ref_pos[(size_t)a * 3 + d];
    for (int o = 0; o < cp; o++) kf[(size_t)(3 + o) * Np + pad + a] = cm[(size_t)a * cp + o];
    ki[pad + a] = f->ref_space_uid[a];
    ki[Np + pad + a] = f->atom_to_token_idx[a];
  }
  const pair_pass pp = {w, f, kf, kf + Np, kf + 2 * (size_t)Np, kf + 3 * (size_t)Np, ki, ki + Np, pad, Np,
                        cl, zproj, wf, bias, p_out, P, N, f->n_token, cp, nah};
  const int wide = pair_wide(), tile = wide ? 16 : 8;
  const int64_t n_tiles = P / tile;
#pragma omp parallel for num_threads(px_num_threads()) schedule(static)
  for (int64_t t = 0; t < n_tiles; t++) {
#if PAIR_WIDE
    if (wide) {
      pair_tile_16(&pp, t * tile);
      continue;
    }
#endif
    pair_tile_8(&pp, t * tile);
  }
  free(kf);
  free(ki);
  free(scratch);
  return PX_OK;
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

int px_design_create(const px_model *m, const px_features *f, px_design **out) {
  return px_design_create_probe(m, f, NULL, NULL, out);
}

/* ---- The design cache's stages, in the order px_design_create_probe runs them. Each is
 * a named function so that what the cache holds, and from what, reads stage by stage
 * (docs/spec.md's list of noise- and sample-independent terms); each runs on the backend it
 * is given, with inputs and outputs in that backend's memory. ---- */

/* s0 = Lin_s(LN([s_trunk, s_inputs])) [T, c_s]: the token conditioning before the noise
 * level's term (each call adds that term to s0, docs/spec.md Algorithm 21).
 * scratch: T * (c_s + c_s_inputs) floats. */
static void stage_s0(px_backend *be, const px_model *m, const px_features *f, float *scratch, float *s0) {
  const px_dims *D = &m->dims;
  const int T = f->n_token, cs = D->c_s, cc = cs + D->c_s_inputs;
  float *cat = scratch;
  for (int t = 0; t < T; t++) {
    memcpy(cat + (size_t)t * cc, f->s_trunk + (size_t)t * cs, sizeof(float) * cs);
    memcpy(cat + (size_t)t * cc + cs, f->s_inputs + (size_t)t * D->c_s_inputs, sizeof(float) * D->c_s_inputs);
  }
  be->layernorm(be, T, cc, cat, m->cond_ln_s_w, NULL, cat);
  be->linear(be, T, cs, cc, cat, cc, px_lw(&m->cond_s), NULL, s0, cs, 0, 0, PX_F32, PX_F32);
}

/* pair_z = Lin_z(LN([z_trunk, relpe])) then two Transitions [T*T, c_z]: the pair
 * conditioning every token block's pair bias and the encoder's z projection come from. In
 * PAIR_CHUNK rows at a time (bounds the [rows, 2 c_z] concatenation at large T).
 * scratch: PAIR_CHUNK * 8 * c_z floats (the Transitions' share is the larger). */
static void stage_pair_z(px_backend *be, const px_model *m, const px_features *f, float *scratch, float *pair_z) {
  const int T = f->n_token, cz = m->dims.c_z;
  const int64_t TT = (int64_t)T * T;
  for (int64_t r0 = 0; r0 < TT; r0 += PAIR_CHUNK) {
    int rows = (int)(TT - r0 < PAIR_CHUNK ? TT - r0 : PAIR_CHUNK);
    float *cat = scratch;
    const float *W = m->relpe.w; /* [cz, 139] */
#pragma omp parallel for num_threads(px_num_threads()) schedule(static)
    for (int r = 0; r < rows; r++) {
      int64_t ij = r0 + r;
      int i = (int)(ij / T), j = (int)(ij % T);
      float *row = cat + (size_t)r * 2 * cz;
      memcpy(row, f->z_trunk + (size_t)ij * cz, sizeof(float) * cz);
      int same_chain = f->asym_id[i] == f->asym_id[j];
      int same_res = f->residue_index[i] == f->residue_index[j];
      int same_ent = f->entity_id[i] == f->entity_id[j];
      int d_res = same_chain ? clampi(f->residue_index[i] - f->residue_index[j] + 32, 0, 64) : 65;
      int d_tok = (same_chain && same_res) ? clampi(f->token_index[i] - f->token_index[j] + 32, 0, 64) : 65;
      int d_chain = same_ent ? clampi(f->sym_id[i] - f->sym_id[j] + 2, 0, 4) : 5;
      float *rp = row + cz;
      for (int c = 0; c < cz; c++) {
        const float *w = W + (size_t)c * 139;
        float v = w[d_res] + w[66 + d_tok];
        if (same_ent) v += w[132];
        rp[c] = v + w[133 + d_chain];
      }
    }
    be->layernorm(be, rows, 2 * cz, cat, m->cond_ln_z_w, NULL, cat);
    be->linear(be, rows, cz, 2 * cz, cat, 2 * cz, px_lw(&m->cond_z), NULL, pair_z + (size_t)r0 * cz, cz, 0, 0,
               PX_F32, PX_F32);
  }
  transition_add(be, &m->tr_z1, TT, cz, pair_z, scratch);
  transition_add(be, &m->tr_z2, TT, cz, pair_z, scratch);
}

/* Every token block's pair bias [n_blocks, H, T, T] and the encoder's z projection zproj
 * [T, T, c_atompair], from LN(pair_z): LN(z) * w_k then W_k equals LN(z) times W_k with w_k
 * folded in, so one GEMM serves all blocks (rows k*H+h) plus the encoder's projection (the
 * last cp rows); pair_z is read once. wf: (n_blocks * H + cp) * c_z floats (host: the folded
 * weights); scratch: PAIR_CHUNK * (2 c_z + n_blocks * H + cp) floats. */
static void stage_token_pair_biases(px_backend *be, const px_model *m, int T, const float *pair_z, float *wf,
                                    float *scratch, float *tok_pair_bias, float *zproj) {
  const px_transformer_w *tt = &m->tok_tf;
  const int cz = m->dims.c_z, cp = m->dims.c_atompair, H = tt->n_heads, nbh = tt->n_blocks * H;
  const int64_t TT = (int64_t)T * T;
  for (int k = 0; k < tt->n_blocks; k++)
    for (int h = 0; h < H; h++)
      for (int c = 0; c < cz; c++)
        wf[((size_t)k * H + h) * cz + c] = tt->blocks[k].z.w[(size_t)h * cz + c] * tt->blocks[k].ln_z_w[c];
  for (int o = 0; o < cp; o++)
    for (int c = 0; c < cz; c++) wf[((size_t)nbh + o) * cz + c] = m->enc_z.w[(size_t)o * cz + c] * m->enc_ln_z_w[c];
  const int nout = nbh + cp;
  for (int64_t r0 = 0; r0 < TT; r0 += PAIR_CHUNK) {
    int rows = (int)(TT - r0 < PAIR_CHUNK ? TT - r0 : PAIR_CHUNK);
    float *zn = scratch, *o = scratch + (size_t)PAIR_CHUNK * 2 * cz;
    be->layernorm(be, rows, cz, pair_z + (size_t)r0 * cz, NULL, NULL, zn);
    be->linear(be, rows, nout, cz, zn, cz, px_weight_f32(wf), NULL, o, nout, 0, 0, PX_F32, PX_F32);
#pragma omp parallel for num_threads(px_num_threads()) schedule(static)
    for (int r = 0; r < rows; r++) {
      const float *orow = o + (size_t)r * nout;
      for (int kh = 0; kh < nbh; kh++) tok_pair_bias[(size_t)kh * TT + r0 + r] = orow[kh];
      memcpy(zproj + (size_t)(r0 + r) * cp, orow + nbh, sizeof(float) * cp);
    }
  }
}

/* atom_to_token and 1/atoms per token (0 for a token without atoms): what the atom <-> token
 * maps of every call read. Host memory. */
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
static void stage_encoder_c(px_backend *be, const px_model *m, const px_atom_ref_w *ref_w, const px_features *f,
                            const int64_t *atom_to_token, float *scratch, float *c) {
  const int T = f->n_token, N = f->n_atom, cs = m->dims.c_s, ca = m->dims.c_atom;
  px_atom_ref_single(ref_w, f, c);
  float *sn = scratch, *st = scratch + (size_t)T * cs;
  be->layernorm(be, T, cs, f->s_trunk, m->enc_ln_s_w, NULL, sn);
  be->linear(be, T, ca, cs, sn, cs, px_lw(&m->enc_s), NULL, st, ca, 0, 0, PX_F32, PX_F32);
  be->tokens_to_atoms_add(be, 1, N, T, ca, 1, st, atom_to_token, c);
}

/* The atom pair pass (encoder p, in trunk layout [n_trunks, 32, 128, cp], written to p only
 * for a probe) and every atom block's pair bias from LN(p), for the encoder's and the
 * decoder's transformers in one pass over the pairs. */
static int stage_atom_pair_biases(px_backend *be, const px_model *m, const px_atom_ref_w *ref_w, const px_features *f,
                                  px_design *d, const float *zproj, float *p) {
  const px_transformer_w *tfs[2] = {&m->enc_tf, &m->dec_tf};
  px_atom_block_cache *caches[2] = {d->enc, d->dec};
  return px_atom_pair_bias_build(be, ref_w, f, d->c, zproj, tfs, caches, 2, p, &d->bytes);
}

/* The atom blocks' s-side AdaLN and gate terms (s = c, the same at every call) for the
 * encoder's and the decoder's transformers. scratch: N * c_atom floats. */
static int stage_atom_block_terms(px_backend *be, const px_model *m, px_design *d, float *scratch) {
  int rc = px_atom_block_cache_build(be, &m->enc_tf, d->N, d->c, scratch, d->enc, &d->bytes);
  if (!rc) rc = px_atom_block_cache_build(be, &m->dec_tf, d->N, d->c, scratch, d->dec, &d->bytes);
  return rc;
}

int px_design_create_probe(const px_model *m, const px_features *f, px_probe_fn probe, void *user,
                           px_design **out) {
  if (!out) return px_fail(PX_ERR_INPUT, "px_design_create: NULL output");
  *out = NULL;
  int rc = validate(m, f);
  if (rc) return rc;
  px_backend *be = px_cpu_backend();
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
  d->be = be;
  d->W = m;
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
  float *scratch = malloc(sizeof(float) * scratch_n);
  float *pair_z = malloc(sizeof(float) * (size_t)TT * cz);
  float *zproj = malloc(sizeof(float) * (size_t)TT * cp);
  float *p = probe ? malloc(sizeof(float) * (size_t)P * cp) : NULL; /* only a probe reads p */
  float *wf = malloc(sizeof(float) * (size_t)(nbh + cp) * cz);
  d->s0 = malloc(sizeof(float) * (size_t)T * cs); /* host: the per-call conditioning reads it there */
  d->tok_pair_bias = be->alloc(be, sizeof(float) * (size_t)nbh * TT);
  d->c = be->alloc(be, sizeof(float) * (size_t)N * ca);
  d->enc = calloc((size_t)te->n_blocks, sizeof(px_atom_block_cache));
  d->dec = calloc((size_t)td->n_blocks, sizeof(px_atom_block_cache));
  /* The cache lengths, so that px_design_free needs no model (and works on any error path). */
  d->enc_blocks_hint = te->n_blocks;
  d->dec_blocks_hint = td->n_blocks;
  d->atom_to_token = be->alloc(be, sizeof(int64_t) * (size_t)N);
  d->inv_count = be->alloc(be, sizeof(float) * (size_t)T);
  if (!scratch || !pair_z || !zproj || (probe && !p) || !wf || !d->s0 || !d->tok_pair_bias ||
      !d->c || !d->enc || !d->dec || !d->atom_to_token || !d->inv_count) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory building the design cache (%d tokens, %d atoms)", T, N);
    goto done;
  }
  d->bytes = (int64_t)sizeof(float) * ((int64_t)T * cs + (int64_t)nbh * TT + (int64_t)N * ca + T) +
             (int64_t)sizeof(int64_t) * N;

  stage_s0(be, m, f, scratch, d->s0);
  stage_pair_z(be, m, f, scratch, pair_z);
  if (probe) {
    probe(user, "s0", d->s0, (int64_t)T * cs);
    probe(user, "pair_z", pair_z, TT * cz);
  }
  stage_token_pair_biases(be, m, T, pair_z, wf, scratch, d->tok_pair_bias, zproj);
  free(pair_z);
  pair_z = NULL;
  stage_atom_index(f, d->atom_to_token, d->inv_count);
  const px_atom_ref_w ref_w = model_ref_w(m);
  stage_encoder_c(be, m, &ref_w, f, d->atom_to_token, scratch, d->c);
  rc = stage_atom_pair_biases(be, m, &ref_w, f, d, zproj, probe ? p : NULL);
  if (rc) goto done;
  free(zproj);
  zproj = NULL;
  if (probe) {
    probe(user, "c", d->c, (int64_t)N * ca);
    probe(user, "p", p, P * cp);
  }
  rc = stage_atom_block_terms(be, m, d, scratch);
done:
  free(scratch);
  free(pair_z);
  free(zproj);
  free(p);
  free(wf);
  if (rc) {
    px_design_free(d);
    return rc;
  }
  if (m->device == PX_DEVICE_CUDA) {
    rc = px_design_to_device(m, d);
    if (rc) {
      px_design_free(d);
      return rc;
    }
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
