/* Residue templates and the rebuild of a target chain from them (featurize.h; upstream:
 * protenix/data/parser.py add_missing_atoms_and_residues, pxdesign/data/json_parser.py
 * remove_unresolved_residue_in_atom_array). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "featurize/featurize_internal.h"

const px_res_template *px_res_template_find(const char *name) {
  if (!name) return NULL;
  for (int k = 0; k < PX_N_RES_TEMPLATES; k++)
    if (!strcmp(px_res_templates[k].name, name)) return &px_res_templates[k];
  return NULL;
}

int px_res_template_atom(const px_res_template *t, const char *atom) {
  for (int k = 0; k < t->n_atom; k++)
    if (!strcmp(t->atom[k], atom)) return k;
  return -1;
}

void px_feat_fchain_free(px_fchain *c) {
  if (!c) return;
  free(c->res);
  memset(c, 0, sizeof *c);
}

/* The residue number a file atom belongs to, 1..n_seq, or 0 when out of range. */
static int feat_atom_res(const px_sin_atom *a, int n_seq) {
  return (a->seq_id >= 1 && a->seq_id <= n_seq) ? a->seq_id : 0;
}

int px_feat_rebuild_chain(const px_structure_in *s, int chain, px_fchain *out) {
  memset(out, 0, sizeof *out);
  const px_sin_chain *ch = &s->chain[chain];
  if (ch->entity < 0 || ch->entity >= s->n_entity)
    return px_fail(PX_ERR_INPUT, "chain %s has no entity", ch->id);
  const px_sin_entity *e = &s->entity[ch->entity];
  if (e->poly != PX_SIN_POLY_PEPTIDE_L)
    return px_fail(PX_ERR_INPUT,
                   "chain %s is not a protein chain (entity %s is %s): only protein chains can be "
                   "targets",
                   ch->id, e->id, e->poly == PX_SIN_POLY_NONE ? "not a polymer" : "a non-peptide polymer");
  const int n_seq = e->n_seq;
  if (n_seq <= 0) return px_fail(PX_ERR_INPUT, "chain %s: entity %s has no sequence", ch->id, e->id);

  /* Per residue number: the file atoms, grouped (upstream walks residues of the chain in file
   * order; residue numbers are unique within a polymer chain). */
  int *count = calloc((size_t)n_seq + 1, sizeof *count);
  if (!count) return px_fail(PX_ERR_NOMEM, "out of memory rebuilding chain %s", ch->id);
  int n_chain_atoms = 0;
  for (int i = 0; i < s->n_atom; i++) {
    const px_sin_atom *a = &s->atom[i];
    if (a->chain != chain) continue;
    const int r = feat_atom_res(a, n_seq);
    if (!r) {
      free(count);
      if (a->seq_id < 0)
        return px_fail(PX_ERR_INPUT, "chain %s: atom %s of %s has no residue number (label_seq_id '.')",
                       ch->id, a->atom_name, a->res_name);
      return px_fail(PX_ERR_INPUT, "chain %s: residue %d (%s) lies outside its entity sequence (1-%d)",
                     ch->id, a->seq_id, a->res_name, n_seq);
    }
    count[r]++;
    n_chain_atoms++;
  }
  (void)n_chain_atoms;

  int n_present = 0;
  for (int r = 1; r <= n_seq; r++) n_present += count[r] > 0;
  out->chain = chain;
  out->n_seq = n_seq;
  out->res = calloc(n_present ? (size_t)n_present : 1, sizeof *out->res);
  if (!out->res) {
    free(count);
    return px_fail(PX_ERR_NOMEM, "out of memory rebuilding chain %s", ch->id);
  }
  /* Slot of each residue number among the present ones. */
  int *slot = malloc(((size_t)n_seq + 1) * sizeof *slot);
  if (!slot) {
    free(count);
    px_feat_fchain_free(out);
    return px_fail(PX_ERR_NOMEM, "out of memory rebuilding chain %s", ch->id);
  }
  int k = 0;
  for (int r = 1; r <= n_seq; r++) {
    slot[r] = -1;
    if (!count[r]) continue;
    /* The residue is built from the entity sequence's name, as upstream builds the reference
     * chain; a name without a template is a non-standard residue (per-atom tokens upstream). */
    const char *name = e->seq[r - 1];
    const px_res_template *t = px_res_template_find(name);
    if (!t) {
      free(count);
      free(slot);
      px_feat_fchain_free(out);
      return px_fail(PX_ERR_INPUT,
                     "chain %s residue %d is %s: non-standard residues are not supported (only the 20 "
                     "amino acids, UNK, and MSE read as MET)",
                     ch->id, r, name);
    }
    px_fres *x = &out->res[k];
    x->tmpl = t;
    x->seq_id = r;
    /* OXT is the leaving atom of C: it stays only where C has no peptide bond in the reference
     * chain, i.e. on the last residue of the entity sequence. */
    x->n_atom = r == n_seq ? t->n_atom : t->n_atom - 1;
    slot[r] = k++;
  }
  free(count);

  /* Match file atoms by name. Upstream counts, per residue, file atoms whose name is in the
   * rebuilt residue (matched) against the others (dropped), and keeps the matches only when
   * matched > unmatched. Two file atoms of one name both count as matched; the later one's
   * coordinates win (numpy's fancy assignment). */
  int *matched = calloc((size_t)k + 1, sizeof *matched);
  int *unmatched = calloc((size_t)k + 1, sizeof *unmatched);
  if (!matched || !unmatched) {
    free(matched);
    free(unmatched);
    free(slot);
    px_feat_fchain_free(out);
    return px_fail(PX_ERR_NOMEM, "out of memory rebuilding chain %s", ch->id);
  }
  for (int i = 0; i < s->n_atom; i++) {
    const px_sin_atom *a = &s->atom[i];
    if (a->chain != chain) continue;
    const int j = slot[a->seq_id];
    px_fres *x = &out->res[j];
    const int ai = px_res_template_atom(x->tmpl, a->atom_name);
    if (ai < 0 || ai >= x->n_atom) {
      unmatched[j]++;
      continue;
    }
    matched[j]++;
  }
  for (int i = 0; i < s->n_atom; i++) {
    const px_sin_atom *a = &s->atom[i];
    if (a->chain != chain) continue;
    const int j = slot[a->seq_id];
    if (matched[j] <= unmatched[j]) continue;
    px_fres *x = &out->res[j];
    const int ai = px_res_template_atom(x->tmpl, a->atom_name);
    if (ai < 0 || ai >= x->n_atom) continue;
    x->resolved[ai] = 1;
    memcpy(x->xyz[ai], a->xyz, sizeof x->xyz[ai]);
  }
  free(matched);
  free(unmatched);
  free(slot);

  /* Drop residues with no resolved atom (PXDesign's remove_unresolved_residue_in_atom_array). */
  int m = 0;
  for (int j = 0; j < k; j++) {
    px_fres *x = &out->res[j];
    x->n_resolved = 0;
    for (int a = 0; a < x->n_atom; a++) x->n_resolved += x->resolved[a];
    if (x->n_resolved) out->res[m++] = *x;
  }
  out->n_res = m;
  return PX_OK;
}
