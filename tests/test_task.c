/* PXDesign task files (src/io/task.c, yaml.c, json.c) against upstream's own reader:
 * tests/data/tasks/<name>.expected.json is what pxdesign.utils.inputs.parse_yaml_to_json
 * wrote for <name>.yaml (tests/ref/make_task_fixtures.py), and yaml_types.expected.json is
 * PyYAML's safe_load of yaml_types.yaml. Then every refusal rule, one line each.
 * Run from the repository root. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/doc.h"
#include "io/task.h"
#include "pxdiff.h"
#include "testutil.h"

static void spit(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static int task_eq(const px_task *a, const px_task *b) {
  if (!str_eq(a->name, b->name) || !str_eq(a->structure_file, b->structure_file) ||
      a->n_chain != b->n_chain || a->binder_length != b->binder_length)
    return 0;
  for (int k = 0; k < a->n_chain; k++) {
    const px_task_chain *x = &a->chain[k], *y = &b->chain[k];
    if (!str_eq(x->id, y->id) || x->n_crop != y->n_crop || !str_eq(x->crop_text, y->crop_text) ||
        x->hotspot_given != y->hotspot_given || x->n_hotspot != y->n_hotspot ||
        !str_eq(x->msa_dir, y->msa_dir) || !str_eq(x->msa_pairing_db, y->msa_pairing_db))
      return 0;
    for (int j = 0; j < x->n_crop; j++)
      if (x->crop[j].lo != y->crop[j].lo || x->crop[j].hi != y->crop[j].hi) return 0;
    for (int j = 0; j < x->n_hotspot; j++)
      if (x->hotspot[j] != y->hotspot[j]) return 0;
  }
  return 1;
}

/* Tree equality as Python sees values: int == int, float == float, strings by bytes,
 * mappings in order. */
static int doc_eq(const px_doc *a, const px_doc *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case PX_DOC_NULL: return 1;
  case PX_DOC_BOOL:
  case PX_DOC_INT: return a->i == b->i;
  case PX_DOC_FLOAT: return a->f == b->f;
  case PX_DOC_STR: return a->text_len == b->text_len && !memcmp(a->text, b->text, a->text_len);
  default:
    if (a->n != b->n) return 0;
    for (int k = 0; k < a->n; k++) {
      if (!doc_eq(&a->item[k], &b->item[k])) return 0;
      if (a->type == PX_DOC_MAP && !doc_eq(&a->key[k], &b->key[k])) return 0;
    }
    return 1;
  }
}

static const char *const fixtures[] = {"PDL1_quick_start.yaml", "multi_chain.yaml", "crop_string.yaml",
                                       "unicode_name.yaml", "block_seq.yml", NULL};

static void test_fixtures(void) {
  for (const char *const *f = fixtures; *f; f++) {
    char yp[256], jp[256], stem[128];
    snprintf(yp, sizeof yp, "tests/data/tasks/%s", *f);
    snprintf(stem, sizeof stem, "%s", *f);
    *strrchr(stem, '.') = 0;
    snprintf(jp, sizeof jp, "tests/data/tasks/%s.expected.json", stem);
    size_t ylen = 0, jlen = 0;
    char *y = (char *)tu_slurp(yp, &ylen), *j = (char *)tu_slurp(jp, &jlen);
    CHECK_MSG(y && j, "fixture %s or %s missing", yp, jp);
    if (!y || !j) continue;
    px_task_list ly, lj;
    int ry = px_task_parse(y, ylen, 0, yp, &ly);
    CHECK_MSG(ry == 0, "%s: %s", yp, px_last_error());
    int rj = px_task_parse(j, jlen, 1, jp, &lj);
    CHECK_MSG(rj == 0, "%s: %s", jp, px_last_error());
    if (!ry) {
      char *out = NULL;
      size_t n = 0;
      CHECK(px_task_list_json(&ly, &out, &n) == 0);
      /* byte for byte what upstream wrote */
      CHECK_MSG(out && n == jlen && !memcmp(out, j, n), "%s:\n ours %s\n upstream %s", yp, out ? out : "(null)", j);
      CHECK(ly.n_warning == 0);
      free(out);
    }
    if (!rj) {
      char *out = NULL;
      size_t n = 0;
      CHECK(px_task_list_json(&lj, &out, &n) == 0);
      CHECK_MSG(out && n == jlen && !memcmp(out, j, n), "%s round trip:\n ours %s", jp, out ? out : "(null)");
      free(out);
    }
    if (!ry && !rj) {
      CHECK(ly.n == 1 && lj.n == 1);
      CHECK_MSG(task_eq(&ly.task[0], &lj.task[0]), "%s: YAML and JSON forms differ", yp);
    }
    px_task_list_free(&ly);
    px_task_list_free(&lj);
    free(y);
    free(j);
  }
}

