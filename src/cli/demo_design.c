/* The built-in demo design problem (cmd_sample.h): no files, deterministic everywhere. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_sample.h"
#include "pxdiff_synthetic.h"

/* A helical-bundle-like target sequence without glycine (every residue has a CB). */
static const char target_seq[PX_DEMO_TARGET + 1] =
    "MSPEELLKKAEELIRRAKELAEKDPELAKKVLELAIRLAEESNDPELLKRALELLRKAQE";

static const char *three_letter(char c) {
  static const char *const codes[26] = {"ALA", "ASX", "CYS", "ASP", "GLU", "PHE", "GLY", "HIS", "ILE",
                                        "XLE", "LYS", "LEU", "MET", "ASN", "PYL", "PRO", "GLN", "ARG",
                                        "SER", "THR", "SEC", "VAL", "TRP", "UNK", "TYR", "GLX"};
  return c >= 'A' && c <= 'Z' ? codes[c - 'A'] : "UNK";
}

/* N, CA, C, O, CB of an idealized residue (Angstrom), centred below. */
static const char *const atom_names[PX_DEMO_ATOMS_PER_RES] = {"N", "CA", "C", "O", "CB"};
static const char *const atom_elements[PX_DEMO_ATOMS_PER_RES] = {"N", "C", "C", "O", "C"};
static const int atom_z[PX_DEMO_ATOMS_PER_RES] = {7, 6, 6, 8, 6};
static const float conformer[PX_DEMO_ATOMS_PER_RES][3] = {
    {-0.525f, 1.363f, 0.000f}, {0.000f, 0.000f, 0.000f},  {1.526f, 0.000f, 0.000f},
    {2.153f, -1.062f, 0.000f}, {-0.529f, -0.774f, -1.205f}};

void px_demo_design_free(px_demo_design *d) {
  if (!d) return;
  px_features_free(&d->f);
  for (int i = 0; i < 24; i++) free(d->mem[i]);
  memset(d, 0, sizeof *d);
}

int px_demo_design_make(const px_dims *D, px_demo_design *d) {
  memset(d, 0, sizeof *d);
  const int T = PX_DEMO_TARGET + PX_DEMO_BINDER, A = PX_DEMO_ATOMS_PER_RES, N = T * A;
  const uint64_t seed = 0x5EED;
  d->n_target = PX_DEMO_TARGET;
  d->n_binder = PX_DEMO_BINDER;
  /* The feature arrays (zero-filled; s_trunk stays 0, as PXDesign passes it). */
  px_features *f = &d->f;
  if (px_features_alloc(D, T, N, f)) return PX_ERR_NOMEM;
  float *s_inputs = (float *)f->s_inputs, *z_trunk = (float *)f->z_trunk, *ref_pos = (float *)f->ref_pos;
  float *ref_charge = (float *)f->ref_charge, *ref_mask = (float *)f->ref_mask;
  float *ref_element = (float *)f->ref_element, *ref_chars = (float *)f->ref_atom_name_chars;
  int64_t *uid = (int64_t *)f->ref_space_uid, *a2t = (int64_t *)f->atom_to_token_idx;
  int64_t *asym = (int64_t *)f->asym_id, *res = (int64_t *)f->residue_index, *ent = (int64_t *)f->entity_id;
  int64_t *tok = (int64_t *)f->token_index, *sym = (int64_t *)f->sym_id;
  /* The structure writers' per-atom fields. */
  int k = 0;
#define ALLOC(ptr, count, type) (d->mem[k++] = (ptr) = calloc((size_t)(count), sizeof(type)))
  ALLOC(d->atom_name, N, char *);
  ALLOC(d->element, N, char *);
  ALLOC(d->res_name, N, char *);
  ALLOC(d->chain_id, N, char *);
  ALLOC(d->res_seq, N, int);
#undef ALLOC
  d->designed = calloc((size_t)N, sizeof(float));
  float *pair_table = malloc(sizeof(float) * 40 * (size_t)D->c_z);
  int ok = d->designed && pair_table;
  for (int i = 0; i < k; i++) ok = ok && d->mem[i];
  if (!ok) {
    free(d->designed);
    free(pair_table);
    px_demo_design_free(d);
    return PX_ERR_NOMEM;
  }
  /* d->designed is freed through mem[] too */
  d->mem[k++] = d->designed;

  /* Tokens: residue-type rows of s_inputs (one random row per residue type; the binder's
   * residues, yet to be designed, share one "designed" row). */
  for (int t = 0; t < T; t++) {
    const int is_b = t >= PX_DEMO_TARGET;
    asym[t] = is_b;
    ent[t] = is_b;
    sym[t] = 0;
    res[t] = is_b ? t - PX_DEMO_TARGET + 1 : t + 1;
    tok[t] = t;
    uint32_t row = is_b ? 26u : (uint32_t)(target_seq[t] - 'A');
    px_rng_normal(seed, row, 0xA11, 9, s_inputs + (size_t)t * D->c_s_inputs, D->c_s_inputs);
  }
  /* z_trunk: a template-like signal for target pairs (a row per sequence separation),
   * row 0 wherever the binder is involved (no template there). */
  px_rng_normal(seed, 0, 0x7E3, 9, pair_table, (int64_t)40 * D->c_z);
  for (int i = 0; i < 40 * D->c_z; i++) pair_table[i] *= 0.5f;
  for (int i = 0; i < T; i++)
    for (int j = 0; j < T; j++) {
      int bin = 0;
      if (i < PX_DEMO_TARGET && j < PX_DEMO_TARGET) bin = 1 + (abs(i - j) < 38 ? abs(i - j) : 38);
      memcpy(z_trunk + ((size_t)i * T + j) * D->c_z, pair_table + (size_t)bin * D->c_z,
             sizeof(float) * (size_t)D->c_z);
    }
  free(pair_table);

  /* Atoms: the centred conformer per residue. */
  float centre[3] = {0, 0, 0};
  for (int a = 0; a < A; a++)
    for (int c = 0; c < 3; c++) centre[c] += conformer[a][c] / (float)A;
  for (int t = 0; t < T; t++) {
    const int is_b = t >= PX_DEMO_TARGET;
    for (int a = 0; a < A; a++) {
      const int n = t * A + a;
      for (int c = 0; c < 3; c++) ref_pos[n * 3 + c] = conformer[a][c] - centre[c];
      ref_mask[n] = 1.0f;
      ref_charge[n] = 0.0f;
      ref_element[(size_t)n * 128 + (atom_z[a] - 1)] = 1.0f;
      for (int ch = 0; ch < 4; ch++) {
        const char *nm = atom_names[a];
        int code = ch < (int)strlen(nm) ? nm[ch] - 32 : 0;
        ref_chars[(size_t)n * 256 + ch * 64 + code] = 1.0f;
      }
      uid[n] = t;
      a2t[n] = t;
      d->atom_name[n] = atom_names[a];
      d->element[n] = atom_elements[a];
      d->res_name[n] = is_b ? "ALA" : three_letter(target_seq[t]);
      d->chain_id[n] = is_b ? "B" : "A";
      d->res_seq[n] = (int)res[t];
      d->designed[n] = is_b ? 1.0f : 0.0f;
    }
  }
  return PX_OK;
}
