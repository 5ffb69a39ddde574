/* Shared internals of the structure readers (cif_read.c, pdb_read.c): the atom record
 * both readers fill before the steps they have in common (structure_common.c). */
#ifndef PX_IO_STRUCTURE_IN_PRIV_H
#define PX_IO_STRUCTURE_IN_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "io/structure_in.h"

/* Upper bounds that keep every count in an int and every allocation sane. */
#define SIN_MAX_BYTES ((size_t)1 << 30) /* a 1 GiB structure file is not a target */
#define SIN_MAX_ATOMS 20000000

typedef struct {
  char atom[PX_SIN_NAME];
  char res[PX_SIN_NAME];
  char elem[PX_SIN_NAME];  /* as written (the hydrogen test is on this exact text) */
  char asym[PX_SIN_NAME];  /* label_asym_id / converted PDB chain id */
  char auth_asym[PX_SIN_NAME];
  int entity;              /* index into the reader's entity table */
  int seq;                 /* label_seq_id (after upstream's renumbering of '.' chains) */
  int auth_seq;
  char ins;
  int rix;                 /* PDB: index into the converted residues (pdb_res); CIF: -1 */
  float xyz[3];
} sin_raw;

/* A small open-addressing map from names (at most PX_SIN_NAME - 1 bytes) to ints: entity
 * and chain look-ups stay linear in the atom count whatever the file holds. */
typedef struct {
  const char (*key)[PX_SIN_NAME]; /* keys live in the caller's array, indexed by value */
  int *slot;                      /* value + 1, 0 = empty */
  size_t cap;                     /* power of two */
} sin_map;

/* FNV-1a of a name: the map's hash (the mmCIF reader's entity table hashes the same way). */
static inline uint64_t sin_name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* MSE -> MET in place (atom SE -> SD with element S). */
void sin_mse_to_met(sin_raw *a, int n);
/* The rest of the common path (ARG NH1/NH2, water and hydrogens dropped, chains built)
 * and the result assembled. Takes ownership of ent (n_ent entries, their seq arrays),
 * conn and pdb_res on success and on failure; a is the caller's. */
int sin_finish(const char *name, sin_raw *a, int n, px_sin_entity *ent, int n_ent,
               px_sin_conn *conn, int n_conn, px_sin_pdb_res *pdb_res, int n_pdb_res,
               int from_pdb, px_structure_in **out);
void sin_entities_free(px_sin_entity *e, int n);
/* Copy a value of len bytes into a PX_SIN_NAME field; -1 when it does not fit. */
int sin_copy_name(char dst[PX_SIN_NAME], const char *v, size_t len);

int px_cif_parse(const char *text, size_t len, const char *name, px_structure_in **out);
int px_pdb_parse(const char *text, size_t len, const char *name, px_structure_in **out);

#endif
