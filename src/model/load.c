/* Weight sources for px_model_build: a checkpoint file (via io/tensorfile) or arrays in
 * memory (the Python binding). Both accept names with or without a "module." prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/tensorfile.h"
#include "model/embedder.h"
#include "model/model.h"

/* ------------------------------------------------------------------ file ---- */

static const px_tensor_entry *file_lookup(const px_tensorfile *tf, const char *name) {
  const px_tensor_entry *e = px_tensorfile_find(tf, name);
  if (e) return e;
  char buf[600];
  snprintf(buf, sizeof buf, "module.%s", name);
  return px_tensorfile_find(tf, buf);
}

static int file_find(void *ctx, const char *name, int *ndim, int64_t *shape) {
  const px_tensor_entry *e = file_lookup((const px_tensorfile *)ctx, name);
  if (!e) return 0;
  *ndim = e->ndim;
  for (int i = 0; i < e->ndim && i < 8; i++) shape[i] = e->shape[i];
  return 1;
}

static int file_read(void *ctx, const char *name, float *dst) {
  const px_tensorfile *tf = (const px_tensorfile *)ctx;
  const px_tensor_entry *e = file_lookup(tf, name);
  if (!e) return px_fail(PX_ERR_WEIGHTS, "missing tensor %s", name);
  char err[512];
  int rc = px_tensorfile_read_f32(tf, e, dst, err, sizeof err);
  if (rc) return px_fail(rc, "%s", err);
  for (int64_t i = 0, n = px_entry_numel(e); i < n; i++)
    if (dst[i] != dst[i] || dst[i] - dst[i] != 0.0f)
      return px_fail(PX_ERR_WEIGHTS, "%s: tensor %s contains NaN or Inf", tf->path, name);
  return PX_OK;
}

/* Opens a checkpoint, builds from it through build(src, target), closes it; a failure's
 * message is prefixed with the file name so that it stands alone. */
static int load_file(const char *path, int (*build)(const px_weight_source *src, void *target), void *target) {
  px_tensorfile tf;
  char err[512];
  int rc = px_tensorfile_open(path, &tf, err, sizeof err);
  if (rc) return px_fail(rc, "%s", err);
  px_weight_source src = {&tf, file_find, file_read};
  rc = build(&src, target);
  if (rc) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", px_last_error());
    if (!strstr(msg, path)) px_fail(rc, "%s: %s", path, msg);
  }
  px_tensorfile_close(&tf);
  return rc;
}

static int build_model(const px_weight_source *src, void *out) { return px_model_build(src, (px_model **)out); }
static int build_embedder(const px_weight_source *src, void *w) { return px_embedder_w_build(src, (px_embedder_w *)w); }

int px_model_load(const char *path, px_model **out) {
  if (!path || !out) return px_fail(PX_ERR_INPUT, "px_model_load: NULL argument");
  *out = NULL;
  return load_file(path, build_model, out);
}

int px_embedder_w_load(const char *path, px_embedder_w *w) {
  memset(w, 0, sizeof *w);
  return load_file(path, build_embedder, w);
}

/* ---------------------------------------------------------------- arrays ---- */

typedef struct {
  int n;
  const char *const *names;
  const float *const *data;
  const int *ndims;
  const int64_t *const *shapes;
} arrays;

static int arrays_index(const arrays *A, const char *name) {
  size_t ln = strlen(name);
  for (int i = 0; i < A->n; i++) {
    const char *s = A->names[i];
    if (!s) continue;
    if (strncmp(s, "module.", 7) == 0) s += 7;
    if (strcmp(s, name) == 0) return i;
    /* Names of a bare DiffusionModule's state_dict lack "diffusion_module.". */
    size_t lp = strlen(PX_DM_PREFIX);
    if (ln > lp && strncmp(name, PX_DM_PREFIX, lp) == 0 && strcmp(s, name + lp) == 0) return i;
  }
  return -1;
}

static int arrays_find(void *ctx, const char *name, int *ndim, int64_t *shape) {
  const arrays *A = (const arrays *)ctx;
  int i = arrays_index(A, name);
  if (i < 0) return 0;
  *ndim = A->ndims[i];
  for (int k = 0; k < A->ndims[i] && k < 8; k++) shape[k] = A->shapes[i][k];
  return 1;
}

static int arrays_read(void *ctx, const char *name, float *dst) {
  const arrays *A = (const arrays *)ctx;
  int i = arrays_index(A, name);
  if (i < 0) return px_fail(PX_ERR_WEIGHTS, "missing tensor %s", name);
  int64_t n = 1;
  for (int k = 0; k < A->ndims[i]; k++) n *= A->shapes[i][k];
  if (!A->data[i]) return px_fail(PX_ERR_WEIGHTS, "tensor %s has no data", name);
  memcpy(dst, A->data[i], sizeof(float) * (size_t)n);
  for (int64_t k = 0; k < n; k++)
    if (dst[k] != dst[k] || dst[k] - dst[k] != 0.0f)
      return px_fail(PX_ERR_WEIGHTS, "tensor %s contains NaN or Inf", name);
  return PX_OK;
}

