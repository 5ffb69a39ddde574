/* The featurizer (src/featurize) against upstream PXDesign's own featurizer, and its refusals.
 *
 * 1. Every case tests/data/featurize/<case>.yaml is read with the task and structure readers
 *    and featurized with the augmentation off; tests/data/featurize/<case>.safetensors holds
 *    what upstream's featurizer made of the same files (tests/ref/make_feature_fixtures.py,
 *    upstream's CCD conformers = the CCD ideal coordinates = the built-in table). Every
 *    integer and one-hot feature must be equal, ref_pos within 1e-5, and the annotations
 *    for the output writer equal.
 * 2. The augmentation by invariants: per-residue distances are the conformer's, residue
 *    centroids move by at most sqrt(3) A, the same seed gives the same bytes, another seed
 *    other positions, and nothing but ref_pos changes.
 * 3. Conformer tables: the built-in one, a file's coordinates reaching ref_pos, bad files.
 * 4. Every refusal: one line, PX_ERR_INPUT, no output.
 * Run from the repository root (or set PXDIFF_TEST_DATA to a copy of tests/data). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "featurize/featurize.h"
#include "featurize/residue_table.h"
#include "io/structure_in.h"
#include "io/task.h"
#include "io/tensorfile.h"
#include "platform.h"
#include "testutil.h"

static const char *data_dir(void) {
  const char *d = getenv("PXDIFF_TEST_DATA");
  return d && d[0] ? d : "tests/data";
}

/* ------------------------------------------------------------ fixture I/O -- */

/* A fixture tensor as int64 (any integer dtype) or float; NULL (and a failed check) if absent
 * or of another size. */
static int64_t *fx_ints(const px_tensorfile *tf, const char *name, int64_t numel) {
  const px_tensor_entry *e = px_tensorfile_find(tf, name);
  CHECK_MSG(e != NULL, "fixture %s lacks %s", tf->path, name);
  if (!e) return NULL;
  CHECK_MSG(px_entry_numel(e) == numel, "%s: %s has %lld values, expected %lld", tf->path, name,
            (long long)px_entry_numel(e), (long long)numel);
  if (px_entry_numel(e) != numel) return NULL;
  const size_t es = px_dtype_size(e->dtype);
  unsigned char *raw = malloc((size_t)numel * es + 1);
  int64_t *v = malloc((size_t)numel * sizeof *v + 1);
  if (!raw || !v || px_file_pread(tf->fd, raw, (size_t)numel * es, e->offset)) {
    CHECK_MSG(0, "%s: cannot read %s", tf->path, name);
    free(raw);
    free(v);
    return NULL;
  }
  for (int64_t i = 0; i < numel; i++) {
    const unsigned char *p = raw + (size_t)i * es;
    switch (e->dtype) {
      case PX_DT_I8: v[i] = *(const int8_t *)p; break;
      case PX_DT_U8: case PX_DT_BOOL: v[i] = *p; break;
      case PX_DT_I16: { int16_t x; memcpy(&x, p, 2); v[i] = x; } break;
      case PX_DT_I32: { int32_t x; memcpy(&x, p, 4); v[i] = x; } break;
      case PX_DT_I64: { int64_t x; memcpy(&x, p, 8); v[i] = x; } break;
      default: CHECK_MSG(0, "%s: %s is not an integer tensor", tf->path, name); free(raw); free(v); return NULL;
    }
  }
  free(raw);
  return v;
}

static float *fx_floats(const px_tensorfile *tf, const char *name, int64_t numel) {
  const px_tensor_entry *e = px_tensorfile_find(tf, name);
  CHECK_MSG(e != NULL, "fixture %s lacks %s", tf->path, name);
  if (!e || px_entry_numel(e) != numel) {
    CHECK_MSG(!e, "%s: %s has the wrong size", tf->path, name);
    return NULL;
  }
  float *v = malloc((size_t)numel * sizeof *v);
  char err[256];
  if (!v || px_tensorfile_read_f32(tf, e, v, err, sizeof err)) {
    CHECK_MSG(0, "%s: %s", tf->path, err);
    free(v);
    return NULL;
  }
  return v;
}

/* Count mismatches of an int64 feature against the fixture, report the first. */
static void cmp_i64(const char *cs, const char *name, const int64_t *got, const int64_t *ref, int64_t n) {
  if (!ref) return;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++)
    if (got[i] != ref[i]) {
      if (first < 0) first = i;
      bad++;
    }
  CHECK_MSG(bad == 0, "%s: %s differs at %lld places (first [%lld]: %lld vs upstream %lld)", cs, name,
            (long long)bad, (long long)first, first >= 0 ? (long long)got[first] : 0LL,
            first >= 0 ? (long long)ref[first] : 0LL);
}

