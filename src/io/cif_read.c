/* mmCIF target reader (structure_in.h; the steps both readers share are structure_common.c's).
 *
 * One pass tokenizes the file into (offset, length, line, kind) records in one growing
 * array; a second pass indexes the five categories the target needs (atom_site, entity,
 * entity_poly, entity_poly_seq, struct_conn) as column bases and strides into that array,
 * so a value is found by arithmetic and nothing is copied until an atom is kept.
 * What upstream reads and in which order is Protenix's DistillationMMCIFParser
 * (protenix/data/parser.py: get_structure, get_poly_res_names, mse_to_met, fix_arginine;
 * protenix/data/filter.py) on top of biotite 1.0.1's mmCIF reader. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/strbuf.h"
#include "io/structure_in_priv.h"
#include "platform.h"

/* ------------------------------------------------------------- tokenizer -- */

/* TK_SKIP stands for len consecutive values of a category the target does not need: they
 * are counted (a loop's value count must be a multiple of its columns) but not stored, so
 * memory follows the wanted categories. A token is 12 bytes; offsets fit 32 bits because a
 * file is at most SIN_MAX_BYTES (1 GiB). */
enum { TK_VAL, TK_QVAL, TK_TAG, TK_LOOP, TK_DATA, TK_SKIP };

#define TOK_MAX_LEN ((1u << 29) - 1)
#define TOK_MAX_COUNT ((size_t)1 << 28)

typedef struct {
  uint32_t off;
  unsigned len : 29;
  unsigned kind : 3;
  uint32_t line;
} tok;

typedef struct {
  const char *s;
  size_t n;
  char shown[96]; /* file name for messages */
  tok *t;
  size_t nt, cap;
} cif;

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int ci_prefix(const char *p, size_t n, const char *pre) {
  size_t k = strlen(pre);
  if (n < k) return 0;
  for (size_t i = 0; i < k; i++)
    if (tolower((unsigned char)p[i]) != tolower((unsigned char)pre[i])) return 0;
  return 1;
}

static int push(cif *c, size_t off, size_t len, uint32_t line, uint32_t kind) {
  if (len > TOK_MAX_LEN)
    return px_fail(PX_ERR_FORMAT, "%s: line %u: a value longer than %u bytes", c->shown, line,
                   TOK_MAX_LEN);
  if (c->nt == TOK_MAX_COUNT)
    return px_fail(PX_ERR_FORMAT, "%s: line %u: more than %zu values", c->shown, line,
                   TOK_MAX_COUNT);
  if (c->nt == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 4096;
    tok *t = realloc(c->t, cap * sizeof *t);
    if (!t) return px_fail(PX_ERR_NOMEM, "%s: out of memory", c->shown);
    c->t = t;
    c->cap = cap;
  }
  c->t[c->nt++] = (tok){(uint32_t)off, (unsigned)len, kind, line};
  return 0;
}

static int tag_lookup(const char *p, size_t n, int *col);

/* Values of unwanted categories: counted into one TK_SKIP per run. */
typedef struct {
  int wanted;      /* values now belong to a wanted category */
  int loop_header; /* after loop_, before its first value */
  int first_tag;   /* the next tag is the loop's first */
  int in_loop;     /* values belong to a loop (else to one item: skipped one by one, so a
                      stray value keeps its own line for the message) */
  size_t skipped;
  uint32_t skip_line;
} tctx;

static int flush_skip(cif *c, tctx *x) {
  if (!x->skipped) return 0;
  int rc = push(c, 0, x->skipped, x->skip_line, TK_SKIP);
  x->skipped = 0;
  return rc;
}

/* Route one token through the context: structure tokens are always kept. */
static int emit(cif *c, tctx *x, size_t off, size_t len, uint32_t line, uint32_t kind) {
  if (kind == TK_VAL || kind == TK_QVAL) {
    x->loop_header = 0;
    if (x->wanted) return push(c, off, len, line, kind);
    if (!x->skipped) x->skip_line = line;
    if (++x->skipped == TOK_MAX_LEN || !x->in_loop) return flush_skip(c, x);
    return 0;
  }
  int rc = flush_skip(c, x);
  if (rc) return rc;
  if (kind == TK_LOOP) {
    x->loop_header = 1;
    x->first_tag = 1;
    x->wanted = 0;
    x->in_loop = 1;
  } else if (kind == TK_TAG) {
    int col;
    if (!x->loop_header) x->in_loop = 0;
    if (!x->loop_header || x->first_tag) x->wanted = tag_lookup(c->s + off, len, &col) >= 0;
    x->first_tag = 0;
  } else {
    x->loop_header = 0;
    x->wanted = 0;
    x->in_loop = 0;
  }
  return push(c, off, len, line, kind);
}

