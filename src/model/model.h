/* The DiffusionModule's weights as typed structs, and the per-design cache.
 * docs/spec.md names every tensor; model/weights.c maps names to these fields. */
#ifndef PX_MODEL_H
#define PX_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "pxdiff.h"

/* y = x W^T (+ b); W [out, in] row-major. On a device backend at a 16-bit precision, the
 * model may give W a 16-bit copy w16 of type w16_type (its own buffer; device.c decides which
 * matrices get one), whose GEMM input is stored times 2^-e; w is then NULL when every GEMM
 * with W takes a 16-bit input. On the CPU at bf16, cpu_bf16.c gives the token blocks' matrices
 * bf16 copies the same way (the fp32 matrix stays). */
typedef struct {
  float *w, *b;
  int out, in;
  void *w16;
  px_etype w16_type;
  int e;
  /* y16: the model may store this linear's output in 16 bits (of w16_type, from a 16-bit
   * input, no bias: the residual updates of blocks whose bound fp16_range.c proves), times
   * 2^-ye; 0: fp32 output. */
  int y16, ye;
} px_linear;

/* The weight handle a GEMM op takes (backend.h px_weight) for a linear's matrix. */
static inline px_weight px_lw(const px_linear *l) {
  px_weight h = {l->w, l->w16, l->w16_type, l->e, l->ye};
  return h;
}

/* AdaLN conditioning weights (layernorm_s scale, linear_s with bias, linear_nobias_s). */
typedef struct {
  float *ln_s_w;
  px_linear lin_s, lin_nobias_s;
} px_adaln_w;

typedef struct {
  float *ln_w, *ln_b;
  px_linear a, b, out; /* linear_no_bias_a, _b, linear_no_bias */
} px_transition_w;

/* One DiffusionTransformer block: AttentionPairBias + ConditionedTransitionBlock. */
typedef struct {
  px_adaln_w ln_a, ln_kv; /* ln_kv only in the atom transformers (cross-attention mode) */
  /* Projections fused for one GEMM each. Token blocks: qkvg [4c, c] over a_n.
   * Atom blocks: qg [2c, c] over a_n and kv [2c, c] over AdaLN_kv(a_n).
   * proj1's bias holds linear_q.bias in the q rows and 0 elsewhere. */
  px_linear proj1; /* qkvg or qg */
  px_linear proj2; /* kv (atom blocks; no bias) */
  px_linear o;
  float *ln_z_w;
  px_linear z;       /* linear_nobias_z [H, c_z] */
  px_linear a_last;  /* linear_a_last (bias) over raw s */
  px_adaln_w ctb_adaln;
  px_linear a12;     /* linear_nobias_a1 ; linear_nobias_a2 stacked: [2h, c], no bias */
  px_linear ctb_b;   /* linear_nobias_b [c, h] */
  px_linear ctb_s;   /* linear_s (bias) over raw s */
} px_block_w;

typedef struct {
  int n_blocks, n_heads, c, c_s, c_z, hidden;
  int cross; /* atom transformer: separate kv AdaLN */
  px_block_w *blocks;
  /* Token transformer only: every block's s-side weights stacked so that one batched
   * GEMM per kind gives the conditioning of all blocks (matrices 2k and 2k+1 belong to
   * block k: attention AdaLN and transition AdaLN). The AdaLN LayerNorm scale is folded
   * into the columns (LN(s) * w then W equals LN(s) then W diag(w)), so all take LN(s).
   * The per-block copies these were built from are freed after loading. */
  float *st_w_gate_ln;  /* [2nb, c, c_s] linear_s (sigmoid gate), folded */
  float *st_b_gate_ln;  /* [2nb, c] */
  float *st_w_shift_ln; /* [2nb, c, c_s] linear_nobias_s, folded */
  float *st_w_gate_raw; /* [2nb, c, c_s] linear_a_last, conditioned_transition_block.linear_s (raw s) */
  float *st_b_gate_raw; /* [2nb, c] */
} px_transformer_w;

