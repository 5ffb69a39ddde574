/* Internals shared by the featurizer's files (featurize.h has the API). */
#ifndef PX_FEATURIZE_INTERNAL_H
#define PX_FEATURIZE_INTERNAL_H

#include <stdint.h>

#include "featurize/featurize.h"
#include "featurize/residue_table.h"

/* One rebuilt residue of a target chain: the template's atoms (OXT only when it is the last
 * residue of the entity sequence), each resolved from the file or not. */
typedef struct {
  const px_res_template *tmpl;
  int seq_id;    /* residue number: label_seq_id (PDB: the converted 1..n numbering) */
  int n_atom;    /* tmpl->n_atom, or tmpl->n_atom - 1 without OXT */
  int n_resolved;
  uint8_t resolved[PX_RES_MAX_ATOM];
  float xyz[PX_RES_MAX_ATOM][3]; /* file coordinates of resolved atoms, 0 otherwise */
} px_fres;

/* A target chain after the rebuild: its residues with at least one resolved atom, in
 * residue-number order. */
typedef struct {
  int chain;     /* index into px_structure_in.chain */
  int n_seq;     /* length of the entity sequence */
  int n_res;
  px_fres *res;
} px_fchain;

/* Rebuild chain `chain` of s (residues.c). */
int px_feat_rebuild_chain(const px_structure_in *s, int chain, px_fchain *out);
void px_feat_fchain_free(px_fchain *c);

/* Reference features of every atom and the per-residue augmentation (ref_features.c): fills
 * ref_pos, ref_charge, ref_mask, ref_element, ref_atom_name_chars of d from d's atom_name,
 * res_name (the template each atom came from is tmpl[atom]) and ref_space_uid; task selects
 * the random streams (a hash of the task name). */
int px_feat_reference(px_design_input *d, const px_res_template *const *tmpl, const int *tmpl_atom,
                      const px_conformers *conf, uint64_t seed, uint32_t task, int augment);

/* conditional_templ and its mask (template_bins.c) from d's tokens: representative atom
 * rep_atom[t] (-1 for binder tokens), its input coordinates and is_resolved. */
void px_feat_template_bins(px_design_input *d, const int *rep_atom);

/* The 63 float32 bin edges of torch.linspace(2, 22, 63) as torch 1.13 computes them. */
extern const float px_feat_templ_edges[PX_FEAT_N_TEMPL_BIN - 1];

#endif
