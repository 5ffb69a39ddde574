/* Synthetic weights and design inputs for benchmarks and the demo (no download needed).
 * Deterministic for a seed on every platform; NOT a trained model. */
#ifndef PXDIFF_SYNTHETIC_H
#define PXDIFF_SYNTHETIC_H

#include "pxdiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The released PXDesign v0.1.0 dimensions (16 token blocks x 16 heads, 4+4 atom blocks). */
PXDIFF_API void px_dims_released(px_dims *d);

/* A model with the given dimensions and PyTorch-default-scaled random weights. */
PXDIFF_API int px_model_synthetic(const px_dims *d, uint64_t seed, px_model **out);

/* A design condition embedder (src/model/embedder.h) with the given widths and
 * PyTorch-default-scaled random weights (nn.Embedding: N(0, 1)); for the demo and tests. */
struct px_embedder;
struct px_embedder_dims;
PXDIFF_API int px_embedder_synthetic(const struct px_embedder_dims *d, uint64_t seed, struct px_embedder **out);

/* Every array of a px_features for T tokens and N atoms, zero-filled (n_token, n_atom set):
 * for callers that build features in memory. PX_ERR_NOMEM (nothing left allocated) on
 * failure; px_features_free releases them. */
PXDIFF_API int px_features_alloc(const px_dims *d, int T, int N, px_features *f);
PXDIFF_API void px_features_free(px_features *f);

/* Synthetic inputs: a target chain of n_target tokens and a binder chain of n_binder
 * tokens, n_atom atoms spread over tokens; s_trunk = 0 as PXDesign passes it. */
typedef struct {
  px_features f;
  unsigned char *is_binder; /* [T] */
} px_synthetic_design;

PXDIFF_API int px_synthetic_design_make(const px_dims *d, int n_target, int n_binder, int n_atom,
                                        uint64_t seed, px_synthetic_design *out);
PXDIFF_API void px_synthetic_free(px_synthetic_design *s);

#ifdef __cplusplus
}
#endif
#endif
