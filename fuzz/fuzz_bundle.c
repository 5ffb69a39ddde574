/* libFuzzer harness: feature bundles (src/io/bundle.c on top of the safetensors indexer).
 * An input either fails with one non-empty line or opens into a bundle whose features
 * satisfy every documented invariant; the accessors and the summary are exercised too. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/bundle.h"
#include "pxdiff.h"

/* run.sh links the tensor-file sources only; the bundle reader and the error slot are
 * compiled in here (it asks a model nothing: widths come as px_dims). */
#include "error.c"
#include "io/bundle.c"

static char path[128];
static void cleanup(void) {
  if (path[0]) unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/pxdiff_fuzz_bundle_%ld.bin", (long)getpid());
    atexit(cleanup);
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
  px_bundle *b = NULL;
  if (px_bundle_open(path, &b) != 0) {
    const char *m = px_last_error();
    if (b || !m[0] || strchr(m, '\n')) {
      fprintf(stderr, "bad failure: '%s'\n", m);
      abort();
    }
    return 0;
  }
  const px_features *x = px_bundle_features(b);
  const int T = x->n_token, N = x->n_atom;
  if (T <= 0 || N <= 0 || T != px_bundle_n_tokens(b) || N != px_bundle_n_atoms(b)) abort();
  int csi, cs, cz;
  px_bundle_widths(b, &csi, &cs, &cz);
  if (csi <= 0 || cz <= 0 || cs < 0 || (cs == 0) != (x->s_trunk == NULL)) abort();
  for (int n = 0; n < N; n++) {
    if (x->atom_to_token_idx[n] < 0 || x->atom_to_token_idx[n] >= T) abort();
    if (n && x->atom_to_token_idx[n] < x->atom_to_token_idx[n - 1]) abort();
    if (!isfinite(x->ref_pos[3 * n]) || !isfinite(x->ref_charge[n]) || !isfinite(x->ref_mask[n])) abort();
    int ones = 0;
    for (int k = 0; k < 128; k++) ones += x->ref_element[(size_t)n * 128 + k] == 1.0f;
    if (ones > 1) abort();
    const char *an = px_bundle_atom_name(b, n), *el = px_bundle_atom_element(b, n);
    if (!an[0] || !el[0] || strlen(an) > PX_BUNDLE_STR_MAX || strlen(el) > PX_BUNDLE_STR_MAX) abort();
  }
  for (int t = 0; t < T; t++) {
    const char *rn = px_bundle_res_name(b, t), *ch = px_bundle_chain_id(b, t);
    if (!rn[0] || !ch[0] || strlen(rn) > PX_BUNDLE_STR_MAX || strlen(ch) > PX_BUNDLE_STR_MAX) abort();
    if (px_bundle_is_designed(b, t) > 1) abort();
    (void)px_bundle_res_num(b, t);
  }
  if (!isfinite(x->s_inputs[(size_t)T * csi - 1]) || !isfinite(x->z_trunk[(size_t)T * T * cz - 1])) abort();
  (void)px_bundle_meta(b, "name");
  FILE *o = fopen("/dev/null", "w");
  if (o) {
    px_bundle_summary(b, o);
    fclose(o);
  }
  px_bundle_free(b);
  return 0;
}
