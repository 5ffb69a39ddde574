/* The design condition embedder (docs/design-spec.md section 8) over the engine's atom-encoder
 * code: the reference-feature embedding, pair features and pair biases of model/design.c
 * (shared with the diffusion module's encoder, minus its s / z / noisy-position terms) and
 * the atom transformer of model/denoise.c, run once for one "sample". */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/embedder.h"

struct px_embedder {
  px_embedder_w w; /* host weights (the per-design preparation reads them) */
  int device;      /* PX_DEVICE_CPU or PX_DEVICE_CUDA */
  px_backend *be;  /* the backend px_embed runs on */
  /* Non-CPU backends: the weight struct with every pointer in backend memory. */
  px_embedder_w *mirror;
  /* px_embed's host buffers, kept between calls (scratch_busy: a call is using them). */
  atomic_flag scratch_busy;
  float *scratch;
  size_t scratch_n; /* floats */
  /* The atom transformer's s-side terms as linear maps of the reference features (below):
   * [n_feat rows][sside_w], row j = what feature column j adds to every term of an atom. */
  float *sside;
  int sside_w;
};

/* ------------------------------------------------- s-side terms, sparse -- */

/* In the embedder the atom transformer's s is c itself, and c is linear in the reference
 * features of its atom (px_atom_ref_single):
 *   c = W g,  g = ref_mask * [ref_pos (3), asinh(ref_charge), ref_mask, ref_element (128),
 *                            ref_atom_name_chars (256)]            (389 columns, W: [C, 389])
 * and g has ~10 nonzero entries (two one-hots and five dense values). Every s-side term of
 * every block is then a linear map of g, up to a per-atom scale:
 *   LN(c) = (W' g) * rstd,  W' = W with each column's mean over the C channels removed
 *     (so W' g = c - mean(c) exactly in exact arithmetic), rstd = 1 / sqrt(|W' g|^2 / C + eps)
 *   AdaLN's  sigmoid(A LN(c) + a), B LN(c)  =  sigmoid((A W') g * rstd + a), (B W') g * rstd
 *   the gates sigmoid(L c + l)             =  sigmoid((L W) g + l)
 * (A, B with the LayerNorm weight folded into their columns, as px_atom_block_cache_build
 * does). With the composite matrices made once per embedder, an atom's 8 * n_blocks terms
 * cost ~10 column sums instead of 8 * n_blocks dense C x C products: the GEMMs that were
 * ~40% of the embedder's multiply-adds. Centering W (instead of subtracting mean(c) * A 1
 * afterwards) keeps the cancellation of LN's subtraction out of the sums. */

enum { SSIDE_TERMS = 8 }; /* per block, in px_atom_block_cache's order (see term_of) */

static int sside_n_feat(const px_embedder_w *w) { return 3 + 1 + w->ref.f.in; }

/* Term i of a block: its matrix (C x C, row-major [out][in]), bias (or NULL), whether it
 * reads LN(c) (1) or c (0), whether a sigmoid follows; and its buffer in the cache. */
typedef struct {
  const float *w, *ln_w, *b;
  int normalized, sigmoid;
} sside_term;

static sside_term term_of(const px_block_w *B, int i) {
  const px_adaln_w *ad[3] = {&B->ln_a, &B->ln_kv, &B->ctb_adaln};
  switch (i) {
  case 0: case 2: case 5: { /* g_a, g_kv, g_c */
    const px_adaln_w *a = ad[i == 0 ? 0 : i == 2 ? 1 : 2];
    return (sside_term){a->lin_s.w, a->ln_s_w, a->lin_s.b, 1, 1};
  }
  case 1: case 3: case 6: { /* b_a, b_kv, b_c */
    const px_adaln_w *a = ad[i == 1 ? 0 : i == 3 ? 1 : 2];
    return (sside_term){a->lin_nobias_s.w, a->ln_s_w, NULL, 1, 0};
  }
  case 4: return (sside_term){B->a_last.w, NULL, B->a_last.b, 0, 1};     /* gate_last */
  default: return (sside_term){B->ctb_s.w, NULL, B->ctb_s.b, 0, 1};      /* gate_ctb */
  }
}

static float **term_buf(px_atom_block_cache *o, int i) {
  float **bufs[SSIDE_TERMS] = {&o->g_a, &o->b_a, &o->g_kv, &o->b_kv, &o->gate_last, &o->g_c, &o->b_c, &o->gate_ctb};
  return bufs[i];
}

