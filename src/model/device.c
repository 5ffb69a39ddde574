/* A model on a device backend: the weight mirror and which matrices get 16-bit copies (a
 * design is built on the device by design.c). These are model decisions (they know the weight struct and
 * the fp16 range proof of fp16_range.c), made once here; the backend only gets plain buffers
 * and ops (alloc, upload, convert), and later the 16-bit copies as px_weight handles in the
 * GEMM ops' arguments, so no backend knows what a block is or keeps a weight table. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/model.h"

/* ------------------------------------------------------------------ mirror ---- */

typedef struct {
  const px_model *host;
  float **dev; /* dev[i]: the device copy of host->owned[i] */
  int status;
} remap_ctx;

static void remap(float **slot, void *user) {
  remap_ctx *r = (remap_ctx *)user;
  if (!*slot) return;
  for (int i = 0; i < r->host->n_owned; i++)
    if (r->host->owned[i] == *slot) {
      *slot = r->dev[i];
      return;
    }
  if (!r->status) r->status = px_fail(PX_ERR_BACKEND, "internal: a weight buffer has no device copy");
}

static void mirror_free(px_backend *be, px_model *mir) {
  if (!mir) return;
  for (int i = 0; i < mir->n_owned; i++) /* fp32 matrices, then the 16-bit copies */
    if (mir->owned[i]) be->free(be, mir->owned[i]);
  free(mir->owned);
  free(mir->enc_tf.blocks);
  free(mir->tok_tf.blocks);
  free(mir->dec_tf.blocks);
  free(mir);
}

/* The same struct with every weight pointer in be's memory. */
static int mirror_make(px_backend *be, const px_model *m, px_model **out) {
  *out = NULL;
  px_model *mir = calloc(1, sizeof *mir);
  if (!mir) return px_fail(PX_ERR_NOMEM, "out of memory");
  *mir = *m;
  mir->cuda_mirror = NULL;
  mir->be = NULL;
  mir->owned_n = NULL;
  /* Room for a 16-bit copy of every buffer after the fp32 ones (make_half_weights). */
  mir->owned = calloc(2 * (size_t)m->n_owned + 1, sizeof(float *));
  mir->n_owned = 0;
  mir->cap_owned = 2 * m->n_owned;
  px_transformer_w *tfs[3] = {&mir->enc_tf, &mir->tok_tf, &mir->dec_tf};
  int ok = mir->owned != NULL;
  for (int k = 0; k < 3; k++) {
    px_block_w *blk = malloc(sizeof(px_block_w) * (size_t)(tfs[k]->n_blocks > 0 ? tfs[k]->n_blocks : 1));
    if (blk) memcpy(blk, tfs[k]->blocks, sizeof(px_block_w) * (size_t)tfs[k]->n_blocks);
    else ok = 0;
    tfs[k]->blocks = blk;
  }
  if (!ok) {
    mirror_free(be, mir);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < m->n_owned; i++) {
    const size_t bytes = sizeof(float) * (m->owned_n[i] ? m->owned_n[i] : 1);
    float *d = be->alloc(be, bytes); /* on failure the op has said so, naming the size */
    if (!d) {
      mirror_free(be, mir);
      return PX_ERR_NOMEM;
    }
    mir->owned[mir->n_owned++] = d;
    be->upload(be, d, m->owned[i], bytes);
  }
  remap_ctx r = {m, mir->owned, 0};
  px_model_visit_weights(mir, remap, &r);
  if (be->sync) be->sync(be);
  int rc = r.status ? r.status : be->status ? be->status(be) : 0;
  if (rc) {
    mirror_free(be, mir);
    return rc;
  }
  *out = mir;
  return PX_OK;
}

/* ------------------------------------------------------------ 16-bit weights ---- */

/* Give l's matrix (n floats, in be's memory) a 16-bit copy of type t, owned by the mirror;
 * its GEMM input is stored times 2^-e. */
