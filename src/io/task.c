/* PXDesign task files into px_task_list; rules in task.h. The YAML form is mapped as
 * pxdesign/utils/inputs.py:parse_yaml_to_json maps it, the JSON form read as the
 * inference data pipeline reads it (infer_data_pipeline.py: condition / filter / crop /
 * msa / hotspot / generation). */
#include "io/task.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/doc.h"
#include "io/strbuf.h"
#include "platform.h"
#include "pxdiff.h"

#define CROP_MAX_NUM 100000000 /* residue numbers beyond this are no residue numbers */

typedef struct {
  const char *file; /* shown name */
  px_task_list *out;
  int code;
} tctx;

static int tfail(tctx *c, int line, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (line > 0) px_fail(PX_ERR_INPUT, "%s:%d: %s", c->file, line, msg);
  else px_fail(PX_ERR_INPUT, "%s: %s", c->file, msg);
  c->code = PX_ERR_INPUT;
  return -1;
}

static int toom(tctx *c) {
  px_fail(PX_ERR_NOMEM, "%s: out of memory", c->file);
  c->code = PX_ERR_NOMEM;
  return -1;
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}
static char *dups(const char *s) { return dupn(s, strlen(s)); }

/* A printable short form of a scalar's text for messages. */
static const char *shown(const px_doc *d, char *buf, size_t cap) {
  if (d->type == PX_DOC_LIST) return "a list";
  if (d->type == PX_DOC_MAP) return "a mapping";
  px_shown_name(buf, cap, d->text ? d->text : "");
  return buf;
}

static void warn(tctx *c, int line, const char *fmt, ...) {
  char msg[300], full[420];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(full, sizeof full, "%s:%d: %s", c->file, line, msg);
  px_task_list *l = c->out;
  if (l->n_warning >= 64) return; /* a hostile file cannot flood the caller */
  char **nw = realloc(l->warning, (size_t)(l->n_warning + 1) * sizeof *nw);
  if (!nw) return;
  l->warning = nw;
  char *s = dups(full);
  if (s) l->warning[l->n_warning++] = s;
}

/* Warn about keys of map m not in the NULL-terminated list known. */
static void check_keys(tctx *c, const px_doc *m, const char *where, const char *const *known) {
  for (int k = 0; k < m->n; k++) {
    const px_doc *key = &m->key[k];
    int ok = 0;
    for (const char *const *q = known; *q && key->type == PX_DOC_STR; q++)
      if (!strcmp(key->text, *q)) ok = 1;
    if (!ok) {
      char b[64];
      warn(c, key->line, "unknown key '%s' in %s ignored", shown(key, b, sizeof b), where);
    }
  }
}

/* Python's int() of a string: optional spaces, sign, digits with single '_' between. */
static int py_int(const char *s, size_t n, long long *out) {
  size_t i = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v')) i++;
  while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' ||
                   s[n - 1] == '\f' || s[n - 1] == '\v'))
    n--;
  int neg = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (i >= n) return 0;
  long long v = 0;
  int prev_digit = 0;
  for (; i < n; i++) {
    if (s[i] == '_') {
      if (!prev_digit || i + 1 >= n) return 0;
      prev_digit = 0;
      continue;
    }
    if (s[i] < '0' || s[i] > '9') return 0;
    /* saturate far beyond any accepted value; callers range-check */
    if (v < 100000000000000000LL) v = v * 10 + (s[i] - '0');
    prev_digit = 1;
  }
  *out = neg ? -v : v;
  return 1;
}

/* Parse a crop string into ranges, as json_parser.py:140-154 reads it (split on ",",
 * a piece with "-" is "A-B"), refusing what would fail or misbehave there. */