static int tokenize(cif *c) {
  const char *s = c->s;
  const size_t n = c->n;
  /* Control characters and the line count first: a branch-free pass the compiler vectorizes
   * (it reads every byte of the file); the slow loop runs only to name the offending line. */
  size_t lines = 0;
  unsigned bad = 0;
  for (size_t i = 0; i < n; i++) {
    const unsigned char ch = (unsigned char)s[i];
    lines += ch == '\n';
    bad |= (unsigned)((ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f);
  }
  if (lines >= UINT32_MAX) return px_fail(PX_ERR_FORMAT, "%s: too many lines", c->shown);
  uint32_t line = 1;
  if (bad)
    for (size_t i = 0; i < n; i++) {
      const unsigned char ch = (unsigned char)s[i];
      if (ch == '\n') line++;
      else if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7f)
        return px_fail(PX_ERR_FORMAT, "%s: line %u: control character 0x%02x (not a text file?)",
                       c->shown, line, ch);
    }
  line = 1;
  size_t p = 0;
  tctx x = {0, 0, 0, 0, 0, 0};
  while (p < n) {
    char ch = s[p];
    if (ch == '\n') {
      line++;
      p++;
      continue;
    }
    if (is_ws(ch)) {
      p++;
      continue;
    }
    if (ch == '#') {
      while (p < n && s[p] != '\n') p++;
      continue;
    }
    if (ch == ';' && (p == 0 || s[p - 1] == '\n')) {
      /* Text field: to the next line that starts with ';'. */
      uint32_t l0 = line;
      size_t q = p + 1;
      for (;;) {
        const char *nl = memchr(s + q, '\n', n - q);
        if (!nl)
          return px_fail(PX_ERR_FORMAT, "%s: line %u: text field (';') never closed", c->shown,
                         l0);
        q = (size_t)(nl - s);
        line++;
        if (q + 1 < n && s[q + 1] == ';') break;
        q++;
      }
      size_t end = q;
      if (end > p + 1 && s[end - 1] == '\r') end--;
      int rc = emit(c, &x, p + 1, end - (p + 1), l0, TK_QVAL);
      if (rc) return rc;
      p = q + 2;
      continue;
    }
    if (ch == '\'' || ch == '"') {
      /* A quote closes only where a blank (or the end) follows it (CIF 1.1). */
      size_t q = p + 1;
      for (;; q++) {
        if (q >= n || s[q] == '\n' || s[q] == '\r')
          return px_fail(PX_ERR_FORMAT, "%s: line %u: quoted value never closed", c->shown, line);
        if (s[q] == ch && (q + 1 == n || is_ws(s[q + 1]))) break;
      }
      int rc = emit(c, &x, p + 1, q - (p + 1), line, TK_QVAL);
      if (rc) return rc;
      p = q + 1;
      continue;
    }
    size_t q = p;
    while (q < n && !is_ws(s[q])) q++;
    size_t len = q - p;
    uint32_t kind = TK_VAL;
    /* The reserved words (data_, loop_, save_, global_, stop_) start with d, l, s or g in
     * either case; most values do not. */
    const char lc = (char)(ch | 0x20);
    if (ch == '_') kind = TK_TAG;
    else if (lc != 'd' && lc != 'l' && lc != 's' && lc != 'g') kind = TK_VAL;
    else if (ci_prefix(s + p, len, "data_")) kind = TK_DATA;
    else if (len == 5 && ci_prefix(s + p, len, "loop_")) kind = TK_LOOP;
    else if (ci_prefix(s + p, len, "save_") || (len == 7 && ci_prefix(s + p, len, "global_")) ||
             (len == 5 && ci_prefix(s + p, len, "stop_")))
      return px_fail(PX_ERR_FORMAT, "%s: line %u: save frames and global_/stop_ are not mmCIF data",
                     c->shown, line);
    int rc = emit(c, &x, p, len, line, kind);
    if (rc) return rc;
    p = q;
  }
  return flush_skip(c, &x);
}

/* ------------------------------------------------------------ categories -- */

#define MAXC 20

enum { C_ATOM_SITE, C_ENTITY, C_ENTITY_POLY, C_ENTITY_POLY_SEQ, C_STRUCT_CONN, N_CAT };

enum {
  AS_TYPE_SYMBOL, AS_LABEL_ATOM_ID, AS_AUTH_ATOM_ID, AS_LABEL_COMP_ID, AS_AUTH_COMP_ID,
  AS_LABEL_ASYM_ID, AS_AUTH_ASYM_ID, AS_LABEL_SEQ_ID, AS_AUTH_SEQ_ID, AS_LABEL_ALT_ID,
  AS_LABEL_ENTITY_ID, AS_INS_CODE, AS_X, AS_Y, AS_Z, AS_MODEL, AS_N
};
static const char *const as_cols[] = {
    "type_symbol",   "label_atom_id", "auth_atom_id",      "label_comp_id", "auth_comp_id",
    "label_asym_id", "auth_asym_id",  "label_seq_id",      "auth_seq_id",   "label_alt_id",
    "label_entity_id", "pdbx_PDB_ins_code", "Cartn_x",     "Cartn_y",       "Cartn_z",
    "pdbx_PDB_model_num", NULL};
enum { EN_ID, EN_N };
static const char *const en_cols[] = {"id", NULL};
enum { EP_ENTITY_ID, EP_TYPE, EP_N };
static const char *const ep_cols[] = {"entity_id", "type", NULL};
enum { ES_ENTITY_ID, ES_NUM, ES_MON_ID, ES_N };
static const char *const es_cols[] = {"entity_id", "num", "mon_id", NULL};
enum {
  SC_TYPE, SC_ASYM1, SC_COMP1, SC_SEQ1, SC_ATOM1, SC_ALT1, SC_SYM1,
  SC_ASYM2, SC_COMP2, SC_SEQ2, SC_ATOM2, SC_ALT2, SC_SYM2, SC_N
};
static const char *const sc_cols[] = {
    "conn_type_id", "ptnr1_label_asym_id", "ptnr1_label_comp_id", "ptnr1_label_seq_id",
    "ptnr1_label_atom_id", "pdbx_ptnr1_label_alt_id", "ptnr1_symmetry",
    "ptnr2_label_asym_id", "ptnr2_label_comp_id", "ptnr2_label_seq_id",
    "ptnr2_label_atom_id", "pdbx_ptnr2_label_alt_id", "ptnr2_symmetry", NULL};

