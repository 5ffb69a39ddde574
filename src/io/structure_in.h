/* Structure readers: a target's mmCIF or PDB file in, the atoms PXDesign's featurizer
 * reads out (docs/design-spec.md, "The target": sections 2.1 and 2.4 of the design
 * specification).
 *
 * What the reader already does (so the featurizer never sees it), as Protenix's
 * DistillationMMCIFParser does it on top of biotite 1.0.1:
 *  - mmCIF: the first model (the leading run of rows with the first row's
 *    pdbx_PDB_model_num); altloc "first" (atoms whose label_alt_id is '.' or the smallest
 *    other id present in that model, compared as strings); atom/residue names from
 *    auth_atom_id/auth_comp_id; chain = label_asym_id; residue number = label_seq_id, and a
 *    chain whose first atom has '.' (a ligand) numbered 1.. per residue;
 *  - MSE -> MET (atom SE -> SD with element S) in atoms and in entity sequences;
 *  - ARG: NH1/NH2 coordinates swapped when |NH2-CD| < |NH1-CD| (float32, upstream's order);
 *  - water (HOH, DOD) and hydrogens (element exactly "H" or "D") dropped, after the above;
 *  - _entity_poly_seq per polymer entity, a repeated number (microheterogeneity) resolved
 *    to the residue the atoms show (else the first listed).
 * PDB input is read as biotite's PDBFile reads it (first model; altloc "first" per
 * residue: blank ids and the first letter id met in the residue; a blank element column
 * guessed from the atom name) and converted as pxdesign's pdb_to_cif converts it: chains
 * split where the chain id changes or the residue number drops, again at the first
 * ATOM/HETATM change inside each, and inside HETATM runs wherever the residue number
 * rises; relabelled A, B, ..., Z, AA, ... in order (waters and ligands use up labels too);
 * residues renumbered 1..n per chain in order of appearance; one entity per distinct
 * residue-name sequence (ids "1", "2", ... in order of first appearance), polypeptide(L)
 * when it has at least 2 standard amino-acid names and no nucleotide; the entity sequence
 * is the observed residues. Atoms keep their author chain id and residue number; a task's
 * ids for PDB input go through px_sin_pdb_chain / px_sin_pdb_residue below.
 *
 * Every failure returns a px_status code and leaves one line naming the file (and the
 * line number where there is one) in px_last_error(). */
#ifndef PX_IO_STRUCTURE_IN_H
#define PX_IO_STRUCTURE_IN_H

#include <stddef.h>
#include <stdint.h>

#include "pxdiff.h"

#define PX_SIN_NAME 8 /* atom, residue, chain and entity ids: at most 7 bytes + NUL */

typedef struct {
  char atom_name[PX_SIN_NAME]; /* auth_atom_id ("CA", "SD" after MSE -> MET) */
  char res_name[PX_SIN_NAME];  /* auth_comp_id ("MET" after MSE -> MET) */
  char element[4];             /* type_symbol, upper case ("C", "SE" -> "S") */
  int chain;                   /* index into px_structure_in.chain */
  int seq_id;                  /* label_seq_id (mmCIF); chains whose label_seq_id is '.'
                                  (ligands) renumbered 1..n as upstream does; PDB: 1..n */
  int auth_seq_id;             /* author residue number (auth_seq_id / PDB resSeq) */
  char ins_code;               /* author insertion code, 0 when none */
  float xyz[3];
} px_sin_atom;

typedef struct {
  char id[PX_SIN_NAME];      /* label_asym_id (mmCIF) or the new id A, B, ... (PDB) */
  char auth_id[PX_SIN_NAME]; /* author chain id (auth_asym_id / PDB chain column) */
  int entity;                /* index into px_structure_in.entity */
} px_sin_chain;

enum { PX_SIN_POLY_NONE = 0, PX_SIN_POLY_PEPTIDE_L, PX_SIN_POLY_OTHER };

typedef struct {
  char id[PX_SIN_NAME];     /* _entity.id / label_entity_id */
  int poly;                 /* PX_SIN_POLY_*: from _entity_poly.type ("polypeptide(L)") */
  int n_seq;                /* _entity_poly_seq rows (one per num; heterogeneity resolved) */
  char (*seq)[PX_SIN_NAME]; /* [n_seq] mon_id, MSE -> MET; seq[k] is residue number k + 1 */
} px_sin_entity;