static void test_quick_start_fields(void) {
  px_task_list l;
  size_t n;
  char *y = (char *)tu_slurp("tests/data/tasks/PDL1_quick_start.yaml", &n);
  CHECK(y != NULL);
  if (!y) return;
  CHECK(px_task_parse(y, n, 0, "tests/data/tasks/PDL1_quick_start.yaml", &l) == 0);
  free(y);
  if (l.n != 1) return;
  const px_task *t = &l.task[0];
  CHECK(!strcmp(t->name, "PDL1_quick_start"));
  CHECK(!strcmp(t->structure_file, "tests/data/structures/5o45.cif"));
  CHECK(t->binder_length == 80);
  CHECK(t->n_chain == 1 && !strcmp(t->chain[0].id, "A"));
  CHECK(t->chain[0].n_crop == 1 && t->chain[0].crop[0].lo == 1 && t->chain[0].crop[0].hi == 116);
  CHECK(t->chain[0].n_hotspot == 3 && t->chain[0].hotspot[0] == 40 && t->chain[0].hotspot[1] == 99 &&
        t->chain[0].hotspot[2] == 107);
  CHECK(t->chain[0].msa_dir == NULL);
  px_task_list_free(&l);

  /* multi_chain: the crop list and the other chains' forms */
  y = (char *)tu_slurp("tests/data/tasks/multi_chain.yaml", &n);
  if (!y || px_task_parse(y, n, 0, "multi_chain.yaml", &l)) {
    CHECK(0);
    free(y);
    return;
  }
  free(y);
  t = &l.task[0];
  CHECK(t->n_chain == 5);
  const px_task_chain *a = &t->chain[0];
  CHECK(a->n_crop == 3 && a->crop[0].lo == 1 && a->crop[0].hi == 50 && a->crop[1].lo == 60 &&
        a->crop[1].hi == 60 && a->crop[2].lo == 70 && a->crop[2].hi == 80);
  CHECK(a->n_hotspot == 2 && a->hotspot[1] == 44);
  CHECK(a->msa_dir && !strcmp(a->msa_dir, "tests/data/tasks/msa_A"));
  for (int k = 1; k < 5; k++) CHECK(t->chain[k].n_crop == 0 && !t->chain[k].crop_text);
  CHECK(t->chain[3].hotspot_given == 1 && t->chain[3].n_hotspot == 0);
  CHECK(t->chain[1].hotspot_given == 0);
  px_task_list_free(&l);

  /* crop_string: spaces inside pieces, as Python's int() reads them */
  y = (char *)tu_slurp("tests/data/tasks/crop_string.yaml", &n);
  if (y && px_task_parse(y, n, 0, "crop_string.yaml", &l) == 0) {
    a = &l.task[0].chain[0];
    CHECK(a->n_crop == 3 && a->crop[1].lo == 40 && a->crop[1].hi == 132 && a->crop[2].lo == 140);
    CHECK(l.task[0].binder_length == 120);
    px_task_list_free(&l);
  } else
    CHECK(0);
  free(y);
}