static const char *const cat_names[N_CAT] = {"atom_site", "entity", "entity_poly",
                                             "entity_poly_seq", "struct_conn"};
static const char *const *const cat_cols[N_CAT] = {as_cols, en_cols, ep_cols, es_cols, sc_cols};

typedef struct {
  int present, loop;
  uint32_t line;
  int nrow;
  long base[MAXC]; /* token index of row 0's value, -1 when the column is absent */
  int stride[MAXC];
} cat;

typedef struct {
  const char *p;
  size_t n;
  uint32_t line;
} val;

static int ci_eq(const char *p, size_t n, const char *w) {
  return strlen(w) == n && ci_prefix(p, n, w);
}

/* Which wanted category and column a tag names: -1 when none. */
static int tag_lookup(const char *p, size_t n, int *col) {
  const char *dot = memchr(p, '.', n);
  if (!dot) return -1;
  size_t cl = (size_t)(dot - p) - 1; /* without the leading '_' */
  for (int k = 0; k < N_CAT; k++) {
    if (!ci_eq(p + 1, cl, cat_names[k])) continue;
    const char *item = dot + 1;
    size_t il = n - (cl + 2);
    *col = -1;
    for (int j = 0; cat_cols[k][j]; j++)
      if (ci_eq(item, il, cat_cols[k][j])) *col = j;
    return k;
  }
  return -1;
}

/* Category name of a tag (for "a loop mixes categories"): its length up to the dot. */
static size_t tag_cat_len(const char *p, size_t n) {
  const char *dot = memchr(p, '.', n);
  return dot ? (size_t)(dot - p) : n;
}

static void cat_reset(cat *c) {
  memset(c, 0, sizeof *c);
  for (int j = 0; j < MAXC; j++) c->base[j] = -1;
}

static int index_categories(cif *c, cat cats[N_CAT]) {
  for (int k = 0; k < N_CAT; k++) cat_reset(&cats[k]);
  const tok *t = c->t;
  const size_t nt = c->nt;
  int blocks = 0;
  size_t i = 0;
  while (i < nt) {
    const tok *x = &t[i];
    const char *xp = c->s + x->off;
    if (x->kind == TK_DATA) {
      if (++blocks > 1)
        return px_fail(PX_ERR_FORMAT,
                       "%s: line %u: a second data block (one structure per file is read)",
                       c->shown, x->line);
      i++;
      continue;
    }
    if (!blocks)
      return px_fail(PX_ERR_FORMAT, "%s: line %u: content before the first data_ block", c->shown,
                     x->line);
    if (x->kind == TK_LOOP) {
      size_t t0 = ++i;
      while (i < nt && t[i].kind == TK_TAG) i++;
      size_t ncol = i - t0;
      if (!ncol) return px_fail(PX_ERR_FORMAT, "%s: line %u: loop_ without tags", c->shown, x->line);
      size_t v0 = i, nv = 0;
      for (; i < nt && (t[i].kind == TK_VAL || t[i].kind == TK_QVAL || t[i].kind == TK_SKIP); i++)
        nv += t[i].kind == TK_SKIP ? t[i].len : 1;
      if (nv % ncol)
        return px_fail(PX_ERR_FORMAT,
                       "%s: line %u: loop_ of %zu columns holds %zu values (not a multiple)",
                       c->shown, x->line, ncol, nv);
      const char *p0 = c->s + t[t0].off;
      size_t l0 = tag_cat_len(p0, t[t0].len);
      for (size_t j = t0 + 1; j < v0; j++) {
        const char *pj = c->s + t[j].off;
        if (tag_cat_len(pj, t[j].len) != l0 || strncmp(pj, p0, l0))
          return px_fail(PX_ERR_FORMAT, "%s: line %u: loop_ mixes categories", c->shown,
                         t[j].line);
      }
      int col, k = tag_lookup(p0, t[t0].len, &col);
      if (k < 0) continue;
      if (cats[k].present)
        return px_fail(PX_ERR_FORMAT, "%s: line %u: category _%s given twice", c->shown, x->line,
                       cat_names[k]);
      if (nv / ncol > (size_t)INT_MAX)
        return px_fail(PX_ERR_FORMAT, "%s: line %u: too many rows", c->shown, x->line);
      cats[k].present = cats[k].loop = 1;
      cats[k].line = x->line;
      cats[k].nrow = (int)(nv / ncol);
      for (size_t j = t0; j < v0; j++) {
        tag_lookup(c->s + t[j].off, t[j].len, &col);
        if (col < 0) continue;
        if (cats[k].base[col] >= 0)
          return px_fail(PX_ERR_FORMAT, "%s: line %u: column given twice", c->shown, t[j].line);
        cats[k].base[col] = (long)(v0 + (j - t0));
        cats[k].stride[col] = (int)ncol;
      }
      continue;
    }
    if (x->kind == TK_TAG) {
      if (i + 1 >= nt || (t[i + 1].kind != TK_VAL && t[i + 1].kind != TK_QVAL &&
                          t[i + 1].kind != TK_SKIP))
        return px_fail(PX_ERR_FORMAT, "%s: line %u: tag without a value", c->shown, x->line);
      if (t[i + 1].kind == TK_SKIP && t[i + 1].len > 1)
        return px_fail(PX_ERR_FORMAT, "%s: line %u: value without a tag", c->shown, t[i + 1].line);
      int col, k = tag_lookup(xp, x->len, &col);
      if (k >= 0) {
        if (cats[k].loop)
          return px_fail(PX_ERR_FORMAT, "%s: line %u: category _%s given twice", c->shown,
                         x->line, cat_names[k]);
        if (!cats[k].present) cats[k].line = x->line;
        cats[k].present = 1;
        cats[k].nrow = 1;
        if (col >= 0) {
          if (cats[k].base[col] >= 0)
            return px_fail(PX_ERR_FORMAT, "%s: line %u: item given twice", c->shown, x->line);
          cats[k].base[col] = (long)(i + 1);
          cats[k].stride[col] = 0;
        }
      }
      i += 2;
      continue;
    }
    return px_fail(PX_ERR_FORMAT, "%s: line %u: value without a tag", c->shown, x->line);
  }
  if (!blocks) return px_fail(PX_ERR_FORMAT, "%s: no data_ block (not an mmCIF file)", c->shown);
  return 0;
}