static int parse_crop(tctx *c, int line, const char *chain, const char *text, px_task_chain *ch) {
  size_t n = strlen(text);
  int cap = 1;
  for (size_t k = 0; k < n; k++) cap += text[k] == ',';
  ch->crop = calloc((size_t)cap, sizeof *ch->crop);
  if (!ch->crop) return toom(c);
  char sh[80];
  px_shown_name(sh, sizeof sh, text);
  size_t st = 0;
  for (int idx = 0; idx < cap; idx++) {
    size_t en = st;
    while (en < n && text[en] != ',') en++;
    const char *piece = text + st;
    size_t pl = en - st;
    const char *dash = memchr(piece, '-', pl);
    long long a, b;
    char ps[48];
    {
      size_t m = pl < 40 ? pl : 40;
      memcpy(ps, piece, m);
      ps[m] = 0;
      for (size_t j = 0; j < m; j++)
        if ((unsigned char)ps[j] < 0x20) ps[j] = '?';
    }
    if (dash) {
      if (memchr(dash + 1, '-', pl - (size_t)(dash + 1 - piece)))
        return tfail(c, line, "chain %s: crop '%s': piece '%s' is not N or A-B (negative numbers cannot be written here)",
                     chain, sh, ps);
      if (!py_int(piece, (size_t)(dash - piece), &a) || !py_int(dash + 1, pl - (size_t)(dash + 1 - piece), &b))
        return tfail(c, line, "chain %s: crop '%s': '%s' is not a range of residue numbers A-B", chain, sh, ps);
      if (a > b)
        return tfail(c, line, "chain %s: crop '%s': range '%s' is reversed (write %lld-%lld)", chain, sh, ps, b, a);
    } else {
      if (!py_int(piece, pl, &a))
        return tfail(c, line, "chain %s: crop '%s': '%s' is not a residue number%s", chain, sh, ps,
                     pl == 0 ? " (empty piece: stray ',')" : "");
      b = a;
    }
    if (a < -CROP_MAX_NUM || b > CROP_MAX_NUM)
      return tfail(c, line, "chain %s: crop '%s': residue number out of range in '%s'", chain, sh, ps);
    ch->crop[idx].lo = (int)a;
    ch->crop[idx].hi = (int)b;
    ch->n_crop++;
    st = en + 1;
  }
  ch->crop_text = dups(text);
  if (!ch->crop_text) return toom(c);
  return 0;
}

static int ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a, y = *b;
    if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
    if (x != y) return 0;
  }
  return *a == *b;
}

static int is_all(const px_doc *d) {
  return d->type == PX_DOC_STR && (ieq(d->text, "all") || ieq(d->text, "full"));
}

static int parse_hotspots(tctx *c, const char *chain, const px_doc *h, px_task_chain *ch) {
  char b[64];
  ch->hotspot_given = 1;
  const px_doc *items = h;
  int n = 1;
  if (h->type == PX_DOC_LIST) {
    items = h->item;
    n = h->n;
  }
  ch->hotspot = calloc((size_t)(n ? n : 1), sizeof *ch->hotspot);
  if (!ch->hotspot) return toom(c);
  for (int k = 0; k < n; k++) {
    const px_doc *v = &items[k];
    if (v->type != PX_DOC_INT)
      return tfail(c, v->line, "chain %s: hotspot %s is not a residue number (an integer)%s", chain,
                   shown(v, b, sizeof b), v->type == PX_DOC_STR ? "; write it without quotes" : "");
    if (v->i < -CROP_MAX_NUM || v->i > CROP_MAX_NUM)
      return tfail(c, v->line, "chain %s: hotspot %s is out of range", chain, shown(v, b, sizeof b));
    ch->hotspot[ch->n_hotspot++] = (int)v->i;
  }
  return 0;
}

static int binder_length(tctx *c, const px_doc *v, const char *what, int *out) {
  char b[64];
  long long x;
  if (v->type == PX_DOC_INT) x = v->i;
  else if (v->type == PX_DOC_STR && py_int(v->text, v->text_len, &x)) {
  } else if (v->type == PX_DOC_FLOAT)
    return tfail(c, v->line, "%s %s is not an integer", what, shown(v, b, sizeof b));
  else
    return tfail(c, v->line, "%s must be an integer number of residues, found %s", what,
                 v->type == PX_DOC_STR ? shown(v, b, sizeof b) : px_doc_type_name(v->type));
  if (x < 1) return tfail(c, v->line, "%s %lld: a binder needs at least 1 residue", what, x);
  if (x > PX_TASK_MAX_BINDER)
    return tfail(c, v->line, "%s %lld is absurd (at most %d residues)", what, x, PX_TASK_MAX_BINDER);
  *out = (int)x;
  return 0;
}

static int check_name(tctx *c, int line, const char *name) {
  char b[80];
  px_shown_name(b, sizeof b, name);
  if (!name[0]) return tfail(c, line, "the task name is empty");
  if (!strcmp(name, ".") || !strcmp(name, ".."))
    return tfail(c, line, "task name '%s' cannot name an output directory", b);
  for (const char *s = name; *s; s++)
    if (*s == '/' || *s == '\\' || (unsigned char)*s < 0x20 || *s == 0x7f)
      return tfail(c, line, "task name '%s' holds a path separator or control character", b);
  return 0;
}

static int check_structure_name(tctx *c, int line, const char *f) {
  size_t n = strlen(f);
  char b[160];
  px_shown_name(b, sizeof b, f);
  if (!n) return tfail(c, line, "the target structure file name is empty");
  if (!(n > 4 && (!strcmp(f + n - 4, ".cif") || !strcmp(f + n - 4, ".pdb"))))
    return tfail(c, line, "target structure '%s': not a .cif or .pdb file (what PXDesign reads)", b);
  return 0;
}