static void test_yaml_types(void) {
  size_t yl, jl;
  char *y = (char *)tu_slurp("tests/data/tasks/yaml_types.yaml", &yl), *j = (char *)tu_slurp("tests/data/tasks/yaml_types.expected.json", &jl);
  CHECK(y && j);
  if (y && j) {
    px_doc a, b;
    char err[256];
    int ra = px_yaml_parse(y, yl, "yaml_types.yaml", &a, err, sizeof err);
    CHECK_MSG(ra == 0, "%s", err);
    int rb = px_json_parse(j, jl, "yaml_types.expected.json", &b, err, sizeof err);
    CHECK_MSG(rb == 0, "%s", err);
    if (!ra && !rb) {
      CHECK(doc_eq(&a, &b));
      /* find the first differing scalar, for the failure message */
      const px_doc *sa = px_doc_get(&a, "scalars"), *sb = px_doc_get(&b, "scalars");
      if (sa && sb && sa->n == sb->n)
        for (int k = 0; k < sa->n; k++)
          CHECK_MSG(doc_eq(&sa->item[k], &sb->item[k]), "scalar %d '%s': %s vs PyYAML %s", k,
                    sa->item[k].text ? sa->item[k].text : "", px_doc_type_name(sa->item[k].type),
                    px_doc_type_name(sb->item[k].type));
      else
        CHECK(0);
    }
    px_doc_free(&a);
    px_doc_free(&b);
  }
  free(y);
  free(j);
  /* what JSON cannot carry */
  px_doc d;
  char err[256];
  CHECK(px_yaml_parse("[.inf, -.Inf, .NaN]", 19, "x", &d, err, sizeof err) == 0);
  if (d.n == 3) {
    CHECK(d.item[0].type == PX_DOC_FLOAT && d.item[0].f > 1e308);
    CHECK(d.item[1].type == PX_DOC_FLOAT && d.item[1].f < -1e308);
    CHECK(d.item[2].type == PX_DOC_FLOAT && d.item[2].f != d.item[2].f);
  }
  px_doc_free(&d);
  CHECK(px_yaml_parse("", 0, "x", &d, err, sizeof err) == 0 && d.type == PX_DOC_NULL);
  px_doc_free(&d);
  CHECK(px_yaml_parse("# only a comment\n", 17, "x", &d, err, sizeof err) == 0 && d.type == PX_DOC_NULL);
  px_doc_free(&d);
  CHECK(px_json_parse("{\"a\": \"\\ud83d\\ude00\\u00e9\"}", 27, "x", &d, err, sizeof err) == 0);
  const px_doc *s = px_doc_get(&d, "a");
  CHECK(s && s->type == PX_DOC_STR && !strcmp(s->text, "\xF0\x9F\x98\x80\xC3\xA9"));
  px_doc_free(&d);
}

typedef struct {
  int is_json;
  const char *text;
  const char *want; /* substring of the message */
} bad_case;

#define Y 0
#define J 1
#define T_OK_TARGET "target:\n  file: x.cif\n  chains:\n    A: all\n"
#define J_HEAD "[{\"name\": \"t\", \"condition\": {\"structure_file\": \"x.cif\", \"filter\": {\"chain_id\": [\"A\"]"
#define J_GEN "\"generation\": [{\"type\": \"protein\", \"length\": 50, \"count\": 1}]"

