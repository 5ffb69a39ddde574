/* One designed sample in PXDesign's mmCIF layout (cmd_design.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_design.h"
#include "error.h"
#include "io/structure.h"

int design_write_cif(const char *path, const px_design_input *in, const float *xyz, const char *task_name,
                     long sample, const char *trailer) {
  const int N = in->n_atom;
  const char **name = malloc(sizeof(char *) * (size_t)N * 6);
  px_pxd_bond *bond = malloc(sizeof *bond * (size_t)(in->n_bond ? in->n_bond : 1));
  char(*strand)[8] = malloc(sizeof *strand * (size_t)(in->n_chain ? in->n_chain : 1));
  if (!name || !bond || !strand) {
    free(name);
    free(bond);
    free(strand);
    return px_fail(PX_ERR_NOMEM, "out of memory writing %s", path);
  }
  const char **atom = name, **elem = name + N, **res = name + 2 * N, **chain = name + 3 * N,
             **str = name + 4 * N, **ent = name + 5 * N;
  /* _entity_poly.pdbx_strand_id holds the chain's letters without the "0" that PXDesign's
   * chain ids carry ("A" for "A0"). */
  for (int c = 0; c < in->n_chain; c++) {
    snprintf(strand[c], sizeof strand[c], "%s", in->chain[c].label);
    size_t l = strlen(strand[c]);
    if (l > 1 && strand[c][l - 1] == '0') strand[c][l - 1] = '\0';
  }
  for (int i = 0; i < N; i++) {
    const px_design_chain *c = &in->chain[in->atom_chain[i]];
    atom[i] = in->atom_name[i];
    elem[i] = in->element[i];
    res[i] = in->res_name[i];
    chain[i] = c->label;
    str[i] = strand[in->atom_chain[i]];
    ent[i] = c->entity;
  }
  /* The input's bonds: biotite keeps no order for them here, written "?". */
  for (int k = 0; k < in->n_bond; k++) bond[k] = (px_pxd_bond){.a = in->bond[k].a, .b = in->bond[k].b, .order = 0};
  px_pxd_structure s = {.n_atom = N, .xyz = xyz, .atom_name = atom, .element = elem, .res_name = res,
                        .chain_id = chain, .strand_id = str, .entity_id = ent, .res_id = in->atom_res_id,
                        .n_bond = in->n_bond, .bond = bond};
  char *text = NULL;
  size_t len = 0;
  int rc = px_pxd_cif(&s, task_name, (int)sample, &text, &len);
  free(name);
  free(bond);
  free(strand);
  if (rc) return rc;
  size_t tl = trailer ? strlen(trailer) : 0;
  char *all = realloc(text, len + tl + 4);
  if (!all) {
    free(text);
    return px_fail(PX_ERR_NOMEM, "out of memory writing %s", path);
  }
  if (trailer) {
    memcpy(all + len, "# ", 2);
    memcpy(all + len + 2, trailer, tl);
    all[len + 2 + tl] = '\n';
    len += tl + 3;
  }
  rc = px_write_file_atomic_msg(path, all, len);
  free(all);
  return rc;
}

/* ------------------------------------------------------------------- PDB -- */

/* PDB chain ids are one character. Without binder_first each chain keeps the letters of
 * its label when they are one character ("A0" -> "A") and free; others take the next free
 * of A-Z, a-z, 0-9. With binder_first the binder is "A" and the target chains follow
 * "B", "C", ... in task order (AF2-initial-guess and ProteinMPNN binder pipelines read the
 * binder as chain A). */
