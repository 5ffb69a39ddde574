/* PDB target reader (structure_in.h): the file as upstream's infer sees it, i.e. read by
 * biotite 1.0.1's PDBFile (first model, altloc "first" per residue, elements guessed from
 * atom names where the column is blank), converted by pxdesign's pdb_to_cif
 * (pxdesign/data/utils.py: chains split and relabelled, residues renumbered, one entity
 * per residue-name sequence) and read back as mmCIF (MSE -> MET, ARG, water and
 * hydrogens: the steps of cif_read.c). The author ids of every converted residue are kept
 * for px_sin_pdb_chain / px_sin_pdb_residue (pxdesign/utils/infer.py). */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/strbuf.h"
#include "io/structure_in_priv.h"

typedef struct {
  sin_raw r;
  int hetero;
  char alt;
  char auth_chain[2];
  int res_id; /* author resSeq */
  int line;
} patom;

/* Column c (0-based) of a line of length n, blank beyond its end (biotite pads to 80). */
static char col(const char *l, size_t n, size_t c) { return c < n ? l[c] : ' '; }

/* Columns [a, b) stripped of blanks into dst (cap bytes); returns its length. */
static size_t field(const char *l, size_t n, size_t a, size_t b, char *dst, size_t cap) {
  char tmp[16];
  size_t k = 0;
  for (size_t c = a; c < b && k < sizeof tmp; c++) tmp[k++] = col(l, n, c);
  size_t s = 0, e = k;
  while (s < e && isspace((unsigned char)tmp[s])) s++;
  while (e > s && isspace((unsigned char)tmp[e - 1])) e--;
  size_t m = e - s < cap - 1 ? e - s : cap - 1;
  memcpy(dst, tmp + s, m);
  dst[m] = 0;
  return m;
}

/* biotite's decode_hybrid36 for a resSeq: a decimal integer, else base-36 upper (A000 =
 * 10000) or lower case. Characters outside the alphabet are refused here. */
static int hybrid36(const char *s, int *out) {
  size_t n = strlen(s);
  if (n == 0) return -1;
  size_t i = 0;
  int neg = 0;
  if (s[0] == '+' || s[0] == '-') neg = s[i++] == '-';
  int dec = i < n;
  for (size_t j = i; j < n; j++) dec &= s[j] >= '0' && s[j] <= '9';
  if (dec) {
    long long x = 0;
    for (size_t j = i; j < n; j++) x = x * 10 + (s[j] - '0');
    *out = (int)(neg ? -x : x); /* at most 4 digits */
    return 0;
  }
  int upper = s[0] >= 'A' && s[0] <= 'Z', lower = s[0] >= 'a' && s[0] <= 'z';
  if (!upper && !lower) return -1;
  long long v = 0, p36 = 1, p10 = 1;
  for (size_t j = 0; j < n; j++) {
    char c = s[j];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (upper && c >= 'A' && c <= 'Z') d = c - 'A' + 10;
    else if (lower && c >= 'a' && c <= 'z') d = c - 'a' + 10;
    else return -1;
    v = v * 36 + d;
    if (j) p36 *= 36;
    p10 *= 10;
  }
  v = upper ? v - 10 * p36 + p10 : v + 16 * p36 + p10;
  if (v > INT_MAX) return -1;
  *out = (int)v;
  return 0;
}

static int parse_float(const char *s, float *out) {
  size_t n = strlen(s);
  int digit = 0;
  if (n == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c >= '0' && c <= '9') digit = 1;
    else if (c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E') return -1;
  }
  if (!digit) return -1;
  char *end;
  double d = strtod(s, &end);
  if (*end) return -1;
  float f = (float)d;
  if (!isfinite(f)) return -1;
  *out = f;
  return 0;
}

/* biotite's infer_elements for a blank element column: digits removed, upper case; C, N,
 * O, S, H by their first letter, else a two- then one-letter element symbol. */
