/* mmCIF and PDB writers (structure.h). */
#include "io/strbuf.h"
#include "io/structure.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "platform.h"

/* ------------------------------------------------------------ text buffer -- */

static int sb_finish(px_strbuf *b, char **out, size_t *len) {
  px_sb_put(b, "", 0); /* a buffer even for empty text */
  if (b->oom) {
    free(b->p);
    return px_fail(PX_ERR_NOMEM, "out of memory writing a structure");
  }
  *out = b->p;
  if (len) *len = b->n;
  return PX_OK;
}

/* ---------------------------------------------------------------- checks -- */

static int check_common(const px_structure *s) {
  if (!s || s->n_atom < 0 || (s->n_atom > 0 && (!s->xyz || !s->atom_name || !s->element ||
                                                 !s->res_name || !s->chain_id || !s->res_seq)))
    return px_fail(PX_ERR_INPUT, "structure: NULL array or negative atom count");
  for (int i = 0; i < s->n_atom; i++) {
    const char *names[4] = {s->atom_name[i], s->element[i], s->res_name[i], s->chain_id[i]};
    static const char *what[4] = {"atom name", "element", "residue name", "chain id"};
    for (int k = 0; k < 4; k++) {
      if (!names[k] || !names[k][0])
        return px_fail(PX_ERR_INPUT, "structure: atom %d has an empty %s", i + 1, what[k]);
      for (const unsigned char *c = (const unsigned char *)names[k]; *c; c++)
        if (*c <= ' ' || *c >= 127)
          return px_fail(PX_ERR_INPUT,
                         "structure: atom %d: %s holds a blank, control or non-ASCII character", i + 1,
                         what[k]);
    }
    for (int c = 0; c < 3; c++)
      if (!isfinite(s->xyz[(size_t)i * 3 + c]))
        return px_fail(PX_ERR_INPUT, "structure: atom %d (%s) has a non-finite coordinate", i + 1,
                       s->atom_name[i]);
    if (s->b_factor && !isfinite(s->b_factor[i]))
      return px_fail(PX_ERR_INPUT, "structure: atom %d has a non-finite B-factor", i + 1);
  }
  return PX_OK;
}

/* ------------------------------------------------------------------ mmCIF -- */

#define NCOL 20
#define FW 80 /* longest field text, quotes included */

static const char *const cif_cols[NCOL] = {
    "group_PDB",     "id",          "type_symbol",       "label_atom_id",  "label_alt_id",
    "label_comp_id", "label_asym_id", "label_entity_id", "label_seq_id",   "pdbx_PDB_ins_code",
    "Cartn_x",       "Cartn_y",     "Cartn_z",           "occupancy",      "B_iso_or_equiv",
    "auth_seq_id",   "auth_comp_id", "auth_asym_id",     "auth_atom_id",   "pdbx_PDB_model_num"};

static int starts_ci(const char *s, const char *prefix) {
  for (; *prefix; s++, prefix++)
    if (tolower((unsigned char)*s) != *prefix) return 0;
  return 1;
}

/* A CIF token for the (validated, blank-free) name v; -1 when it cannot be written. */
static int cif_token(const char *v, char *out) {
  size_t k = strlen(v);
  if (k + 3 > FW) return -1;
  int quote = strchr("_#$'\"[];", v[0]) != NULL || !strcmp(v, ".") || !strcmp(v, "?") ||
              strchr(v, '\'') || strchr(v, '"') || starts_ci(v, "data_") || starts_ci(v, "loop_") ||
              starts_ci(v, "save_") || starts_ci(v, "global_") || starts_ci(v, "stop_");
  if (!quote) {
    memcpy(out, v, k + 1);
    return 0;
  }
  char q = strchr(v, '"') ? '\'' : '"';
  if (strchr(v, q)) return -1; /* both quote characters */
  out[0] = q;
  memcpy(out + 1, v, k);
  out[k + 1] = q;
  out[k + 2] = '\0';
  return 0;
}

static void upper_copy(const char *v, char *out, size_t cap) {
  size_t i = 0;
  for (; v[i] && i + 1 < cap; i++) out[i] = (char)toupper((unsigned char)v[i]);
  out[i] = '\0';
}

typedef struct {
  int *entity;  /* per atom */
  int *seq;     /* per atom label_seq_id (0 = '.') */
  int n_entity;
  int *entity_polymer; /* per entity (1-based index) */
} cif_ids;

static int same_residue(const px_structure *s, int a, int b) {
  return !strcmp(s->chain_id[a], s->chain_id[b]) && s->res_seq[a] == s->res_seq[b] &&
         !strcmp(s->res_name[a], s->res_name[b]);
}

