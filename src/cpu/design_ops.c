/* The CPU backend's per-design feature embeddings (backend.h says what each computes): the
 * loops the design cache ran on the host before they were backend operations, with their
 * arithmetic and its order unchanged (the same bits as before). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_threads.h"
#include "cpu/design_ops.h"
#include "error.h"
#include "pxdiff.h"

void px_cpu_copy_cols(px_backend *b, int M, int C, const float *X, int ldx, float *Y, int ldy) {
  (void)b;
  if (C == 1) { /* a column gathered into a plane (the token pair biases): a plain loop */
    for (int r = 0; r < M; r++) Y[(size_t)r * ldy] = X[(size_t)r * ldx];
    return;
  }
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < M; r++) memcpy(Y + (size_t)r * ldy, X + (size_t)r * ldx, sizeof(float) * (size_t)C);
}

static inline int clampi(int64_t v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : (int)v); }

void px_cpu_relpos_linear(px_backend *b, int T, int64_t r0, int rows, int C, int rmax, int smax,
                          const int64_t *chain, const int64_t *residue, const int64_t *entity, const int64_t *token,
                          const int64_t *sym, const float *W, float *Y, int ldy) {
  (void)b;
  const int nr = 2 * rmax + 2, K = 2 * nr + 1 + 2 * smax + 2;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int r = 0; r < rows; r++) {
    const int64_t ij = r0 + r;
    const int i = (int)(ij / T), j = (int)(ij % T);
    const int same_chain = chain[i] == chain[j], same_res = residue[i] == residue[j];
    const int same_ent = entity[i] == entity[j];
    const int a = same_chain ? clampi(residue[i] - residue[j] + rmax, 0, 2 * rmax) : 2 * rmax + 1;
    const int t = (same_chain && same_res) ? clampi(token[i] - token[j] + rmax, 0, 2 * rmax) : 2 * rmax + 1;
    const int e = same_ent ? clampi(sym[i] - sym[j] + smax, 0, 2 * smax) : 2 * smax + 1;
    float *y = Y + (size_t)r * ldy;
    for (int c = 0; c < C; c++) {
      const float *w = W + (size_t)c * K;
      float v = w[a] + w[nr + t];
      if (same_ent) v += w[2 * nr];
      y[c] = v + w[2 * nr + 1 + e];
    }
  }
}

#define REF_MAX_ONEHOT 1024

void px_cpu_atom_ref_embed(px_backend *b, int N, int C, const float *pos, const float *q, const float *mask,
                           const float *A, int na, const float *B, int nb, const float *Wp, const float *Wq,
                           const float *Wf, float *Y) {
  (void)b;
  if (na < 0 || nb < 0 || na + nb > REF_MAX_ONEHOT) {
    px_fail(PX_ERR_INPUT, "atom_ref_embed: %d + %d one-hot columns (at most %d)", na, nb, REF_MAX_ONEHOT);
    return;
  }
  const int cf = 1 + na + nb;
  /* Wf over [mask, A, B] as sums over the one-hot rows, without building the [N, cf] matrix. */
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int n = 0; n < N; n++) {
    float *cr = Y + (size_t)n * C;
    const float *ps = pos + (size_t)n * 3;
    const float ch = asinhf(q[n]);
    const float *el = A + (size_t)n * na;
    const float *nc = B + (size_t)n * nb;
    /* The row's nonzero columns, in order: a one-hot row has a few, and a term w * 0 adds
     * nothing to a finite sum, so summing only these (in the same order) gives the same float
     * as the whole dot product at a hundredth of the work. */
    int nzi[REF_MAX_ONEHOT];
    float nzv[REF_MAX_ONEHOT];
    int nz = 0;
    for (int e = 0; e < na; e++)
      if (el[e] != 0.0f) nzi[nz] = 1 + e, nzv[nz++] = el[e];
    for (int e = 0; e < nb; e++)
      if (nc[e] != 0.0f) nzi[nz] = 1 + na + e, nzv[nz++] = nc[e];
    for (int o = 0; o < C; o++) {
      const float *wp = Wp + (size_t)o * 3;
      float a = wp[0] * ps[0] + wp[1] * ps[1] + wp[2] * ps[2];
      float bq = Wq[o] * ch;
      const float *wfr = Wf + (size_t)o * cf;
      float s = wfr[0] * mask[n];
      for (int k = 0; k < nz; k++) s += wfr[nzi[k]] * nzv[k];
      cr[o] = (a + bq + s) * mask[n];
    }
  }
}

/* ---- the atom pair pass ---- */

/* The widest pair feature the fused pass holds in its tiles (released: 16). */
#define PAIR_MAX_C 64
/* The most head columns one pass writes. */
#define PAIR_MAX_HEADS 256

