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

/* ----------------------------------------------- PXDesign's output mmCIF -- */

/* The same search as f32_shortest (below) in exact double arithmetic, for 1e-3 <= |v| < 1e7
 * (every coordinate of a design): 1 when it filled d and *e10, 0 to leave v to f32_shortest.
 * Why: f32_shortest's printf / strtof / strtod calls took ~4.5 us per value, 13 ms per CIF of
 * 1000 atoms, and the GPU waits while a unit's files are written.
 * Exactness: with k = p - 1 - E >= 0 digits after the point (|k| <= 11 here), |v| 10^k and
 * the rounding-interval ends h 10^k (h: midpoints to v's float32 neighbours, 25 bits) need at
 * most 25 + log2(5^11) < 53 bits, so they are exact doubles and the p-digit integer m =
 * rint(|v| 10^k) is the correctly rounded one (ties to even, as printf). With k < 0 (p digits
 * above the point), m = rint(|v| / 10^-k): a correctly rounded quotient of a 24-bit value
 * cannot land on an integer or a half it does not equal, so rint is still exact, and
 * m 10^-k < 1e7 is an exact double. A decimal reads back to v when it lies strictly inside
 * the rounding interval, or on an end when v's last mantissa bit is 0 (ties to even; in this
 * range no end of the interval has as few digits as v's shortest form, so the rule never
 * decides, but it is kept as the reference's). */
static int f32_shortest_fast(float v, char *d, int *e10) {
  static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
  const float fa = fabsf(v);
  const double a = fa;
  if (!(a >= 1e-3 && a < 1e7)) return 0;
  uint32_t bits;
  memcpy(&bits, &fa, sizeof bits);
  const int even = !(bits & 1u);
  const double lo = (a + (double)nextafterf(fa, 0.0f)) / 2, hi = (a + (double)nextafterf(fa, INFINITY)) / 2;
  int E = -3; /* 10^E <= a < 10^(E+1); a * 10^3 is exact */
  while (E < 6 && (E + 1 >= 0 ? a >= p10[E + 1] : a * p10[-(E + 1)] >= 1.0)) E++;
  for (int p = 1; p <= 9; p++) {
    int k = p - 1 - E;
    double m = k >= 0 ? rint(a * p10[k]) : rint(a / p10[-k]);
    if (m >= p10[p]) { /* rounded up to 10^p: printf writes 1.0...e(E+1), one digit higher */
      m = p10[p - 1];
      k--;
    }
    double best = -1, best_err = 0;
    for (int c = 0; c < 3; c++) {
      const double mm = m + (c == 0 ? 0 : c == 1 ? -1 : 1);
      if (mm <= 0) continue;
      /* mm 10^-k against the interval and v, scaled by 10^k where k >= 0 (all exact) */
      const double x = k >= 0 ? mm : mm * p10[-k], sc = k >= 0 ? p10[k] : 1.0;
      const double l = lo * sc, h = hi * sc;
      if (!(x > l && x < h) && !(even && (x == l || x == h))) continue;
      const double err = fabs(x - a * sc);
      if (best < 0 || err < best_err) {
        best = mm;
        best_err = err;
      }
      if (c == 0) break;
    }
    if (best >= 0) {
      int n = snprintf(d, 24, "%.0f", best);
      *e10 = -k + n - 1;
      while (n > 1 && d[n - 1] == '0') d[--n] = 0;
      return 1;
    }
  }
  return 0;
}

/* Shortest digits of v (|v| > 0, finite) that read back to v as a float32: the digit string
 * into d (no sign, no point), the decimal exponent of its first digit returned in *e10.
 * Among the shortest candidates the one nearest v, as numpy's Dragon4 picks it. */
