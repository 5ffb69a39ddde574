/* The design condition embedder (src/model/embedder.h) against upstream PXDesign's own
 * DesignConditionEmbedder: tests/data/embedder/ holds upstream's outputs for two tasks
 * featurized by upstream (PDL1 quick start: 196 tokens, 1250 atoms; and the same target
 * cropped to 20-60 with a 12-residue binder: 53 tokens, 389 atoms), with random weights in
 * the released layout at reduced widths (tests/ref/make_embedder_fixtures.py made them).
 * Then: loading failures name the tensor, bad inputs fail without touching the outputs,
 * the bf16 mode, and the released widths on synthetic weights. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <unistd.h>

#include "io/tensorfile.h"
#include "model/embedder.h"
#include "pxdiff.h"
#include "pxdiff_synthetic.h"
#include "testutil.h"

#define TOL 1e-4

static char data_dir[4096];

static void set_data_dir(void) {
  const char *dir = getenv("PXDIFF_TEST_DATA");
  snprintf(data_dir, sizeof data_dir, "%s/embedder", dir && dir[0] ? dir : "tests/data");
}

/* ---- a fixture file's tensors as float32 ---- */
typedef struct {
  px_tensorfile tf;
  int ok;
} fixture;

static int fx_open(fixture *x, const char *name) {
  char path[4600], err[512];
  snprintf(path, sizeof path, "%s/%s", data_dir, name);
  x->ok = px_tensorfile_open(path, &x->tf, err, sizeof err) == 0;
  CHECK_MSG(x->ok, "%s: %s (run from the repository root or set PXDIFF_TEST_DATA)", path, err);
  return x->ok;
}

/* The tensor as a new float array; its element count in *n (checked against want if >= 0). */
static float *fx_get(fixture *x, const char *name, int64_t want, int64_t *n) {
  const px_tensor_entry *e = px_tensorfile_find(&x->tf, name);
  CHECK_MSG(e != NULL, "fixture tensor %s missing", name);
  if (!e) return NULL;
  int64_t k = px_entry_numel(e);
  if (n) *n = k;
  CHECK_MSG(want < 0 || k == want, "fixture tensor %s has %lld values, expected %lld", name, (long long)k,
            (long long)want);
  if (want >= 0 && k != want) return NULL;
  float *d = malloc(sizeof(float) * (size_t)(k ? k : 1));
  char err[512];
  if (px_tensorfile_read_f32(&x->tf, e, d, err, sizeof err)) {
    CHECK_MSG(0, "%s: %s", name, err);
    free(d);
    return NULL;
  }
  return d;
}

/* ---- a task: features (expanded from the fixture's compact form) and upstream's outputs ---- */
typedef struct {
  int T, N;
  px_features f;
  float *restype, *hotspot;
  int64_t *templ;
  uint8_t *mask;
  float *s_expect;           /* [T, cs] */
  float *z_full;             /* [T, T, cz] or NULL */
  float *z_rows, *z_slice;   /* quick start: rows of z */
  int n_rows;
} task;

static void task_free(task *t) {
  px_features_free(&t->f);
  free(t->restype);
  free(t->hotspot);
  free(t->templ);
  free(t->mask);
  free(t->s_expect);
  free(t->z_full);
  free(t->z_rows);
  free(t->z_slice);
  memset(t, 0, sizeof *t);
}

static int task_load(const char *name, int cs, int cz, task *t) {
  memset(t, 0, sizeof *t);
  fixture x;
  char file[256];
  snprintf(file, sizeof file, "%s.safetensors", name);
  if (!fx_open(&x, file)) return 0;
  int64_t n3 = 0, nt = 0;
  float *pos = fx_get(&x, "ref_pos", -1, &n3);
  float *rt = fx_get(&x, "restype", -1, &nt);
  int ok = pos && rt && n3 % 3 == 0 && nt % 36 == 0;
  if (!ok) {
    free(pos);
    free(rt);
    px_tensorfile_close(&x.tf);
    return 0;
  }
  const int N = (int)(n3 / 3), T = (int)(nt / 36);
  t->T = T;
  t->N = N;
  px_dims dd;
  memset(&dd, 0, sizeof dd);
  dd.c_s_inputs = 1;
  dd.c_s = 1;
  dd.c_z = 1;
  CHECK(px_features_alloc(&dd, T, N, &t->f) == 0);
  t->restype = rt;
  float *charge = fx_get(&x, "ref_charge", N, NULL), *mask = fx_get(&x, "ref_mask", N, NULL);
  float *uid = fx_get(&x, "ref_space_uid", N, NULL), *a2t = fx_get(&x, "atom_to_token_idx", N, NULL);
  float *el = fx_get(&x, "ref_element_idx", N, NULL), *nm = fx_get(&x, "ref_atom_name_idx", (int64_t)N * 4, NULL);
  t->hotspot = fx_get(&x, "hotspot", T, NULL);
  float *templ = fx_get(&x, "conditional_templ", (int64_t)T * T, NULL);
  float *tmask = fx_get(&x, "conditional_templ_mask", (int64_t)T * T, NULL);
  t->s_expect = fx_get(&x, "s_inputs", (int64_t)T * cs, NULL);
  if (px_tensorfile_find(&x.tf, "z_trunk")) {
    t->z_full = fx_get(&x, "z_trunk", (int64_t)T * T * cz, NULL);
  } else {
    int64_t nr = 0;
    t->z_rows = fx_get(&x, "z_rows", -1, &nr);
    t->n_rows = (int)nr;
    t->z_slice = fx_get(&x, "z_slice", nr * T * cz, NULL);
  }
  ok = charge && mask && uid && a2t && el && nm && t->hotspot && templ && tmask && t->s_expect &&
       (t->z_full || (t->z_rows && t->z_slice));
  if (ok) {
    memcpy((float *)t->f.ref_pos, pos, sizeof(float) * (size_t)N * 3);
    memcpy((float *)t->f.ref_charge, charge, sizeof(float) * (size_t)N);
    memcpy((float *)t->f.ref_mask, mask, sizeof(float) * (size_t)N);
    float *ref_el = (float *)t->f.ref_element, *ref_nc = (float *)t->f.ref_atom_name_chars;
    for (int n = 0; n < N; n++) {
      ((int64_t *)t->f.ref_space_uid)[n] = (int64_t)uid[n];
      ((int64_t *)t->f.atom_to_token_idx)[n] = (int64_t)a2t[n];
      ref_el[(size_t)n * 128 + (int)el[n]] = 1.0f;
      for (int c = 0; c < 4; c++) ref_nc[(size_t)n * 256 + c * 64 + (int)nm[n * 4 + c]] = 1.0f;
    }
    t->templ = malloc(sizeof(int64_t) * (size_t)T * T);
    t->mask = malloc((size_t)T * T);
    for (int64_t i = 0; i < (int64_t)T * T; i++) {
      t->templ[i] = (int64_t)templ[i];
      t->mask[i] = (uint8_t)tmask[i];
    }
  }
  free(pos);
  free(charge);
  free(mask);
  free(uid);
  free(a2t);
  free(el);
  free(nm);
  free(templ);
  free(tmask);
  px_tensorfile_close(&x.tf);
  if (!ok) task_free(t);
  return ok;
}

