/* The condition template: distance bins between target tokens (featurize.h; upstream:
 * pxdesign/data/featurizer.py DesignFeaturizer.get_condition_template_feature, called from
 * json_to_feature.py add_design_features with the input coordinates). */
#include <math.h>
#include <string.h>

#include "featurize/featurize_internal.h"

/* torch.linspace(2.0, 22.0, 63) in float32 as torch 1.13 on x86-64 computes it: some entries
 * lie one ulp from 2 + 20 k / 62, so the values are spelled out (hex, exact). */
const float px_feat_templ_edges[PX_FEAT_N_TEMPL_BIN - 1] = {
    0x1.0000000000000p+1f, 0x1.294a520000000p+1f, 0x1.5294a40000000p+1f, 0x1.7bdef80000000p+1f, 0x1.a5294a0000000p+1f,
    0x1.ce739c0000000p+1f, 0x1.f7bdf00000000p+1f, 0x1.1084200000000p+2f, 0x1.25294a0000000p+2f, 0x1.39ce740000000p+2f,
    0x1.4e739c0000000p+2f, 0x1.6318c60000000p+2f, 0x1.77bdf00000000p+2f, 0x1.8c63180000000p+2f, 0x1.a108420000000p+2f,
    0x1.b5ad6c0000000p+2f, 0x1.ca52940000000p+2f, 0x1.def7be0000000p+2f, 0x1.f39ce60000000p+2f, 0x1.0421080000000p+3f,
    0x1.0e739c0000000p+3f, 0x1.18c6300000000p+3f, 0x1.2318c60000000p+3f, 0x1.2d6b5a0000000p+3f, 0x1.37bdf00000000p+3f,
    0x1.4210840000000p+3f, 0x1.4c631a0000000p+3f, 0x1.56b5ae0000000p+3f, 0x1.6108420000000p+3f, 0x1.6b5ad80000000p+3f,
    0x1.75ad6c0000000p+3f, 0x1.8000000000000p+3f, 0x1.8a52960000000p+3f, 0x1.94a52a0000000p+3f, 0x1.9ef7c00000000p+3f,
    0x1.a94a540000000p+3f, 0x1.b39ce80000000p+3f, 0x1.bdef7c0000000p+3f, 0x1.c842120000000p+3f, 0x1.d294a60000000p+3f,
    0x1.dce73a0000000p+3f, 0x1.e739ce0000000p+3f, 0x1.f18c640000000p+3f, 0x1.fbdef80000000p+3f, 0x1.0318c60000000p+4f,
    0x1.0842100000000p+4f, 0x1.0d6b5a0000000p+4f, 0x1.1294a60000000p+4f, 0x1.17bdf00000000p+4f, 0x1.1ce73a0000000p+4f,
    0x1.2210840000000p+4f, 0x1.2739ce0000000p+4f, 0x1.2c63180000000p+4f, 0x1.318c640000000p+4f, 0x1.36b5ae0000000p+4f,
    0x1.3bdef80000000p+4f, 0x1.4108420000000p+4f, 0x1.46318c0000000p+4f, 0x1.4b5ad60000000p+4f, 0x1.5084220000000p+4f,
    0x1.55ad6c0000000p+4f, 0x1.5ad6b60000000p+4f, 0x1.6000000000000p+4f,
};

/* A token is templated when it belongs to the target and its representative atom (CB; CA for
 * GLY) was resolved in the file. For templated i, j (the diagonal included) the bin is the
 * number of edges below the distance of the two atoms' input coordinates; every other pair
 * is 0 with mask 0. Upstream measures in float32 with torch.cdist (the matrix-product form
 * for more than 25 rows, ~2e-5 A off); the distance here is exact (double) from the float32
 * coordinates, so a pair lying within ~1e-5 A of an edge can land one bin away (none does on
 * the test targets). */
void px_feat_template_bins(px_design_input *d, const int *rep_atom) {
  const int T = d->n_token;
  memset(d->conditional_templ, 0, (size_t)T * T * sizeof *d->conditional_templ);
  memset(d->conditional_templ_mask, 0, (size_t)T * T);
  for (int i = 0; i < T; i++) {
    const int ai = rep_atom[i];
    if (ai < 0 || !d->is_resolved[ai]) continue;
    const float *xi = &d->xyz_in[(size_t)ai * 3];
    for (int j = 0; j < T; j++) {
      const int aj = rep_atom[j];
      if (aj < 0 || !d->is_resolved[aj]) continue;
      const float *xj = &d->xyz_in[(size_t)aj * 3];
      const double dx = (double)xi[0] - xj[0], dy = (double)xi[1] - xj[1], dz = (double)xi[2] - xj[2];
      const double dist = sqrt(dx * dx + dy * dy + dz * dz);
      /* Edges ascend: the count of edges below dist is the first edge >= dist. */
      int lo = 0, hi = PX_FEAT_N_TEMPL_BIN - 1;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (dist > (double)px_feat_templ_edges[mid]) lo = mid + 1;
        else hi = mid;
      }
      const int b = lo;
      d->conditional_templ[(size_t)i * T + j] = b;
      d->conditional_templ_mask[(size_t)i * T + j] = 1;
    }
  }
}
