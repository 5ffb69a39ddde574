/* libFuzzer harness: conformer tables (src/featurize/conformers.c, docs/conformers.md).
 * An input either fails with one non-empty line naming the file and leaves no table, or
 * gives a table in which every template atom has a finite position, the residues read from
 * the input are counted, and residues not in it keep the built-in coordinates. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* run.sh links the platform and tensor-file sources; the table reader, the templates and
 * the error slot are compiled in here. */
#include "error.c"
#include "featurize/conformers.c"
#include "featurize/residue_table.c"
#include "featurize/residues.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  px_conformers *c = (px_conformers *)1;
  const int rc = px_conformers_parse((const char *)data, size, "fuzz.txt", &c);
  if (rc != PX_OK) {
    const char *m = px_last_error();
    if (c != NULL || !m[0] || strchr(m, '\n') || !strstr(m, "fuzz.txt")) abort();
    return 0;
  }
  if (!c) abort();
  const int n = px_conformers_n_from_file(c);
  if (n < 1 || n > PX_N_RES_TEMPLATES) abort();
  for (int r = 0; r < PX_N_RES_TEMPLATES; r++) {
    const px_res_template *t = &px_res_templates[r];
    for (int a = 0; a < t->n_atom; a++) {
      const float *p = px_conformers_get(c, t->name, t->atom[a]);
      if (!p) abort();
      for (int k = 0; k < 3; k++)
        if (!isfinite(p[k]) || fabsf(p[k]) > 1e4f) abort();
      if (!c->from_file[r] && memcmp(p, t->ideal[a], sizeof t->ideal[a])) abort();
    }
  }
  px_conformers_free(c);
  return 0;
}