static void cmp_f_as_i(const char *cs, const char *name, const float *got, const int64_t *ref, int64_t n) {
  if (!ref) return;
  int64_t *g = malloc((size_t)n * sizeof *g + 1);
  for (int64_t i = 0; i < n; i++) g[i] = got[i] == (float)(int64_t)got[i] ? (int64_t)got[i] : INT64_MIN;
  cmp_i64(cs, name, g, ref, n);
  free(g);
}

/* A one-hot [n, width] float feature against the fixture's index of its one. */
static void cmp_onehot(const char *cs, const char *name, const float *got, int64_t n, int width,
                       const int64_t *ref_index) {
  if (!ref_index) return;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++) {
    int ones = 0, ok = 1;
    for (int k = 0; k < width; k++) {
      const float v = got[i * width + k];
      if (v == 1.0f) ones++;
      else if (v != 0.0f) ok = 0;
    }
    if (!ok || ones != 1 || ref_index[i] < 0 || ref_index[i] >= width || got[i * width + ref_index[i]] != 1.0f) {
      if (first < 0) first = i;
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "%s: %s differs in %lld rows (first row %lld)", cs, name, (long long)bad, (long long)first);
}

/* Char annotations: fixture [n, width] uint8, NUL-padded. */
static void cmp_chars(const char *cs, const char *name, const px_tensorfile *tf, int64_t n, int width,
                      const char *got, size_t stride) {
  int64_t *ref = fx_ints(tf, name, n * width);
  if (!ref) return;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++) {
    char r[8] = {0};
    for (int k = 0; k < width; k++) r[k] = (char)ref[i * width + k];
    if (strcmp(r, got + (size_t)i * stride)) {
      if (first < 0) first = i;
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "%s: %s differs at %lld atoms (first %lld: \"%s\")", cs, name, (long long)bad,
            (long long)first, first >= 0 ? got + (size_t)first * stride : "");
  free(ref);
}

/* ---------------------------------------------------------- loading a case -- */

typedef struct {
  px_task_list tl;
  px_structure_in *s;
} loaded;

static int load_case(const char *yaml, loaded *L) {
  memset(L, 0, sizeof *L);
  if (px_task_read(yaml, &L->tl) != PX_OK) {
    CHECK_MSG(0, "%s: %s", yaml, px_last_error());
    return -1;
  }
  CHECK(L->tl.n == 1);
  if (px_structure_read(L->tl.task[0].structure_file, &L->s) != PX_OK) {
    CHECK_MSG(0, "%s: %s", L->tl.task[0].structure_file, px_last_error());
    px_task_list_free(&L->tl);
    return -1;
  }
  return 0;
}

static void unload(loaded *L) {
  px_structure_in_free(L->s);
  px_task_list_free(&L->tl);
}

/* ------------------------------------------------------- upstream fixtures -- */