static int has(const cat *k, int col) { return k->base[col] >= 0; }

static val get(const cif *c, const cat *k, int col, int row) {
  const tok *t = &c->t[k->base[col] + (long)k->stride[col] * row];
  val v = {c->s + t->off, t->len, t->line};
  if (t->kind == TK_QVAL) /* text fields: the blanks and line breaks around the value */
    while (v.n && is_ws(v.p[0])) v.p++, v.n--;
  while (v.n && is_ws(v.p[v.n - 1])) v.n--;
  return v;
}

static int masked(val v) { return v.n == 1 && (v.p[0] == '.' || v.p[0] == '?'); }

/* Integer (optional sign, digits, in int range); -1 when it is not one. */
static int parse_int(val v, int *out) {
  size_t i = 0;
  int neg = 0;
  if (i < v.n && (v.p[i] == '+' || v.p[i] == '-')) neg = v.p[i++] == '-';
  if (i == v.n) return -1;
  long long x = 0;
  for (; i < v.n; i++) {
    if (v.p[i] < '0' || v.p[i] > '9') return -1;
    x = x * 10 + (v.p[i] - '0');
    if (x > (long long)INT_MAX + 1) return -1;
  }
  if (neg) x = -x;
  if (x > INT_MAX || x < INT_MIN) return -1;
  *out = (int)x;
  return 0;
}

/* A coordinate: decimal text parsed to double and rounded to float32 (what numpy does
 * with the strings biotite hands it); NaN, infinities and anything that is not a plain
 * decimal number are refused. */
static int parse_coord(val v, float *out) {
  /* Fast path for the common form [-+]digits[.digits] with at most 15 digits: the digits as
   * an integer m < 10^15 < 2^53 and the scale 10^f (f <= 15) are both exact doubles, so m /
   * 10^f is the correctly rounded quotient: the double strtod returns (Clinger's fast path). */
  static const double pow10[16] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  {
    size_t i = 0;
    int neg = 0, nd = 0, frac = -1;
    int64_t m = 0;
    if (i < v.n && (v.p[i] == '+' || v.p[i] == '-')) neg = v.p[i++] == '-';
    for (; i < v.n; i++) {
      const char ch = v.p[i];
      if (ch >= '0' && ch <= '9') {
        m = m * 10 + (ch - '0');
        if (++nd > 15) break;
        if (frac >= 0) frac++;
      } else if (ch == '.' && frac < 0) {
        frac = 0;
      } else {
        break;
      }
    }
    if (i == v.n && nd > 0) {
      double d = (double)m / pow10[frac > 0 ? frac : 0];
      if (neg) d = -d; /* as strtod: "-0" and "-0.0" give -0.0 */
      *out = (float)d;
      return 0;
    }
  }
  char b[64];
  if (v.n == 0 || v.n >= sizeof b) return -1;
  int digit = 0;
  for (size_t i = 0; i < v.n; i++) {
    char ch = v.p[i];
    if (ch >= '0' && ch <= '9') digit = 1;
    else if (ch != '.' && ch != '-' && ch != '+' && ch != 'e' && ch != 'E') return -1;
  }
  if (!digit) return -1;
  memcpy(b, v.p, v.n);
  b[v.n] = 0;
  char *end;
  double d = strtod(b, &end);
  if (end != b + v.n) return -1;
  float f = (float)d;
  if (!isfinite(f)) return -1;
  *out = f;
  return 0;
}

typedef struct {
  cif c;
  cat k[N_CAT];
  px_sin_entity *ent;
  int n_ent, cap_ent;
  sin_map em;
} rd;

