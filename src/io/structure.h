/* Structure writers: mmCIF (PDBx) and PDB from plain per-atom arrays.
 *
 * The writers know nothing of the model or the feature bundle: the caller hands over
 * coordinates and per-atom annotations. Files are written atomically (PATH.tmp, then
 * rename), so a file present under its final name is always complete.
 *
 * mmCIF layout: a data_ block, _entry.id, comment lines, an _entity loop and the
 * _atom_site loop with the label_* and auth_* fields, columns padded to a common
 * width; values that need it are quoted (O5' -> "O5'"). label_seq_id numbers the
 * residues of each chain 1, 2, ... in file order; auth_seq_id is the caller's residue
 * number. The last line is "# <trailer>" when a trailer is given (see
 * px_structure_file_has_trailer). PDB layout: REMARK lines, ATOM/HETATM in the fixed
 * columns, TER after each chain, END. */
#ifndef PX_IO_STRUCTURE_H
#define PX_IO_STRUCTURE_H

#include <stddef.h>

#include "pxdiff.h" /* PXDIFF_API */

typedef struct {
  int n_atom;
  const float *xyz;              /* [N, 3] Angstrom */
  const char *const *atom_name;  /* [N] "CA" */
  const char *const *element;    /* [N] "C", "Fe" (written upper-case) */
  const char *const *res_name;   /* [N] "ALA" */
  const char *const *chain_id;   /* [N] "A" */
  const int *res_seq;            /* [N] residue number (auth_seq_id, PDB resSeq) */
  const int *entity_id;          /* [N] or NULL: one entity per chain, in order of appearance */
  const float *b_factor;         /* [N] or NULL: 0.00 */
  const unsigned char *hetatm;   /* [N] or NULL: every atom is ATOM */
} px_structure;

/* The mmCIF text in a new buffer (*out, NUL-terminated, caller frees; *len without the NUL).
 * data_name: block name and _entry.id (characters other than [A-Za-z0-9_.-] become '_').
 * comments: n_comment lines written as "# line" after _entry.id (may be NULL).
 * trailer: written as the last line "# trailer" (NULL: none).
 * Fails (PX_ERR_INPUT, message names the atom) on non-finite coordinates, missing names,
 * or names holding both quote characters. */
int px_structure_cif(const px_structure *s, const char *data_name, const char *const *comments,
                     int n_comment, const char *trailer, char **out, size_t *len);

/* The PDB text; comments become REMARK 1 lines. Fails when a value does not fit the
 * fixed columns (chain id longer than 1 character, atom name longer than 4, residue
 * name longer than 3... the message says which), when a coordinate is outside
 * [-999.999, 9999.999], or above 99999 atoms. Ends with "END". */
int px_structure_pdb(const px_structure *s, const char *const *comments, int n_comment, char **out,
                     size_t *len);

/* Atomic writers (PATH.tmp, then rename). PX_ERR_IO names the path and the reason. */
int px_structure_write_cif(const char *path, const px_structure *s, const char *data_name,
                           const char *const *comments, int n_comment, const char *trailer);
int px_structure_write_pdb(const char *path, const px_structure *s, const char *const *comments,
                           int n_comment);

/* 1 when the file exists and its last line is exactly `line` (e.g. "# <trailer>" or
 * "END"); 0 when not (absent, unreadable, truncated, another trailer). */
int px_structure_file_has_trailer(const char *path, const char *line);

/* The file's last line (without its newline) into buf; 0, or -1 when the file is absent,
 * unreadable, does not end with a newline, or the line does not fit cap. */
int px_structure_file_last_line(const char *path, char *buf, size_t cap);

/* Write a whole buffer atomically; PX_ERR_IO with "cannot write PATH: reason". */
int px_write_file_atomic_msg(const char *path, const void *buf, size_t n);

/* ------------------------------------------------ PXDesign's output mmCIF -- */

/* One extra inter-residue bond (the input's _struct_conn kept by the featurizer, e.g. a
 * disulfide): atom indices in either order, and the bond order biotite read from the input's
 * pdbx_value_order (0: unknown, written "?"; 1 sing, 2 doub, 3 trip, 4 quad). */
