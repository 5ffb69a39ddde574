/* PXDesign's featurizer: a parsed target structure plus a task in, everything the model
 * reads out (docs/design-spec.md, sections 2.2-7).
 *
 *   px_structure_in *s;  px_task *t;          (io/structure_in.h, io/task.h)
 *   px_design_input *d;
 *   if (px_featurize(s, t, NULL, seed, 1, &d) != PX_OK) fail(px_last_error());
 *   ... d->f (px_features, s_inputs/s_trunk/z_trunk NULL: the condition embedder fills them),
 *       d->restype, d->hotspot, d->conditional_templ(_mask)  (condition embedder inputs),
 *       d->atom_* / d->chain / d->bond                          (the output writer's annotations)
 *   px_design_input_free(d);
 *
 * What it does, in upstream's order:
 *  - every task chain, in task order, is rebuilt from the built-in residue templates: each
 *    residue of the chain's entity sequence gets the CCD heavy atoms in CCD order, OXT only on
 *    the last residue of the sequence; file atoms are matched by name (a residue whose matched
 *    atoms do not outnumber the unmatched ones counts as unresolved); residues with no resolved
 *    atom are dropped; the others are kept whole (unresolved atoms at 0 with is_resolved 0);
 *  - hotspots mark residues; the crop keeps the listed residue numbers (numbers keep their gaps);
 *  - the binder (binder_length glycine backbones N CA C O, OXT on the last, named "xpb",
 *    restype 32, GLY's reference conformer) is the last chain;
 *  - chain k (1-based) is "A0", "B0", ...; asym_id k-1, entity "k" (every chain its own entity;
 *    entity_id = rank of "k" sorted as strings), sym_id 0; one token per residue;
 *  - reference features from the conformer table (built-in: CCD ideal coordinates), each residue
 *    centred on its mean and, with augment, moved by t ~ U(-1,1)^3 and rotated by a uniform
 *    random rotation drawn from (seed, task name, residue) -- see ref_features.c;
 *  - conditional_templ: distance bins of the target tokens' CB (CA for GLY) input coordinates.
 *
 * PDB input (s->from_pdb): the task's chain ids and residue numbers are author ones and are
 * mapped to the converted chains as upstream maps them (px_sin_pdb_chain, px_sin_pdb_residue).
 *
 * Refused with one line (PX_ERR_INPUT) and no output: a task chain not in the file, named
 * twice, not a protein chain, or holding a resolved non-standard residue (MSE is read as MET
 * by the reader); crop ranges or hotspots outside the chain (mmCIF: a crop range must overlap
 * 1..n_seq and a hotspot lie in it; PDB: every number must exist, as upstream demands); a
 * chain left with no resolved residue; an empty selection; more than 25 target chains; a
 * binder length outside [1, PX_FEAT_MAX_BINDER].
 *
 * Checked against upstream's own featurizer (tests/test_featurize.c, 8 tasks): every integer
 * and one-hot feature, ref_pos (bit-equal with the same conformers) and the annotations equal. */
#ifndef PX_FEATURIZE_FEATURIZE_H
#define PX_FEATURIZE_FEATURIZE_H

#include <stdint.h>

#include "io/structure_in.h"
#include "io/task.h"
#include "pxdiff.h"

#define PX_FEAT_MAX_BINDER 10000
#define PX_FEAT_N_RESTYPE 36
#define PX_FEAT_RESTYPE_BINDER 32 /* "xpb" */
#define PX_FEAT_N_TEMPL_BIN 64

/* Random-stream purposes of the ref_pos augmentation (rng.h's counter layout), far from the
 * sampler's (0..3) so the streams never meet: rotation from 4 normals of stream
 * (seed, ref_space_uid, H, PX_RNG_FEAT_ROT); translation from 3 uniforms of blocks of
 * (seed, ref_space_uid, H, PX_RNG_FEAT_TRANS); H = 32-bit FNV-1a hash of the task name.
 * Upstream draws ref_pos once per (task, seed) and shares it across that seed's samples. */
#define PX_RNG_FEAT_ROT 0x40u
#define PX_RNG_FEAT_TRANS 0x41u

/* ------------------------------------------------------------ conformers -- */

/* Reference conformers per residue type (the 20 amino acids and UNK; GLY also serves the
 * binder). Built-in: the CCD ideal coordinates of the residue templates. */