static const bad_case bad[] = {
    /* YAML syntax */
    {Y, "binder_length: 80\ntarget: {file: x.cif\n", "unterminated flow mapping"},
    {Y, "binder_length: 80\n  x: 1\n", "indentation"},
    {Y, "a: 1\na: 2\n", "duplicate key 'a'"},
    {Y, "a: &x 1\n", "anchors"},
    {Y, "a: *x\n", "aliases"},
    {Y, "a: !!str 1\n", "tags"},
    {Y, "a: |\n  text\n", "block scalars"},
    {Y, "a: 'open\n", "multi-line"},
    {Y, "a: \"bad \\q\"\n", "unknown escape"},
    {Y, "a:\n\t- 1\n", "tab"},
    {Y, "a: b: c\n", "mapping cannot start"},
    {Y, "a: 1\n---\nb: 2\n", "several YAML documents"},
    {Y, "? a\n: 1\n", "complex mapping keys"},
    {Y, "a: [1, 2] x\n", "unexpected text after a value"},
    {Y, "a: [1, [2] 3]\n", "expected ',' or ']'"},
    {Y, "- a\nb: 1\n", "unexpected content"},
    {Y, "a: [1\n", "unterminated flow list"},
    {Y, "a: \xff\n", "not UTF-8"},
    {Y, "a: 1\n\0b: 2\n", "NUL"},
    /* YAML task rules */
    {Y, "", "empty"},
    {Y, "- 1\n", "a task file is a mapping"},
    {Y, T_OK_TARGET, "binder_length"},
    {Y, "binder_length:\n" T_OK_TARGET, "binder_length must be an integer"},
    {Y, "binder_length: eighty\n" T_OK_TARGET, "binder_length must be an integer number of residues, found eighty"},
    {Y, "binder_length: 80.5\n" T_OK_TARGET, "binder_length 80.5 is not an integer"},
    {Y, "binder_length: 0\n" T_OK_TARGET, "at least 1"},
    {Y, "binder_length: -5\n" T_OK_TARGET, "at least 1"},
    {Y, "binder_length: 10001\n" T_OK_TARGET, "absurd"},
    {Y, "binder_length: 99999999999999999999999\n" T_OK_TARGET, "absurd"},
    {Y, "binder_length: \"99999999999999999999999\"\n" T_OK_TARGET, "absurd"},
    {Y, "binder_length: [80]\n" T_OK_TARGET, "found list"},
    {Y, "binder_length: yes\n" T_OK_TARGET, "found boolean"},
    {Y, "binder_length: 80\n", "missing required field 'target'"},
    {Y, "binder_length: 80\ntarget: x.cif\n", "target must be a mapping"},
    {Y, "binder_length: 80\ntarget:\n  chains: {A: all}\n", "target.file"},
    {Y, "binder_length: 80\ntarget:\n  file: [x.cif]\n  chains: {A: all}\n", "target.file must be a path"},
    {Y, "binder_length: 80\ntarget:\n  file: x.mmcif\n  chains: {A: all}\n", "not a .cif or .pdb"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n", "target.chains"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {}\n", "target.chains"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: [A, B]\n", "found a list"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: all, A: all}\n", "duplicate key 'A'"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {1: all, '1': all}\n", "chain 1 is listed twice"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {yes: all}\n", "quote it"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {'': all}\n", "empty chain id"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: some}\n", "found some"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: [1]}\n", "expected a mapping"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: 5}}\n", "crop must be a string or a list"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: [1.5]}}\n", "crop entry 1.5"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: [null]}}\n", "crop entry null"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: \"116-1\"}}\n", "reversed (write 1-116)"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: \"1-x\"}}\n", "not a range"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: \"1-5,\"}}\n", "stray ','"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: \"-3-5\"}}\n", "negative"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: \"abc\"}}\n", "'abc' is not a residue number"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: [all]}}\n", "'all' is not a residue number"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {crop: \"1-999999999\"}}\n", "out of range"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {hotspots: [\"40\"]}}\n", "hotspot 40 is not a residue number"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {hotspots: [4.5]}}\n", "hotspot 4.5"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {hotspots: {a: 1}}}\n", "list of residue numbers"},
    {Y, "binder_length: 80\ntarget:\n  file: x.cif\n  chains: {A: {msa: [d]}}\n", "msa must be a directory"},
    {Y, "task_name: a/b\nbinder_length: 80\n" T_OK_TARGET, "path separator"},
    {Y, "task_name: ..\nbinder_length: 80\n" T_OK_TARGET, "cannot name an output directory"},
    {Y, "task_name:\nbinder_length: 80\n" T_OK_TARGET, "task_name must be a name"},
    {Y, "task_name: ''\nbinder_length: 80\n" T_OK_TARGET, "task name is empty"},
    /* JSON syntax */
    {J, "[{\"name\": \"t\",}]", "expected a string key"},
    {J, "[1, 2", "expected ',' or ']'"},
    {J, "{\"a\": 1, \"a\": 2}", "duplicate key \"a\""},
    {J, "[\"\\ud800\"]", "unpaired surrogate"},
    {J, "[01]", "leading zero"},
    {J, "[NaN]", "unexpected 'N'"},
    {J, "[] []", "after the document"},
    {J, "[\"a\tb\"]", "control character"},
    {J, "", "unexpected end"},
    /* JSON task rules */
    {J, "{\"name\": \"t\"}", "put the task inside [ ]"},
    {J, "[]", "task list is empty"},
    {J, "[1]", "a task must be a JSON object"},
    {J, "[{\"condition\": {}}]", "without a \"name\""},
    {J, "[{\"name\": \"t\"}]", "unconditional design"},
    {J, "[{\"name\": \"t\", \"condition\": {\"filter\": {\"chain_id\": [\"A\"]}}}]", "structure_file"},
    {J, "[{\"name\": \"t\", \"condition\": {\"structure_file\": \"x.cif\"}}]", "chain_id"},
    {J, J_HEAD "}}}]", "without a \"generation\""},
    {J, J_HEAD "}}, \"generation\": []}]", "no binder to design"},
    {J, J_HEAD "}}, \"generation\": [{\"length\": 5, \"count\": 1}, {\"length\": 5, \"count\": 1}]}]", "several"},
    {J, J_HEAD "}}, \"generation\": [{\"length\": 5, \"count\": 2}]}]", "count 2"},
    {J, J_HEAD "}}, \"generation\": [{\"length\": 5}]}]", "without a \"count\""},
    {J, J_HEAD "}}, \"generation\": [{\"count\": 1}]}]", "without a \"length\""},
    {J, J_HEAD "}}, \"generation\": [{\"length\": 0, \"count\": 1}]}]", "at least 1"},
    {J, J_HEAD "}}, \"generation\": [{\"length\": 20000, \"count\": 1}]}]", "absurd"},
    {J, J_HEAD "}}, \"generation\": [{\"length\": \"5\", \"count\": 1}]}]", "must be an integer"},
    {J, J_HEAD "}}, \"generation\": [{\"type\": \"dna\", \"length\": 5, \"count\": 1}]}]", "only \"protein\""},
    {J, J_HEAD ", \"crop\": {\"B\": \"1-5\"}}}, " J_GEN "}]", "chain B, which condition.filter.chain_id does not list"},
    {J, J_HEAD ", \"crop\": {\"A\": \"9-5\"}}}, " J_GEN "}]", "reversed"},
    {J, J_HEAD ", \"crop\": {\"A\": [\"1-5\"]}}}, " J_GEN "}]", "a crop must be a string"},
    {J, J_HEAD "}}, \"hotspot\": {\"B\": [1]}, " J_GEN "}]", "hotspots given for chain B"},
    {J, J_HEAD "}}, \"hotspot\": {\"A\": [\"1\"]}, " J_GEN "}]", "not a residue number"},
    {J, J_HEAD "}, \"msa\": {\"A\": {}}}, " J_GEN "}]", "precomputed_msa_dir"},
    {J, "[{\"name\": \"t\", \"condition\": {\"structure_file\": \"x.cif\", \"filter\": {\"chain_id\": [\"A\", \"A\"]}}, " J_GEN "}]", "listed twice"},
    {J, "[{\"name\": \"t\", \"condition\": {\"structure_file\": \"x.cif\", \"filter\": {\"chain_id\": []}}, " J_GEN "}]", "lists no chain"},
    {J, J_HEAD "}}, \"sequences\": [], " J_GEN "}]", "\"sequences\""},
    {J, J_HEAD "}, \"ligands\": []}, " J_GEN "}]", "ligands"},
    {J, "[{\"name\": \"t\", \"condition\": {\"structure_file\": \"x.pkl.gz\", \"filter\": {\"chain_id\": [\"A\"]}}, " J_GEN "}]", "not a .cif or .pdb"},
    {J, "", "two tasks are named 't'"}, /* text made in test_errors */
};