/* Chain ids of a task must be distinct. */
static int check_dup_chain(tctx *c, int line, const px_task *t) {
  for (int k = 0; k < t->n_chain - 1; k++)
    if (!strcmp(t->chain[k].id, t->chain[t->n_chain - 1].id)) {
      char b[40];
      px_shown_name(b, sizeof b, t->chain[k].id);
      return tfail(c, line, "chain %s is listed twice", b);
    }
  return 0;
}

static void task_free(px_task *t) {
  free(t->name);
  free(t->structure_file);
  for (int k = 0; k < t->n_chain; k++) {
    px_task_chain *ch = &t->chain[k];
    free(ch->id);
    free(ch->crop);
    free(ch->crop_text);
    free(ch->hotspot);
    free(ch->msa_dir);
    free(ch->msa_pairing_db);
  }
  free(t->chain);
  memset(t, 0, sizeof *t);
}

void px_task_list_free(px_task_list *l) {
  if (!l) return;
  for (int k = 0; k < l->n; k++) task_free(&l->task[k]);
  free(l->task);
  for (int k = 0; k < l->n_warning; k++) free(l->warning[k]);
  free(l->warning);
  memset(l, 0, sizeof *l);
}

/* ---- YAML form (inputs.py:27-147) ---- */

static int yaml_task(tctx *c, const px_doc *root, const char *stem, px_task *t) {
  char b[80];
  if (root->type == PX_DOC_NULL) return tfail(c, 0, "the task file is empty");
  if (root->type != PX_DOC_MAP)
    return tfail(c, root->line, "a task file is a mapping (task_name, binder_length, target), found a %s",
                 px_doc_type_name(root->type));
  static const char *const top_keys[] = {"task_name", "binder_length", "target", NULL};
  check_keys(c, root, "the task", top_keys);

  const px_doc *v = px_doc_get(root, "task_name");
  if (v) {
    if (v->type == PX_DOC_NULL || v->type == PX_DOC_LIST || v->type == PX_DOC_MAP)
      return tfail(c, v->line, "task_name must be a name, found %s", px_doc_type_name(v->type));
    /* A plain 007 is the integer 7 to PyYAML; the name keeps the text as written. */
    t->name = dupn(v->text, v->text_len);
    if (!t->name) return toom(c);
    if (strlen(t->name) != v->text_len) return tfail(c, v->line, "task_name holds a NUL character");
    if (check_name(c, v->line, t->name)) return -1;
  } else {
    t->name = dups(stem);
    if (!t->name) return toom(c);
    if (check_name(c, 0, t->name)) return -1;
  }

  v = px_doc_get(root, "binder_length");
  if (!v) return tfail(c, 0, "missing required field 'binder_length'");
  if (binder_length(c, v, "binder_length", &t->binder_length)) return -1;

  const px_doc *tg = px_doc_get(root, "target");
  if (!tg || tg->type == PX_DOC_NULL) return tfail(c, 0, "missing required field 'target' (with file and chains)");
  if (tg->type != PX_DOC_MAP)
    return tfail(c, tg->line, "target must be a mapping with file and chains, found a %s", px_doc_type_name(tg->type));
  static const char *const tg_keys[] = {"file", "chains", NULL};
  check_keys(c, tg, "target", tg_keys);
  v = px_doc_get(tg, "file");
  if (!v || v->type == PX_DOC_NULL) return tfail(c, tg->line, "missing required field 'target.file'");
  if (v->type != PX_DOC_STR) return tfail(c, v->line, "target.file must be a path, found a %s", px_doc_type_name(v->type));
  if (strlen(v->text) != v->text_len) return tfail(c, v->line, "target.file holds a NUL character");
  if (check_structure_name(c, v->line, v->text)) return -1;
  t->structure_file = dups(v->text);
  if (!t->structure_file) return toom(c);

  const px_doc *chs = px_doc_get(tg, "chains");
  if (!chs || chs->type == PX_DOC_NULL || (chs->type == PX_DOC_MAP && chs->n == 0))
    return tfail(c, chs ? chs->line : tg->line, "missing required field 'target.chains' (e.g. chains: {A: all})");
  if (chs->type != PX_DOC_MAP)
    return tfail(c, chs->line, "target.chains must map chain ids to settings (A: all), found a %s",
                 px_doc_type_name(chs->type));
  t->chain = calloc((size_t)chs->n, sizeof *t->chain);
  if (!t->chain) return toom(c);
  for (int k = 0; k < chs->n; k++) {
    const px_doc *key = &chs->key[k], *props = &chs->item[k];
    px_task_chain *ch = &t->chain[t->n_chain++];
    /* inputs.py: chain_id = str(chain_id); an integer key 1 is chain "1". */
    if (key->type == PX_DOC_STR) ch->id = dupn(key->text, key->text_len);
    else if (key->type == PX_DOC_INT) {
      snprintf(b, sizeof b, "%lld", key->i);
      ch->id = dups(b);
    } else
      return tfail(c, key->line, "chain id '%s' reads as a %s; quote it", shown(key, b, sizeof b),
                   px_doc_type_name(key->type));
    if (!ch->id) return toom(c);
    if (!ch->id[0] || strlen(ch->id) != key->text_len) return tfail(c, key->line, "empty chain id");
    if (check_dup_chain(c, key->line, t)) return -1;
    char cid[40];
    px_shown_name(cid, sizeof cid, ch->id);
    if (props->type == PX_DOC_NULL || is_all(props)) continue;
    if (props->type != PX_DOC_MAP)
      return tfail(c, props->line, "chain %s: expected a mapping (crop, hotspots, msa), 'all', 'full' or nothing, found %s",
                   cid, props->type == PX_DOC_STR ? shown(props, b, sizeof b) : px_doc_type_name(props->type));
    static const char *const ch_keys[] = {"crop", "hotspots", "msa", NULL};
    char where[64];
    snprintf(where, sizeof where, "chain %s", cid);
    check_keys(c, props, where, ch_keys);

    const px_doc *cr = px_doc_get(props, "crop");
    if (cr) {
      px_strbuf sb = {0};
      px_sb_put(&sb, "", 0);
      if (cr->type == PX_DOC_LIST) {
        for (int j = 0; j < cr->n; j++) {
          const px_doc *e = &cr->item[j];
          if (j) px_sb_put(&sb, ",", 1);
          if (e->type == PX_DOC_INT) px_sb_printf(&sb, "%lld", e->i);
          else if (e->type == PX_DOC_STR) px_sb_put(&sb, e->text, e->text_len);
          else {
            free(sb.p);
            return tfail(c, e->line, "chain %s: crop entry %s is not a residue number or range (\"1-116\")", cid,
                         e->type == PX_DOC_FLOAT ? shown(e, b, sizeof b) : px_doc_type_name(e->type));
          }
        }
      } else if (cr->type == PX_DOC_STR) {
        if (!is_all(cr)) px_sb_put(&sb, cr->text, cr->text_len);
      } else if (cr->type != PX_DOC_NULL) {
        free(sb.p);
        return tfail(c, cr->line, "chain %s: crop must be a string or a list (crop: [\"%s\"]), found a %s", cid,
                     cr->type == PX_DOC_INT ? shown(cr, b, sizeof b) : "1-116", px_doc_type_name(cr->type));
      }
      if (sb.oom) {
        free(sb.p);
        return toom(c);
      }
      int r = 0;
      if (sb.n && strlen(sb.p) != sb.n) r = tfail(c, cr->line, "chain %s: crop holds a NUL character", cid);
      else if (sb.n) r = parse_crop(c, cr->line, cid, sb.p, ch);
      free(sb.p);
      if (r) return -1;
    }
    const px_doc *h = px_doc_get(props, "hotspots");
    /* hotspots: null is taken as absent (upstream would write null and match nothing). */
    if (h && h->type != PX_DOC_NULL) {
      if (h->type == PX_DOC_MAP)
        return tfail(c, h->line, "chain %s: hotspots must be a list of residue numbers", cid);
      if (parse_hotspots(c, cid, h, ch)) return -1;
    }
    const px_doc *m = px_doc_get(props, "msa");
    /* upstream: `if "msa" in props and props["msa"]`: empty or false means none. */
    if (m && !(m->type == PX_DOC_NULL || (m->type == PX_DOC_BOOL && !m->i) ||
               (m->type == PX_DOC_STR && m->text_len == 0))) {
      if (m->type != PX_DOC_STR || strlen(m->text) != m->text_len)
        return tfail(c, m->line, "chain %s: msa must be a directory path, found a %s", cid, px_doc_type_name(m->type));
      ch->msa_dir = dups(m->text);
      ch->msa_pairing_db = dups("uniref100");
      if (!ch->msa_dir || !ch->msa_pairing_db) return toom(c);
    }
  }
  return 0;
}

