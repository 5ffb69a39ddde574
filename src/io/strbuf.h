/* A growable string for building file headers (safetensors JSON). */
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
/* s as a JSON string literal: quotes, backslashes and control characters escaped. */
void px_sb_json_string(px_strbuf *b, const char *s);

#endif