typedef struct {
  const float *qpos;               /* [N, 3] */
  const int64_t *quid, *qtok;      /* [N] */
  /* Key-side inputs channel-major over padded atoms: atom a at index a + pad; the pads hold
   * what an atom outside [0, N) has: position 0, uid 0, token 0, no cm. */
  const float *kx, *ky, *kz, *kcm; /* [3][Np], [cp][Np] */
  const int64_t *kuid, *ktok;      /* [Np] */
  int pad, Np;
  const float *cl, *zproj; /* [N, cp], [T, T, cp] or NULL */
  const float *wd, *winvd, *wv, *m1, *m3, *m5;
  const float *wf;       /* [nah, cp]: every head's row */
  float *const *bias;    /* [nah]: head column -> its [P] plane */
  float *p_out;          /* p itself when asked for, else NULL */
  int64_t P;
  int N, T, cp, nah, nq, nk;
} pair_pass;

/* The tile at 8 rows (AVX2: one register per channel; everywhere), and on x86 at 16 rows for
 * CPUs with AVX-512 (one register per channel: half the broadcasts and instructions per row;
 * chosen at run time, PXDIFF_CPU_PAIR=generic forces 8 rows; the same bits either way). */
#define PT_TILE 8
#define PT_NAME(x) x##_8
#define PT_ATTR
#include "cpu/pair_tile.inc"
#undef PT_TILE
#undef PT_NAME
#undef PT_ATTR
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && defined(__AVX2__)
#define PAIR_WIDE 1
#if defined(__clang__)
#define PT_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#else
#define PT_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma,tune=generic")))
#endif
#define PT_TILE 16
#define PT_NAME(x) x##_16
#include "cpu/pair_tile.inc"
#undef PT_TILE
#undef PT_NAME
#undef PT_ATTR
#else
#define PAIR_WIDE 0
#endif

/* 16-row tiles: built, the CPU has AVX-512, and not PXDIFF_CPU_PAIR=generic. */
static int pair_wide(void) {
#if PAIR_WIDE
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
    return 0;
  const char *e = getenv("PXDIFF_CPU_PAIR");
  return !(e && strcmp(e, "generic") == 0);
#else
  return 0;
#endif
}

void px_cpu_atom_pair_bias(px_backend *b, int N, int T, int C, int nq, int nk, const float *pos, const int64_t *uid,
                           const int64_t *tok, const float *cl, const float *cm, const float *zp, const float *Wd,
                           const float *Wi, const float *Wv, const float *M1, const float *M2, const float *M3, int nh,
                           const float *Wh, float *const *bias, float *p_out) {
  (void)b;
  if (C < 1 || C > PAIR_MAX_C || nh < 0 || nh > PAIR_MAX_HEADS || nq < 1 || nk < nq || nk % 16 || (nk - nq) % 2 ||
      N < 1) {
    px_fail(PX_ERR_INPUT,
            "atom_pair_bias: unsupported shape (%d atoms, width %d (at most %d), %d heads (at most %d), windows %d/%d "
            "(keys a multiple of 16))",
            N, C, PAIR_MAX_C, nh, PAIR_MAX_HEADS, nq, nk);
    return;
  }
  const int n_trunks = (N + nq - 1) / nq;
  const int64_t P = (int64_t)n_trunks * nq * nk;
  /* The key side, channel-major and padded. */
  const int pad = (nk - nq) / 2, Np = n_trunks * nq + 2 * pad;
  float *kf = calloc((size_t)Np * (3 + C), sizeof(float));
  int64_t *ki = calloc((size_t)Np * 2, sizeof(int64_t));
  if (!kf || !ki) {
    free(kf);
    free(ki);
    px_fail(PX_ERR_NOMEM, "out of memory in atom_pair_bias on cpu (%d atoms)", N);
    return;
  }
  for (int a = 0; a < N; a++) {
    for (int d = 0; d < 3; d++) kf[(size_t)d * Np + pad + a] = pos[(size_t)a * 3 + d];
    for (int o = 0; o < C; o++) kf[(size_t)(3 + o) * Np + pad + a] = cm[(size_t)a * C + o];
    ki[pad + a] = uid[a];
    ki[Np + pad + a] = tok[a];
  }
  const pair_pass pp = {pos, uid, tok, kf, kf + Np, kf + 2 * (size_t)Np, kf + 3 * (size_t)Np, ki, ki + Np, pad, Np,
                        cl, zp, Wd, Wi, Wv, M1, M2, M3, Wh, bias, p_out, P, N, T, C, nh, nq, nk};
  const int wide = pair_wide(), tile = wide ? 16 : 8;
  const int64_t n_tiles = P / tile;
#pragma omp parallel for num_threads(px_cpu_threads(b)) schedule(static)
  for (int64_t t = 0; t < n_tiles; t++) {
#if PAIR_WIDE
    if (wide) {
      pair_tile_16(&pp, t * tile);
      continue;
    }
#endif
    pair_tile_8(&pp, t * tile);
  }
  free(kf);
  free(ki);
}