/* e->sside: row j = [W'[:, j] (C), then for every block and term (A W')[:, j] or (L W)[:, j]]. */
static int sside_prepare(px_embedder *e) {
  const px_embedder_w *w = &e->w;
  const int C = w->tf.c, nf = sside_n_feat(w), cf = w->ref.f.in, nb = w->tf.n_blocks;
  const int width = C * (1 + SSIDE_TERMS * nb);
  px_backend *cpu = px_cpu_backend();
  float *Xr = malloc(sizeof(float) * (size_t)nf * C * 2);    /* W^T and W'^T: [nf, C] each */
  float *wf = malloc(sizeof(float) * (size_t)C * C);         /* one term's matrix, LN weight folded */
  float *G = aligned_alloc(64, sizeof(float) * (((size_t)nf * width + 15) & ~(size_t)15));
  if (!Xr || !wf || !G) {
    free(Xr), free(wf), free(G);
    return px_fail(PX_ERR_NOMEM, "out of memory for the condition embedder");
  }
  float *X = Xr, *Xc = Xr + (size_t)nf * C;
  for (int j = 0; j < nf; j++) {
    double mean = 0;
    for (int o = 0; o < C; o++) {
      const float v = j < 3 ? w->ref.ref_pos.w[(size_t)o * 3 + j]
                    : j == 3 ? w->ref.ref_charge.w[o]
                             : w->ref.f.w[(size_t)o * cf + (j - 4)];
      X[(size_t)j * C + o] = v;
      mean += v;
    }
    mean /= C;
    for (int o = 0; o < C; o++) {
      const double v = (double)X[(size_t)j * C + o] - mean;
      Xc[(size_t)j * C + o] = (float)v;
      G[(size_t)j * width + o] = (float)v;
    }
  }
  /* Composite row j of term t: (M X[j]) for M the term's matrix, i.e. X @ M^T. */
  for (int k = 0; k < nb; k++)
    for (int i = 0; i < SSIDE_TERMS; i++) {
      const sside_term t = term_of(&w->tf.blocks[k], i);
      for (int r = 0; r < C; r++)
        for (int j = 0; j < C; j++)
          wf[(size_t)r * C + j] = t.w[(size_t)r * C + j] * (t.ln_w ? t.ln_w[j] : 1.0f);
      cpu->linear(cpu, nf, C, C, t.normalized ? Xc : X, C, px_weight_f32(wf), NULL,
                  G + (size_t)C * (1 + k * SSIDE_TERMS + i), width, 0, 0, PX_F32, PX_F32);
    }
  free(Xr);
  free(wf);
  e->sside = G;
  e->sside_w = width;
  return PX_OK;
}

/* acc[0, n) = sum over k of v[k] * rows[k][0, n), 64 columns at a time held in registers
 * across the nz rows. Written with vectors (GCC/Clang vector extension, as design.c's pair
 * pass): as a plain double loop GCC vectorizes across the rows with gathers instead. */
typedef float sside_vec __attribute__((vector_size(8 * sizeof(float))));
enum { SSIDE_VECS = 8, SSIDE_STRIP = 8 * SSIDE_VECS };
static void sum_rows(int n, int nz, const float *v, const int *idx, const float *G, int64_t ld, float *acc) {
  int o0 = 0;
  for (; o0 + SSIDE_STRIP <= n; o0 += SSIDE_STRIP) {
    sside_vec t[SSIDE_VECS];
    for (int q = 0; q < SSIDE_VECS; q++) t[q] = (sside_vec){0};
    for (int k = 0; k < nz; k++) {
      const float *g = G + idx[k] * ld + o0;
      const sside_vec vk = (sside_vec){0} + v[k];
      for (int q = 0; q < SSIDE_VECS; q++) {
        sside_vec x;
        memcpy(&x, g + 8 * q, sizeof x);
        t[q] += vk * x;
      }
    }
    memcpy(acc + o0, t, sizeof t);
  }
  for (int o = o0; o < n; o++) {
    float t = 0.0f;
    for (int k = 0; k < nz; k++) t += v[k] * G[idx[k] * ld + o];
    acc[o] = t;
  }
}