static int half_copy(px_backend *be, px_model *mir, px_linear *l, size_t n, px_etype t, int e) {
  if (!l->w || l->w16) return PX_OK;
  if (mir->n_owned >= mir->cap_owned) return px_fail(PX_ERR_BACKEND, "internal: more 16-bit copies than buffers");
  void *h = be->alloc(be, n * 2 + 16); /* on failure the op has said so, naming the size */
  if (!h) return PX_ERR_NOMEM;
  mir->owned[mir->n_owned++] = h;
  be->convert(be, (int64_t)n, l->w, h, t);
  l->w16 = h;
  l->w16_type = t;
  l->e = e;
  return be->status ? be->status(be) : PX_OK;
}

/* Free the fp32 matrix of l (its GEMMs read only the 16-bit copy); kept when it is not one
 * whole owned buffer. */
static void drop_fp32(px_backend *be, px_model *mir, px_linear *l) {
  for (int i = 0; i < mir->n_owned; i++)
    if (mir->owned[i] == l->w) {
      if (be->sync) be->sync(be); /* queued conversions have read it */
      be->free(be, l->w);
      mir->owned[i] = NULL;
      l->w = NULL;
      return;
    }
}

/* The matrices of one transformer block that its GEMMs read. */
static int block_half(px_backend *be, px_model *mir, const px_transformer_w *tf, px_block_w *B, px_etype t, int e) {
  const size_t C = (size_t)tf->c, h = (size_t)tf->hidden;
  int rc = half_copy(be, mir, &B->proj1, (size_t)B->proj1.out * C, t, 0);
  if (!rc && tf->cross) rc = half_copy(be, mir, &B->proj2, 2 * C * C, t, 0);
  if (!rc) rc = half_copy(be, mir, &B->o, C * C, t, 0);
  if (!rc) rc = half_copy(be, mir, &B->a12, 2 * h * C, t, 0);
  if (!rc) rc = half_copy(be, mir, &B->ctb_b, C * h, t, e);
  return rc;
}

static int linear_half(px_backend *be, px_model *mir, px_linear *l, px_etype t) {
  return half_copy(be, mir, l, (size_t)l->out * l->in, t, 0);
}

/* An fp16 block's two residual updates (the output projection's and the transition's GEMM
 * outputs) stored in fp16 where fp16_range.c bounds them, times 2^-f (else fp32): the GEMMs
 * write half the bytes and the residual kernels read half. PXDIFF_NO_X16_UPDATE=1 (read when
 * the model is prepared) keeps them fp32 (comparisons). */
static void update_outputs(px_block_w *B, double y_att, double y_tr) {
  const int fo = px_fp16_out_exp(y_att), fb = px_fp16_out_exp(y_tr);
  B->o.y16 = fo >= 0;
  B->o.ye = fo >= 0 ? fo : 0;
  B->ctb_b.y16 = fb >= 0;
  B->ctb_b.ye = fb >= 0 ? fb : 0;
}

/* BF16: a copy of every matrix the call's GEMMs read (the backend then runs each GEMM with
 * K >= 16 on bf16 operands; enc_r, K = 3, keeps fp32). FP16: only the token blocks' four
 * GEMM matrices (K = 768 or 1536: ~85% of the call's GEMM work, where 16-bit operands halve
 * the time), and only for blocks whose GEMM inputs provably stay in fp16's range
 * (fp16_range.c; the others keep TF32), and the atom blocks' five matrices likewise (below).
 * be is the view at the precision. */
