/* mmCIF / PDB writers (src/io/structure.c) and the output-directory helpers they rely on:
 * fixed fields and columns, quoting, number formats, refusals with one-line messages,
 * atomic files, trailers, unwritable paths. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "io/structure.h"
#include "platform.h"
#include "testutil.h"

#define NA 6
static const char *names[NA] = {"N", "CA", "O5'", "_X", "FE", "C1\""};
static const char *elements[NA] = {"N", "C", "O", "C", "Fe", "C"};
static const char *resn[NA] = {"ALA", "ALA", "DG", "DG", "HEM", "LIG"};
static const char *chains[NA] = {"A", "A", "B", "B", "B", "C"};
static const int resseq[NA] = {5, 5, -2, -2, 101, 1};
static const float bfac[NA] = {1, 1, 0, 0, 0, 12.345f};
static const unsigned char het[NA] = {0, 0, 0, 0, 1, 1};
static float xyz[NA * 3] = {1.0f, -2.25f, 3.5f,    -0.0f,    12.3456f, -123.4564f, 1000.0f, 0.0004f, -0.0004f,
                            9.9994f, 7.0f, 8.0f,   -999.0f, 0.125f, 2.0f,        3.0f,   4.0f,    5.0f};

static px_structure make(void) {
  px_structure s = {.n_atom = NA, .xyz = xyz, .atom_name = names, .element = elements, .res_name = resn,
                    .chain_id = chains, .res_seq = resseq, .b_factor = bfac, .hetatm = het};
  return s;
}

/* Split a CIF data line into tokens ('...' and "..." values unquoted). */
static int cif_split(const char *line, char tok[][64], int max) {
  int n = 0;
  const char *p = line;
  while (*p && n < max) {
    while (*p == ' ') p++;
    if (!*p) break;
    char q = (*p == '\'' || *p == '"') ? *p : 0;
    const char *start = q ? p + 1 : p;
    const char *e = start;
    if (q) {
      while (*e && !(*e == q && (e[1] == ' ' || e[1] == '\0'))) e++;
    } else {
      while (*e && *e != ' ') e++;
    }
    size_t k = (size_t)(e - start);
    if (k > 63) k = 63;
    memcpy(tok[n], start, k);
    tok[n][k] = '\0';
    n++;
    p = q && *e ? e + 1 : e;
  }
  return n;
}

static char *line_at(char *text, int idx) { /* idx-th line (0-based), NUL-terminated in place */
  char *p = text;
  for (int i = 0; i < idx && p; i++) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  return p;
}