/* bfloat16 rounding to nearest even, written apart from the engine's: the two bf16
 * neighbours of x and the nearer one (ties: the one with an even last mantissa bit). */
static float bf16_ref(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
  float fl, fh;
  memcpy(&fl, &lo, 4);
  memcpy(&fh, &hi, 4);
  double dl = fabs((double)x - fl), dh = fabs((double)fh - x);
  if (dl < dh) return fl;
  if (dh < dl) return fh;
  return (lo & 0x10000u) ? fh : fl;
}

/* ------------------------------------------------------------ upstream ---- */

static void test_upstream_on(const char *name, int device);

static void test_upstream(const char *name) {
  test_upstream_on(name, PX_DEVICE_CPU);
  /* The same on the GPU when there is one (fp32 there: the same bound). */
  if (px_cuda_device_count() > 0) test_upstream_on(name, PX_DEVICE_CUDA);
}

static void test_upstream_on(const char *name, int device) {
  char path[4600];
  snprintf(path, sizeof path, "%s/weights.safetensors", data_dir);
  px_embedder *e = NULL;
  int rc = px_embedder_load(path, &e);
  CHECK_MSG(rc == 0, "px_embedder_load(%s): %s", path, px_last_error());
  if (rc) return;
  if (device != PX_DEVICE_CPU) {
    rc = px_embedder_set_backend(e, device);
    CHECK_MSG(rc == 0, "px_embedder_set_backend: %s", px_last_error());
    CHECK(!strcmp(px_embedder_backend_name(e), "cuda:0"));
    if (rc) {
      px_embedder_free(e);
      return;
    }
  }
  px_embedder_dims D;
  CHECK(px_embedder_get_dims(e, &D) == 0);
  CHECK(D.c_atom == 32 && D.c_atompair == 8 && D.c_token == 48 && D.c_s_inputs == 40 && D.c_z == 16 &&
        D.n_blocks == 3 && D.n_heads == 4);
  task t;
  if (!task_load(name, D.c_s_inputs, D.c_z, &t)) {
    px_embedder_free(e);
    return;
  }
  const int T = t.T, cs = D.c_s_inputs, cz = D.c_z;
  const size_t ns = (size_t)T * cs, nz = (size_t)T * T * cz;
  float *s = malloc(sizeof(float) * ns), *z = malloc(sizeof(float) * nz);
  float *s16 = malloc(sizeof(float) * ns), *z16 = malloc(sizeof(float) * nz);
  tu_poison(s, ns);
  tu_poison(z, nz);
  tu_poison(s16, ns);
  tu_poison(z16, nz);
  rc = px_embed(e, &t.f, t.restype, t.hotspot, t.templ, t.mask, PX_EMBED_FP32, s, z);
  CHECK_MSG(rc == 0, "px_embed: %s", px_last_error());
  double es = tu_rel_err_ff(s, t.s_expect, ns);
  CHECK_MSG(es <= TOL, "%s: s_inputs relative error %.3g > %g", name, es, TOL);
  double ez = 0;
  if (t.z_full) {
    ez = tu_rel_err_ff(z, t.z_full, nz);
    CHECK_MSG(ez <= TOL, "%s: z_trunk relative error %.3g", name, ez);
  } else {
    for (int k = 0; k < t.n_rows; k++) {
      const int i = (int)t.z_rows[k];
      CHECK(i >= 0 && i < T);
      if (i < 0 || i >= T) continue;
      double e1 = tu_rel_err_ff(z + (size_t)i * T * cz, t.z_slice + (size_t)k * T * cz, (size_t)T * cz);
      if (e1 > ez) ez = e1;
    }
    CHECK_MSG(ez <= TOL, "%s: z_trunk rows relative error %.3g", name, ez);
    /* Every other row: the lookup recomputed from the fixture's embedding table. */
    fixture w;
    if (fx_open(&w, "weights.safetensors")) {
      float *E = fx_get(&w, PX_EMBED_PREFIX "condition_template_embedder.embedder.weight", 65 * cz, NULL);
      size_t bad = 0;
      for (int64_t ij = 0; E && ij < (int64_t)T * T; ij++) {
        const int64_t row = t.mask[ij] ? 1 + t.templ[ij] : 0;
        for (int c = 0; c < cz; c++) bad += z[(size_t)ij * cz + c] != E[row * cz + c];
      }
      CHECK_MSG(E && bad == 0, "%s: %zu z_trunk values differ from the embedding lookup", name, bad);
      free(E);
      px_tensorfile_close(&w.tf);
    }
  }
  /* bf16: s_inputs is the fp32 result rounded to bfloat16; z_trunk identical. */
  rc = px_embed(e, &t.f, t.restype, t.hotspot, t.templ, t.mask, PX_EMBED_BF16, s16, z16);
  CHECK_MSG(rc == 0, "px_embed bf16: %s", px_last_error());
  size_t bad = 0;
  for (size_t i = 0; i < ns; i++) bad += !(s16[i] == bf16_ref(s[i]));
  CHECK_MSG(bad == 0, "%s: %zu bf16 values are not the fp32 ones rounded", name, bad);
  double e16 = tu_rel_err_ff(s16, t.s_expect, ns);
  CHECK_MSG(e16 <= 4e-3 && e16 > 1e-5, "%s: bf16 s_inputs relative error %.3g", name, e16);
  CHECK(memcmp(z, z16, sizeof(float) * nz) == 0);
  printf("%s [%s] (T %d, N %d): s_inputs rel err %.2e, z_trunk %.2e; bf16 s_inputs %.2e\n", name, px_embedder_backend_name(e), T, t.N, es, ez, e16);
  free(s);
  free(z);
  free(s16);
  free(z16);
  task_free(&t);
  px_embedder_free(e);
}

/* A check of the check: without the atom transformer's residual updates (every block's
 * attention and transition outputs zeroed) s_inputs moves far outside the bound, so the
 * comparison above covers the transformer (its share of s_inputs is ~5e-3 with these
 * weights; the engine matches upstream to ~5e-8). */
static void test_upstream_sensitivity(void) {
  char path[4600];
  snprintf(path, sizeof path, "%s/weights.safetensors", data_dir);
  px_tensorfile tf;
  char err[512];
  if (px_tensorfile_open(path, &tf, err, sizeof err)) {
    CHECK_MSG(0, "%s: %s", path, err);
    return;
  }
  /* All tensors in memory, the blocks' linear_o and linear_nobias_b zeroed. */
  const int n = tf.n;
  const char **names = calloc((size_t)n, sizeof *names);
  float **data = calloc((size_t)n, sizeof *data);
  int *ndims = calloc((size_t)n, sizeof *ndims);
  const int64_t **shapes = calloc((size_t)n, sizeof *shapes);
  for (int i = 0; i < n; i++) {
    const px_tensor_entry *en = &tf.t[i];
    names[i] = en->name;
    ndims[i] = en->ndim;
    shapes[i] = en->shape;
    data[i] = malloc(sizeof(float) * (size_t)px_entry_numel(en));
    CHECK(px_tensorfile_read_f32(&tf, en, data[i], err, sizeof err) == 0);
    if (strstr(en->name, "attention.linear_o.weight") || strstr(en->name, "linear_nobias_b.weight"))
      for (int64_t k = 0; k < px_entry_numel(en); k++) data[i][k] = 0.0f;
  }
  px_embedder *e = NULL;
  int rc = px_embedder_from_arrays(n, names, (const float *const *)data, ndims, shapes, &e);
  CHECK_MSG(rc == 0, "%s", px_last_error());
  task t;
  if (!rc && task_load("small", 40, 16, &t)) {
    float *s = malloc(sizeof(float) * (size_t)t.T * 40);
    CHECK(px_embed(e, &t.f, t.restype, t.hotspot, NULL, NULL, PX_EMBED_FP32, s, NULL) == 0);
    double es = tu_rel_err_ff(s, t.s_expect, (size_t)t.T * 40);
    printf("without the atom transformer's updates: s_inputs relative error %.3g\n", es);
    CHECK_MSG(es > 10 * TOL, "the atom transformer's updates change s_inputs by %.3g only", es);
    free(s);
    task_free(&t);
  }
  px_embedder_free(e);
  for (int i = 0; i < n; i++) free(data[i]);
  free(names);
  free(data);
  free(ndims);
  free(shapes);
  px_tensorfile_close(&tf);
}

/* ------------------------------------------------------------- loading ---- */

/* Write the fixture weights to path, leaving out tensor `drop` or giving `reshape` the
 * shape d0 x d1 (same values, for a mis-shaped tensor). */
static int write_variant(const char *path, const char *drop, const char *reshape, int64_t d0, int64_t d1) {
  char src[4600], err[512];
  snprintf(src, sizeof src, "%s/weights.safetensors", data_dir);
  px_tensorfile tf;
  if (px_tensorfile_open(src, &tf, err, sizeof err)) return -1;
  px_st_write_item *items = calloc((size_t)tf.n, sizeof *items);
  float **bufs = calloc((size_t)tf.n, sizeof *bufs);
  int64_t (*shapes)[2] = calloc((size_t)tf.n, sizeof *shapes);
  int k = 0, rc = 0;
  for (int i = 0; i < tf.n; i++) {
    const px_tensor_entry *e = &tf.t[i];
    if (drop && !strcmp(e->name, drop)) continue;
    int64_t n = px_entry_numel(e);
    bufs[k] = malloc(sizeof(float) * (size_t)(n + 64));
    memset(bufs[k], 0, sizeof(float) * (size_t)(n + 64));
    rc |= px_tensorfile_read_f32(&tf, e, bufs[k], err, sizeof err);
    items[k].name = e->name;
    items[k].ndim = e->ndim;
    items[k].shape = e->shape;
    if (reshape && !strcmp(e->name, reshape)) {
      shapes[k][0] = d0;
      shapes[k][1] = d1;
      items[k].ndim = d1 > 0 ? 2 : 1;
      items[k].shape = shapes[k];
      CHECK(d0 * (d1 > 0 ? d1 : 1) <= n + 64);
    }
    items[k].data = bufs[k];
    k++;
  }
  rc |= px_safetensors_write(path, items, k, err, sizeof err);
  for (int i = 0; i < k; i++) free(bufs[i]);
  free(bufs);
  free(items);
  free(shapes);
  px_tensorfile_close(&tf);
  return rc;
}

