/* Structure readers (src/io/structure_in.h) against upstream.
 *
 * tests/data/structures/<name>.expected is what upstream's own code makes of
 * <name>.cif / <name>.pdb (Protenix's DistillationMMCIFParser steps, pxdesign's pdb_to_cif
 * and task-id mapping; make_expected.py there, run through the upstream harness): every
 * kept atom with its names, ids and float32 coordinates, the polymer entity sequences, and
 * for PDB input the chain and residue mappings. Those must match exactly. Then the rules
 * one by one on small inline files, the errors (one line naming the file and the line),
 * every prefix of the test files (a valid structure or one error line, never a crash),
 * and the parse time of 5o45.cif. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/structure_in.h"
#include "platform.h"
#include "pxdiff.h"
#include "testutil.h"

static char data_dir[512];

static const char *dpath(const char *name) {
  static char p[1024];
  snprintf(p, sizeof p, "%s/structures/%s", data_dir, name);
  return p;
}

static int find_chain(const px_structure_in *s, const char *id) {
  for (int i = 0; i < s->n_chain; i++)
    if (!strcmp(s->chain[i].id, id)) return i;
  return -1;
}

static const px_sin_entity *find_entity(const px_structure_in *s, const char *id) {
  for (int i = 0; i < s->n_entity; i++)
    if (!strcmp(s->entity[i].id, id)) return &s->entity[i];
  return NULL;
}

/* Split a line into blank-separated words (in place). */
static int words(char *l, char **w, int max) {
  int n = 0;
  for (char *t = strtok(l, " \n"); t && n < max; t = strtok(NULL, " \n")) w[n++] = t;
  return n;
}

