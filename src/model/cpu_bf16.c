/* The CPU's bf16 precision: which token blocks run their four GEMMs (qkvg, the attention
 * output, [a1 | a2], the transition's b) on bf16 operands. The model gives each such matrix a
 * bf16 copy (px_linear.w16, made with the backend's convert, or pack16 in the layout of the
 * CPU's AMX kernel; owned here, the fp32 matrix kept)
 * and passes it in the GEMM's px_weight as on a device; the CPU's linear then rounds its fp32
 * input to bf16 itself and accumulates in fp32 (cpu/gemm_bf16.h).
 *
 * Only the token blocks: they are ~85% of a call's GEMM work (K = 768 / 1536), while the atom
 * blocks' K = 128 GEMMs gain little from rounding their input on every call. Only widths that
 * are multiples of 32 (the kernel's step; the released 768 and 1536 are).
 *
 * The gate, per block: every token block by default, measured against fp32 at every noise
 * level of the schedule (<= 2e-3 per call) and over whole 400-step runs (<= 0.05 A):
 * bench/cpu_bf16_percall.py, tests/gpu/whole_run_accuracy.py --device cpu, docs/benchmarks.md.
 * PXDIFF_CPU_BF16_BLOCKS (a list like "0-3,8") admits only the blocks it names; the others
 * stay fp32, bit for bit as at PX_PRECISION_FP32. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/model.h"

/* The four matrices of token block k that its bf16 GEMMs read. */
static void block_linears(px_model *m, int k, px_linear *ls[4]) {
  px_block_w *B = &m->tok_tf.blocks[k];
  ls[0] = &B->proj1, ls[1] = &B->o, ls[2] = &B->a12, ls[3] = &B->ctb_b;
}

void px_model_cpu_bf16_free(px_model *m) {
  if (!m || !m->cpu_bf16) return;
  for (int k = 0; k < m->tok_tf.n_blocks; k++) {
    px_linear *ls[4];
    block_linears(m, k, ls);
    for (int i = 0; i < 4; i++) {
      free(ls[i]->w16);
      ls[i]->w16 = NULL;
      ls[i]->w16_type = PX_F32;
    }
  }
  m->cpu_bf16 = 0;
}

int px_model_cpu_bf16_blocks(const px_model *m) {
  if (!m || !m->cpu_bf16) return 0;
  int n = 0;
  for (int k = 0; k < m->tok_tf.n_blocks; k++) n += m->tok_tf.blocks[k].proj1.w16 != NULL;
  return n;
}

/* Whether the list spec ("0-3,8"; NULL: every block) names block k. */
static int admits(int k, const char *spec) {
  if (!spec) return 1;
  const char *p = spec;
  while (*p) {
    char *end;
    long a = strtol(p, &end, 10), b = a;
    if (end == p) return 0;
    p = end;
    if (*p == '-') {
      b = strtol(p + 1, &end, 10);
      p = end;
    }
    if (k >= a && k <= b) return 1;
    if (*p == ',') p++;
    else if (*p) return 0;
  }
  return 0;
}

int px_model_cpu_bf16_make(px_model *m, px_backend *be) {
  px_model_cpu_bf16_free(m);
  if (!be->convert) return px_fail(PX_ERR_BACKEND, "%s has no bf16 weights", be->name);
  /* A handle borrows its owner's blocks: copies there would change what every other handle
   * (and the owner) computes. */
  if (m->shared_of)
    return px_fail(PX_ERR_INPUT, "bf16 on the CPU needs the model itself, not a handle from px_model_share");
  const px_transformer_w *tf = &m->tok_tf;
  /* K (c, hidden) a multiple of the kernels' step 32; the outputs (4c, c, 2 hidden) are then
   * multiples of 16, as the AMX layout (pack16) asks. */
  if (tf->c % 32 || tf->hidden % 32) return PX_OK; /* no block can: every block fp32 */
  const char *spec = getenv("PXDIFF_CPU_BF16_BLOCKS");
  m->cpu_bf16 = 1;
  for (int k = 0; k < tf->n_blocks; k++) {
    if (!admits(k, spec)) continue;
    px_linear *ls[4];
    block_linears(m, k, ls);
    for (int i = 0; i < 4; i++) {
      const size_t n = (size_t)ls[i]->out * (size_t)ls[i]->in;
      uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
      if (!h) {
        px_model_cpu_bf16_free(m);
        return px_fail(PX_ERR_NOMEM, "out of memory (bf16 copy of token block %d)", k);
      }
      if (be->pack16) be->pack16(be, ls[i]->out, ls[i]->in, ls[i]->w, h, PX_BF16); /* the AMX tiles' layout */
      else be->convert(be, (int64_t)n, ls[i]->w, h, PX_BF16);
      ls[i]->w16 = h;
      ls[i]->w16_type = PX_BF16;
      ls[i]->e = 0;
    }
  }
  return PX_OK;
}