static void expect_load_error(const char *path, const char *name, const char *what) {
  px_embedder *e = (px_embedder *)0x1;
  int rc = px_embedder_load(path, &e);
  const char *m = px_last_error();
  CHECK_MSG(rc == PX_ERR_WEIGHTS, "%s: rc %d", what, rc);
  CHECK(e == NULL);
  CHECK_MSG(strstr(m, name) != NULL, "%s: message does not name %s: %s", what, name, m);
  CHECK(tu_one_line(m));
  if (e && e != (px_embedder *)0x1) px_embedder_free(e);
}

static void test_loading(void) {
  char dir[256], path[512];
  snprintf(dir, sizeof dir, "/tmp/pxdiff_test_embedder_%ld", (long)getpid());
  snprintf(path, sizeof path, "%s.safetensors", dir);
  const char *B = PX_EMBED_PREFIX "input_embedder.atom_attention_encoder.";
  char names[6][300];
  snprintf(names[0], 300, "%slinear_no_bias_f.weight", B);
  snprintf(names[1], 300, "%satom_transformer.diffusion_transformer.blocks.2.conditioned_transition_block.linear_s.bias", B);
  snprintf(names[2], 300, PX_EMBED_PREFIX "input_embedder.input_map.bias");
  snprintf(names[3], 300, PX_EMBED_PREFIX "condition_template_embedder.embedder.weight");
  snprintf(names[4], 300, "%ssmall_mlp.3.weight", B);
  snprintf(names[5], 300, "%satom_transformer.diffusion_transformer.blocks.1.attention_pair_bias.layernorm_kv.linear_s.weight", B);
  for (int i = 0; i < 6; i++) {
    CHECK(write_variant(path, names[i], NULL, 0, 0) == 0);
    expect_load_error(path, names[i], "missing");
  }
  /* mis-shaped: transposed, one column short, one dimension */
  CHECK(write_variant(path, NULL, names[0], 385, 32) == 0);
  expect_load_error(path, names[0], "transposed");
  CHECK(write_variant(path, NULL, names[5], 32, 31) == 0);
  expect_load_error(path, names[5], "narrow");
  CHECK(write_variant(path, NULL, names[4], 64, -1) == 0);
  expect_load_error(path, names[4], "1-D");
  char q[300];
  snprintf(q, sizeof q, "%slinear_no_bias_q.weight", B);
  CHECK(write_variant(path, NULL, q, 48, 31) == 0);
  expect_load_error(path, q, "q");
  /* the untouched copy loads */
  CHECK(write_variant(path, NULL, NULL, 0, 0) == 0);
  px_embedder *e = NULL;
  CHECK_MSG(px_embedder_load(path, &e) == 0, "%s", px_last_error());
  CHECK(px_embedder_n_params(e) > 0);
  px_embedder_free(e);
  remove(path);
  e = (px_embedder *)0x1;
  CHECK(px_embedder_load("/nonexistent/weights.pt", &e) == PX_ERR_IO && e == NULL);
}

/* ------------------------------------------------------------ bad input ---- */

static void test_bad_inputs(void) {
  px_embedder_dims D = {32, 8, 48, 40, 16, 2, 4};
  px_embedder *e = NULL;
  int rc = px_embedder_synthetic(&D, 5, &e);
  CHECK_MSG(rc == 0, "%s", px_last_error());
  task t;
  if (rc || !task_load("small", 40, 16, &t)) {
    px_embedder_free(e);
    return;
  }
  const int T = t.T, N = t.N;
  const size_t ns = (size_t)T * 40, nz = (size_t)T * T * 16;
  float *s = malloc(sizeof(float) * ns), *z = malloc(sizeof(float) * nz);
  for (size_t i = 0; i < ns; i++) s[i] = 7.0f;
  for (size_t i = 0; i < nz; i++) z[i] = 7.0f;
  CHECK(px_embed(e, &t.f, t.restype, t.hotspot, t.templ, t.mask, PX_EMBED_FP32, s, z) == 0);
  for (size_t i = 0; i < ns; i++) s[i] = 7.0f;
  for (size_t i = 0; i < nz; i++) z[i] = 7.0f;
  int64_t *a2t = (int64_t *)t.f.atom_to_token_idx;
  int64_t *a2t_keep = malloc(sizeof(int64_t) * (size_t)N);
  memcpy(a2t_keep, a2t, sizeof(int64_t) * (size_t)N);
  float *pos = (float *)t.f.ref_pos;
  struct { const char *what, *msg; } cases[] = {
      {"descending atom_to_token_idx", "not ascending"}, {"token out of range", "out of range"},
      {"last token without atoms", "no atoms"},        {"NaN ref_pos", "ref_pos"},
      {"templ out of range", "conditional_templ["},    {"mask 2", "conditional_templ_mask["},
      {"zero tokens", "tokens"},                       {"NULL restype", "restype"},
      {"bad dtype", "dtype"}};
  for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
    px_features f = t.f;
    const float *restype = t.restype;
    int dtype = PX_EMBED_FP32;
    int64_t keep_a = a2t[N / 2];
    float keep_p = pos[5];
    int64_t ij = (int64_t)3 * T + 5;
    int64_t keep_t = t.templ[ij];
    uint8_t keep_m = t.mask[ij];
    switch (c) {
      case 0: a2t[N / 2] = a2t[N / 2] + 2; break;
      case 1: a2t[N - 1] = T; break;
      case 2: /* the last token's atoms moved to the one before */
        for (int n = 0; n < N; n++)
          if (a2t[n] == T - 1) a2t[n] = T - 2;
        break;
      case 3: pos[5] = NAN; break;
      case 4: t.mask[ij] = 1; t.templ[ij] = 64; break;
      case 5: t.mask[ij] = 2; break;
      case 6: f.n_token = 0; break;
      case 7: restype = NULL; break;
      case 8: dtype = 3; break;
    }
    rc = px_embed(e, &f, restype, t.hotspot, t.templ, t.mask, dtype, s, z);
    const char *m = px_last_error();
    CHECK_MSG(rc == PX_ERR_INPUT, "%s: rc %d", cases[c].what, rc);
    CHECK_MSG(strstr(m, cases[c].msg) && tu_one_line(m), "%s: message %s", cases[c].what, m);
    a2t[N / 2] = keep_a;
    memcpy(a2t, a2t_keep, sizeof(int64_t) * (size_t)N);
    pos[5] = keep_p;
    t.templ[ij] = keep_t;
    t.mask[ij] = keep_m;
  }
  size_t touched = 0;
  for (size_t i = 0; i < ns; i++) touched += s[i] != 7.0f;
  for (size_t i = 0; i < nz; i++) touched += z[i] != 7.0f;
  CHECK_MSG(touched == 0, "%zu output values written by failed calls", touched);
  free(a2t_keep);
  /* Without a GPU, asking for CUDA fails and leaves the embedder on the CPU, working. */
  if (px_cuda_device_count() == 0) {
    CHECK(px_embedder_set_backend(e, PX_DEVICE_CUDA) == PX_ERR_BACKEND);
    CHECK(tu_one_line(px_last_error()));
    CHECK(!strcmp(px_embedder_backend_name(e), "cpu"));
    CHECK(px_embedder_set_backend(e, PX_DEVICE_AUTO) == 0);
    CHECK(!strcmp(px_embedder_backend_name(e), "cpu"));
  }
  CHECK(px_embedder_set_backend(e, 7) == PX_ERR_INPUT);
  /* z_trunk is optional */
  CHECK(px_embed(e, &t.f, t.restype, t.hotspot, NULL, NULL, PX_EMBED_FP32, s, NULL) == 0);
  free(s);
  free(z);
  task_free(&t);
  px_embedder_free(e);
}