/* One _struct_conn row (mmCIF input only; PDB input has none). Text fields hold "."
 * where the file has '.' or '?' or lacks the column (symmetry: "1_555" then, as biotite
 * reads it). */
typedef struct {
  char conn_type[16];          /* conn_type_id: "covale", "disulf", ... */
  char asym[2][PX_SIN_NAME];   /* ptnr{1,2}_label_asym_id */
  char comp[2][PX_SIN_NAME];   /* ptnr{1,2}_label_comp_id */
  int seq[2];                  /* ptnr{1,2}_label_seq_id (-1 where '.' or '?') */
  char atom[2][PX_SIN_NAME];   /* ptnr{1,2}_label_atom_id */
  char alt[2][PX_SIN_NAME];    /* pdbx_ptnr{1,2}_label_alt_id */
  char symmetry[2][16];        /* ptnr{1,2}_symmetry */
} px_sin_conn;

/* PDB input: one residue of the converted file as upstream's pdb_to_cif made it, before
 * water and hydrogens were dropped (upstream maps a task's author numbering through all
 * of them). */
typedef struct {
  char auth_chain[PX_SIN_NAME]; /* PDB chain column, "" when blank */
  int auth_seq;                 /* PDB resSeq (hybrid-36 decoded); insertion code apart */
  char ins_code;                /* 0 when none */
  char chain_id[PX_SIN_NAME];   /* the converted chain id (A, B, ..., AA, ...) */
  int chain;                    /* index into px_structure_in.chain; -1 when the residue
                                   was dropped (water, or hydrogens only) */
  int seq_id;                   /* 1..n in its converted chain */
} px_sin_pdb_res;

typedef struct {
  int n_atom;
  px_sin_atom *atom; /* file order */
  int n_chain;
  px_sin_chain *chain;
  int n_entity;
  px_sin_entity *entity;
  int n_conn;
  px_sin_conn *conn;
  int from_pdb; /* 1: converted from PDB (task chain ids and numbers are author ones) */
  int n_pdb_res;
  px_sin_pdb_res *pdb_res; /* PDB input: every converted residue, file order */
  int pdb_dup[2];          /* PDB input: two pdb_res entries with the same author chain and
                              number (upstream refuses any such file), or -1 -1 */
} px_structure_in;

/* Read an mmCIF or PDB file, told apart by content: mmCIF when the first thing that is
 * neither blank nor a '#' comment is a data_ block, else PDB (upstream goes by the .cif /
 * .pdb extension and refuses others). At most 1 GiB. */
PXDIFF_API int px_structure_read(const char *path, px_structure_in **out);
/* The same from memory (fuzzing, tests); name is used in messages. */
PXDIFF_API int px_structure_parse(const char *text, size_t len, const char *name, px_structure_in **out);
PXDIFF_API void px_structure_in_free(px_structure_in *s);

/* Task ids for PDB input (s->from_pdb). Upstream's infer (pxdesign/utils/infer.py:
 * build_chain_mapping, build_residue_maps, rewrite_input_dict_inplace) rewrites the task's
 * author chain ids and author residue numbers into the converted file's before anything
 * else; these two functions are that rewrite, with its refusals:
 *  - every call fails when two residues anywhere in the file share an author chain id and
 *    residue number (insertion codes, a ligand or water numbered like a residue of its
 *    chain): upstream refuses such a PDB file whatever the task;
 *  - an author chain must have become exactly one converted chain: a chain id whose
 *    HETATM records (ligands, waters) follow its ATOM records was split by the conversion
 *    and upstream refuses to map it ("inconsistent mapping"). Only the task's chains are
 *    checked, as upstream does;
 *  - a crop or hotspot residue must exist (each number of a crop range is looked up).
 * mmCIF input needs neither: task chain ids are label_asym_id and numbers label_seq_id. */

/* The converted chain (index into s->chain) the task's author chain names. */
PXDIFF_API int px_sin_pdb_chain(const px_structure_in *s, const char *auth_chain, int *chain);
/* (author chain, author residue number) -> (index into s->chain, seq_id): what a crop
 * number or a hotspot becomes. */
PXDIFF_API int px_sin_pdb_residue(const px_structure_in *s, const char *auth_chain, int auth_seq,
                       int *chain, int *seq_id);

#endif
