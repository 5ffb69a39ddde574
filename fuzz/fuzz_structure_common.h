/* Shared body of the structure-reader harnesses (fuzz_cif.c, fuzz_pdb.c): parse the input
 * from memory (no terminating NUL, so any read past the end is caught) and check every
 * documented invariant of the result, or the one-line error. */
#ifndef PX_FUZZ_STRUCTURE_COMMON_H
#define PX_FUZZ_STRUCTURE_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pxdiff.h"

/* run.sh links platform.c and strbuf.c; the readers and the error slot come in here. */
#include "error.c"
#include "io/cif_read.c"
#include "io/pdb_read.c"
#include "io/structure_common.c"
#include "io/structure_read.c"

static void name_ok(const char *s, size_t cap) {
  if (!memchr(s, 0, cap)) abort();
}

static int fuzz_structure(const uint8_t *data, size_t size, int pdb) {
  px_structure_in *s = (px_structure_in *)0x1;
  int rc = pdb ? px_pdb_parse((const char *)data, size, "fuzz", &s)
               : px_cif_parse((const char *)data, size, "fuzz", &s);
  if (rc != 0) {
    const char *m = px_last_error();
    if (s || !m[0] || strchr(m, '\n') || !strstr(m, "fuzz")) {
      fprintf(stderr, "bad failure: '%s'\n", m);
      abort();
    }
    return 0;
  }
  if (!s || s->n_atom <= 0 || s->n_chain <= 0 || s->from_pdb != pdb) abort();
  for (int i = 0; i < s->n_entity; i++) {
    const px_sin_entity *e = &s->entity[i];
    name_ok(e->id, sizeof e->id);
    if (e->n_seq < 0 || (e->n_seq && !e->seq)) abort();
    for (int k = 0; k < e->n_seq; k++) name_ok(e->seq[k], PX_SIN_NAME);
  }
  for (int i = 0; i < s->n_chain; i++) {
    name_ok(s->chain[i].id, PX_SIN_NAME);
    name_ok(s->chain[i].auth_id, PX_SIN_NAME);
    if (s->chain[i].entity < 0 || s->chain[i].entity >= s->n_entity) abort();
  }
  for (int i = 0; i < s->n_atom; i++) {
    const px_sin_atom *a = &s->atom[i];
    name_ok(a->atom_name, sizeof a->atom_name);
    name_ok(a->res_name, sizeof a->res_name);
    name_ok(a->element, sizeof a->element);
    if (a->chain < 0 || a->chain >= s->n_chain) abort();
    if (!isfinite(a->xyz[0]) || !isfinite(a->xyz[1]) || !isfinite(a->xyz[2])) abort();
    if (!strcmp(a->res_name, "HOH") || !strcmp(a->res_name, "DOD") || !strcmp(a->res_name, "MSE"))
      abort();
  }
  for (int i = 0; i < s->n_conn; i++) {
    name_ok(s->conn[i].conn_type, sizeof s->conn[i].conn_type);
    for (int p = 0; p < 2; p++) name_ok(s->conn[i].symmetry[p], sizeof s->conn[i].symmetry[p]);
  }
  if (pdb) {
    if (s->n_pdb_res <= 0) abort();
    for (int i = 0; i < s->n_pdb_res; i++) {
      const px_sin_pdb_res *r = &s->pdb_res[i];
      if (r->chain < -1 || r->chain >= s->n_chain || r->seq_id < 1) abort();
      name_ok(r->chain_id, PX_SIN_NAME);
    }
    if ((s->pdb_dup[0] < 0) != (s->pdb_dup[1] < 0) || s->pdb_dup[0] >= s->n_pdb_res ||
        s->pdb_dup[1] >= s->n_pdb_res)
      abort();
    /* the task-id mapping on the file's own ids */
    int c, q;
    const px_sin_pdb_res *r = &s->pdb_res[s->n_pdb_res / 2];
    if (px_sin_pdb_chain(s, r->auth_chain, &c) == 0 && (c < 0 || c >= s->n_chain)) abort();
    if (px_sin_pdb_residue(s, r->auth_chain, r->auth_seq, &c, &q) == 0 &&
        (c < 0 || c >= s->n_chain || q != r->seq_id || s->pdb_dup[0] >= 0))
      abort();
    if (px_sin_pdb_chain(s, "nochain", &c) == 0) abort();
  }
  px_structure_in_free(s);
  return 0;
}

#endif