static void test_case(const char *cs) {
  char yaml[1024], fx[1024];
  snprintf(yaml, sizeof yaml, "%s/featurize/%s.yaml", data_dir(), cs);
  snprintf(fx, sizeof fx, "%s/featurize/%s.safetensors", data_dir(), cs);
  loaded L;
  if (load_case(yaml, &L)) return;
  px_design_input *d = NULL;
  const int rc = px_featurize(L.s, &L.tl.task[0], NULL, 12345, 0, &d);
  CHECK_MSG(rc == PX_OK, "%s: %s", cs, px_last_error());
  px_tensorfile tf;
  char err[256];
  const int frc = px_tensorfile_open(fx, &tf, err, sizeof err);
  CHECK_MSG(frc == 0, "%s: %s", cs, err);
  if (rc != PX_OK || frc != 0) {
    if (!frc) px_tensorfile_close(&tf);
    px_design_input_free(d);
    unload(&L);
    return;
  }
  const px_tensor_entry *ti = px_tensorfile_find(&tf, "token_index"), *rp = px_tensorfile_find(&tf, "ref_pos");
  const int64_t T = ti ? ti->shape[0] : -1, N = rp ? rp->shape[0] : -1;
  CHECK_MSG(d->n_token == T && d->n_atom == N, "%s: T=%d N=%d, upstream T=%lld N=%lld", cs, d->n_token, d->n_atom,
            (long long)T, (long long)N);
  if (d->n_token != T || d->n_atom != N) goto out;

  /* Token features. */
  static const char *const tok[] = {"token_index", "residue_index", "asym_id", "entity_id", "sym_id"};
  const int64_t *mine[] = {d->token_index, d->residue_index, d->asym_id, d->entity_id, d->sym_id};
  for (int k = 0; k < 5; k++) {
    int64_t *r = fx_ints(&tf, tok[k], T);
    cmp_i64(cs, tok[k], mine[k], r, T);
    free(r);
  }
  int64_t *r = fx_ints(&tf, "restype_index", T);
  cmp_onehot(cs, "restype", d->restype, T, PX_FEAT_N_RESTYPE, r);
  free(r);
  r = fx_ints(&tf, "hotspot", T);
  cmp_f_as_i(cs, "hotspot", d->hotspot, r, T);
  free(r);
  r = fx_ints(&tf, "conditional_templ", T * T);
  cmp_i64(cs, "conditional_templ", d->conditional_templ, r, T * T);
  free(r);
  r = fx_ints(&tf, "conditional_templ_mask", T * T);
  if (r) {
    int64_t *g = malloc((size_t)(T * T) * sizeof *g);
    for (int64_t i = 0; i < T * T; i++) g[i] = d->conditional_templ_mask[i];
    cmp_i64(cs, "conditional_templ_mask", g, r, T * T);
    free(g);
  }
  free(r);
  float *dm = fx_floats(&tf, "deletion_mean", T);
  if (dm) {
    int zero = 1;
    for (int64_t i = 0; i < T; i++) zero &= dm[i] == 0.0f && d->deletion_mean[i] == 0.0f;
    CHECK_MSG(zero, "%s: deletion_mean is not zeros", cs);
  }
  free(dm);

  /* Atom features. */
  float *pos = fx_floats(&tf, "ref_pos", N * 3);
  double worst = -1;
  if (pos) {
    worst = 0;
    int64_t at = -1;
    for (int64_t i = 0; i < N * 3; i++) {
      const double e = fabs((double)d->ref_pos[i] - pos[i]);
      if (!(e <= worst)) {
        worst = isnan(e) ? INFINITY : e;
        at = i / 3;
      }
    }
    CHECK_MSG(worst <= 1e-5, "%s: ref_pos differs by %.3g A (atom %lld)", cs, worst, (long long)at);
  }
  free(pos);
  r = fx_ints(&tf, "ref_mask", N);
  cmp_f_as_i(cs, "ref_mask", d->ref_mask, r, N);
  free(r);
  r = fx_ints(&tf, "ref_charge", N);
  cmp_f_as_i(cs, "ref_charge", d->ref_charge, r, N);
  free(r);
  r = fx_ints(&tf, "ref_element_index", N);
  cmp_onehot(cs, "ref_element", d->ref_element, N, 128, r);
  free(r);
  r = fx_ints(&tf, "ref_atom_name_chars_index", N * 4);
  cmp_onehot(cs, "ref_atom_name_chars", d->ref_atom_name_chars, N * 4, 64, r);
  free(r);
  r = fx_ints(&tf, "ref_space_uid", N);
  cmp_i64(cs, "ref_space_uid", d->ref_space_uid, r, N);
  free(r);
  r = fx_ints(&tf, "atom_to_token_idx", N);
  cmp_i64(cs, "atom_to_token_idx", d->atom_to_token_idx, r, N);
  free(r);

  /* Annotations for the writer. */
  cmp_chars(cs, "atom_name", &tf, N, 4, d->atom_name[0], sizeof d->atom_name[0]);
  cmp_chars(cs, "element", &tf, N, 2, d->element[0], sizeof d->element[0]);
  cmp_chars(cs, "res_name", &tf, N, 4, d->res_name[0], sizeof d->res_name[0]);
  {
    char (*lab)[8] = malloc((size_t)N * sizeof *lab);
    for (int64_t i = 0; i < N; i++) memcpy(lab[i], d->chain[d->atom_chain[i]].label, 8);
    cmp_chars(cs, "chain_id", &tf, N, 4, lab[0], sizeof lab[0]);
    int64_t *ent = malloc((size_t)N * sizeof *ent), *rid = malloc((size_t)N * sizeof *rid),
            *res = malloc((size_t)N * sizeof *res);
    for (int64_t i = 0; i < N; i++) {
      ent[i] = atoi(d->chain[d->atom_chain[i]].entity);
      rid[i] = d->atom_res_id[i];
      res[i] = d->is_resolved[i];
    }
    r = fx_ints(&tf, "label_entity_id", N);
    cmp_i64(cs, "label_entity_id", ent, r, N);
    free(r);
    r = fx_ints(&tf, "res_id", N);
    cmp_i64(cs, "res_id", rid, r, N);
    free(r);
    r = fx_ints(&tf, "is_resolved", N);
    cmp_i64(cs, "is_resolved", res, r, N);
    free(r);
    free(lab);
    free(ent);
    free(rid);
    free(res);
  }
  float *xyz = fx_floats(&tf, "coord_from_cif", N * 3);
  if (xyz) {
    int64_t bad = 0;
    for (int64_t i = 0; i < N * 3; i++) bad += xyz[i] != d->xyz_in[i];
    CHECK_MSG(bad == 0, "%s: input coordinates differ at %lld values", cs, (long long)bad);
  }
  free(xyz);

  /* Bonds between residues: upstream's atom array holds the peptide bonds between
   * consecutive residues (residue numbers differing by 1) of a chain, binder included, plus
   * the input's covalent _struct_conn bonds that survived; pxdiff hands the writer the
   * latter (d->bond) and the former follow from the annotations. */
  const px_tensor_entry *be = px_tensorfile_find(&tf, "inter_bonds");
  CHECK_MSG(be && be->ndim == 2 && be->shape[1] == 3, "%s: no inter_bonds [n,3]", cs);
  if (be && be->ndim == 2 && be->shape[1] == 3) {
    const int64_t nb = be->shape[0];
    int64_t *ub = fx_ints(&tf, "inter_bonds", nb * 3);
    int64_t(*mb)[2] = malloc(((size_t)T + (size_t)d->n_bond + 1) * sizeof *mb);
    int64_t n = 0;
    for (int tk = 0; tk + 1 < T; tk++) {
      if (d->token_chain[tk] != d->token_chain[tk + 1] || d->residue_index[tk + 1] != d->residue_index[tk] + 1)
        continue;
      int c = -1, nn = -1;
      for (int i = d->token_atom_start[tk]; i < d->token_atom_start[tk + 1]; i++)
        if (!strcmp(d->atom_name[i], "C")) c = i;
      for (int i = d->token_atom_start[tk + 1]; i < d->token_atom_start[tk + 2]; i++)
        if (!strcmp(d->atom_name[i], "N")) nn = i;
      if (c >= 0 && nn >= 0) {
        mb[n][0] = c;
        mb[n][1] = nn;
        n++;
      }
    }
    for (int k = 0; k < d->n_bond; k++) {
      CHECK(d->bond[k].a < d->bond[k].b && d->atom_res_id[d->bond[k].a] != d->atom_res_id[d->bond[k].b]);
      /* insert in order (peptide pairs are already ascending) */
      int64_t j = n++;
      while (j > 0 && (mb[j - 1][0] > d->bond[k].a || (mb[j - 1][0] == d->bond[k].a && mb[j - 1][1] > d->bond[k].b))) {
        mb[j][0] = mb[j - 1][0];
        mb[j][1] = mb[j - 1][1];
        j--;
      }
      mb[j][0] = d->bond[k].a;
      mb[j][1] = d->bond[k].b;
    }
    int same = ub && n == nb;
    for (int64_t k = 0; same && k < n; k++) same = mb[k][0] == ub[k * 3] && mb[k][1] == ub[k * 3 + 1];
    CHECK_MSG(same, "%s: bonds between residues: %lld here (%d from _struct_conn), %lld upstream", cs,
              (long long)n, d->n_bond, (long long)nb);
    free(ub);
    free(mb);
  }

  /* Structure of the result: tokens contiguous, the binder last. */
  CHECK(d->chain[d->n_chain - 1].is_binder && d->chain[d->n_chain - 1].n_token == d->binder_length);
  CHECK(d->token_atom_start[0] == 0 && d->token_atom_start[d->n_token] == d->n_atom);
  printf("  %s: T=%d N=%d, %d _struct_conn bonds, ref_pos max |diff| %.2g A\n", cs, d->n_token, d->n_atom,
         d->n_bond, worst);
out:
  px_tensorfile_close(&tf);
  px_design_input_free(d);
  unload(&L);
}