struct px_model {
  px_dims dims;
  int device;    /* enum px_device actually in use: PX_DEVICE_CPU or PX_DEVICE_CUDA */
  int precision; /* enum px_precision in use */
  int cpu_bf16;  /* 1 while this (host) model's token blocks hold the CPU's bf16 copies */
  /* CUDA: the same struct with every weight pointer on the device (NULL on the CPU). */
  struct px_model *cuda_mirror;
  px_backend *be; /* the backend context the weights live on (NULL: the CPU) */
  /* px_model_share: the model whose host weights this handle borrows (NULL: it owns them). */
  const struct px_model *shared_of;
  px_backend *own_ctx; /* px_model_set_device(own_context): the handle's own context, or NULL */
  /* The handle's own CPU context (px_model_build, px_model_share; freed with the handle): what
   * its CPU designs compute on, with the handle's thread count (px_model_set_num_threads). NULL
   * only for a model made otherwise: px_model_cpu then gives the shared one. */
  px_backend *cpu_ctx;
  size_t *owned_n; /* float count of each owned buffer */
  int64_t n_params;
  float **owned; /* every buffer below, for freeing */
  int n_owned, cap_owned;
  /* diffusion_conditioning */
  px_linear relpe;
  float *cond_ln_z_w;
  px_linear cond_z;
  px_transition_w tr_z1, tr_z2;
  float *cond_ln_s_w;
  px_linear cond_s;
  float *fourier_w, *fourier_b;
  float *cond_ln_n_w;
  px_linear cond_n;
  px_transition_w tr_s1, tr_s2;
  /* atom_attention_encoder */
  px_linear enc_ref_pos, enc_ref_charge, enc_f, enc_d, enc_invd, enc_v;
  float *enc_ln_s_w;
  px_linear enc_s;
  float *enc_ln_z_w;
  px_linear enc_z, enc_r, enc_cl, enc_cm, enc_mlp1, enc_mlp3, enc_mlp5, enc_q;
  px_transformer_w enc_tf;
  /* token level */
  float *ln_s_w;
  px_linear lin_s;
  px_transformer_w tok_tf;
  float *ln_a_w;
  /* atom_attention_decoder */
  px_linear dec_a;
  float *dec_ln_q_w;
  px_linear dec_out;
  px_transformer_w dec_tf;
};

/* Atom-transformer conditioning that depends only on s = c (per design), per block. */
typedef struct {
  float *g_a, *b_a, *g_kv, *b_kv, *gate_last, *g_c, *b_c, *gate_ctb; /* each [N, c_atom] */
  float *pair_bias; /* [H, n_trunks, 32, 128] */
} px_atom_block_cache;

struct px_design {
  int T, N, n_trunks;
  int precision; /* the model's precision when the design was made (calls need the same) */
  uint64_t key;
  px_backend *be;
  const px_model *W;     /* weights the kernels read: the model, or its device mirror */
  const void *model_id;  /* the model this design was built for */
  float *s0;             /* [T, c_s], host (the CPU's calls read it; a device's read s0_dev) */
  float *s0_dev;         /* [T, c_s] in backend memory (CUDA designs; NULL on the CPU) */
  float *tok_pair_bias;  /* [n_blocks, H, T, T] */
  /* tok_pair_bias rounded to fp16 in rows of tok_bias16_ld (backend.h attention_full_h16),
   * for a model at the FP16 precision on a backend that reads it; NULL otherwise, or when a
   * value is not finite in fp16 (design.c stage_token_bias16). */
  void *tok_pair_bias16;
  int tok_bias16_ld;
  float *c;              /* [N, c_atom], encoder c (also the decoder's c_skip) */
  px_atom_block_cache *enc, *dec;
  int64_t *atom_to_token; /* [N] */
  float *inv_count;       /* [T], 1/atoms per token (0 when none) */
  int64_t bytes;
  int enc_blocks_hint, dec_blocks_hint; /* cache lengths, for freeing */
  float *ws;       /* per-call workspace, grown on demand (one call at a time per design) */
  size_t ws_bytes;
  float *host;     /* host staging for uploads/downloads (pinned on CUDA) */
  size_t host_bytes;
  /* A captured call (CUDA graph) and the shape it was captured for. */
  void *graph;
  int graph_S, graph_Ss, graph_seen;
  uint64_t graph_gen;
};

#define PX_ATOM_NQ 32
#define PX_ATOM_NK 128