/* ------------------------------------------------ released widths, synthetic ---- */

static void test_released_synthetic(void) {
  px_embedder_dims D;
  px_embedder_dims_released(&D);
  px_embedder *e = NULL;
  int rc = px_embedder_synthetic(&D, 11, &e);
  CHECK_MSG(rc == 0, "%s", px_last_error());
  if (rc) return;
  px_embedder_dims G;
  px_embedder_get_dims(e, &G);
  CHECK(!memcmp(&G, &D, sizeof D));
  /* 96 tensors of the released checkpoint (docs/design-spec.md 8.3): 1243311 values; the
   * engine keeps input_map as two matrices, the same count. */
  CHECK_MSG(px_embedder_n_params(e) == 1243311, "%lld", (long long)px_embedder_n_params(e));
  task t;
  if (task_load("small", 40, 16, &t)) {
    const size_t ns = (size_t)t.T * D.c_s_inputs, nz = (size_t)t.T * t.T * D.c_z;
    float *s = malloc(sizeof(float) * ns), *s2 = malloc(sizeof(float) * ns), *z = malloc(sizeof(float) * nz);
    tu_poison(s, ns);
    tu_poison(s2, ns);
    tu_poison(z, nz);
    CHECK(px_embed(e, &t.f, t.restype, t.hotspot, t.templ, t.mask, PX_EMBED_FP32, s, z) == 0);
    CHECK(px_embed(e, &t.f, t.restype, t.hotspot, t.templ, t.mask, PX_EMBED_FP32, s2, NULL) == 0);
    CHECK(tu_rel_err_ff(s, s, ns) == 0.0); /* finite */
    CHECK(memcmp(s, s2, sizeof(float) * ns) == 0);
    CHECK(tu_rel_err_ff(z, z, nz) == 0.0);
    free(s);
    free(s2);
    free(z);
    task_free(&t);
  }
  px_embedder_free(e);
}

/* The released checkpoint's layout (tests/data/reference/pxdesign_v0.1.0_params.tsv: every
 * design_condition_embedder.* name and shape), with random values, every other name carrying
 * "module.": it loads, with the released widths; without one tensor it fails naming it. */