/* -------------------------------------------------------------- augmentation -- */

static void test_augmentation(void) {
  char yaml[1024];
  snprintf(yaml, sizeof yaml, "%s/featurize/qs.yaml", data_dir());
  loaded L;
  if (load_case(yaml, &L)) return;
  const px_task *t = &L.tl.task[0];
  px_design_input *d0 = NULL, *a = NULL, *b = NULL, *c = NULL;
  CHECK(px_featurize(L.s, t, NULL, 0, 0, &d0) == PX_OK);
  CHECK(px_featurize(L.s, t, NULL, 42, 1, &a) == PX_OK);
  CHECK(px_featurize(L.s, t, NULL, 42, 1, &b) == PX_OK);
  CHECK(px_featurize(L.s, t, NULL, 43, 1, &c) == PX_OK);
  if (!d0 || !a || !b || !c) goto out;
  const int N = d0->n_atom, T = d0->n_token;
  CHECK(!memcmp(a->ref_pos, b->ref_pos, (size_t)N * 3 * sizeof(float)));
  int64_t same = 0;
  for (int i = 0; i < N * 3; i++) same += a->ref_pos[i] == c->ref_pos[i];
  CHECK_MSG(same == 0, "seeds 42 and 43 share %lld ref_pos values", (long long)same);
  /* Another task under the same seed draws its own streams. */
  px_task other = *t;
  other.name = "another task";
  px_design_input *e = NULL;
  CHECK(px_featurize(L.s, &other, NULL, 42, 1, &e) == PX_OK);
  if (e) {
    same = 0;
    for (int i = 0; i < N * 3; i++) same += a->ref_pos[i] == e->ref_pos[i];
    CHECK_MSG(same == 0, "two task names under one seed share %lld ref_pos values", (long long)same);
  }
  px_design_input_free(e);
  /* Everything but ref_pos is independent of the draw. */
  CHECK(!memcmp(a->ref_element, d0->ref_element, (size_t)N * 128 * sizeof(float)));
  CHECK(!memcmp(a->conditional_templ, d0->conditional_templ, (size_t)T * T * sizeof(int64_t)));
  CHECK(!memcmp(a->restype, d0->restype, (size_t)T * 36 * sizeof(float)));
  /* Per residue: the centred conformer (d0) moved rigidly: all pairwise distances kept
   * (float32 storage: ~1e-6 A), centroid = R t with t in [-1,1]^3, so |centroid| <= sqrt(3);
   * across residues the centroids spread over that ball and the rotations differ. */
  double worst = 0, cmax = 0, csum[3] = {0, 0, 0};
  int proper = 1;
  for (int tk = 0; tk < T; tk++) {
    const int s0 = d0->token_atom_start[tk], s1 = d0->token_atom_start[tk + 1];
    double cen[3] = {0, 0, 0};
    for (int i = s0; i < s1; i++)
      for (int k = 0; k < 3; k++) cen[k] += a->ref_pos[i * 3 + k] / (s1 - s0);
    const double cn = sqrt(cen[0] * cen[0] + cen[1] * cen[1] + cen[2] * cen[2]);
    if (cn > cmax) cmax = cn;
    for (int k = 0; k < 3; k++) csum[k] += cen[k];
    for (int i = s0; i < s1; i++)
      for (int j = i + 1; j < s1; j++) {
        double d2a = 0, d2r = 0;
        for (int k = 0; k < 3; k++) {
          const double x = a->ref_pos[i * 3 + k] - a->ref_pos[j * 3 + k];
          const double y = d0->ref_pos[i * 3 + k] - d0->ref_pos[j * 3 + k];
          d2a += x * x;
          d2r += y * y;
        }
        const double e = fabs(sqrt(d2a) - sqrt(d2r));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
      }
    /* A proper rotation keeps handedness: the signed volume of N, CA, C (relative to the
     * centroid) keeps its sign. */
    if (s1 - s0 >= 3) {
      double u[3][3], v[3][3];
      for (int q = 0; q < 3; q++)
        for (int k = 0; k < 3; k++) {
          u[q][k] = a->ref_pos[(s0 + q) * 3 + k] - cen[k];
          v[q][k] = d0->ref_pos[(s0 + q) * 3 + k];
        }
      double ra[3], rb[3];
      for (int k = 0; k < 3; k++) {
        ra[k] = u[0][(k + 1) % 3] * u[1][(k + 2) % 3] - u[0][(k + 2) % 3] * u[1][(k + 1) % 3];
        rb[k] = v[0][(k + 1) % 3] * v[1][(k + 2) % 3] - v[0][(k + 2) % 3] * v[1][(k + 1) % 3];
      }
      const double va = ra[0] * u[2][0] + ra[1] * u[2][1] + ra[2] * u[2][2];
      const double vb = rb[0] * v[2][0] + rb[1] * v[2][1] + rb[2] * v[2][2];
      if (va * vb < 0) proper = 0;
    }
  }
  printf("  augmentation: distances kept to %.2g A, largest centroid %.3f A\n", worst, cmax);
  CHECK_MSG(worst <= 2e-5, "augmentation changed a per-residue distance by %.3g A", worst);
  CHECK_MSG(cmax <= sqrt(3.0) + 1e-5, "a residue centroid moved %.4f A > sqrt(3)", cmax);
  CHECK_MSG(cmax > 0.9, "centroids barely move (max %.3f A): no translation drawn?", cmax);
  CHECK(proper);
  /* t ~ U(-1,1)^3 has mean 0 and per-axis variance 1/3; over 196 residues the mean of the
   * centroids (= R t) lies within 0.2 of 0 with overwhelming probability. */
  for (int k = 0; k < 3; k++)
    CHECK_MSG(fabs(csum[k] / T) < 0.2, "centroid mean along axis %d is %.3f", k, csum[k] / T);
out:
  px_design_input_free(d0);
  px_design_input_free(a);
  px_design_input_free(b);
  px_design_input_free(c);
  unload(&L);
}

