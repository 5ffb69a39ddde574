/* PXDesign's output mmCIF (px_pxd_cif in src/io/structure.c) against upstream's own writer:
 * tests/data/output/<name>.cif was written by pxdesign's DataDumper (protenix CIFWriter,
 * biotite 1.0.1) for the atoms and coordinates in <name>.atoms.tsv
 * (tests/ref/make_output_fixtures.py); ours must be the same bytes. Then the float32
 * formatting, the quoting, the bond rules and every refusal. Run from the repository root. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/structure.h"
#include "pxdiff.h"
#include "testutil.h"

typedef struct {
  int n, n_bond;
  char **name, **elem, **res, **chain, **strand, **entity;
  int *res_id;
  unsigned char *het;
  float *xyz;
  px_pxd_bond *bond;
  px_pxd_structure s;
} fixture;

static char *dupstr(const char *s) {
  char *d = malloc(strlen(s) + 1);
  strcpy(d, s);
  return d;
}

static int load_fixture(const char *path, fixture *fx) {
  size_t len;
  char *t = (char *)tu_slurp(path, &len);
  if (!t) return -1;
  memset(fx, 0, sizeof *fx);
  int cap = 0;
  for (size_t k = 0; k < len; k++) cap += t[k] == '\n';
  fx->name = calloc((size_t)cap, sizeof(char *));
  fx->elem = calloc((size_t)cap, sizeof(char *));
  fx->res = calloc((size_t)cap, sizeof(char *));
  fx->chain = calloc((size_t)cap, sizeof(char *));
  fx->strand = calloc((size_t)cap, sizeof(char *));
  fx->entity = calloc((size_t)cap, sizeof(char *));
  fx->res_id = calloc((size_t)cap, sizeof(int));
  fx->het = calloc((size_t)cap, 1);
  fx->xyz = calloc((size_t)cap * 3, sizeof(float));
  fx->bond = calloc((size_t)cap, sizeof(px_pxd_bond));
  char *save = NULL;
  for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#') continue;
    char *f[12];
    int nf = 0;
    char *sv = NULL;
    for (char *p = strtok_r(line, "\t ", &sv); p && nf < 12; p = strtok_r(NULL, "\t ", &sv)) f[nf++] = p;
    if (nf == 3 && !strcmp(f[0], "bond")) {
      fx->bond[fx->n_bond].a = atoi(f[1]);
      fx->bond[fx->n_bond].b = atoi(f[2]);
      fx->bond[fx->n_bond].order = 0;
      fx->n_bond++;
      continue;
    }
    if (nf != 11) {
      free(t);
      return -1;
    }
    int i = fx->n++;
    fx->name[i] = dupstr(f[0]);
    fx->elem[i] = dupstr(f[1]);
    fx->res[i] = dupstr(f[2]);
    fx->chain[i] = dupstr(f[3]);
    fx->strand[i] = dupstr(f[4]);
    fx->entity[i] = dupstr(f[5]);
    fx->res_id[i] = atoi(f[6]);
    fx->het[i] = (unsigned char)atoi(f[7]);
    for (int k = 0; k < 3; k++) fx->xyz[3 * i + k] = strtof(f[8 + k], NULL);
  }
  free(t);
  px_pxd_structure s = {fx->n,
                        fx->xyz,
                        (const char *const *)fx->name,
                        (const char *const *)fx->elem,
                        (const char *const *)fx->res,
                        (const char *const *)fx->chain,
                        (const char *const *)fx->strand,
                        (const char *const *)fx->entity,
                        fx->res_id,
                        fx->het,
                        fx->n_bond,
                        fx->bond};
  fx->s = s;
  return 0;
}

static void free_fixture(fixture *fx) {
  for (int i = 0; i < fx->n; i++) {
    free(fx->name[i]);
    free(fx->elem[i]);
    free(fx->res[i]);
    free(fx->chain[i]);
    free(fx->strand[i]);
    free(fx->entity[i]);
  }
  free(fx->name);
  free(fx->elem);
  free(fx->res);
  free(fx->chain);
  free(fx->strand);
  free(fx->entity);
  free(fx->res_id);
  free(fx->het);
  free(fx->xyz);
  free(fx->bond);
}

/* Print the first differing line of two texts. */
static void show_diff(const char *a, const char *b) {
  int line = 1;
  const char *la = a, *lb = b;
  while (*a && *a == *b) {
    if (*a == '\n') {
      line++;
      la = a + 1;
      lb = b + 1;
    }
    a++;
    b++;
  }
  const char *ea = strchr(la, '\n'), *eb = strchr(lb, '\n');
  fprintf(stderr, "first difference at line %d:\n ours:     %.*s\n upstream: %.*s\n", line,
          (int)(ea ? ea - la : (long)strlen(la)), la, (int)(eb ? eb - lb : (long)strlen(lb)), lb);
}

