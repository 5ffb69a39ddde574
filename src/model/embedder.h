/* PXDesign's design condition embedder (docs/design-spec.md section 8): the diffusion module's
 * conditioning inputs s_inputs and z_trunk, computed from a design's features.
 *
 *   s_inputs = input_map([a, restype, plddt = 0, hotspot, add_feat, add_feat])   [T, c_s_inputs]
 *     a = token mean of relu(Lin_q(q)), q from an AtomAttentionEncoder without coordinates
 *         (the diffusion module's atom-encoder code: reference-feature embedding, pair
 *         features, atom transformer; model/design.c, model/denoise.c)
 *     add_feat = one_hot(0, 4) = [1, 0, 0, 0]
 *   z_trunk[i, j] = E[templ_mask[i, j] * (1 + templ[i, j])]                        [T, T, c_z]
 *   (s_trunk, the third conditioning input, is zeros [T, c_s]: nothing computes it.)
 *
 * Use:
 *   px_embedder *e;
 *   px_embedder_load("pxdesign_v0.1.0.pt", &e);        // or .safetensors; "module." optional
 *   px_embedder_set_backend(e, PX_DEVICE_CUDA);         // optional: the atom transformer and
 *                                                       // the token projections on the GPU
 *   px_embed(e, &features, restype, hotspot, templ, templ_mask, PX_EMBED_BF16, s_inputs, z_trunk);
 *   px_embedder_free(e);
 *
 * Widths are read off the weights (released: c_atom 128, c_atompair 16, c_token 384,
 * c_s_inputs 449, c_z 128, 3 blocks of 4 heads); px_embedder_get_dims reports them.
 *
 * The functions marked PXDIFF_API are exported by libpxdiff.so (the Python tests call them);
 * px_embedder handles follow pxdiff.h's rules for px_model: owned by the caller, freed by
 * px_embedder_free; px_embed only reads the embedder (concurrent calls are fine on the CPU;
 * serialize them on CUDA); px_embedder_set_backend must not overlap another call. */
#ifndef PX_MODEL_EMBEDDER_H
#define PX_MODEL_EMBEDDER_H

#include <stdint.h>

#include "model/model.h"
#include "pxdiff.h"

/* Tensor names: the checkpoint's "design_condition_embedder." subtree. */
#define PX_EMBED_PREFIX "design_condition_embedder."
#define PX_EMBED_RESTYPES 36    /* restype one-hot width (docs/design-spec.md 5.2) */
#define PX_EMBED_N_EXTRA 46     /* restype 36 + plddt 1 + hotspot 1 + add_feat 4 + 4 */
#define PX_EMBED_TEMPL_BINS 64  /* conditional_templ values 0..63; the embedding has 65 rows */

typedef struct px_embedder px_embedder;

typedef struct px_embedder_dims {
  int c_atom, c_atompair, c_token, c_s_inputs, c_z;
  int n_blocks, n_heads; /* of the atom transformer */
} px_embedder_dims;

/* px_embed's number types (docs/design-spec.md 9.1).
 * PX_EMBED_FP32: everything in float32, as upstream's `--dtype fp32` (and every CPU run).
 * PX_EMBED_BF16: the same float32 computation, then s_inputs rounded to bfloat16 (round to
 *   nearest even), the type upstream's default `--dtype bf16` run hands to the sampler.
 *   What is NOT emulated: under autocast upstream also rounds every Linear's inputs, weights
 *   and outputs inside the embedder to bf16 and sums the token mean with atomic bf16 adds
 *   (not reproducible run to run), so this mode agrees with upstream's bf16 run statistically,
 *   not bitwise. Measured (H200, torch 2.11, the quick-start task at the released widths,
 *   random weights): this mode is 3.3e-3 relative (max abs 7.8e-3) from upstream's bf16 run
 *   (55% of the values equal), the fp32 mode 3.0e-3; two upstream bf16 runs differ by 2.5e-4
 *   (max abs 7.8e-3); the fp32 mode is 8.9e-8 from upstream's fp32 run on the GPU.
 *   z_trunk is a float32 table lookup in both modes, identical to upstream's. */
enum { PX_EMBED_FP32 = 0, PX_EMBED_BF16 = 1 };

/* Load the embedder's tensors from a checkpoint (.pt or .safetensors, detected by content;
 * names with or without "module."). Every tensor must be present with its shape, else
 * PX_ERR_WEIGHTS with the tensor's name; other tensors (the diffusion module's) are ignored. */