static const char *const elements[] = {
    "H",  "HE", "LI", "BE", "B",  "C",  "N",  "O",  "F",  "NE", "NA", "MG", "AL", "SI", "P",
    "S",  "CL", "AR", "K",  "CA", "SC", "TI", "V",  "CR", "MN", "FE", "CO", "NI", "CU", "ZN",
    "GA", "GE", "AS", "SE", "BR", "KR", "RB", "SR", "Y",  "ZR", "NB", "MO", "TC", "RU", "RH",
    "PD", "AG", "CD", "IN", "SN", "SB", "TE", "I",  "XE", "CS", "BA", "LA", "CE", "PR", "ND",
    "PM", "SM", "EU", "GD", "TB", "DY", "HO", "ER", "TM", "YB", "LU", "HF", "TA", "W",  "RE",
    "OS", "IR", "PT", "AU", "HG", "TL", "PB", "BI", "PO", "AT", "RN", "FR", "RA", "AC", "TH",
    "PA", "U",  "NP", "PU", "AM", "CM", "BK", "CF", "ES", "FM", "MD", "NO", "LR", "RF", "DB",
    "SG", "BH", "HS", "MT", "DS", "RG", "CN", "NH", "FL", "MC", "LV", "TS", "OG", NULL};

static int is_element(const char *s) {
  for (int i = 0; elements[i]; i++)
    if (!strcmp(elements[i], s)) return 1;
  return 0;
}

static void guess_element(const char *name, char *dst) {
  char e[PX_SIN_NAME];
  size_t k = 0;
  for (; *name && k < sizeof e - 1; name++)
    if (!isdigit((unsigned char)*name)) e[k++] = (char)toupper((unsigned char)*name);
  e[k] = 0;
  dst[0] = 0;
  if (!k) return;
  if (strchr("CNOSH", e[0])) {
    dst[0] = e[0];
    dst[1] = 0;
    return;
  }
  char two[3] = {e[0], e[1], 0}, one[2] = {e[0], 0};
  if (k >= 2 && is_element(two)) strcpy(dst, two);
  else if (is_element(one)) strcpy(dst, one);
}

static const char *const pro_std[] = {"ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY",
                                      "HIS", "ILE", "LEU", "LYS", "MET", "PHE", "PRO", "SER",
                                      "THR", "TRP", "TYR", "VAL", "UNK", "xpb", "xpa", NULL};
static const char *const dna_std[] = {"DA", "DG", "DC", "DT", "DN", NULL};
static const char *const rna_std[] = {"A", "G", "C", "U", "N", "rbb", "raa", NULL};

static int in_list(const char *const *l, const char *s) {
  for (; *l; l++)
    if (!strcmp(*l, s)) return 1;
  return 0;
}

/* int_to_letters: 1 -> A, 26 -> Z, 27 -> AA (pxdesign/data/utils.py). */
static int chain_letters(int k, char dst[PX_SIN_NAME]) {
  char b[PX_SIN_NAME];
  int n = 0;
  while (k > 0) {
    if (n == PX_SIN_NAME - 1) return -1;
    k -= 1;
    b[n++] = (char)('A' + k % 26);
    k /= 26;
  }
  for (int i = 0; i < n; i++) dst[i] = b[n - 1 - i];
  dst[n] = 0;
  return 0;
}

static int new_residue(const patom *a, const patom *b) {
  return strcmp(a->auth_chain, b->auth_chain) || a->res_id != b->res_id || a->r.ins != b->r.ins ||
         strcmp(a->r.res, b->r.res);
}

typedef struct {
  uint64_t hash;
  size_t off, len; /* its residue-name string in the names buffer */
} seqkey;

typedef struct {
  int rix;
  const px_sin_pdb_res *r;
} rsort;