static const struct {
  const char *name, *task;
  int sample;
} cases[] = {{"pdl1_quick_start", "PDL1_quick_start", 0}, {"small", "small", 3}, {"one_bond", "one_bond", 1},
                {"two_chains", "two_chains", 0}};

static void test_upstream_files(void) {
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char p[256];
    fixture fx;
    snprintf(p, sizeof p, "tests/data/output/%s.atoms.tsv", cases[c].name);
    CHECK_MSG(load_fixture(p, &fx) == 0, "cannot read %s", p);
    snprintf(p, sizeof p, "tests/data/output/%s.cif", cases[c].name);
    size_t wlen = 0;
    char *want = (char *)tu_slurp(p, &wlen);
    CHECK_MSG(want != NULL, "cannot read %s", p);
    if (!want || !fx.n) {
      free(want);
      continue;
    }
    char *got = NULL;
    size_t glen = 0;
    int r = px_pxd_cif(&fx.s, cases[c].task, cases[c].sample, &got, &glen);
    CHECK_MSG(r == 0, "%s: %s", cases[c].name, px_last_error());
    if (!r) {
      int same = glen == wlen && !memcmp(got, want, wlen);
      CHECK_MSG(same, "%s: not upstream's bytes (%zu vs %zu)", cases[c].name, glen, wlen);
      if (!same) show_diff(got, want);
      /* The file writer writes the same bytes, atomically. */
      char tmpl[] = "/tmp/pxd_cifXXXXXX";
      int fd = mkstemp(tmpl);
      if (fd >= 0) {
        close(fd);
        CHECK(px_pxd_write_cif(tmpl, &fx.s, cases[c].task, cases[c].sample) == 0);
        size_t fl;
        char *ft = (char *)tu_slurp(tmpl, &fl);
        CHECK(ft && fl == wlen && !memcmp(ft, want, wlen));
        free(ft);
        char tmp2[300];
        snprintf(tmp2, sizeof tmp2, "%s.tmp", tmpl);
        CHECK(access(tmp2, F_OK) != 0);
        unlink(tmpl);
      }
      /* Extra bonds that repeat a peptide bond change nothing (biotite keeps the first). */
      if (fx.n_bond) {
        int nb = fx.s.n_bond;
        px_pxd_bond *more = calloc((size_t)nb + 2, sizeof *more);
        memcpy(more, fx.s.bond, (size_t)nb * sizeof *more);
        /* the first C-N bond of the first chain, both ways round */
        int ci = -1, ni = -1;
        for (int i = 0; i < fx.n && ni < 0; i++) {
          if (ci < 0 && !strcmp(fx.name[i], "C")) ci = i;
          else if (ci >= 0 && !strcmp(fx.name[i], "N")) ni = i;
        }
        more[nb] = (px_pxd_bond){ni, ci, 0};
        more[nb + 1] = (px_pxd_bond){fx.s.bond[0].b, fx.s.bond[0].a, 2};
        px_pxd_structure s2 = fx.s;
        s2.bond = more;
        s2.n_bond = nb + 2;
        char *g2 = NULL;
        size_t l2 = 0;
        CHECK(px_pxd_cif(&s2, cases[c].task, cases[c].sample, &g2, &l2) == 0);
        CHECK(g2 && l2 == wlen && !memcmp(g2, want, wlen));
        free(g2);
        free(more);
        /* without the extra bond its row is gone and the ids stay consecutive */
        s2 = fx.s;
        s2.n_bond = 0;
        CHECK(px_pxd_cif(&s2, cases[c].task, cases[c].sample, &g2, &l2) == 0);
        CHECK(g2 && !strstr(g2, "covale ?") && strstr(want, "covale ?"));
        free(g2);
      }
    }
    free(got);
    free(want);
    free_fixture(&fx);
  }
}

