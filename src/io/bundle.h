/* Feature bundles: one design's diffusion inputs and structure annotations in a
 * safetensors file (layout: docs/bundle.md).
 *
 * px_bundle_open reads and validates a bundle completely (shapes agree, indices in range,
 * atom_to_token_idx non-decreasing and in [0, T), floats finite, one-hot rows valid,
 * annotation strings printable ASCII); what it returns is ready for px_design_create
 * once the widths are checked against a model's (px_bundle_features_for_dims).
 * Every failure returns a px_status code and leaves one line, starting with the path,
 * in px_last_error(). */
#ifndef PX_IO_BUNDLE_H
#define PX_IO_BUNDLE_H

#include <stdint.h>
#include <stdio.h>

#include "pxdiff.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PX_BUNDLE_FORMAT "pxdiff-bundle"
#define PX_BUNDLE_VERSION "1"
/* Annotation strings are at most this many bytes; each is stored in a slot of
 * PX_BUNDLE_STR_SLOT bytes (NUL-terminated). */
#define PX_BUNDLE_STR_MAX 16
#define PX_BUNDLE_STR_SLOT (PX_BUNDLE_STR_MAX + 1)
/* Size limits (those of px_design_create). */
#define PX_BUNDLE_MAX_TOKENS 46340 /* T * T <= 2^31 */
#define PX_BUNDLE_MAX_ATOMS (1 << 26)
/* Integer features and residue numbers must satisfy |v| <= this. */
#define PX_BUNDLE_MAX_INT ((int64_t)1 << 30)

typedef struct px_bundle px_bundle;

int px_bundle_open(const char *path, px_bundle **out);
void px_bundle_free(px_bundle *b);

/* The features, owned by the bundle (float32 / int64, one-hots expanded).
 * s_trunk is NULL when the bundle holds none (it then means zeros of the model's c_s:
 * use px_bundle_features_for_dims). */
const px_features *px_bundle_features(const px_bundle *b);
int px_bundle_n_tokens(const px_bundle *b);
int px_bundle_n_atoms(const px_bundle *b);
/* Widths read off the bundle; c_s is 0 when s_trunk is absent. */
void px_bundle_widths(const px_bundle *b, int *c_s_inputs, int *c_s, int *c_z);

/* PX_ERR_INPUT with a one-line message when c_s_inputs, c_s or c_z disagree with a model's
 * widths D (px_model_get_dims: the reader knows widths, not models). */
int px_bundle_check_dims(const px_bundle *b, const px_dims *D);
/* Checks the widths and returns features ready for px_design_create (allocating the
 * zero s_trunk [T, c_s] once when the bundle has none). The pointer stays valid until
 * the bundle is freed or this is called again with another c_s. */
int px_bundle_features_for_dims(px_bundle *b, const px_dims *D, const px_features **out);

/* Structure annotations; synthesized when the bundle lacks them (docs/bundle.md).
 * Indices out of range give "" / 0. */
const char *px_bundle_res_name(const px_bundle *b, int token);
const char *px_bundle_chain_id(const px_bundle *b, int token);
int64_t px_bundle_res_num(const px_bundle *b, int token);
int px_bundle_is_designed(const px_bundle *b, int token);
const char *px_bundle_atom_name(const px_bundle *b, int atom);
const char *px_bundle_atom_element(const px_bundle *b, int atom);

/* The same, as contiguous blocks (count x PX_BUNDLE_STR_SLOT bytes, NUL-padded):
 * field 0 res_name [T], 1 chain_id [T], 2 atom_name [N], 3 atom_element [N]. */
enum { PX_BUNDLE_RES_NAME = 0, PX_BUNDLE_CHAIN_ID, PX_BUNDLE_ATOM_NAME, PX_BUNDLE_ATOM_ELEMENT };
const char *px_bundle_text(const px_bundle *b, int field);
const int64_t *px_bundle_res_nums(const px_bundle *b);
const uint8_t *px_bundle_designed_flags(const px_bundle *b);

/* Bit i set when annotation i was stored in the file (else synthesized):
 * 1 token_res_name, 2 token_chain_id, 4 token_res_num, 8 token_is_designed,
 * 16 atom_name, 32 atom_element. */
int px_bundle_annotations_present(const px_bundle *b);

/* A metadata value ("format", "version", "name", "source", ...) or NULL. */
const char *px_bundle_meta(const px_bundle *b, const char *key);

/* The human summary `pxdiff bundle-info` prints. */
void px_bundle_summary(const px_bundle *b, FILE *out);

/* ---------------------------------------------------------------- writing ---- */

/* A tensor for px_bundle_write_tensors: dtype is a safetensors name ("F32", "I64", "U8",
 * "BF16", ...), data is little-endian row-major, size numel * dtype size. */
typedef struct {
  const char *name;
  const char *dtype;
  int ndim;
  const int64_t *shape;
  const void *data;
} px_bundle_item;

/* Write any tensors and string metadata (keys[i] -> values[i]) as safetensors, to
 * path.tmp then renamed. Validates nothing but the arguments (tests use it to build
 * malformed bundles). */
int px_bundle_write_tensors(const char *path, const px_bundle_item *items, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta);

/* Optional annotations for px_bundle_write; any member may be NULL (not stored).
 * Strings are NUL-terminated, at most PX_BUNDLE_STR_MAX bytes. */
typedef struct {
  const char *const *res_name;  /* [T] */
  const char *const *chain_id;  /* [T] */
  const int64_t *res_num;       /* [T] */
  const uint8_t *is_designed;   /* [T] */
  const char *const *atom_name; /* [N] */
  const char *const *element;   /* [N] */
} px_bundle_annotations;

/* Write features (s_trunk may be NULL: not stored) in the canonical layout, one-hots as
 * indices, then reopen and validate the result (an invalid bundle is never left behind). */
int px_bundle_write(const char *path, const px_features *f, int c_s_inputs, int c_s, int c_z,
                    const px_bundle_annotations *a, const char *name);

/* px_bundle_write plus extra tensors (stored as given, after the canonical ones; names must
 * not repeat theirs; at most 32) and extra metadata (at most 16 pairs, keys other than
 * format/version/name). `pxdiff featurize` stores the condition embedder's inputs this way
 * (docs/bundle.md, "Design inputs"). */
int px_bundle_write_ex(const char *path, const px_features *f, int c_s_inputs, int c_s, int c_z,
                       const px_bundle_annotations *a, const char *name, const px_bundle_item *extra,
                       int n_extra, const char *const *meta_keys, const char *const *meta_values,
                       int n_meta);

#ifdef __cplusplus
}
#endif
#endif