/* ---- JSON form ---- */

static int want(tctx *c, const px_doc *v, px_doc_type ty, const char *what) {
  if (v->type != ty)
    return tfail(c, v->line, "%s must be a %s, found a %s", what, px_doc_type_name(ty), px_doc_type_name(v->type));
  if (ty == PX_DOC_STR && strlen(v->text) != v->text_len) return tfail(c, v->line, "%s holds a NUL character", what);
  return 0;
}

static px_task_chain *find_chain(px_task *t, const char *id) {
  for (int k = 0; k < t->n_chain; k++)
    if (!strcmp(t->chain[k].id, id)) return &t->chain[k];
  return NULL;
}

/* Each key of a per-chain mapping must be a listed chain (check_input_validity). */
static px_task_chain *chain_of(tctx *c, px_task *t, const px_doc *key, const char *what) {
  char b[40];
  px_task_chain *ch = find_chain(t, key->text);
  if (!ch || strlen(key->text) != key->text_len) {
    px_shown_name(b, sizeof b, key->text);
    tfail(c, key->line, "%s given for chain %s, which condition.filter.chain_id does not list", what, b);
    return NULL;
  }
  return ch;
}

static int json_task(tctx *c, const px_doc *o, px_task *t) {
  char b[80];
  if (o->type != PX_DOC_MAP) return tfail(c, o->line, "a task must be a JSON object, found a %s", px_doc_type_name(o->type));
  static const char *const keys[] = {"name", "condition", "hotspot", "generation", NULL};
  if (px_doc_get(o, "sequences"))
    return tfail(c, px_doc_get(o, "sequences")->line, "\"sequences\" (chains given by sequence) is not supported");
  check_keys(c, o, "the task", keys);
  const px_doc *v = px_doc_get(o, "name");
  if (!v) return tfail(c, o->line, "task without a \"name\"");
  if (want(c, v, PX_DOC_STR, "\"name\"")) return -1;
  if (check_name(c, v->line, v->text)) return -1;
  t->name = dups(v->text);
  if (!t->name) return toom(c);

  const px_doc *cond = px_doc_get(o, "condition");
  if (!cond) return tfail(c, o->line, "task without a \"condition\" (unconditional design is not supported)");
  if (want(c, cond, PX_DOC_MAP, "\"condition\"")) return -1;
  static const char *const ckeys[] = {"structure_file", "filter", "msa", NULL};
  if (px_doc_get(cond, "ligands"))
    return tfail(c, px_doc_get(cond, "ligands")->line, "condition.ligands is not supported");
  check_keys(c, cond, "condition", ckeys);
  v = px_doc_get(cond, "structure_file");
  if (!v) return tfail(c, cond->line, "missing condition.structure_file");
  if (want(c, v, PX_DOC_STR, "condition.structure_file") || check_structure_name(c, v->line, v->text)) return -1;
  t->structure_file = dups(v->text);
  if (!t->structure_file) return toom(c);

  const px_doc *flt = px_doc_get(cond, "filter");
  if (!flt) return tfail(c, cond->line, "missing condition.filter.chain_id (the target chains)");
  if (want(c, flt, PX_DOC_MAP, "condition.filter")) return -1;
  static const char *const fkeys[] = {"chain_id", "crop", NULL};
  check_keys(c, flt, "condition.filter", fkeys);
  const px_doc *ids = px_doc_get(flt, "chain_id");
  if (!ids) return tfail(c, flt->line, "missing condition.filter.chain_id (the target chains)");
  if (want(c, ids, PX_DOC_LIST, "condition.filter.chain_id")) return -1;
  if (ids->n == 0) return tfail(c, ids->line, "condition.filter.chain_id lists no chain");
  t->chain = calloc((size_t)ids->n, sizeof *t->chain);
  if (!t->chain) return toom(c);
  for (int k = 0; k < ids->n; k++) {
    const px_doc *e = &ids->item[k];
    if (want(c, e, PX_DOC_STR, "a chain id")) return -1;
    if (!e->text_len) return tfail(c, e->line, "empty chain id");
    px_task_chain *ch = &t->chain[t->n_chain++];
    ch->id = dups(e->text);
    if (!ch->id) return toom(c);
    if (check_dup_chain(c, e->line, t)) return -1;
  }
  const px_doc *crop = px_doc_get(flt, "crop");
  if (crop) {
    if (want(c, crop, PX_DOC_MAP, "condition.filter.crop")) return -1;
    for (int k = 0; k < crop->n; k++) {
      px_task_chain *ch = chain_of(c, t, &crop->key[k], "a crop");
      if (!ch) return -1;
      const px_doc *cv = &crop->item[k];
      if (cv->type == PX_DOC_NULL) continue;
      if (want(c, cv, PX_DOC_STR, "a crop")) return -1;
      if (parse_crop(c, cv->line, ch->id, cv->text, ch)) return -1;
    }
  }
  const px_doc *msa = px_doc_get(cond, "msa");
  if (msa) {
    if (want(c, msa, PX_DOC_MAP, "condition.msa")) return -1;
    for (int k = 0; k < msa->n; k++) {
      px_task_chain *ch = chain_of(c, t, &msa->key[k], "an msa");
      if (!ch) return -1;
      const px_doc *mv = &msa->item[k];
      if (want(c, mv, PX_DOC_MAP, "an msa entry")) return -1;
      static const char *const mkeys[] = {"precomputed_msa_dir", "pairing_db", NULL};
      check_keys(c, mv, "an msa entry", mkeys);
      const px_doc *d = px_doc_get(mv, "precomputed_msa_dir");
      if (!d) return tfail(c, mv->line, "msa entry without \"precomputed_msa_dir\"");
      if (want(c, d, PX_DOC_STR, "precomputed_msa_dir")) return -1;
      ch->msa_dir = dups(d->text);
      if (!ch->msa_dir) return toom(c);
      const px_doc *db = px_doc_get(mv, "pairing_db");
      if (db) {
        if (want(c, db, PX_DOC_STR, "pairing_db")) return -1;
        ch->msa_pairing_db = dups(db->text);
        if (!ch->msa_pairing_db) return toom(c);
      }
    }
  }
  const px_doc *hs = px_doc_get(o, "hotspot");
  if (hs) {
    if (want(c, hs, PX_DOC_MAP, "\"hotspot\"")) return -1;
    for (int k = 0; k < hs->n; k++) {
      px_task_chain *ch = chain_of(c, t, &hs->key[k], "hotspots");
      if (!ch) return -1;
      if (want(c, &hs->item[k], PX_DOC_LIST, "a hotspot entry")) return -1;
      if (parse_hotspots(c, ch->id, &hs->item[k], ch)) return -1;
    }
  }
  const px_doc *gen = px_doc_get(o, "generation");
  if (!gen) return tfail(c, o->line, "task without a \"generation\" (the binder to design)");
  if (want(c, gen, PX_DOC_LIST, "\"generation\"")) return -1;
  if (gen->n == 0) return tfail(c, gen->line, "\"generation\" is empty: no binder to design");
  if (gen->n > 1) return tfail(c, gen->item[1].line, "several \"generation\" entries: only one binder chain is supported");
  const px_doc *g = &gen->item[0];
  if (want(c, g, PX_DOC_MAP, "a generation entry")) return -1;
  static const char *const gkeys[] = {"type", "length", "count", NULL};
  if (px_doc_get(g, "sequence")) return tfail(c, g->line, "a generation entry with a \"sequence\" is not supported");
  check_keys(c, g, "the generation entry", gkeys);
  v = px_doc_get(g, "type");
  if (v && (v->type != PX_DOC_STR || strcmp(v->text, "protein")))
    return tfail(c, v->line, "generation type %s: only \"protein\" is supported", shown(v, b, sizeof b));
  v = px_doc_get(g, "length");
  if (!v) return tfail(c, g->line, "generation entry without a \"length\"");
  if (v->type != PX_DOC_INT && v->type != PX_DOC_FLOAT)
    return tfail(c, v->line, "generation length must be an integer, found a %s", px_doc_type_name(v->type));
  if (binder_length(c, v, "generation length", &t->binder_length)) return -1;
  v = px_doc_get(g, "count");
  if (!v) return tfail(c, g->line, "generation entry without a \"count\"");
  if (v->type != PX_DOC_INT || v->i != 1)
    return tfail(c, v->line, "generation count %s: only one binder chain (count 1) is supported", shown(v, b, sizeof b));
  return 0;
}