static int make_half_weights(px_backend *be, px_model *mir, const px_model *host, int precision) {
  if (!be->convert) return px_fail(PX_ERR_BACKEND, "%s has no 16-bit weights", be->name);
  px_transformer_w *tf = &mir->tok_tf;
  if (precision == PX_PRECISION_BF16) {
    px_transformer_w *tfs[3] = {&mir->enc_tf, &mir->tok_tf, &mir->dec_tf};
    int rc = PX_OK;
    for (int w = 0; w < 3 && !rc; w++)
      for (int k = 0; k < tfs[w]->n_blocks && !rc; k++) rc = block_half(be, mir, tfs[w], &tfs[w]->blocks[k], PX_BF16, 0);
    px_linear *ls[] = {&mir->tr_s1.a, &mir->tr_s1.b, &mir->tr_s1.out, &mir->tr_s2.a, &mir->tr_s2.b, &mir->tr_s2.out,
                       &mir->cond_n, &mir->lin_s, &mir->enc_q, &mir->dec_a, &mir->dec_out};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0] && !rc; i++) rc = linear_half(be, mir, ls[i], PX_BF16);
    return rc;
  }
  int *exps = malloc(sizeof(int) * (size_t)(tf->n_blocks + 1));
  if (!exps) return px_fail(PX_ERR_NOMEM, "out of memory");
  px_token_fp16_exps(host, exps);
  /* These blocks' four matrices are only read through their fp16 copies: each block's fp32
   * device copies go once converted (0.39 GiB at 16 blocks of width 768; block by block, so
   * the peak holds one block's both copies), and fp16 needs less memory than tf32. */
  int rc = PX_OK;
  const int updates16 = !getenv("PXDIFF_NO_X16_UPDATE");
  for (int k = 0; k < tf->n_blocks && !rc; k++) {
    if (exps[k] < 0) continue;
    px_block_w *B = &tf->blocks[k];
    rc = block_half(be, mir, tf, B, PX_F16, exps[k]);
    if (rc) break;
    px_fp16_bounds yb;
    if (updates16 && px_token_block_fp16_bounds(host, k, &yb) == 0) update_outputs(B, yb.y_att, yb.y_tr);
    drop_fp32(be, mir, &B->proj1);
    drop_fp32(be, mir, &B->o);
    drop_fp32(be, mir, &B->a12);
    drop_fp32(be, mir, &B->ctb_b);
    rc = be->status ? be->status(be) : 0;
  }
  free(exps);
  if (rc || getenv("PXDIFF_NO_X16_ATOMS")) return rc;
  /* The atom blocks (issue 13): their K = 128 / 256 GEMMs are memory-bound, so fp16 pays
   * only when the kernels around them read and write fp16 too: the AdaLN row kernels write
   * the GEMM inputs in fp16 (denoise.c atom_transformer), the local attention its output,
   * the [x1 x2] GEMM the SwiGLU's input; ~11 of ~37.5 row-widths of traffic per block go.
   * Admitted block by block by their range bounds (fp16_range.c), the others stay TF32.
   * PXDIFF_NO_X16_ATOMS=1 (read here, when the model is prepared) keeps all of them TF32. */
  px_transformer_w *atfs[2] = {&mir->enc_tf, &mir->dec_tf};
  const px_transformer_w *htfs[2] = {&host->enc_tf, &host->dec_tf};
  for (int w = 0; w < 2 && !rc; w++)
    for (int k = 0; k < atfs[w]->n_blocks && !rc; k++) {
      const int e = px_atom_block_fp16_exp(htfs[w], k);
      if (e < 0) continue;
      px_block_w *B = &atfs[w]->blocks[k];
      rc = block_half(be, mir, atfs[w], B, PX_F16, e);
      if (rc) break;
      px_atom_fp16_bounds yb;
      if (updates16 && px_atom_block_fp16_bounds(htfs[w], k, &yb) == 0) update_outputs(B, yb.y_att, yb.y_tr);
      px_linear *ls[5] = {&B->proj1, &B->proj2, &B->o, &B->a12, &B->ctb_b};
      for (int i = 0; i < 5; i++) drop_fp32(be, mir, ls[i]);
      rc = be->status ? be->status(be) : 0;
    }
  return rc;
}

