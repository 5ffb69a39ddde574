/* Feature bundles (docs/bundle.md): reader with complete validation, annotation
 * defaults, the bundle-info summary, and a small mixed-dtype safetensors writer. */
#include "io/strbuf.h"
#include "io/bundle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/tensorfile.h"
#include "platform.h"

#define N_ELEM 128
#define N_CHAR 64
#define N_CHARPOS 4

struct px_bundle {
  char *path;
  uint64_t file_size;
  int T, N;
  int c_s_inputs, c_s, c_z;
  px_features f;
  float *s_inputs, *s_trunk, *z_trunk, *ref_pos, *ref_charge, *ref_mask, *ref_element,
      *ref_chars;
  int64_t *ref_space_uid, *a2t, *asym, *res, *ent, *tok, *sym;
  float *zero_s_trunk; /* [T, zero_c_s], for bundles without s_trunk */
  int zero_c_s;
  char *text[4]; /* res_name, chain_id [T]; atom_name, element [N]; PX_BUNDLE_STR_SLOT each */
  int64_t *res_num;
  uint8_t *designed;
  int present;
  int n_meta;
  char **meta_k, **meta_v;
  /* for the summary */
  int element_as_index, chars_as_index, n_extra;
  px_dtype s_inputs_dt, z_dt;
};

/* ------------------------------------------------------------- small helpers ---- */
static const char *const ELEMENT_SYMBOLS[118] = {
    "H",  "HE", "LI", "BE", "B",  "C",  "N",  "O",  "F",  "NE", "NA", "MG", "AL", "SI", "P",
    "S",  "CL", "AR", "K",  "CA", "SC", "TI", "V",  "CR", "MN", "FE", "CO", "NI", "CU", "ZN",
    "GA", "GE", "AS", "SE", "BR", "KR", "RB", "SR", "Y",  "ZR", "NB", "MO", "TC", "RU", "RH",
    "PD", "AG", "CD", "IN", "SN", "SB", "TE", "I",  "XE", "CS", "BA", "LA", "CE", "PR", "ND",
    "PM", "SM", "EU", "GD", "TB", "DY", "HO", "ER", "TM", "YB", "LU", "HF", "TA", "W",  "RE",
    "OS", "IR", "PT", "AU", "HG", "TL", "PB", "BI", "PO", "AT", "RN", "FR", "RA", "AC", "TH",
    "PA", "U",  "NP", "PU", "AM", "CM", "BK", "CF", "ES", "FM", "MD", "NO", "LR", "RF", "DB",
    "SG", "BH", "HS", "MT", "DS", "RG", "CN", "NH", "FL", "MC", "LV", "TS", "OG"};

static int is_float_dt(px_dtype d) {
  return d == PX_DT_F32 || d == PX_DT_F16 || d == PX_DT_BF16 || d == PX_DT_F64;
}
static int is_int_dt(px_dtype d) {
  return d == PX_DT_I64 || d == PX_DT_I32 || d == PX_DT_I16 || d == PX_DT_I8 || d == PX_DT_U8;
}

static char *xstrdup(const char *s) {
  size_t l = strlen(s);
  char *p = malloc(l + 1);
  if (p) memcpy(p, s, l + 1);
  return p;
}

static void shape_str(const px_tensor_entry *e, char *buf, size_t cap) {
  size_t k = 0;
  buf[k++] = '[';
  buf[k] = 0;
  for (int d = 0; d < e->ndim && k + 24 < cap; d++)
    k += (size_t)snprintf(buf + k, cap - k, d ? ", %lld" : "%lld", (long long)e->shape[d]);
  snprintf(buf + k, cap - k, "]");
}


/* ------------------------------------------------------------ metadata JSON ---- */
const char *px_bundle_meta(const px_bundle *b, const char *key) {
  if (!b || !key) return NULL;
  for (int i = 0; i < b->n_meta; i++)
    if (strcmp(b->meta_k[i], key) == 0) return b->meta_v[i];
  return NULL;
}

/* ------------------------------------------------------------------- reading ---- */
typedef struct {
  px_bundle *b;
  px_tensorfile tf;
} rd;

static const px_tensor_entry *find(rd *r, const char *name) { return px_tensorfile_find(&r->tf, name); }

static int need(rd *r, const char *name, const px_tensor_entry **e) {
  *e = find(r, name);
  if (!*e)
    return px_fail(PX_ERR_FORMAT, "%s: missing tensor '%s' (see docs/bundle.md)", r->b->path, name);
  return 0;
}

/* Shape check; d[i] = -1 accepts any size >= 1. */
static int want_shape(rd *r, const px_tensor_entry *e, int ndim, int64_t d0, int64_t d1, int64_t d2,
                      const char *expected) {
  int ok = e->ndim == ndim;
  int64_t d[3] = {d0, d1, d2};
  for (int i = 0; ok && i < ndim; i++)
    if (d[i] >= 0 ? e->shape[i] != d[i] : e->shape[i] < 1) ok = 0;
  if (ok) return 0;
  char s[200];
  shape_str(e, s, sizeof s);
  return px_fail(PX_ERR_FORMAT, "%s: tensor '%s' has shape %s; expected %s", r->b->path, e->name, s,
                 expected);
}

static int want_dtype(rd *r, const px_tensor_entry *e, int ok, const char *expected) {
  if (ok) return 0;
  return px_fail(PX_ERR_FORMAT, "%s: tensor '%s' has dtype %s; expected %s", r->b->path, e->name,
                 px_dtype_name(e->dtype), expected);
}

static void *xalloc(rd *r, int64_t n, size_t es, int *rc) {
  void *p = malloc((size_t)(n > 0 ? n : 1) * es);
  if (!p) *rc = px_fail(PX_ERR_NOMEM, "%s: out of memory (%lld bytes)", r->b->path, (long long)(n * (int64_t)es));
  return p;
}

/* Float tensor as float32, all values finite. */
static int read_float(rd *r, const px_tensor_entry *e, float **out) {
  int rc = 0;
  int64_t n = px_entry_numel(e);
  float *p = xalloc(r, n, sizeof(float), &rc);
  if (!p) return rc;
  char err[512];
  if ((rc = px_tensorfile_read_f32(&r->tf, e, p, err, sizeof err)) != 0) {
    free(p);
    return px_fail(rc, "%s", err);
  }
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(p[i])) {
      const char *what = isnan(p[i]) ? "NaN" : "Inf";
      free(p);
      return px_fail(PX_ERR_INPUT, "%s: tensor '%s' holds %s at element %lld", r->b->path, e->name,
                     what, (long long)i);
    }
  *out = p;
  return 0;
}

/* Raw little-endian bytes of a (contiguous) tensor. */
static int read_raw(rd *r, const px_tensor_entry *e, uint8_t **out) {
  int rc = 0;
  uint64_t bytes = (uint64_t)px_entry_numel(e) * px_dtype_size(e->dtype);
  uint8_t *p = xalloc(r, (int64_t)bytes, 1, &rc);
  if (!p) return rc;
  if (bytes > e->span || (bytes && px_file_pread(r->tf.fd, p, (size_t)bytes, e->offset) != 0)) {
    free(p);
    return px_fail(PX_ERR_IO, "%s: tensor '%s': cannot read %llu bytes at offset %llu", r->b->path,
                   e->name, (unsigned long long)bytes, (unsigned long long)e->offset);
  }
  *out = p;
  return 0;
}