/* ---- entry points ---- */

/* The 1-based line of the first byte that is not valid UTF-8, or 0 (Python decodes the
 * file as UTF-8 and fails there). */
static int bad_utf8_line(const unsigned char *s, size_t n) {
  int line = 1;
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c == '\n') line++;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t k;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
    else return line;
    if (i + k >= n) return line;
    for (size_t j = 1; j <= k; j++) {
      if (i + j >= n || (s[i + j] & 0xC0) != 0x80) return line;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return line;
    i += k + 1;
  }
  return 0;
}

static void stem_of(const char *path, char *dst, size_t cap) {
  const char *base = path;
  for (const char *s = path; *s; s++)
    if (*s == '/') base = s + 1;
  size_t n = strlen(base);
  /* os.path.splitext: the last '.' that is not a leading one. */
  const char *dot = strrchr(base, '.');
  size_t lead = 0;
  while (base[lead] == '.') lead++;
  if (dot && (size_t)(dot - base) >= lead) n = (size_t)(dot - base);
  if (n >= cap) n = cap - 1;
  memcpy(dst, base, n);
  dst[n] = 0;
}

int px_task_parse(const char *text, size_t len, int is_json, const char *name, px_task_list *out) {
  memset(out, 0, sizeof *out);
  char shown_file[200], stem[256], err[512];
  px_shown_name(shown_file, sizeof shown_file, name ? name : "task");
  stem_of(name ? name : "task", stem, sizeof stem);
  tctx c = {shown_file, out, 0};
  int bad = bad_utf8_line((const unsigned char *)text, len);
  if (bad) return px_fail(PX_ERR_FORMAT, "%s:%d: not UTF-8 text", shown_file, bad);
  px_doc root;
  int r = is_json ? px_json_parse(text, len, shown_file, &root, err, sizeof err)
                  : px_yaml_parse(text, len, shown_file, &root, err, sizeof err);
  if (r) return px_fail(r, "%s", err);
  if (is_json) {
    if (root.type == PX_DOC_MAP) r = tfail(&c, root.line, "a JSON task file is a list of tasks: put the task inside [ ]");
    else if (root.type != PX_DOC_LIST) r = tfail(&c, root.line, "a JSON task file is a list of tasks, found a %s", px_doc_type_name(root.type));
    else if (root.n == 0) r = tfail(&c, root.line, "the task list is empty");
    else {
      out->task = calloc((size_t)root.n, sizeof *out->task);
      if (!out->task) r = toom(&c);
      for (int k = 0; !r && k < root.n; k++) {
        r = json_task(&c, &root.item[k], &out->task[k]);
        out->n++;
        for (int j = 0; !r && j < k; j++)
          if (!strcmp(out->task[j].name, out->task[k].name))
            r = tfail(&c, root.item[k].line, "two tasks are named '%s' (their outputs would collide)", out->task[k].name);
      }
    }
  } else {
    out->task = calloc(1, sizeof *out->task);
    if (!out->task) r = toom(&c);
    else {
      out->n = 1;
      r = yaml_task(&c, &root, stem, &out->task[0]);
    }
  }
  px_doc_free(&root);
  if (r) {
    int code = c.code ? c.code : PX_ERR_INPUT;
    px_task_list_free(out);
    return code;
  }
  return 0;
}