static void test_released_layout(void) {
  const char *dir = getenv("PXDIFF_TEST_DATA");
  char path[4096];
  snprintf(path, sizeof path, "%s/reference/pxdesign_v0.1.0_params.tsv", dir && dir[0] ? dir : "tests/data");
  FILE *fp = fopen(path, "r");
  CHECK_MSG(fp != NULL, "%s not found", path);
  if (!fp) return;
  enum { MAXT = 200 };
  static char names[MAXT][320];
  static int64_t shapes[MAXT][2];
  int ndims[MAXT], n = 0;
  char line[1024];
  while (fgets(line, sizeof line, fp)) {
    char name[300], shape[64];
    if (sscanf(line, "%299s %63s", name, shape) != 2 || strncmp(name, PX_EMBED_PREFIX, strlen(PX_EMBED_PREFIX))) continue;
    CHECK(n < MAXT);
    if (n >= MAXT) break;
    snprintf(names[n], sizeof names[n], "%s%s", n % 2 ? "module." : "", name);
    long long a = 0, b = 0;
    int k = sscanf(shape, "%lldx%lld", &a, &b);
    ndims[n] = k == 2 ? 2 : 1;
    shapes[n][0] = a;
    shapes[n][1] = k == 2 ? b : 1;
    n++;
  }
  fclose(fp);
  CHECK_MSG(n == 96, "%d embedder tensors in the table", n);
  const char *np[MAXT];
  const float *dp[MAXT];
  const int64_t *sp[MAXT];
  float *bufs[MAXT];
  for (int i = 0; i < n; i++) {
    size_t cnt = (size_t)(shapes[i][0] * shapes[i][1]);
    bufs[i] = malloc(sizeof(float) * cnt);
    tu_fill_normal(bufs[i], cnt, 0.05);
    np[i] = names[i];
    dp[i] = bufs[i];
    sp[i] = shapes[i];
  }
  px_embedder *e = NULL;
  int rc = px_embedder_from_arrays(n, np, dp, ndims, sp, &e);
  CHECK_MSG(rc == 0, "released layout: %s", px_last_error());
  if (!rc) {
    px_embedder_dims D, R;
    px_embedder_get_dims(e, &D);
    px_embedder_dims_released(&R);
    CHECK(!memcmp(&D, &R, sizeof D));
    CHECK(px_embedder_n_params(e) == 1243311);
  }
  px_embedder_free(e);
  /* leave one out (the arrays source keeps the names; swap it to the end and pass n - 1) */
  for (int drop = 0; drop < n; drop += 17) {
    const char *t1 = np[drop];
    np[drop] = np[n - 1];
    np[n - 1] = t1;
    const float *t2 = dp[drop];
    dp[drop] = dp[n - 1];
    dp[n - 1] = t2;
    const int64_t *t3 = sp[drop];
    sp[drop] = sp[n - 1];
    sp[n - 1] = t3;
    int t4 = ndims[drop];
    ndims[drop] = ndims[n - 1];
    ndims[n - 1] = t4;
    e = NULL;
    rc = px_embedder_from_arrays(n - 1, np, dp, ndims, sp, &e);
    const char *want = strncmp(np[n - 1], "module.", 7) ? np[n - 1] : np[n - 1] + 7;
    CHECK_MSG(rc == PX_ERR_WEIGHTS && e == NULL && strstr(px_last_error(), want), "without %s: rc %d, %s", want, rc,
              px_last_error());
    px_embedder_free(e);
  }
  for (int i = 0; i < n; i++) free(bufs[i]);
}

/* px_embed keeps its host buffers in the embedder between calls (grown when a larger design
 * comes). A small design after a large one, then the large one again, must give exactly what
 * a fresh embedder gives: nothing of an earlier call may leak into a later one. */
static void embed_pair(px_embedder *e, const task *t, int cs, int cz, float **s, float **z) {
  const size_t ns = (size_t)t->T * cs, nz = (size_t)t->T * t->T * cz;
  *s = malloc(sizeof(float) * ns);
  *z = malloc(sizeof(float) * nz);
  if (!*s || !*z) return;
  tu_poison(*s, ns);
  tu_poison(*z, nz);
  int rc = px_embed(e, &t->f, t->restype, t->hotspot, t->templ, t->mask, PX_EMBED_FP32, *s, *z);
  CHECK_MSG(rc == 0, "px_embed: %s", px_last_error());
}

static void test_scratch_reuse(void) {
  char path[4600];
  snprintf(path, sizeof path, "%s/weights.safetensors", data_dir);
  px_embedder *e = NULL, *fresh = NULL;
  if (px_embedder_load(path, &e) || px_embedder_load(path, &fresh)) {
    CHECK_MSG(0, "px_embedder_load: %s", px_last_error());
    px_embedder_free(e);
    px_embedder_free(fresh);
    return;
  }
  px_embedder_dims D;
  px_embedder_get_dims(e, &D);
  task big, small;
  if (!task_load("quick_start", D.c_s_inputs, D.c_z, &big)) goto out;
  if (!task_load("small", D.c_s_inputs, D.c_z, &small)) {
    task_free(&big);
    goto out;
  }
  CHECK(small.N < big.N);
  float *s[4] = {0}, *z[4] = {0};
  embed_pair(e, &big, D.c_s_inputs, D.c_z, &s[0], &z[0]);
  embed_pair(e, &small, D.c_s_inputs, D.c_z, &s[1], &z[1]);
  embed_pair(e, &big, D.c_s_inputs, D.c_z, &s[2], &z[2]);
  embed_pair(fresh, &small, D.c_s_inputs, D.c_z, &s[3], &z[3]);
  const size_t nb = (size_t)big.T * D.c_s_inputs, ns = (size_t)small.T * D.c_s_inputs;
  CHECK_MSG(s[0] && s[2] && memcmp(s[0], s[2], sizeof(float) * nb) == 0,
            "the large design embedded again after a small one differs");
  CHECK_MSG(s[1] && s[3] && memcmp(s[1], s[3], sizeof(float) * ns) == 0,
            "a small design after a large one differs from a fresh embedder's");
  for (int i = 0; i < 4; i++) {
    free(s[i]);
    free(z[i]);
  }
  task_free(&big);
  task_free(&small);
out:
  px_embedder_free(e);
  px_embedder_free(fresh);
}

/* The atom transformer's s-side terms from the sparse reference features (px_embedder_sside,
 * the path px_embed takes) against the dense path: c from px_atom_ref_single, then LN and
 * every block's C x C products (px_atom_block_cache_build, the path checked against upstream
 * through the diffusion module). Fresh random features that exercise what the sparse sums
 * must get right: one-hot rows, rows with several or fractional entries, a mask of 0, 1 and
 * values between, charges of both signs, positions far from the origin (a large mean of c). */