static int64_t load_int(px_dtype dt, const uint8_t *p) {
  switch (dt) {
  case PX_DT_I64: {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return (int64_t)v;
  }
  case PX_DT_I32: return (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
  case PX_DT_I16: return (int16_t)(uint16_t)(p[0] | (p[1] << 8));
  case PX_DT_I8: return (int8_t)p[0];
  default: return p[0]; /* U8, BOOL */
  }
}

/* Integer tensor as int64, values in [lo, hi]. */
static int read_int(rd *r, const px_tensor_entry *e, int64_t lo, int64_t hi, int64_t **out) {
  int rc = want_dtype(r, e, is_int_dt(e->dtype), "an integer dtype (I64, I32, I16, I8, U8)");
  if (rc) return rc;
  uint8_t *raw;
  if ((rc = read_raw(r, e, &raw))) return rc;
  int64_t n = px_entry_numel(e);
  int64_t *p = xalloc(r, n, sizeof(int64_t), &rc);
  if (!p) {
    free(raw);
    return rc;
  }
  size_t es = px_dtype_size(e->dtype);
  for (int64_t i = 0; i < n; i++) {
    p[i] = load_int(e->dtype, raw + (size_t)i * es);
    if (p[i] < lo || p[i] > hi) {
      rc = px_fail(PX_ERR_INPUT, "%s: %s[%lld] = %lld is out of range [%lld, %lld]", r->b->path,
                   e->name, (long long)i, (long long)p[i], (long long)lo, (long long)hi);
      free(raw);
      free(p);
      return rc;
    }
  }
  free(raw);
  *out = p;
  return 0;
}

/* 0/1 values (U8, BOOL or any integer dtype) into bytes. */
static int read_flags(rd *r, const px_tensor_entry *e, uint8_t **out) {
  int rc = want_dtype(r, e, is_int_dt(e->dtype) || e->dtype == PX_DT_BOOL, "U8 or BOOL");
  if (rc) return rc;
  uint8_t *raw;
  if ((rc = read_raw(r, e, &raw))) return rc;
  int64_t n = px_entry_numel(e);
  uint8_t *p = xalloc(r, n, 1, &rc);
  if (!p) {
    free(raw);
    return rc;
  }
  size_t es = px_dtype_size(e->dtype);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = load_int(e->dtype, raw + (size_t)i * es);
    if (v != 0 && v != 1) {
      rc = px_fail(PX_ERR_INPUT, "%s: %s[%lld] = %lld; expected 0 or 1", r->b->path, e->name,
                   (long long)i, (long long)v);
      free(raw);
      free(p);
      return rc;
    }
    p[i] = (uint8_t)v;
  }
  free(raw);
  *out = p;
  return 0;
}

/* U8 [count, W] strings into slots: printable ASCII without spaces, then NULs, non-empty. */
static int read_strings(rd *r, const px_tensor_entry *e, int count, char **out) {
  int rc = want_dtype(r, e, e->dtype == PX_DT_U8, "U8");
  if (rc) return rc;
  if (e->ndim != 2 || e->shape[0] != count || e->shape[1] < 1 || e->shape[1] > PX_BUNDLE_STR_MAX) {
    char s[200], want[80];
    shape_str(e, s, sizeof s);
    snprintf(want, sizeof want, "[%d, W] with 1 <= W <= %d", count, PX_BUNDLE_STR_MAX);
    return px_fail(PX_ERR_FORMAT, "%s: tensor '%s' has shape %s; expected %s", r->b->path, e->name,
                   s, want);
  }
  uint8_t *raw;
  if ((rc = read_raw(r, e, &raw))) return rc;
  int W = (int)e->shape[1];
  char *p = calloc((size_t)count, PX_BUNDLE_STR_SLOT);
  if (!p) {
    free(raw);
    return px_fail(PX_ERR_NOMEM, "%s: out of memory", r->b->path);
  }
  for (int i = 0; i < count; i++) {
    const uint8_t *s = raw + (size_t)i * (size_t)W;
    int len = 0;
    while (len < W && s[len]) len++;
    int bad = len == 0;
    for (int k = 0; k < len && !bad; k++)
      if (s[k] < 0x21 || s[k] > 0x7e) bad = 1;
    for (int k = len; k < W && !bad; k++)
      if (s[k]) bad = 1;
    if (bad) {
      rc = px_fail(PX_ERR_INPUT, "%s: %s[%d] is %s", r->b->path, e->name, i,
                   len == 0 ? "empty" : "not printable ASCII (no spaces) padded with NULs");
      free(raw);
      free(p);
      return rc;
    }
    memcpy(p + (size_t)i * PX_BUNDLE_STR_SLOT, s, (size_t)len);
  }
  free(raw);
  *out = p;
  return 0;
}

/* Dense one-hot [N, groups * width] rows: 0/1 values, at most one 1 per group. */
static int check_onehot(rd *r, const char *name, const float *x, int N, int groups, int width) {
  for (int n = 0; n < N; n++)
    for (int g = 0; g < groups; g++) {
      const float *row = x + ((size_t)n * (size_t)groups + (size_t)g) * (size_t)width;
      int ones = 0;
      for (int k = 0; k < width; k++) {
        if (row[k] == 1.0f) {
          ones++;
        } else if (row[k] != 0.0f) {
          return px_fail(PX_ERR_INPUT, "%s: %s row %d is not one-hot (value %g at column %d)",
                         r->b->path, name, n, (double)row[k], g * width + k);
        }
      }
      if (ones > 1)
        return px_fail(PX_ERR_INPUT, "%s: %s row %d is not one-hot (%d ones%s)", r->b->path, name, n,
                       ones, groups > 1 ? " in one character" : "");
    }
  return 0;
}

/* Index of the 1 in a one-hot group, -1 for an all-zero group. */
static int onehot_index(const float *row, int width) {
  for (int k = 0; k < width; k++)
    if (row[k] == 1.0f) return k;
  return -1;
}

/* ------------------------------------------------------- annotation defaults ---- */
typedef struct {
  int64_t v;
  int idx;
} vi_t;
static int cmp_vi(const void *x, const void *y) {
  const vi_t *a = x, *b = y;
  if (a->v != b->v) return a->v < b->v ? -1 : 1;
  return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Bijective base-62 label of k >= 0: A..Z a..z 0..9, then AA, AB, ... */
static void chain_label(int k, char *out) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  char tmp[16];
  int n = 0;
  long v = (long)k + 1;
  while (v > 0 && n < 15) {
    v--;
    tmp[n++] = al[v % 62];
    v /= 62;
  }
  for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  out[n] = 0;
}