static int cif_ids_make(const px_structure *s, cif_ids *ids) {
  const int N = s->n_atom;
  memset(ids, 0, sizeof *ids);
  ids->entity = malloc(sizeof(int) * (size_t)(N + 1));
  ids->seq = malloc(sizeof(int) * (size_t)(N + 1));
  ids->entity_polymer = calloc((size_t)N + 2, sizeof(int));
  if (!ids->entity || !ids->seq || !ids->entity_polymer) return px_fail(PX_ERR_NOMEM, "out of memory");
  /* Chains in order of appearance give entity ids when the caller has none. */
  int max_entity = 0;
  for (int i = 0; i < N; i++) {
    int e;
    if (s->entity_id) {
      e = s->entity_id[i];
      if (e < 1 || e > N + 1)
        return px_fail(PX_ERR_INPUT, "structure: atom %d: entity id %d outside [1, %d]", i + 1, e,
                       N + 1);
    } else {
      e = 0;
      for (int j = 0; j < i; j++)
        if (!strcmp(s->chain_id[j], s->chain_id[i])) {
          e = ids->entity[j];
          break;
        }
      if (!e) e = max_entity + 1;
    }
    ids->entity[i] = e;
    if (e > max_entity) max_entity = e;
    if (!(s->hetatm && s->hetatm[i])) ids->entity_polymer[e] = 1;
    /* label_seq_id: residue ordinal within the chain. */
    if (s->hetatm && s->hetatm[i]) {
      ids->seq[i] = 0;
    } else if (i > 0 && !strcmp(s->chain_id[i - 1], s->chain_id[i])) {
      int prev = ids->seq[i - 1];
      if (!prev) { /* after a HETATM run of the same chain: count residues before it */
        for (int j = i - 1; j >= 0 && !strcmp(s->chain_id[j], s->chain_id[i]); j--)
          if (ids->seq[j]) {
            prev = ids->seq[j] + 1;
            break;
          }
        ids->seq[i] = prev ? prev : 1;
      } else {
        ids->seq[i] = same_residue(s, i - 1, i) ? prev : prev + 1;
      }
    } else {
      ids->seq[i] = 1;
    }
  }
  ids->n_entity = max_entity;
  return PX_OK;
}

static void cif_ids_free(cif_ids *ids) {
  free(ids->entity);
  free(ids->seq);
  free(ids->entity_polymer);
}

static int cif_row(const px_structure *s, const cif_ids *ids, int i, char f[NCOL][FW]) {
  const float *x = s->xyz + (size_t)i * 3;
  char el[16];
  upper_copy(s->element[i], el, sizeof el);
  snprintf(f[0], FW, "%s", s->hetatm && s->hetatm[i] ? "HETATM" : "ATOM");
  snprintf(f[1], FW, "%d", i + 1);
  if (cif_token(el, f[2]) || cif_token(s->atom_name[i], f[3]) ||
      cif_token(s->res_name[i], f[5]) || cif_token(s->chain_id[i], f[6]))
    return px_fail(PX_ERR_INPUT, "structure: atom %d: a name cannot be written as a CIF value", i + 1);
  snprintf(f[4], FW, ".");
  snprintf(f[7], FW, "%d", ids->entity[i]);
  if (ids->seq[i]) snprintf(f[8], FW, "%d", ids->seq[i]);
  else snprintf(f[8], FW, ".");
  snprintf(f[9], FW, "?");
  for (int c = 0; c < 3; c++) {
    float v = x[c];
    if (v == 0.0f) v = 0.0f; /* no "-0.000" for an exact zero */
    snprintf(f[10 + c], FW, "%.3f", (double)v);
    if (!strcmp(f[10 + c], "-0.000")) snprintf(f[10 + c], FW, "0.000");
  }
  snprintf(f[13], FW, "1.00");
  snprintf(f[14], FW, "%.2f", s->b_factor ? (double)s->b_factor[i] : 0.0);
  snprintf(f[15], FW, "%d", s->res_seq[i]);
  memcpy(f[16], f[5], FW);
  memcpy(f[17], f[6], FW);
  memcpy(f[18], f[3], FW);
  snprintf(f[19], FW, "1");
  return PX_OK;
}

static void sanitize_block_name(const char *in, char *out, size_t cap) {
  size_t i = 0;
  if (!in || !*in) in = "pxdiff";
  for (; in[i] && i + 1 < cap; i++) {
    unsigned char c = (unsigned char)in[i];
    out[i] = (char)(isalnum(c) || c == '_' || c == '.' || c == '-' ? c : '_');
  }
  out[i] = '\0';
}

