/* A YAML subset into a px_doc tree: what task and campaign files use.
 *
 * Supported: block mappings and block lists (a list may sit at its key's indentation),
 * "- key: value" items, flow lists [a, b] and flow mappings {a: 1} (over several lines
 * too), plain, 'single' and "double" quoted scalars on one line, # comments, a leading
 * "---" and a closing "...". Plain scalars get PyYAML's safe_load types (see doc.h), so a
 * file reads here as it reads in PXDesign. Refused with a message naming the line:
 * anchors, aliases, tags, block scalars (| >), multi-line scalars, complex keys, several
 * documents, tabs in indentation, duplicate keys (PyYAML silently keeps the last one). */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/doc.h"
#include "io/strbuf.h"
#include "pxdiff.h"

#define YAML_MAX_DEPTH 64
#define YEOF -1 /* next_content: end of the document */

typedef struct {
  const char *s;
  size_t n, pos, line_start;
  int line;
  px_doc_err e;
} yp;

static int yfail(yp *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  px_doc_failv(&p->e, p->line, fmt, ap);
  va_end(ap);
  return -1;
}

static int yoom(yp *p) { return px_doc_oom(&p->e); }

static int ch(const yp *p, size_t at) { return at < p->n ? (unsigned char)p->s[at] : -1; }
static int is_blank_or_end(int c) { return c == -1 || c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int is_flow_ind(int c) { return c == ',' || c == '[' || c == ']' || c == '{' || c == '}'; }
static int col(const yp *p) { return (int)(p->pos - p->line_start); }

static void skip_inline(yp *p) {
  while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\r'))
    p->pos++;
}

/* After skip_inline: nothing but an optional comment before the end of the line. */
static int rest_is_blank(const yp *p) {
  int c = ch(p, p->pos);
  return c == -1 || c == '\n' || c == '#';
}

static void newline(yp *p) {
  p->pos++;
  p->line++;
  p->line_start = p->pos;
}

/* "---" or "..." at column 0, followed by a blank. */
static int at_doc_marker(const yp *p) {
  if (col(p) != 0 || p->pos + 3 > p->n) return 0;
  if (memcmp(p->s + p->pos, "---", 3) && memcmp(p->s + p->pos, "...", 3)) return 0;
  return is_blank_or_end(ch(p, p->pos + 3));
}

/* Move to the next content character, across blank and comment lines. Returns its
 * column, YEOF at the end (or at a document marker), -2 after an error. */
static int next_content(yp *p) {
  for (;;) {
    int at_line_start = p->pos == p->line_start;
    size_t st = p->pos;
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\r'))
      p->pos++;
    int c = ch(p, p->pos);
    if (c == '#') { /* at a token boundary '#' starts a comment, as PyYAML scans it */
      while (p->pos < p->n && p->s[p->pos] != '\n') p->pos++;
      c = ch(p, p->pos);
    }
    if (c == '\n') {
      newline(p);
      continue;
    }
    if (c == -1) return YEOF;
    if (at_line_start && memchr(p->s + st, '\t', p->pos - st)) {
      yfail(p, "tab character in indentation (YAML indents with spaces)");
      return -2;
    }
    if (at_doc_marker(p)) return YEOF;
    return col(p);
  }
}

static int at_dash_item(const yp *p) { return ch(p, p->pos) == '-' && is_blank_or_end(ch(p, p->pos + 1)); }

/* ---- scalars ---- */

static int all_in(const char *s, size_t n, const char *set) {
  if (n == 0) return 0;
  for (size_t k = 0; k < n; k++)
    if (!strchr(set, s[k]) || s[k] == 0) return 0;
  return 1;
}

static int eq_any(const char *s, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(s, *list)) return 1;
  return 0;
}

/* Digits of s without '_' in base b; saturates at LLONG_MAX. */
static long long digits_value(const char *s, size_t n, int base) {
  unsigned long long v = 0;
  for (size_t k = 0; k < n; k++) {
    int c = s[k], d;
    if (c == '_') continue;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else d = c - 'A' + 10;
    if (v > ((unsigned long long)LLONG_MAX - (unsigned)d) / (unsigned)base) return LLONG_MAX;
    v = v * (unsigned)base + (unsigned)d;
  }
  return (long long)v;
}