/* ---------------------------------------------------------------- conformers -- */

static void test_conformers(void) {
  char yaml[1024];
  snprintf(yaml, sizeof yaml, "%s/featurize/short.yaml", data_dir());
  loaded L;
  if (load_case(yaml, &L)) return;
  const px_task *t = &L.tl.task[0];
  px_conformers *bi = NULL, *f = NULL;
  px_design_input *d0 = NULL, *d1 = NULL, *d2 = NULL;
  CHECK(px_conformers_builtin(&bi) == PX_OK);
  CHECK(px_featurize(L.s, t, NULL, 0, 0, &d0) == PX_OK);
  CHECK(px_featurize(L.s, t, bi, 0, 0, &d1) == PX_OK);
  if (d0 && d1) CHECK(!memcmp(d0->ref_pos, d1->ref_pos, (size_t)d0->n_atom * 3 * sizeof(float)));
  CHECK(px_conformers_n_from_file(bi) == 0);

  /* A table that moves GLY's atoms: the binder's ref_pos (GLY's conformer, centred) follows. */
  const char *txt =
      "# test table\n"
      "GLY N   1.0 0.0 0.0\nGLY CA 0.0 2.0 0.0   # trailing comment\n"
      "GLY C 0 0 3\nGLY O 4 4 4\n\tGLY OXT -1 -1 -1\n\n";
  CHECK(px_conformers_parse(txt, strlen(txt), "t.txt", &f) == PX_OK);
  CHECK(f && px_conformers_n_from_file(f) == 1);
  if (f) {
    const float *p = px_conformers_get(f, "GLY", "CA");
    CHECK(p && p[0] == 0.0f && p[1] == 2.0f && p[2] == 0.0f);
    CHECK(px_conformers_get(f, "ALA", "CB") == px_conformers_get(NULL, "ALA", "CB") ||
          !memcmp(px_conformers_get(f, "ALA", "CB"), px_conformers_get(NULL, "ALA", "CB"), 12));
    CHECK(px_conformers_get(f, "XYZ", "CA") == NULL && px_conformers_get(f, "GLY", "CB") == NULL);
  }
  CHECK(px_featurize(L.s, t, f, 0, 0, &d2) == PX_OK);
  if (d2) {
    /* short: a one-residue binder, atoms N CA C O OXT last; centre of the 5 rows above. */
    const float g[5][3] = {{1, 0, 0}, {0, 2, 0}, {0, 0, 3}, {4, 4, 4}, {-1, -1, -1}};
    float mu[3] = {0, 0, 0};
    for (int i = 0; i < 5; i++)
      for (int k = 0; k < 3; k++) mu[k] += g[i][k];
    for (int k = 0; k < 3; k++) mu[k] /= 5.0f;
    const int b0 = d2->n_atom - 5;
    int ok = 1;
    for (int i = 0; i < 5; i++)
      for (int k = 0; k < 3; k++) ok &= fabsf(d2->ref_pos[(b0 + i) * 3 + k] - (g[i][k] - mu[k])) < 1e-6f;
    CHECK_MSG(ok, "the binder's ref_pos does not follow the table's GLY");
    /* Target residues other than GLY keep the built-in table; GLY ones follow the file. */
    int kept = 1, gly = 0;
    for (int i = 0; i < b0; i++) {
      if (!strcmp(d2->res_name[i], "GLY")) {
        gly++;
        continue;
      }
      kept &= !memcmp(&d2->ref_pos[i * 3], &d0->ref_pos[i * 3], 3 * sizeof(float));
    }
    CHECK(kept && gly > 0);
  }
  /* Bad tables: one line each, no table. */
  static const char *const bad[] = {
      "GLY N 1 0 0\n",                                      /* incomplete residue */
      "XYZ N 1 0 0\n",                                      /* unknown residue */
      "GLY CB 1 0 0\n",                                     /* unknown atom */
      "GLY N 1 0\n",                                        /* 4 fields */
      "GLY N 1 0 0 7\n",                                    /* 6 fields */
      "GLY N 1 0 nan\nGLY CA 0 0 0\nGLY C 0 0 0\nGLY O 0 0 0\nGLY OXT 0 0 0\n", /* non-finite */
      "GLY N 1 0 0x\n",                                     /* junk after a number */
      "GLY N 1 0 0\nGLY N 1 0 0\n",                         /* twice */
      "# only comments\n",                                  /* empty */
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    px_conformers *x = (px_conformers *)1;
    const int rc = px_conformers_parse(bad[k], strlen(bad[k]), "bad.txt", &x);
    CHECK_MSG(rc == PX_ERR_FORMAT && x == NULL && !strchr(px_last_error(), '\n') &&
                  strstr(px_last_error(), "bad.txt"),
              "bad table %zu: rc %d, '%s'", k, rc, px_last_error());
  }
  px_conformers *x = (px_conformers *)1;
  CHECK(px_conformers_read("tests/data/featurize/does-not-exist.txt", &x) == PX_ERR_IO && x == NULL);

  /* The export of the reference harness's CCD cache (python -m pxdiff.conformers export; its
   * conformers are the CCD ideal coordinates) reads back as the built-in table, bit for bit. */
  char path[1024];
  snprintf(path, sizeof path, "%s/featurize/conformers_ideal.txt", data_dir());
  px_conformers *ideal = NULL;
  CHECK_MSG(px_conformers_read(path, &ideal) == PX_OK, "%s", px_last_error());
  if (ideal) {
    CHECK(px_conformers_n_from_file(ideal) == PX_N_RES_TEMPLATES);
    int same = 1;
    for (int r = 0; r < PX_N_RES_TEMPLATES; r++)
      for (int a = 0; a < px_res_templates[r].n_atom; a++)
        same &= !memcmp(px_conformers_get(ideal, px_res_templates[r].name, px_res_templates[r].atom[a]),
                        px_res_templates[r].ideal[a], 3 * sizeof(float));
    CHECK_MSG(same, "%s differs from the built-in table", path);
  }
  px_conformers_free(ideal);
  px_conformers_free(bi);
  px_conformers_free(f);
  px_design_input_free(d0);
  px_design_input_free(d1);
  px_design_input_free(d2);
  unload(&L);
}

