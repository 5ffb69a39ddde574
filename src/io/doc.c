#include "io/doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/strbuf.h"
#include "pxdiff.h"

void px_doc_free(px_doc *d) {
  if (!d) return;
  for (int k = 0; k < d->n; k++) {
    if (d->item) px_doc_free(&d->item[k]);
    if (d->key) px_doc_free(&d->key[k]);
  }
  free(d->item);
  free(d->key);
  free(d->text);
  memset(d, 0, sizeof *d);
}

const px_doc *px_doc_get(const px_doc *d, const char *key) {
  if (!d || d->type != PX_DOC_MAP) return NULL;
  size_t kl = strlen(key);
  for (int k = 0; k < d->n; k++) {
    const px_doc *kk = &d->key[k];
    if (kk->type == PX_DOC_STR && kk->text_len == kl && memcmp(kk->text, key, kl) == 0)
      return &d->item[k];
  }
  return NULL;
}

const char *px_doc_type_name(px_doc_type t) {
  switch (t) {
  case PX_DOC_NULL: return "null";
  case PX_DOC_BOOL: return "boolean";
  case PX_DOC_INT: return "integer";
  case PX_DOC_FLOAT: return "number";
  case PX_DOC_STR: return "string";
  case PX_DOC_LIST: return "list";
  case PX_DOC_MAP: return "mapping";
  }
  return "?";
}

int px_doc_append(px_doc *parent, int *cap, px_doc *key, px_doc *val) {
  if (parent->n >= *cap) {
    if (parent->n >= (1 << 24)) return -1;
    int nc = *cap ? *cap * 2 : 4;
    px_doc *ni = realloc(parent->item, (size_t)nc * sizeof *ni);
    if (!ni) return -1;
    parent->item = ni;
    if (parent->type == PX_DOC_MAP) {
      px_doc *nk = realloc(parent->key, (size_t)nc * sizeof *nk);
      if (!nk) return -1;
      parent->key = nk;
    }
    *cap = nc;
  }
  parent->item[parent->n] = *val;
  memset(val, 0, sizeof *val);
  if (parent->type == PX_DOC_MAP) {
    parent->key[parent->n] = *key;
    memset(key, 0, sizeof *key);
  }
  parent->n++;
  return 0;
}

int px_doc_find_key(const px_doc *map, const px_doc *k) {
  for (int j = 0; j < map->n; j++) {
    const px_doc *o = &map->key[j];
    if (o->type != k->type) continue;
    switch (k->type) {
    case PX_DOC_NULL: return j;
    case PX_DOC_BOOL:
    case PX_DOC_INT:
      if (o->i == k->i) return j;
      break;
    case PX_DOC_FLOAT:
      if (o->f == k->f) return j;
      break;
    default:
      if (o->text_len == k->text_len && memcmp(o->text, k->text, k->text_len) == 0) return j;
    }
  }
  return -1;
}

int px_doc_failv(px_doc_err *e, int line, const char *fmt, va_list ap) {
  if (e->code) return -1;
  char msg[256], nm[160];
  vsnprintf(msg, sizeof msg, fmt, ap);
  px_shown_name(nm, sizeof nm, e->name);
  e->code = PX_ERR_FORMAT;
  px_errf(e->err, e->errlen, PX_ERR_FORMAT, "%s:%d: %s", nm, line, msg);
  return -1;
}

int px_doc_oom(px_doc_err *e) {
  if (!e->code) {
    e->code = PX_ERR_NOMEM;
    px_errf(e->err, e->errlen, PX_ERR_NOMEM, "%s: out of memory", e->name);
  }
  return -1;
}