/* model/weights.c: a source of named float32 tensors the loader reads from. */
typedef struct {
  void *ctx;
  /* 1 when found; fills ndim and shape. */
  int (*find)(void *ctx, const char *name, int *ndim, int64_t *shape);
  /* Reads the tensor as contiguous float32; 0 or a px_status code with px_fail set. */
  int (*read)(void *ctx, const char *name, float *dst);
} px_weight_source;

int px_model_build(const px_weight_source *src, px_model **out);
/* "fp32", "tf32", "bf16" or "fp16" for an enum px_precision in use. */
const char *px_precision_label(int precision);
/* px_denoise_device_shared_t without the final host wait: the work is queued on the
 * backend's stream and the caller synchronises (the device sampler loop, one wait per step). */
int px_denoise_device_queued(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                             const float *t_hat, float *x_out);

/* fp16 operands of the token blocks (fp16_range.c): bounds on the largest magnitude of
 * each GEMM input of block k (an[0], an[1]: the attention and transition AdaLN outputs;
 * att: the gated attention output; swiglu_in, swiglu: the SwiGLU's input and output) and
 * of the attention's operands (qkv: q, k, v, unscaled), and of the two residual updates (y_att:
 * the output projection's output, y_tr: the transition's), from host weights. */
typedef struct {
  double an[2], att, swiglu_in, swiglu, qkv, y_att, y_tr;
} px_fp16_bounds;
int px_token_block_fp16_bounds(const px_model *m, int k, px_fp16_bounds *out); /* -1: no block k */
/* -1: block k keeps fp32 operands (a bound over fp16's range, or weights that lose
 * precision in fp16); else e in [0, PX_FP16_MAX_EXP]: its SwiGLU output is stored times 2^-e. */
#define PX_FP16_MAX_EXP 10
int px_token_block_fp16_exp(const px_model *m, int k);
void px_token_fp16_exps(const px_model *m, int *exps); /* every block, in parallel */
/* The same for atom block k of an atom transformer tf (the encoder's or the decoder's, host
 * weights): an[0..2] the attention AdaLN, its kv AdaLN and the transition AdaLN outputs,
 * att the gated local attention output, swiglu_in / swiglu as above, qkv the local attention's
 * q (with its bias), k and v (unscaled), y_att / y_tr the residual updates as above. */
typedef struct {
  double an[3], att, swiglu_in, swiglu, qkv, y_att, y_tr;
} px_atom_fp16_bounds;
int px_atom_block_fp16_bounds(const px_transformer_w *tf, int k, px_atom_fp16_bounds *out); /* -1: no block k */
/* -1: atom block k keeps fp32 activations and TF32 GEMMs; else its SwiGLU output's exponent e. */
int px_atom_block_fp16_exp(const px_transformer_w *tf, int k);
/* The exponent f of an fp16 output bounded by `bound` (stored times 2^-f): the least f in
 * [0, PX_FP16_MAX_EXP] that fits, else -1 (the output stays fp32). */
int px_fp16_out_exp(double bound);

/* The model on a device backend (device.c). px_model_to_device copies the weights into be's
 * memory (any view of its context) and makes the 16-bit copies `precision` asks for
 * (PX_PRECISION_DEFAULT: fp16 for the token blocks whose range is proven; the copies are the
 * model's, in px_linear.w16, passed to the GEMM ops as px_weight handles); designs made
 * afterwards use that backend. A model on another context, or at another precision, is
 * copied again. The context must outlive the model's designs. */
int px_model_to_device(px_model *m, px_backend *be, int precision);
/* Free the device copy; the model computes on the CPU again. */
/* The CPU context a model computes on when it is on the CPU: its own, else the shared one. */
static inline px_backend *px_model_cpu(const px_model *m) { return m->cpu_ctx ? m->cpu_ctx : px_cpu_backend(); }
void px_model_release_device(px_model *m);
/* The host weights a model owns and the model itself (weights.c): px_model_free's last part
 * (runtime.c frees the device copy, an own context, the CPU's bf16 copies first). */
