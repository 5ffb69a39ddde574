#include "io/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void px_sb_put(px_strbuf *b, const char *s, size_t len) {
  if (b->oom) return;
  if (b->n + len + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->n + len + 1) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = 0;
}

void px_sb_str(px_strbuf *b, const char *s) { px_sb_put(b, s, strlen(s)); }

void px_sb_printf(px_strbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0) {
    b->oom = 1;
    return;
  }
  if ((size_t)k < sizeof tmp) {
    px_sb_put(b, tmp, (size_t)k);
    return;
  }
  char *big = malloc((size_t)k + 1);
  if (!big) {
    b->oom = 1;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)k + 1, fmt, ap);
  va_end(ap);
  px_sb_put(b, big, (size_t)k);
  free(big);
}

void px_sb_pad(px_strbuf *b, size_t n) {
  static const char spaces[] = "                                ";
  while (n > 0 && !b->oom) {
    size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
    px_sb_put(b, spaces, k);
    n -= k;
  }
}

void px_sb_json_string(px_strbuf *b, const char *s) {
  px_sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char tmp[8];
    if (c == '"' || c == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)c;
      px_sb_put(b, tmp, 2);
    } else if (c < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", c);
      px_sb_put(b, tmp, 6);
    } else {
      px_sb_put(b, (const char *)&c, 1);
    }
  }
  px_sb_put(b, "\"", 1);
}

int px_errf(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

void px_shown_name(char *dst, size_t cap, const char *s) {
  size_t j = 0;
  if (!s) s = "?";
  for (; *s && j + 4 < cap; s++) dst[j++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
  if (*s) {
    dst[j++] = '.';
    dst[j++] = '.';
    dst[j++] = '.';
  }
  dst[j] = 0;
}