typedef struct {
  int a, b;
  int order;
} px_pxd_bond;

/* The atom list of a design, in feature order, with one sample's coordinates. */
typedef struct {
  int n_atom;
  const float *xyz;                 /* [N,3] */
  const char *const *atom_name;     /* [N] "CA" */
  const char *const *element;       /* [N] "C" (written as given) */
  const char *const *res_name;      /* [N] "ASN", "xpb" */
  const char *const *chain_id;      /* [N] "A0": label_asym_id = auth_asym_id of _atom_site */
  const char *const *strand_id;     /* [N] or NULL (= chain_id): the chain's label_asym_id, "A",
                                       written as _entity_poly.pdbx_strand_id */
  const char *const *entity_id;     /* [N] "1" */
  const int *res_id;                /* [N] label_seq_id = auth_seq_id */
  const unsigned char *hetero;      /* [N] or NULL: every atom ATOM / hetero "n" */
  int n_bond;
  const px_pxd_bond *bond;          /* [n_bond] extra bonds, each within one chain */
} px_pxd_structure;

/* The mmCIF text `pxdesign infer` writes for sample `sample` of task `task_name`
 * (<task>_sample_<i>.cif: pxdesign/runner/dumper.py -> protenix CIFWriter -> biotite 1.0.1's
 * pdbx.set_structure and CIFFile.write), byte for byte:
 *  - "data_<task>_sample_<i>_predicted_by_protenix" (every ".cif" in "<task>_sample_<i>.cif"
 *    removed first, as upstream's str.replace does), "#" after each category;
 *  - _entry.id <task>; _entity (entity ids sorted as strings, ". polymer"); _entity_poly
 *    (entities in order of appearance, strand ids = the sorted distinct strand_id values,
 *    "polypeptide(L)": every entity is a protein chain here); _entity_poly_seq (the residues
 *    of the entity's first strand: entity, n|y, res_name, res_id);
 *  - _struct_conn, chain by chain: "covale sing" C-N bonds between consecutive residues of
 *    the chain whose numbers differ by at most 1 (protenix/data/ccd.py:_connect_inter_residue;
 *    every residue here is an amino acid), then the chain's extra bonds in the given order
 *    (conn_type "covale" as biotite writes every bond, a bond already listed skipped, lower
 *    atom index as partner 1); omitted when there is no bond;
 *  - _atom_site: group_PDB type_symbol label_atom_id label_alt_id(.) label_comp_id
 *    label_asym_id label_entity_id label_seq_id pdbx_PDB_ins_code(.) auth_seq_id auth_comp_id
 *    auth_asym_id auth_atom_id B_iso_or_equiv(0.0) occupancy(1.0) Cartn_x/y/z
 *    pdbx_PDB_model_num(1) id(1..N); coordinates in numpy's float32 str() form (the shortest
 *    digits that read back to the same float32; positional for 1e-4 <= |x| < 1e16, else
 *    "1e-05" style).
 * Loops are biotite's: each column left-justified to its widest value (in characters) plus
 * one space, the last column not padded, header lines "_cat.key " with a trailing space; a
 * category with one row is written as "_cat.key   value" pairs. Values are quoted as biotite
 * quotes them ('a b', "O5'", '_x', ''). Fails (PX_ERR_INPUT, one line) on non-finite
 * coordinates, missing or multi-line values, values holding both quote characters, bond
 * indices out of range, a bond within one residue or between chains. */
int px_pxd_cif(const px_pxd_structure *s, const char *task_name, int sample, char **out,
               size_t *len);
/* Written atomically (PATH.tmp, then rename). */
PXDIFF_API int px_pxd_write_cif(const char *path, const px_pxd_structure *s, const char *task_name,
                     int sample);
/* numpy's str() of a float32 (see px_pxd_cif) into buf (at least 32 bytes); its length.
 * Non-finite values as numpy writes them ("nan", "inf", "-inf"). */
int px_fmt_float32(float v, char *buf);
/* The same through the general search alone (printf / strtof; px_fmt_float32 takes an exact
 * arithmetic path for 1e-3 <= |v| < 1e7): the reference its tests compare against. */
int px_fmt_float32_reference(float v, char *buf);

#endif
