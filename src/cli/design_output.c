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