static int exists(const char *path) {
  int fd = px_file_open_read(path);
  if (fd < 0) return 0;
  px_file_close(fd);
  return 1;
}

int px_task_read(const char *path, px_task_list *out) {
  memset(out, 0, sizeof *out);
  char sh[200];
  px_shown_name(sh, sizeof sh, path);
  int is_json;
  const char *dot = strrchr(path, '.');
  if (dot && (ieq(dot, ".json"))) is_json = 1;
  else if (dot && (ieq(dot, ".yaml") || ieq(dot, ".yml"))) is_json = 0;
  else return px_fail(PX_ERR_INPUT, "%s: a task file ends in .yaml, .yml or .json", sh);
  int fd = px_file_open_read(path);
  if (fd < 0) return px_fail(PX_ERR_IO, "cannot open task file %s", sh);
  int64_t size = px_file_size(fd);
  if (size < 0 || size > (64 << 20)) {
    px_file_close(fd);
    return px_fail(size < 0 ? PX_ERR_IO : PX_ERR_INPUT, "%s: %s", sh, size < 0 ? "cannot read" : "larger than 64 MiB: not a task file");
  }
  char *buf = malloc((size_t)size + 1);
  if (!buf) {
    px_file_close(fd);
    return px_fail(PX_ERR_NOMEM, "%s: out of memory", sh);
  }
  int rr = size ? px_file_pread(fd, buf, (size_t)size, 0) : 0;
  px_file_close(fd);
  if (rr) {
    free(buf);
    return px_fail(PX_ERR_IO, "cannot read task file %s", sh);
  }
  buf[size] = 0;
  int r = px_task_parse(buf, (size_t)size, is_json, path, out);
  free(buf);
  if (r) return r;
  /* Upstream checks these before any work (inputs.py:55-57, 107-113): fail as early. */
  for (int k = 0; k < out->n; k++) {
    const px_task *t = &out->task[k];
    char fs[200];
    px_shown_name(fs, sizeof fs, t->structure_file);
    if (!exists(t->structure_file)) {
      r = px_fail(PX_ERR_IO, "%s: target structure file %s not found (a relative path is taken from the current directory, as PXDesign takes it)",
                  sh, fs);
      break;
    }
    for (int j = 0; !r && j < t->n_chain; j++) {
      const char *d = t->chain[j].msa_dir;
      if (!d) continue;
      static const char *const need[] = {"pairing.a3m", "non_pairing.a3m"};
      for (int q = 0; q < 2 && !r; q++) {
        size_t n = strlen(d) + strlen(need[q]) + 2;
        char *f = malloc(n);
        if (!f) {
          r = px_fail(PX_ERR_NOMEM, "%s: out of memory", sh);
          break;
        }
        snprintf(f, n, "%s%s%s", d, (d[0] && d[strlen(d) - 1] == '/') ? "" : "/", need[q]);
        if (!exists(f)) {
          char m[200];
          px_shown_name(m, sizeof m, f);
          r = px_fail(PX_ERR_IO, "%s: chain %s: MSA file %s not found", sh, t->chain[j].id, m);
        }
        free(f);
      }
    }
    if (r) break;
  }
  if (r) px_task_list_free(out);
  return r;
}