static void test_cif(void) {
  px_structure s = make();
  const char *comments[2] = {"SYNTHETIC WEIGHTS -- not a trained model", "two\nlines"};
  char *text = NULL;
  size_t len = 0;
  CHECK(px_structure_cif(&s, "my design/1", comments, 2, "pxdiff-complete run=abc", &text, &len) == PX_OK);
  if (!text) return;
  CHECK(len == strlen(text));
  CHECK(!strncmp(text, "data_my_design_1\n#\n_entry.id my_design_1\n#\n", 43));
  CHECK(strstr(text, "\n# SYNTHETIC WEIGHTS -- not a trained model\n# two lines\n") != NULL);
  CHECK(strstr(text, "loop_\n_entity.id\n_entity.type\n1 polymer\n2 polymer\n3 non-polymer\n") != NULL);
  static const char *cols[20] = {
      "group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id", "label_asym_id",
      "label_entity_id", "label_seq_id", "pdbx_PDB_ins_code", "Cartn_x", "Cartn_y", "Cartn_z", "occupancy",
      "B_iso_or_equiv", "auth_seq_id", "auth_comp_id", "auth_asym_id", "auth_atom_id", "pdbx_PDB_model_num"};
  char *p = strstr(text, "loop_\n_atom_site.");
  CHECK(p != NULL);
  if (!p) return;
  p += 6;
  for (int c = 0; c < 20; c++) {
    char want[64];
    snprintf(want, sizeof want, "_atom_site.%s\n", cols[c]);
    CHECK_MSG(!strncmp(p, want, strlen(want)), "column %d", c);
    p += strlen(want);
  }
  /* rows: copy out each line */
  static const char *exp[NA][20] = {
      {"ATOM", "1", "N", "N", ".", "ALA", "A", "1", "1", "?", "1.000", "-2.250", "3.500", "1.00", "1.00", "5", "ALA", "A", "N", "1"},
      {"ATOM", "2", "C", "CA", ".", "ALA", "A", "1", "1", "?", "0.000", "12.346", "-123.456", "1.00", "1.00", "5", "ALA", "A", "CA", "1"},
      {"ATOM", "3", "O", "O5'", ".", "DG", "B", "2", "1", "?", "1000.000", "0.000", "0.000", "1.00", "0.00", "-2", "DG", "B", "O5'", "1"},
      {"ATOM", "4", "C", "_X", ".", "DG", "B", "2", "1", "?", "9.999", "7.000", "8.000", "1.00", "0.00", "-2", "DG", "B", "_X", "1"},
      {"HETATM", "5", "FE", "FE", ".", "HEM", "B", "2", ".", "?", "-999.000", "0.125", "2.000", "1.00", "0.00", "101", "HEM", "B", "FE", "1"},
      {"HETATM", "6", "C", "C1\"", ".", "LIG", "C", "3", ".", "?", "3.000", "4.000", "5.000", "1.00", "12.35", "1", "LIG", "C", "C1\"", "1"}};
  char rows[NA][512];
  int starts[NA][20];
  for (int i = 0; i < NA; i++) {
    char *e = strchr(p, '\n');
    CHECK(e != NULL);
    if (!e) return;
    size_t k = (size_t)(e - p);
    CHECK(k < sizeof rows[i]);
    memcpy(rows[i], p, k);
    rows[i][k] = '\0';
    p = e + 1;
    char tok[24][64];
    int n = cif_split(rows[i], tok, 24);
    CHECK_MSG(n == 20, "row %d has %d fields: %s", i, n, rows[i]);
    for (int c = 0; c < 20 && c < n; c++)
      CHECK_MSG(!strcmp(tok[c], exp[i][c]), "row %d col %s: '%s' != '%s'", i, cols[c], tok[c], exp[i][c]);
    /* field start columns: fields are padded to common widths */
    int f = 0, in = 0;
    for (int j = 0; rows[i][j] && f < 20; j++) {
      if (rows[i][j] != ' ' && !in) starts[i][f++] = j;
      in = rows[i][j] != ' ';
      if (rows[i][j] == '"' || rows[i][j] == '\'') { /* skip over a quoted value */
        char q = rows[i][j];
        for (j++; rows[i][j] && rows[i][j] != q; j++) {
        }
      }
    }
    CHECK(rows[i][k - 1] != ' '); /* no trailing blanks */
  }
  for (int i = 1; i < NA; i++)
    for (int c = 0; c < 20; c++) CHECK_MSG(starts[i][c] == starts[0][c], "row %d col %d misaligned", i, c);
  /* quoting: O5' in double quotes, C1" in single quotes, _X quoted */
  CHECK(strstr(rows[2], "\"O5'\"") != NULL);
  CHECK(strstr(rows[5], "'C1\"'") != NULL);
  CHECK(strstr(rows[3], "\"_X\"") != NULL);
  CHECK(!strcmp(p, "#\n# pxdiff-complete run=abc\n"));
  free(text);

  /* no trailer, no comments, default entity ids and B-factors */
  s.b_factor = NULL;
  s.hetatm = NULL;
  CHECK(px_structure_cif(&s, NULL, NULL, 0, NULL, &text, NULL) == PX_OK);
  if (text) {
    CHECK(!strncmp(text, "data_pxdiff\n", 12));
    CHECK(text[strlen(text) - 2] == '#' && text[strlen(text) - 3] == '\n');
    CHECK(strstr(text, " 0.00 ") != NULL && strstr(text, " 1.00 1.00 ") == NULL);
    CHECK(strstr(text, "non-polymer") == NULL);
    (void)line_at;
    free(text);
  }
  /* label_seq_id counts residues within a chain */
  static const char *ch2[4] = {"A", "A", "A", "B"};
  static const char *rn2[4] = {"GLY", "GLY", "SER", "GLY"};
  static const int rs2[4] = {10, 10, 12, 10};
  static const char *an2[4] = {"N", "CA", "N", "N"};
  static const char *el2[4] = {"N", "C", "N", "N"};
  static const float x2[12] = {0};
  px_structure s2 = {.n_atom = 4, .xyz = x2, .atom_name = an2, .element = el2, .res_name = rn2,
                     .chain_id = ch2, .res_seq = rs2};
  CHECK(px_structure_cif(&s2, "x", NULL, 0, NULL, &text, NULL) == PX_OK);
  if (text) {
    char *q = strstr(text, "pdbx_PDB_model_num\n") + strlen("pdbx_PDB_model_num\n");
    char tok[24][64];
    int want_seq[4] = {1, 1, 2, 1}, want_ent[4] = {1, 1, 1, 2};
    for (int i = 0; i < 4; i++) {
      char row[256];
      char *e = strchr(q, '\n');
      memcpy(row, q, (size_t)(e - q));
      row[e - q] = '\0';
      q = e + 1;
      cif_split(row, tok, 24);
      CHECK_MSG(atoi(tok[8]) == want_seq[i] && atoi(tok[7]) == want_ent[i], "atom %d: seq %s entity %s", i,
                tok[8], tok[7]);
    }
    free(text);
  }
}