/* Every block's s-side terms for s = c, into caches[k] (host buffers), from f. */
int px_embedder_sside(const px_embedder *e, const px_features *f, px_atom_block_cache *caches) {
  const px_embedder_w *w = &e->w;
  const int C = w->tf.c, nb = w->tf.n_blocks, width = e->sside_w, N = f->n_atom;
  const float *G = e->sside;
  int nomem = 0;
  /* The embedder computes on the shared CPU context: the process's count (px_num_threads). */
#pragma omp parallel num_threads(px_num_threads())
  {
    float *acc = aligned_alloc(64, sizeof(float) * (((size_t)width + 15) & ~(size_t)15));
    if (!acc) {
#pragma omp atomic write
      nomem = 1;
    }
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      if (!acc) continue;
      /* g's nonzero entries (a term w * 0 adds nothing to a finite sum). */
      const float m = f->ref_mask[n];
      const float *el = f->ref_element + (size_t)n * 128, *nc = f->ref_atom_name_chars + (size_t)n * 256;
      int nzi[389];
      float nzv[389];
      int nz = 0;
      const float dense[5] = {f->ref_pos[(size_t)n * 3], f->ref_pos[(size_t)n * 3 + 1], f->ref_pos[(size_t)n * 3 + 2],
                              asinhf(f->ref_charge[n]), m};
      for (int j = 0; j < 5; j++)
        if (dense[j] * m != 0.0f) nzi[nz] = j, nzv[nz++] = dense[j] * m;
      for (int j = 0; j < 128; j++)
        if (el[j] * m != 0.0f) nzi[nz] = 5 + j, nzv[nz++] = el[j] * m;
      for (int j = 0; j < 256; j++)
        if (nc[j] * m != 0.0f) nzi[nz] = 133 + j, nzv[nz++] = nc[j] * m;
      sum_rows(width, nz, nzv, nzi, G, width, acc);
      double ss = 0;
      for (int o = 0; o < C; o++) ss += (double)acc[o] * acc[o];
      const float rstd = (float)(1.0 / sqrt(ss / C + 1e-5));
      for (int k = 0; k < nb; k++)
        for (int i = 0; i < SSIDE_TERMS; i++) {
          const sside_term t = term_of(&w->tf.blocks[k], i);
          const float *a = acc + (size_t)C * (1 + k * SSIDE_TERMS + i);
          float *y = *term_buf(&caches[k], i) + (size_t)n * C;
          const float s = t.normalized ? rstd : 1.0f;
          for (int o = 0; o < C; o++) y[o] = a[o] * s + (t.b ? t.b[o] : 0.0f);
        }
    }
    free(acc);
  }
  if (nomem) return px_fail(PX_ERR_NOMEM, "out of memory for the condition embedder's s-side terms");
  /* The sigmoids, with the backend's own function (as px_atom_block_cache_build applies it). */
  px_backend *cpu = px_cpu_backend();
  for (int k = 0; k < nb; k++)
    for (int i = 0; i < SSIDE_TERMS; i++)
      if (term_of(&w->tf.blocks[k], i).sigmoid)
        cpu->activation(cpu, (int64_t)N * C, *term_buf(&caches[k], i), PX_ACT_SIGMOID);
  return PX_OK;
}

/* ------------------------------------------------------------------ loading -- */