/* ---- JSON writer: Python's json.dump(obj) with its defaults ---- */

static void py_str(px_strbuf *b, const char *s) {
  px_sb_put(b, "\"", 1);
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    char tmp[16];
    if (c == '"') px_sb_put(b, "\\\"", 2), p++;
    else if (c == '\\') px_sb_put(b, "\\\\", 2), p++;
    else if (c == '\n') px_sb_put(b, "\\n", 2), p++;
    else if (c == '\r') px_sb_put(b, "\\r", 2), p++;
    else if (c == '\t') px_sb_put(b, "\\t", 2), p++;
    else if (c == '\b') px_sb_put(b, "\\b", 2), p++;
    else if (c == '\f') px_sb_put(b, "\\f", 2), p++;
    else if (c >= 0x20 && c < 0x7f) px_sb_put(b, (const char *)p, 1), p++;
    else {
      /* ensure_ascii: every other code point as \uXXXX (surrogate pairs above the BMP);
       * the text was checked to be UTF-8 when read. */
      unsigned cp = c;
      int k = 0;
      if (c >= 0xF0) { cp = c & 0x07; k = 3; }
      else if (c >= 0xE0) { cp = c & 0x0F; k = 2; }
      else if (c >= 0xC0) { cp = c & 0x1F; k = 1; }
      p++;
      for (int j = 0; j < k && (*p & 0xC0) == 0x80; j++, p++) cp = (cp << 6) | (*p & 0x3F);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        px_sb_str(b, tmp);
      } else {
        snprintf(tmp, sizeof tmp, "\\u%04x", cp);
        px_sb_str(b, tmp);
      }
    }
  }
  px_sb_put(b, "\"", 1);
}