void px_model_weights_free(px_model *m);
/* Token blocks whose GEMMs run on 16-bit operands. */
int px_model_device_x16_blocks(const px_model *m);
/* Atom blocks (encoder and decoder) whose GEMMs run on 16-bit operands (device.c). */
int px_model_device_x16_atom_blocks(const px_model *m);
/* Residual updates stored in 16 bits (px_linear.y16) over every block of the device model. */
int px_model_device_x16_updates(const px_model *m);
/* The CPU's bf16 precision (cpu_bf16.c): make the bf16 copies of the token blocks its gate
 * admits (be: the CPU backend), free them, count the blocks that have them. */
int px_model_cpu_bf16_make(px_model *m, px_backend *be);
void px_model_cpu_bf16_free(px_model *m);
int px_model_cpu_bf16_blocks(const px_model *m);

/* Calls fn on the address of every weight pointer of the model (a NULL one included),
 * e.g. to build a device mirror. transformer block arrays are visited element-wise. */
typedef void (*px_weight_visitor)(float **slot, void *user);
void px_model_visit_weights(px_model *m, px_weight_visitor fn, void *user);

/* ---- The atom encoder's per-design work (design.c) and its atom transformer (denoise.c),
 * shared by the diffusion module's encoder and the design condition embedder (embedder.c:
 * the same AtomAttentionEncoder without coordinates, docs/design-spec.md section 8.1). ---- */

/* The reference-feature weights of an atom encoder (copies of handles owned elsewhere). */
typedef struct {
  px_linear ref_pos, ref_charge, f, d, invd, v, cl, cm, mlp1, mlp3, mlp5;
} px_atom_ref_w;

/* c[n] = (Lin_ref_pos(ref_pos) + Lin_ref_charge(asinh(ref_charge)) + Lin_f([mask, element,
 * name chars])) * ref_mask over f's n_atom atoms: [N, c_atom]; w, f's reference arrays and c in
 * be's memory (be's atom_ref_embed). */
void px_atom_ref_single(px_backend *be, const px_atom_ref_w *w, const px_features *f, float *c);
/* Every block's pair bias Lin_z(LN(p)) [H, n_trunks, 32, 128] for n_tf atom transformers
 * (into caches[t][k].pair_bias: host-visible; allocated with be, their bytes added to *bytes,
 * unless the caller set them)
 * from the pair features p [n_trunks * 32 * 128, c_atompair] (trunk layout): the reference
 * positions and space uids, plus zproj[tok(q), tok(k)] when zproj ([T, T, c_atompair]) is not
 * NULL, Lin_cl(relu(c_q)) + Lin_cm(relu(c_k)), then p += small_mlp(p). p itself is written to
 * p_out only when p_out is not NULL (a probe): one pass, tile by tile, never materialised. */
/* Everything in be's memory (f's ref_pos, ref_space_uid, atom_to_token_idx; c, zproj, p_out, the
 * weights of w and tfs) but tfs_host: the same transformers' weights in host memory, which the
 * heads' folded rows are made from (the same as tfs on a backend of host memory). The pass
 * itself is be's atom_pair_bias. */
int px_atom_pair_bias_build(px_backend *be, const px_atom_ref_w *w, const px_features *f, const float *c,
                            const float *zproj, const px_transformer_w *const *tfs,
                            const px_transformer_w *const *tfs_host, px_atom_block_cache *const *caches, int n_tf,
                            float *p_out, int64_t *bytes);
/* The s-side AdaLN and gate terms of every block of an atom transformer with s = c [N, C]
 * (scratch: N * C floats); buffers of out the caller already set are used as given. tf: the
 * weights in be's memory; tf_host: the same transformer's in host memory (the AdaLNs' folded
 * matrices are made from them; tf itself on a backend of host memory). */
int px_atom_block_cache_build(px_backend *be, const px_transformer_w *tf, const px_transformer_w *tf_host, int N,
                              const float *c, float *scratch, px_atom_block_cache *out, int64_t *bytes);
/* The atom transformer over q [S * N, C] in place (backend memory), with the scratch
 * px_atom_transformer_scratch says (floats, backend memory). */
size_t px_atom_transformer_scratch(const px_transformer_w *tf, int S, int N);
void px_atom_transformer(px_backend *be, const px_transformer_w *tf, const px_atom_block_cache *cache, int S,
                         int N, float *q, float *scratch);

/* Name of the diffusion module's tensor `suffix` in the source's convention. */
#define PX_DM_PREFIX "diffusion_module."

#endif