static void test_errors(void) {
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    const bad_case *b = &bad[k];
    char text[2048];
    snprintf(text, sizeof text, "%s", b->text);
    if (strstr(b->want, "two tasks")) /* two copies of one task */
      snprintf(text, sizeof text, "%s}}, %s}, %s}}, %s}]", J_HEAD, J_GEN, J_HEAD + 1, J_GEN);
    size_t len = strlen(text);
    if (strstr(b->want, "NUL")) len = 12;
    px_task_list l;
    memset(&l, 0x55, sizeof l);
    const char *name = b->is_json ? "bad.json" : "bad.yaml";
    int r = px_task_parse(text, len, b->is_json, name, &l);
    const char *m = px_last_error();
    CHECK_MSG(r != 0, "case %zu accepted: %s", k, b->text);
    if (!r) {
      px_task_list_free(&l);
      continue;
    }
    CHECK_MSG(r == PX_ERR_FORMAT || r == PX_ERR_INPUT, "case %zu: code %d", k, r);
    CHECK_MSG(strstr(m, b->want) != NULL, "case %zu: want '%s' in '%s'", k, b->want, m);
    CHECK_MSG(!strncmp(m, name, strlen(name)), "case %zu: message does not name the file: %s", k, m);
    CHECK_MSG(!strchr(m, '\n'), "case %zu: several lines", k);
    CHECK(l.n == 0 && l.task == NULL && l.warning == NULL);
  }
}