PXDIFF_API int px_embedder_load(const char *path, px_embedder **out);
/* The same from named float32 arrays in memory (full names, "module." optional; copied). */
PXDIFF_API int px_embedder_from_arrays(int n, const char *const *names, const float *const *data, const int *ndims,
                            const int64_t *const *shapes, px_embedder **out);
PXDIFF_API void px_embedder_free(px_embedder *e);
PXDIFF_API int px_embedder_get_dims(const px_embedder *e, px_embedder_dims *out);
/* Float values the embedder keeps for its weights. */
PXDIFF_API int64_t px_embedder_n_params(const px_embedder *e);
/* The released PXDesign v0.1.0 embedder's widths. */
PXDIFF_API void px_embedder_dims_released(px_embedder_dims *d);

/* Where px_embed runs its atom transformer, token mean and input_map: PX_DEVICE_CPU (the
 * default), PX_DEVICE_CUDA (weights copied to the device once; float32 arithmetic, no TF32)
 * or PX_DEVICE_AUTO. The per-design preparation (reference features, pair features, pair
 * biases, AdaLN terms) is computed on the host either way, as for the diffusion module. */
PXDIFF_API int px_embedder_set_backend(px_embedder *e, int device);
PXDIFF_API const char *px_embedder_backend_name(const px_embedder *e); /* "cpu" or "cuda:0" */

/* One design's conditioning. From f: n_token (T), n_atom (N), ref_pos, ref_charge, ref_mask,
 * ref_element, ref_atom_name_chars, ref_space_uid, atom_to_token_idx (ascending, in [0, T),
 * ending at T - 1); the other fields of f are not read and may be NULL. Then:
 *   restype     [T, 36] float (one-hot, docs/design-spec.md 5.2)
 *   hotspot     [T] float (1 for a hotspot residue)
 *   templ       [T, T] int64 conditional_templ (distance bin 0..63 where templ_mask is 1)
 *   templ_mask  [T, T] uint8 conditional_templ_mask (0 or 1)
 *   dtype       PX_EMBED_FP32 or PX_EMBED_BF16 (above)
 * Outputs: s_inputs [T, c_s_inputs] and z_trunk [T, T, c_z] (NULL: not computed; templ and
 * templ_mask may then be NULL too). On failure (bad inputs: one-line message, PX_ERR_INPUT)
 * the outputs are left untouched. */
PXDIFF_API int px_embed(const px_embedder *e, const px_features *f, const float *restype, const float *hotspot,
             const int64_t *templ, const uint8_t *templ_mask, int dtype, float *s_inputs, float *z_trunk);

/* ---- internal: the atom transformer's s-side terms (AdaLN scales and shifts, gates) of
 * every block for s = c, computed from the reference features' nonzero entries through
 * composite matrices made at load (model/embedder.c says why); into caches[k]'s eight
 * buffers, which the caller sets (host memory, N x c_atom each). Equal, up to rounding, to
 * px_atom_ref_single then px_atom_block_cache_build (tests/test_embedder.c checks it).
 * PX_OK, or PX_ERR_NOMEM with nothing valid written. */
int px_embedder_sside(const px_embedder *e, const px_features *f, px_atom_block_cache *caches);

/* ---- internal: the weights (model/weights.c, model/load.c) ---- */
typedef struct {
  px_embedder_dims dims;
  px_atom_ref_w ref;   /* input_embedder.atom_attention_encoder.linear_no_bias_{ref_pos,...}, small_mlp */
  px_transformer_w tf; /* ....atom_transformer.diffusion_transformer (cross-attention blocks) */
  px_linear q;         /* ....linear_no_bias_q [c_token, c_atom] */
  px_linear map_a;     /* input_embedder.input_map: columns over a [c_s_inputs, c_token], and its bias */
  px_linear map_x;     /* the columns over the 46 token features [c_s_inputs, 46] (no bias) */
  float *templ;        /* condition_template_embedder.embedder.weight [65, c_z] */
  float **owned;       /* every buffer above */
  size_t *owned_n;
  int n_owned, cap_owned;
  int64_t n_params;
} px_embedder_w;

int px_embedder_w_build(const px_weight_source *src, px_embedder_w *w);
int px_embedder_w_load(const char *path, px_embedder_w *w);
int px_embedder_w_from_arrays(int n, const char *const *names, const float *const *data, const int *ndims,
                              const int64_t *const *shapes, px_embedder_w *w);
void px_embedder_w_free(px_embedder_w *w);
/* Calls fn on the address of every weight pointer (NULL ones included). */
void px_embedder_w_visit(px_embedder_w *w, px_weight_visitor fn, void *user);

#endif
