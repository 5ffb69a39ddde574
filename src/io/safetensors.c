/* safetensors: reader (strict JSON header, bounds and overlap checks) and float32 writer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/strbuf.h"
#include "platform.h"
#include "pxdiff.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20)
#define ST_MAX_DEPTH 64
#define ST_LIMIT ((int64_t)1 << 62)



/* ------------------------------------------------------------------------ JSON ---- */
typedef struct {
  const char *s;
  size_t n, pos;
  const char *path;
  char *err;
  size_t errlen;
  int rc;
} J;

static int jfail(J *j, const char *fmt, ...) {
  if (j->rc) return j->rc;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  px_errf(j->err, j->errlen, PX_ERR_FORMAT, "%s: safetensors header byte %zu: %s", j->path,
        j->pos + 8, msg);
  j->rc = PX_ERR_FORMAT;
  return j->rc;
}

static void ws(J *j) {
  while (j->pos < j->n) {
    char c = j->s[j->pos];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') j->pos++;
    else break;
  }
}

static int peek(J *j) { return j->pos < j->n ? (unsigned char)j->s[j->pos] : -1; }

static int expect(J *j, char c) {
  ws(j);
  if (peek(j) != (unsigned char)c) return jfail(j, "expected '%c'", c);
  j->pos++;
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_u4(J *j, unsigned *v) {
  if (j->n - j->pos < 4) return jfail(j, "truncated \\u escape");
  unsigned x = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval((unsigned char)j->s[j->pos + i]);
    if (h < 0) return jfail(j, "bad \\u escape");
    x = x * 16 + (unsigned)h;
  }
  j->pos += 4;
  *v = x;
  return 0;
}