static int rsort_cmp(const void *x, const void *y) {
  const rsort *a = x, *b = y;
  int c = strcmp(a->r->auth_chain, b->r->auth_chain);
  if (c) return c;
  if (a->r->auth_seq != b->r->auth_seq) return a->r->auth_seq < b->r->auth_seq ? -1 : 1;
  return (a->rix > b->rix) - (a->rix < b->rix);
}

int px_pdb_parse(const char *text, size_t len, const char *name, px_structure_in **out) {
  char f[96];
  px_shown_name(f, sizeof f, name);
  *out = NULL;
  /* ---- lines of the first model ---- */
  size_t first = 0, stop = len; /* byte range of model 1 */
  int n_model = 0, n_lines = 0;
  size_t n_atom_lines = 0;
  for (size_t p = 0; p < len;) {
    size_t e = p;
    while (e < len && text[e] != '\n' && text[e] != '\r') e++;
    if (++n_lines == INT_MAX) return px_fail(PX_ERR_FORMAT, "%s: too many lines", f);
    if (e - p >= 5 && !memcmp(text + p, "MODEL", 5)) {
      if (n_model == 0) first = p;
      else if (n_model == 1) stop = p;
      n_model++;
    }
    if ((e - p >= 4 && !memcmp(text + p, "ATOM", 4)) || (e - p >= 6 && !memcmp(text + p, "HETATM", 6)))
      n_atom_lines++;
    p = e + (e + 1 < len && text[e] == '\r' && text[e + 1] == '\n' ? 2 : 1);
  }
  if (n_atom_lines == 0) return px_fail(PX_ERR_FORMAT, "%s: no ATOM or HETATM records (neither PDB nor mmCIF)", f);
  if (n_atom_lines > SIN_MAX_ATOMS)
    return px_fail(PX_ERR_FORMAT, "%s: %zu atom records (more than %d)", f, n_atom_lines, SIN_MAX_ATOMS);
  patom *a = malloc(sizeof *a * n_atom_lines);
  if (!a) return px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
  int n = 0, line = 0, rc = 0;
  for (size_t p = 0; p < len && !rc;) {
    size_t e = p;
    while (e < len && text[e] != '\n' && text[e] != '\r') e++;
    line++;
    const char *l = text + p;
    size_t ln = e - p;
    size_t next = e + (e + 1 < len && text[e] == '\r' && text[e + 1] == '\n' ? 2 : 1);
    int is_atom = (ln >= 4 && !memcmp(l, "ATOM", 4)) || (ln >= 6 && !memcmp(l, "HETATM", 6));
    if (!is_atom || p < first || p >= stop) {
      p = next;
      continue;
    }
    p = next;
    for (size_t c = 0; c < ln; c++) {
      unsigned char ch = (unsigned char)l[c];
      if ((ch < 0x20 && ch != '\t') || ch >= 0x7f) {
        rc = px_fail(PX_ERR_FORMAT, "%s: line %d: control or non-ASCII character in an atom record",
                     f, line);
        break;
      }
    }
    if (rc) break;
    patom *x = &a[n];
    memset(x, 0, sizeof *x);
    x->line = line;
    x->r.rix = -1;
    x->hetero = ln >= 6 && !memcmp(l, "HETATM", 6);
    char b[16];
    field(l, ln, 12, 16, x->r.atom, PX_SIN_NAME);
    x->alt = col(l, ln, 16);
    field(l, ln, 17, 20, x->r.res, PX_SIN_NAME);
    field(l, ln, 21, 22, x->auth_chain, sizeof x->auth_chain);
    field(l, ln, 22, 26, b, sizeof b);
    if (hybrid36(b, &x->res_id)) {
      rc = px_fail(PX_ERR_FORMAT, "%s: line %d: residue number '%s' is not a number", f, line, b);
      break;
    }
    field(l, ln, 26, 27, b, sizeof b);
    x->r.ins = b[0];
    static const size_t cs[3] = {30, 38, 46};
    for (int d = 0; d < 3 && !rc; d++) {
      field(l, ln, cs[d], cs[d] + 8, b, sizeof b);
      if (parse_float(b, &x->r.xyz[d]))
        rc = px_fail(PX_ERR_FORMAT, "%s: line %d: coordinate '%s' is not a finite number", f, line, b);
    }
    if (rc) break;
    field(l, ln, 76, 78, x->r.elem, PX_SIN_NAME);
    if (!x->r.elem[0]) guess_element(x->r.atom, x->r.elem);
    memcpy(x->r.auth_asym, x->auth_chain, sizeof x->auth_chain);
    x->r.auth_seq = x->res_id;
    n++;
  }
  if (!rc && n == 0) rc = px_fail(PX_ERR_FORMAT, "%s: the first model has no atoms", f);
  if (rc) {
    free(a);
    return rc;
  }

  /* ---- altloc "first", per residue: blank ids, and the first letter id met ---- */
  int m = 0;
  for (int s = 0, e; s < n; s = e) {
    char firstalt = 0;
    for (e = s; e < n && (e == s || !new_residue(&a[s], &a[e])); e++)
      if (!firstalt && isalpha((unsigned char)a[e].alt)) firstalt = a[e].alt;
    for (int i = s; i < e; i++) {
      char c = a[i].alt;
      if (c == ' ' || c == '.' || c == '?' || (firstalt && c == firstalt)) a[m++] = a[i];
    }
  }
  n = m;

  /* ---- pdb_to_cif: chain boundaries ---- */
  char *cstart = calloc((size_t)n + 1, 1);
  sin_raw *raw = malloc(sizeof *raw * (size_t)n);
  px_sin_pdb_res *res = malloc(sizeof *res * (size_t)n);
  px_sin_entity *ent = NULL;
  seqkey *ek = NULL;
  px_strbuf names = {0};
  int n_ent = 0, n_res = 0;
  if (!cstart || !raw || !res) {
    rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
    goto done;
  }
  /* biotite's chains: chain id changes or the residue number decreases */
  for (int i = 0; i < n; i++)
    cstart[i] = i == 0 || strcmp(a[i].auth_chain, a[i - 1].auth_chain) || a[i].res_id < a[i - 1].res_id;
  cstart[n] = 1;
  /* the first ATOM/HETATM change in each chain starts a new one (only the first) */
  for (int s = 0, e; s < n; s = e) {
    for (e = s + 1; !cstart[e]; e++) {
    }
    for (int i = s + 1; i < e; i++)
      if (a[i].hetero != a[s].hetero) {
        cstart[i] = 2;
        break;
      }
  }
  /* HETATM runs: a new chain wherever the residue number rises */
  for (int s = 0, e; s < n; s = e) {
    for (e = s + 1; !cstart[e]; e++) {
    }
    for (int i = s + 1; i < e; i++)
      if (a[i].res_id - a[i - 1].res_id >= 1 && a[i].hetero && a[i - 1].hetero) cstart[i] = 3;
  }
  ent = NULL;
  int cap_ent = 0, n_chain = 0;
  for (int s = 0, e; s < n; s = e) {
    for (e = s + 1; !cstart[e]; e++) {
    }
    char cid[PX_SIN_NAME];
    if (chain_letters(++n_chain, cid)) {
      rc = px_fail(PX_ERR_FORMAT, "%s: too many chains", f);
      goto done;
    }
    /* residues (biotite's: chain id, number, insertion code, name) and their names */
    size_t name0 = names.n;
    int all_dna = 1, nres = 0, cnt[4] = {0, 0, 0, 0};
    for (int i = s; i < e; i++) {
      if (i == s || new_residue(&a[i - 1], &a[i])) {
        nres++;
        if (nres > 1) px_sb_put(&names, "_", 1);
        px_sb_str(&names, a[i].r.res);
        all_dna &= in_list(dna_std, a[i].r.res);
        cnt[in_list(pro_std, a[i].r.res)   ? 0
            : in_list(dna_std, a[i].r.res) ? 1
            : in_list(rna_std, a[i].r.res) ? 2
                                           : 3]++;
      }
    }
    if (names.oom) {
      rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
      goto done;
    }
    /* entity of this residue-name sequence (first seen = next id) */
    size_t nl = names.n - name0;
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < nl; k++) h = (h ^ (unsigned char)names.p[name0 + k]) * 1099511628211ull;
    int ent_i = -1;
    for (int k = 0; k < n_ent && ent_i < 0; k++)
      if (ek[k].hash == h && ek[k].len == nl && !memcmp(names.p + ek[k].off, names.p + name0, nl))
        ent_i = k;
    int reversed = 0;
    if (ent_i >= 0 && all_dna) {
      /* upstream reverses a DNA chain whose sequence was seen (complementary strand);
       * its residues and atoms then run backwards */
      reversed = 1;
      ent_i = -1;
      /* the reversed name string */
      px_strbuf rv = {0};
      int s2 = e;
      for (int i = e - 1; i >= s; i--) {
        if (i == s || new_residue(&a[i - 1], &a[i])) {
          if (s2 != e) px_sb_put(&rv, "_", 1);
          px_sb_str(&rv, a[i].r.res);
          s2 = i;
        }
      }
      if (rv.oom) {
        free(rv.p);
        rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
        goto done;
      }
      names.n = name0;
      px_sb_put(&names, rv.p ? rv.p : "", rv.n);
      free(rv.p);
      h = 1469598103934665603ull;
      for (size_t k = 0; k < nl; k++) h = (h ^ (unsigned char)names.p[name0 + k]) * 1099511628211ull;
      for (int k = 0; k < n_ent && ent_i < 0; k++)
        if (ek[k].hash == h && ek[k].len == nl && !memcmp(names.p + ek[k].off, names.p + name0, nl))
          ent_i = k;
    }
    if (ent_i < 0) {
      if (n_ent == cap_ent) {
        cap_ent = cap_ent ? cap_ent * 2 : 8;
        px_sin_entity *ne = realloc(ent, sizeof *ne * (size_t)cap_ent);
        if (ne) ent = ne;
        seqkey *nk = realloc(ek, sizeof *nk * (size_t)cap_ent);
        if (nk) ek = nk;
        if (!ne || !nk) {
          rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
          goto done;
        }
      }
      if (n_ent >= 9999999) {
        rc = px_fail(PX_ERR_FORMAT, "%s: too many entities", f);
        goto done;
      }
      ent_i = n_ent++;
      memset(&ent[ent_i], 0, sizeof ent[ent_i]);
      snprintf(ent[ent_i].id, PX_SIN_NAME, "%d", n_ent % 10000000);
      ent[ent_i].poly = cnt[0] >= 2 && !cnt[1] && !cnt[2]   ? PX_SIN_POLY_PEPTIDE_L
                        : (cnt[1] >= 2 && !cnt[0] && !cnt[2]) ||
                                (cnt[2] >= 2 && !cnt[0] && !cnt[1])
                            ? PX_SIN_POLY_OTHER
                            : PX_SIN_POLY_NONE;
      ek[ent_i] = (seqkey){h, name0, nl};
    } else {
      names.n = name0; /* a known sequence: its string is not kept twice */
    }
    /* residues 1..n in the original order, atoms reversed afterwards when upstream does */
    int num = 0;
    for (int i = s; i < e; i++) {
      if (i == s || new_residue(&a[i - 1], &a[i])) {
        num++;
        px_sin_pdb_res *r = &res[n_res++];
        memset(r, 0, sizeof *r);
        memcpy(r->auth_chain, a[i].auth_chain, sizeof a[i].auth_chain);
        r->auth_seq = a[i].res_id;
        r->ins_code = a[i].r.ins;
        memcpy(r->chain_id, cid, PX_SIN_NAME);
        r->chain = -1;
        r->seq_id = num;
      }
      sin_raw *x = &raw[i];
      *x = a[i].r;
      memcpy(x->asym, cid, PX_SIN_NAME);
      x->seq = num;
      x->entity = ent_i;
      x->rix = n_res - 1;
    }
    if (reversed) /* the atoms run backwards, the new numbers stay where they were */
      for (int i = s, j = e - 1; i < j; i++, j--) {
        sin_raw t = raw[i];
        int si = raw[i].seq, sj = raw[j].seq;
        raw[i] = raw[j];
        raw[j] = t;
        raw[i].seq = si;
        raw[j].seq = sj;
      }
  }

  /* _entity_poly_seq as CIFWriter writes it: the residues of the entity's chain whose id
   * sorts first, up to its first decrease of the residue number; MSE -> MET on reading */
  for (int k = 0; k < n_ent; k++) {
    if (!ent[k].poly) continue;
    int best = -1;
    for (int i = 0; i < n; i++)
      if (raw[i].entity == k && (best < 0 || strcmp(raw[i].asym, raw[best].asym) < 0)) best = i;
    int s = best;
    while (s > 0 && !strcmp(raw[s - 1].asym, raw[best].asym)) s--;
    int cnt = 0;
    for (int i = s; i < n && !strcmp(raw[i].asym, raw[s].asym); i++) {
      if (i > s && raw[i].seq < raw[i - 1].seq) break;
      cnt += i == s || raw[i].seq != raw[i - 1].seq || raw[i].ins != raw[i - 1].ins ||
             strcmp(raw[i].res, raw[i - 1].res);
    }
    ent[k].seq = malloc(sizeof *ent[k].seq * (size_t)cnt);
    if (!ent[k].seq) {
      rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
      goto done;
    }
    for (int i = s; i < n && !strcmp(raw[i].asym, raw[s].asym); i++) {
      if (i > s && raw[i].seq < raw[i - 1].seq) break;
      if (i == s || raw[i].seq != raw[i - 1].seq || raw[i].ins != raw[i - 1].ins ||
          strcmp(raw[i].res, raw[i - 1].res)) {
        memcpy(ent[k].seq[ent[k].n_seq], raw[i].res, PX_SIN_NAME);
        if (!strcmp(ent[k].seq[ent[k].n_seq], "MSE")) strcpy(ent[k].seq[ent[k].n_seq], "MET");
        ent[k].n_seq++;
      }
    }
  }

  /* author numbering ambiguities (build_residue_maps' bijection, over every residue) */
  int dup0 = -1, dup1 = -1;
  {
    rsort *rs = malloc(sizeof *rs * (size_t)(n_res ? n_res : 1));
    if (!rs) {
      rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", f);
      goto done;
    }
    for (int i = 0; i < n_res; i++) rs[i] = (rsort){i, &res[i]};
    qsort(rs, (size_t)n_res, sizeof *rs, rsort_cmp);
    for (int i = 1; i < n_res; i++)
      if (!strcmp(rs[i].r->auth_chain, rs[i - 1].r->auth_chain) &&
          rs[i].r->auth_seq == rs[i - 1].r->auth_seq && (dup1 < 0 || rs[i].rix < dup1)) {
        dup0 = rs[i - 1].rix;
        dup1 = rs[i].rix;
      }
    free(rs);
  }

  sin_mse_to_met(raw, n);
  px_sin_pdb_res *res_shrunk = realloc(res, sizeof *res * (size_t)(n_res ? n_res : 1));
  if (res_shrunk) res = res_shrunk;
  rc = sin_finish(name, raw, n, ent, n_ent, NULL, 0, res, n_res, 1, out);
  ent = NULL;
  res = NULL;
  if (!rc) {
    (*out)->pdb_dup[0] = dup0;
    (*out)->pdb_dup[1] = dup1;
  }