static int wrap(px_embedder_w *w, int rc, px_embedder **out) {
  if (rc) return rc;
  px_embedder *e = calloc(1, sizeof *e);
  if (!e) {
    px_embedder_w_free(w);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  e->w = *w;
  atomic_flag_clear(&e->scratch_busy);
  e->device = PX_DEVICE_CPU;
  e->be = px_cpu_backend();
  rc = sside_prepare(e);
  if (rc) {
    px_embedder_free(e);
    return rc;
  }
  *out = e;
  return PX_OK;
}

int px_embedder_load(const char *path, px_embedder **out) {
  if (!path || !out) return px_fail(PX_ERR_INPUT, "px_embedder_load: NULL argument");
  *out = NULL;
  px_embedder_w w;
  return wrap(&w, px_embedder_w_load(path, &w), out);
}

int px_embedder_from_arrays(int n, const char *const *names, const float *const *data, const int *ndims,
                            const int64_t *const *shapes, px_embedder **out) {
  if (!out) return px_fail(PX_ERR_INPUT, "px_embedder_from_arrays: NULL output");
  *out = NULL;
  px_embedder_w w;
  return wrap(&w, px_embedder_w_from_arrays(n, names, data, ndims, shapes, &w), out);
}

/* ------------------------------------------------------------ device mirror -- */

typedef struct {
  const px_embedder_w *host;
  float **dev; /* dev[i]: the copy of host->owned[i] */
} remap_ctx;

static void remap(float **slot, void *user) {
  const remap_ctx *r = (const remap_ctx *)user;
  if (!*slot) return;
  for (int i = 0; i < r->host->n_owned; i++)
    if (r->host->owned[i] == *slot) {
      *slot = r->dev[i];
      return;
    }
  *slot = NULL; /* not an owned buffer: cannot happen (every weight is loaded into one) */
}

static void mirror_free(px_backend *be, px_embedder_w *m) {
  if (!m) return;
  for (int i = 0; i < m->n_owned; i++)
    if (m->owned[i]) be->free(be, m->owned[i]);
  free(m->owned);
  free(m->tf.blocks);
  free(m);
}

/* A copy of the weights in be's memory. */
static int mirror_make(px_backend *be, const px_embedder_w *w, px_embedder_w **out) {
  *out = NULL;
  px_embedder_w *m = calloc(1, sizeof *m);
  if (!m) return px_fail(PX_ERR_NOMEM, "out of memory");
  *m = *w;
  m->owned_n = NULL;
  m->cap_owned = 0;
  m->owned = calloc((size_t)(w->n_owned > 0 ? w->n_owned : 1), sizeof(float *));
  m->tf.blocks = malloc(sizeof(px_block_w) * (size_t)(w->tf.n_blocks > 0 ? w->tf.n_blocks : 1));
  if (!m->owned || !m->tf.blocks) {
    free(m->owned);
    free(m->tf.blocks);
    free(m);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  memcpy(m->tf.blocks, w->tf.blocks, sizeof(px_block_w) * (size_t)w->tf.n_blocks);
  m->n_owned = 0;
  for (int i = 0; i < w->n_owned; i++) {
    const size_t bytes = sizeof(float) * (w->owned_n[i] ? w->owned_n[i] : 1);
    float *d = be->alloc(be, bytes);
    if (!d) {
      mirror_free(be, m);
      return px_fail(PX_ERR_NOMEM, "out of device memory for the condition embedder's weights");
    }
    m->owned[m->n_owned++] = d;
    be->upload(be, d, w->owned[i], bytes);
  }
  remap_ctx r = {w, m->owned};
  px_embedder_w_visit(m, remap, &r);
  int rc = be->status ? be->status(be) : 0;
  if (rc) {
    mirror_free(be, m);
    return rc;
  }
  *out = m;
  return PX_OK;
}

int px_embedder_set_backend(px_embedder *e, int device) {
  if (!e) return px_fail(PX_ERR_INPUT, "px_embedder_set_backend: NULL embedder");
  if (device != PX_DEVICE_AUTO && device != PX_DEVICE_CPU && device != PX_DEVICE_CUDA)
    return px_fail(PX_ERR_INPUT, "unknown device %d", device);
  if (device == PX_DEVICE_AUTO) device = px_cuda_device_count() > 0 ? PX_DEVICE_CUDA : PX_DEVICE_CPU;
  if (device == e->device) return PX_OK;
  if (e->mirror) {
    mirror_free(e->be, e->mirror);
    e->mirror = NULL;
  }
  e->device = PX_DEVICE_CPU;
  e->be = px_cpu_backend();
  if (device == PX_DEVICE_CPU) return PX_OK;
  /* fp32: true float32 GEMMs, the embedder's results as the CPU computes them. */
  px_backend *be = px_backend_get(PX_DEVICE_CUDA, 0, PX_PRECISION_FP32);
  if (!be) return PX_ERR_BACKEND; /* the reason is set: no CUDA build, no device */
  int rc = mirror_make(be, &e->w, &e->mirror);
  if (rc) return rc;
  e->be = be;
  e->device = PX_DEVICE_CUDA;
  return PX_OK;
}

const char *px_embedder_backend_name(const px_embedder *e) {
  return e && e->device == PX_DEVICE_CUDA ? "cuda:0" : "cpu";
}

void px_embedder_free(px_embedder *e) {
  if (!e) return;
  if (e->mirror) mirror_free(e->be, e->mirror);
  free(e->scratch);
  free(e->sside);
  px_embedder_w_free(&e->w);
  free(e);
}

int px_embedder_get_dims(const px_embedder *e, px_embedder_dims *out) {
  if (!e || !out) return px_fail(PX_ERR_INPUT, "px_embedder_get_dims: NULL argument");
  *out = e->w.dims;
  return PX_OK;
}

int64_t px_embedder_n_params(const px_embedder *e) { return e ? e->w.n_params : 0; }

void px_embedder_dims_released(px_embedder_dims *d) {
  memset(d, 0, sizeof *d);
  d->c_atom = 128;
  d->c_atompair = 16;
  d->c_token = 384;
  d->c_s_inputs = 449;
  d->c_z = 128;
  d->n_blocks = 3;
  d->n_heads = 4;
}

/* ------------------------------------------------------------------ forward -- */

static int finite_all(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

static int validate(const px_embedder *e, const px_features *f, const float *restype, const float *hotspot,
                    const int64_t *templ, const uint8_t *templ_mask, int dtype, const float *s_inputs,
                    const float *z_trunk) {
  if (!e || !f || !s_inputs) return px_fail(PX_ERR_INPUT, "px_embed: NULL embedder, features or s_inputs");
  if (dtype != PX_EMBED_FP32 && dtype != PX_EMBED_BF16)
    return px_fail(PX_ERR_INPUT, "px_embed: unknown dtype %d (PX_EMBED_FP32 or PX_EMBED_BF16)", dtype);
  const int T = f->n_token, N = f->n_atom;
  if (T <= 0) return px_fail(PX_ERR_INPUT, "design has %d tokens; at least 1 is needed", T);
  if (N <= 0) return px_fail(PX_ERR_INPUT, "design has %d atoms; at least 1 is needed", N);
  if ((int64_t)T * T > (int64_t)1 << 31 || N > (1 << 26))
    return px_fail(PX_ERR_INPUT, "design too large (%d tokens, %d atoms)", T, N);
  struct { const void *p; const char *name; } req[] = {
      {f->ref_pos, "ref_pos"}, {f->ref_charge, "ref_charge"}, {f->ref_mask, "ref_mask"},
      {f->ref_element, "ref_element"}, {f->ref_atom_name_chars, "ref_atom_name_chars"},
      {f->ref_space_uid, "ref_space_uid"}, {f->atom_to_token_idx, "atom_to_token_idx"},
      {restype, "restype"}, {hotspot, "hotspot"},
      {z_trunk ? (const void *)templ : (const void *)"", "conditional_templ"},
      {z_trunk ? (const void *)templ_mask : (const void *)"", "conditional_templ_mask"}};
  for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
    if (!req[i].p) return px_fail(PX_ERR_INPUT, "feature %s is missing", req[i].name);
  struct { const float *p; int64_t n; const char *name; } fl[] = {
      {f->ref_pos, (int64_t)N * 3, "ref_pos"}, {f->ref_charge, N, "ref_charge"},
      {f->ref_mask, N, "ref_mask"}, {f->ref_element, (int64_t)N * 128, "ref_element"},
      {f->ref_atom_name_chars, (int64_t)N * 256, "ref_atom_name_chars"},
      {restype, (int64_t)T * PX_EMBED_RESTYPES, "restype"}, {hotspot, T, "hotspot"}};
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
    if (!finite_all(fl[i].p, fl[i].n)) return px_fail(PX_ERR_INPUT, "feature %s contains NaN or Inf", fl[i].name);
  int64_t prev = 0;
  for (int n = 0; n < N; n++) {
    int64_t t = f->atom_to_token_idx[n];
    if (t < 0 || t >= T)
      return px_fail(PX_ERR_INPUT, "atom_to_token_idx[%d] = %lld is out of range [0, %d)", n, (long long)t, T);
    if (t < prev)
      return px_fail(PX_ERR_INPUT, "atom_to_token_idx is not ascending at atom %d (%lld after %lld)", n,
                     (long long)t, (long long)prev);
    prev = t;
  }
  /* Upstream's token mean has max(atom_to_token_idx) + 1 rows; the concatenation with the
   * [T, ...] token features needs that to be T. */
  if (prev != T - 1)
    return px_fail(PX_ERR_INPUT, "the last atom belongs to token %lld but the design has %d tokens (the last token has no atoms)",
                   (long long)prev, T);
  if (z_trunk)
    for (int64_t ij = 0; ij < (int64_t)T * T; ij++) {
      const int i = (int)(ij / T), j = (int)(ij % T);
      if (templ_mask[ij] > 1)
        return px_fail(PX_ERR_INPUT, "conditional_templ_mask[%d, %d] = %d is not 0 or 1", i, j, templ_mask[ij]);
      if (templ_mask[ij] && (templ[ij] < 0 || templ[ij] >= PX_EMBED_TEMPL_BINS))
        return px_fail(PX_ERR_INPUT, "conditional_templ[%d, %d] = %lld is not a distance bin 0..%d", i, j,
                       (long long)templ[ij], PX_EMBED_TEMPL_BINS - 1);
    }
  return PX_OK;
}

/* bfloat16 rounding, to nearest even (finite inputs). */
static float round_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

/* Buffers of one call: the host-side preparation (h) and the backend's copies (d; the
 * same buffers on the CPU). */
typedef struct {
  px_atom_block_cache *cache; /* [n_blocks] */
  float *c, *x, *inv_count;
  int64_t *a2t;
} prep_bufs;

static void prep_free(px_backend *be, prep_bufs *b, int n_blocks) {
  if (b->cache)
    for (int k = 0; k < n_blocks; k++) {
      px_atom_block_cache *c = &b->cache[k];
      float *bufs[9] = {c->g_a, c->b_a, c->g_kv, c->b_kv, c->gate_last, c->g_c, c->b_c, c->gate_ctb, c->pair_bias};
      for (int i = 0; i < 9; i++)
        if (bufs[i]) be->free(be, bufs[i]);
    }
  free(b->cache);
  float *f[] = {b->c, b->x, b->inv_count};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (f[i]) be->free(be, f[i]);
  if (b->a2t) be->free(be, b->a2t);
  memset(b, 0, sizeof *b);
}

/* *dst = a copy of host buffer src in be's memory. */
static int upload(px_backend *be, void **dst, const void *src, size_t bytes) {
  *dst = be->alloc(be, bytes ? bytes : 4);
  if (!*dst) return px_fail(PX_ERR_NOMEM, "out of device memory for the condition embedder (%zu MB)", bytes >> 20);
  be->upload(be, *dst, src, bytes);
  return PX_OK;
}

static int prep_upload(px_backend *be, const prep_bufs *h, prep_bufs *d, int n_blocks, int heads, int N, int T,
                       int ca, int nx, int64_t P) {
  memset(d, 0, sizeof *d);
  d->cache = calloc((size_t)n_blocks, sizeof(px_atom_block_cache));
  if (!d->cache) return px_fail(PX_ERR_NOMEM, "out of memory");
  int rc = PX_OK;
  for (int k = 0; k < n_blocks && !rc; k++) {
    const px_atom_block_cache *hc = &h->cache[k];
    px_atom_block_cache *dc = &d->cache[k];
    float *const src[8] = {hc->g_a, hc->b_a, hc->g_kv, hc->b_kv, hc->gate_last, hc->g_c, hc->b_c, hc->gate_ctb};
    float **dst[8] = {&dc->g_a, &dc->b_a, &dc->g_kv, &dc->b_kv, &dc->gate_last, &dc->g_c, &dc->b_c, &dc->gate_ctb};
    for (int i = 0; i < 8 && !rc; i++) rc = upload(be, (void **)dst[i], src[i], sizeof(float) * (size_t)N * ca);
    if (!rc) rc = upload(be, (void **)&dc->pair_bias, hc->pair_bias, sizeof(float) * (size_t)heads * P);
  }
  if (!rc) rc = upload(be, (void **)&d->c, h->c, sizeof(float) * (size_t)N * ca);
  if (!rc) rc = upload(be, (void **)&d->x, h->x, sizeof(float) * (size_t)T * nx);
  if (!rc) rc = upload(be, (void **)&d->inv_count, h->inv_count, sizeof(float) * (size_t)T);
  if (!rc) rc = upload(be, (void **)&d->a2t, h->a2t, sizeof(int64_t) * (size_t)N);
  return rc;
}

/* A bump allocator over the embedder's scratch (floats, 64-byte aligned pieces). */
typedef struct {
  float *base;
  size_t used, cap; /* floats; base NULL: a sizing pass */
} carve;

static float *carve_take(carve *a, size_t n) {
  float *p = a->base ? a->base + a->used : NULL;
  a->used += (n + 15) & ~(size_t)15;
  return p;
}

/* The host buffers of one call, carved from a: the preparation (h), the staging of s_inputs,
 * the cache build's scratch, and with on_host the backend-side buffers of the CPU path. */
typedef struct {
  float *scratch, *y_host, *q, *big, *a, *y, *ws;
} call_bufs;

static void carve_call(carve *ar, prep_bufs *h, call_bufs *cb, int nb, int heads, int N, int T, int ca, int ct,
                       int cs, int nx, int64_t P, size_t ws_n, int on_host) {
  for (int k = 0; k < nb; k++) {
    px_atom_block_cache *c = &h->cache[k];
    float **bufs[8] = {&c->g_a, &c->b_a, &c->g_kv, &c->b_kv, &c->gate_last, &c->g_c, &c->b_c, &c->gate_ctb};
    for (int i = 0; i < 8; i++) *bufs[i] = carve_take(ar, (size_t)N * ca);
    c->pair_bias = carve_take(ar, (size_t)heads * P);
  }
  h->c = carve_take(ar, (size_t)N * ca);
  h->x = carve_take(ar, (size_t)T * nx);
  h->inv_count = carve_take(ar, (size_t)T);
  h->a2t = (int64_t *)(void *)carve_take(ar, (size_t)N * 2);
  cb->scratch = carve_take(ar, (size_t)N * ca);
  cb->y_host = carve_take(ar, (size_t)T * cs);
  if (!on_host) return;
  cb->q = carve_take(ar, (size_t)N * ca);
  cb->big = carve_take(ar, (size_t)N * ct);
  cb->a = carve_take(ar, (size_t)T * ct);
  cb->y = cb->y_host; /* the backend's y is host memory: no staging copy */
  cb->ws = carve_take(ar, ws_n ? ws_n : 1);
}

int px_embed(const px_embedder *e, const px_features *f, const float *restype, const float *hotspot,
             const int64_t *templ, const uint8_t *templ_mask, int dtype, float *s_inputs, float *z_trunk) {
  int rc = validate(e, f, restype, hotspot, templ, templ_mask, dtype, s_inputs, z_trunk);
  if (rc) return rc;
  const px_embedder_w *w = &e->w;                     /* host weights */
  const px_embedder_w *W = e->mirror ? e->mirror : w; /* the ones the backend reads */
  px_backend *cpu = px_cpu_backend(), *be = e->be;
  const px_embedder_dims *D = &w->dims;
  const int T = f->n_token, N = f->n_atom, ca = D->c_atom, ct = D->c_token;
  const int cs = D->c_s_inputs, nx = PX_EMBED_N_EXTRA, nb = w->tf.n_blocks, heads = w->tf.n_heads;
  const int n_trunks = (N + PX_ATOM_NQ - 1) / PX_ATOM_NQ;
  const int64_t P = (int64_t)n_trunks * PX_ATOM_NQ * PX_ATOM_NK;
  const int on_host = be == cpu;
  const size_t ws_n = px_atom_transformer_scratch(&W->tf, 1, N);
  int64_t bytes = 0;
  prep_bufs h, d;
  call_bufs cb;
  memset(&h, 0, sizeof h);
  memset(&d, 0, sizeof d);
  memset(&cb, 0, sizeof cb);
  float *q = NULL, *big = NULL, *a = NULL, *y = NULL, *ws = NULL;

  /* Every host buffer comes from one block: the embedder's scratch, kept between calls so
   * that a campaign's later designs reuse its pages instead of faulting in fresh ones; a
   * concurrent call (the scratch is taken) uses a block of its own. */
  carve sizing = {NULL, 0, 0};
  h.cache = calloc((size_t)nb, sizeof(px_atom_block_cache));
  if (!h.cache) return px_fail(PX_ERR_NOMEM, "out of memory for the condition embedder");
  carve_call(&sizing, &h, &cb, nb, heads, N, T, ca, ct, cs, nx, P, ws_n, on_host);
  memset(h.cache, 0, sizeof(px_atom_block_cache) * (size_t)nb);
  px_embedder *em = (px_embedder *)e; /* the scratch is the one part px_embed writes */
  const int own_scratch = !atomic_flag_test_and_set(&em->scratch_busy);
  float *block = NULL;
  if (own_scratch) {
    if (em->scratch_n < sizing.used) {
      free(em->scratch);
      em->scratch_n = 0;
      em->scratch = aligned_alloc(64, sizing.used * sizeof(float));
      if (em->scratch) em->scratch_n = sizing.used;
    }
    block = em->scratch;
  } else {
    block = aligned_alloc(64, sizing.used * sizeof(float));
  }
  if (!block) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory for the condition embedder (%d tokens, %d atoms)", T, N);
    goto done;
  }
  carve ar = {block, 0, sizing.used};
  carve_call(&ar, &h, &cb, nb, heads, N, T, ca, ct, cs, nx, P, ws_n, on_host);

  /* ---- host: c, every block's pair bias and s-side terms (s = c), token counts ---- */
  px_atom_ref_single(cpu, &w->ref, f, h.c);
  {
    const px_transformer_w *tfs[1] = {&w->tf};
    px_atom_block_cache *caches[1] = {h.cache};
    rc = px_atom_pair_bias_build(cpu, &w->ref, f, h.c, NULL, tfs, tfs, caches, 1, NULL, &bytes);
  }
  if (rc) goto done;
  rc = px_embedder_sside(e, f, h.cache);
  if (rc) goto done;
  for (int t = 0; t < T; t++) h.inv_count[t] = 0.0f;
  for (int n = 0; n < N; n++) {
    h.a2t[n] = f->atom_to_token_idx[n];
    h.inv_count[f->atom_to_token_idx[n]] += 1.0f;
  }
  /* scatter_mean divides by max(count, 1): a token with no atoms gets 0. */
  for (int t = 0; t < T; t++) h.inv_count[t] = h.inv_count[t] > 0 ? 1.0f / h.inv_count[t] : 0.0f;
  /* The 46 token features after a: restype, plddt (absent: 0), hotspot, add_feat twice. */
  for (int t = 0; t < T; t++) {
    float *xr = h.x + (size_t)t * nx;
    memcpy(xr, restype + (size_t)t * PX_EMBED_RESTYPES, sizeof(float) * PX_EMBED_RESTYPES);
    xr[36] = 0.0f;
    xr[37] = hotspot[t];
    for (int k = 0; k < 8; k++) xr[38 + k] = (k % 4 == 0) ? 1.0f : 0.0f;
  }

  /* ---- to the backend (the same buffers on the CPU) ---- */
  if (on_host) {
    d = h;
    q = cb.q, big = cb.big, a = cb.a, y = cb.y, ws = cb.ws;
  } else {
    rc = prep_upload(be, &h, &d, nb, heads, N, T, ca, nx, P);
    if (rc) goto done;
    q = be->alloc(be, sizeof(float) * (size_t)N * ca);
    big = be->alloc(be, sizeof(float) * (size_t)N * ct);
    a = be->alloc(be, sizeof(float) * (size_t)T * ct);
    y = be->alloc(be, sizeof(float) * (size_t)T * cs);
    ws = be->alloc(be, sizeof(float) * (ws_n ? ws_n : 1));
    if (!q || !big || !a || !y || !ws) {
      rc = px_fail(PX_ERR_NOMEM, "out of device memory for the condition embedder (%d tokens, %d atoms)", T, N);
      goto done;
    }
  }

  /* ---- backend: q = c; atom transformer (s = c, z = p); a = mean relu(Lin_q(q)); input_map ---- */
  be->copy(be, q, d.c, sizeof(float) * (size_t)N * ca);
  px_atom_transformer(be, &W->tf, d.cache, 1, N, q, ws);
  be->linear_relu(be, N, ct, ca, q, ca, px_lw(&W->q), NULL, big, ct, N);
  be->atoms_to_tokens(be, 1, N, T, ct, big, d.a2t, d.inv_count, a);
  be->linear(be, T, cs, ct, a, ct, px_lw(&W->map_a), W->map_a.b, y, cs, 0, T, PX_F32, PX_F32);
  be->linear(be, T, cs, nx, d.x, nx, px_lw(&W->map_x), NULL, y, cs, 1, T, PX_F32, PX_F32);
  if (!on_host) be->download(be, cb.y_host, y, sizeof(float) * (size_t)T * cs);
  if (be->sync) be->sync(be);
  rc = be->status ? be->status(be) : 0;
  if (rc) goto done;
  if (!finite_all(cb.y_host, (int64_t)T * cs)) {
    rc = px_fail(PX_ERR_INPUT, "px_embed: s_inputs is not finite (features or weights out of range)");
    goto done;
  }

  /* ---- outputs, written only now that nothing can fail ---- */
  for (int64_t i = 0; i < (int64_t)T * cs; i++)
    s_inputs[i] = dtype == PX_EMBED_BF16 ? round_bf16(cb.y_host[i]) : cb.y_host[i];
  if (z_trunk) {
    const int cz = D->c_z;
#pragma omp parallel for num_threads(px_num_threads()) schedule(static)
    for (int64_t ij = 0; ij < (int64_t)T * T; ij++) {
      const int64_t row = templ_mask[ij] ? 1 + templ[ij] : 0;
      memcpy(z_trunk + (size_t)ij * cz, w->templ + (size_t)row * cz, sizeof(float) * (size_t)cz);
    }
  }

done:
  if (!on_host) {
    float *tmp[] = {q, big, a, y, ws};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++)
      if (tmp[i]) be->free(be, tmp[i]);
    prep_free(be, &d, nb);
  }
  free(h.cache);
  if (own_scratch)
    atomic_flag_clear(&em->scratch_busy);
  else
    free(block);
  return rc;
}
