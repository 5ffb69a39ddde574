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

#endif