done:
  free(a);
  free(cstart);
  free(raw);
  free(res);
  free(ek);
  free(names.p);
  sin_entities_free(ent, n_ent);
  return rc;
}

/* ------------------------------------------------------------ task ids -- */

static int pdb_check(const px_structure_in *s, const char *what) {
  if (!s || !s->from_pdb)
    return px_fail(PX_ERR_INPUT, "%s: the structure was not read from a PDB file", what);
  if (s->pdb_dup[0] >= 0) {
    const px_sin_pdb_res *a = &s->pdb_res[s->pdb_dup[0]], *b = &s->pdb_res[s->pdb_dup[1]];
    char c[16];
    px_shown_name(c, sizeof c, a->auth_chain);
    return px_fail(PX_ERR_INPUT,
                   "PDB target: chain '%s' has two residues numbered %d (insertion codes '%c' "
                   "and '%c', or a ligand or water numbered like a residue); upstream refuses "
                   "such PDB files: renumber it or give the mmCIF file",
                   c, a->auth_seq, a->ins_code ? a->ins_code : ' ', b->ins_code ? b->ins_code : ' ');
  }
  return 0;
}

int px_sin_pdb_chain(const px_structure_in *s, const char *auth_chain, int *chain) {
  if (!auth_chain || !chain) return px_fail(PX_ERR_INPUT, "px_sin_pdb_chain: NULL argument");
  char c[16];
  px_shown_name(c, sizeof c, auth_chain);
  if (!s || !s->from_pdb)
    return px_fail(PX_ERR_INPUT, "chain %s: the structure was not read from a PDB file", c);
  const char *found = NULL;
  for (int i = 0; i < s->n_pdb_res; i++) {
    const px_sin_pdb_res *r = &s->pdb_res[i];
    if (strcmp(r->auth_chain, auth_chain)) continue;
    if (!found) found = r->chain_id;
    else if (strcmp(found, r->chain_id))
      return px_fail(PX_ERR_INPUT,
                     "PDB target: chain '%s' became chains %s and %s when split (its HETATM "
                     "records follow its ATOM records, or its numbering restarts); upstream "
                     "refuses to map it: remove the HETATM records or use the mmCIF file",
                     c, found, r->chain_id);
  }
  if (!found) return px_fail(PX_ERR_INPUT, "PDB target: no chain '%s' in the file", c);
  int rc = pdb_check(s, "px_sin_pdb_chain");
  if (rc) return rc;
  for (int i = 0; i < s->n_chain; i++)
    if (!strcmp(s->chain[i].id, found)) {
      *chain = i;
      return 0;
    }
  return px_fail(PX_ERR_INPUT, "PDB target: chain '%s' holds only water or hydrogens", c);
}

int px_sin_pdb_residue(const px_structure_in *s, const char *auth_chain, int auth_seq,
                       int *chain, int *seq_id) {
  if (!auth_chain || !chain || !seq_id)
    return px_fail(PX_ERR_INPUT, "px_sin_pdb_residue: NULL argument");
  int rc = pdb_check(s, "px_sin_pdb_residue");
  if (rc) return rc;
  char c[16];
  px_shown_name(c, sizeof c, auth_chain);
  for (int i = 0; i < s->n_pdb_res; i++) {
    const px_sin_pdb_res *r = &s->pdb_res[i];
    if (r->auth_seq != auth_seq || strcmp(r->auth_chain, auth_chain)) continue;
    if (r->chain < 0)
      return px_fail(PX_ERR_INPUT, "PDB target: residue %d of chain '%s' is water or hydrogens only",
                     auth_seq, c);
    *chain = r->chain;
    *seq_id = r->seq_id;
    return 0;
  }
  return px_fail(PX_ERR_INPUT, "PDB target: chain '%s' has no residue %d", c, auth_seq);
}