static void test_sside_sparse(void) {
  char path[4600];
  snprintf(path, sizeof path, "%s/weights.safetensors", data_dir);
  px_embedder *e = NULL;
  px_embedder_w w;
  memset(&w, 0, sizeof w);
  if (px_embedder_load(path, &e) || px_embedder_w_load(path, &w)) {
    CHECK_MSG(0, "load: %s", px_last_error());
    px_embedder_free(e);
    return;
  }
  const int N = 77, C = w.tf.c, nb = w.tf.n_blocks;
  float *pos = malloc(sizeof(float) * N * 3), *chg = malloc(sizeof(float) * N), *mask = malloc(sizeof(float) * N);
  float *el = calloc((size_t)N * 128, sizeof(float)), *nc = calloc((size_t)N * 256, sizeof(float));
  float *c = malloc(sizeof(float) * N * C), *scratch = malloc(sizeof(float) * N * C);
  float *bufs = malloc(sizeof(float) * (size_t)2 * nb * 8 * N * C);
  px_atom_block_cache *dense = calloc((size_t)nb, sizeof *dense), *sparse = calloc((size_t)nb, sizeof *sparse);
  if (!pos || !chg || !mask || !el || !nc || !c || !scratch || !bufs || !dense || !sparse) {
    CHECK_MSG(0, "out of memory");
    goto out;
  }
  for (int n = 0; n < N; n++) {
    for (int d = 0; d < 3; d++) pos[n * 3 + d] = (float)(40.0 + 8.0 * tu_normal());
    chg[n] = (float)(n % 5 == 0 ? 2.0 * tu_normal() : 0.0);
    mask[n] = n % 11 == 3 ? 0.0f : n % 13 == 5 ? 0.37f : 1.0f;
    el[(size_t)n * 128 + (int)(tu_uniform() * 128)] = 1.0f;
    for (int k = 0; k < 4; k++) nc[(size_t)n * 256 + 64 * k + (int)(tu_uniform() * 64)] = 1.0f;
    if (n % 7 == 2) /* not one-hot: several and fractional entries */
      for (int j = 0; j < 20; j++) {
        el[(size_t)n * 128 + (int)(tu_uniform() * 128)] += (float)tu_normal();
        nc[(size_t)n * 256 + (int)(tu_uniform() * 256)] = (float)tu_uniform();
      }
  }
  px_features f;
  memset(&f, 0, sizeof f);
  f.n_atom = N;
  f.ref_pos = pos, f.ref_charge = chg, f.ref_mask = mask, f.ref_element = el, f.ref_atom_name_chars = nc;
  tu_poison(bufs, (size_t)2 * nb * 8 * N * C);
  for (int k = 0; k < nb; k++) {
    px_atom_block_cache *cs[2] = {&dense[k], &sparse[k]};
    for (int v = 0; v < 2; v++) {
      float **b[8] = {&cs[v]->g_a, &cs[v]->b_a, &cs[v]->g_kv, &cs[v]->b_kv, &cs[v]->gate_last, &cs[v]->g_c,
                      &cs[v]->b_c, &cs[v]->gate_ctb};
      for (int i = 0; i < 8; i++) *b[i] = bufs + ((size_t)(v * nb + k) * 8 + i) * N * C;
    }
  }
  px_atom_ref_single(px_cpu_backend(), &w.ref, &f, c);
  int64_t bytes = 0;
  CHECK(px_atom_block_cache_build(px_cpu_backend(), &w.tf, &w.tf, N, c, scratch, dense, &bytes) == 0);
  CHECK(px_embedder_sside(e, &f, sparse) == 0);
  double worst = 0;
  for (int k = 0; k < nb; k++) {
    const float *d[8] = {dense[k].g_a, dense[k].b_a, dense[k].g_kv, dense[k].b_kv, dense[k].gate_last,
                         dense[k].g_c, dense[k].b_c, dense[k].gate_ctb};
    const float *s[8] = {sparse[k].g_a, sparse[k].b_a, sparse[k].g_kv, sparse[k].b_kv, sparse[k].gate_last,
                         sparse[k].g_c, sparse[k].b_c, sparse[k].gate_ctb};
    for (int i = 0; i < 8; i++) {
      const double err = tu_rel_err_ff(s[i], d[i], (size_t)N * C);
      CHECK_MSG(err <= 1e-5, "block %d term %d: sparse s-side terms %.3g from the dense path", k, i, err);
      if (err > worst) worst = err;
    }
  }
  printf("s-side terms from the sparse features: worst relative error %.2e against the dense path\n", worst);
out:
  free(pos), free(chg), free(mask), free(el), free(nc), free(c), free(scratch), free(bufs), free(dense), free(sparse);
  px_embedder_w_free(&w);
  px_embedder_free(e);
}

/* s_inputs does not depend on the engine's thread count: 1, 2 and 4 threads give the same
 * bits, for the fixture's embedder (head width 8: the generic attention) and one at the
 * released widths (head width 32: the AVX-512 attention where the CPU has it; pair width 16). */
static void test_threads(void) {
  char path[4600];
  snprintf(path, sizeof path, "%s/weights.safetensors", data_dir);
  px_embedder *es[2] = {NULL, NULL};
  px_embedder_dims D;
  px_embedder_dims_released(&D);
  if (px_embedder_load(path, &es[0]) || px_embedder_synthetic(&D, 5, &es[1])) {
    CHECK_MSG(0, "embedder: %s", px_last_error());
    px_embedder_free(es[0]);
    px_embedder_free(es[1]);
    return;
  }
  px_embedder_dims F; /* the fixture's widths (its expected outputs; the features are the same) */
  px_embedder_get_dims(es[0], &F);
  for (int v = 0; v < 2; v++) {
    px_embedder_dims E;
    px_embedder_get_dims(es[v], &E);
    task t;
    if (!task_load("quick_start", F.c_s_inputs, F.c_z, &t)) continue;
    const size_t ns = (size_t)t.T * E.c_s_inputs;
    float *s[3];
    for (int th = 0; th < 3; th++) {
      s[th] = malloc(sizeof(float) * ns);
      tu_poison(s[th], ns);
      px_set_num_threads(1 << th);
      CHECK_MSG(px_embed(es[v], &t.f, t.restype, t.hotspot, NULL, NULL, PX_EMBED_FP32, s[th], NULL) == 0, "px_embed: %s",
                px_last_error());
    }
    px_set_num_threads(0);
    CHECK(tu_rel_err_ff(s[0], s[0], ns) == 0.0); /* finite */
    CHECK_MSG(!memcmp(s[0], s[1], sizeof(float) * ns) && !memcmp(s[0], s[2], sizeof(float) * ns),
              "embedder %d: s_inputs differs between 1, 2 and 4 threads", v);
    for (int th = 0; th < 3; th++) free(s[th]);
    task_free(&t);
  }
  px_embedder_free(es[0]);
  px_embedder_free(es[1]);
}

