/* Hooks of libpxdiff for its tests and for the Python package's internals: exported, so
 * that ctypes can reach them, but NOT part of the stable API (they may change with any
 * release). Applications use pxdiff.h.
 *
 * What is here and why:
 *   - inspection probes of the forward (tests/python compares every intermediate with the
 *     float64 reference);
 *   - the feature-bundle reader (src/io/bundle.h), which python/pxdiff/bundle.py uses to
 *     validate a bundle with the engine's own checks before writing it;
 *   - the CUDA backend's memory counters (tests/gpu; present only in builds with CUDA);
 *   - internal functions the Python tests call, listed at the end with their headers. */
#ifndef PXDIFF_TESTING_H
#define PXDIFF_TESTING_H

#include <stdint.h>

#include "pxdiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- probes ---- */

/* The probe is called with named intermediates as the engine produces them, in host
 * memory, row-major:
 *   design: "s0" [T,c_s], "pair_z" [T,T,c_z], "c" [N,c_atom], "p" [n_trunks,32,128,c_atompair]
 *   call:   "s" [Ss,T,c_s] (Ss = 1 when all t_hat are equal), "a_enc" [S,T,c_token],
 *           "q_skip" [S,N,c_atom], "a_in", "a_trans", "a_ln" [S,T,c_token],
 *           "r_update" [S,N,3].
 * Otherwise as px_design_create and px_denoise. */
typedef void (*px_probe_fn)(void *user, const char *name, const float *data, int64_t n);
PXDIFF_API int px_design_create_probe(const px_model *m, const px_features *f, px_probe_fn probe, void *user,
                                      px_design **out);
PXDIFF_API int px_denoise_probe(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                                const float *t_hat, float *x_out, px_probe_fn probe, void *user);

/* --------------------------------------------------------------- bundles ---- */

/* A feature bundle read and validated completely (docs/bundle.md; src/io/bundle.h has the
 * rest of the reader). Owned by the caller, released by px_bundle_free; everything it
 * returns is owned by it. */
typedef struct px_bundle px_bundle;
PXDIFF_API int px_bundle_open(const char *path, px_bundle **out);
PXDIFF_API void px_bundle_free(px_bundle *b);
PXDIFF_API const px_features *px_bundle_features(const px_bundle *b);
/* Widths read off the bundle; c_s is 0 when s_trunk is absent. */
PXDIFF_API void px_bundle_widths(const px_bundle *b, int *c_s_inputs, int *c_s, int *c_z);
/* count x 17-byte NUL-padded slots: field 0 res_name [T], 1 chain_id [T], 2 atom_name [N],
 * 3 atom_element [N]. */
PXDIFF_API const char *px_bundle_text(const px_bundle *b, int field);
PXDIFF_API const int64_t *px_bundle_res_nums(const px_bundle *b);
PXDIFF_API const uint8_t *px_bundle_designed_flags(const px_bundle *b);
/* Bit i set when annotation i was stored in the file (else synthesized). */
PXDIFF_API int px_bundle_annotations_present(const px_bundle *b);

/* ------------------------------------------------------------- internals ---- */

/* Internal functions the Python tests call through ctypes (tests/python/test_embedder.py,
 * test_structure_in.py, test_pxd_cif.py, ...). Their argument types live in internal
 * headers, which declare them with PXDIFF_API; they are listed here so that everything
 * libpxdiff.so exports is written down under include/ (tests/python/test_api.py checks the
 * list against those headers and against the library, both ways):
 *   internal: px_pxd_write_cif (src/io/structure.h)
 *   internal: px_sin_pdb_chain (src/io/structure_in.h)
 *   internal: px_sin_pdb_residue (src/io/structure_in.h)
 *   internal: px_structure_in_free (src/io/structure_in.h)
 *   internal: px_structure_parse (src/io/structure_in.h)
 *   internal: px_structure_read (src/io/structure_in.h)
 *   internal: px_embed (src/model/embedder.h)
 *   internal: px_embedder_backend_name (src/model/embedder.h)
 *   internal: px_embedder_dims_released (src/model/embedder.h)
 *   internal: px_embedder_free (src/model/embedder.h)
 *   internal: px_embedder_from_arrays (src/model/embedder.h)
 *   internal: px_embedder_get_dims (src/model/embedder.h)
 *   internal: px_embedder_load (src/model/embedder.h)
 *   internal: px_embedder_n_params (src/model/embedder.h)
 *   internal: px_embedder_set_backend (src/model/embedder.h)
 */

/* ------------------------------------------------------------------ CUDA ---- */

/* Bytes the CUDA backend holds now / at most since the last reset (CUDA builds only). */
PXDIFF_API int64_t px_cuda_memory_in_use(void);
PXDIFF_API int64_t px_cuda_memory_peak(void);
PXDIFF_API void px_cuda_memory_reset_peak(void);

#ifdef __cplusplus
}
#endif
#endif