/* PyYAML's int resolver (YAML 1.1): 0b.., 0x.., 0-prefixed octal, decimal, and
 * sexagesimal 1:30. */
static int match_int(const char *s, long long *out) {
  size_t n = strlen(s), i = 0;
  int neg = 0;
  if (n && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    i = 1;
  }
  const char *r = s + i;
  size_t m = n - i;
  long long v;
  if (m > 2 && r[0] == '0' && r[1] == 'b' && all_in(r + 2, m - 2, "01_")) v = digits_value(r + 2, m - 2, 2);
  else if (m > 2 && r[0] == '0' && r[1] == 'x' && all_in(r + 2, m - 2, "0123456789abcdefABCDEF_"))
    v = digits_value(r + 2, m - 2, 16);
  else if (m > 1 && r[0] == '0' && all_in(r + 1, m - 1, "01234567_")) v = digits_value(r + 1, m - 1, 8);
  else if (m == 1 && r[0] == '0') v = 0;
  else if (m >= 1 && r[0] >= '1' && r[0] <= '9') {
    size_t k = 1;
    while (k < m && ((r[k] >= '0' && r[k] <= '9') || r[k] == '_')) k++;
    if (k == m) v = digits_value(r, m, 10);
    else {
      /* sexagesimal: [1-9][0-9_]*(:[0-5]?[0-9])+ */
      long long acc = digits_value(r, k, 10);
      while (k < m) {
        if (r[k] != ':') return 0;
        k++;
        size_t st = k;
        while (k < m && r[k] >= '0' && r[k] <= '9') k++;
        size_t d = k - st;
        if (d == 0 || d > 2 || (d == 2 && r[st] > '5')) return 0;
        long long part = digits_value(r + st, d, 10);
        acc = acc > (LLONG_MAX - part) / 60 ? LLONG_MAX : acc * 60 + part;
      }
      v = acc;
    }
  } else
    return 0;
  *out = neg ? -v : v;
  return 1;
}

/* PyYAML's float resolver, except its rare sexagesimal form (read as a string here). */
static int match_float(const char *s, double *out) {
  size_t n = strlen(s), i = 0;
  static const char *const inf[] = {".inf", ".Inf", ".INF", NULL};
  static const char *const nan[] = {".nan", ".NaN", ".NAN", NULL};
  if (eq_any(s, nan)) { *out = NAN; return 1; }
  if (n && (s[0] == '-' || s[0] == '+')) i = 1;
  if (eq_any(s + i, inf)) { *out = s[0] == '-' ? -INFINITY : INFINITY; return 1; }
  size_t k = i;
  if (k < n && s[k] >= '0' && s[k] <= '9') {
    while (k < n && ((s[k] >= '0' && s[k] <= '9') || s[k] == '_')) k++;
    if (k >= n || s[k] != '.') return 0;
    k++;
    while (k < n && ((s[k] >= '0' && s[k] <= '9') || s[k] == '_')) k++;
  } else if (i == 0 && k < n && s[k] == '.') {
    k++;
    size_t st = k;
    while (k < n && ((s[k] >= '0' && s[k] <= '9') || s[k] == '_')) k++;
    if (k == st) return 0;
  } else
    return 0;
  if (k < n) {
    if (s[k] != 'e' && s[k] != 'E') return 0;
    k++;
    if (k >= n || (s[k] != '-' && s[k] != '+')) return 0;
    k++;
    size_t st = k;
    while (k < n && s[k] >= '0' && s[k] <= '9') k++;
    if (k == st || k != n) return 0;
  }
  char buf[128];
  size_t b = 0;
  for (size_t j = 0; j < n && b + 1 < sizeof buf; j++)
    if (s[j] != '_') buf[b++] = s[j];
  buf[b] = 0;
  *out = strtod(buf, NULL);
  return 1;
}