/* ------------------------------------------------------------------- model ---- */

void px_model_release_device(px_model *m) {
  if (!m || !m->cuda_mirror) return;
  px_backend *be = m->be;
  if (be->sync) be->sync(be);
  mirror_free(be, m->cuda_mirror);
  m->cuda_mirror = NULL;
  m->be = NULL;
  m->device = PX_DEVICE_CPU;
  m->precision = PX_PRECISION_FP32;
}

int px_model_to_device(px_model *m, px_backend *be, int precision) {
  if (m->cpu_bf16) { /* the CPU's bf16 copies go first: the mirror copies the blocks, then makes its own */
    px_model_cpu_bf16_free(m);
    m->precision = PX_PRECISION_FP32;
  }
  /* The default, fp16 operands for the token blocks' GEMMs, has TF32's accuracy (3.1e-4 of
   * fp32 at every noise level, against 3.0e-4 for tf32), 20-27% less time per call and the
   * least memory; blocks whose inputs fp16's range cannot be proven to hold run TF32
   * (docs/benchmarks.md, docs/cuda.md). */
  if (precision == PX_PRECISION_DEFAULT) precision = PX_PRECISION_FP16;
  px_backend *view = be->at_precision ? be->at_precision(be, precision) : be;
  if (!view) return px_fail(PX_ERR_BACKEND, "%s cannot compute at precision %d", be->name, precision);
  if (m->cuda_mirror) {
    const int same_ctx = m->be->at_precision && view->at_precision &&
                         m->be->at_precision(m->be, PX_PRECISION_FP32) == view->at_precision(view, PX_PRECISION_FP32);
    if (same_ctx && m->precision == precision) return PX_OK;
    /* Another context, or other 16-bit copies: the mirror is made again. */
    px_model_release_device(m);
  }
  px_model *mir = NULL;
  int rc = mirror_make(view, m, &mir);
  if (rc) return rc;
  m->cuda_mirror = mir;
  m->be = view;
  if (precision == PX_PRECISION_BF16 || precision == PX_PRECISION_FP16)
    rc = make_half_weights(view, mir, m, precision);
  if (!rc && view->sync) view->sync(view);
  if (!rc && view->status) rc = view->status(view);
  if (rc) {
    /* Out of memory half-way: the model goes back to the CPU, its designs must be made
     * again (px_denoise says so), and the error is returned. */
    px_model_release_device(m);
    return rc;
  }
  m->device = PX_DEVICE_CUDA;
  m->precision = precision;
  return PX_OK;
}

int px_model_device_x16_blocks(const px_model *m) {
  if (!m || !m->cuda_mirror) return 0;
  const px_transformer_w *tf = &m->cuda_mirror->tok_tf;
  int n = 0;
  for (int k = 0; k < tf->n_blocks; k++) n += tf->blocks[k].proj1.w16 != NULL;
  return n;
}

int px_model_device_x16_updates(const px_model *m) {
  if (!m || !m->cuda_mirror) return 0;
  const px_transformer_w *tfs[3] = {&m->cuda_mirror->enc_tf, &m->cuda_mirror->tok_tf, &m->cuda_mirror->dec_tf};
  int n = 0;
  for (int w = 0; w < 3; w++)
    for (int k = 0; k < tfs[w]->n_blocks; k++) n += tfs[w]->blocks[k].o.y16 + tfs[w]->blocks[k].ctb_b.y16;
  return n;
}

int px_model_device_x16_atom_blocks(const px_model *m) {
  if (!m || !m->cuda_mirror) return 0;
  const px_transformer_w *tfs[2] = {&m->cuda_mirror->enc_tf, &m->cuda_mirror->dec_tf};
  int n = 0;
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < tfs[w]->n_blocks; k++)
      n += tfs[w]->blocks[k].proj1.w16 != NULL && tfs[w]->blocks[k].proj1.w16_type == PX_F16;
  return n;
}