static int bad_value(rd *r, val v, const char *what, const char *why) {
  char b[40];
  size_t n = v.n < sizeof b - 1 ? v.n : sizeof b - 1;
  memcpy(b, v.p, n);
  b[n] = 0;
  char shown[48];
  px_shown_name(shown, sizeof shown, b);
  return px_fail(PX_ERR_FORMAT, "%s: line %u: %s '%s%s' %s", r->c.shown, v.line, what, shown,
                 v.n > n ? "..." : "", why);
}

static int name_of(rd *r, val v, char dst[PX_SIN_NAME], const char *what) {
  if (sin_copy_name(dst, v.p, v.n))
    return bad_value(r, v, what, "is longer than 7 characters");
  return 0;
}

/* Entity index of id (added when new). */
static int entity_of(rd *r, const char *id) {
  int e = -1;
  if (r->em.slot) {
    size_t i = (size_t)sin_name_hash(id) & (r->em.cap - 1);
    while (r->em.slot[i]) {
      int v = r->em.slot[i] - 1;
      if (!strcmp(r->ent[v].id, id)) return v;
      i = (i + 1) & (r->em.cap - 1);
    }
  }
  if (r->n_ent == r->cap_ent) {
    int cap = r->cap_ent ? r->cap_ent * 2 : 16;
    px_sin_entity *ne = realloc(r->ent, sizeof *ne * (size_t)cap);
    if (!ne) return -1;
    r->ent = ne;
    r->cap_ent = cap;
    /* rehash into a map twice the capacity */
    free(r->em.slot);
    r->em.cap = 16;
    while (r->em.cap < (size_t)cap * 2) r->em.cap <<= 1;
    r->em.slot = calloc(r->em.cap, sizeof(int));
    if (!r->em.slot) return -1;
    for (int v = 0; v < r->n_ent; v++) {
      size_t i = (size_t)sin_name_hash(r->ent[v].id) & (r->em.cap - 1);
      while (r->em.slot[i]) i = (i + 1) & (r->em.cap - 1);
      r->em.slot[i] = v + 1;
    }
  }
  e = r->n_ent++;
  memset(&r->ent[e], 0, sizeof r->ent[e]);
  memcpy(r->ent[e].id, id, PX_SIN_NAME);
  size_t i = (size_t)sin_name_hash(id) & (r->em.cap - 1);
  while (r->em.slot[i]) i = (i + 1) & (r->em.cap - 1);
  r->em.slot[i] = e + 1;
  return e;
}

/* ------------------------------------------------------------------ atoms -- */

#define SEQ_DOT INT_MIN /* label_seq_id '.' before renumbering */

typedef struct {
  int e;      /* entity */
  int seq;
  int atom;   /* index, to keep the last one */
} ekey;

static int ekey_cmp(const void *x, const void *y) {
  const ekey *a = x, *b = y;
  if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
  return (a->atom > b->atom) - (a->atom < b->atom);
}

static int int_cmp(const void *x, const void *y) {
  int a = *(const int *)x, b = *(const int *)y;
  return (a > b) - (a < b);
}

/* get_poly_res_names: each polymer entity's _entity_poly_seq, MSE -> MET, and where a
 * number repeats (microheterogeneity) the residue the atoms show (else the first). */
