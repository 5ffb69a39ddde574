/* Small text helpers of the readers and writers: a growable string (safetensors JSON
 * headers) and one-line error formatting. */
#ifndef PX_IO_STRBUF_H
#define PX_IO_STRBUF_H

#include <stddef.h>

typedef struct {
  char *p; /* NUL-terminated; free() when done */
  size_t n, cap;
  int oom; /* set on allocation failure; later appends do nothing */
} px_strbuf;

void px_sb_put(px_strbuf *b, const char *s, size_t len);
void px_sb_str(px_strbuf *b, const char *s);
/* printf-style append (any length). */
void px_sb_printf(px_strbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* n spaces. */
void px_sb_pad(px_strbuf *b, size_t n);
/* s as a JSON string literal: quotes, backslashes and control characters escaped. */
void px_sb_json_string(px_strbuf *b, const char *s);

/* A printable one-line form of a name read from a file, for messages: control characters
 * become '?', and a name longer than cap - 4 is cut with "..." (NULL reads as "?"). */
void px_shown_name(char *dst, size_t cap, const char *s);

/* Format a one-line message into err (when given) and return code: the readers' way of
 * failing, `return px_errf(err, errlen, PX_ERR_FORMAT, "...", ...)`. */
int px_errf(char *err, size_t errlen, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif
