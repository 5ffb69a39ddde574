/* JSON (RFC 8259) into a px_doc tree: the task lists of PXDesign and the campaign files.
 * Strict: no comments, no trailing commas, no NaN/Infinity, one value per document;
 * nesting is limited to 64 levels so hostile input cannot exhaust the stack. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/doc.h"
#include "io/strbuf.h"
#include "pxdiff.h"

#define JSON_MAX_DEPTH 64

typedef struct {
  const char *s;
  size_t n, pos;
  int line;
  px_doc_err e;
} jp;

static int jfail(jp *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  px_doc_failv(&p->e, p->line, fmt, ap);
  va_end(ap);
  return -1;
}

static int joom(jp *p) { return px_doc_oom(&p->e); }

static void jskip(jp *p) {
  while (p->pos < p->n) {
    char c = p->s[p->pos];
    if (c == '\n') p->line++;
    else if (c != ' ' && c != '\t' && c != '\r') break;
    p->pos++;
  }
}

static const char *jshow(jp *p, char *buf, size_t cap) {
  if (p->pos >= p->n) return "end of input";
  unsigned char c = (unsigned char)p->s[p->pos];
  if (c >= 0x20 && c < 0x7f) snprintf(buf, cap, "'%c'", c);
  else snprintf(buf, cap, "byte 0x%02x", c);
  return buf;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int hex4(jp *p, size_t at, unsigned *out) {
  if (at + 4 > p->n) return -1;
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    int h = hexval(p->s[at + k]);
    if (h < 0) return -1;
    v = v * 16 + (unsigned)h;
  }
  *out = v;
  return 0;
}

static void json_put_utf8(px_strbuf *b, unsigned cp) {
  char u[4];
  size_t k;
  if (cp < 0x80) { u[0] = (char)cp; k = 1; }
  else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F)); k = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); k = 4;
  }
  px_sb_put(b, u, k);
}

static int jstring(jp *p, px_doc *out) {
  px_strbuf b = {0};
  out->type = PX_DOC_STR;
  out->line = p->line;
  p->pos++; /* opening quote */
  px_sb_put(&b, "", 0);
  for (;;) {
    if (p->pos >= p->n) {
      free(b.p);
      return jfail(p, "unterminated string");
    }
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') { p->pos++; break; }
    if (c < 0x20) {
      free(b.p);
      return jfail(p, "control character 0x%02x inside a string", c);
    }
    if (c != '\\') {
      size_t st = p->pos;
      while (p->pos < p->n && p->s[p->pos] != '"' && p->s[p->pos] != '\\' &&
             (unsigned char)p->s[p->pos] >= 0x20)
        p->pos++;
      px_sb_put(&b, p->s + st, p->pos - st);
      continue;
    }
    if (p->pos + 1 >= p->n) { free(b.p); return jfail(p, "unterminated string"); }
    char e = p->s[p->pos + 1];
    p->pos += 2;
    switch (e) {
    case '"': px_sb_put(&b, "\"", 1); break;
    case '\\': px_sb_put(&b, "\\", 1); break;
    case '/': px_sb_put(&b, "/", 1); break;
    case 'b': px_sb_put(&b, "\b", 1); break;
    case 'f': px_sb_put(&b, "\f", 1); break;
    case 'n': px_sb_put(&b, "\n", 1); break;
    case 'r': px_sb_put(&b, "\r", 1); break;
    case 't': px_sb_put(&b, "\t", 1); break;
    case 'u': {
      unsigned cp;
      if (hex4(p, p->pos, &cp)) { free(b.p); return jfail(p, "bad \\u escape in a string"); }
      p->pos += 4;
      if (cp >= 0xD800 && cp < 0xDC00) {
        unsigned lo;
        /* Python keeps a lone surrogate, which no UTF-8 text can hold: refuse it. */
        if (p->pos + 6 <= p->n && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u' &&
            !hex4(p, p->pos + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
          p->pos += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else {
          free(b.p);
          return jfail(p, "unpaired surrogate \\u%04X in a string", cp);
        }
      } else if (cp >= 0xDC00 && cp < 0xE000) {
        free(b.p);
        return jfail(p, "unpaired surrogate \\u%04X in a string", cp);
      }
      json_put_utf8(&b, cp);
      break;
    }
    default:
      free(b.p);
      return jfail(p, "bad escape '\\%c' in a string", (e >= 0x20 && e < 0x7f) ? e : '?');
    }
  }
  if (b.oom) { free(b.p); return joom(p); }
  out->text = b.p;
  out->text_len = b.n;
  return 0;
}

static int jnumber(jp *p, px_doc *out) {
  size_t st = p->pos;
  int is_float = 0;
  out->line = p->line;
  if (p->s[p->pos] == '-') p->pos++;
  if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return jfail(p, "bad number");
  if (p->s[p->pos] == '0') {
    p->pos++;
    if (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
      return jfail(p, "number with a leading zero");
  } else {
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->n && p->s[p->pos] == '.') {
    is_float = 1;
    p->pos++;
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return jfail(p, "bad number");
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    is_float = 1;
    p->pos++;
    if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return jfail(p, "bad number");
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  size_t len = p->pos - st;
  out->text = malloc(len + 1);
  if (!out->text) return joom(p);
  memcpy(out->text, p->s + st, len);
  out->text[len] = 0;
  out->text_len = len;
  if (is_float) {
    out->type = PX_DOC_FLOAT;
    out->f = strtod(out->text, NULL);
  } else {
    out->type = PX_DOC_INT;
    /* Beyond 64 bits the value saturates (the text keeps the digits); callers range-check. */
    out->i = strtoll(out->text, NULL, 10);
    out->f = strtod(out->text, NULL);
  }
  return 0;
}

static int jword(jp *p, const char *w) {
  size_t k = strlen(w);
  return p->pos + k <= p->n && memcmp(p->s + p->pos, w, k) == 0;
}

static int jvalue(jp *p, px_doc *out, int depth) {
  char sh[32];
  memset(out, 0, sizeof *out);
  jskip(p);
  if (p->pos >= p->n) return jfail(p, "unexpected end of input");
  if (depth > JSON_MAX_DEPTH) return jfail(p, "nesting deeper than %d levels", JSON_MAX_DEPTH);
  char c = p->s[p->pos];
  out->line = p->line;
  if (c == '{' || c == '[') {
    int is_map = c == '{';
    int cap = 0;
    out->type = is_map ? PX_DOC_MAP : PX_DOC_LIST;
    p->pos++;
    jskip(p);
    if (p->pos < p->n && p->s[p->pos] == (is_map ? '}' : ']')) {
      p->pos++;
      return 0;
    }
    for (;;) {
      px_doc k, v;
      memset(&k, 0, sizeof k);
      jskip(p);
      if (is_map) {
        if (p->pos >= p->n || p->s[p->pos] != '"')
          return jfail(p, "expected a string key, found %s", jshow(p, sh, sizeof sh));
        if (jstring(p, &k)) { px_doc_free(&k); return -1; }
        if (px_doc_find_key(out, &k) >= 0) {
          char nm[64];
          px_shown_name(nm, sizeof nm, k.text);
          px_doc_free(&k);
          return jfail(p, "duplicate key \"%s\"", nm);
        }
        jskip(p);
        if (p->pos >= p->n || p->s[p->pos] != ':') {
          px_doc_free(&k);
          return jfail(p, "expected ':' after a key, found %s", jshow(p, sh, sizeof sh));
        }
        p->pos++;
      }
      if (jvalue(p, &v, depth + 1)) {
        px_doc_free(&k);
        px_doc_free(&v);
        return -1;
      }
      if (px_doc_append(out, &cap, &k, &v)) {
        px_doc_free(&k);
        px_doc_free(&v);
        return joom(p);
      }
      jskip(p);
      if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
      if (p->pos < p->n && p->s[p->pos] == (is_map ? '}' : ']')) { p->pos++; return 0; }
      return jfail(p, "expected ',' or '%c', found %s", is_map ? '}' : ']', jshow(p, sh, sizeof sh));
    }
  }
  if (c == '"') return jstring(p, out);
  if (c == '-' || (c >= '0' && c <= '9')) return jnumber(p, out);
  const char *w = NULL;
  if (jword(p, "true")) { w = "true"; out->type = PX_DOC_BOOL; out->i = 1; }
  else if (jword(p, "false")) { w = "false"; out->type = PX_DOC_BOOL; out->i = 0; }
  else if (jword(p, "null")) { w = "null"; out->type = PX_DOC_NULL; }
  if (!w) return jfail(p, "unexpected %s", jshow(p, sh, sizeof sh));
  p->pos += strlen(w);
  out->text_len = strlen(w);
  out->text = malloc(out->text_len + 1);
  if (!out->text) return joom(p);
  memcpy(out->text, w, out->text_len + 1);
  return 0;
}

int px_json_parse(const char *text, size_t len, const char *name, px_doc *out, char *err,
                  size_t errlen) {
  jp p = {text, len, 0, 1, {name ? name : "?", err, errlen, 0}};
  if (err && errlen) err[0] = 0;
  /* A UTF-8 byte-order mark is tolerated, as editors write one. */
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p.pos = 3;
  if (jvalue(&p, out, 0) == 0) {
    jskip(&p);
    if (p.pos == p.n) return 0;
    char sh[32];
    jfail(&p, "unexpected %s after the document", jshow(&p, sh, sizeof sh));
  }
  px_doc_free(out);
  return p.e.code ? p.e.code : PX_ERR_FORMAT;
}