static void test_accepts(void) {
  /* Forms upstream accepts, and what they mean. */
  px_task_list l;
  const char *y = "binder_length: \" 80 \"\ntarget:\n  file: x.pdb\n  chains:\n    A: Full\n    B: {crop: ALL}\n"
                  "    C: {crop: [], hotspots: 7, msa: false}\n";
  CHECK_MSG(px_task_parse(y, strlen(y), 0, "/some/dir/my.task.yaml", &l) == 0, "%s", px_last_error());
  if (l.n == 1) {
    CHECK(!strcmp(l.task[0].name, "my.task"));
    CHECK(l.task[0].binder_length == 80);
    for (int k = 0; k < 3; k++) CHECK(l.task[0].chain[k].n_crop == 0 && !l.task[0].chain[k].crop_text);
    CHECK(l.task[0].chain[2].n_hotspot == 1 && l.task[0].chain[2].hotspot[0] == 7);
    CHECK(l.task[0].chain[2].msa_dir == NULL);
    px_task_list_free(&l);
  }
  /* unknown keys: ignored as upstream ignores them, with a warning naming the line */
  y = "binder_length: 80\nseed: 3\ntarget:\n  file: x.cif\n  chains:\n    A: {hotspot: [40]}\n";
  CHECK(px_task_parse(y, strlen(y), 0, "w.yaml", &l) == 0);
  CHECK(l.n_warning == 2);
  if (l.n_warning == 2) {
    CHECK(strstr(l.warning[0], "w.yaml:2:") && strstr(l.warning[0], "'seed'"));
    CHECK(strstr(l.warning[1], "w.yaml:6:") && strstr(l.warning[1], "'hotspot'") && strstr(l.warning[1], "chain A"));
  }
  CHECK(l.n == 1 && l.task[0].chain[0].n_hotspot == 0);
  px_task_list_free(&l);
  /* a JSON list of two tasks */
  const char *j = "[{\"name\": \"a\", \"condition\": {\"structure_file\": \"x.cif\", \"filter\": {\"chain_id\": [\"A\"], "
                  "\"crop\": {\"A\": null}}}, \"generation\": [{\"length\": 5, \"count\": 1}]},"
                  " {\"name\": \"b\", \"condition\": {\"structure_file\": \"y.cif\", \"filter\": {\"chain_id\": [\"B\", \"C\"]}},"
                  " \"hotspot\": {\"C\": [3]}, \"generation\": [{\"type\": \"protein\", \"length\": 6, \"count\": 1}]}]";
  CHECK_MSG(px_task_parse(j, strlen(j), 1, "two.json", &l) == 0, "%s", px_last_error());
  if (l.n == 2) {
    CHECK(l.task[0].binder_length == 5 && l.task[1].binder_length == 6);
    CHECK(l.task[1].n_chain == 2 && l.task[1].chain[1].n_hotspot == 1 && l.task[1].chain[1].hotspot[0] == 3);
    char *out;
    size_t n;
    CHECK(px_task_list_json(&l, &out, &n) == 0);
    px_task_list l2;
    CHECK(px_task_parse(out, n, 1, "again.json", &l2) == 0);
    CHECK(l2.n == 2 && task_eq(&l.task[0], &l2.task[0]) && task_eq(&l.task[1], &l2.task[1]));
    px_task_list_free(&l2);
    free(out);
  }
  px_task_list_free(&l);
}

