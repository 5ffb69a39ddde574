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
};

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
  px_atom_ref_single(&w->ref, f, h.c);
  {
    const px_transformer_w *tfs[1] = {&w->tf};
    px_atom_block_cache *caches[1] = {h.cache};
    rc = px_atom_pair_bias_build(cpu, &w->ref, f, h.c, NULL, tfs, caches, 1, NULL, &bytes);
  }
  if (!rc) rc = px_atom_block_cache_build(cpu, &w->tf, N, h.c, cb.scratch, h.cache, &bytes);
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