static void test_cif_refusals(void) {
  px_structure s = make();
  char *text = (char *)1;
  float bad[NA * 3];
  memcpy(bad, xyz, sizeof bad);
  bad[7] = NAN;
  s.xyz = bad;
  CHECK(px_structure_cif(&s, "x", NULL, 0, NULL, &text, NULL) == PX_ERR_INPUT && text == NULL);
  CHECK(strstr(px_last_error(), "atom 3") != NULL && strchr(px_last_error(), '\n') == NULL);
  s = make();
  const char *n2[NA] = {"N", "CA", "O'\"", "X", "FE", "C"};
  s.atom_name = n2;
  CHECK(px_structure_cif(&s, "x", NULL, 0, NULL, &text, NULL) == PX_ERR_INPUT);
  CHECK(strstr(px_last_error(), "atom 3") != NULL);
  const char *n3[NA] = {"N", "C A", "O", "X", "FE", "C"};
  s.atom_name = n3;
  CHECK(px_structure_cif(&s, "x", NULL, 0, NULL, &text, NULL) == PX_ERR_INPUT);
  CHECK(strstr(px_last_error(), "atom 2") != NULL && strstr(px_last_error(), "atom name") != NULL);
  const char *n4[NA] = {"N", "", "O", "X", "FE", "C"};
  s.atom_name = n4;
  CHECK(px_structure_cif(&s, "x", NULL, 0, NULL, &text, NULL) == PX_ERR_INPUT);
  s = make();
  s.res_name = NULL;
  CHECK(px_structure_cif(&s, "x", NULL, 0, NULL, &text, NULL) == PX_ERR_INPUT);
  CHECK(px_structure_cif(NULL, "x", NULL, 0, NULL, &text, NULL) == PX_ERR_INPUT);
  /* zero atoms is a valid (empty) loop */
  px_structure e = {0};
  CHECK(px_structure_cif(&e, "empty", NULL, 0, NULL, &text, NULL) == PX_OK);
  free(text);
}

static void test_pdb(void) {
  px_structure s = make();
  const char *comments[1] = {"SYNTHETIC WEIGHTS -- not a trained model"};
  char *text = NULL;
  CHECK(px_structure_pdb(&s, comments, 1, &text, NULL) == PX_OK);
  if (!text) return;
  const char *want =
      "REMARK   1 SYNTHETIC WEIGHTS -- not a trained model\n"
      "ATOM      1  N   ALA A   5       1.000  -2.250   3.500  1.00  1.00           N\n"
      "ATOM      2  CA  ALA A   5       0.000  12.346-123.456  1.00  1.00           C\n"
      "TER       3      ALA A   5\n"
      "ATOM      4  O5'  DG B  -2    1000.000   0.000   0.000  1.00  0.00           O\n"
      "ATOM      5  _X   DG B  -2       9.999   7.000   8.000  1.00  0.00           C\n"
      "TER       6       DG B  -2\n"
      "HETATM    7 FE   HEM B 101    -999.000   0.125   2.000  1.00  0.00          FE\n"
      "HETATM    8  C1\" LIG C   1       3.000   4.000   5.000  1.00 12.35           C\n"
      "END\n";
  CHECK_MSG(!strcmp(text, want), "PDB text:\n%s", text);
  free(text);
  /* refusals */
  const char *longchain[NA] = {"A", "A", "BB", "B", "B", "C"};
  s.chain_id = longchain;
  CHECK(px_structure_pdb(&s, NULL, 0, &text, NULL) == PX_ERR_INPUT);
  CHECK(strstr(px_last_error(), "atom 3") && strstr(px_last_error(), "chain id"));
  s = make();
  float big[NA * 3];
  memcpy(big, xyz, sizeof big);
  big[4] = 10000.0f;
  s.xyz = big;
  CHECK(px_structure_pdb(&s, NULL, 0, &text, NULL) == PX_ERR_INPUT);
  CHECK(strstr(px_last_error(), "atom 2") && strstr(px_last_error(), "coordinate"));
  big[4] = -1000.0f;
  CHECK(px_structure_pdb(&s, NULL, 0, &text, NULL) == PX_ERR_INPUT);
  s = make();
  const char *longname[NA] = {"N", "CA", "O5'", "_X", "FE", "C12345"};
  s.atom_name = longname;
  CHECK(px_structure_pdb(&s, NULL, 0, &text, NULL) == PX_ERR_INPUT && strstr(px_last_error(), "atom 6"));
}