int px_model_from_arrays(int n, const char *const *names, const float *const *data,
                         const int *ndims, const int64_t *const *shapes, px_model **out) {
  if (!out || n < 0 || (n > 0 && (!names || !data || !ndims || !shapes)))
    return px_fail(PX_ERR_INPUT, "px_model_from_arrays: invalid arguments");
  for (int i = 0; i < n; i++)
    if (ndims[i] < 0 || ndims[i] > 8)
      return px_fail(PX_ERR_INPUT, "tensor %s has %d dimensions", names[i] ? names[i] : "?", ndims[i]);
  arrays A = {n, names, data, ndims, shapes};
  px_weight_source src = {&A, arrays_find, arrays_read};
  return px_model_build(&src, out);
}

int px_embedder_w_from_arrays(int n, const char *const *names, const float *const *data, const int *ndims,
                              const int64_t *const *shapes, px_embedder_w *w) {
  memset(w, 0, sizeof *w);
  if (n < 0 || (n > 0 && (!names || !data || !ndims || !shapes)))
    return px_fail(PX_ERR_INPUT, "px_embedder_from_arrays: invalid arguments");
  for (int i = 0; i < n; i++)
    if (ndims[i] < 0 || ndims[i] > 8)
      return px_fail(PX_ERR_INPUT, "tensor %s has %d dimensions", names[i] ? names[i] : "?", ndims[i]);
  arrays A = {n, names, data, ndims, shapes};
  px_weight_source src = {&A, arrays_find, arrays_read};
  return px_embedder_w_build(&src, w);
}

/* --------------------------------------------------------------- convert ---- */

int px_convert_to_safetensors(const char *in_path, const char *out_path) {
  if (!in_path || !out_path) return px_fail(PX_ERR_INPUT, "convert: NULL path");
  /* Load (validates the whole model), then write the diffusion module's tensors under
   * their canonical names, read back from the source file. */
  px_model *m = NULL;
  int rc = px_model_load(in_path, &m);
  if (rc) return rc;
  px_model_free(m);
  px_tensorfile tf;
  char err[512];
  rc = px_tensorfile_open(in_path, &tf, err, sizeof err);
  if (rc) return px_fail(rc, "%s", err);
  /* The design condition embedder's tensors too when the checkpoint has them (pxdiff design
   * reads both from one file); they must then load as well. */
  int with_embedder = 0;
  for (int i = 0; i < tf.n; i++) {
    const char *nm = tf.t[i].name;
    if (strncmp(nm, "module.", 7) == 0) nm += 7;
    if (strncmp(nm, PX_EMBED_PREFIX, strlen(PX_EMBED_PREFIX)) == 0) with_embedder = 1;
  }
  if (with_embedder) {
    px_embedder_w ew;
    rc = px_embedder_w_load(in_path, &ew);
    if (rc) {
      px_tensorfile_close(&tf);
      return rc;
    }
    px_embedder_w_free(&ew);
  }
  int cap = tf.n, k = 0;
  px_st_write_item *items = calloc((size_t)(cap ? cap : 1), sizeof *items);
  char **names = calloc((size_t)(cap ? cap : 1), sizeof *names);
  float **bufs = calloc((size_t)(cap ? cap : 1), sizeof *bufs);
  if (!items || !names || !bufs) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < tf.n; i++) {
    const px_tensor_entry *e = &tf.t[i];
    const char *nm = e->name;
    if (strncmp(nm, "module.", 7) == 0) nm += 7;
    if (strncmp(nm, PX_DM_PREFIX, strlen(PX_DM_PREFIX)) != 0 &&
        !(with_embedder && strncmp(nm, PX_EMBED_PREFIX, strlen(PX_EMBED_PREFIX)) == 0))
      continue;
    int64_t numel = px_entry_numel(e);
    if (numel < 0 || numel > ((int64_t)1 << 31)) {
      rc = px_fail(PX_ERR_FORMAT, "%s: tensor %s has an invalid size", in_path, nm);
      goto done;
    }
    bufs[k] = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
    names[k] = malloc(strlen(nm) + 1);
    if (!bufs[k] || !names[k]) {
      rc = px_fail(PX_ERR_NOMEM, "out of memory");
      k++;
      goto done;
    }
    strcpy(names[k], nm);
    rc = px_tensorfile_read_f32(&tf, e, bufs[k], err, sizeof err);
    if (rc) {
      rc = px_fail(rc, "%s", err);
      k++;
      goto done;
    }
    items[k].name = names[k];
    items[k].ndim = e->ndim;
    items[k].shape = e->shape;
    items[k].data = bufs[k];
    k++;
  }
  rc = px_safetensors_write(out_path, items, k, err, sizeof err);
  if (rc) px_fail(rc, "%s", err);
done:
  for (int i = 0; i < k; i++) {
    free(bufs[i]);
    free(names[i]);
  }
  free(items);
  free(names);
  free(bufs);
  px_tensorfile_close(&tf);
  return rc;
}