/* The pair pass at 16-row tiles (x86 with AVX-512) against 8-row tiles (PXDIFF_CPU_PAIR=generic,
 * the width checked against upstream through s_inputs above): the same bits in every head's
 * bias plane and in p itself, on the quick-start task's features with fresh random c (1250
 * atoms: a partial last trunk, padded query rows and keys cut by both ends), one atom's
 * position NaN (the NaN planes must match too); then s_inputs at the released widths (pair width 16) from
 * both. Where the 16-row tiles are not built both runs take the 8-row ones. */
static void test_pair_widths(void) {
  char path[4600];
  snprintf(path, sizeof path, "%s/weights.safetensors", data_dir);
  px_embedder_w w;
  memset(&w, 0, sizeof w);
  if (px_embedder_w_load(path, &w)) {
    CHECK_MSG(0, "load: %s", px_last_error());
    return;
  }
  task t;
  if (!task_load("quick_start", w.dims.c_s_inputs, w.dims.c_z, &t)) {
    px_embedder_w_free(&w);
    return;
  }
  const int N = t.N, ca = w.ref.cl.in, cp = w.ref.d.out, nt = (N + PX_ATOM_NQ - 1) / PX_ATOM_NQ;
  const int64_t P = (int64_t)nt * PX_ATOM_NQ * PX_ATOM_NK;
  const size_t plane = (size_t)w.tf.n_heads * P;
  float *c = malloc(sizeof(float) * (size_t)N * ca);
  for (size_t i = 0; i < (size_t)N * ca; i++) c[i] = (float)tu_normal();
  for (int v = 0; v < 2; v++) {
    if (v) ((float *)t.f.ref_pos)[(size_t)(N / 3) * 3 + 1] = NAN; /* (a NaN in c would meet a ReLU first) */
    float *bias[2], *p[2];
    for (int k = 0; k < 2; k++) {
      px_atom_block_cache *cache = calloc((size_t)w.tf.n_blocks, sizeof *cache);
      bias[k] = malloc(sizeof(float) * plane * w.tf.n_blocks);
      p[k] = malloc(sizeof(float) * (size_t)P * cp);
      tu_poison(bias[k], plane * w.tf.n_blocks);
      tu_poison(p[k], (size_t)P * cp);
      for (int b = 0; b < w.tf.n_blocks; b++) cache[b].pair_bias = bias[k] + b * plane;
      const px_transformer_w *tfs[1] = {&w.tf};
      px_atom_block_cache *caches[1] = {cache};
      int64_t bytes = 0;
      if (k == 0) setenv("PXDIFF_CPU_PAIR", "generic", 1);
      CHECK(px_atom_pair_bias_build(px_cpu_backend(), &w.ref, &t.f, c, NULL, tfs, tfs, caches, 1, p[k], &bytes) == 0);
      unsetenv("PXDIFF_CPU_PAIR");
      free(cache);
    }
    size_t nan = 0;
    for (size_t i = 0; i < plane * w.tf.n_blocks; i++) nan += isnan(bias[1][i]) != 0;
    CHECK_MSG(!memcmp(bias[0], bias[1], sizeof(float) * plane * w.tf.n_blocks),
              "pair bias planes differ between 8- and 16-row tiles (NaN case %d)", v);
    CHECK_MSG(!memcmp(p[0], p[1], sizeof(float) * (size_t)P * cp), "p differs between 8- and 16-row tiles (NaN case %d)", v);
    CHECK_MSG(v ? nan > 0 : nan == 0, "NaN case %d: %zu NaN biases", v, nan);
    for (int k = 0; k < 2; k++) free(bias[k]), free(p[k]);
  }
  free(c);
  task_free(&t);
  px_embedder_w_free(&w);
  /* released widths, end to end */
  px_embedder_dims D;
  px_embedder_dims_released(&D);
  px_embedder *e = NULL;
  if (px_embedder_synthetic(&D, 9, &e) || !task_load("quick_start", 40, 16, &t)) {
    CHECK_MSG(0, "synthetic embedder or task: %s", px_last_error());
    px_embedder_free(e);
    return;
  }
  const size_t ns = (size_t)t.T * D.c_s_inputs;
  float *s[2];
  for (int k = 0; k < 2; k++) {
    s[k] = malloc(sizeof(float) * ns);
    tu_poison(s[k], ns);
    if (k == 0) setenv("PXDIFF_CPU_PAIR", "generic", 1);
    CHECK(px_embed(e, &t.f, t.restype, t.hotspot, NULL, NULL, PX_EMBED_FP32, s[k], NULL) == 0);
    unsetenv("PXDIFF_CPU_PAIR");
  }
  CHECK(tu_rel_err_ff(s[0], s[0], ns) == 0.0);
  CHECK_MSG(!memcmp(s[0], s[1], sizeof(float) * ns), "released widths: s_inputs differs between 8- and 16-row pair tiles");
  free(s[0]), free(s[1]);
  task_free(&t);
  px_embedder_free(e);
}

int main(void) {
  tu_seed();
  set_data_dir();
  test_upstream("quick_start");
  test_upstream("small");
  test_scratch_reuse();
  test_sside_sparse();
  test_threads();
  test_pair_widths();
  test_upstream_sensitivity();
  test_loading();
  test_bad_inputs();
  test_released_synthetic();
  test_released_layout();
  return tu_finish("test_embedder");
}