typedef struct px_conformers px_conformers;

/* A conformer table file (docs/conformers.md): lines "RES ATOM x y z", '#' comments.
 * A residue listed must list every template atom (OXT included) exactly once; residues not
 * listed keep the built-in coordinates. */
int px_conformers_read(const char *path, px_conformers **out);
int px_conformers_parse(const char *text, size_t len, const char *name, px_conformers **out);
/* The built-in table as a new object (for tests and for writing it out). */
int px_conformers_builtin(px_conformers **out);
void px_conformers_free(px_conformers *c);
/* Coordinates of atom `atom` of residue `res` (NULL: unknown residue or atom). */
const float *px_conformers_get(const px_conformers *c, const char *res, const char *atom);
/* Number of residue types read from a file (0 for the built-in table). */
int px_conformers_n_from_file(const px_conformers *c);

/* ------------------------------------------------------------ the design -- */

typedef struct {
  char label[8];      /* "A0", "B0", ... (label_asym_id = auth_asym_id in the output) */
  char entity[8];     /* label_entity_id: "1", "2", ... */
  char source[PX_SIN_NAME]; /* the chain id the task named ("" for the binder) */
  int is_binder;
  int token_start, n_token; /* its residues = tokens [token_start, token_start + n_token) */
  int atom_start, n_atom;
} px_design_chain;

typedef struct {
  int a, b;           /* atom indices in feature order, a < b, in different residues */
  char conn_type[16]; /* the input's conn_type_id ("disulf", "covale", ...) */
} px_design_bond;

typedef struct {
  int n_token, n_atom, n_chain, n_bond;
  int binder_length;

  /* The diffusion module's inputs (pointers into the arrays below; s_inputs, s_trunk and
   * z_trunk NULL). Integer-valued features that px_features holds as float are exact. */
  px_features f;
  float *ref_pos;             /* [N,3] */
  float *ref_charge;          /* [N] */
  float *ref_mask;            /* [N] */
  float *ref_element;         /* [N,128] one-hot at atomic number - 1 */
  float *ref_atom_name_chars; /* [N,256] */
  int64_t *ref_space_uid, *atom_to_token_idx;                       /* [N] */
  int64_t *asym_id, *residue_index, *entity_id, *token_index, *sym_id; /* [T] */

  /* The condition embedder's inputs. */
  float *restype;             /* [T,36] one-hot */
  float *hotspot;             /* [T] */
  int64_t *conditional_templ; /* [T,T] bins 0..63 */
  uint8_t *conditional_templ_mask; /* [T,T] */
  float *deletion_mean;       /* [T] zeros (only its shape is read) */

  /* Annotations for the output writer, in feature order. */
  char (*atom_name)[5];   /* [N] */
  char (*element)[3];     /* [N] "C", "N", "O", "S" */
  char (*res_name)[4];    /* [N] "ALA", ..., "xpb" for the binder */
  int *atom_chain;        /* [N] index into chain */
  int *atom_res_id;       /* [N] residue number (target label_seq_id with gaps; binder 1..L) */
  uint8_t *is_resolved;   /* [N] target: the atom was in the file; binder: 1 (as upstream) */
  float *xyz_in;          /* [N,3] input coordinates (0 for unresolved and binder atoms) */
  int *token_atom_start;  /* [T+1] atoms of token t: [token_atom_start[t], token_atom_start[t+1]) */
  int *token_chain;       /* [T] */
  px_design_chain *chain; /* [n_chain], binder last */
  px_design_bond *bond;   /* [n_bond] the input's covalent _struct_conn bonds kept (see assemble) */
} px_design_input;

/* Featurize task t on structure s. conf NULL = built-in conformers. With augment = 0 the
 * reference positions are only centred per residue (upstream with the augmentation off, the
 * reference harness's NO_AUG=1); with augment = 1 they are drawn from (seed, t->name): the same
 * seed gives the same features bit for bit. Call it once per (task, seed), as upstream
 * featurizes a task afresh for every seed; all samples of that seed share the result. */
int px_featurize(const px_structure_in *s, const px_task *t, const px_conformers *conf,
                 uint64_t seed, int augment, px_design_input **out);
void px_design_input_free(px_design_input *d);

#endif