static int entity_sequences(rd *r, const sin_raw *a, int n) {
  cat *ep = &r->k[C_ENTITY_POLY], *es = &r->k[C_ENTITY_POLY_SEQ];
  if (!ep->present || ep->nrow == 0) return 0;
  if (!has(ep, EP_ENTITY_ID))
    return px_fail(PX_ERR_FORMAT, "%s: line %u: _entity_poly has no entity_id", r->c.shown,
                   ep->line);
  /* polymer types first (the last row of an id wins, as a dict keeps it) */
  int *poly_order = malloc(sizeof(int) * (size_t)ep->nrow);
  int n_poly = 0;
  if (!poly_order) return px_fail(PX_ERR_NOMEM, "%s: out of memory", r->c.shown);
  int rc = 0;
  for (int row = 0; row < ep->nrow && !rc; row++) {
    char id[PX_SIN_NAME];
    if ((rc = name_of(r, get(&r->c, ep, EP_ENTITY_ID, row), id, "entity id"))) break;
    int e = entity_of(r, id);
    if (e < 0) {
      rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", r->c.shown);
      break;
    }
    int type = PX_SIN_POLY_OTHER;
    if (has(ep, EP_TYPE)) {
      val v = get(&r->c, ep, EP_TYPE, row);
      if (v.n == 14 && !memcmp(v.p, "polypeptide(L)", 14)) type = PX_SIN_POLY_PEPTIDE_L;
    }
    if (!r->ent[e].poly) poly_order[n_poly++] = e;
    r->ent[e].poly = type;
  }
  if (!rc && n_poly && (!es->present || !has(es, ES_ENTITY_ID) || !has(es, ES_NUM) ||
                        !has(es, ES_MON_ID)))
    rc = px_fail(PX_ERR_FORMAT,
                 "%s: _entity_poly without an _entity_poly_seq (entity_id, num, mon_id): the "
                 "polymer sequences are unknown",
                 r->c.shown);
  ekey *keys = NULL;
  int *rows = NULL, *nums = NULL;
  if (!rc && n_poly) {
    keys = malloc(sizeof *keys * (size_t)(n > 0 ? n : 1));
    size_t nr = (size_t)(es->nrow > 0 ? es->nrow : 0) + 1;
    rows = malloc(sizeof(int) * nr);
    nums = malloc(sizeof(int) * nr);
    if (!keys || !rows || !nums) rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", r->c.shown);
  }
  for (int pi = 0; pi < n_poly && !rc; pi++) {
    const int e = poly_order[pi];
    const char *eid = r->ent[e].id;
    int m = 0;
    for (int row = 0; row < es->nrow; row++) {
      val v = get(&r->c, es, ES_ENTITY_ID, row);
      if (v.n == strlen(eid) && !memcmp(v.p, eid, v.n)) {
        val nv = get(&r->c, es, ES_NUM, row);
        if (parse_int(nv, &nums[m])) {
          rc = bad_value(r, nv, "_entity_poly_seq.num", "is not an integer");
          break;
        }
        rows[m++] = row;
      }
    }
    if (rc) break;
    /* unique numbers? */
    int *sorted = malloc(sizeof(int) * (size_t)(m ? m : 1));
    if (!sorted) {
      rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", r->c.shown);
      break;
    }
    memcpy(sorted, nums, sizeof(int) * (size_t)m);
    qsort(sorted, (size_t)m, sizeof(int), int_cmp);
    int uniq = 0;
    for (int j = 0; j < m; j++) uniq += j == 0 || sorted[j] != sorted[j - 1];
    free(sorted);
    char(*seq)[PX_SIN_NAME] = malloc(sizeof *seq * (size_t)(uniq ? uniq : 1));
    if (!seq) {
      rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", r->c.shown);
      break;
    }
    r->ent[e].seq = seq;
    int nk = 0;
    if (uniq != m)
      for (int i = 0; i < n; i++)
        if (a[i].entity == e) keys[nk++] = (ekey){e, a[i].seq, i};
    if (nk) qsort(keys, (size_t)nk, sizeof *keys, ekey_cmp);
    int ns = 0, match = m ? nums[0] : 0;
    for (int j = 0; j < m && !rc; j++) {
      char mon[PX_SIN_NAME];
      if ((rc = name_of(r, get(&r->c, es, ES_MON_ID, rows[j]), mon, "_entity_poly_seq.mon_id")))
        break;
      if (!strcmp(mon, "MSE")) strcpy(mon, "MET");
      int take;
      if (uniq == m) {
        take = 1;
      } else {
        if (nums[j] != match) continue;
        /* the last atom with this number names the residue the structure holds */
        int lo = 0, hi = nk; /* first key with seq > nums[j] */
        while (lo < hi) {
          int mid = (lo + hi) / 2;
          if (keys[mid].seq <= nums[j]) lo = mid + 1;
          else hi = mid;
        }
        if (lo > 0 && keys[lo - 1].seq == nums[j])
          take = !strcmp(a[keys[lo - 1].atom].res, mon);
        else
          take = 1;
        if (take) match++;
      }
      if (take) {
        if (ns == uniq) break;
        memcpy(seq[ns++], mon, PX_SIN_NAME);
      }
    }
    if (!rc && ns != uniq) {
      char sh[32];
      px_shown_name(sh, sizeof sh, eid);
      rc = px_fail(PX_ERR_FORMAT,
                   "%s: entity %s: _entity_poly_seq's repeated numbers do not resolve to one "
                   "residue per number",
                   r->c.shown, sh);
    }
    r->ent[e].n_seq = ns;
  }
  free(keys);
  free(rows);
  free(nums);
  free(poly_order);
  return rc;
}

static int conn_name(rd *r, const cat *k, int col, int row, char *dst, size_t cap,
                     const char *dflt) {
  if (!has(k, col)) {
    snprintf(dst, cap, "%s", dflt);
    return 0;
  }
  val v = get(&r->c, k, col, row);
  if (masked(v)) {
    snprintf(dst, cap, "%s", dflt);
    return 0;
  }
  if (v.n >= cap) return bad_value(r, v, "_struct_conn value", "is too long");
  memcpy(dst, v.p, v.n);
  dst[v.n] = 0;
  return 0;
}

static int read_conn(rd *r, px_sin_conn **out, int *n_out) {
  cat *k = &r->k[C_STRUCT_CONN];
  *out = NULL;
  *n_out = 0;
  if (!k->present || k->nrow == 0) return 0;
  px_sin_conn *cs = calloc((size_t)k->nrow, sizeof *cs);
  if (!cs) return px_fail(PX_ERR_NOMEM, "%s: out of memory", r->c.shown);
  for (int row = 0; row < k->nrow; row++) {
    px_sin_conn *x = &cs[row];
    int rc = conn_name(r, k, SC_TYPE, row, x->conn_type, sizeof x->conn_type, ".");
    for (int p = 0; p < 2 && !rc; p++) {
      int o = p ? SC_ASYM2 - SC_ASYM1 : 0;
      rc = conn_name(r, k, SC_ASYM1 + o, row, x->asym[p], PX_SIN_NAME, ".");
      if (!rc) rc = conn_name(r, k, SC_COMP1 + o, row, x->comp[p], PX_SIN_NAME, ".");
      if (!rc) rc = conn_name(r, k, SC_ATOM1 + o, row, x->atom[p], PX_SIN_NAME, ".");
      if (!rc) rc = conn_name(r, k, SC_ALT1 + o, row, x->alt[p], PX_SIN_NAME, ".");
      if (!rc) rc = conn_name(r, k, SC_SYM1 + o, row, x->symmetry[p], sizeof x->symmetry[p], "1_555");
      x->seq[p] = -1;
      if (!rc && has(k, SC_SEQ1 + o)) {
        val v = get(&r->c, k, SC_SEQ1 + o, row);
        if (!masked(v) && parse_int(v, &x->seq[p])) x->seq[p] = -1;
      }
    }
    if (rc) {
      free(cs);
      return rc;
    }
  }
  *out = cs;
  *n_out = k->nrow;
  return 0;
}