int px_task_list_json(const px_task_list *l, char **out, size_t *len) {
  px_strbuf b = {0};
  px_sb_put(&b, "[", 1);
  for (int k = 0; k < l->n; k++) {
    const px_task *t = &l->task[k];
    if (k) px_sb_str(&b, ", ");
    px_sb_str(&b, "{\"name\": ");
    py_str(&b, t->name);
    px_sb_str(&b, ", \"condition\": {\"structure_file\": ");
    py_str(&b, t->structure_file);
    px_sb_str(&b, ", \"filter\": {\"chain_id\": [");
    for (int j = 0; j < t->n_chain; j++) {
      if (j) px_sb_str(&b, ", ");
      py_str(&b, t->chain[j].id);
    }
    px_sb_str(&b, "], \"crop\": {");
    int first = 1;
    for (int j = 0; j < t->n_chain; j++) {
      if (!t->chain[j].crop_text) continue;
      if (!first) px_sb_str(&b, ", ");
      first = 0;
      py_str(&b, t->chain[j].id);
      px_sb_str(&b, ": ");
      py_str(&b, t->chain[j].crop_text);
    }
    px_sb_str(&b, "}}, \"msa\": {");
    first = 1;
    for (int j = 0; j < t->n_chain; j++) {
      if (!t->chain[j].msa_dir) continue;
      if (!first) px_sb_str(&b, ", ");
      first = 0;
      py_str(&b, t->chain[j].id);
      px_sb_str(&b, ": {\"precomputed_msa_dir\": ");
      py_str(&b, t->chain[j].msa_dir);
      if (t->chain[j].msa_pairing_db) {
        px_sb_str(&b, ", \"pairing_db\": ");
        py_str(&b, t->chain[j].msa_pairing_db);
      }
      px_sb_str(&b, "}");
    }
    px_sb_str(&b, "}}, \"hotspot\": {");
    first = 1;
    for (int j = 0; j < t->n_chain; j++) {
      const px_task_chain *ch = &t->chain[j];
      if (!ch->hotspot_given) continue;
      if (!first) px_sb_str(&b, ", ");
      first = 0;
      py_str(&b, ch->id);
      px_sb_str(&b, ": [");
      for (int q = 0; q < ch->n_hotspot; q++) px_sb_printf(&b, q ? ", %d" : "%d", ch->hotspot[q]);
      px_sb_str(&b, "]");
    }
    px_sb_printf(&b, "}, \"generation\": [{\"type\": \"protein\", \"length\": %d, \"count\": 1}]}", t->binder_length);
  }
  px_sb_put(&b, "]", 1);
  if (b.oom) {
    free(b.p);
    return px_fail(PX_ERR_NOMEM, "out of memory writing a task list");
  }
  *out = b.p;
  if (len) *len = b.n;
  return 0;
}