/* Chain ids from asym_id: distinct values labelled in order of first appearance. */
static int default_chains(px_bundle *b, char *out) {
  int T = b->T;
  vi_t *p = malloc((size_t)T * sizeof *p);
  vi_t *g = malloc((size_t)T * sizeof *g);
  int *rank = malloc((size_t)T * sizeof *rank);
  if (!p || !g || !rank) {
    free(p);
    free(g);
    free(rank);
    return px_fail(PX_ERR_NOMEM, "%s: out of memory", b->path);
  }
  for (int t = 0; t < T; t++) p[t] = (vi_t){b->asym[t], t};
  qsort(p, (size_t)T, sizeof *p, cmp_vi);
  int ng = 0;
  for (int i = 0; i < T; i++)
    if (i == 0 || p[i].v != p[i - 1].v) {
      g[ng] = (vi_t){p[i].idx, ng}; /* (first index, group) */
      ng++;
    }
  qsort(g, (size_t)ng, sizeof *g, cmp_vi);
  for (int k = 0; k < ng; k++) rank[g[k].idx] = k; /* group -> rank by first appearance */
  int grp = -1;
  for (int i = 0; i < T; i++) {
    if (i == 0 || p[i].v != p[i - 1].v) grp++;
    chain_label(rank[grp], out + (size_t)p[i].idx * PX_BUNDLE_STR_SLOT);
  }
  free(p);
  free(g);
  free(rank);
  return 0;
}

static void default_elements(px_bundle *b, char *out) {
  for (int n = 0; n < b->N; n++) {
    int k = onehot_index(b->ref_element + (size_t)n * N_ELEM, N_ELEM);
    const char *sym = k >= 0 && k < 118 ? ELEMENT_SYMBOLS[k] : "X";
    strcpy(out + (size_t)n * PX_BUNDLE_STR_SLOT, sym);
  }
}

/* Atom names decoded from ref_atom_name_chars (char = index + 32, trailing spaces
 * dropped); when that gives nothing usable, element + 1-based position in its token. */
static void default_atom_names(px_bundle *b, const char *elements, char *out) {
  int pos = 0;
  for (int n = 0; n < b->N; n++) {
    pos = (n > 0 && b->a2t[n] == b->a2t[n - 1]) ? pos + 1 : 1;
    char name[N_CHARPOS + 1];
    int len = 0, ok = 1;
    for (int c = 0; c < N_CHARPOS; c++) {
      int k = onehot_index(b->ref_chars + ((size_t)n * N_CHARPOS + (size_t)c) * N_CHAR, N_CHAR);
      name[len++] = (char)(k < 0 ? ' ' : 32 + k);
    }
    while (len > 0 && name[len - 1] == ' ') len--;
    name[len] = 0;
    if (len == 0) ok = 0;
    for (int i = 0; i < len; i++)
      if (name[i] == ' ') ok = 0;
    char *dst = out + (size_t)n * PX_BUNDLE_STR_SLOT;
    if (ok)
      memcpy(dst, name, (size_t)len + 1);
    else
      snprintf(dst, PX_BUNDLE_STR_SLOT, "%.3s%d", elements + (size_t)n * PX_BUNDLE_STR_SLOT,
               pos % 1000000);
  }
}

/* --------------------------------------------------------------------- open ---- */
void px_bundle_free(px_bundle *b) {
  if (!b) return;
  free(b->path);
  float *fl[] = {b->s_inputs, b->s_trunk, b->z_trunk, b->ref_pos, b->ref_charge, b->ref_mask,
                 b->ref_element, b->ref_chars, b->zero_s_trunk};
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) free(fl[i]);
  int64_t *il[] = {b->ref_space_uid, b->a2t, b->asym, b->res, b->ent, b->tok, b->sym, b->res_num};
  for (size_t i = 0; i < sizeof il / sizeof il[0]; i++) free(il[i]);
  for (int i = 0; i < 4; i++) free(b->text[i]);
  free(b->designed);
  for (int i = 0; i < b->n_meta; i++) {
    free(b->meta_k[i]);
    free(b->meta_v[i]);
  }
  free(b->meta_k);
  free(b->meta_v);
  free(b);
}

static const char *const KNOWN[] = {
    "s_inputs", "s_trunk", "z_trunk", "ref_pos", "ref_charge", "ref_mask", "ref_element",
    "ref_element_index", "ref_atom_name_chars", "ref_atom_name_chars_index", "ref_space_uid",
    "atom_to_token_idx", "asym_id", "residue_index", "entity_id", "token_index", "sym_id",
    "token_res_name", "token_chain_id", "token_res_num", "token_is_designed", "atom_name",
    "atom_element"};

