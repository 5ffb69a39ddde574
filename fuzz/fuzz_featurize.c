/* libFuzzer harness: the featurizer (src/featurize) on whatever the structure readers make of
 * an input (mmCIF or PDB, told apart by content). Each chain of the result is featurized as a
 * task (whole, then cropped with hotspots), and the output either is one-line refusal with
 * no design, or satisfies the featurizer's invariants: tokens own contiguous atoms, ids and
 * one-hots well formed, reference positions finite and centred, template bins in range and
 * symmetric, binder last. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pxdiff.h"

/* run.sh links platform.c and strbuf.c; the readers, the featurizer and the error slot are
 * compiled in here. */
#include "error.c"
#include "featurize/assemble.c"
#include "featurize/conformers.c"
#include "featurize/ref_features.c"
#include "featurize/residue_table.c"
#include "featurize/residues.c"
#include "featurize/template_bins.c"
#include "io/cif_read.c"
#include "io/pdb_read.c"
#include "io/structure_common.c"
#include "io/structure_read.c"

static void check_design(const px_design_input *d, int L) {
  const int T = d->n_token, N = d->n_atom;
  if (T < L + 1 || N < 4 * L + 1 || d->n_chain < 2 || !d->chain[d->n_chain - 1].is_binder) abort();
  if (d->token_atom_start[0] != 0 || d->token_atom_start[T] != N) abort();
  for (int t = 0; t < T; t++) {
    if (d->token_atom_start[t + 1] <= d->token_atom_start[t]) abort();
    if (d->token_index[t] != t || d->sym_id[t] != 0 || d->asym_id[t] != d->token_chain[t]) abort();
    if (d->entity_id[t] < 0 || d->entity_id[t] >= d->n_chain) abort();
    int ones = 0;
    for (int k = 0; k < PX_FEAT_N_RESTYPE; k++) {
      const float v = d->restype[(size_t)t * PX_FEAT_N_RESTYPE + k];
      if (v != 0.0f && v != 1.0f) abort();
      ones += v == 1.0f;
    }
    if (ones != 1) abort();
    if (t > 0 && d->token_chain[t] == d->token_chain[t - 1] && d->residue_index[t] <= d->residue_index[t - 1])
      abort();
    for (int u = 0; u < T; u++) {
      const int64_t b = d->conditional_templ[(size_t)t * T + u];
      const int m = d->conditional_templ_mask[(size_t)t * T + u];
      if (b < 0 || b > 63 || (m != 0 && m != 1) || (!m && b) || b != d->conditional_templ[(size_t)u * T + t] ||
          m != d->conditional_templ_mask[(size_t)u * T + t])
        abort();
    }
    float c[3] = {0, 0, 0};
    const int s0 = d->token_atom_start[t], s1 = d->token_atom_start[t + 1];
    for (int i = s0; i < s1; i++) {
      if (d->atom_to_token_idx[i] != t || d->ref_space_uid[i] != t) abort();
      for (int k = 0; k < 3; k++) {
        if (!isfinite(d->ref_pos[(size_t)i * 3 + k])) abort();
        c[k] += d->ref_pos[(size_t)i * 3 + k];
      }
    }
    for (int k = 0; k < 3; k++)
      if (fabsf(c[k] / (float)(s1 - s0)) > 1e-3f) abort();
  }
  for (int i = 0; i < N; i++) {
    int ones = 0;
    for (int k = 0; k < 128; k++) ones += d->ref_element[(size_t)i * 128 + k] == 1.0f;
    if (ones != 1 || d->ref_mask[i] != 1.0f) abort();
  }
  for (int k = 0; k < d->n_bond; k++)
    if (d->bond[k].a < 0 || d->bond[k].a >= d->bond[k].b || d->bond[k].b >= N) abort();
}

static void run(const px_structure_in *s, const px_task *t) {
  px_design_input *d = (px_design_input *)1;
  const int rc = px_featurize(s, t, NULL, 7, 0, &d);
  if (rc != PX_OK) {
    const char *m = px_last_error();
    if (d != NULL || !m[0] || strchr(m, '\n')) {
      fprintf(stderr, "bad failure: '%s'\n", m);
      abort();
    }
    return;
  }
  check_design(d, t->binder_length);
  px_design_input_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  px_structure_in *s = NULL;
  if (px_structure_parse((const char *)data, size, "fuzz", &s) != PX_OK) return 0;
  for (int c = 0; c < s->n_chain && c < 3; c++) {
    px_task_chain ch;
    memset(&ch, 0, sizeof ch);
    ch.id = s->from_pdb ? s->chain[c].auth_id : s->chain[c].id;
    px_task t;
    memset(&t, 0, sizeof t);
    t.name = "fuzz";
    t.structure_file = "fuzz";
    t.n_chain = 1;
    t.chain = &ch;
    t.binder_length = 1 + (int)(size % 7);
    run(s, &t);
    px_task_range rg = {1 + (int)(size % 5), 3 + (int)(size % 40)};
    int hs[2] = {2, 4};
    ch.n_crop = 1;
    ch.crop = &rg;
    ch.n_hotspot = 2;
    ch.hotspot = hs;
    if (!s->from_pdb) run(s, &t); /* PDB: author numbers, mostly absent: refusals only */
  }
  px_structure_in_free(s);
  return 0;
}