static char tmpdir[256];

static void test_files(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pxdiff_test_structure_%lx_%lx/a/b", (unsigned long)time(NULL),
           (unsigned long)clock() ^ (unsigned long)(uintptr_t)&tmpdir);
  CHECK(px_mkdir_p(tmpdir) == 0);
  CHECK(px_mkdir_p(tmpdir) == 0); /* exists */
  char path[400], bad[400];
  snprintf(path, sizeof path, "%s/s.cif", tmpdir);
  px_structure s = make();
  CHECK(px_structure_write_cif(path, &s, "d", NULL, 0, "pxdiff-complete run=0123") == PX_OK);
  CHECK(px_structure_file_has_trailer(path, "# pxdiff-complete run=0123") == 1);
  CHECK(px_structure_file_has_trailer(path, "# pxdiff-complete run=0124") == 0);
  CHECK(px_structure_file_has_trailer(path, "run=0123") == 0);
  char last[64];
  CHECK(px_structure_file_last_line(path, last, sizeof last) == 0 && !strcmp(last, "# pxdiff-complete run=0123"));
  CHECK(px_structure_file_last_line(path, last, 8) == -1); /* does not fit */
  char tmp[420];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "r");
  CHECK(f == NULL); /* no temp file left */
  if (f) fclose(f);
  /* a truncated file (no final newline) is not complete */
  char *text = NULL;
  size_t len = 0;
  px_structure_cif(&s, "d", NULL, 0, "pxdiff-complete run=0123", &text, &len);
  f = fopen(path, "wb");
  if (f) {
    fwrite(text, 1, len - 1, f);
    fclose(f);
  }
  CHECK(px_structure_file_has_trailer(path, "# pxdiff-complete run=0123") == 0);
  f = fopen(path, "wb");
  if (f) {
    fwrite(text, 1, len / 2, f);
    fclose(f);
  }
  CHECK(px_structure_file_has_trailer(path, "# pxdiff-complete run=0123") == 0);
  free(text);
  remove(path);
  CHECK(px_structure_file_has_trailer(path, "# pxdiff-complete run=0123") == 0); /* absent */
  /* a one-line file */
  snprintf(path, sizeof path, "%s/one", tmpdir);
  CHECK(px_write_file_atomic_msg(path, "END\n", 4) == PX_OK);
  CHECK(px_structure_file_has_trailer(path, "END") == 1);
  remove(path);
  snprintf(path, sizeof path, "%s/s.pdb", tmpdir);
  CHECK(px_structure_write_pdb(path, &s, NULL, 0) == PX_OK);
  CHECK(px_structure_file_has_trailer(path, "END") == 1);
  remove(path);
  /* unwritable: a directory below a regular file */
  snprintf(path, sizeof path, "%s/file", tmpdir);
  CHECK(px_write_file_atomic_msg(path, "x\n", 2) == PX_OK);
  snprintf(bad, sizeof bad, "%s/file/sub", tmpdir);
  errno = 0;
  CHECK(px_mkdir_p(bad) == -1 && errno == ENOTDIR);
  snprintf(bad, sizeof bad, "%s/file/s.cif", tmpdir);
  CHECK(px_structure_write_cif(bad, &s, "d", NULL, 0, NULL) == PX_ERR_IO);
  CHECK(!strncmp(px_last_error(), "cannot write ", 13) && strstr(px_last_error(), "Not a directory") &&
        !strchr(px_last_error(), '\n'));
  CHECK(px_structure_write_pdb(bad, &s, NULL, 0) == PX_ERR_IO);
  errno = 0;
  CHECK(px_mkdir_p(path) == -1 && errno == ENOTDIR); /* the path itself is a file */
  CHECK(px_mkdir_p("") == -1);
  /* a writer failure leaves nothing under the final name */
  snprintf(path, sizeof path, "%s/nan.cif", tmpdir);
  float nanxyz[NA * 3];
  memcpy(nanxyz, xyz, sizeof nanxyz);
  nanxyz[0] = NAN;
  s.xyz = nanxyz;
  CHECK(px_structure_write_cif(path, &s, "d", NULL, 0, NULL) == PX_ERR_INPUT);
  f = fopen(path, "r");
  CHECK(f == NULL);
  if (f) fclose(f);
  /* clean up */
  snprintf(path, sizeof path, "%s/file", tmpdir);
  remove(path);
  for (int up = 0; up < 3; up++) {
    remove(tmpdir);
    char *sl = strrchr(tmpdir, '/');
    if (sl) *sl = '\0';
  }
}

int main(void) {
  test_cif();
  test_cif_refusals();
  test_pdb();
  test_files();
  return tu_finish("test_structure");
}