static int open_body(rd *r) {
  px_bundle *b = r->b;
  const char *path = b->path;
  char err[1024];
  int rc = px_tensorfile_open(path, &r->tf, err, sizeof err);
  if (rc) return px_fail(rc, "%s", err);
  b->file_size = r->tf.file_size;
  if (r->tf.kind != PX_FILE_SAFETENSORS)
    return px_fail(PX_ERR_FORMAT, "%s: a torch.save archive, not a pxdiff bundle (safetensors)", path);

  /* metadata, as the safetensors indexer read it */
  {
    const px_st_meta *mt = &r->tf.meta;
    if (mt->malformed == 1) return px_fail(PX_ERR_FORMAT, "%s: __metadata__ is not an object", path);
    if (mt->malformed == 2)
      return px_fail(PX_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", path, mt->bad_key);
    if (mt->n > 0) {
      b->meta_k = calloc((size_t)mt->n, sizeof(char *));
      b->meta_v = calloc((size_t)mt->n, sizeof(char *));
      if (!b->meta_k || !b->meta_v) return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
      for (int i = 0; i < mt->n; i++) {
        b->meta_k[i] = xstrdup(mt->key[i]);
        b->meta_v[i] = xstrdup(mt->value[i]);
        b->n_meta = i + 1;
        if (!b->meta_k[i] || !b->meta_v[i]) return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
      }
    }
  }
  const char *fmt = px_bundle_meta(b, "format");
  if (!fmt || strcmp(fmt, PX_BUNDLE_FORMAT) != 0)
    return px_fail(PX_ERR_FORMAT,
                   "%s: not a pxdiff bundle (safetensors __metadata__ lacks format=\"%s\")", path,
                   PX_BUNDLE_FORMAT);
  const char *ver = px_bundle_meta(b, "version");
  if (!ver || strcmp(ver, PX_BUNDLE_VERSION) != 0) {
    char sv[40];
    px_shown_name(sv, sizeof sv, ver ? ver : "(none)");
    return px_fail(PX_ERR_FORMAT, "%s: bundle version %s is not supported (this pxdiff reads version %s)",
                   path, sv, PX_BUNDLE_VERSION);
  }
  for (int i = 0; i < r->tf.n; i++) {
    int known = 0;
    for (size_t k = 0; k < sizeof KNOWN / sizeof KNOWN[0]; k++)
      if (strcmp(r->tf.t[i].name, KNOWN[k]) == 0) known = 1;
    if (!known) b->n_extra++;
  }

  /* ---- sizes and shapes (before reading any data) ---- */
  const px_tensor_entry *e_asym, *e_a2t, *e_si, *e_st = find(r, "s_trunk"), *e_z, *e_pos, *e_chg,
                        *e_mask, *e_el, *e_ch, *e_uid, *e_res, *e_ent, *e_tok, *e_sym;
  if ((rc = need(r, "asym_id", &e_asym)) || (rc = need(r, "atom_to_token_idx", &e_a2t))) return rc;
  if (e_asym->ndim != 1)
    return want_shape(r, e_asym, 1, -1, 0, 0, "[T]");
  if (e_a2t->ndim != 1)
    return want_shape(r, e_a2t, 1, -1, 0, 0, "[N]");
  int64_t T64 = e_asym->shape[0], N64 = e_a2t->shape[0];
  if (T64 == 0) return px_fail(PX_ERR_INPUT, "%s: the bundle has 0 tokens", path);
  if (N64 == 0) return px_fail(PX_ERR_INPUT, "%s: the bundle has 0 atoms", path);
  if (T64 > PX_BUNDLE_MAX_TOKENS)
    return px_fail(PX_ERR_INPUT, "%s: %lld tokens is more than pxdiff handles (%d)", path,
                   (long long)T64, PX_BUNDLE_MAX_TOKENS);
  if (N64 > PX_BUNDLE_MAX_ATOMS)
    return px_fail(PX_ERR_INPUT, "%s: %lld atoms is more than pxdiff handles (%d)", path,
                   (long long)N64, PX_BUNDLE_MAX_ATOMS);
  const int T = (int)T64, N = (int)N64;
  b->T = T;
  b->N = N;
  char w[96];
  const char *tok_names[] = {"residue_index", "entity_id", "token_index", "sym_id"};
  const px_tensor_entry **tok_e[] = {&e_res, &e_ent, &e_tok, &e_sym};
  snprintf(w, sizeof w, "[%d] (T, from asym_id)", T);
  for (int i = 0; i < 4; i++) {
    if ((rc = need(r, tok_names[i], tok_e[i]))) return rc;
    if ((rc = want_shape(r, *tok_e[i], 1, T, 0, 0, w))) return rc;
  }
  snprintf(w, sizeof w, "[%d, c_s_inputs]", T);
  if ((rc = need(r, "s_inputs", &e_si)) || (rc = want_shape(r, e_si, 2, T, -1, 0, w))) return rc;
  if ((rc = want_dtype(r, e_si, is_float_dt(e_si->dtype), "F32, BF16, F16 or F64"))) return rc;
  if (e_st) {
    snprintf(w, sizeof w, "[%d, c_s]", T);
    if ((rc = want_shape(r, e_st, 2, T, -1, 0, w))) return rc;
    if ((rc = want_dtype(r, e_st, is_float_dt(e_st->dtype), "F32, BF16, F16 or F64"))) return rc;
  }
  snprintf(w, sizeof w, "[%d, %d, c_z]", T, T);
  if ((rc = need(r, "z_trunk", &e_z)) || (rc = want_shape(r, e_z, 3, T, T, -1, w))) return rc;
  if ((rc = want_dtype(r, e_z, is_float_dt(e_z->dtype), "F32, BF16, F16 or F64"))) return rc;
  b->c_s_inputs = (int)(e_si->shape[1] > 1 << 30 ? 1 << 30 : e_si->shape[1]);
  b->c_s = e_st ? (int)(e_st->shape[1] > 1 << 30 ? 1 << 30 : e_st->shape[1]) : 0;
  b->c_z = (int)(e_z->shape[2] > 1 << 30 ? 1 << 30 : e_z->shape[2]);
  b->s_inputs_dt = e_si->dtype;
  b->z_dt = e_z->dtype;

  snprintf(w, sizeof w, "[%d, 3] (N, from atom_to_token_idx)", N);
  if ((rc = need(r, "ref_pos", &e_pos)) || (rc = want_shape(r, e_pos, 2, N, 3, 0, w))) return rc;
  snprintf(w, sizeof w, "[%d] (N, from atom_to_token_idx)", N);
  if ((rc = need(r, "ref_charge", &e_chg)) || (rc = want_shape(r, e_chg, 1, N, 0, 0, w))) return rc;
  if ((rc = need(r, "ref_mask", &e_mask)) || (rc = want_shape(r, e_mask, 1, N, 0, 0, w))) return rc;
  if ((rc = need(r, "ref_space_uid", &e_uid)) || (rc = want_shape(r, e_uid, 1, N, 0, 0, w))) return rc;
  if ((rc = want_dtype(r, e_pos, is_float_dt(e_pos->dtype), "F32, BF16, F16 or F64")) ||
      (rc = want_dtype(r, e_chg, is_float_dt(e_chg->dtype), "F32, BF16, F16 or F64")) ||
      (rc = want_dtype(r, e_mask,
                       is_float_dt(e_mask->dtype) || e_mask->dtype == PX_DT_U8 ||
                           e_mask->dtype == PX_DT_BOOL,
                       "F32, BF16, F16, F64, U8 or BOOL")))
    return rc;
  /* one-hots: dense or indices, exactly one of them */
  {
    const px_tensor_entry *d = find(r, "ref_element"), *x = find(r, "ref_element_index");
    if (d && x) return px_fail(PX_ERR_FORMAT, "%s: holds both ref_element and ref_element_index", path);
    if (!d && !x)
      return px_fail(PX_ERR_FORMAT, "%s: missing tensor 'ref_element_index' (or 'ref_element')", path);
    if (d) {
      snprintf(w, sizeof w, "[%d, %d]", N, N_ELEM);
      if ((rc = want_shape(r, d, 2, N, N_ELEM, 0, w)) ||
          (rc = want_dtype(r, d, is_float_dt(d->dtype) || is_int_dt(d->dtype), "a float or integer dtype")))
        return rc;
    } else {
      snprintf(w, sizeof w, "[%d]", N);
      if ((rc = want_shape(r, x, 1, N, 0, 0, w))) return rc;
    }
    e_el = d ? d : x;
    b->element_as_index = !d;
    d = find(r, "ref_atom_name_chars");
    x = find(r, "ref_atom_name_chars_index");
    if (d && x)
      return px_fail(PX_ERR_FORMAT,
                     "%s: holds both ref_atom_name_chars and ref_atom_name_chars_index", path);
    if (!d && !x)
      return px_fail(PX_ERR_FORMAT,
                     "%s: missing tensor 'ref_atom_name_chars_index' (or 'ref_atom_name_chars')", path);
    if (d) {
      snprintf(w, sizeof w, "[%d, 256] or [%d, 4, 64]", N, N);
      if (!(d->ndim == 3 && d->shape[0] == N && d->shape[1] == N_CHARPOS && d->shape[2] == N_CHAR) &&
          (rc = want_shape(r, d, 2, N, N_CHARPOS * N_CHAR, 0, w)))
        return rc;
      if ((rc = want_dtype(r, d, is_float_dt(d->dtype) || is_int_dt(d->dtype), "a float or integer dtype")))
        return rc;
    } else {
      snprintf(w, sizeof w, "[%d, 4]", N);
      if ((rc = want_shape(r, x, 2, N, N_CHARPOS, 0, w))) return rc;
    }
    e_ch = d ? d : x;
    b->chars_as_index = !d;
  }
  /* annotations: shapes */
  const px_tensor_entry *a_rn = find(r, "token_res_name"), *a_ch = find(r, "token_chain_id"),
                        *a_num = find(r, "token_res_num"), *a_des = find(r, "token_is_designed"),
                        *a_an = find(r, "atom_name"), *a_el = find(r, "atom_element");
  snprintf(w, sizeof w, "[%d]", T);
  if (a_num && (rc = want_shape(r, a_num, 1, T, 0, 0, w))) return rc;
  if (a_des && (rc = want_shape(r, a_des, 1, T, 0, 0, w))) return rc;

  /* ---- data ---- */
  const int64_t BIG = PX_BUNDLE_MAX_INT;
  if ((rc = read_int(r, e_asym, -BIG, BIG, &b->asym)) || (rc = read_int(r, e_res, -BIG, BIG, &b->res)) ||
      (rc = read_int(r, e_ent, -BIG, BIG, &b->ent)) || (rc = read_int(r, e_tok, -BIG, BIG, &b->tok)) ||
      (rc = read_int(r, e_sym, -BIG, BIG, &b->sym)) || (rc = read_int(r, e_uid, -BIG, BIG, &b->ref_space_uid)) ||
      (rc = read_int(r, e_a2t, 0, T - 1, &b->a2t)))
    return rc;
  for (int n = 1; n < N; n++)
    if (b->a2t[n] < b->a2t[n - 1])
      return px_fail(PX_ERR_INPUT, "%s: atom_to_token_idx is not ascending at atom %d (%lld after %lld)",
                     path, n, (long long)b->a2t[n], (long long)b->a2t[n - 1]);
  if ((rc = read_float(r, e_si, &b->s_inputs)) || (e_st && (rc = read_float(r, e_st, &b->s_trunk))) ||
      (rc = read_float(r, e_z, &b->z_trunk)) || (rc = read_float(r, e_pos, &b->ref_pos)) ||
      (rc = read_float(r, e_chg, &b->ref_charge)))
    return rc;
  if (is_float_dt(e_mask->dtype)) {
    if ((rc = read_float(r, e_mask, &b->ref_mask))) return rc;
  } else {
    uint8_t *m;
    if ((rc = read_flags(r, e_mask, &m))) return rc;
    b->ref_mask = malloc((size_t)N * sizeof(float));
    if (!b->ref_mask) {
      free(m);
      return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int n = 0; n < N; n++) b->ref_mask[n] = m[n];
    free(m);
  }
  /* one-hots */
  b->ref_element = calloc((size_t)N * N_ELEM, sizeof(float));
  b->ref_chars = calloc((size_t)N * N_CHARPOS * N_CHAR, sizeof(float));
  if (!b->ref_element || !b->ref_chars) return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
  {
    const px_tensor_entry *es[2] = {e_el, e_ch};
    float *dst[2] = {b->ref_element, b->ref_chars};
    const int idx[2] = {b->element_as_index, b->chars_as_index};
    const int groups[2] = {1, N_CHARPOS}, width[2] = {N_ELEM, N_CHAR};
    for (int i = 0; i < 2; i++) {
      if (idx[i]) {
        int64_t *v;
        if ((rc = read_int(r, es[i], -1, width[i] - 1, &v))) return rc;
        for (int64_t k = 0; k < (int64_t)N * groups[i]; k++)
          if (v[k] >= 0) dst[i][k * width[i] + v[k]] = 1.0f;
        free(v);
      } else if (is_float_dt(es[i]->dtype)) {
        float *v;
        if ((rc = read_float(r, es[i], &v))) return rc;
        memcpy(dst[i], v, (size_t)N * (size_t)groups[i] * (size_t)width[i] * sizeof(float));
        free(v);
      } else {
        int64_t *v;
        if ((rc = read_int(r, es[i], 0, 1, &v))) return rc;
        for (int64_t k = 0; k < (int64_t)N * groups[i] * width[i]; k++) dst[i][k] = (float)v[k];
        free(v);
      }
      if ((rc = check_onehot(r, es[i]->name, dst[i], N, groups[i], width[i]))) return rc;
    }
  }
  /* annotations */
  for (int i = 0; i < 4; i++) {
    const px_tensor_entry *e = i == 0 ? a_rn : i == 1 ? a_ch : i == 2 ? a_an : a_el;
    int count = i < 2 ? T : N;
    if (e) {
      if ((rc = read_strings(r, e, count, &b->text[i]))) return rc;
      b->present |= i == 0 ? 1 : i == 1 ? 2 : i == 2 ? 16 : 32;
    } else {
      b->text[i] = calloc((size_t)count, PX_BUNDLE_STR_SLOT);
      if (!b->text[i]) return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
    }
  }
  if (!a_rn)
    for (int t = 0; t < T; t++) strcpy(b->text[0] + (size_t)t * PX_BUNDLE_STR_SLOT, "UNK");
  if (!a_ch && (rc = default_chains(b, b->text[1]))) return rc;
  if (!a_el) default_elements(b, b->text[3]);
  if (!a_an) default_atom_names(b, b->text[3], b->text[2]);
  if (a_num) {
    if ((rc = read_int(r, a_num, -BIG, BIG, &b->res_num))) return rc;
    b->present |= 4;
  } else {
    b->res_num = malloc((size_t)T * sizeof(int64_t));
    if (!b->res_num) return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
    memcpy(b->res_num, b->res, (size_t)T * sizeof(int64_t));
  }
  if (a_des) {
    if ((rc = read_flags(r, a_des, &b->designed))) return rc;
    b->present |= 8;
  } else {
    b->designed = calloc((size_t)T, 1);
    if (!b->designed) return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
  }

  px_features *f = &b->f;
  f->n_token = T;
  f->n_atom = N;
  f->s_inputs = b->s_inputs;
  f->s_trunk = b->s_trunk;
  f->z_trunk = b->z_trunk;
  f->ref_pos = b->ref_pos;
  f->ref_charge = b->ref_charge;
  f->ref_mask = b->ref_mask;
  f->ref_element = b->ref_element;
  f->ref_atom_name_chars = b->ref_chars;
  f->ref_space_uid = b->ref_space_uid;
  f->atom_to_token_idx = b->a2t;
  f->asym_id = b->asym;
  f->residue_index = b->res;
  f->entity_id = b->ent;
  f->token_index = b->tok;
  f->sym_id = b->sym;
  return 0;
}

int px_bundle_open(const char *path, px_bundle **out) {
  if (out) *out = NULL;
  if (!path || !out) return px_fail(PX_ERR_INPUT, "px_bundle_open: NULL argument");
  px_bundle *b = calloc(1, sizeof *b);
  if (!b || !(b->path = xstrdup(path))) {
    free(b);
    return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
  }
  rd r;
  memset(&r, 0, sizeof r);
  r.tf.fd = -1;
  r.b = b;
  int rc = open_body(&r);
  px_tensorfile_close(&r.tf);
  if (rc) {
    px_bundle_free(b);
    return rc;
  }
  *out = b;
  return 0;
}

/* ----------------------------------------------------------------- accessors ---- */
const px_features *px_bundle_features(const px_bundle *b) { return b ? &b->f : NULL; }
int px_bundle_n_tokens(const px_bundle *b) { return b ? b->T : 0; }
int px_bundle_n_atoms(const px_bundle *b) { return b ? b->N : 0; }
void px_bundle_widths(const px_bundle *b, int *c_s_inputs, int *c_s, int *c_z) {
  if (c_s_inputs) *c_s_inputs = b ? b->c_s_inputs : 0;
  if (c_s) *c_s = b ? b->c_s : 0;
  if (c_z) *c_z = b ? b->c_z : 0;
}

static const char *slot(const px_bundle *b, int field, int i) {
  if (!b) return "";
  int count = field < 2 ? b->T : b->N;
  if (i < 0 || i >= count) return "";
  return b->text[field] + (size_t)i * PX_BUNDLE_STR_SLOT;
}
const char *px_bundle_res_name(const px_bundle *b, int t) { return slot(b, PX_BUNDLE_RES_NAME, t); }
const char *px_bundle_chain_id(const px_bundle *b, int t) { return slot(b, PX_BUNDLE_CHAIN_ID, t); }
const char *px_bundle_atom_name(const px_bundle *b, int n) { return slot(b, PX_BUNDLE_ATOM_NAME, n); }
const char *px_bundle_atom_element(const px_bundle *b, int n) { return slot(b, PX_BUNDLE_ATOM_ELEMENT, n); }
int64_t px_bundle_res_num(const px_bundle *b, int t) { return b && t >= 0 && t < b->T ? b->res_num[t] : 0; }
int px_bundle_is_designed(const px_bundle *b, int t) { return b && t >= 0 && t < b->T ? b->designed[t] : 0; }
const char *px_bundle_text(const px_bundle *b, int field) {
  return b && field >= 0 && field < 4 ? b->text[field] : NULL;
}
const int64_t *px_bundle_res_nums(const px_bundle *b) { return b ? b->res_num : NULL; }
const uint8_t *px_bundle_designed_flags(const px_bundle *b) { return b ? b->designed : NULL; }
int px_bundle_annotations_present(const px_bundle *b) { return b ? b->present : 0; }

int px_bundle_check_dims(const px_bundle *b, const px_dims *D) {
  if (!b || !D) return px_fail(PX_ERR_INPUT, "px_bundle_check_dims: NULL argument");
  if (b->c_s_inputs != D->c_s_inputs)
    return px_fail(PX_ERR_INPUT, "%s: s_inputs has width %d but the model expects c_s_inputs = %d",
                   b->path, b->c_s_inputs, D->c_s_inputs);
  if (b->s_trunk && b->c_s != D->c_s)
    return px_fail(PX_ERR_INPUT, "%s: s_trunk has width %d but the model expects c_s = %d", b->path,
                   b->c_s, D->c_s);
  if (b->c_z != D->c_z)
    return px_fail(PX_ERR_INPUT, "%s: z_trunk has width %d but the model expects c_z = %d", b->path,
                   b->c_z, D->c_z);
  return 0;
}

int px_bundle_features_for_dims(px_bundle *b, const px_dims *D, const px_features **out) {
  if (out) *out = NULL;
  if (!out) return px_fail(PX_ERR_INPUT, "px_bundle_features_for_dims: NULL argument");
  int rc = px_bundle_check_dims(b, D);
  if (rc) return rc;
  if (!b->s_trunk) {
    if (!b->zero_s_trunk || b->zero_c_s != D->c_s) {
      free(b->zero_s_trunk);
      b->zero_s_trunk = calloc((size_t)b->T * (size_t)(D->c_s > 0 ? D->c_s : 1), sizeof(float));
      b->zero_c_s = D->c_s;
      if (!b->zero_s_trunk) return px_fail(PX_ERR_NOMEM, "%s: out of memory", b->path);
    }
    b->f.s_trunk = b->zero_s_trunk;
  }
  *out = &b->f;
  return 0;
}

/* ------------------------------------------------------------------ summary ---- */
static const char *dt_desc(px_dtype d) { return px_dtype_name(d); }

void px_bundle_summary(const px_bundle *b, FILE *o) {
  if (!b || !o) return;
  const char *name = px_bundle_meta(b, "name"), *src = px_bundle_meta(b, "source");
  char sn[80] = "", ss[80] = "";
  if (name) px_shown_name(sn, sizeof sn, name);
  if (src) px_shown_name(ss, sizeof ss, src);
  fprintf(o, "bundle: %s (%s v%s, %.2f MB)\n", b->path, PX_BUNDLE_FORMAT, PX_BUNDLE_VERSION,
          (double)b->file_size / 1048576.0);
  if (name) fprintf(o, "name: %s\n", sn);
  if (src) fprintf(o, "source: %s\n", ss);
  int max_apt = 0, empty = 0, run = 0;
  for (int t = 0, n = 0; t < b->T; t++) {
    run = 0;
    while (n < b->N && b->a2t[n] == t) n++, run++;
    if (run > max_apt) max_apt = run;
    if (!run) empty++;
  }
  int designed = 0;
  for (int t = 0; t < b->T; t++) designed += b->designed[t];
  fprintf(o, "tokens: %d (%d designed, %d condition), atoms: %d (%.1f per token, max %d",
          b->T, designed, b->T - designed, b->N, (double)b->N / b->T, max_apt);
  if (empty) fprintf(o, ", %d tokens without atoms", empty);
  fprintf(o, ")\n");
  /* chains: runs of equal asym_id */
  int nseg = 0;
  for (int t = 0; t < b->T; t++)
    if (t == 0 || b->asym[t] != b->asym[t - 1]) nseg++;
  fprintf(o, "chains: %d\n", nseg);
  int shown_seg = 0;
  for (int t = 0, n = 0; t < b->T;) {
    int t0 = t, des = 0, atoms = 0;
    while (t < b->T && b->asym[t] == b->asym[t0]) {
      des += b->designed[t];
      while (n < b->N && b->a2t[n] == t) n++, atoms++;
      t++;
    }
    if (shown_seg < 50) {
      fprintf(o, "  %-4s asym_id %lld: %d tokens (%d designed, %d condition), %d atoms, residues %lld-%lld\n",
              slot(b, PX_BUNDLE_CHAIN_ID, t0), (long long)b->asym[t0], t - t0, des, t - t0 - des,
              atoms, (long long)b->res_num[t0], (long long)b->res_num[t - 1]);
    } else if (shown_seg == 50) {
      fprintf(o, "  ... and %d more\n", nseg - 50);
    }
    shown_seg++;
  }
  fprintf(o, "widths: c_s_inputs %d (%s), ", b->c_s_inputs, dt_desc(b->s_inputs_dt));
  if (b->s_trunk)
    fprintf(o, "c_s %d, ", b->c_s);
  else
    fprintf(o, "s_trunk absent (zeros), ");
  fprintf(o, "c_z %d (%s)\n", b->c_z, dt_desc(b->z_dt));
  fprintf(o, "one-hots stored as: ref_element %s, ref_atom_name_chars %s\n",
          b->element_as_index ? "indices" : "dense", b->chars_as_index ? "indices" : "dense");
  static const char *const an[] = {"token_res_name", "token_chain_id", "token_res_num",
                                   "token_is_designed", "atom_name", "atom_element"};
  fprintf(o, "annotations stored:");
  int any = 0;
  for (int i = 0; i < 6; i++)
    if (b->present & (1 << i)) fprintf(o, " %s", an[i]), any = 1;
  if (!any) fprintf(o, " none");
  fprintf(o, "; synthesized:");
  any = 0;
  for (int i = 0; i < 6; i++)
    if (!(b->present & (1 << i))) fprintf(o, " %s", an[i]), any = 1;
  if (!any) fprintf(o, " none");
  fprintf(o, "\n");
  double zmb = (double)b->T * b->T * b->c_z * 4.0 / 1048576.0;
  double tot = zmb + ((double)b->T * (b->c_s_inputs + b->c_s) * 4.0 +
                      (double)b->N * (3 + 1 + 1 + N_ELEM + N_CHARPOS * N_CHAR) * 4.0 +
                      (double)b->N * 2 * 8 + (double)b->T * 5 * 8) / 1048576.0;
  fprintf(o, "memory: z_trunk %.2f MB, all features %.2f MB (float32/int64)\n", zmb, tot);
  if (b->n_extra) fprintf(o, "ignored: %d tensors outside the layout\n", b->n_extra);
}

/* ------------------------------------------------------------------- writing ---- */
static int dtype_by_name(const char *s, px_dtype *d) {
  for (int i = PX_DT_F32; i <= PX_DT_BOOL; i++)
    if (s && strcmp(s, px_dtype_name((px_dtype)i)) == 0) {
      *d = (px_dtype)i;
      return 0;
    }
  return -1;
}


static int host_le(void) {
  const uint16_t x = 1;
  return *(const uint8_t *)&x == 1;
}

int px_bundle_write_tensors(const char *path, const px_bundle_item *items, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta) {
  if (!path || n < 0 || (n && !items) || n_meta < 0 || (n_meta && (!meta_keys || !meta_values)))
    return px_fail(PX_ERR_INPUT, "px_bundle_write_tensors: bad arguments");
  int rc = 0;
  int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
  uint64_t *bytes = malloc((size_t)(n ? n : 1) * sizeof *bytes);
  px_dtype *dts = malloc((size_t)(n ? n : 1) * sizeof *dts);
  px_strbuf h = {0};
  char *tmp = malloc(strlen(path) + 5);
  FILE *f = NULL;
  if (!order || !bytes || !dts || !tmp) {
    rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
    goto out;
  }
  for (int i = 0; i < n; i++) {
    const px_bundle_item *it = &items[i];
    if (!it->name || !it->name[0] || !strcmp(it->name, "__metadata__") || it->ndim < 0 ||
        it->ndim > PX_MAX_DIMS || (it->ndim && !it->shape) || dtype_by_name(it->dtype, &dts[i])) {
      rc = px_fail(PX_ERR_INPUT, "%s: item %d has a bad name, dtype or shape", path, i);
      goto out;
    }
    uint64_t ne = 1;
    for (int d = 0; d < it->ndim; d++) {
      if (it->shape[d] < 0 || (it->shape[d] && ne > ((uint64_t)1 << 50) / (uint64_t)it->shape[d])) {
        rc = px_fail(PX_ERR_INPUT, "%s: tensor '%s' has a bad shape", path, it->name);
        goto out;
      }
      ne *= (uint64_t)it->shape[d];
    }
    bytes[i] = ne * px_dtype_size(dts[i]);
    if (bytes[i] && !it->data) {
      rc = px_fail(PX_ERR_INPUT, "%s: tensor '%s' has no data", path, it->name);
      goto out;
    }
    for (int k = 0; k < i; k++)
      if (!strcmp(items[k].name, it->name)) {
        rc = px_fail(PX_ERR_INPUT, "%s: tensor '%s' given twice", path, it->name);
        goto out;
      }
  }
  /* larger elements first keeps every tensor aligned to its element size */
  int m = 0;
  for (size_t es = 8; es >= 1; es /= 2)
    for (int i = 0; i < n; i++)
      if (px_dtype_size(dts[i]) == es) order[m++] = i;
  px_sb_str(&h, "{");
  if (n_meta) {
    px_sb_str(&h, "\"__metadata__\":{");
    for (int i = 0; i < n_meta; i++) {
      if (!meta_keys[i] || !meta_values[i]) {
        rc = px_fail(PX_ERR_INPUT, "%s: NULL metadata entry", path);
        goto out;
      }
      if (i) px_sb_str(&h, ",");
      px_sb_json_string(&h, meta_keys[i]);
      px_sb_str(&h, ":");
      px_sb_json_string(&h, meta_values[i]);
    }
    px_sb_str(&h, "}");
  }
  uint64_t off = 0;
  for (int k = 0; k < n; k++) {
    const px_bundle_item *it = &items[order[k]];
    char num[96];
    if (k || n_meta) px_sb_str(&h, ",");
    px_sb_json_string(&h, it->name);
    px_sb_str(&h, ":{\"dtype\":\"");
    px_sb_str(&h, px_dtype_name(dts[order[k]]));
    px_sb_str(&h, "\",\"shape\":[");
    for (int d = 0; d < it->ndim; d++) {
      snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)it->shape[d]);
      px_sb_str(&h, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
             (unsigned long long)(off + bytes[order[k]]));
    px_sb_str(&h, num);
    off += bytes[order[k]];
  }
  px_sb_str(&h, "}");
  while (!h.oom && (8 + h.n) % 8) px_sb_str(&h, " ");
  if (h.oom) {
    rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
    goto out;
  }
  sprintf(tmp, "%s.tmp", path);
  f = fopen(tmp, "wb");
  if (!f) {
    rc = px_fail(PX_ERR_IO, "%s: cannot create %s", path, tmp);
    goto out;
  }
  uint8_t le8[8];
  for (int i = 0; i < 8; i++) le8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
  int ok = fwrite(le8, 1, 8, f) == 8 && fwrite(h.p, 1, h.n, f) == h.n;
  for (int k = 0; k < n && ok; k++) {
    const px_bundle_item *it = &items[order[k]];
    size_t es = px_dtype_size(dts[order[k]]);
    if (host_le() || es == 1) {
      ok = !bytes[order[k]] || fwrite(it->data, 1, (size_t)bytes[order[k]], f) == bytes[order[k]];
    } else {
      const uint8_t *src = it->data;
      uint8_t e8[8];
      for (uint64_t i = 0; i < bytes[order[k]] && ok; i += es) {
        for (size_t b = 0; b < es; b++) e8[b] = src[i + es - 1 - b];
        ok = fwrite(e8, 1, es, f) == es;
      }
    }
  }
  if (fclose(f) != 0) ok = 0;
  f = NULL;
  if (!ok || px_file_rename(tmp, path) != 0) {
    remove(tmp);
    rc = px_fail(PX_ERR_IO, "%s: write failed", path);
  }
out:
  free(order);
  free(bytes);
  free(dts);
  free(tmp);
  free(h.p);
  return rc;
}

