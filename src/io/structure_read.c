/* The target structure readers' entry points (structure_in.h): the file read, and the
 * reader chosen by its first line (mmCIF, cif_read.c; PDB, pdb_read.c). */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "io/strbuf.h"
#include "io/structure_in_priv.h"
#include "platform.h"

/* 1 when p starts with "data_" in any case (an mmCIF data block). */
static int data_block(const char *p, size_t n) {
  static const char pre[] = "data_";
  if (n < sizeof pre - 1) return 0;
  for (size_t i = 0; i < sizeof pre - 1; i++)
    if (tolower((unsigned char)p[i]) != pre[i]) return 0;
  return 1;
}

/* ----------------------------------------------------------------- entry -- */

int px_structure_parse(const char *text, size_t len, const char *name, px_structure_in **out) {
  char shown[96];
  if (!out) return px_fail(PX_ERR_INPUT, "px_structure_parse: NULL output");
  *out = NULL;
  if (!name) name = "structure";
  px_shown_name(shown, sizeof shown, name);
  if (!text && len) return px_fail(PX_ERR_INPUT, "%s: NULL text", shown);
  if (len > SIN_MAX_BYTES)
    return px_fail(PX_ERR_FORMAT, "%s: %zu bytes (a target structure is at most %zu)", shown, len,
                   SIN_MAX_BYTES);
  /* mmCIF when the first thing that is neither blank nor a comment is a data_ block */
  size_t p = 0;
  for (;;) {
    while (p < len && (text[p] == ' ' || text[p] == '\t' || text[p] == '\n' || text[p] == '\r')) p++;
    if (p < len && text[p] == '#') {
      while (p < len && text[p] != '\n') p++;
      continue;
    }
    break;
  }
  if (p == len) return px_fail(PX_ERR_FORMAT, "%s: empty file", shown);
  if (data_block(text + p, len - p)) return px_cif_parse(text, len, name, out);
  return px_pdb_parse(text, len, name, out);
}

int px_structure_read(const char *path, px_structure_in **out) {
  char shown[96];
  if (!out) return px_fail(PX_ERR_INPUT, "px_structure_read: NULL output");
  *out = NULL;
  if (!path) return px_fail(PX_ERR_INPUT, "px_structure_read: NULL path");
  px_shown_name(shown, sizeof shown, path);
  int fd = px_file_open_read(path);
  if (fd < 0) return px_fail(PX_ERR_IO, "%s: cannot open", shown);
  int64_t size = px_file_size(fd);
  if (size < 0) {
    px_file_close(fd);
    return px_fail(PX_ERR_IO, "%s: cannot read its size", shown);
  }
  if ((uint64_t)size > SIN_MAX_BYTES) {
    px_file_close(fd);
    return px_fail(PX_ERR_FORMAT, "%s: %lld bytes (a target structure is at most %zu)", shown,
                   (long long)size, SIN_MAX_BYTES);
  }
  char *buf = malloc((size_t)size + 1);
  if (!buf) {
    px_file_close(fd);
    return px_fail(PX_ERR_NOMEM, "%s: out of memory", shown);
  }
  if (size > 0 && px_file_pread(fd, buf, (size_t)size, 0)) {
    free(buf);
    px_file_close(fd);
    return px_fail(PX_ERR_IO, "%s: read error", shown);
  }
  px_file_close(fd);
  int rc = px_structure_parse(buf, (size_t)size, path, out);
  free(buf);
  return rc;
}
