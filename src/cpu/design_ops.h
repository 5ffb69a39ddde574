/* The CPU backend's per-design feature embeddings (backend.h: copy_cols, relpos_linear,
 * atom_ref_embed, atom_pair_bias), in cpu/design_ops.c; cpu_backend.c's table points at them. */
#ifndef PX_CPU_DESIGN_OPS_H
#define PX_CPU_DESIGN_OPS_H

#include "backend.h"

void px_cpu_copy_cols(px_backend *b, int M, int C, const float *X, int ldx, float *Y, int ldy);
void px_cpu_relpos_linear(px_backend *b, int T, int64_t r0, int rows, int C, int rmax, int smax,
                          const int64_t *chain, const int64_t *residue, const int64_t *entity, const int64_t *token,
                          const int64_t *sym, const float *W, float *Y, int ldy);
void px_cpu_atom_ref_embed(px_backend *b, int N, int C, const float *pos, const float *q, const float *mask,
                           const float *A, int na, const float *B, int nb, const float *Wp, const float *Wq,
                           const float *Wf, float *Y);
void px_cpu_atom_pair_bias(px_backend *b, int N, int T, int C, int nq, int nk, const float *pos, const int64_t *uid,
                           const int64_t *tok, const float *cl, const float *cm, const float *zp, const float *Wd,
                           const float *Wi, const float *Wv, const float *M1, const float *M2, const float *M3, int nh,
                           const float *Wh, float *const *bias, float *p_out);

#endif