static void f32_shortest(float v, char *d, int *e10) {
  char tmp[48];
  double x = fabs((double)v);
  for (int p = 1; p <= 9; p++) {
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
    char *ep = strchr(tmp, 'e');
    int s = atoi(ep + 1) - (p - 1); /* x ~ m * 10^s with m of p digits */
    long long m = 0;
    for (char *c = tmp; c < ep; c++)
      if (*c >= '0' && *c <= '9') m = m * 10 + (*c - '0');
    /* The correctly rounded m and its two neighbours: near a power of two the rounding
     * interval is lopsided and the nearest p-digit decimal may fall outside it while a
     * neighbour falls inside. Any p-digit decimal inside lies among these three. */
    long long best = -1;
    double best_err = 0;
    for (int k = 0; k < 3; k++) {
      long long mm = m + (k == 0 ? 0 : k == 1 ? -1 : 1);
      if (mm <= 0) continue;
      char cand[48];
      snprintf(cand, sizeof cand, "%lldE%d", mm, s);
      if (strtof(cand, NULL) != (float)x) continue;
      double err = fabs(strtod(cand, NULL) - x);
      if (best < 0 || err < best_err) {
        best = mm;
        best_err = err;
      }
      /* the correctly rounded one (printf breaks exact ties to even, as Dragon4 does) is
       * the nearest: take it when it reads back */
      if (k == 0) break;
    }
    if (best >= 0) {
      int n = snprintf(d, 24, "%lld", best);
      *e10 = s + n - 1;
      while (n > 1 && d[n - 1] == '0') d[--n] = 0; /* 10 * 10^s is "1" at s + 1 */
      return;
    }
  }
  /* not reached: 9 significant digits identify every float32 */
  snprintf(tmp, sizeof tmp, "%.8e", x);
  char *ep = strchr(tmp, 'e');
  *e10 = atoi(ep + 1);
  size_t n = 0;
  for (char *c = tmp; c < ep; c++)
    if (*c >= '0' && *c <= '9') d[n++] = *c;
  d[n] = 0;
}