static int read_atoms(rd *r, sin_raw **out, int *n_out) {
  cat *k = &r->k[C_ATOM_SITE];
  const char *f = r->c.shown;
  *out = NULL;
  *n_out = 0;
  if (!k->present) return px_fail(PX_ERR_FORMAT, "%s: no _atom_site category (no atoms)", f);
  static const int need[] = {AS_X, AS_Y, AS_Z, AS_LABEL_ASYM_ID, AS_LABEL_SEQ_ID,
                             AS_LABEL_ENTITY_ID, AS_TYPE_SYMBOL};
  for (size_t j = 0; j < sizeof need / sizeof need[0]; j++)
    if (!has(k, need[j]))
      return px_fail(PX_ERR_FORMAT, "%s: line %u: _atom_site has no %s column", f, k->line,
                     as_cols[need[j]]);
  const int c_atom = has(k, AS_AUTH_ATOM_ID) ? AS_AUTH_ATOM_ID : AS_LABEL_ATOM_ID;
  const int c_comp = has(k, AS_AUTH_COMP_ID) ? AS_AUTH_COMP_ID : AS_LABEL_COMP_ID;
  const int c_auth_asym = has(k, AS_AUTH_ASYM_ID) ? AS_AUTH_ASYM_ID : AS_LABEL_ASYM_ID;
  const int c_auth_seq = has(k, AS_AUTH_SEQ_ID) ? AS_AUTH_SEQ_ID : AS_LABEL_SEQ_ID;
  if (!has(k, c_atom) || !has(k, c_comp))
    return px_fail(PX_ERR_FORMAT, "%s: line %u: _atom_site has no atom or residue name column", f,
                   k->line);
  if (k->nrow == 0) return px_fail(PX_ERR_FORMAT, "%s: line %u: _atom_site has no rows", f, k->line);
  if (k->nrow > SIN_MAX_ATOMS)
    return px_fail(PX_ERR_FORMAT, "%s: line %u: %d atoms (more than %d)", f, k->line, k->nrow,
                   SIN_MAX_ATOMS);

  /* The first model: biotite takes the rows up to the first row of the second distinct
   * model number, i.e. the leading run of the first row's number. Masked numbers read as
   * 0 there, so they do here. */
  int nrow = k->nrow;
  if (has(k, AS_MODEL)) {
    int m0 = 0;
    for (int row = 0; row < k->nrow; row++) {
      val v = get(&r->c, k, AS_MODEL, row);
      int m = 0;
      if (!masked(v) && parse_int(v, &m))
        return bad_value(r, v, "pdbx_PDB_model_num", "is not an integer");
      if (row == 0) m0 = m;
      else if (m != m0 && nrow == k->nrow) nrow = row;
    }
  }

  /* altloc "first" over the whole model: the smallest id other than '.' */
  char first_alt[PX_SIN_NAME] = ".";
  int any_alt = 0;
  if (has(k, AS_LABEL_ALT_ID)) {
    for (int row = 0; row < nrow; row++) {
      val v = get(&r->c, k, AS_LABEL_ALT_ID, row);
      if (v.n == 1 && v.p[0] == '.') continue;
      char alt[PX_SIN_NAME];
      if (name_of(r, v, alt, "label_alt_id")) return PX_ERR_FORMAT;
      if (!any_alt || strcmp(alt, first_alt) < 0) memcpy(first_alt, alt, PX_SIN_NAME);
      any_alt = 1;
    }
  }

  const size_t cap = (size_t)(nrow > 0 ? nrow : 1);
  sin_raw *a = malloc(sizeof *a * cap);
  char *dot = malloc(cap);
  if (!a || !dot) {
    free(a);
    free(dot);
    return px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
  }
  int n = 0, rc = 0;
  char last_eid[PX_SIN_NAME] = "";
  int last_e = -1;
  for (int row = 0; row < nrow && !rc; row++) {
    if (any_alt) {
      val v = get(&r->c, k, AS_LABEL_ALT_ID, row);
      int keep = (v.n == 1 && v.p[0] == '.') ||
                 (v.n == strlen(first_alt) && !memcmp(v.p, first_alt, v.n));
      if (!keep) continue;
    }
    sin_raw *x = &a[n];
    memset(x, 0, sizeof *x);
    x->rix = -1;
    char eid[PX_SIN_NAME];
    if ((rc = name_of(r, get(&r->c, k, c_atom, row), x->atom, "atom name"))) break;
    if ((rc = name_of(r, get(&r->c, k, c_comp, row), x->res, "residue name"))) break;
    if ((rc = name_of(r, get(&r->c, k, AS_TYPE_SYMBOL, row), x->elem, "type_symbol"))) break;
    if ((rc = name_of(r, get(&r->c, k, AS_LABEL_ASYM_ID, row), x->asym, "label_asym_id"))) break;
    if ((rc = name_of(r, get(&r->c, k, c_auth_asym, row), x->auth_asym, "auth_asym_id"))) break;
    if ((rc = name_of(r, get(&r->c, k, AS_LABEL_ENTITY_ID, row), eid, "label_entity_id"))) break;
    if (last_e >= 0 && !strcmp(eid, last_eid)) {
      x->entity = last_e;
    } else {
      x->entity = last_e = entity_of(r, eid);
      if (last_e < 0) {
        rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
        break;
      }
      memcpy(last_eid, eid, PX_SIN_NAME);
    }
    val v = get(&r->c, k, AS_LABEL_SEQ_ID, row);
    dot[n] = 0;
    if (v.n == 1 && v.p[0] == '.') {
      dot[n] = 1;
      x->seq = SEQ_DOT;
    } else if (parse_int(v, &x->seq)) {
      /* only fatal inside a chain that starts numbered (checked below) */
      dot[n] = 2;
      x->seq = v.line; /* kept for the message */
    }
    v = get(&r->c, k, c_auth_seq, row);
    if (masked(v)) x->auth_seq = -1;
    else if (parse_int(v, &x->auth_seq)) {
      rc = bad_value(r, v, "auth_seq_id", "is not an integer");
      break;
    }
    if (has(k, AS_INS_CODE)) {
      v = get(&r->c, k, AS_INS_CODE, row);
      if (!masked(v) && v.n) {
        if (v.n > 1) {
          rc = bad_value(r, v, "pdbx_PDB_ins_code", "is not one character");
          break;
        }
        x->ins = v.p[0];
      }
    }
    static const int xyz[3] = {AS_X, AS_Y, AS_Z};
    for (int d = 0; d < 3 && !rc; d++) {
      v = get(&r->c, k, xyz[d], row);
      if (parse_coord(v, &x->xyz[d])) rc = bad_value(r, v, as_cols[xyz[d]], "is not a finite number");
    }
    if (rc) break;
    n++;
  }
  if (rc) {
    free(a);
    free(dot);
    return rc;
  }

  /* replace_auth_with_label: residue number := label_seq_id; a chain whose first atom has
   * '.' (a ligand) is numbered 1.. by residue. Chains here are biotite's: runs split where
   * label_asym_id changes or the author number decreases. */
  for (int s0 = 0, e0; s0 < n; s0 = e0) {
    for (e0 = s0 + 1; e0 < n && !strcmp(a[e0].asym, a[s0].asym) && a[e0].auth_seq >= a[e0 - 1].auth_seq;
         e0++) {
    }
    if (dot[s0] == 1) {
      int num = 0;
      for (int i = s0; i < e0; i++) {
        if (i == s0 || a[i].auth_seq != a[i - 1].auth_seq || a[i].ins != a[i - 1].ins ||
            strcmp(a[i].res, a[i - 1].res))
          num++;
        a[i].seq = num;
      }
    } else {
      for (int i = s0; i < e0; i++)
        if (dot[i]) {
          char sh[32];
          px_shown_name(sh, sizeof sh, a[i].asym);
          rc = px_fail(PX_ERR_FORMAT,
                       "%s: line %d: label_seq_id is not a number inside polymer chain %s", f,
                       dot[i] == 2 ? a[i].seq : (int)k->line, sh);
          break;
        }
      if (rc) break;
    }
  }
  free(dot);
  if (rc) {
    free(a);
    return rc;
  }
  sin_mse_to_met(a, n);
  *out = a;
  *n_out = n;
  return 0;
}