int px_structure_cif(const px_structure *s, const char *data_name, const char *const *comments,
                     int n_comment, const char *trailer, char **out, size_t *len) {
  if (!out) return px_fail(PX_ERR_INPUT, "px_structure_cif: NULL output");
  *out = NULL;
  int rc = check_common(s);
  if (rc) return rc;
  cif_ids ids;
  rc = cif_ids_make(s, &ids);
  if (rc) {
    cif_ids_free(&ids);
    return rc;
  }
  char(*f)[FW] = malloc(sizeof(char[NCOL][FW]));
  size_t width[NCOL];
  for (int c = 0; c < NCOL; c++) width[c] = 1;
  if (!f) {
    cif_ids_free(&ids);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < s->n_atom && !rc; i++) {
    rc = cif_row(s, &ids, i, f);
    for (int c = 0; c < NCOL && !rc; c++)
      if (strlen(f[c]) > width[c]) width[c] = strlen(f[c]);
  }
  px_strbuf b = {0};
  char name[128];
  sanitize_block_name(data_name, name, sizeof name);
  if (!rc) {
    px_sb_printf(&b, "data_%s\n#\n_entry.id %s\n#\n", name, name);
    for (int k = 0; k < n_comment; k++) {
      px_sb_str(&b, "# ");
      /* a comment ends at the line end: keep it on one line */
      for (const char *c = comments[k]; c && *c; c++) {
        char ch[2] = {*c == '\n' || *c == '\r' ? ' ' : *c, 0};
        px_sb_str(&b, ch);
      }
      px_sb_str(&b, "\n");
    }
    if (n_comment) px_sb_str(&b, "#\n");
    px_sb_str(&b, "loop_\n_entity.id\n_entity.type\n");
    for (int e = 1; e <= ids.n_entity; e++) {
      int used = 0;
      for (int i = 0; i < s->n_atom && !used; i++) used = ids.entity[i] == e;
      if (used) px_sb_printf(&b, "%d %s\n", e, ids.entity_polymer[e] ? "polymer" : "non-polymer");
    }
    px_sb_str(&b, "#\nloop_\n");
    for (int c = 0; c < NCOL; c++) px_sb_printf(&b, "_atom_site.%s\n", cif_cols[c]);
    for (int i = 0; i < s->n_atom && !b.oom; i++) {
      cif_row(s, &ids, i, f);
      for (int c = 0; c < NCOL; c++) {
        px_sb_str(&b, f[c]);
        if (c + 1 < NCOL) px_sb_pad(&b, width[c] - strlen(f[c]) + 1);
      }
      px_sb_str(&b, "\n");
    }
    px_sb_str(&b, "#\n");
    if (trailer) px_sb_printf(&b, "# %s\n", trailer);
    rc = sb_finish(&b, out, len);
  }
  free(f);
  cif_ids_free(&ids);
  return rc;
}

/* -------------------------------------------------------------------- PDB -- */