static int fmt_float32(float v, char *buf, int fast) {
  if (isnan(v)) return sprintf(buf, "nan");
  if (isinf(v)) return sprintf(buf, v < 0 ? "-inf" : "inf");
  if (v == 0) return sprintf(buf, signbit(v) ? "-0.0" : "0.0");
  char d[24];
  int e;
  if (!fast || !f32_shortest_fast(v, d, &e)) f32_shortest(v, d, &e);
  int n = (int)strlen(d), k = 0;
  if (v < 0) buf[k++] = '-';
  double a = fabs((double)v);
  if (a >= 1e-4 && a < 1e16) {
    if (e >= 0) {
      for (int i = 0; i <= e; i++) buf[k++] = i < n ? d[i] : '0';
      buf[k++] = '.';
      if (n > e + 1)
        for (int i = e + 1; i < n; i++) buf[k++] = d[i];
      else
        buf[k++] = '0';
    } else {
      buf[k++] = '0';
      buf[k++] = '.';
      for (int i = 0; i < -e - 1; i++) buf[k++] = '0';
      for (int i = 0; i < n; i++) buf[k++] = d[i];
    }
    buf[k] = 0;
    return k;
  }
  buf[k++] = d[0];
  if (n > 1) {
    buf[k++] = '.';
    for (int i = 1; i < n; i++) buf[k++] = d[i];
  }
  k += sprintf(buf + k, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
  return k;
}

int px_fmt_float32(float v, char *buf) { return fmt_float32(v, buf, 1); }

int px_fmt_float32_reference(float v, char *buf) { return fmt_float32(v, buf, 0); }

/* One column of a category: escaped values, NUL-separated, and the widest in characters. */
typedef struct {
  px_strbuf text;
  size_t *off;
  int n, cap;
  size_t width;
} pxd_col;

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* biotite's pdbx _escape: the quoting of a value (the multi-line form is refused earlier). */
static void pxd_add(pxd_col *c, const char *v) {
  if (c->n == c->cap) {
    int nc = c->cap ? c->cap * 2 : 64;
    size_t *no = realloc(c->off, (size_t)nc * sizeof *no);
    if (!no) {
      c->text.oom = 1;
      return;
    }
    c->off = no;
    c->cap = nc;
  }
  size_t start = c->text.n;
  if (!v[0]) px_sb_str(&c->text, "''");
  else if (v[0] == '_') {
    px_sb_str(&c->text, "'");
    px_sb_str(&c->text, v);
    px_sb_str(&c->text, "'");
  } else if (strchr(v, '\'')) {
    px_sb_str(&c->text, "\"");
    px_sb_str(&c->text, v);
    px_sb_str(&c->text, "\"");
  } else if (strchr(v, '"') || strchr(v, ' ') || strchr(v, '\t')) {
    px_sb_str(&c->text, "'");
    px_sb_str(&c->text, v);
    px_sb_str(&c->text, "'");
  } else
    px_sb_str(&c->text, v);
  px_sb_put(&c->text, "", 1); /* the separating NUL */
  if (c->text.oom) return;
  c->off[c->n++] = start;
  size_t w = utf8_chars(c->text.p + start);
  if (w > c->width) c->width = w;
}

static const char *pxd_get(const pxd_col *c, int i) { return c->text.p + c->off[i]; }

static void pxd_cols_free(pxd_col *c, int n) {
  for (int j = 0; j < n; j++) {
    free(c[j].text.p);
    free(c[j].off);
  }
}

/* biotite CIFCategory.serialize, then CIFBlock's "#" line. */
static void pxd_category(px_strbuf *b, const char *cat, const char *const *keys, pxd_col *cols, int ncol) {
  int nrow = cols[0].n;
  char key[96];
  if (nrow == 1) {
    size_t maxlen = 0;
    for (int j = 0; j < ncol; j++) {
      size_t l = strlen(cat) + strlen(keys[j]) + 2;
      if (l > maxlen) maxlen = l;
    }
    for (int j = 0; j < ncol; j++) {
      snprintf(key, sizeof key, "_%s.%s", cat, keys[j]);
      px_sb_str(b, key);
      px_sb_pad(b, maxlen + 3 - strlen(key));
      px_sb_str(b, pxd_get(&cols[j], 0));
      px_sb_str(b, "\n");
    }
  } else {
    px_sb_str(b, "loop_\n");
    for (int j = 0; j < ncol; j++) px_sb_printf(b, "_%s.%s \n", cat, keys[j]);
    for (int i = 0; i < nrow; i++) {
      for (int j = 0; j < ncol; j++) {
        const char *v = pxd_get(&cols[j], i);
        px_sb_str(b, v);
        if (j + 1 < ncol) px_sb_pad(b, cols[j].width + 1 - utf8_chars(v));
      }
      px_sb_str(b, "\n");
    }
  }
  px_sb_str(b, "#\n");
}

static int str_cmp_p(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int pxd_check(const px_pxd_structure *s) {
  if (!s || s->n_atom < 1 || !s->xyz || !s->atom_name || !s->element || !s->res_name || !s->chain_id ||
      !s->entity_id || !s->res_id || (s->n_bond > 0 && !s->bond) || s->n_bond < 0)
    return px_fail(PX_ERR_INPUT, "design structure: no atoms or a NULL array");
  const char *const *fields[6] = {s->atom_name, s->element, s->res_name, s->chain_id, s->entity_id, s->strand_id};
  static const char *const what[6] = {"atom name", "element", "residue name", "chain id", "entity id", "strand id"};
  for (int i = 0; i < s->n_atom; i++) {
    for (int f = 0; f < 6; f++) {
      if (!fields[f]) continue;
      const char *v = fields[f][i];
      if (!v) return px_fail(PX_ERR_INPUT, "design structure: atom %d has no %s", i + 1, what[f]);
      if (strchr(v, '\n') || strchr(v, '\r') || (strchr(v, '\'') && strchr(v, '"')) ||
          (f != 1 && f != 0 && !v[0])) {
        char sh[40];
        px_shown_name(sh, sizeof sh, v);
        return px_fail(PX_ERR_INPUT, "design structure: atom %d: %s '%s' cannot be written to mmCIF", i + 1,
                       what[f], sh);
      }
    }
    for (int k = 0; k < 3; k++)
      if (!isfinite(s->xyz[3 * i + k]))
        return px_fail(PX_ERR_INPUT, "design structure: atom %d (%s %s %d %s) has a non-finite coordinate", i + 1,
                       s->chain_id[i], s->res_name[i], s->res_id[i], s->atom_name[i]);
    /* a chain is one run of atoms (the bonds are grouped by chain) */
    if (i > 0 && strcmp(s->chain_id[i], s->chain_id[i - 1]))
      for (int j = 0; j < i; j++)
        if (!strcmp(s->chain_id[j], s->chain_id[i])) {
          char sh[40];
          px_shown_name(sh, sizeof sh, s->chain_id[i]);
          return px_fail(PX_ERR_INPUT, "design structure: chain %s is not one run of atoms (atom %d)", sh, i + 1);
        }
  }
  for (int k = 0; k < s->n_bond; k++) {
    const px_pxd_bond *bd = &s->bond[k];
    if (bd->a < 0 || bd->b < 0 || bd->a >= s->n_atom || bd->b >= s->n_atom || bd->order < 0 || bd->order > 4)
      return px_fail(PX_ERR_INPUT, "design structure: bond %d: atom index or order out of range", k + 1);
    if (strcmp(s->chain_id[bd->a], s->chain_id[bd->b]))
      return px_fail(PX_ERR_INPUT, "design structure: bond %d joins chains %s and %s (upstream keeps none)", k + 1,
                     s->chain_id[bd->a], s->chain_id[bd->b]);
    if (s->res_id[bd->a] == s->res_id[bd->b] && !strcmp(s->res_name[bd->a], s->res_name[bd->b]))
      return px_fail(PX_ERR_INPUT, "design structure: bond %d lies within one residue", k + 1);
  }
  return PX_OK;
}

/* biotite's residue starts: chain, number or name changes. */
static int pxd_new_res(const px_pxd_structure *s, int i) {
  return i == 0 || strcmp(s->chain_id[i], s->chain_id[i - 1]) || s->res_id[i] != s->res_id[i - 1] ||
         strcmp(s->res_name[i], s->res_name[i - 1]);
}

static const char *const pxd_order_name[5] = {"?", "sing", "doub", "trip", "quad"};

int px_pxd_cif(const px_pxd_structure *s, const char *task_name, int sample, char **out, size_t *len) {
  int r = pxd_check(s);
  if (r) return r;
  if (!task_name || strchr(task_name, '\n') || strchr(task_name, '\r') ||
      (strchr(task_name, '\'') && strchr(task_name, '"')))
    return px_fail(PX_ERR_INPUT, "design structure: the task name cannot be written to mmCIF");
  const int N = s->n_atom;
  const char *const *strand = s->strand_id ? s->strand_id : s->chain_id;
  px_strbuf b = {0};
  char num[40];

  /* data block: basename "<task>_sample_<i>.cif" with every ".cif" removed, + suffix */
  {
    px_strbuf nm = {0};
    px_sb_printf(&nm, "%s_sample_%d.cif", task_name, sample);
    if (nm.oom) return px_fail(PX_ERR_NOMEM, "out of memory writing a structure");
    px_sb_str(&b, "data_");
    for (const char *c = nm.p; *c;) {
      if (!strncmp(c, ".cif", 4)) {
        c += 4;
        continue;
      }
      px_sb_put(&b, c, 1);
      c++;
    }
    free(nm.p);
    px_sb_str(&b, "_predicted_by_protenix\n#\n");
  }

  pxd_col cols[21];
  memset(cols, 0, sizeof cols);
  /* _entry */
  pxd_add(&cols[0], task_name);
  static const char *const entry_keys[] = {"id"};
  if (!cols[0].text.oom) pxd_category(&b, "entry", entry_keys, cols, 1);
  pxd_cols_free(cols, 1);
  memset(cols, 0, sizeof cols);

  /* entities in order of appearance, then sorted as strings */
  const char **ent = malloc((size_t)N * sizeof *ent);
  const char **sorted = malloc((size_t)N * sizeof *sorted);
  int n_ent = 0;
  if (!ent || !sorted) {
    free((void *)ent);
    free((void *)sorted);
    free(b.p);
    return px_fail(PX_ERR_NOMEM, "out of memory writing a structure");
  }
  for (int i = 0; i < N; i++) {
    int seen = 0;
    for (int e = n_ent - 1; e >= 0 && !seen; e--) seen = !strcmp(ent[e], s->entity_id[i]);
    if (!seen) ent[n_ent++] = s->entity_id[i];
  }
  memcpy(sorted, ent, (size_t)n_ent * sizeof *sorted);
  qsort(sorted, (size_t)n_ent, sizeof *sorted, str_cmp_p);
  for (int e = 0; e < n_ent; e++) {
    pxd_add(&cols[0], sorted[e]);
    pxd_add(&cols[1], ".");
    pxd_add(&cols[2], "polymer");
  }
  static const char *const entity_keys[] = {"id", "pdbx_description", "type"};
  pxd_category(&b, "entity", entity_keys, cols, 3);
  for (int j = 0; j < 3; j++) b.oom |= cols[j].text.oom;
  pxd_cols_free(cols, 3);
  memset(cols, 0, sizeof cols);

  /* _entity_poly: strand ids = sorted distinct strand ids of the entity's atoms */
  const char **first_strand = calloc((size_t)n_ent, sizeof *first_strand);
  const char **tmp = malloc((size_t)N * sizeof *tmp);
  if (!first_strand || !tmp) b.oom = 1;
  for (int e = 0; e < n_ent && !b.oom; e++) {
    int nt = 0;
    for (int i = 0; i < N; i++) {
      if (strcmp(s->entity_id[i], ent[e])) continue;
      int seen = 0;
      for (int q = 0; q < nt && !seen; q++) seen = !strcmp(tmp[q], strand[i]);
      if (!seen) tmp[nt++] = strand[i];
    }
    qsort(tmp, (size_t)nt, sizeof *tmp, str_cmp_p);
    px_strbuf j = {0};
    for (int q = 0; q < nt; q++) {
      if (q) px_sb_str(&j, ",");
      px_sb_str(&j, tmp[q]);
    }
    first_strand[e] = tmp[0];
    pxd_add(&cols[0], ent[e]);
    pxd_add(&cols[1], j.oom ? "" : j.p);
    pxd_add(&cols[2], "polypeptide(L)");
    b.oom |= j.oom;
    free(j.p);
  }
  static const char *const poly_keys[] = {"entity_id", "pdbx_strand_id", "type"};
  if (!b.oom) pxd_category(&b, "entity_poly", poly_keys, cols, 3);
  for (int j = 0; j < 3; j++) b.oom |= cols[j].text.oom;
  pxd_cols_free(cols, 3);
  memset(cols, 0, sizeof cols);

  /* _entity_poly_seq: the residues of the first chain run of the entity's first strand
   * (biotite's chain starts: chain id change or residue number decrease) */
  for (int e = 0; e < n_ent && !b.oom; e++) {
    int prev = -1;
    for (int i = 0; i < N; i++) {
      if (strcmp(strand[i], first_strand[e])) continue;
      if (prev >= 0 && (strcmp(s->chain_id[i], s->chain_id[prev]) || s->res_id[i] < s->res_id[prev])) break;
      if (prev < 0 || strcmp(s->chain_id[i], s->chain_id[prev]) || s->res_id[i] != s->res_id[prev] ||
          strcmp(s->res_name[i], s->res_name[prev])) {
        pxd_add(&cols[0], s->entity_id[i]);
        pxd_add(&cols[1], s->hetero && s->hetero[i] ? "y" : "n");
        pxd_add(&cols[2], s->res_name[i]);
        snprintf(num, sizeof num, "%d", s->res_id[i]);
        pxd_add(&cols[3], num);
      }
      prev = i;
    }
  }
  static const char *const seq_keys[] = {"entity_id", "hetero", "mon_id", "num"};
  if (!b.oom && cols[0].n) pxd_category(&b, "entity_poly_seq", seq_keys, cols, 4);
  for (int j = 0; j < 4; j++) b.oom |= cols[j].text.oom;
  pxd_cols_free(cols, 4);
  memset(cols, 0, sizeof cols);
  free((void *)first_strand);
  free((void *)tmp);
  free((void *)ent);
  free((void *)sorted);

  /* _struct_conn, chain by chain: C-N bonds of consecutive residues, then extra bonds */
  int cap_pairs = N + s->n_bond + 1, n_pairs = 0;
  int *pa = malloc((size_t)cap_pairs * sizeof *pa), *pb = malloc((size_t)cap_pairs * sizeof *pb),
      *po = malloc((size_t)cap_pairs * sizeof *po);
  if (!pa || !pb || !po) b.oom = 1;
  for (int c0 = 0; c0 < N && !b.oom;) {
    int c1 = c0;
    while (c1 < N && !strcmp(s->chain_id[c1], s->chain_id[c0])) c1++;
    int first_pair = n_pairs;
    /* residues of the chain: [rs, re) */
    for (int rs = c0; rs < c1;) {
      int re = rs + 1;
      while (re < c1 && !pxd_new_res(s, re)) re++;
      if (re >= c1) break;
      int ne = re + 1;
      while (ne < c1 && !pxd_new_res(s, ne)) ne++;
      if (s->res_id[re] - s->res_id[rs] <= 1) {
        int ci = -1, ni = -1;
        for (int i = rs; i < re && ci < 0; i++)
          if (!strcmp(s->atom_name[i], "C")) ci = i;
        for (int i = re; i < ne && ni < 0; i++)
          if (!strcmp(s->atom_name[i], "N")) ni = i;
        if (ci >= 0 && ni >= 0) {
          pa[n_pairs] = ci < ni ? ci : ni;
          pb[n_pairs] = ci < ni ? ni : ci;
          po[n_pairs++] = 1;
        }
      }
      rs = re;
    }
    for (int k = 0; k < s->n_bond; k++) {
      const px_pxd_bond *bd = &s->bond[k];
      if (bd->a < c0 || bd->a >= c1) continue;
      int a = bd->a < bd->b ? bd->a : bd->b, bb = bd->a < bd->b ? bd->b : bd->a, dup = 0;
      for (int q = first_pair; q < n_pairs && !dup; q++) dup = pa[q] == a && pb[q] == bb;
      if (dup) continue;
      pa[n_pairs] = a;
      pb[n_pairs] = bb;
      po[n_pairs++] = bd->order;
    }
    c0 = c1;
  }
  if (n_pairs > 0 && !b.oom) {
    for (int q = 0; q < n_pairs; q++) {
      snprintf(num, sizeof num, "%d", q + 1);
      pxd_add(&cols[0], num);
      pxd_add(&cols[1], "covale");
      pxd_add(&cols[2], pxd_order_name[po[q]]);
      pxd_add(&cols[3], s->chain_id[pa[q]]);
      pxd_add(&cols[4], s->chain_id[pb[q]]);
      pxd_add(&cols[5], s->res_name[pa[q]]);
      pxd_add(&cols[6], s->res_name[pb[q]]);
      snprintf(num, sizeof num, "%d", s->res_id[pa[q]]);
      pxd_add(&cols[7], num);
      snprintf(num, sizeof num, "%d", s->res_id[pb[q]]);
      pxd_add(&cols[8], num);
      pxd_add(&cols[9], s->atom_name[pa[q]]);
      pxd_add(&cols[10], s->atom_name[pb[q]]);
      pxd_add(&cols[11], ".");
      pxd_add(&cols[12], ".");
    }
    static const char *const conn_keys[] = {
        "id", "conn_type_id", "pdbx_value_order", "ptnr1_label_asym_id", "ptnr2_label_asym_id",
        "ptnr1_label_comp_id", "ptnr2_label_comp_id", "ptnr1_label_seq_id", "ptnr2_label_seq_id",
        "ptnr1_label_atom_id", "ptnr2_label_atom_id", "pdbx_ptnr1_PDB_ins_code", "pdbx_ptnr2_PDB_ins_code"};
    for (int j = 0; j < 13; j++) b.oom |= cols[j].text.oom;
    if (!b.oom) pxd_category(&b, "struct_conn", conn_keys, cols, 13);
    pxd_cols_free(cols, 13);
    memset(cols, 0, sizeof cols);
  }
  free(pa);
  free(pb);
  free(po);

  /* _atom_site */
  for (int i = 0; i < N && !b.oom; i++) {
    pxd_add(&cols[0], s->hetero && s->hetero[i] ? "HETATM" : "ATOM");
    pxd_add(&cols[1], s->element[i]);
    pxd_add(&cols[2], s->atom_name[i]);
    pxd_add(&cols[3], ".");
    pxd_add(&cols[4], s->res_name[i]);
    pxd_add(&cols[5], s->chain_id[i]);
    pxd_add(&cols[6], s->entity_id[i]);
    snprintf(num, sizeof num, "%d", s->res_id[i]);
    pxd_add(&cols[7], num);
    pxd_add(&cols[8], ".");
    pxd_add(&cols[9], num);
    pxd_add(&cols[10], s->res_name[i]);
    pxd_add(&cols[11], s->chain_id[i]);
    pxd_add(&cols[12], s->atom_name[i]);
    pxd_add(&cols[13], "0.0");
    pxd_add(&cols[14], "1.0");
    for (int k = 0; k < 3; k++) {
      px_fmt_float32(s->xyz[3 * i + k], num);
      pxd_add(&cols[15 + k], num);
    }
    pxd_add(&cols[18], "1");
    snprintf(num, sizeof num, "%d", i + 1);
    pxd_add(&cols[19], num);
  }
  static const char *const site_keys[] = {
      "group_PDB", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id", "label_asym_id",
      "label_entity_id", "label_seq_id", "pdbx_PDB_ins_code", "auth_seq_id", "auth_comp_id",
      "auth_asym_id", "auth_atom_id", "B_iso_or_equiv", "occupancy", "Cartn_x", "Cartn_y", "Cartn_z",
      "pdbx_PDB_model_num", "id"};
  for (int j = 0; j < 20; j++) b.oom |= cols[j].text.oom;
  if (!b.oom) pxd_category(&b, "atom_site", site_keys, cols, 20);
  pxd_cols_free(cols, 20);
  return sb_finish(&b, out, len);
}

int px_pxd_write_cif(const char *path, const px_pxd_structure *s, const char *task_name, int sample) {
  char *text;
  size_t n;
  int r = px_pxd_cif(s, task_name, sample, &text, &n);
  if (r) return r;
  r = px_write_file_atomic_msg(path, text, n);
  free(text);
  return r;
}