/* Pack [count] strings into U8 [count, W], W = max(min_w, longest). */
static int pack_strings(const char *path, const char *what, const char *const *s, int count,
                        int min_w, uint8_t **out, int64_t *w_out) {
  int W = min_w;
  for (int i = 0; i < count; i++) {
    size_t l = s[i] ? strlen(s[i]) : 0;
    if (l == 0 || l > PX_BUNDLE_STR_MAX)
      return px_fail(PX_ERR_INPUT, "%s: %s[%d] must hold 1 to %d characters", path, what, i,
                     PX_BUNDLE_STR_MAX);
    if ((int)l > W) W = (int)l;
  }
  uint8_t *p = calloc((size_t)count * (size_t)W, 1);
  if (!p) return px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
  for (int i = 0; i < count; i++) memcpy(p + (size_t)i * (size_t)W, s[i], strlen(s[i]));
  *out = p;
  *w_out = W;
  return 0;
}

int px_bundle_write(const char *path, const px_features *f, int c_s_inputs, int c_s, int c_z,
                    const px_bundle_annotations *a, const char *name) {
  return px_bundle_write_ex(path, f, c_s_inputs, c_s, c_z, a, name, NULL, 0, NULL, NULL, 0);
}

int px_bundle_write_ex(const char *path, const px_features *f, int c_s_inputs, int c_s, int c_z,
                       const px_bundle_annotations *a, const char *name, const px_bundle_item *extra,
                       int n_extra, const char *const *meta_keys, const char *const *meta_values,
                       int n_meta) {
  if (!path || !f || n_extra < 0 || n_extra > 32 || n_meta < 0 || n_meta > 16 || (n_extra && !extra) ||
      (n_meta && (!meta_keys || !meta_values)))
    return px_fail(PX_ERR_INPUT, "px_bundle_write: bad argument");
  const int T = f->n_token, N = f->n_atom;
  if (T <= 0 || N <= 0 || c_s_inputs <= 0 || c_z <= 0 || (f->s_trunk && c_s <= 0))
    return px_fail(PX_ERR_INPUT, "%s: bad sizes (%d tokens, %d atoms, widths %d/%d/%d)", path, T, N,
                   c_s_inputs, c_s, c_z);
  if (!f->s_inputs || !f->z_trunk || !f->ref_pos || !f->ref_charge || !f->ref_mask ||
      !f->ref_element || !f->ref_atom_name_chars || !f->ref_space_uid || !f->atom_to_token_idx ||
      !f->asym_id || !f->residue_index || !f->entity_id || !f->token_index || !f->sym_id)
    return px_fail(PX_ERR_INPUT, "%s: a required feature is NULL", path);
  int rc = 0;
  int64_t *el = malloc((size_t)N * sizeof *el), *ch = malloc((size_t)N * N_CHARPOS * sizeof *ch);
  uint8_t *mask = malloc((size_t)N), *txt[4] = {0};
  char *part = malloc(strlen(path) + 9);
  int mask_u8 = 1;
  if (!el || !ch || !mask || !part) {
    rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", path);
    goto out;
  }
  for (int n = 0; n < N; n++) {
    const float *rows[2] = {f->ref_element + (size_t)n * N_ELEM,
                            f->ref_atom_name_chars + (size_t)n * N_CHARPOS * N_CHAR};
    const int groups[2] = {1, N_CHARPOS}, width[2] = {N_ELEM, N_CHAR};
    for (int i = 0; i < 2; i++)
      for (int g = 0; g < groups[i]; g++) {
        int ones = 0;
        for (int k = 0; k < width[i]; k++) {
          float v = rows[i][g * width[i] + k];
          if (v != 0.0f && v != 1.0f) ones = 99;
          ones += v == 1.0f;
        }
        if (ones > 1) {
          rc = px_fail(PX_ERR_INPUT, "%s: %s row %d is not one-hot", path,
                       i ? "ref_atom_name_chars" : "ref_element", n);
          goto out;
        }
      }
    el[n] = onehot_index(f->ref_element + (size_t)n * N_ELEM, N_ELEM);
    for (int c = 0; c < N_CHARPOS; c++)
      ch[n * N_CHARPOS + c] =
          onehot_index(f->ref_atom_name_chars + ((size_t)n * N_CHARPOS + (size_t)c) * N_CHAR, N_CHAR);
    if (f->ref_mask[n] != 0.0f && f->ref_mask[n] != 1.0f) mask_u8 = 0;
    mask[n] = f->ref_mask[n] != 0.0f;
  }
  {
    int64_t sT[1] = {T}, sN[1] = {N}, sN3[2] = {N, 3}, sN4[2] = {N, N_CHARPOS},
            sSi[2] = {T, c_s_inputs}, sSt[2] = {T, c_s}, sZ[3] = {T, T, c_z};
    int64_t sW[4][2];
    px_bundle_item it[64];
    int k = 0;
    it[k++] = (px_bundle_item){"s_inputs", "F32", 2, sSi, f->s_inputs};
    if (f->s_trunk) it[k++] = (px_bundle_item){"s_trunk", "F32", 2, sSt, f->s_trunk};
    it[k++] = (px_bundle_item){"z_trunk", "F32", 3, sZ, f->z_trunk};
    it[k++] = (px_bundle_item){"ref_pos", "F32", 2, sN3, f->ref_pos};
    it[k++] = (px_bundle_item){"ref_charge", "F32", 1, sN, f->ref_charge};
    it[k++] = mask_u8 ? (px_bundle_item){"ref_mask", "U8", 1, sN, mask}
                      : (px_bundle_item){"ref_mask", "F32", 1, sN, f->ref_mask};
    it[k++] = (px_bundle_item){"ref_element_index", "I64", 1, sN, el};
    it[k++] = (px_bundle_item){"ref_atom_name_chars_index", "I64", 2, sN4, ch};
    it[k++] = (px_bundle_item){"ref_space_uid", "I64", 1, sN, f->ref_space_uid};
    it[k++] = (px_bundle_item){"atom_to_token_idx", "I64", 1, sN, f->atom_to_token_idx};
    it[k++] = (px_bundle_item){"asym_id", "I64", 1, sT, f->asym_id};
    it[k++] = (px_bundle_item){"residue_index", "I64", 1, sT, f->residue_index};
    it[k++] = (px_bundle_item){"entity_id", "I64", 1, sT, f->entity_id};
    it[k++] = (px_bundle_item){"token_index", "I64", 1, sT, f->token_index};
    it[k++] = (px_bundle_item){"sym_id", "I64", 1, sT, f->sym_id};
    if (a) {
      const char *const *sv[4] = {a->res_name, a->chain_id, a->atom_name, a->element};
      const char *nm[4] = {"token_res_name", "token_chain_id", "atom_name", "atom_element"};
      const int minw[4] = {4, 4, 4, 2};
      for (int i = 0; i < 4; i++) {
        if (!sv[i]) continue;
        int cnt = i < 2 ? T : N;
        if ((rc = pack_strings(path, nm[i], sv[i], cnt, minw[i], &txt[i], &sW[i][1]))) goto out;
        sW[i][0] = cnt;
        it[k++] = (px_bundle_item){nm[i], "U8", 2, sW[i], txt[i]};
      }
      if (a->res_num) it[k++] = (px_bundle_item){"token_res_num", "I64", 1, sT, a->res_num};
      if (a->is_designed) it[k++] = (px_bundle_item){"token_is_designed", "U8", 1, sT, a->is_designed};
    }
    for (int i = 0; i < n_extra; i++) it[k++] = extra[i];
    const char *mk[19] = {"format", "version"};
    const char *mv[19] = {PX_BUNDLE_FORMAT, PX_BUNDLE_VERSION};
    int nm = 2;
    if (name) mk[nm] = "name", mv[nm++] = name;
    for (int i = 0; i < n_meta; i++) mk[nm] = meta_keys[i], mv[nm++] = meta_values[i];
    sprintf(part, "%s.partial", path);
    if ((rc = px_bundle_write_tensors(part, it, k, mk, mv, nm))) goto out;
    px_bundle *chk = NULL;
    if ((rc = px_bundle_open(part, &chk)) != 0) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", px_last_error());
      size_t pl = strlen(part);
      remove(part);
      rc = px_fail(rc, "%s: refusing to write an invalid bundle: %s", path,
                   strncmp(msg, part, pl) == 0 && msg[pl] == ':' ? msg + pl + 2 : msg);
      goto out;
    }
    px_bundle_free(chk);
    if (px_file_rename(part, path) != 0) {
      remove(part);
      rc = px_fail(PX_ERR_IO, "%s: cannot rename %s", path, part);
    }
  }
out:
  free(el);
  free(ch);
  free(mask);
  free(part);
  for (int i = 0; i < 4; i++) free(txt[i]);
  return rc;
}