int px_structure_pdb(const px_structure *s, const char *const *comments, int n_comment, char **out,
                     size_t *len) {
  if (!out) return px_fail(PX_ERR_INPUT, "px_structure_pdb: NULL output");
  *out = NULL;
  int rc = check_common(s);
  if (rc) return rc;
  if (s->n_atom + 64 > 99999)
    return px_fail(PX_ERR_INPUT, "structure: %d atoms do not fit the PDB format (mmCIF has no limit)",
                   s->n_atom);
  for (int i = 0; i < s->n_atom; i++) {
    const char *bad = NULL;
    if (strlen(s->chain_id[i]) > 1) bad = "chain id longer than 1 character";
    else if (strlen(s->atom_name[i]) > 4) bad = "atom name longer than 4 characters";
    else if (strlen(s->res_name[i]) > 3) bad = "residue name longer than 3 characters";
    else if (strlen(s->element[i]) > 2) bad = "element longer than 2 characters";
    else if (s->res_seq[i] < -999 || s->res_seq[i] > 9999) bad = "residue number outside [-999, 9999]";
    for (int c = 0; c < 3 && !bad; c++) {
      float v = s->xyz[(size_t)i * 3 + c];
      if (!(v > -999.9995f && v < 9999.9995f)) bad = "coordinate outside [-999.999, 9999.999]";
    }
    if (!bad && s->b_factor && !(s->b_factor[i] > -99.995f && s->b_factor[i] < 999.995f))
      bad = "B-factor outside [-99.99, 999.99]";
    if (bad)
      return px_fail(PX_ERR_INPUT, "structure: atom %d does not fit the PDB format: %s (mmCIF has no such limit)",
                     i + 1, bad);
  }
  px_strbuf b = {0};
  for (int k = 0; k < n_comment; k++) {
    px_sb_str(&b, "REMARK   1 ");
    int col = 0;
    for (const char *c = comments[k]; c && *c && col < 68; c++, col++) {
      char ch[2] = {(unsigned char)*c < ' ' || (unsigned char)*c >= 127 ? ' ' : *c, 0};
      px_sb_str(&b, ch);
    }
    px_sb_str(&b, "\n");
  }
  int serial = 0;
  for (int i = 0; i < s->n_atom && !b.oom; i++) {
    const float *x = s->xyz + (size_t)i * 3;
    char el[4], name[8];
    upper_copy(s->element[i], el, sizeof el);
    if (strlen(s->atom_name[i]) < 4 && strlen(el) == 1) snprintf(name, sizeof name, " %-3s", s->atom_name[i]);
    else snprintf(name, sizeof name, "%-4s", s->atom_name[i]);
    double xyz[3];
    for (int c = 0; c < 3; c++) {
      xyz[c] = x[c];
      if (fabs(xyz[c]) < 0.0005) xyz[c] = 0.0; /* no "-0.000" */
    }
    serial++;
    px_sb_printf(&b, "%-6s%5d %-4s%c%3s %c%4d%c   %8.3f%8.3f%8.3f%6.2f%6.2f          %2s\n",
              s->hetatm && s->hetatm[i] ? "HETATM" : "ATOM", serial, name, ' ', s->res_name[i],
              s->chain_id[i][0], s->res_seq[i], ' ', xyz[0], xyz[1], xyz[2], 1.0,
              s->b_factor ? (double)s->b_factor[i] : 0.0, el);
    /* TER after the last ATOM of a chain: next atom in another chain, a HETATM, or none */
    int last_of_chain = i + 1 == s->n_atom || strcmp(s->chain_id[i + 1], s->chain_id[i]) != 0 ||
                        (s->hetatm && s->hetatm[i + 1]);
    if (last_of_chain && !(s->hetatm && s->hetatm[i])) {
      serial++;
      px_sb_printf(&b, "TER   %5d      %3s %c%4d\n", serial, s->res_name[i], s->chain_id[i][0], s->res_seq[i]);
    }
  }
  px_sb_str(&b, "END\n");
  return sb_finish(&b, out, len);
}

/* ------------------------------------------------------------------ files -- */

int px_write_file_atomic_msg(const char *path, const void *buf, size_t n) {
  errno = 0;
  if (px_file_write_atomic(path, buf, n) != 0) {
    int e = errno;
    return px_fail(PX_ERR_IO, "cannot write %s: %s", path, e ? strerror(e) : "write failed");
  }
  return PX_OK;
}

int px_structure_write_cif(const char *path, const px_structure *s, const char *data_name,
                           const char *const *comments, int n_comment, const char *trailer) {
  char *text = NULL;
  size_t len = 0;
  int rc = px_structure_cif(s, data_name, comments, n_comment, trailer, &text, &len);
  if (!rc) rc = px_write_file_atomic_msg(path, text, len);
  free(text);
  return rc;
}

int px_structure_write_pdb(const char *path, const px_structure *s, const char *const *comments,
                           int n_comment) {
  char *text = NULL;
  size_t len = 0;
  int rc = px_structure_pdb(s, comments, n_comment, &text, &len);
  if (!rc) rc = px_write_file_atomic_msg(path, text, len);
  free(text);
  return rc;
}

int px_structure_file_last_line(const char *path, char *buf, size_t cap) {
  if (!path || !buf || cap < 2) return -1;
  int fd = px_file_open_read(path);
  if (fd < 0) return -1;
  int64_t size = px_file_size(fd);
  int rc = -1;
  if (size >= 1) {
    /* up to cap bytes before the final newline, plus that newline */
    size_t want = (size_t)size < cap + 1 ? (size_t)size : cap + 1;
    char *tmp = malloc(want);
    if (tmp && px_file_pread(fd, tmp, want, (uint64_t)size - want) == 0 && tmp[want - 1] == '\n') {
      size_t end = want - 1, start = end;
      while (start > 0 && tmp[start - 1] != '\n') start--;
      if ((start > 0 || want == (size_t)size) && end - start < cap) {
        memcpy(buf, tmp + start, end - start);
        buf[end - start] = '\0';
        rc = 0;
      }
    }
    free(tmp);
  }
  px_file_close(fd);
  return rc;
}

int px_structure_file_has_trailer(const char *path, const char *line) {
  if (!path || !line) return 0;
  size_t k = strlen(line);
  char *buf = malloc(k + 2);
  int ok = buf && px_structure_file_last_line(path, buf, k + 2) == 0 && !strcmp(buf, line);
  free(buf);
  return ok;
}