static void test_float_format(void) {
  /* numpy 1.26's str() of these float32 values (np.float32(v).astype(str)). */
  static const struct {
    float v;
    const char *s;
  } t[] = {{0.0f, "0.0"},
           {-0.0f, "-0.0"},
           {1.0f, "1.0"},
           {20.0f, "20.0"},
           {-20.225203f, "-20.225203"},
           {1e-4f, "1e-04"},
           {9.9999e-5f, "9.9999e-05"},
           {1e-5f, "1e-05"},
           {1.5e-5f, "1.5e-05"},
           {1e16f, "1e+16"},
           {9.999999e15f, "9999999000000000.0"},
           {1e15f, "1000000000000000.0"},
           {123456.7f, "123456.7"},
           {3.4028235e38f, "3.4028235e+38"},
           {1.4e-45f, "1e-45"},
           {0.1f, "0.1"},
           {1e7f, "10000000.0"},
           {16777216.0f, "16777216.0"},
           {0.00012345f, "0.00012345"},
           {0.000244140625f, "0.00024414062"}, /* an exact tie: to even, as Dragon4 */
           {-7.8666983f, "-7.8666983"}};
  char buf[48];
  for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
    px_fmt_float32(t[k].v, buf);
    CHECK_MSG(!strcmp(buf, t[k].s), "%.9g: '%s', numpy '%s'", (double)t[k].v, buf, t[k].s);
  }
  px_fmt_float32(NAN, buf);
  CHECK(!strcmp(buf, "nan"));
  px_fmt_float32(-INFINITY, buf);
  CHECK(!strcmp(buf, "-inf"));
  /* every output reads back to the same float32, over many random bit patterns */
  tu_seed();
  int bad = 0;
  for (int k = 0; k < 200000; k++) {
    uint32_t u = (uint32_t)tu_u64();
    float f;
    memcpy(&f, &u, 4);
    if (!isfinite(f)) continue;
    px_fmt_float32(f, buf);
    float back = strtof(buf, NULL);
    if (memcmp(&back, &f, 4)) bad++;
    /* shortest: one digit fewer never reads back */
  }
  CHECK_MSG(bad == 0, "%d values do not read back", bad);
  /* The exact fast path (1e-3 <= |v| < 1e7) against the general search, string for string:
   * random values across that range (uniform in log, all mantissas), every float32 of a few
   * stretches (the ends of the range, around powers of ten, ties), and random bit patterns. */
  char ref[48];
  int diff = 0;
  long n_cmp = 0;
  char first[160] = "";
  for (int k = 0; k < 400000; k++) {
    float f;
    if (k % 4 == 3) {
      uint32_t u = (uint32_t)tu_u64();
      memcpy(&f, &u, 4);
      if (!isfinite(f)) continue;
    } else {
      const double lg = -3.0 + 10.0 * (double)(tu_u64() >> 11) / 9007199254740992.0;
      f = (float)pow(10.0, lg) * ((k & 1) ? -1.0f : 1.0f);
    }
    px_fmt_float32(f, buf);
    px_fmt_float32_reference(f, ref);
    n_cmp++;
    if (strcmp(buf, ref) && !diff++) snprintf(first, sizeof first, "%.9g: fast '%s', reference '%s'", (double)f, buf, ref);
  }
  static const float around[] = {1e-3f, 1e-2f, 0.1f, 1.0f, 9.5f, 10.0f, 99.5f, 100.0f, 1e3f, 1e4f, 1e5f, 1e6f, 1e7f, 0.000244140625f, 16777216.0f * 0.25f};
  for (size_t j = 0; j < sizeof around / sizeof around[0]; j++) {
    float f = around[j];
    for (int i = 0; i < 2000; i++) f = nextafterf(f, 0.0f);
    for (int i = 0; i < 4000; i++, f = nextafterf(f, INFINITY)) {
      px_fmt_float32(f, buf);
      px_fmt_float32_reference(f, ref);
      n_cmp++;
      if (strcmp(buf, ref) && !diff++) snprintf(first, sizeof first, "%.9g: fast '%s', reference '%s'", (double)f, buf, ref);
    }
  }
  CHECK_MSG(diff == 0, "%d of %ld values differ from the reference, first %s", diff, n_cmp, first);
}