static void check_expected(const char *file, const char *stem) {
  size_t n;
  char exp_name[256];
  snprintf(exp_name, sizeof exp_name, "%s.expected", stem);
  char *exp = (char *)tu_slurp(dpath(exp_name), &n);
  CHECK_MSG(exp != NULL, "%s missing", exp_name);
  if (!exp) return;
  exp = realloc(exp, n + 1);
  exp[n] = 0;
  px_structure_in *s = NULL;
  int rc = px_structure_read(dpath(file), &s);
  int upstream_error = !strncmp(exp, "error ", 6);
  if (upstream_error) {
    CHECK_MSG(rc != 0, "%s: upstream refuses it, pxdiff read it", file);
    px_structure_in_free(s);
    free(exp);
    return;
  }
  CHECK_MSG(rc == 0, "%s: %s", file, px_last_error());
  if (rc) {
    free(exp);
    return;
  }
  int ia = 0, atom_bad = 0, n_poly_exp = 0, residues_error = strstr(exp, "\nresidues error") != NULL;
  char *save = NULL;
  for (char *l = strtok_r(exp, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", l);
    char *w[1100];
    int nw = words(buf, w, 1100);
    if (nw == 0) continue;
    if (!strcmp(w[0], "atom") && nw == 11) {
      if (ia >= s->n_atom) {
        ia++;
        continue;
      }
      const px_sin_atom *a = &s->atom[ia];
      const px_sin_chain *c = &s->chain[a->chain];
      float x = (float)strtod(w[8], NULL), y = (float)strtod(w[9], NULL), z = (float)strtod(w[10], NULL);
      /* PDB input: upstream's converted file repeats the new ids as author ids; ours keep
       * the PDB's (checked through the residue records below) */
      int auth_ok = s->from_pdb || (!strcmp(c->auth_id, w[2]) && a->auth_seq_id == atoi(w[7]));
      int ok = !strcmp(c->id, w[1]) && auth_ok && !strcmp(a->atom_name, w[3]) &&
               !strcmp(a->res_name, w[4]) && !strcmp(a->element, w[5]) &&
               a->seq_id == atoi(w[6]) && a->xyz[0] == x &&
               a->xyz[1] == y && a->xyz[2] == z;
      if (!ok && atom_bad++ < 5)
        fprintf(stderr, "%s atom %d: got %s %s %s %s %s %d %d %.4f %.4f %.4f, upstream: %s\n", file,
                ia, c->id, c->auth_id, a->atom_name, a->res_name, a->element, a->seq_id,
                a->auth_seq_id, a->xyz[0], a->xyz[1], a->xyz[2], l);
      ia++;
    } else if (!strcmp(w[0], "entity") && nw >= 4) {
      n_poly_exp++;
      const px_sin_entity *e = find_entity(s, w[1]);
      CHECK_MSG(e != NULL, "%s: entity %s missing", file, w[1]);
      if (!e) continue;
      int poly = !strcmp(w[2], "polypeptide(L)") ? PX_SIN_POLY_PEPTIDE_L : PX_SIN_POLY_OTHER;
      CHECK_MSG(e->poly == poly, "%s: entity %s type %d", file, w[1], e->poly);
      CHECK_MSG(e->n_seq == atoi(w[3]) && nw == 4 + e->n_seq, "%s: entity %s: %d residues, upstream %s",
                file, w[1], e->n_seq, w[3]);
      for (int k = 0; k < e->n_seq && 4 + k < nw; k++)
        CHECK_MSG(!strcmp(e->seq[k], w[4 + k]), "%s: entity %s residue %d: %s, upstream %s", file, w[1],
                  k + 1, e->seq[k], w[4 + k]);
    } else if (!strcmp(w[0], "chain") && nw == 3) {
      const char *auth = strcmp(w[1], "-") ? w[1] : "";
      int ci = -1;
      int r = px_sin_pdb_chain(s, auth, &ci);
      if (!strcmp(w[2], "error") || residues_error) {
        CHECK_MSG(r != 0, "%s: chain %s maps to %d, upstream refuses", file, w[1], ci);
        if (r) CHECK(tu_one_line(px_last_error()));
      } else {
        CHECK_MSG(r == 0 && ci >= 0 && !strcmp(s->chain[ci].id, w[2]), "%s: chain %s: rc %d %s", file,
                  w[1], r, px_last_error());
      }
    } else if (!strcmp(w[0], "residue") && nw == 5) {
      const char *auth = strcmp(w[1], "-") ? w[1] : "";
      int ci = -1, sq = -1;
      int r = px_sin_pdb_residue(s, auth, atoi(w[2]), &ci, &sq);
      if (find_chain(s, w[3]) < 0) {
        /* upstream maps it into a chain of water; then finds no atoms there */
        CHECK_MSG(r != 0, "%s: residue %s %s (water) mapped", file, w[1], w[2]);
      } else {
        CHECK_MSG(r == 0 && !strcmp(s->chain[ci].id, w[3]) && sq == atoi(w[4]),
                  "%s: residue %s %s -> %s %s: rc %d %s", file, w[1], w[2], w[3], w[4], r,
                  px_last_error());
      }
    }
  }
  CHECK_MSG(ia == s->n_atom, "%s: %d atoms, upstream %d", file, s->n_atom, ia);
  CHECK_MSG(atom_bad == 0, "%s: %d atoms differ from upstream", file, atom_bad);
  int n_poly = 0;
  for (int i = 0; i < s->n_entity; i++) n_poly += s->entity[i].poly != PX_SIN_POLY_NONE;
  CHECK_MSG(n_poly == n_poly_exp, "%s: %d polymer entities, upstream %d", file, n_poly, n_poly_exp);
  if (residues_error) {
    int ci, sq;
    CHECK_MSG(px_sin_pdb_residue(s, s->pdb_res[0].auth_chain, s->pdb_res[0].auth_seq, &ci, &sq) != 0,
              "%s: ambiguous author numbering accepted", file);
  }
  /* every chain's atoms belong to the chain's entity; atoms point at valid chains */
  for (int i = 0; i < s->n_atom; i++) CHECK(s->atom[i].chain >= 0 && s->atom[i].chain < s->n_chain);
  for (int i = 0; i < s->n_chain; i++) CHECK(s->chain[i].entity >= 0 && s->chain[i].entity < s->n_entity);
  printf("  %-18s %5d atoms, %d chains, %d entities: as upstream\n", file, s->n_atom, s->n_chain,
         s->n_entity);
  px_structure_in_free(s);
  free(exp);
}

/* A parse that must fail with one line naming the file, and containing `want`. */
static void expect_fail(const char *name, const char *text, const char *want) {
  px_structure_in *s = (px_structure_in *)0x1;
  int rc = px_structure_parse(text, strlen(text), name, &s);
  const char *m = px_last_error();
  CHECK_MSG(rc != 0 && s == NULL, "%s: accepted (wanted '%s')", name, want);
  if (rc == 0) {
    px_structure_in_free(s);
    return;
  }
  CHECK_MSG(tu_one_line(m) && strstr(m, name) && (!want || strstr(m, want)), "%s: message '%s' (wanted '%s')",
            name, m, want ? want : "");
}

static px_structure_in *parse_ok(const char *name, const char *text) {
  px_structure_in *s = NULL;
  int rc = px_structure_parse(text, strlen(text), name, &s);
  CHECK_MSG(rc == 0, "%s: %s", name, px_last_error());
  return rc ? NULL : s;
}

#define HEAD                                                                                    \
  "data_t\nloop_\n_atom_site.group_PDB\n_atom_site.type_symbol\n_atom_site.label_atom_id\n"   \
  "_atom_site.label_alt_id\n_atom_site.label_comp_id\n_atom_site.label_asym_id\n"              \
  "_atom_site.label_entity_id\n_atom_site.label_seq_id\n_atom_site.Cartn_x\n"                  \
  "_atom_site.Cartn_y\n_atom_site.Cartn_z\n_atom_site.auth_seq_id\n_atom_site.auth_asym_id\n" \
  "_atom_site.pdbx_PDB_model_num\n"

static void test_rules(void) {
  /* text field, quotes with embedded quote characters, comments, CRLF line ends */
  px_structure_in *s = parse_ok("t.cif", HEAD "ATOM\n;O\n;\n'O' . GLY A 1 1 1.5 2 3 7 A 1 # c\r\n"
                                              "ATOM C \"C'A\" . GLY A 1 1 -1e1 +2. .5 7 A 1\r\n"
                                              "ATOM C 'C B' . GLY A 1 1 0 0 0 7 A 1\n");
  if (s) {
    CHECK(s->n_atom == 3);
    CHECK(!strcmp(s->atom[0].element, "O") && !strcmp(s->atom[0].atom_name, "O"));
    CHECK(!strcmp(s->atom[1].atom_name, "C'A") && s->atom[1].xyz[0] == -10.0f &&
          s->atom[1].xyz[1] == 2.0f && s->atom[1].xyz[2] == 0.5f);
    CHECK(!strcmp(s->atom[2].atom_name, "C B"));
    px_structure_in_free(s);
  }
  /* altloc over the whole file: '?' is an id like any other and sorts before letters */
  s = parse_ok("t.cif", HEAD "ATOM C CA A GLY A 1 1 0 0 0 1 A 1\nATOM C CA ? GLY A 1 2 0 0 0 2 A 1\n"
                             "ATOM C CB B GLY A 1 2 0 0 0 2 A 1\n");
  if (s) {
    CHECK(s->n_atom == 1 && s->atom[0].seq_id == 2);
    px_structure_in_free(s);
  }
  /* first model = the leading run of the first row's model number */
  s = parse_ok("t.cif", HEAD "ATOM C CA . GLY A 1 1 0 0 0 1 A 2\nATOM C CA . GLY A 1 2 0 0 0 2 A 1\n"
                             "ATOM C CA . GLY A 1 3 0 0 0 3 A 2\n");
  if (s) {
    CHECK(s->n_atom == 1 && s->atom[0].seq_id == 1);
    px_structure_in_free(s);
  }
  /* a ligand chain with '.' numbers: residues 1.. split where the author number drops */
  s = parse_ok("t.cif", HEAD "HETATM C C1 . LIG B 2 . 0 0 0 5 B 1\nHETATM C C2 . LIG B 2 . 0 0 0 5 B 1\n"
                             "HETATM C C1 . LIG B 2 . 0 0 0 6 B 1\nHETATM C C1 . LIG B 2 . 0 0 0 4 B 1\n");
  if (s) {
    CHECK(s->n_atom == 4 && s->atom[0].seq_id == 1 && s->atom[1].seq_id == 1 &&
          s->atom[2].seq_id == 2 && s->atom[3].seq_id == 1);
    px_structure_in_free(s);
  }
  /* ARG whose CD is atom 0 of the model: upstream's truth test skips it */
  s = parse_ok("t.cif", HEAD "ATOM C CD . ARG A 1 1 0 0 0 1 A 1\nATOM N NH1 . ARG A 1 1 5 0 0 1 A 1\n"
                             "ATOM N NH2 . ARG A 1 1 1 0 0 1 A 1\n");
  if (s) {
    CHECK(s->atom[1].xyz[0] == 5.0f && s->atom[2].xyz[0] == 1.0f);
    px_structure_in_free(s);
  }
  s = parse_ok("t.cif", HEAD "ATOM C CA . ARG A 1 1 0 0 0 1 A 1\nATOM C CD . ARG A 1 1 0 0 0 1 A 1\n"
                             "ATOM N NH1 . ARG A 1 1 5 0 0 1 A 1\nATOM N NH2 . ARG A 1 1 1 0 0 1 A 1\n");
  if (s) {
    CHECK(s->atom[2].xyz[0] == 1.0f && s->atom[3].xyz[0] == 5.0f);
    px_structure_in_free(s);
  }
  /* MSE -> MET in atoms (only the SE atom changes element) and in the sequence */
  s = parse_ok("t.cif", HEAD "HETATM SE SE . MSE A 1 1 0 0 0 1 A 1\nHETATM C CE . MSE A 1 1 0 0 0 1 A 1\n"
                             "loop_\n_entity_poly.entity_id\n_entity_poly.type\n1 'polypeptide(L)'\n"
                             "loop_\n_entity_poly_seq.entity_id\n_entity_poly_seq.num\n"
                             "_entity_poly_seq.mon_id\n1 1 MSE\n1 2 GLY\n");
  if (s) {
    CHECK(!strcmp(s->atom[0].atom_name, "SD") && !strcmp(s->atom[0].element, "S") &&
          !strcmp(s->atom[0].res_name, "MET") && !strcmp(s->atom[1].element, "C"));
    CHECK(s->n_entity == 1 && s->entity[0].n_seq == 2 && !strcmp(s->entity[0].seq[0], "MET") &&
          s->entity[0].poly == PX_SIN_POLY_PEPTIDE_L);
    px_structure_in_free(s);
  }
  /* water and hydrogens go; 'h' (not upstream's "H") stays */
  s = parse_ok("t.cif", HEAD "HETATM O O . HOH W 3 . 0 0 0 1 W 1\nATOM H H . GLY A 1 1 0 0 0 1 A 1\n"
                             "ATOM D D . GLY A 1 1 0 0 0 1 A 1\nATOM h H2 . GLY A 1 1 0 0 0 1 A 1\n");
  if (s) {
    CHECK(s->n_atom == 1 && !strcmp(s->atom[0].atom_name, "H2") && !strcmp(s->atom[0].element, "H"));
    px_structure_in_free(s);
  }
  /* PDB: altloc per residue (the first letter met wins), blank element guessed */
  s = parse_ok("t.pdb",
               "ATOM      1  CA BGLY A   1       1.000   2.000   3.000  1.00  0.00           C\n"
               "ATOM      2  CA AGLY A   1       4.000   5.000   6.000  1.00  0.00           C\n"
               "ATOM      3  HA  GLY A   1       4.000   5.000   6.000\n"
               "ATOM      4 SE   MSE A   2       7.000   8.000   9.000\n");
  if (s) {
    CHECK(s->from_pdb && s->n_atom == 2 && s->atom[0].xyz[0] == 1.0f);
    CHECK(!strcmp(s->atom[1].atom_name, "SD") && !strcmp(s->atom[1].element, "S") &&
          !strcmp(s->atom[1].res_name, "MET"));
    px_structure_in_free(s);
  }
}

static void test_errors(void) {
  expect_fail("e.cif", "", "empty");
  expect_fail("e.cif", "  \n# only a comment\n", "empty");
  expect_fail("e.cif", "data_x\n_a.b 'never closed\n", "line 2");
  expect_fail("e.cif", "data_x\n_a.b\n;never closed\n", "line 3");
  expect_fail("e.cif", "data_x\nloop_\n_a.b\n_a.c\n1 2 3\n", "line 2");
  expect_fail("e.cif", "data_x\n_a.b 1\n_a.c\n", "line 3");
  expect_fail("e.cif", "data_x\n_a.b 1 2\n", "line 2");
  expect_fail("e.cif", "data_x\n_a.b 1\ndata_y\n_a.b 2\n", "line 3");
  expect_fail("e.cif", "data_x\n_a.b\001 1\n", "line 2");
  expect_fail("e.cif", "data_x\n_a.b 1\n", "atom_site");
  expect_fail("e.cif", "data_x\nloop_\n_atom_site.label_asym_id\n_atom_site.Cartn_y\nA 1\n", "Cartn_x");
  expect_fail("e.cif", HEAD "ATOM C CA . GLY A 1 1 abc 0 0 1 A 1\n", "line 17");
  expect_fail("e.cif", HEAD "ATOM C CA . GLY A 1 1 nan 0 0 1 A 1\n", "Cartn_x");
  expect_fail("e.cif", HEAD "ATOM C CA . GLY A 1 1 0 1e39 0 1 A 1\n", "Cartn_y");
  expect_fail("e.cif", HEAD "ATOM C CA . GLY A 1 1 0 0 ? 1 A 1\n", "Cartn_z");
  expect_fail("e.cif", HEAD "ATOM C CA . GLY A 1 1 0 0 0 1 A 1\nATOM C CA . GLY A 1 x 0 0 0 2 A 1\n",
              "line 18");
  expect_fail("e.cif", HEAD "HETATM O O . HOH W 3 . 0 0 0 1 W 1\n", "no atoms");
  expect_fail("e.cif", HEAD, "no rows");
  expect_fail("e.cif", HEAD "ATOM C CA . GLY ABCDEFGHIJ 1 1 0 0 0 1 A 1\n", "longer");
  expect_fail("e.cif", HEAD "ATOM C CA . GLY A 1 1 0 0 0 1 A 1\nloop_\n_entity_poly.entity_id\n1\n",
              "entity_poly_seq");
  expect_fail("e.cif", "data_x\nloop_\n_a.b\n_c.d\n1 2\n", "mixes");
  expect_fail("e.pdb", "HEADER    NOTHING\n", "no ATOM");
  expect_fail("e.pdb", "ATOM      1  CA  GLY A   1       1.000   abc     3.000\n", "line 1");
  expect_fail("e.pdb", "REMARK\nATOM      1  CA  GLY A   1       1.000     nan   3.000\n", "line 2");
  expect_fail("e.pdb", "ATOM      1  CA  GLY A  #1       1.000   2.000   3.000\n", "line 1");
  expect_fail("e.pdb", "HETATM    1  O   HOH A   1       1.000   2.000   3.000\n", "no atoms");
  expect_fail("e.pdb", "ATOM      1  CA  GLY A   1       1.000   2.\xc3\xa9" "0   3.000\n", "non-ASCII");
  /* absurd sizes are refused before a byte is read */
  {
    px_structure_in *t = NULL;
    CHECK(px_structure_parse("data_x\n", (size_t)1 << 31, "big.cif", &t) != 0 && t == NULL &&
          strstr(px_last_error(), "big.cif") && tu_one_line(px_last_error()));
  }
  /* a stray value after an item of a category the reader skips */
  expect_fail("e.cif", "data_x\n_skipped.item 1\n2\n_atom_site.id 1\n", "line 3");
  /* file errors name the file */
  px_structure_in *s = NULL;
  CHECK(px_structure_read("/nonexistent/x.cif", &s) == PX_ERR_IO && s == NULL &&
        strstr(px_last_error(), "/nonexistent/x.cif"));
}

/* Every prefix of a file: a structure or one error line (and no sanitizer report). */
static void test_prefixes(const char *file, size_t step) {
  size_t n;
  unsigned char *b = tu_slurp(dpath(file), &n);
  CHECK(b != NULL);
  if (!b) return;
  int ok = 0, bad = 0;
  for (size_t k = 0; k <= n; k += (k < 4096 ? 1 : step)) {
    px_structure_in *s = NULL;
    int rc = px_structure_parse((const char *)b, k, file, &s);
    if (rc == 0) {
      ok++;
      if (s->n_atom <= 0) bad++;
      px_structure_in_free(s);
    } else if (s || !tu_one_line(px_last_error())) {
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "%s: %d prefixes misbehaved", file, bad);
  printf("  %-18s prefixes: %d parsed, the rest refused with one line\n", file, ok);
  free(b);
}

/* Coordinates in every decimal form the reader takes (signs, leading zeros, no integer or no
 * fraction part, up to 18 digits, exponents), fresh random ones each run: each must be the
 * float32 rounding of strtod's double, bit for bit (the reader's fast path for short plain
 * decimals and its strtod path must agree). */
static void test_coord_forms(void) {
  enum { K = 3000 };
  static char text[K * 3 * 32 + 100000];
  static char str[K][3][32];
  size_t len = (size_t)snprintf(text, sizeof text, "%s", HEAD);
  for (int i = 0; i < K; i++) {
    for (int d = 0; d < 3; d++) {
      char *b = str[i][d];
      int n = 0;
      const double u = tu_uniform();
      if (u < 0.4) b[n++] = '-';
      else if (u < 0.45) b[n++] = '+';
      const int ni = (int)(tu_uniform() * 7), nf = (int)(tu_uniform() * (i % 10 == 0 ? 13 : 5));
      for (int k = 0; k < ni; k++) b[n++] = (char)('0' + (int)(tu_uniform() * 10));
      if (nf || tu_uniform() < 0.3 || ni == 0) b[n++] = '.';
      for (int k = 0; k < nf; k++) b[n++] = (char)('0' + (int)(tu_uniform() * 10));
      if (ni + nf == 0) b[n++] = '0';
      if (i % 37 == 5) n += snprintf(b + n, 32 - (size_t)n, "e%d", (int)(tu_uniform() * 7) - 3);
      b[n] = 0;
    }
    if (i == 1) snprintf(str[i][0], 32, "-0"), snprintf(str[i][1], 32, "-0.000"), snprintf(str[i][2], 32, "+.5");
    if (i == 2) snprintf(str[i][0], 32, "123456789012345"), snprintf(str[i][1], 32, "1234567890123456"),
                snprintf(str[i][2], 32, "0.123456789012345678");
    len += (size_t)snprintf(text + len, sizeof text - len, "ATOM C CA . GLY A 1 %d %s %s %s %d A 1\n", i + 1,
                            str[i][0], str[i][1], str[i][2], i + 1);
  }
  px_structure_in *s = parse_ok("coords.cif", text);
  if (!s) return;
  CHECK_MSG(s->n_atom == K, "%d atoms read of %d", s->n_atom, K);
  int bad = 0;
  for (int i = 0; i < K && i < s->n_atom; i++)
    for (int d = 0; d < 3; d++) {
      const float want = (float)strtod(str[i][d], NULL), got = s->atom[i].xyz[d];
      if (memcmp(&want, &got, sizeof want) && bad++ < 5)
        CHECK_MSG(0, "coordinate '%s': read %.9g, strtod gives %.9g", str[i][d], got, want);
    }
  CHECK_MSG(bad == 0, "%d coordinates differ from strtod's", bad);
  px_structure_in_free(s);
}

static void test_speed(void) {
  size_t n;
  unsigned char *b = tu_slurp(dpath("5o45.cif"), &n);
  if (!b) return;
  px_structure_in *s = NULL;
  const int reps = 20;
  double t0 = px_time_now();
  for (int r = 0; r < reps; r++) {
    px_structure_parse((const char *)b, n, "5o45.cif", &s);
    px_structure_in_free(s);
    s = NULL;
  }
  double ms = (px_time_now() - t0) * 1e3 / reps;
  printf("  5o45.cif (%zu bytes): %.2f ms per parse\n", n, ms);
  CHECK_MSG(ms < 100, "5o45.cif takes %.1f ms", ms);
  free(b);
}

int main(void) {
  const char *d = getenv("PXDIFF_TEST_DATA");
  snprintf(data_dir, sizeof data_dir, "%s", d && d[0] ? d : "tests/data");
  tu_seed();
  static const char *const files[][2] = {{"5o45.cif", "5o45"},         {"rules.cif", "rules"},
                                         {"two_chains.pdb", "two_chains"}, {"hetero.pdb", "hetero"},
                                         {"insertion.pdb", "insertion"}, {"5o45_A.pdb", "5o45_A"},
                                         {"restart.pdb", "restart"}, {"blank_chain.pdb", "blank_chain"},
                                         };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) check_expected(files[i][0], files[i][1]);
  test_rules();
  test_coord_forms();
  test_errors();
  test_prefixes("rules.cif", 1);
  test_prefixes("two_chains.pdb", 1);
  test_prefixes("5o45.cif", 997);
  test_speed();
  return tu_finish("test_structure_in");
}
