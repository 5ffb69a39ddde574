/* Reference conformer tables (featurize.h; format in docs/conformers.md). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "featurize/featurize_internal.h"
#include "platform.h"

struct px_conformers {
  float xyz[PX_N_RES_TEMPLATES][PX_RES_MAX_ATOM][3];
  int from_file[PX_N_RES_TEMPLATES];
};

static px_conformers *conf_builtin_new(void) {
  px_conformers *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  for (int r = 0; r < PX_N_RES_TEMPLATES; r++)
    memcpy(c->xyz[r], px_res_templates[r].ideal, sizeof c->xyz[r]);
  return c;
}

int px_conformers_builtin(px_conformers **out) {
  *out = conf_builtin_new();
  return *out ? PX_OK : px_fail(PX_ERR_NOMEM, "out of memory for the conformer table");
}

void px_conformers_free(px_conformers *c) { free(c); }

int px_conformers_n_from_file(const px_conformers *c) {
  int n = 0;
  for (int r = 0; c && r < PX_N_RES_TEMPLATES; r++) n += c->from_file[r];
  return n;
}

const float *px_conformers_get(const px_conformers *c, const char *res, const char *atom) {
  const px_res_template *t = px_res_template_find(res);
  if (!t) return NULL;
  const int a = px_res_template_atom(t, atom);
  if (a < 0) return NULL;
  if (!c) return t->ideal[a];
  return c->xyz[t - px_res_templates][a];
}

/* Split a line into at most 6 blank-separated fields; returns the count (7 = too many). */
static int conf_split(char *line, char **f) {
  int n = 0;
  char *p = line;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    if (!*p) break;
    if (n == 6) return 7;
    f[n++] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\r') p++;
    if (*p) *p++ = 0;
  }
  return n;
}

static int conf_parse_coord(const char *s, float *v) {
  char *end;
  const double d = strtod(s, &end);
  if (end == s || *end || !isfinite(d) || fabs(d) > 1e4) return -1;
  *v = (float)d;
  return 0;
}

int px_conformers_parse(const char *text, size_t len, const char *name, px_conformers **out) {
  *out = NULL;
  if (!text && len) return px_fail(PX_ERR_INPUT, "%s: no text", name);
  px_conformers *c = conf_builtin_new();
  /* Atoms seen per residue, to demand each template atom exactly once. */
  unsigned char seen[PX_N_RES_TEMPLATES][PX_RES_MAX_ATOM];
  memset(seen, 0, sizeof seen);
  char line[256];
  if (!c) return px_fail(PX_ERR_NOMEM, "out of memory for the conformer table");
  size_t pos = 0;
  int lineno = 0, rc = PX_OK;
  while (pos < len) {
    size_t e = pos;
    while (e < len && text[e] != '\n') e++;
    lineno++;
    const size_t n = e - pos;
    if (n >= sizeof line) {
      rc = px_fail(PX_ERR_FORMAT, "%s:%d: line longer than %d characters", name, lineno, (int)sizeof line - 1);
      goto done;
    }
    memcpy(line, text + pos, n);
    line[n] = 0;
    pos = e + 1;
    for (size_t i = 0; i < n; i++)
      if (line[i] == 0 || (unsigned char)line[i] >= 127) {
        rc = px_fail(PX_ERR_FORMAT, "%s:%d: NUL or non-ASCII byte", name, lineno);
        goto done;
      }
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *f[6];
    const int nf = conf_split(line, f);
    if (nf == 0) continue;
    if (nf != 5) {
      rc = px_fail(PX_ERR_FORMAT, "%s:%d: expected 5 fields \"RES ATOM x y z\", found %d", name, lineno,
                   nf > 6 ? 7 : nf);
      goto done;
    }
    const px_res_template *t = px_res_template_find(f[0]);
    if (!t) {
      rc = px_fail(PX_ERR_FORMAT, "%s:%d: unknown residue %.8s (the 20 amino acids and UNK)", name, lineno,
                   f[0]);
      goto done;
    }
    const int a = px_res_template_atom(t, f[1]);
    if (a < 0) {
      rc = px_fail(PX_ERR_FORMAT, "%s:%d: %s has no heavy atom %.8s", name, lineno, t->name, f[1]);
      goto done;
    }
    const int r = (int)(t - px_res_templates);
    if (seen[r][a]) {
      rc = px_fail(PX_ERR_FORMAT, "%s:%d: %s %s listed twice", name, lineno, t->name, t->atom[a]);
      goto done;
    }
    float v[3];
    for (int k = 0; k < 3; k++)
      if (conf_parse_coord(f[2 + k], &v[k])) {
        rc = px_fail(PX_ERR_FORMAT, "%s:%d: bad coordinate %.20s", name, lineno, f[2 + k]);
        goto done;
      }
    seen[r][a] = 1;
    c->from_file[r] = 1;
    memcpy(c->xyz[r][a], v, sizeof v);
  }
  for (int r = 0; r < PX_N_RES_TEMPLATES; r++) {
    if (!c->from_file[r]) continue;
    for (int a = 0; a < px_res_templates[r].n_atom; a++)
      if (!seen[r][a]) {
        rc = px_fail(PX_ERR_FORMAT, "%s: %s lacks atom %s (a residue listed must list all its heavy atoms)",
                     name, px_res_templates[r].name, px_res_templates[r].atom[a]);
        goto done;
      }
  }
  if (!px_conformers_n_from_file(c)) {
    rc = px_fail(PX_ERR_FORMAT, "%s: no conformer rows", name);
    goto done;
  }
done:
  if (rc != PX_OK) {
    free(c);
    return rc;
  }
  *out = c;
  return PX_OK;
}

int px_conformers_read(const char *path, px_conformers **out) {
  *out = NULL;
  const int fd = px_file_open_read(path);
  if (fd < 0) return px_fail(PX_ERR_IO, "%s: cannot open", path);
  const int64_t size = px_file_size(fd);
  if (size < 0 || size > (64 << 20)) {
    px_file_close(fd);
    return px_fail(size < 0 ? PX_ERR_IO : PX_ERR_FORMAT, "%s: %s", path,
                   size < 0 ? "cannot read its size" : "larger than 64 MiB: not a conformer table");
  }
  char *buf = malloc((size_t)size + 1);
  if (!buf) {
    px_file_close(fd);
    return px_fail(PX_ERR_NOMEM, "out of memory reading %s", path);
  }
  const int rd = size ? px_file_pread(fd, buf, (size_t)size, 0) : 0;
  px_file_close(fd);
  if (rd) {
    free(buf);
    return px_fail(PX_ERR_IO, "%s: read failed", path);
  }
  const int rc = px_conformers_parse(buf, (size_t)size, path, out);
  free(buf);
  return rc;
}