static void resolve_plain(px_doc *d) {
  static const char *const nul[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const yes[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", NULL};
  static const char *const no[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", NULL};
  d->type = PX_DOC_STR;
  if (strlen(d->text) != d->text_len) return;
  if (eq_any(d->text, nul)) d->type = PX_DOC_NULL;
  else if (eq_any(d->text, yes)) { d->type = PX_DOC_BOOL; d->i = 1; }
  else if (eq_any(d->text, no)) { d->type = PX_DOC_BOOL; d->i = 0; }
  else if (match_int(d->text, &d->i)) { d->type = PX_DOC_INT; d->f = (double)d->i; }
  else if (match_float(d->text, &d->f)) d->type = PX_DOC_FLOAT;
}

static void yaml_put_utf8(px_strbuf *b, unsigned long cp) {
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

static int quoted(yp *p, px_doc *out) {
  int q = ch(p, p->pos);
  px_strbuf b = {0};
  px_sb_put(&b, "", 0);
  p->pos++;
  for (;;) {
    int c = ch(p, p->pos);
    if (c == -1 || c == '\n') {
      free(b.p);
      return yfail(p, c == -1 ? "unterminated quoted string"
                              : "quoted string runs past the end of the line (multi-line "
                                "scalars are not supported)");
    }
    if (c == q) {
      if (q == '\'' && ch(p, p->pos + 1) == '\'') {
        px_sb_put(&b, "'", 1);
        p->pos += 2;
        continue;
      }
      p->pos++;
      break;
    }
    if (q == '"' && c == '\\') {
      int e = ch(p, p->pos + 1);
      int nhex = 0;
      const char *rep = NULL;
      switch (e) {
      case '0': px_sb_put(&b, "\0", 1); rep = ""; break; /* text_len keeps the NUL */
      case 'a': rep = "\a"; break;
      case 'b': rep = "\b"; break;
      case 't': case '\t': rep = "\t"; break;
      case 'n': rep = "\n"; break;
      case 'v': rep = "\v"; break;
      case 'f': rep = "\f"; break;
      case 'r': rep = "\r"; break;
      case 'e': rep = "\x1b"; break;
      case ' ': rep = " "; break;
      case '"': rep = "\""; break;
      case '/': rep = "/"; break;
      case '\\': rep = "\\"; break;
      case 'N': rep = "\xC2\x85"; break;
      case '_': rep = "\xC2\xA0"; break;
      case 'L': rep = "\xE2\x80\xA8"; break;
      case 'P': rep = "\xE2\x80\xA9"; break;
      case 'x': nhex = 2; break;
      case 'u': nhex = 4; break;
      case 'U': nhex = 8; break;
      default:
        free(b.p);
        if (e == '\n' || e == -1) return yfail(p, "line continuation in a quoted string is not supported");
        return yfail(p, "unknown escape '\\%c' in a double-quoted string", e >= 0x20 && e < 0x7f ? e : '?');
      }
      p->pos += 2;
      if (rep) {
        px_sb_str(&b, rep);
        continue;
      }
      unsigned long cp = 0;
      for (int k = 0; k < nhex; k++) {
        int h = ch(p, p->pos + (size_t)k), d;
        if (h >= '0' && h <= '9') d = h - '0';
        else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
        else {
          free(b.p);
          return yfail(p, "bad \\%c escape: expected %d hex digits", e, nhex);
        }
        cp = cp * 16 + (unsigned long)d;
      }
      p->pos += (size_t)nhex;
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
        free(b.p);
        return yfail(p, "escape \\%c names no Unicode character", e);
      }
      yaml_put_utf8(&b, cp);
      continue;
    }
    size_t st = p->pos;
    while (p->pos < p->n && p->s[p->pos] != q && p->s[p->pos] != '\n' &&
           !(q == '"' && p->s[p->pos] == '\\'))
      p->pos++;
    px_sb_put(&b, p->s + st, p->pos - st);
  }
  if (b.oom) {
    free(b.p);
    return yoom(p);
  }
  out->type = PX_DOC_STR;
  out->text = b.p;
  out->text_len = b.n;
  return 0;
}

/* A scalar at p->pos: quoted, or plain up to the end of the line, " #", ": " (and in
 * flow context a flow indicator). */
static int scalar(yp *p, int flow, px_doc *out) {
  memset(out, 0, sizeof *out);
  out->line = p->line;
  int c = ch(p, p->pos);
  if (c == '"' || c == '\'') return quoted(p, out);
  if (c == -1 || c == '\n') return yfail(p, "expected a value, found the end of the line");
  if (c == '&' || c == '*' || c == '!')
    return yfail(p, "YAML %s are not supported", c == '&' ? "anchors" : c == '*' ? "aliases" : "tags");
  if (c == '|' || c == '>') return yfail(p, "YAML block scalars ('%c') are not supported", c);
  if (c == '%' || c == '@' || c == '`') return yfail(p, "a plain value cannot start with '%c'", c);
  if (is_flow_ind(c)) return yfail(p, "unexpected '%c'", c);
  /* PyYAML's check_plain: '-' starts a plain scalar when a non-blank follows; '?' and ':'
   * too, but only outside flow collections. */
  if ((c == '-' || c == '?' || c == ':') && (is_blank_or_end(ch(p, p->pos + 1)) || (flow && c != '-')))
    return yfail(p, c == '-' ? "a '- ' list item cannot start here"
                             : c == '?' ? "complex mapping keys ('? ') are not supported"
                                        : "unexpected ':'");
  size_t st = p->pos, end = p->pos;
  while (p->pos < p->n) {
    int d = ch(p, p->pos);
    if (d == '\n') break;
    if (d == '#' && p->pos > st && (p->s[p->pos - 1] == ' ' || p->s[p->pos - 1] == '\t')) break;
    if (d == ':') {
      int e = ch(p, p->pos + 1);
      if (is_blank_or_end(e) || (flow && is_flow_ind(e))) break;
    }
    if (flow && is_flow_ind(d)) break;
    p->pos++;
    if (d != ' ' && d != '\t' && d != '\r') end = p->pos;
  }
  size_t len = end - st;
  out->text = malloc(len + 1);
  if (!out->text) return yoom(p);
  memcpy(out->text, p->s + st, len);
  out->text[len] = 0;
  out->text_len = len;
  resolve_plain(out);
  return 0;
}

/* ---- collections ---- */

static int add_pair(yp *p, px_doc *map, int *cap, px_doc *k, px_doc *v) {
  if (px_doc_find_key(map, k) >= 0) {
    char nm[64];
    px_shown_name(nm, sizeof nm, k->text);
    int line = p->line;
    p->line = k->line;
    yfail(p, "duplicate key '%s'", nm);
    p->line = line;
    px_doc_free(k);
    px_doc_free(v);
    return -1;
  }
  if (px_doc_append(map, cap, k, v)) {
    px_doc_free(k);
    px_doc_free(v);
    return yoom(p);
  }
  return 0;
}

/* Between flow tokens: spaces, newlines and comments. */
static void flow_skip(yp *p) {
  for (;;) {
    skip_inline(p);
    int c = ch(p, p->pos);
    if (c == '#') {
      while (p->pos < p->n && p->s[p->pos] != '\n') p->pos++;
      continue;
    }
    if (c == '\n') {
      newline(p);
      continue;
    }
    return;
  }
}

static int flow(yp *p, px_doc *out, int depth) {
  memset(out, 0, sizeof *out);
  out->line = p->line;
  if (depth > YAML_MAX_DEPTH) return yfail(p, "nesting deeper than %d levels", YAML_MAX_DEPTH);
  int is_map = ch(p, p->pos) == '{';
  int close = is_map ? '}' : ']', cap = 0;
  out->type = is_map ? PX_DOC_MAP : PX_DOC_LIST;
  p->pos++;
  for (;;) {
    flow_skip(p);
    int c = ch(p, p->pos);
    if (c == -1) return yfail(p, "unterminated flow %s (missing '%c')", is_map ? "mapping" : "list", close);
    if (c == close) {
      p->pos++;
      return 0;
    }
    px_doc k, v;
    memset(&k, 0, sizeof k);
    memset(&v, 0, sizeof v);
    if (is_map) {
      if (c == '[' || c == '{') return yfail(p, "complex mapping keys are not supported");
      if (scalar(p, 1, &k)) return -1;
      skip_inline(p); /* PyYAML wants a key's ':' on the key's line */
      if (ch(p, p->pos) == ':') {
        p->pos++;
        flow_skip(p);
        c = ch(p, p->pos);
        if (c == ',' || c == '}') {
          v.type = PX_DOC_NULL;
          v.line = p->line;
        } else if (c == '[' || c == '{') {
          if (flow(p, &v, depth + 1)) { px_doc_free(&k); px_doc_free(&v); return -1; }
        } else if (scalar(p, 1, &v)) {
          px_doc_free(&k);
          return -1;
        }
      } else {
        v.type = PX_DOC_NULL; /* {a, b: 1}: a key without a value */
        v.line = p->line;
      }
      if (add_pair(p, out, &cap, &k, &v)) return -1;
    } else {
      if (c == '[' || c == '{') {
        if (flow(p, &v, depth + 1)) { px_doc_free(&v); return -1; }
      } else if (scalar(p, 1, &v))
        return -1;
      skip_inline(p);
      if (ch(p, p->pos) == ':') { /* [a: 1]: a one-pair mapping, as PyYAML reads it */
        if (v.type == PX_DOC_LIST || v.type == PX_DOC_MAP) {
          px_doc_free(&v);
          return yfail(p, "complex mapping keys are not supported");
        }
        px_doc pair, pv;
        int pcap = 0;
        memset(&pair, 0, sizeof pair);
        memset(&pv, 0, sizeof pv);
        pair.type = PX_DOC_MAP;
        pair.line = v.line;
        p->pos++;
        flow_skip(p);
        c = ch(p, p->pos);
        int r = 0;
        if (c == ',' || c == ']') {
          pv.type = PX_DOC_NULL;
          pv.line = p->line;
        } else if (c == '[' || c == '{')
          r = flow(p, &pv, depth + 1);
        else
          r = scalar(p, 1, &pv);
        if (r || px_doc_append(&pair, &pcap, &v, &pv)) {
          int oom = !r;
          px_doc_free(&v);
          px_doc_free(&pv);
          px_doc_free(&pair);
          return oom ? yoom(p) : -1;
        }
        v = pair;
      }
      if (px_doc_append(out, &cap, NULL, &v)) {
        px_doc_free(&v);
        return yoom(p);
      }
    }
    int item_line = p->line;
    flow_skip(p);
    c = ch(p, p->pos);
    if (c == ',') {
      p->pos++;
      continue;
    }
    if (c == close) continue;
    if (c == -1) return yfail(p, "unterminated flow %s (missing '%c')", is_map ? "mapping" : "list", close);
    return yfail(p, "expected ',' or '%c' in a flow %s, found '%c'%s", close, is_map ? "mapping" : "list",
                 c >= 0x20 && c < 0x7f ? c : '?',
                 p->line != item_line ? " (multi-line values are not supported)" : "");
  }
}

static int node_at(yp *p, int c, px_doc *out, int depth);

/* The value of a key or list item whose text starts on a later line: a node indented
 * more than parent_col, or (mapping values only) a list at parent_col. Absent: null. */
static int block_value(yp *p, int parent_col, int map_value, px_doc *out, int depth) {
  memset(out, 0, sizeof *out);
  out->line = p->line;
  int c = next_content(p);
  if (c == -2) return -1;
  if (c == YEOF || c < parent_col || (c == parent_col && !(map_value && at_dash_item(p)))) {
    out->type = PX_DOC_NULL;
    return 0;
  }
  return node_at(p, c, out, depth);
}

static int block_seq(yp *p, int c, px_doc *out, int depth) {
  int cap = 0;
  out->type = PX_DOC_LIST;
  out->line = p->line;
  for (;;) {
    px_doc v;
    p->pos++; /* the dash */
    skip_inline(p);
    if (rest_is_blank(p)) {
      if (block_value(p, c, 0, &v, depth + 1)) { px_doc_free(&v); return -1; }
    } else if (node_at(p, col(p), &v, depth + 1)) {
      px_doc_free(&v);
      return -1;
    }
    if (px_doc_append(out, &cap, NULL, &v)) {
      px_doc_free(&v);
      return yoom(p);
    }
    int nc = next_content(p);
    if (nc == -2) return -1;
    if (nc == YEOF || nc < c) return 0;
    if (nc > c) return yfail(p, "unexpected indentation (multi-line values are not supported)");
    if (!at_dash_item(p)) return 0; /* the enclosing mapping's next key */
  }
}

/* A block mapping at column c whose first key has been read (p->pos at its ':'). */
static int block_map(yp *p, int c, px_doc *key, px_doc *out, int depth) {
  int cap = 0;
  out->type = PX_DOC_MAP;
  out->line = key->line;
  for (;;) {
    px_doc v;
    memset(&v, 0, sizeof v);
    p->pos++; /* ':' */
    skip_inline(p);
    if (rest_is_blank(p)) {
      if (block_value(p, c, 1, &v, depth + 1)) { px_doc_free(key); px_doc_free(&v); return -1; }
    } else {
      int d = ch(p, p->pos);
      int r = (d == '[' || d == '{') ? flow(p, &v, depth + 1) : scalar(p, 0, &v);
      if (r) { px_doc_free(key); px_doc_free(&v); return -1; }
      skip_inline(p);
      if (ch(p, p->pos) == ':' && is_blank_or_end(ch(p, p->pos + 1))) {
        px_doc_free(key);
        px_doc_free(&v);
        return yfail(p, "a mapping cannot start on the line of its key (put it on the next line)");
      }
      if (!rest_is_blank(p)) {
        px_doc_free(key);
        px_doc_free(&v);
        return yfail(p, "unexpected text after a value");
      }
    }
    if (add_pair(p, out, &cap, key, &v)) return -1;
    int nc = next_content(p);
    if (nc == -2) return -1;
    if (nc == YEOF || nc < c) return 0;
    if (nc > c) return yfail(p, "unexpected indentation (multi-line values are not supported)");
    if (at_dash_item(p)) return yfail(p, "a '- ' list item where a 'key:' was expected");
    int d = ch(p, p->pos);
    if (d == '[' || d == '{') return yfail(p, "complex mapping keys are not supported");
    if (scalar(p, 0, key)) return -1;
    skip_inline(p);
    if (!(ch(p, p->pos) == ':' && is_blank_or_end(ch(p, p->pos + 1)))) {
      px_doc_free(key);
      return yfail(p, "expected 'key: value'");
    }
  }
}

/* A node whose first character is at p->pos, column c. */
static int node_at(yp *p, int c, px_doc *out, int depth) {
  memset(out, 0, sizeof *out);
  out->line = p->line;
  if (depth > YAML_MAX_DEPTH) return yfail(p, "nesting deeper than %d levels", YAML_MAX_DEPTH);
  if (at_dash_item(p)) return block_seq(p, c, out, depth);
  int d = ch(p, p->pos);
  if (d == '[' || d == '{') {
    if (flow(p, out, depth + 1)) return -1;
    skip_inline(p);
    if (ch(p, p->pos) == ':') return yfail(p, "complex mapping keys are not supported");
    if (!rest_is_blank(p)) return yfail(p, "unexpected text after a flow collection");
    return 0;
  }
  px_doc k;
  if (scalar(p, 0, &k)) return -1;
  skip_inline(p);
  if (ch(p, p->pos) == ':' && is_blank_or_end(ch(p, p->pos + 1))) return block_map(p, c, &k, out, depth);
  if (!rest_is_blank(p)) {
    px_doc_free(&k);
    return yfail(p, "unexpected text after a value");
  }
  *out = k;
  return 0;
}

int px_yaml_parse(const char *text, size_t len, const char *name, px_doc *out, char *err,
                  size_t errlen) {
  yp p = {text, len, 0, 0, 1, {name ? name : "?", err, errlen, 0}};
  if (err && errlen) err[0] = 0;
  memset(out, 0, sizeof *out);
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p.pos = p.line_start = 3;
  if (memchr(text, 0, len)) {
    const char *z = memchr(text, 0, len);
    for (const char *q = text; q < z; q++)
      if (*q == '\n') p.line++;
    yfail(&p, "NUL byte in a text file");
    return p.e.code;
  }
  int c = next_content(&p);
  if (c == YEOF && p.pos < p.n && p.s[p.pos] == '-') { /* "---": the document starts */
    p.pos += 3;
    skip_inline(&p);
    if (rest_is_blank(&p)) c = next_content(&p);
    else c = col(&p);
  }
  int r = 0;
  if (c == -2) r = -1;
  else if (c == YEOF) {
    out->type = PX_DOC_NULL;
    out->line = p.line;
  } else {
    r = node_at(&p, c, out, 0);
    if (!r) {
      c = next_content(&p);
      if (c == -2) r = -1;
      else if (c != YEOF)
        r = yfail(&p, "unexpected content after the document (multi-line values are not supported)");
      else if (p.pos < p.n) { /* at a marker */
        if (p.s[p.pos] == '-') r = yfail(&p, "several YAML documents in one file");
        else {
          p.pos += 3;
          if (next_content(&p) != YEOF || p.pos < p.n) r = yfail(&p, "content after the end marker '...'");
        }
      }
    }
  }
  if (r) {
    px_doc_free(out);
    return p.e.code ? p.e.code : PX_ERR_FORMAT;
  }
  return 0;
}