/* px_task_read: extension, file checks, and relative paths taken from the current
 * directory (not the task file's). */
static void test_read(void) {
  char tmpl[] = "/tmp/pxtaskXXXXXX";
  char *dir = mkdtemp(tmpl);
  CHECK(dir != NULL);
  if (!dir) return;
  char cwd[1024];
  if (!getcwd(cwd, sizeof cwd)) return;
  char p[1200];
  {
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/sub/msa", dir);
    CHECK(system(cmd) == 0);
  }
  snprintf(p, sizeof p, "%s/top.cif", dir);
  spit(p, "data_x\n");
  snprintf(p, sizeof p, "%s/sub/beside.cif", dir);
  spit(p, "data_x\n");
  snprintf(p, sizeof p, "%s/sub/msa/pairing.a3m", dir);
  spit(p, ">q\nA\n");
  snprintf(p, sizeof p, "%s/sub/t1.yaml", dir);
  spit(p, "binder_length: 9\ntarget:\n  file: top.cif\n  chains: {A: all}\n");
  snprintf(p, sizeof p, "%s/sub/t2.yaml", dir);
  spit(p, "binder_length: 9\ntarget:\n  file: beside.cif\n  chains: {A: all}\n");
  snprintf(p, sizeof p, "%s/sub/t3.YML", dir);
  spit(p, "binder_length: 9\ntarget:\n  file: top.cif\n  chains: {A: {msa: sub/msa}}\n");
  snprintf(p, sizeof p, "%s/sub/t4.json", dir);
  spit(p, "[{\"name\": \"t\", \"condition\": {\"structure_file\": \"top.cif\", \"filter\": {\"chain_id\": [\"A\"]}}, "
          "\"generation\": [{\"length\": 5, \"count\": 1}]}]");
  snprintf(p, sizeof p, "%s/sub/t5.txt", dir);
  spit(p, "binder_length: 9\n");
  CHECK(chdir(dir) == 0);
  px_task_list l;
  CHECK_MSG(px_task_read("sub/t1.yaml", &l) == 0, "%s", px_last_error());
  if (l.n == 1) CHECK(!strcmp(l.task[0].name, "t1") && !strcmp(l.task[0].structure_file, "top.cif"));
  px_task_list_free(&l);
  CHECK(px_task_read("sub/t2.yaml", &l) == PX_ERR_IO);
  CHECK(strstr(px_last_error(), "beside.cif not found") && strstr(px_last_error(), "current directory"));
  CHECK(px_task_read("sub/t3.YML", &l) == PX_ERR_IO);
  CHECK(strstr(px_last_error(), "sub/msa/non_pairing.a3m not found"));
  snprintf(p, sizeof p, "%s/sub/msa/non_pairing.a3m", dir);
  spit(p, ">q\nA\n");
  CHECK_MSG(px_task_read("sub/t3.YML", &l) == 0, "%s", px_last_error());
  if (l.n == 1) CHECK(l.task[0].chain[0].msa_dir && !strcmp(l.task[0].chain[0].msa_dir, "sub/msa"));
  px_task_list_free(&l);
  CHECK_MSG(px_task_read("sub/t4.json", &l) == 0, "%s", px_last_error());
  px_task_list_free(&l);
  CHECK(px_task_read("sub/t5.txt", &l) == PX_ERR_INPUT && strstr(px_last_error(), ".yaml, .yml or .json"));
  CHECK(px_task_read("sub/none.yaml", &l) == PX_ERR_IO && strstr(px_last_error(), "sub/none.yaml"));
  CHECK(chdir(cwd) == 0);
  char cmd[1300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  /* The committed quick-start task and its structure (a missing file is a failure). */
  CHECK_MSG(px_task_read("tests/data/tasks/PDL1_quick_start.yaml", &l) == 0, "%s", px_last_error());
  px_task_list_free(&l);
}

int main(void) {
  test_fixtures();
  test_quick_start_fields();
  test_yaml_types();
  test_errors();
  test_accepts();
  test_read();
  return tu_finish("test_task");
}