/* Parses a string; if out is non-NULL, stores a malloc'ed decoded copy and its length. */
static int jstring(J *j, char **out, size_t *outlen) {
  ws(j);
  if (peek(j) != '"') return jfail(j, "expected a string");
  j->pos++;
  char *buf = NULL;
  size_t len = 0;
  if (out) {
    buf = malloc(j->n - j->pos + 1); /* decoded is never longer than the source */
    if (!buf) return j->rc = px_errf(j->err, j->errlen, PX_ERR_NOMEM, "%s: out of memory", j->path);
  }
  for (;;) {
    if (j->pos >= j->n) {
      free(buf);
      return jfail(j, "unterminated string");
    }
    unsigned char c = (unsigned char)j->s[j->pos++];
    if (c == '"') break;
    if (c < 0x20) {
      free(buf);
      j->pos--;
      return jfail(j, "control character in string");
    }
    if (c != '\\') {
      if (buf) buf[len++] = (char)c;
      continue;
    }
    if (j->pos >= j->n) {
      free(buf);
      return jfail(j, "unterminated string");
    }
    char e = j->s[j->pos++];
    unsigned cp;
    switch (e) {
    case '"': cp = '"'; break;
    case '\\': cp = '\\'; break;
    case '/': cp = '/'; break;
    case 'b': cp = 8; break;
    case 'f': cp = 12; break;
    case 'n': cp = 10; break;
    case 'r': cp = 13; break;
    case 't': cp = 9; break;
    case 'u':
      if (read_u4(j, &cp)) {
        free(buf);
        return j->rc;
      }
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        free(buf);
        return jfail(j, "lone low surrogate");
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (j->n - j->pos < 2 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u') {
          free(buf);
          return jfail(j, "lone high surrogate");
        }
        j->pos += 2;
        if (read_u4(j, &lo)) {
          free(buf);
          return j->rc;
        }
        if (lo < 0xDC00 || lo > 0xDFFF) {
          free(buf);
          return jfail(j, "bad surrogate pair");
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      break;
    default:
      free(buf);
      j->pos--;
      return jfail(j, "bad escape '\\%c'", (e >= 0x20 && e < 0x7f) ? e : '?');
    }
    if (buf) {
      if (cp < 0x80) {
        buf[len++] = (char)cp;
      } else if (cp < 0x800) {
        buf[len++] = (char)(0xC0 | (cp >> 6));
        buf[len++] = (char)(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        buf[len++] = (char)(0xE0 | (cp >> 12));
        buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[len++] = (char)(0x80 | (cp & 0x3F));
      } else {
        buf[len++] = (char)(0xF0 | (cp >> 18));
        buf[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[len++] = (char)(0x80 | (cp & 0x3F));
      }
    }
  }
  if (buf) {
    buf[len] = 0;
    *out = buf;
    *outlen = len;
  }
  return 0;
}

/* Number per JSON grammar; *is_int tells whether it is a plain integer that fit *v. */
static int jnumber(J *j, int64_t *v, int *is_int) {
  ws(j);
  size_t p = j->pos;
  int neg = 0, integral = 1, overflow = 0;
  uint64_t acc = 0;
  if (p < j->n && j->s[p] == '-') {
    neg = 1;
    p++;
  }
  if (p >= j->n || j->s[p] < '0' || j->s[p] > '9') return jfail(j, "expected a value");
  if (j->s[p] == '0') {
    p++;
    if (p < j->n && j->s[p] >= '0' && j->s[p] <= '9') return jfail(j, "number with a leading zero");
  } else {
    while (p < j->n && j->s[p] >= '0' && j->s[p] <= '9') {
      unsigned d = (unsigned)(j->s[p] - '0');
      if (acc > (UINT64_MAX - d) / 10) overflow = 1;
      else acc = acc * 10 + d;
      p++;
    }
  }
  if (p < j->n && j->s[p] == '.') {
    integral = 0;
    p++;
    if (p >= j->n || j->s[p] < '0' || j->s[p] > '9') return jfail(j, "bad number");
    while (p < j->n && j->s[p] >= '0' && j->s[p] <= '9') p++;
  }
  if (p < j->n && (j->s[p] == 'e' || j->s[p] == 'E')) {
    integral = 0;
    p++;
    if (p < j->n && (j->s[p] == '+' || j->s[p] == '-')) p++;
    if (p >= j->n || j->s[p] < '0' || j->s[p] > '9') return jfail(j, "bad number");
    while (p < j->n && j->s[p] >= '0' && j->s[p] <= '9') p++;
  }
  j->pos = p;
  *is_int = integral && !overflow && acc <= (uint64_t)INT64_MAX;
  *v = *is_int ? (neg ? -(int64_t)acc : (int64_t)acc) : 0;
  return 0;
}

static int jliteral(J *j, const char *lit) {
  size_t l = strlen(lit);
  if (j->n - j->pos < l || memcmp(j->s + j->pos, lit, l) != 0) return jfail(j, "expected a value");
  j->pos += l;
  return 0;
}

static int jskip(J *j, int depth) {
  if (depth > ST_MAX_DEPTH) return jfail(j, "nested deeper than %d", ST_MAX_DEPTH);
  ws(j);
  int c = peek(j);
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->pos++;
    ws(j);
    if (peek(j) == close) {
      j->pos++;
      return 0;
    }
    for (;;) {
      if (c == '{') {
        if (jstring(j, NULL, NULL) || expect(j, ':')) return j->rc;
      }
      if (jskip(j, depth + 1)) return j->rc;
      ws(j);
      if (peek(j) == ',') {
        j->pos++;
        continue;
      }
      return expect(j, close);
    }
  }
  if (c == '"') return jstring(j, NULL, NULL);
  if (c == 't') return jliteral(j, "true");
  if (c == 'f') return jliteral(j, "false");
  if (c == 'n') return jliteral(j, "null");
  int64_t v;
  int ii;
  return jnumber(j, &v, &ii);
}

/* Array of non-negative integers, at most maxn. */
static int jints(J *j, int64_t *v, int maxn, int *n, const char *what) {
  if (expect(j, '[')) return j->rc;
  *n = 0;
  ws(j);
  if (peek(j) == ']') {
    j->pos++;
    return 0;
  }
  for (;;) {
    int64_t x;
    int is_int;
    if (jnumber(j, &x, &is_int)) return j->rc;
    if (!is_int || x < 0) return jfail(j, "%s must hold non-negative integers", what);
    if (*n >= maxn) return jfail(j, "%s has more than %d entries", what, maxn);
    v[(*n)++] = x;
    ws(j);
    if (peek(j) == ',') {
      j->pos++;
      continue;
    }
    return expect(j, ']');
  }
}

/* --------------------------------------------------------------------- index ---- */
static int dtype_from(const char *s, px_dtype *d) {
  static const char *const names[] = {"F32", "F16", "BF16", "F64", "I64",
                                      "I32", "I16", "I8",   "U8",  "BOOL"};
  for (int i = 0; i < 10; i++)
    if (strcmp(s, names[i]) == 0) {
      *d = (px_dtype)i;
      return 0;
    }
  return -1;
}

typedef struct {
  int64_t b, e;
  int idx;
} span_t;

static int cmp_span(const void *x, const void *y) {
  const span_t *a = x, *b = y;
  if (a->b != b->b) return a->b < b->b ? -1 : 1;
  if (a->e != b->e) return a->e < b->e ? -1 : 1;
  return 0;
}
static int cmp_name(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}


void px_st_meta_free(px_st_meta *meta) {
  if (!meta) return;
  for (int i = 0; i < meta->n; i++) {
    free(meta->key[i]);
    free(meta->value[i]);
  }
  free(meta->key);
  free(meta->value);
  memset(meta, 0, sizeof *meta);
}

/* Parse "__metadata__"'s value at j: string entries are kept; anything else is recorded as
 * malformed and skipped (whether that matters is the caller's business). */
static int parse_meta(J *j, px_st_meta *meta) {
  ws(j);
  if (peek(j) != '{') {
    if (meta && !meta->malformed) meta->malformed = 1;
    return jskip(j, 1);
  }
  j->pos++;
  ws(j);
  if (peek(j) == '}') {
    j->pos++;
    return 0;
  }
  for (;;) {
    char *k = NULL, *v = NULL;
    size_t kl, vl;
    if (jstring(j, &k, &kl) || expect(j, ':')) {
      free(k);
      return -1;
    }
    ws(j);
    if (peek(j) != '"') {
      if (meta && !meta->malformed) {
        meta->malformed = 2;
        px_shown_name(meta->bad_key, sizeof meta->bad_key, k);
      }
      free(k);
      if (jskip(j, 2)) return -1;
    } else {
      if (jstring(j, &v, &vl)) {
        free(k);
        return -1;
      }
      if (!meta) {
        free(k);
        free(v);
      } else {
        char **nk = realloc(meta->key, sizeof(char *) * (size_t)(meta->n + 1));
        if (nk) meta->key = nk;
        char **nv = nk ? realloc(meta->value, sizeof(char *) * (size_t)(meta->n + 1)) : NULL;
        if (nv) meta->value = nv;
        if (!nk || !nv) {
          free(k);
          free(v);
          jfail(j, "out of memory");
          j->rc = PX_ERR_NOMEM;
          return j->rc;
        }
        meta->key[meta->n] = k;
        meta->value[meta->n] = v;
        meta->n++;
      }
    }
    ws(j);
    if (peek(j) == ',') {
      j->pos++;
      continue;
    }
    return expect(j, '}');
  }
}

int px_safetensors_index(int fd, uint64_t fsize, const char *path, px_tensor_entry **out,
                         int *nout, px_st_meta *meta, char *err, size_t errlen) {
  *out = NULL;
  *nout = 0;
  uint8_t h8[8];
  if (fsize < 8) return px_errf(err, errlen, PX_ERR_FORMAT, "%s: too short for safetensors", path);
  if (px_file_pread(fd, h8, 8, 0) != 0)
    return px_errf(err, errlen, PX_ERR_IO, "%s: cannot read the header length", path);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | h8[i];
  if (hl > fsize - 8 || hl > ST_MAX_HEADER || hl < 2)
    return px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: safetensors header length %llu is impossible for a file of %llu bytes "
                 "(limit %llu)",
                 path, (unsigned long long)hl, (unsigned long long)fsize,
                 (unsigned long long)ST_MAX_HEADER);
  char *hdr = malloc((size_t)hl);
  if (!hdr) return px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
  if (px_file_pread(fd, hdr, (size_t)hl, 8) != 0) {
    free(hdr);
    return px_errf(err, errlen, PX_ERR_IO, "%s: cannot read the %llu-byte header", path,
                 (unsigned long long)hl);
  }
  uint64_t data0 = 8 + hl, dlen = fsize - data0;
  J j = {hdr, (size_t)hl, 0, path, err, errlen, 0};
  px_tensor_entry *ents = NULL;
  int n = 0, cap = 0;
  span_t *spans = NULL;
  char **names = NULL;
  char *key = NULL, *dts = NULL;
  size_t kl, dl;
  if (expect(&j, '{')) goto fail;
  ws(&j);
  if (peek(&j) == '}') {
    j.pos++;
  } else {
    for (;;) {
      size_t key_at = j.pos;
      if (jstring(&j, &key, &kl) || expect(&j, ':')) goto fail;
      if (strcmp(key, "__metadata__") == 0) {
        free(key);
        key = NULL;
        if (parse_meta(&j, meta)) goto fail;
      } else {
        char shown[160];
        px_shown_name(shown, sizeof shown, key);
        if (strlen(key) != kl) {
          j.pos = key_at;
          jfail(&j, "tensor name holds a NUL character");
          goto fail;
        }
        int have_dt = 0, have_shape = 0, have_off = 0, ndim = 0, noff = 0;
        int64_t shape[PX_MAX_DIMS], offs[2];
        px_dtype dt = PX_DT_F32;
        if (expect(&j, '{')) goto fail;
        ws(&j);
        if (peek(&j) != '}') {
          for (;;) {
            char *f = NULL;
            size_t fl;
            if (jstring(&j, &f, &fl) || expect(&j, ':')) {
              free(f);
              goto fail;
            }
            if (strcmp(f, "dtype") == 0) {
              free(f);
              if (jstring(&j, &dts, &dl)) goto fail;
              if (dtype_from(dts, &dt) != 0) {
                char sd[40];
                px_shown_name(sd, sizeof sd, dts);
                px_errf(err, errlen, PX_ERR_FORMAT,
                      "%s: tensor '%s' has dtype %s, which pxdiff does not read", path, shown, sd);
                j.rc = PX_ERR_FORMAT;
                goto fail;
              }
              free(dts);
              dts = NULL;
              have_dt = 1;
            } else if (strcmp(f, "shape") == 0) {
              free(f);
              if (jints(&j, shape, PX_MAX_DIMS, &ndim, "shape")) goto fail;
              have_shape = 1;
            } else if (strcmp(f, "data_offsets") == 0) {
              free(f);
              if (jints(&j, offs, 2, &noff, "data_offsets")) goto fail;
              if (noff != 2) {
                jfail(&j, "data_offsets must hold two integers");
                goto fail;
              }
              have_off = 1;
            } else {
              free(f);
              if (jskip(&j, 2)) goto fail;
            }
            ws(&j);
            if (peek(&j) == ',') {
              j.pos++;
              continue;
            }
            if (expect(&j, '}')) goto fail;
            break;
          }
        } else {
          j.pos++;
        }
        if (!have_dt || !have_shape || !have_off) {
          px_errf(err, errlen, PX_ERR_FORMAT, "%s: tensor '%s' lacks %s", path, shown,
                !have_dt ? "dtype" : !have_shape ? "shape" : "data_offsets");
          j.rc = PX_ERR_FORMAT;
          goto fail;
        }
        uint64_t es = px_dtype_size(dt);
        int64_t numel = 1;
        for (int d = 0; d < ndim; d++) {
          if (shape[d] != 0 && numel > ST_LIMIT / (int64_t)es / shape[d]) {
            px_errf(err, errlen, PX_ERR_FORMAT, "%s: tensor '%s' is impossibly large", path, shown);
            j.rc = PX_ERR_FORMAT;
            goto fail;
          }
          numel *= shape[d];
        }
        if (offs[0] > offs[1] || (uint64_t)offs[1] > dlen ||
            (uint64_t)(offs[1] - offs[0]) != (uint64_t)numel * es) {
          px_errf(err, errlen, PX_ERR_FORMAT,
                "%s: tensor '%s': data_offsets [%lld, %lld] do not hold %lld %s elements within "
                "the %llu data bytes",
                path, shown, (long long)offs[0], (long long)offs[1], (long long)numel,
                px_dtype_name(dt), (unsigned long long)dlen);
          j.rc = PX_ERR_FORMAT;
          goto fail;
        }
        if (n == cap) {
          int nc = cap ? 2 * cap : 64;
          px_tensor_entry *ne = realloc(ents, (size_t)nc * sizeof *ne);
          if (!ne) {
            j.rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
          }
          ents = ne;
          cap = nc;
        }
        px_tensor_entry *e = &ents[n++];
        memset(e, 0, sizeof *e);
        e->name = key;
        key = NULL;
        e->dtype = dt;
        e->ndim = ndim;
        int64_t st = 1;
        for (int d = ndim - 1; d >= 0; d--) {
          e->shape[d] = shape[d];
          e->stride[d] = st;
          st *= shape[d] ? shape[d] : 1;
        }
        e->offset = data0 + (uint64_t)offs[0];
        e->span = (uint64_t)(offs[1] - offs[0]);
      }
      ws(&j);
      if (peek(&j) == ',') {
        j.pos++;
        continue;
      }
      if (expect(&j, '}')) goto fail;
      break;
    }
  }
  ws(&j);
  if (j.pos != j.n) {
    jfail(&j, "trailing bytes after the header object");
    goto fail;
  }
  /* Unique names, non-overlapping data. */
  spans = malloc((size_t)(n ? n : 1) * sizeof *spans);
  names = malloc((size_t)(n ? n : 1) * sizeof *names);
  if (!spans || !names) {
    j.rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
    goto fail;
  }
  for (int i = 0; i < n; i++) {
    names[i] = ents[i].name;
    spans[i].b = (int64_t)(ents[i].offset - data0);
    spans[i].e = spans[i].b + (int64_t)ents[i].span;
    spans[i].idx = i;
  }
  qsort(names, (size_t)n, sizeof *names, cmp_name);
  for (int i = 1; i < n; i++)
    if (strcmp(names[i], names[i - 1]) == 0) {
      char shown[160];
      px_shown_name(shown, sizeof shown, names[i]);
      j.rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: tensor '%s' appears twice", path, shown);
      goto fail;
    }
  qsort(spans, (size_t)n, sizeof *spans, cmp_span);
  int64_t maxe = 0;
  int maxi = -1;
  for (int i = 0; i < n; i++) {
    if (spans[i].b == spans[i].e) continue; /* empty tensors overlap nothing */
    if (maxi >= 0 && spans[i].b < maxe) {
      char a[120], b[120];
      px_shown_name(a, sizeof a, ents[maxi].name);
      px_shown_name(b, sizeof b, ents[spans[i].idx].name);
      j.rc = px_errf(err, errlen, PX_ERR_FORMAT,
                   "%s: data of tensors '%s' and '%s' overlap (data byte %lld)", path, a, b,
                   (long long)spans[i].b);
      goto fail;
    }
    if (spans[i].e > maxe) {
      maxe = spans[i].e;
      maxi = spans[i].idx;
    }
  }
  free(spans);
  free(names);
  free(hdr);
  *out = ents;
  *nout = n;
  return 0;
fail:
  free(key);
  free(dts);
  free(spans);
  free(names);
  for (int i = 0; i < n; i++) free(ents[i].name);
  free(ents);
  free(hdr);
  px_st_meta_free(meta);
  return j.rc ? j.rc : PX_ERR_FORMAT;
}

/* --------------------------------------------------------------------- writer ---- */

int px_safetensors_write(const char *path, const px_st_write_item *items, int n, char *err,
                         size_t errlen) {
  if (!path || (n > 0 && !items) || n < 0)
    return px_errf(err, errlen, PX_ERR_INPUT, "safetensors write: bad arguments");
  px_strbuf h = {0};
  uint64_t off = 0;
  int rc = 0;
  char **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
  if (!sorted) return px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
  px_sb_str(&h, "{");
  for (int i = 0; i < n; i++) {
    const px_st_write_item *it = &items[i];
    if (!it->name || !it->name[0] || it->ndim < 0 || it->ndim > PX_MAX_DIMS ||
        (it->ndim > 0 && !it->shape)) {
      rc = px_errf(err, errlen, PX_ERR_INPUT, "%s: item %d has a bad name or shape", path, i);
      goto out;
    }
    if (strcmp(it->name, "__metadata__") == 0) {
      rc = px_errf(err, errlen, PX_ERR_INPUT, "%s: a tensor cannot be named __metadata__", path);
      goto out;
    }
    sorted[i] = (char *)it->name;
    int64_t numel = 1;
    for (int d = 0; d < it->ndim; d++) {
      if (it->shape[d] < 0 || (it->shape[d] && numel > ST_LIMIT / 4 / it->shape[d])) {
        rc = px_errf(err, errlen, PX_ERR_INPUT, "%s: tensor '%s' has a bad shape", path, it->name);
        goto out;
      }
      numel *= it->shape[d];
    }
    if (numel > 0 && !it->data) {
      rc = px_errf(err, errlen, PX_ERR_INPUT, "%s: tensor '%s' has no data", path, it->name);
      goto out;
    }
    char num[64];
    if (i) px_sb_str(&h, ",");
    px_sb_json_string(&h, it->name);
    px_sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < it->ndim; d++) {
      snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)it->shape[d]);
      px_sb_str(&h, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
             (unsigned long long)(off + (uint64_t)numel * 4));
    px_sb_str(&h, num);
    off += (uint64_t)numel * 4;
  }
  px_sb_str(&h, "}");
  while (!h.oom && (8 + h.n) % 8) px_sb_str(&h, " ");
  if (h.oom) {
    rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
    goto out;
  }
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
  for (int i = 1; i < n; i++)
    if (strcmp(sorted[i], sorted[i - 1]) == 0) {
      rc = px_errf(err, errlen, PX_ERR_INPUT, "%s: tensor '%s' given twice", path, sorted[i]);
      goto out;
    }
  {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) {
      rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
      goto out;
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
      rc = px_errf(err, errlen, PX_ERR_IO, "%s: cannot create %s", path, tmp);
      free(tmp);
      goto out;
    }
    uint8_t le8[8];
    uint64_t hn = h.n;
    for (int i = 0; i < 8; i++) le8[i] = (uint8_t)(hn >> (8 * i));
    int ok = fwrite(le8, 1, 8, f) == 8 && fwrite(h.p, 1, h.n, f) == h.n;
    uint8_t chunk[4096];
    for (int i = 0; i < n && ok; i++) {
      int64_t numel = 1;
      for (int d = 0; d < items[i].ndim; d++) numel *= items[i].shape[d];
      const float *src = items[i].data;
      for (int64_t k = 0; k < numel && ok;) {
        size_t m = 0;
        while (k < numel && m + 4 <= sizeof chunk) {
          uint32_t bits;
          memcpy(&bits, &src[k++], 4);
          chunk[m++] = (uint8_t)bits;
          chunk[m++] = (uint8_t)(bits >> 8);
          chunk[m++] = (uint8_t)(bits >> 16);
          chunk[m++] = (uint8_t)(bits >> 24);
        }
        ok = fwrite(chunk, 1, m, f) == m;
      }
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok || px_file_rename(tmp, path) != 0) {
      remove(tmp);
      rc = px_errf(err, errlen, PX_ERR_IO, "%s: write failed", path);
    }
    free(tmp);
  }
out:
  free(sorted);
  free(h.p);
  return rc;
}