int px_cif_parse(const char *text, size_t len, const char *name, px_structure_in **out) {
  *out = NULL;
  rd r;
  memset(&r, 0, sizeof r);
  r.c.s = text;
  r.c.n = len;
  px_shown_name(r.c.shown, sizeof r.c.shown, name);
  sin_raw *a = NULL;
  px_sin_conn *conn = NULL;
  int n = 0, n_conn = 0;
  int rc = tokenize(&r.c);
  if (!rc) rc = index_categories(&r.c, r.k);
  /* entities in the file's order: _entity, then any the atoms name */
  if (!rc && r.k[C_ENTITY].present && has(&r.k[C_ENTITY], EN_ID)) {
    for (int row = 0; row < r.k[C_ENTITY].nrow && !rc; row++) {
      char id[PX_SIN_NAME];
      rc = name_of(&r, get(&r.c, &r.k[C_ENTITY], EN_ID, row), id, "_entity.id");
      if (!rc && entity_of(&r, id) < 0) rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", r.c.shown);
    }
  }
  if (!rc) rc = read_atoms(&r, &a, &n);
  if (!rc) rc = entity_sequences(&r, a, n);
  if (!rc) rc = read_conn(&r, &conn, &n_conn);
  free(r.c.t);
  free(r.em.slot);
  if (rc) {
    free(a);
    free(conn);
    sin_entities_free(r.ent, r.n_ent);
    return rc;
  }
  rc = sin_finish(name, a, n, r.ent, r.n_ent, conn, n_conn, NULL, 0, 0, out);
  free(a);
  return rc;
}