/* A tiny structure for the rules: chain A0 (3 residues, numbers 5 6 8) and B0 (2). */
static const char *nm[] = {"N", "CA", "C", "N", "CA", "C", "N", "CA", "C", "SG", "N", "C", "N", "C"};
static const char *el[] = {"N", "C", "C", "N", "C", "C", "N", "C", "C", "S", "N", "C", "N", "C"};
static const char *rn[] = {"ALA", "ALA", "ALA", "GLY", "GLY", "GLY", "CYS", "CYS", "CYS", "CYS", "xpb", "xpb", "xpb", "xpb"};
static const char *ch[] = {"A0", "A0", "A0", "A0", "A0", "A0", "A0", "A0", "A0", "A0", "B0", "B0", "B0", "B0"};
static const char *en[] = {"1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "2", "2", "2", "2"};
static const int ri[] = {5, 5, 5, 6, 6, 6, 8, 8, 8, 8, 1, 1, 2, 2};

static px_pxd_structure tiny(float *xyz, const char **names) {
  for (int i = 0; i < 14 * 3; i++) xyz[i] = (float)i * 0.5f;
  px_pxd_structure s = {14, xyz, names, el, rn, ch, NULL, en, ri, NULL, 0, NULL};
  return s;
}

static void test_rules(void) {
  float xyz[42];
  const char *names[14];
  memcpy(names, nm, sizeof names);
  px_pxd_structure s = tiny(xyz, names);
  char *out = NULL;
  size_t n;
  CHECK_MSG(px_pxd_cif(&s, "t", 0, &out, &n) == 0, "%s", px_last_error());
  if (out) {
    /* C-N bonds: 5-6 and B0 1-2; none across the 6 -> 8 gap */
    CHECK(strstr(out, "covale sing A0 A0 ALA GLY 5 6 C N . .\n"));
    CHECK(strstr(out, "covale sing B0 B0 xpb xpb 1 2 C N . .\n"));
    CHECK(!strstr(out, "GLY CYS"));
    CHECK(strstr(out, "data_t_sample_0_predicted_by_protenix\n#\n_entry.id   t\n#\n"));
    /* strand ids default to the chain ids */
    CHECK(strstr(out, "1 A0 polypeptide(L)\n2 B0 polypeptide(L)\n"));
    CHECK(out[n - 1] == '\n' && !strcmp(out + n - 3, "\n#\n"));
    free(out);
  }
  /* quoting as biotite quotes: O5' in double quotes, a space in single quotes */
  names[1] = "O5'";
  names[4] = "C A";
  CHECK(px_pxd_cif(&s, "my task", 2, &out, &n) == 0);
  if (out) {
    CHECK(strstr(out, "\"O5'\""));
    CHECK(strstr(out, "'C A'"));
    CHECK(strstr(out, "_entry.id   'my task'\n"));
    CHECK(strstr(out, "data_my task_sample_2_predicted_by_protenix\n"));
    free(out);
  }
  names[1] = "CA";
  names[4] = "CA";
  /* ".cif" in the task name vanishes from the block name, as str.replace removes it */
  CHECK(px_pxd_cif(&s, "x.cif.y", 0, &out, &n) == 0);
  if (out) {
    CHECK(!strncmp(out, "data_x.y_sample_0_predicted_by_protenix\n", 40));
    free(out);
  }
  /* an extra bond: sorted, grouped with its chain (before chain B0's bonds), order names */
  px_pxd_bond bd[1] = {{9, 2, 3}};
  s.bond = bd;
  s.n_bond = 1;
  CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == 0);
  if (out) {
    const char *x = strstr(out, "covale trip A0 A0 ALA CYS 5 8 C SG . .");
    const char *y = strstr(out, "covale sing B0");
    CHECK(x && y && x < y);
    CHECK(strstr(out, "\n2 covale trip"));
    free(out);
  }
  /* refusals: one line, no output */
  struct {
    px_pxd_bond b;
    const char *want;
  } badb[] = {{{0, 14, 0}, "out of range"}, {{0, 12, 0}, "joins chains"}, {{0, 2, 0}, "within one residue"},
              {{0, 3, 7}, "out of range"}};
  for (size_t k = 0; k < sizeof badb / sizeof badb[0]; k++) {
    s.bond = &badb[k].b;
    s.n_bond = 1;
    out = (char *)0x1;
    CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == PX_ERR_INPUT);
    CHECK_MSG(strstr(px_last_error(), badb[k].want), "%s", px_last_error());
    CHECK(out == (char *)0x1);
  }
  s.n_bond = 0;
  xyz[7] = NAN;
  CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == PX_ERR_INPUT && strstr(px_last_error(), "atom 3 (A0 ALA 5 C)"));
  xyz[7] = 1;
  names[0] = "A\"B'";
  CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == PX_ERR_INPUT && strstr(px_last_error(), "atom 1"));
  names[0] = "N\n";
  CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == PX_ERR_INPUT);
  names[0] = NULL;
  CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == PX_ERR_INPUT && strstr(px_last_error(), "no atom name"));
  names[0] = "N";
  const char *ch2[14];
  memcpy(ch2, ch, sizeof ch2);
  ch2[13] = "A0"; /* chain A0 again after B0 */
  s.chain_id = ch2;
  CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == PX_ERR_INPUT && strstr(px_last_error(), "one run"));
  s.chain_id = ch;
  CHECK(px_pxd_cif(&s, "a'b\"", 0, &out, &n) == PX_ERR_INPUT);
  s.n_atom = 0;
  CHECK(px_pxd_cif(&s, "t", 0, &out, &n) == PX_ERR_INPUT);
  s.n_atom = 14;
  CHECK(px_pxd_write_cif("/nonexistent-dir/x.cif", &s, "t", 0) == PX_ERR_IO);
}

int main(void) {
  test_upstream_files();
  test_float_format();
  test_rules();
  return tu_finish("test_pxd_cif");
}
