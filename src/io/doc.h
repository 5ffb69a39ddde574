/* A small document tree shared by the JSON and YAML readers (task files, campaign files).
 *
 * Scalars keep their text and their resolved type: JSON types as JSON defines them; YAML
 * plain scalars resolved the way PyYAML's safe_load resolves them (YAML 1.1 core: null ~,
 * true/yes/on, false/no/off, decimal/0x/0o/0b integers with '_', floats with a '.'),
 * quoted YAML scalars always strings. Mapping keys are scalar nodes, in file order;
 * the readers refuse duplicate keys. Every node remembers the line it starts on, so
 * callers can name it in messages. */
#ifndef PX_IO_DOC_H
#define PX_IO_DOC_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
  PX_DOC_NULL,
  PX_DOC_BOOL,
  PX_DOC_INT,
  PX_DOC_FLOAT,
  PX_DOC_STR,
  PX_DOC_LIST,
  PX_DOC_MAP
} px_doc_type;

typedef struct px_doc {
  px_doc_type type;
  int line;           /* 1-based line of the node's first character */
  char *text;         /* scalars: the value (STR) or the source text (others); NUL-terminated */
  size_t text_len;    /* bytes of text (a JSON string may hold \u0000) */
  long long i;        /* INT value; BOOL 0/1 */
  double f;           /* FLOAT value (INT too, converted) */
  int n;              /* LIST / MAP: number of items */
  struct px_doc *item; /* [n] list items, or map values */
  struct px_doc *key;  /* [n] map keys (scalars), NULL for lists */
} px_doc;

/* Parse a whole document. On failure returns PX_ERR_FORMAT (or PX_ERR_NOMEM) and writes
 * "NAME:LINE: what is wrong" into err. The tree is freed with px_doc_free. */
int px_json_parse(const char *text, size_t len, const char *name, px_doc *out, char *err,
                  size_t errlen);
int px_yaml_parse(const char *text, size_t len, const char *name, px_doc *out, char *err,
                  size_t errlen);
void px_doc_free(px_doc *d);

/* The parsers' error slot (json.c, yaml.c): the first failure is kept, later ones ignored. */
typedef struct {
  const char *name; /* the document's name in messages */
  char *err;        /* the caller's message buffer */
  size_t errlen;
  int code;         /* 0 until a failure */
} px_doc_err;
/* PX_ERR_FORMAT with "NAME:LINE: <message>"; returns -1 (the parsers' failure value). */
int px_doc_failv(px_doc_err *e, int line, const char *fmt, va_list ap);
/* PX_ERR_NOMEM with "NAME: out of memory"; returns -1. */
int px_doc_oom(px_doc_err *e);

/* For the parsers: append val (and key, for maps; both are moved, the caller's copies
 * are cleared) to a LIST or MAP node; capacity grows geometrically. -1 when out of memory
 * or the count passes 1<<24. px_doc_find_key: index of a key equal to k (same scalar type
 * and value), or -1. */
int px_doc_append(px_doc *parent, int *cap, px_doc *key, px_doc *val);
int px_doc_find_key(const px_doc *map, const px_doc *k);

/* The value of `key` in a map (NULL when absent or d is not a map). */
const px_doc *px_doc_get(const px_doc *d, const char *key);
/* Type names for messages: "null", "boolean", "integer", "number", "string", "list", "mapping". */
const char *px_doc_type_name(px_doc_type t);

#endif