int design_pdb_chains(const px_design_input *in, int binder_first, char (*letter)[2]) {
  static const char pool[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  if (in->n_chain > (int)sizeof pool - 1)
    return px_fail(PX_ERR_INPUT, "--pdb: %d chains, but a PDB file has at most %d one-character chain ids",
                   in->n_chain, (int)sizeof pool - 1);
  char used[256] = {0};
  for (int c = 0; c < in->n_chain; c++) letter[c][0] = letter[c][1] = '\0';
  if (binder_first) {
    int k = 0;
    for (int pass = 0; pass < 2; pass++)
      for (int c = 0; c < in->n_chain; c++)
        if (!!in->chain[c].is_binder == (pass == 0)) letter[c][0] = pool[k++];
    return PX_OK;
  }
  for (int c = 0; c < in->n_chain; c++) {
    char l[8];
    snprintf(l, sizeof l, "%s", in->chain[c].label);
    size_t n = strlen(l);
    if (n > 1 && l[n - 1] == '0') l[--n] = '\0';
    if (n == 1 && strchr(pool, l[0]) && !used[(unsigned char)l[0]]) {
      letter[c][0] = l[0];
      used[(unsigned char)l[0]] = 1;
    }
  }
  for (int c = 0; c < in->n_chain; c++) {
    if (letter[c][0]) continue;
    for (const char *p = pool; *p; p++)
      if (!used[(unsigned char)*p]) {
        letter[c][0] = *p;
        used[(unsigned char)*p] = 1;
        break;
      }
  }
  return PX_OK;
}

int design_write_pdb(const char *path, const px_design_input *in, const float *xyz, const char *task_name,
                     long sample, int binder_first, const char (*letter)[2]) {
  const int N = in->n_atom;
  int *order = malloc(sizeof(int) * (size_t)(N ? N : 1));
  float *x = malloc(sizeof(float) * 3 * (size_t)(N ? N : 1));
  const char **name = malloc(sizeof(char *) * 4 * (size_t)(N ? N : 1));
  int *res = malloc(sizeof(int) * (size_t)(N ? N : 1));
  if (!order || !x || !name || !res) {
    free(order);
    free(x);
    free(name);
    free(res);
    return px_fail(PX_ERR_NOMEM, "out of memory writing %s", path);
  }
  /* atoms chain by chain in output order (the binder's first with binder_first) */
  int k = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int c = 0; c < in->n_chain; c++) {
      const int first = binder_first ? (pass == 0) == !!in->chain[c].is_binder : pass == 0;
      if (!first) continue;
      for (int a = 0; a < in->chain[c].n_atom; a++) order[k++] = in->chain[c].atom_start + a;
    }
  const char **atom = name, **elem = name + N, **rn = name + 2 * N, **chain = name + 3 * N;
  int binder_chain = -1;
  for (int j = 0; j < k; j++) {
    const int i = order[j];
    const int c = in->atom_chain[i];
    if (in->chain[c].is_binder) binder_chain = c;
    memcpy(x + 3 * (size_t)j, xyz + 3 * (size_t)i, 3 * sizeof(float));
    atom[j] = in->atom_name[i];
    elem[j] = in->element[i];
    /* the binder's residues are "xpb" in PXDesign's CIF; PDB readers of backbone pipelines
     * take glycine */
    rn[j] = in->chain[c].is_binder ? "GLY" : in->res_name[i];
    chain[j] = letter[c];
    res[j] = in->atom_res_id[i];
  }
  char map[1024], c0[160], c1[160];
  size_t m = 0;
  map[0] = '\0';
  for (int c = 0; c < in->n_chain && m < sizeof map - 40; c++)
    m += (size_t)snprintf(map + m, sizeof map - m, "%s%s->%s", c ? " " : "", in->chain[c].label, letter[c]);
  snprintf(c0, sizeof c0, "pxdiff design %.100s sample %ld", task_name, sample);
  snprintf(c1, sizeof c1, "binder: chain %s, residues GLY (xpb in the mmCIF)",
           binder_chain >= 0 ? letter[binder_chain] : "?");
  char cm[1100];
  snprintf(cm, sizeof cm, "chain ids (mmCIF -> PDB): %s", map);
  const char *comments[3] = {c0, cm, c1};
  px_structure s = {.n_atom = k, .xyz = x, .atom_name = atom, .element = elem, .res_name = rn, .chain_id = chain,
                    .res_seq = res};
  char *text = NULL;
  size_t len = 0;
  int rc = px_structure_pdb(&s, comments, 3, &text, &len);
  if (rc) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", px_last_error());
    rc = px_fail(rc, "--pdb: design %s sample %ld (%s) cannot be written as PDB: %s", task_name, sample, path, msg);
  } else {
    rc = px_write_file_atomic_msg(path, text, len);
  }
  free(text);
  free(order);
  free(x);
  free(name);
  free(res);
  return rc;
}