/* ------------------------------------------------------------------ refusals -- */

/* A task on one structure with its chain settings replaced; expect a refusal whose line holds
 * `want`. */
static void expect_refusal(const px_structure_in *s, const px_task *t, const char *want, const char *what) {
  px_design_input *d = (px_design_input *)1;
  px_clear_error();
  const int rc = px_featurize(s, t, NULL, 0, 0, &d);
  const char *m = px_last_error();
  CHECK_MSG(rc == PX_ERR_INPUT && d == NULL && m[0] && !strchr(m, '\n') && strstr(m, want),
            "%s: rc %d, message '%s' (wanted '%s')", what, rc, m, want);
  if (rc == PX_OK) px_design_input_free(d);
}

static void test_refusals(void) {
  char yaml[1024];
  snprintf(yaml, sizeof yaml, "%s/featurize/qs.yaml", data_dir());
  loaded L;
  if (load_case(yaml, &L)) return;
  px_task t = L.tl.task[0]; /* a shallow copy whose chain list is replaced below */
  px_task_chain ch[30];
  px_task_range rg[4];
  int hs[4];
  memset(ch, 0, sizeof ch);

  t.chain = ch;
  t.n_chain = 1;
  ch[0].id = "Z";
  expect_refusal(L.s, &t, "chain Z is not in", "missing chain");
  ch[0].id = "";
  expect_refusal(L.s, &t, "has no id", "empty chain id");
  ch[0].id = "B"; /* 5o45's macrocycle: 9KK, CCS, MEA, NH2, SAR */
  expect_refusal(L.s, &t, "non-standard", "non-standard residue");
  ch[0].id = "A";
  ch[1].id = "A";
  t.n_chain = 2;
  expect_refusal(L.s, &t, "selected twice", "duplicate chain");
  t.n_chain = 0;
  expect_refusal(L.s, &t, "no target chain", "empty selection");
  t.n_chain = 1;
  ch[0].n_crop = 1;
  ch[0].crop = rg;
  rg[0].lo = 200;
  rg[0].hi = 300;
  expect_refusal(L.s, &t, "outside the chain", "crop outside");
  rg[0].lo = 10;
  rg[0].hi = 5;
  expect_refusal(L.s, &t, "reversed", "reversed crop");
  rg[0].lo = 1;
  rg[0].hi = 20;
  ch[0].n_hotspot = 1;
  ch[0].hotspot = hs;
  hs[0] = 130;
  expect_refusal(L.s, &t, "hotspot 130", "hotspot outside");
  hs[0] = 0;
  expect_refusal(L.s, &t, "hotspot 0", "hotspot 0");
  ch[0].n_hotspot = 0;
  t.binder_length = 0;
  expect_refusal(L.s, &t, "binder_length 0", "binder 0");
  t.binder_length = PX_FEAT_MAX_BINDER + 1;
  expect_refusal(L.s, &t, "binder_length", "binder too long");
  t.binder_length = 5;
  t.n_chain = 26;
  for (int k = 0; k < 26; k++) {
    static char ids[26][4];
    snprintf(ids[k], sizeof ids[k], "%c", 'A' + k);
    ch[k].id = ids[k];
  }
  expect_refusal(L.s, &t, "at most 25", "too many chains");
  t.n_chain = 1;
  ch[0].id = "A";
  /* A crop holding only residues that are missing from the file (5o45 A has no 130+, and
   * the edit target lacks 52-54). */
  unload(&L);

  snprintf(yaml, sizeof yaml, "%s/featurize/edit.yaml", data_dir());
  if (load_case(yaml, &L)) return;
  t = L.tl.task[0];
  t.chain = ch;
  t.n_chain = 1;
  ch[0].n_crop = 1;
  rg[0].lo = 52;
  rg[0].hi = 54;
  expect_refusal(L.s, &t, "no resolved residue", "crop of missing residues");
  rg[0].lo = 70;
  rg[0].hi = 70; /* the residue whose atoms match too poorly */
  expect_refusal(L.s, &t, "no resolved residue", "crop of an unresolved residue");

  /* Chains of other kinds and malformed residue numbers, on the same atoms. */
  px_structure_in *s = L.s;
  const int c = 0;
  CHECK(!strcmp(s->chain[c].id, "A"));
  const int ent = s->chain[c].entity, poly = s->entity[ent].poly;
  ch[0].n_crop = 0;
  s->entity[ent].poly = PX_SIN_POLY_OTHER;
  expect_refusal(s, &t, "not a protein chain", "nucleic-acid chain");
  s->entity[ent].poly = PX_SIN_POLY_NONE;
  expect_refusal(s, &t, "not a protein chain", "ligand chain");
  s->entity[ent].poly = poly;
  const int n_seq = s->entity[ent].n_seq;
  s->entity[ent].n_seq = 0;
  expect_refusal(s, &t, "has no sequence", "entity without a sequence");
  s->entity[ent].n_seq = n_seq;
  int a0 = -1;
  for (int i = 0; i < s->n_atom && a0 < 0; i++)
    if (s->atom[i].chain == c) a0 = i;
  const int seq = s->atom[a0].seq_id;
  s->atom[a0].seq_id = s->entity[ent].n_seq + 1;
  expect_refusal(s, &t, "outside its entity sequence", "residue number past the sequence");
  s->atom[a0].seq_id = -1;
  expect_refusal(s, &t, "no residue number", "residue number '.'");
  s->atom[a0].seq_id = seq;
  /* Still good after the edits were undone. */
  px_design_input *d = NULL;
  CHECK_MSG(px_featurize(s, &t, NULL, 0, 0, &d) == PX_OK, "%s", px_last_error());
  px_design_input_free(d);
  d = (px_design_input *)1;
  CHECK(px_featurize(NULL, &t, NULL, 0, 0, &d) == PX_ERR_INPUT && d == NULL);
  d = (px_design_input *)1;
  CHECK(px_featurize(s, NULL, NULL, 0, 0, &d) == PX_ERR_INPUT && d == NULL);
  CHECK(px_featurize(s, &t, NULL, 0, 0, NULL) == PX_ERR_INPUT);
  unload(&L);

  /* PDB input: author ids and numbers, mapped with upstream's refusals. */
  snprintf(yaml, sizeof yaml, "%s/featurize/pdb.yaml", data_dir());
  if (load_case(yaml, &L)) return;
  t = L.tl.task[0];
  t.chain = ch;
  t.n_chain = 1;
  memset(ch, 0, sizeof ch[0]);
  ch[0].id = "B"; /* 5o45's macrocycle: ATOM and HETATM records, split by the conversion */
  expect_refusal(L.s, &t, "refuses to map", "PDB chain split");
  ch[0].id = "Q";
  expect_refusal(L.s, &t, "no chain 'Q'", "PDB chain missing");
  ch[0].id = "A";
  ch[0].n_crop = 1;
  ch[0].crop = rg;
  rg[0].lo = 100;
  rg[0].hi = 1000; /* residues 100..145 exist, 146 does not */
  expect_refusal(L.s, &t, "no residue 146", "PDB crop past the chain");
  ch[0].n_crop = 0;
  ch[0].n_hotspot = 1;
  ch[0].hotspot = hs;
  hs[0] = 5; /* chain A starts at 17 */
  expect_refusal(L.s, &t, "no residue 5", "PDB hotspot not in the file");
  unload(&L);
}

int main(void) {
  static const char *const cases[] = {"qs", "whole", "discont", "short", "long", "edit", "multi", "pdb"};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) test_case(cases[k]);
  test_augmentation();
  test_conformers();
  test_refusals();
  return tu_finish("test_featurize");
}
