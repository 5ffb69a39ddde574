#define _POSIX_C_SOURCE 200809L /* setenv */
/* Every CUDA kernel against the CPU backend (itself tested against double precision in
 * test_cpu_kernels.c) on fresh random inputs at awkward sizes, outputs poisoned with NaN
 * before each run. Without a GPU (or without the CUDA build) it exits 77 (skipped). */
#include "testutil.h"
#include "devutil.h"

#include "backend.h"
#include "error.h"
#include "pxdiff.h"
#ifdef PX_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#ifndef PX_HAVE_CUDA
int main(void) {
  return tu_skip("test_cuda_kernels", "pxdiff was built without CUDA");
}
#else

static px_backend *cpu, *gpu;

static float *rnd(size_t n, double scale) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  tu_fill_normal(x, n, scale);
  return x;
}
static float *up(const float *h, size_t n) {
  float *d = gpu->alloc(gpu, sizeof(float) * (n ? n : 1));
  gpu->upload(gpu, d, h, sizeof(float) * n);
  return d;
}
static float *dev_poison(size_t n) {
  float *h = malloc(sizeof(float) * (n ? n : 1));
  tu_poison(h, n);
  float *d = up(h, n);
  free(h);
  return d;
}
static void down(float *h, const float *d, size_t n) { gpu->download(gpu, h, d, sizeof(float) * n); }

static void compare(const char *what, const float *got_dev, const float *want, size_t n, double tol) {
  float *got = malloc(sizeof(float) * (n ? n : 1));
  down(got, got_dev, n);
  double e = tu_rel_err_ff(got, want, n);
  CHECK_MSG(e <= tol, "%s: rel err %.3g (tol %.1g)", what, e, tol);
  CHECK_MSG(gpu->status(gpu) == 0, "%s: CUDA error %s", what, px_last_error());
  free(got);
}

/* The handle of device matrix dW (n floats) with a 16-bit copy of type t made by g's convert,
 * as the model makes them (src/model/device.c); *h16 is the copy, for freeing. */
static px_weight half_weight(px_backend *g, const float *dW, size_t n, px_etype t, int e, void **h16) {
  *h16 = gpu->alloc(gpu, n * sizeof(uint16_t) + 16);
  g->convert(g, (int64_t)n, dW, *h16, t);
  px_weight w = {dW, *h16, t, e, 0};
  return w;
}

/* Variants: 0 plain, 1 bias + accumulate, 2 bias with padded rows (ldx, ldy > width),
 * 3 bias + fused ReLU with padded rows, 4 bias with operands only 4-byte aligned (cuBLASLt
 * picks kernels by alignment). */
static void test_linear(int prec, double tol, int half_weights) {
  px_backend *g = px_cuda_backend(prec);
  int shapes[][3] = {{1, 3, 3}, {7, 33, 19}, {130, 257, 128}, {331, 768, 384}, {65, 1536, 768}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
    for (int variant = 0; variant < 5; variant++) {
      const int pad = variant == 2 || variant == 3, off = variant == 4 ? 1 : 0, relu = variant == 3;
      int ldx = K + (pad ? 5 : 0), ldy = N + (pad ? 3 : 0);
      float *X = rnd((size_t)M * ldx, 1.0), *W = rnd((size_t)N * K, 1.0 / sqrt(K)), *b = rnd(N, 0.5);
      float *Y = rnd((size_t)M * ldy, 1.0);
      float *dXb = gpu->alloc(gpu, sizeof(float) * ((size_t)M * ldx + off)), *dW = up(W, (size_t)N * K);
      /* 16-bit copy of W: the GEMM then runs on 16-bit operands (K >= 16) */
      void *dW16 = NULL;
      px_weight hW = px_weight_f32(dW);
      if (half_weights) {
        hW = half_weight(g, dW, (size_t)N * K, prec == PX_PRECISION_BF16 ? PX_BF16 : PX_F16, 0, &dW16);
        CHECK_MSG(g->status(g) == 0, "half weight: %s", px_last_error());
      }
      float *db = up(b, N);
      gpu->upload(gpu, dXb + off, X, sizeof(float) * (size_t)M * ldx);
      float *dYb = variant == 1 ? up(Y, (size_t)M * ldy) : dev_poison((size_t)M * ldy + off);
      float *dX = dXb + off, *dY = dYb + off;
      const float *bias = variant == 0 ? NULL : db;
      if (relu)
        g->linear_relu(g, M, N, K, dX, ldx, hW, bias, dY, ldy, 0);
      else
        g->linear(g, M, N, K, dX, ldx, hW, bias, dY, ldy, variant == 1, 0, PX_F32, PX_F32);
      if (variant != 1) /* poisoned padding columns must stay untouched: compare full rows only */
        for (int r = 0; r < M; r++)
          for (int c = N; c < ldy; c++) Y[(size_t)r * ldy + c] = NAN;
      if (relu)
        cpu->linear_relu(cpu, M, N, K, X, ldx, px_weight_f32(W), b, Y, ldy, 0);
      else
        cpu->linear(cpu, M, N, K, X, ldx, px_weight_f32(W), variant == 0 ? NULL : b, Y, ldy, variant == 1, 0, PX_F32,
                    PX_F32);
      float *got = malloc(sizeof(float) * (size_t)M * ldy);
      down(got, dY, (size_t)M * ldy);
      double num = 0, den = 0;
      int bad = 0, negative = 0;
      for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) {
          double a = got[(size_t)r * ldy + c], w = Y[(size_t)r * ldy + c];
          if (!isfinite(a)) bad = 1;
          if (relu && a < 0) negative = 1;
          num += (a - w) * (a - w);
          den += w * w;
        }
      for (int r = 0; pad && r < M; r++) /* the padding must still hold the poison */
        for (int c = N; c < ldy; c++)
          if (!isnan(got[(size_t)r * ldy + c])) bad = 1;
      /* den = 0 when the ReLU zeroed every output (tiny shapes): compare absolutely */
      double e = bad ? INFINITY : den > 0 ? sqrt(num / den) : sqrt(num);
      CHECK_MSG(e <= tol && !negative, "linear prec %d M=%d N=%d K=%d variant %d: rel err %.3g%s", prec, M, N, K,
                variant, e, negative ? ", negative after ReLU" : "");
      free(got);
      free(X); free(W); free(b); free(Y);
      gpu->free(gpu, dXb); gpu->free(gpu, dW); gpu->free(gpu, db); gpu->free(gpu, dYb); gpu->free(gpu, dW16);
    }
  }
}

static void test_linear_batched(int prec, double tol) {
  px_backend *g = px_cuda_backend(prec);
  int shapes[][4] = {{1, 5, 7, 3}, {3, 33, 65, 17}, {32, 330, 768, 384}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    int cnt = shapes[t][0], M = shapes[t][1], N = shapes[t][2], K = shapes[t][3];
    for (int shared_x = 0; shared_x < 2; shared_x++) {
      size_t nx = (size_t)(shared_x ? 1 : cnt) * M * K, nw = (size_t)cnt * N * K, ny = (size_t)cnt * M * N;
      float *X = rnd(nx, 1.0), *W = rnd(nw, 1.0 / sqrt(K)), *b = rnd((size_t)cnt * N, 0.5);
      float *want = malloc(sizeof(float) * ny);
      float *dX = up(X, nx), *dW = up(W, nw), *db = up(b, (size_t)cnt * N), *dY = dev_poison(ny);
      int64_t sx = shared_x ? 0 : (int64_t)M * K;
      cpu->linear_batched(cpu, cnt, M, N, K, X, sx, W, (int64_t)N * K, shared_x ? NULL : b, N, want,
                          (int64_t)M * N, 0);
      g->linear_batched(g, cnt, M, N, K, dX, sx, dW, (int64_t)N * K, shared_x ? NULL : db, N, dY,
                        (int64_t)M * N, 0);
      char what[96];
      snprintf(what, sizeof what, "linear_batched prec %d count=%d M=%d N=%d K=%d", prec, cnt, M, N, K);
      compare(what, dY, want, ny, tol);
      free(X); free(W); free(b); free(want);
      gpu->free(gpu, dX); gpu->free(gpu, dW); gpu->free(gpu, db); gpu->free(gpu, dY);
    }
  }
}

static void test_rowwise(void) {
  int Ms[] = {1, 5, 333, 2321};
  int Cs[] = {3, 16, 128, 129, 768, 833, 1024};
  for (int a = 0; a < 4; a++)
    for (int c = 0; c < 7; c++) {
      int M = Ms[a], C = Cs[c], g_rows = M > 3 ? M / 3 + 1 : 1;
      size_t n = (size_t)M * C;
      float *X = rnd(n, 2.0), *w = rnd(C, 1.0), *bb = rnd(C, 1.0);
      float *G = rnd((size_t)g_rows * C, 1.0), *B = rnd((size_t)g_rows * C, 1.0), *Y = rnd(n, 1.0);
      float *want = malloc(sizeof(float) * n);
      float *dX = up(X, n), *dw = up(w, C), *db = up(bb, C), *dG = up(G, (size_t)g_rows * C);
      float *dB = up(B, (size_t)g_rows * C), *dY = up(Y, n), *dO = dev_poison(n);
      char what[96];
      /* layernorm with and without affine */
      cpu->layernorm(cpu, M, C, X, w, bb, want);
      gpu->layernorm(gpu, M, C, dX, dw, db, dO);
      snprintf(what, sizeof what, "layernorm M=%d C=%d", M, C);
      compare(what, dO, want, n, 1e-5);
      cpu->layernorm(cpu, M, C, X, NULL, NULL, want);
      gpu->layernorm(gpu, M, C, dX, NULL, NULL, dO);
      compare(what, dO, want, n, 1e-5);
      cpu->adaln(cpu, M, C, X, G, B, g_rows, want, PX_F32);
      gpu->adaln(gpu, M, C, dX, dG, dB, g_rows, dO, PX_F32);
      snprintf(what, sizeof what, "adaln M=%d C=%d g_rows=%d", M, C, g_rows);
      compare(what, dO, want, n, 1e-5);
      /* gated residual (in place on a copy of X) */
      memcpy(want, X, sizeof(float) * n);
      cpu->gated_residual(cpu, M, C, want, G, g_rows, Y, PX_F32, 0);
      gpu->upload(gpu, dO, X, sizeof(float) * n);
      gpu->gated_residual(gpu, M, C, dO, dG, g_rows, dY, PX_F32, 0);
      snprintf(what, sizeof what, "gated_residual M=%d C=%d", M, C);
      compare(what, dO, want, n, 1e-6);
      /* residual + AdaLN fused: A += Gr * Y, then AdaLN(A) with G, B */
      {
        int gr_rows = M > 2 ? M / 2 : 1;
        float *Gr = rnd((size_t)gr_rows * C, 1.0), *Ah = malloc(sizeof(float) * n), *dGr = up(Gr, (size_t)gr_rows * C);
        memcpy(Ah, X, sizeof(float) * n);
        cpu->residual_adaln(cpu, M, C, Ah, Gr, gr_rows, Y, PX_F32, 0, G, B, g_rows, want, PX_F32);
        gpu->upload(gpu, dO, X, sizeof(float) * n);
        float *dAn = dev_poison(n);
        gpu->residual_adaln(gpu, M, C, dO, dGr, gr_rows, dY, PX_F32, 0, dG, dB, g_rows, dAn, PX_F32);
        snprintf(what, sizeof what, "residual_adaln (A) M=%d C=%d", M, C);
        compare(what, dO, Ah, n, 1e-6);
        snprintf(what, sizeof what, "residual_adaln (LN) M=%d C=%d", M, C);
        compare(what, dAn, want, n, 1e-5);
        free(Gr); free(Ah);
        gpu->free(gpu, dGr); gpu->free(gpu, dAn);
      }
      /* add_rows */
      memcpy(want, X, sizeof(float) * n);
      cpu->add_rows(cpu, M, C, want, G, g_rows);
      gpu->upload(gpu, dO, X, sizeof(float) * n);
      gpu->add_rows(gpu, M, C, dO, dG, g_rows);
      snprintf(what, sizeof what, "add_rows M=%d C=%d", M, C);
      compare(what, dO, want, n, 1e-6);
      /* activations */
      for (int kind = 0; kind < 2; kind++) {
        memcpy(want, X, sizeof(float) * n);
        cpu->activation(cpu, (int64_t)n, want, kind);
        gpu->upload(gpu, dO, X, sizeof(float) * n);
        gpu->activation(gpu, (int64_t)n, dO, kind);
        snprintf(what, sizeof what, "activation %d n=%zu", kind, n);
        compare(what, dO, want, n, 1e-6);
      }
      /* sigmoid_mul with strides: O [M, C] (ld C+1), P [M, C] (ld C+2) */
      {
        size_t no = (size_t)M * (C + 1), np = (size_t)M * (C + 2);
        float *Oh = rnd(no, 1.0), *Ph = rnd(np, 3.0);
        float *dOo = up(Oh, no), *dP = up(Ph, np);
        cpu->sigmoid_mul(cpu, M, C, Oh, C + 1, Ph, C + 2);
        gpu->sigmoid_mul(gpu, M, C, dOo, C + 1, dP, C + 2);
        snprintf(what, sizeof what, "sigmoid_mul M=%d C=%d", M, C);
        compare(what, dOo, Oh, no, 1e-6);
        free(Oh); free(Ph);
        gpu->free(gpu, dOo); gpu->free(gpu, dP);
      }
      /* swiglu: X2 [M, 2C] -> [M, C] */
      {
        float *X2 = rnd(2 * n, 2.0), *dX2 = up(X2, 2 * n);
        cpu->swiglu(cpu, M, C, X2, want, PX_F32, PX_F32, 0);
        gpu->swiglu(gpu, M, C, dX2, dO, PX_F32, PX_F32, 0);
        snprintf(what, sizeof what, "swiglu M=%d H=%d", M, C);
        compare(what, dO, want, n, 1e-6);
        free(X2);
        gpu->free(gpu, dX2);
      }
      free(X); free(w); free(bb); free(G); free(B); free(Y); free(want);
      float *bufs[] = {dX, dw, db, dG, dB, dY, dO};
      for (int i = 0; i < 7; i++) gpu->free(gpu, bufs[i]);
    }
}

/* atoms_to_tokens over many atoms: the kernel finds each token's atoms by a block-wide search
 * in rounds (one round up to 192 atoms, two up to 192^2, three beyond), random atom counts
 * per token including tokens without atoms, channels in float4 (C = 8) and not (C = 5). */
static void test_atoms_to_tokens_large(void) {
  static const int Ts[] = {150, 700, 6000};
  for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
    const int S = 2, T = Ts[k];
    int *counts = malloc(sizeof(int) * T), N = 0;
    for (int t = 0; t < T; t++) N += counts[t] = rand() % 13; /* 0..12 atoms */
    int64_t *a2t = malloc(sizeof(int64_t) * (N ? N : 1));
    float *inv = malloc(sizeof(float) * T);
    for (int t = 0, n = 0; t < T; t++) {
      for (int j = 0; j < counts[t]; j++) a2t[n++] = t;
      inv[t] = counts[t] ? 1.0f / counts[t] : 0.0f;
    }
    for (int C = 5; C <= 8; C += 3) {
      float *X = rnd((size_t)S * N * C, 1.0), *want = malloc(sizeof(float) * (size_t)S * T * C);
      int64_t *da2t = gpu->alloc(gpu, sizeof(int64_t) * (N ? N : 1));
      gpu->upload(gpu, da2t, a2t, sizeof(int64_t) * N);
      float *dinv = up(inv, T), *dX = up(X, (size_t)S * N * C), *dO = dev_poison((size_t)S * T * C);
      cpu->atoms_to_tokens(cpu, S, N, T, C, X, a2t, inv, want);
      gpu->atoms_to_tokens(gpu, S, N, T, C, dX, da2t, dinv, dO);
      char what[96];
      snprintf(what, sizeof what, "atoms_to_tokens T=%d N=%d C=%d", T, N, C);
      compare(what, dO, want, (size_t)S * T * C, 1e-6);
      free(X); free(want);
      gpu->free(gpu, da2t); gpu->free(gpu, dinv); gpu->free(gpu, dX); gpu->free(gpu, dO);
    }
    free(counts); free(a2t); free(inv);
  }
}

static void test_token_atom_maps(void) {
  int S = 3, T = 11, N = 0;
  int counts[11] = {3, 0, 7, 1, 12, 5, 0, 2, 9, 4, 1};
  for (int t = 0; t < T; t++) N += counts[t];
  int64_t *a2t = malloc(sizeof(int64_t) * N);
  float inv[11];
  for (int t = 0, n = 0; t < T; t++) {
    for (int k = 0; k < counts[t]; k++) a2t[n++] = t;
    inv[t] = counts[t] ? 1.0f / counts[t] : 0.0f;
  }
  for (int C = 5; C <= 768; C += 763) {
    float *X = rnd((size_t)S * N * C, 1.0), *A = rnd((size_t)S * T * C, 1.0);
    float *want = malloc(sizeof(float) * (size_t)S * N * C);
    int64_t *da2t = gpu->alloc(gpu, sizeof(int64_t) * N);
    gpu->upload(gpu, da2t, a2t, sizeof(int64_t) * N);
    float *dinv = up(inv, T), *dX = up(X, (size_t)S * N * C), *dA = up(A, (size_t)S * T * C);
    float *dO = dev_poison((size_t)S * T * C);
    cpu->atoms_to_tokens(cpu, S, N, T, C, X, a2t, inv, want);
    gpu->atoms_to_tokens(gpu, S, N, T, C, dX, da2t, dinv, dO);
    compare("atoms_to_tokens", dO, want, (size_t)S * T * C, 1e-6);
    for (int as = 1; as <= S; as += S - 1) {
      memcpy(want, X, sizeof(float) * (size_t)S * N * C);
      cpu->tokens_to_atoms_add(cpu, S, N, T, C, as, A, a2t, want);
      float *dY = up(X, (size_t)S * N * C);
      gpu->tokens_to_atoms_add(gpu, S, N, T, C, as, dA, da2t, dY);
      compare("tokens_to_atoms_add", dY, want, (size_t)S * N * C, 1e-6);
      gpu->free(gpu, dY);
    }
    free(X); free(A); free(want);
    gpu->free(gpu, da2t); gpu->free(gpu, dinv); gpu->free(gpu, dX); gpu->free(gpu, dA); gpu->free(gpu, dO);
  }
  free(a2t);
}

/* The per-design feature embeddings against the CPU's ops (cpu/design_ops.c, tested against
 * float64 in test_cpu_kernels.c). The CUDA kernels do the CPU's float operations in its order
 * without FMA contraction, so most values agree bit for bit; asinhf / the division may round
 * differently, hence a tolerance rather than equality. */
static int64_t *up64(const int64_t *h, size_t n) {
  int64_t *d = gpu->alloc(gpu, sizeof(int64_t) * (n ? n : 1));
  gpu->upload(gpu, d, h, sizeof(int64_t) * n);
  return d;
}

static void test_design_ops(void) {
  /* copy_cols: exact */
  {
    const int M = 37, C = 19, ldx = 23, ldy = 45;
    float *X = rnd((size_t)M * ldx, 1.0), *Y = rnd((size_t)M * ldy, 1.0), *want = malloc(sizeof(float) * M * ldy);
    memcpy(want, Y, sizeof(float) * M * ldy);
    cpu->copy_cols(cpu, M, C, X, ldx, want, ldy);
    float *dX = up(X, (size_t)M * ldx), *dY = up(Y, (size_t)M * ldy);
    gpu->copy_cols(gpu, M, C, dX, ldx, dY, ldy);
    compare("copy_cols", dY, want, (size_t)M * ldy, 0.0);
    free(X), free(Y), free(want);
    gpu->free(gpu, dX), gpu->free(gpu, dY);
  }
  /* relpos_linear in chunks, into the right half of wider rows */
  {
    const int T = 41, C = 128, rmax = 32, smax = 2, K = 2 * (2 * rmax + 2) + 1 + 2 * smax + 2, ldy = 2 * C;
    const int64_t TT = (int64_t)T * T, chunk = 500;
    int64_t ix[5 * 41];
    for (int t = 0; t < T; t++) {
      ix[t] = (int64_t)(tu_u64() % 3);
      ix[T + t] = (int64_t)(tu_u64() % 100) - 30;
      ix[2 * T + t] = ix[t] == 2 ? 0 : ix[t];
      ix[3 * T + t] = (int64_t)(tu_u64() % 100);
      ix[4 * T + t] = (int64_t)(tu_u64() % 7);
    }
    float *W = rnd((size_t)C * K, 1.0), *want = malloc(sizeof(float) * (size_t)TT * ldy);
    tu_poison(want, (size_t)TT * ldy);
    int64_t *dix = up64(ix, 5 * (size_t)T);
    float *dW = up(W, (size_t)C * K), *dY = dev_poison((size_t)TT * ldy);
    for (int64_t r0 = 0; r0 < TT; r0 += chunk) {
      const int rows = (int)(TT - r0 < chunk ? TT - r0 : chunk);
      cpu->relpos_linear(cpu, T, r0, rows, C, rmax, smax, ix, ix + T, ix + 2 * T, ix + 3 * T, ix + 4 * T, W,
                         want + (size_t)r0 * ldy + C, ldy);
      gpu->relpos_linear(gpu, T, r0, rows, C, rmax, smax, dix, dix + T, dix + 2 * T, dix + 3 * T, dix + 4 * T, dW,
                         dY + (size_t)r0 * ldy + C, ldy);
    }
    /* the left halves stay NaN on both: compare the right halves */
    float *got = malloc(sizeof(float) * (size_t)TT * ldy);
    down(got, dY, (size_t)TT * ldy);
    int left_untouched = 1;
    for (int64_t r = 0; r < TT; r++) left_untouched &= got[(size_t)r * ldy] != got[(size_t)r * ldy];
    CHECK_MSG(left_untouched, "relpos_linear wrote left of its columns");
    float *g2 = malloc(sizeof(float) * (size_t)TT * C), *w2 = malloc(sizeof(float) * (size_t)TT * C);
    for (int64_t r = 0; r < TT; r++) {
      memcpy(g2 + (size_t)r * C, got + (size_t)r * ldy + C, sizeof(float) * C);
      memcpy(w2 + (size_t)r * C, want + (size_t)r * ldy + C, sizeof(float) * C);
    }
    const double e = tu_rel_err_ff(g2, w2, (size_t)TT * C);
    CHECK_MSG(e <= 1e-7, "relpos_linear: rel err %.3g", e);
    free(W), free(want), free(got), free(g2), free(w2);
    gpu->free(gpu, dix), gpu->free(gpu, dW), gpu->free(gpu, dY);
  }
  /* atom_ref_embed at the released widths: 128 element and 256 name-char columns */
  {
    const int N = 301, C = 128, na = 128, nb = 256, cf = 1 + na + nb;
    float *pos = rnd((size_t)N * 3, 3.0), *q = rnd(N, 1.0), *mask = malloc(sizeof(float) * N);
    float *A = calloc((size_t)N * na, sizeof(float)), *B = calloc((size_t)N * nb, sizeof(float));
    for (int n = 0; n < N; n++) {
      mask[n] = (tu_u64() % 7) ? 1.0f : 0.0f;
      A[(size_t)n * na + tu_u64() % na] = 1.0f;
      for (int k = 0; k < 4; k++) B[(size_t)n * nb + 64 * k + tu_u64() % 64] = 1.0f;
    }
    float *Wp = rnd((size_t)C * 3, 0.5), *Wq = rnd(C, 0.5), *Wf = rnd((size_t)C * cf, 0.5);
    float *want = malloc(sizeof(float) * (size_t)N * C);
    cpu->atom_ref_embed(cpu, N, C, pos, q, mask, A, na, B, nb, Wp, Wq, Wf, want);
    float *dpos = up(pos, (size_t)N * 3), *dq = up(q, N), *dm = up(mask, N), *dA = up(A, (size_t)N * na);
    float *dB = up(B, (size_t)N * nb), *dWp = up(Wp, (size_t)C * 3), *dWq = up(Wq, C), *dWf = up(Wf, (size_t)C * cf);
    float *dY = dev_poison((size_t)N * C);
    gpu->atom_ref_embed(gpu, N, C, dpos, dq, dm, dA, na, dB, nb, dWp, dWq, dWf, dY);
    compare("atom_ref_embed", dY, want, (size_t)N * C, 1e-6);
    free(pos), free(q), free(mask), free(A), free(B), free(Wp), free(Wq), free(Wf), free(want);
    float *ds[] = {dpos, dq, dm, dA, dB, dWp, dWq, dWf, dY};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) gpu->free(gpu, ds[i]);
  }
  /* atom_pair_bias: released shape (C 16, 32/128 windows, 24 heads) and an awkward one, with
   * and without the token pair term, p_out compared too */
  const int cases[][6] = {/* N, T, C, nq, nk, nh */ {301, 40, 16, 32, 128, 24}, {70, 9, 37, 8, 16, 5}};
  for (int ci = 0; ci < 2; ci++)
    for (int with_z = 0; with_z < 2; with_z++) {
      const int N = cases[ci][0], T = cases[ci][1], C = cases[ci][2], nq = cases[ci][3], nk = cases[ci][4];
      const int nh = cases[ci][5];
      const int64_t P = (int64_t)((N + nq - 1) / nq) * nq * nk;
      float *pos = rnd((size_t)N * 3, 2.0), *cl = rnd((size_t)N * C, 1.0), *cm = rnd((size_t)N * C, 1.0);
      float *zp = with_z ? rnd((size_t)T * T * C, 1.0) : NULL;
      int64_t *ids = malloc(sizeof(int64_t) * 2 * (size_t)N);
      int64_t u = 0, t = 0;
      for (int n = 0; n < N; n++) {
        if (n && tu_u64() % 4 == 0) u++, t = t + 1 < T ? t + 1 : t;
        ids[n] = u, ids[N + n] = t;
      }
      const double sc = 1.0 / sqrt((double)C);
      float *Wd = rnd((size_t)C * 3, 0.5), *Wi = rnd(C, 1.0), *Wv = rnd(C, 1.0);
      float *M = rnd((size_t)3 * C * C, sc), *Wh = rnd((size_t)nh * C, sc);
      float *want = malloc(sizeof(float) * (size_t)nh * P), *wp = malloc(sizeof(float) * (size_t)P * C);
      float *hb[256], *db[256];
      for (int h = 0; h < nh; h++) hb[h] = want + (size_t)h * P;
      cpu->atom_pair_bias(cpu, N, T, C, nq, nk, pos, ids, ids + N, cl, cm, zp, Wd, Wi, Wv, M, M + C * C,
                          M + 2 * C * C, nh, Wh, hb, wp);
      int64_t *dids = up64(ids, 2 * (size_t)N);
      float *dpos = up(pos, (size_t)N * 3), *dcl = up(cl, (size_t)N * C), *dcm = up(cm, (size_t)N * C);
      float *dzp = zp ? up(zp, (size_t)T * T * C) : NULL, *dWd = up(Wd, (size_t)C * 3), *dWi = up(Wi, C);
      float *dWv = up(Wv, C), *dM = up(M, (size_t)3 * C * C), *dWh = up(Wh, (size_t)nh * C);
      float *dplanes = dev_poison((size_t)nh * P), *dp = dev_poison((size_t)P * C);
      for (int h = 0; h < nh; h++) db[h] = dplanes + (size_t)h * P;
      gpu->atom_pair_bias(gpu, N, T, C, nq, nk, dpos, dids, dids + N, dcl, dcm, dzp, dWd, dWi, dWv, dM, dM + C * C,
                          dM + 2 * C * C, nh, dWh, db, dp);
      char what[96];
      snprintf(what, sizeof what, "atom_pair_bias planes N=%d C=%d z=%d", N, C, with_z);
      compare(what, dplanes, want, (size_t)nh * P, 1e-5);
      snprintf(what, sizeof what, "atom_pair_bias p N=%d C=%d z=%d", N, C, with_z);
      compare(what, dp, wp, (size_t)P * C, 1e-6);
      free(pos), free(cl), free(cm), free(zp), free(ids), free(Wd), free(Wi), free(Wv), free(M), free(Wh);
      free(want), free(wp);
      float *ds[] = {dpos, dcl, dcm, dzp, dWd, dWi, dWv, dM, dWh, dplanes, dp};
      for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        if (ds[i]) gpu->free(gpu, ds[i]);
      gpu->free(gpu, dids);
    }
}

static void test_attention(void) {
  /* full: (S, T, H, d) with awkward T; local: (S, N, H, d) */
  int full[][4] = {{1, 1, 2, 16}, {2, 33, 3, 48}, {3, 130, 16, 48}, {2, 70, 4, 32}, {1, 65, 2, 64}, {2, 40, 2, 24}};
  for (size_t t = 0; t < sizeof full / sizeof full[0]; t++) {
    int S = full[t][0], T = full[t][1], H = full[t][2], d = full[t][3], C = H * d, ld = 4 * C;
    size_t nq = (size_t)S * T * ld;
    float *P = rnd(nq, 1.0), *bias = rnd((size_t)H * T * T, 2.0), *want = malloc(sizeof(float) * (size_t)S * T * C);
    float *dP = up(P, nq), *dbias = up(bias, (size_t)H * T * T), *dO = dev_poison((size_t)S * T * C);
    float scale = 1.0f / sqrtf((float)d);
    cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, want, NULL, 0, PX_F32);
    gpu->attention_full(gpu, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, scale, dO, NULL, 0, PX_F32);
    char what[96];
    snprintf(what, sizeof what, "attention_full S=%d T=%d H=%d d=%d", S, T, H, d);
    compare(what, dO, want, (size_t)S * T * C, 1e-5);
    /* with the fused gate: O * sigmoid(G), G the 4th quarter of each row */
    cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, want, P + 3 * C, ld, PX_F32);
    float *dOg = dev_poison((size_t)S * T * C);
    gpu->attention_full(gpu, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, scale, dOg, dP + 3 * C, ld, PX_F32);
    snprintf(what, sizeof what, "attention_full gated S=%d T=%d H=%d d=%d", S, T, H, d);
    compare(what, dOg, want, (size_t)S * T * C, 1e-5);
    gpu->free(gpu, dOg);
    free(P); free(bias); free(want);
    gpu->free(gpu, dP); gpu->free(gpu, dbias); gpu->free(gpu, dO);
  }
  int local[][4] = {{1, 1, 4, 32}, {2, 31, 4, 32}, {2, 33, 4, 32}, {3, 200, 4, 32}, {1, 96, 2, 48}, {2, 77, 3, 20}};
  for (size_t t = 0; t < sizeof local / sizeof local[0]; t++) {
    int S = local[t][0], N = local[t][1], H = local[t][2], d = local[t][3], C = H * d, ld = 2 * C;
    int nt = (N + 31) / 32;
    size_t nqg = (size_t)S * N * ld, nb = (size_t)H * nt * 32 * 128;
    float *QG = rnd(nqg, 1.0), *KV = rnd(nqg, 1.0), *bias = rnd(nb, 2.0), *want = malloc(sizeof(float) * (size_t)S * N * C);
    float *dQG = up(QG, nqg), *dKV = up(KV, nqg), *dbias = up(bias, nb), *dO = dev_poison((size_t)S * N * C);
    float scale = 1.0f / sqrtf((float)d);
    cpu->attention_local(cpu, S, N, H, d, 32, 128, QG, KV, KV + C, ld, bias, scale, want, NULL, 0, PX_F32);
    gpu->attention_local(gpu, S, N, H, d, 32, 128, dQG, dKV, dKV + C, ld, dbias, scale, dO, NULL, 0, PX_F32);
    char what[96];
    snprintf(what, sizeof what, "attention_local S=%d N=%d H=%d d=%d", S, N, H, d);
    compare(what, dO, want, (size_t)S * N * C, 1e-5);
    cpu->attention_local(cpu, S, N, H, d, 32, 128, QG, KV, KV + C, ld, bias, scale, want, QG + C, ld, PX_F32);
    float *dOg = dev_poison((size_t)S * N * C);
    gpu->attention_local(gpu, S, N, H, d, 32, 128, dQG, dKV, dKV + C, ld, dbias, scale, dOg, dQG + C, ld, PX_F32);
    snprintf(what, sizeof what, "attention_local gated S=%d N=%d H=%d d=%d", S, N, H, d);
    compare(what, dOg, want, (size_t)S * N * C, 1e-5);
    gpu->free(gpu, dOg);
    free(QG); free(KV); free(bias); free(want);
    gpu->free(gpu, dQG); gpu->free(gpu, dKV); gpu->free(gpu, dbias); gpu->free(gpu, dO);
  }
}

static void test_attention_tc_gated(void) {
  /* The tensor-core path (tf32 backend) with the fused gate, against the CPU (tf32 bound). */
  px_backend *g = px_cuda_backend(PX_PRECISION_TF32);
  int S = 2, T = 77, H = 4, d = 48, C = H * d, ld = 4 * C;
  size_t nq = (size_t)S * T * ld;
  float *P = rnd(nq, 1.0), *bias = rnd((size_t)H * T * T, 2.0), *want = malloc(sizeof(float) * (size_t)S * T * C);
  float *dP = up(P, nq), *dbias = up(bias, (size_t)H * T * T), *dO = dev_poison((size_t)S * T * C);
  cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, 0.144f, want, P + 3 * C, ld, PX_F32);
  g->attention_full(g, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, 0.144f, dO, dP + 3 * C, ld, PX_F32);
  compare("attention_full tf32 gated", dO, want, (size_t)S * T * C, 2e-3);
  free(P); free(bias); free(want);
  gpu->free(gpu, dP); gpu->free(gpu, dbias); gpu->free(gpu, dO);
}

/* ---- 16-bit GEMM inputs (backend.h px_etype), fp16 (ab 2) and bf16 (ab 1) ---- */
/* Y as a 16-bit GEMM output of type ab stored times 2^-re (returned: a device buffer), and in
 * Yr (n floats, the caller's) the values it holds, times 2^re: what the residual kernels read. */
static uint16_t *dev_update16(const float *Y, size_t n, int ab, int re, float *Yr) {
  uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    h[i] = tu_half_bits(ldexpf(Y[i], -re), ab);
    Yr[i] = ldexpf(tu_half_value(h[i], ab), re);
  }
  uint16_t *d = gpu->alloc(gpu, sizeof(uint16_t) * (n ? n : 1));
  gpu->upload(gpu, d, h, sizeof(uint16_t) * n);
  free(h);
  return d;
}
/* Compare a 16-bit device result, times 2^e, with an fp32 reference. */
static void compare16(const char *what, const uint16_t *got_dev, int ab, int e, const float *want, size_t n, double tol) {
  uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
  float *got = malloc(sizeof(float) * (n ? n : 1));
  gpu->download(gpu, h, got_dev, sizeof(uint16_t) * n);
  for (size_t i = 0; i < n; i++) got[i] = ldexpf(tu_half_value(h[i], ab), e);
  double err = tu_rel_err_ff(got, want, n);
  CHECK_MSG(err <= tol, "%s: rel err %.3g (tol %.1g)", what, err, tol);
  CHECK_MSG(gpu->status(gpu) == 0, "%s: CUDA error %s", what, px_last_error());
  free(h);
  free(got);
}

/* The CPU's reference of adaln_pair (which the CPU backend lacks): w1 = AdaLN(A) with G1, B1,
 * after A += Gr * Y where res (A updated in place), then w2 = AdaLN(w1) with G2, B2. */
static void cpu_adaln_pair(int M, int C, float *A, int res, const float *Gr, const float *Y, const float *G1,
                           const float *B1, const float *G2, const float *B2, int gr, float *w1, float *w2) {
  if (res)
    cpu->residual_adaln(cpu, M, C, A, Gr, gr, Y, PX_F32, 0, G1, B1, gr, w1, PX_F32);
  else
    cpu->adaln(cpu, M, C, A, G1, B1, gr, w1, PX_F32);
  cpu->adaln(cpu, M, C, w1, G2, B2, gr, w2, PX_F32);
}

static void test_x16(int prec) {
  px_backend *g = px_cuda_backend(prec);
  const int ab = prec == PX_PRECISION_BF16 ? 1 : 2;
  const px_etype t16 = ab == 1 ? PX_BF16 : PX_F16;
  /* one rounding of each stored value: relative ~2^-11 (fp16) or 2^-8 (bf16) */
  const double tol = ab == 2 ? 1e-3 : 1e-2;
  CHECK(g->convert != NULL); /* the CPU has convert too where it has AVX512_BF16 (bf16 only) */
  char what[128];
  /* AdaLN and residual + AdaLN: C % 4 == 0 takes the row kernel, others the fallback */
  int rows[][2] = {{5, 768}, {333, 768}, {7, 20}, {3, 13}};
  for (size_t t = 0; t < sizeof rows / sizeof rows[0]; t++) {
    const int M = rows[t][0], C = rows[t][1], gr = M > 3 ? M / 3 + 1 : 1;
    const size_t n = (size_t)M * C;
    float *X = rnd(n, 2.0), *G = rnd((size_t)gr * C, 1.0), *B = rnd((size_t)gr * C, 1.0), *Y = rnd(n, 1.0);
    float *Gr = rnd((size_t)gr * C, 1.0), *want = malloc(sizeof(float) * n), *A = malloc(sizeof(float) * n);
    float *dX = up(X, n), *dG = up(G, (size_t)gr * C), *dB = up(B, (size_t)gr * C), *dY = up(Y, n), *dGr = up(Gr, (size_t)gr * C);
    uint16_t *d16 = tu_dev_poison16(gpu, n);
    cpu->adaln(cpu, M, C, X, G, B, gr, want, PX_F32);
    g->adaln(g, M, C, dX, dG, dB, gr, d16, t16);
    snprintf(what, sizeof what, "adaln_x16 ab %d M=%d C=%d", ab, M, C);
    compare16(what, d16, ab, 0, want, n, tol);
    memcpy(A, X, sizeof(float) * n);
    cpu->residual_adaln(cpu, M, C, A, Gr, gr, Y, PX_F32, 0, G, B, gr, want, PX_F32);
    gpu->free(gpu, d16);
    d16 = tu_dev_poison16(gpu, n);
    g->residual_adaln(g, M, C, dX, dGr, gr, dY, PX_F32, 0, dG, dB, gr, d16, t16);
    snprintf(what, sizeof what, "residual_adaln_x16 ab %d M=%d C=%d", ab, M, C);
    compare16(what, d16, ab, 0, want, n, tol);
    snprintf(what, sizeof what, "residual_adaln_x16 residual ab %d M=%d C=%d", ab, M, C);
    compare(what, dX, A, n, 1e-6); /* the residual stream stays fp32 */
    /* A 16-bit update Y (a 16-bit GEMM's output, stored times 2^-re): residual_adaln and
     * gated_residual read it times 2^re. The CPU reference takes the same rounded values. */
    {
      const int re = 3;
      float *Yr = malloc(sizeof(float) * n);
      uint16_t *dY16 = dev_update16(Y, n, ab, re, Yr);
      memcpy(A, X, sizeof(float) * n);
      cpu->residual_adaln(cpu, M, C, A, Gr, gr, Yr, PX_F32, 0, G, B, gr, want, PX_F32);
      gpu->upload(gpu, dX, X, sizeof(float) * n);
      gpu->free(gpu, d16);
      d16 = tu_dev_poison16(gpu, n);
      g->residual_adaln(g, M, C, dX, dGr, gr, dY16, t16, re, dG, dB, gr, d16, t16);
      snprintf(what, sizeof what, "residual_adaln 16-bit update ab %d M=%d C=%d", ab, M, C);
      compare16(what, d16, ab, 0, want, n, tol);
      snprintf(what, sizeof what, "residual_adaln 16-bit update, residual ab %d M=%d C=%d", ab, M, C);
      compare(what, dX, A, n, 1e-6);
      memcpy(A, X, sizeof(float) * n);
      cpu->gated_residual(cpu, M, C, A, Gr, gr, Yr, PX_F32, 0);
      gpu->upload(gpu, dX, X, sizeof(float) * n);
      g->gated_residual(g, M, C, dX, dGr, gr, dY16, t16, re);
      snprintf(what, sizeof what, "gated_residual 16-bit update ab %d M=%d C=%d", ab, M, C);
      compare(what, dX, A, n, 1e-6);
      free(Yr);
      gpu->free(gpu, dY16);
    }
    free(X); free(G); free(B); free(Y); free(Gr); free(want); free(A);
    gpu->free(gpu, dX); gpu->free(gpu, dG); gpu->free(gpu, dB); gpu->free(gpu, dY); gpu->free(gpu, dGr);
    gpu->free(gpu, d16);
  }
  /* The atom blocks' AdaLN pair (adaln_pair: optional, the CUDA backend has it): Y1 = AdaLN(A)
   * and Y2 = AdaLN_kv(Y1) from the fp32 Y1, with and without the gated residual first, against
   * the CPU's residual_adaln / adaln then adaln. C = 128 / 256 take the fused kernel, the
   * others the fallback; the conditioning repeats every g_rows rows, as the atoms' N. */
  CHECK(g->adaln_pair != NULL && cpu->adaln_pair == NULL);
  int prow[][2] = {{5, 128}, {333, 128}, {70, 256}, {7, 20}, {3, 13}, {9, 384}};
  for (size_t t = 0; g->adaln_pair && t < sizeof prow / sizeof prow[0]; t++) {
    const int M = prow[t][0], C = prow[t][1], gr = M > 3 ? M / 3 + 1 : 1;
    const size_t n = (size_t)M * C, ng = (size_t)gr * C;
    float *X = rnd(n, 2.0), *G1 = rnd(ng, 1.0), *B1 = rnd(ng, 1.0), *G2 = rnd(ng, 1.0), *B2 = rnd(ng, 1.0);
    float *Y = rnd(n, 1.0), *Gr = rnd(ng, 1.0);
    float *A = malloc(sizeof(float) * n), *w1 = malloc(sizeof(float) * n), *w2 = malloc(sizeof(float) * n);
    float *dX = up(X, n), *dG1 = up(G1, ng), *dB1 = up(B1, ng), *dG2 = up(G2, ng), *dB2 = up(B2, ng), *dY = up(Y, n);
    float *dGr = up(Gr, ng);
    for (int res = 0; res < 2; res++) {
      memcpy(A, X, sizeof(float) * n);
      cpu_adaln_pair(M, C, A, res, Gr, Y, G1, B1, G2, B2, gr, w1, w2);
      gpu->upload(gpu, dX, X, sizeof(float) * n);
      uint16_t *d1 = tu_dev_poison16(gpu, n), *d2 = tu_dev_poison16(gpu, n);
      g->adaln_pair(g, M, C, dX, res ? dGr : NULL, res ? dY : NULL, PX_F32, 0, dG1, dB1, dG2, dB2, gr, d1, d2, t16);
      snprintf(what, sizeof what, "adaln_pair Y1 ab %d M=%d C=%d residual %d", ab, M, C, res);
      compare16(what, d1, ab, 0, w1, n, tol);
      snprintf(what, sizeof what, "adaln_pair Y2 ab %d M=%d C=%d residual %d", ab, M, C, res);
      compare16(what, d2, ab, 0, w2, n, tol);
      snprintf(what, sizeof what, "adaln_pair A ab %d M=%d C=%d residual %d", ab, M, C, res);
      compare(what, dX, A, n, 1e-6); /* the residual stream stays fp32 (unchanged without Gr) */
      gpu->free(gpu, d1);
      gpu->free(gpu, d2);
      /* fp32 outputs too (the same op at any type) */
      float *f1 = dev_poison(n), *f2 = dev_poison(n);
      gpu->upload(gpu, dX, X, sizeof(float) * n);
      g->adaln_pair(g, M, C, dX, res ? dGr : NULL, res ? dY : NULL, PX_F32, 0, dG1, dB1, dG2, dB2, gr, f1, f2, PX_F32);
      snprintf(what, sizeof what, "adaln_pair fp32 Y2 M=%d C=%d residual %d", M, C, res);
      compare(what, f2, w2, n, 1e-5);
      gpu->free(gpu, f1);
      gpu->free(gpu, f2);
      if (res) { /* a 16-bit update R stored times 2^-3 (as residual_adaln's above) */
        const int re = 3;
        float *Yr = malloc(sizeof(float) * n);
        uint16_t *dY16 = dev_update16(Y, n, ab, re, Yr);
        memcpy(A, X, sizeof(float) * n);
        cpu_adaln_pair(M, C, A, 1, Gr, Yr, G1, B1, G2, B2, gr, w1, w2);
        gpu->upload(gpu, dX, X, sizeof(float) * n);
        uint16_t *e1 = tu_dev_poison16(gpu, n), *e2 = tu_dev_poison16(gpu, n);
        g->adaln_pair(g, M, C, dX, dGr, dY16, t16, re, dG1, dB1, dG2, dB2, gr, e1, e2, t16);
        snprintf(what, sizeof what, "adaln_pair 16-bit update Y2 ab %d M=%d C=%d", ab, M, C);
        compare16(what, e2, ab, 0, w2, n, tol);
        snprintf(what, sizeof what, "adaln_pair 16-bit update A ab %d M=%d C=%d", ab, M, C);
        compare(what, dX, A, n, 1e-6);
        free(Yr);
        gpu->free(gpu, dY16); gpu->free(gpu, e1); gpu->free(gpu, e2);
      }
    }
    free(X); free(G1); free(B1); free(G2); free(B2); free(Y); free(Gr); free(A); free(w1); free(w2);
    gpu->free(gpu, dX); gpu->free(gpu, dG1); gpu->free(gpu, dB1); gpu->free(gpu, dG2); gpu->free(gpu, dB2);
    gpu->free(gpu, dY); gpu->free(gpu, dGr);
  }
  /* Gated local attention with a 16-bit output (the atom blocks at fp16: the tensor-core
   * kernel's epilogue for d = 32, fp16; the others computed in fp32, then converted) */
  int lat[][4] = {{2, 70, 4, 32}, {1, 300, 4, 32}, {3, 33, 2, 16}, {2, 77, 3, 20}};
  for (size_t t = 0; t < sizeof lat / sizeof lat[0]; t++) {
    const int S = lat[t][0], N = lat[t][1], H = lat[t][2], d = lat[t][3], C = H * d, ld = 2 * C, nt = (N + 31) / 32;
    const size_t nqg = (size_t)S * N * ld, nb = (size_t)H * nt * 32 * 128, no = (size_t)S * N * C;
    float *QG = rnd(nqg, 1.0), *KV = rnd(nqg, 1.0), *bias = rnd(nb, 2.0), *want = malloc(sizeof(float) * no);
    float *dQG = up(QG, nqg), *dKV = up(KV, nqg), *dbias = up(bias, nb);
    uint16_t *d16 = tu_dev_poison16(gpu, no);
    const float scale = 1.0f / sqrtf((float)d);
    cpu->attention_local(cpu, S, N, H, d, 32, 128, QG, KV, KV + C, ld, bias, scale, want, QG + C, ld, PX_F32);
    g->attention_local(g, S, N, H, d, 32, 128, dQG, dKV, dKV + C, ld, dbias, scale, d16, dQG + C, ld, t16);
    snprintf(what, sizeof what, "attention_local_x16 ab %d S=%d N=%d H=%d d=%d", ab, S, N, H, d);
    compare16(what, d16, ab, 0, want, no, ab == 2 ? 3e-3 : 1e-2); /* tf32 attention, then one rounding */
    if (t == 0) { /* the CPU: fp32 only, the op named, nothing written */
      px_clear_error();
      for (size_t i = 0; i < no; i++) want[i] = 7.0f;
      cpu->attention_local(cpu, S, N, H, d, 32, 128, QG, KV, KV + C, ld, bias, scale, want, QG + C, ld, t16);
      CHECK_MSG(strstr(px_last_error(), "attention_local") && strstr(px_last_error(), "CPU"), "CPU: %s",
                px_last_error());
      CHECK(want[0] == 7.0f && want[no - 1] == 7.0f);
    }
    free(QG); free(KV); free(bias); free(want);
    gpu->free(gpu, dQG); gpu->free(gpu, dKV); gpu->free(gpu, dbias); gpu->free(gpu, d16);
  }
  /* SwiGLU stored times 2^-e, from fp32 or 16-bit inputs (vector and scalar paths) */
  int sw[][3] = {{5, 1536, 0}, {333, 1536, 3}, {4, 10, 2}, {9, 7, 0}};
  for (size_t t = 0; t < sizeof sw / sizeof sw[0]; t++) {
    const int M = sw[t][0], H = sw[t][1], e = sw[t][2];
    const size_t nx = (size_t)M * 2 * H;
    float *X = rnd(nx, 3.0), *want = malloc(sizeof(float) * (size_t)M * H);
    float *dX = up(X, nx);
    uint16_t *d16 = tu_dev_poison16(gpu, (size_t)M * H);
    cpu->swiglu(cpu, M, H, X, want, PX_F32, PX_F32, 0);
    g->swiglu(g, M, H, dX, d16, PX_F32, t16, e);
    snprintf(what, sizeof what, "swiglu_x16 ab %d M=%d H=%d e=%d", ab, M, H, e);
    compare16(what, d16, ab, e, want, (size_t)M * H, tol);
    /* the same from a 16-bit X: the reference sees the stored values */
    uint16_t *X16 = malloc(sizeof(uint16_t) * nx);
    for (size_t i = 0; i < nx; i++) {
      X16[i] = tu_half_bits(X[i], ab);
      X[i] = tu_half_value(X16[i], ab);
    }
    uint16_t *dX16 = gpu->alloc(gpu, sizeof(uint16_t) * nx);
    gpu->upload(gpu, dX16, X16, sizeof(uint16_t) * nx);
    cpu->swiglu(cpu, M, H, X, want, PX_F32, PX_F32, 0);
    gpu->free(gpu, d16);
    d16 = tu_dev_poison16(gpu, (size_t)M * H);
    g->swiglu(g, M, H, dX16, d16, t16, t16, e);
    snprintf(what, sizeof what, "swiglu_x16 16-bit input ab %d M=%d H=%d e=%d", ab, M, H, e);
    compare16(what, d16, ab, e, want, (size_t)M * H, tol);
    free(X); free(want); free(X16);
    gpu->free(gpu, dX); gpu->free(gpu, d16); gpu->free(gpu, dX16);
  }
  /* gated full attention (tensor cores, or the exact kernel for d = 24, then converted) */
  int at[][4] = {{2, 77, 4, 48}, {1, 33, 3, 32}, {3, 130, 16, 48}, {2, 40, 2, 24}};
  for (size_t t = 0; t < sizeof at / sizeof at[0]; t++) {
    const int S = at[t][0], T = at[t][1], H = at[t][2], d = at[t][3], C = H * d, ld = 4 * C;
    const size_t nq = (size_t)S * T * ld, no = (size_t)S * T * C;
    float *P = rnd(nq, 1.0), *bias = rnd((size_t)H * T * T, 2.0), *want = malloc(sizeof(float) * no);
    float *dP = up(P, nq), *dbias = up(bias, (size_t)H * T * T);
    uint16_t *d16 = tu_dev_poison16(gpu, no);
    const float scale = 1.0f / sqrtf((float)d);
    cpu->attention_full(cpu, S, T, H, d, P, P + C, P + 2 * C, ld, bias, scale, want, P + 3 * C, ld, PX_F32);
    g->attention_full(g, S, T, H, d, dP, dP + C, dP + 2 * C, ld, dbias, scale, d16, dP + 3 * C, ld, t16);
    snprintf(what, sizeof what, "attention_full_x16 ab %d S=%d T=%d H=%d d=%d", ab, S, T, H, d);
    compare16(what, d16, ab, 0, want, no, ab == 2 ? 3e-3 : 1e-2); /* tf32 attention, then one rounding */
    free(P); free(bias); free(want);
    gpu->free(gpu, dP); gpu->free(gpu, dbias); gpu->free(gpu, d16);
  }
  /* linear with a 16-bit X given times 2^-e: the result is 2^e X W^T + b */
  int ln[][4] = {{7, 33, 19, 0}, {331, 768, 384, 0}, {65, 768, 1536, 4}, {130, 257, 128, 1}};
  for (size_t t = 0; t < sizeof ln / sizeof ln[0]; t++) {
    const int M = ln[t][0], N = ln[t][1], K = ln[t][2], e = ln[t][3];
    float *X = rnd((size_t)M * K, 1.0), *W = rnd((size_t)N * K, 1.0 / sqrt(K)), *b = rnd(N, 0.5);
    float *want = malloc(sizeof(float) * (size_t)M * N);
    uint16_t *X16 = malloc(sizeof(uint16_t) * (size_t)M * K);
    for (size_t i = 0; i < (size_t)M * K; i++) {
      X16[i] = tu_half_bits(ldexpf(X[i], -e), ab);
      X[i] = ldexpf(tu_half_value(X16[i], ab), e); /* the reference sees the stored values */
    }
    float *dW = up(W, (size_t)N * K), *db = up(b, N), *dY = dev_poison((size_t)M * N);
    uint16_t *dX16 = gpu->alloc(gpu, sizeof(uint16_t) * (size_t)M * K);
    gpu->upload(gpu, dX16, X16, sizeof(uint16_t) * (size_t)M * K);
    void *dW16 = NULL;
    const px_weight hW = half_weight(g, dW, (size_t)N * K, t16, e, &dW16);
    CHECK_MSG(g->status(g) == 0, "half weight: %s", px_last_error());
    /* A 16-bit X with a weight that has no 16-bit copy (or one of the other type) is refused,
     * as that op's failure, and nothing is written. */
    const px_weight other = {dW, dW16, ab == 1 ? PX_F16 : PX_BF16, e, 0};
    g->linear(g, M, N, K, dX16, K, px_weight_f32(dW), db, dY, N, 0, 0, t16, PX_F32);
    CHECK_MSG(g->status(g) == PX_ERR_BACKEND && strstr(px_last_error(), "linear"), "no 16-bit copy: %s",
              px_last_error());
    g->linear(g, M, N, K, dX16, K, other, db, dY, N, 0, 0, t16, PX_F32);
    CHECK(g->status(g) == PX_ERR_BACKEND);
    cpu->linear(cpu, M, N, K, X, K, px_weight_f32(W), b, want, N, 0, 0, t16, PX_F32); /* the CPU: fp32 only */
    CHECK(strstr(px_last_error(), "CPU") != NULL);
    cpu->linear(cpu, M, N, K, X, K, px_weight_f32(W), b, want, N, 0, 0, PX_F32, PX_F32);
    g->linear(g, M, N, K, dX16, K, hW, db, dY, N, 0, 0, t16, PX_F32);
    snprintf(what, sizeof what, "linear 16-bit X ab %d M=%d N=%d K=%d e=%d", ab, M, N, K, e);
    compare(what, dY, want, (size_t)M * N, tol); /* W's rounding only */
    /* a 16-bit Y (no bias): one more rounding */
    cpu->linear(cpu, M, N, K, X, K, px_weight_f32(W), NULL, want, N, 0, 0, PX_F32, PX_F32);
    uint16_t *dY16 = tu_dev_poison16(gpu, (size_t)M * N);
    g->linear(g, M, N, K, dX16, K, hW, NULL, dY16, N, 0, 0, t16, t16);
    snprintf(what, sizeof what, "linear 16-bit X and Y ab %d M=%d N=%d K=%d e=%d", ab, M, N, K, e);
    compare16(what, dY16, ab, 0, want, (size_t)M * N, 2 * tol);
    gpu->free(gpu, dY16);
    free(X); free(W); free(b); free(want); free(X16);
    gpu->free(gpu, dW); gpu->free(gpu, db); gpu->free(gpu, dY); gpu->free(gpu, dW16); gpu->free(gpu, dX16);
  }
}

/* The sampler's kernels against the host sampler's arithmetic (src/sample/sampler.c) on the
 * host RNG streams: expected equal up to libm-vs-CUDA double rounding (~2^-29 per value). */
/* The same bits from two backends' device buffers (n elements of `size` bytes). */
static void same_bits(const char *what, const void *a_dev, const void *b_dev, size_t n, size_t size) {
  const size_t i = tu_dev_first_difference(gpu, a_dev, gpu, b_dev, n * size);
  CHECK_MSG(i == n * size, "%s: differs from one row per warp at byte %zu of %zu", what, i, n * size);
}

/* The row kernels' grouped paths: from M >= 8192 rows of at least two conditioning periods a
 * warp takes up to 8 rows of one conditioning row (row groups), and the token rows (C > 512)
 * load G and B after the reductions (k_row_ln_late). Each op against the CPU, and bit for bit
 * against a backend made with PXDIFF_NO_ROW_GROUPS and PXDIFF_NO_LATE_ROWS (one row per warp,
 * G and B loaded with the row): neither may change a value. The shapes: atom rows (C = 128,
 * 96: lanes past C / 4 idle; a last group cut by M; Gr repeating with another period than G)
 * and token rows. */
static void test_row_groups(void) {
  static const char *envs[] = {"PXDIFF_NO_ROW_GROUPS", "PXDIFF_NO_LATE_ROWS"};
  for (int i = 0; i < 2; i++) setenv(envs[i], "1", 1);
  px_backend *ref = px_cuda_backend(PX_PRECISION_FP16);
  for (int i = 0; i < 2; i++) unsetenv(envs[i]);
  px_backend *g = px_cuda_backend(PX_PRECISION_FP16);
  CHECK(ref != NULL && g != NULL && g->adaln_pair != NULL);
  const struct { int M, C, g_rows, gr_rows; } cs[] = {
      {36000, 128, 4500, 4500}, {20001, 128, 3000, 1500}, {13000, 96, 1300, 1300}, {9000, 768, 1000, 1000},
      {17000, 768, 2000, 2000}};
  const int re = 3;
  char what[128];
  for (size_t t = 0; ref && g && t < sizeof cs / sizeof cs[0]; t++) {
    const int M = cs[t].M, C = cs[t].C, gr = cs[t].g_rows, grr = cs[t].gr_rows;
    const size_t n = (size_t)M * C, ng = (size_t)gr * C, ngr = (size_t)grr * C;
    float *X = rnd(n, 2.0), *G = rnd(ng, 1.0), *B = rnd(ng, 1.0), *G2 = rnd(ng, 1.0), *B2 = rnd(ng, 1.0);
    float *Gr = rnd(ngr, 1.0), *Y = rnd(n, 1.0), *Yr = malloc(sizeof(float) * n);
    float *A = malloc(sizeof(float) * n), *w1 = malloc(sizeof(float) * n), *w2 = malloc(sizeof(float) * n);
    float *dG = up(G, ng), *dB = up(B, ng), *dG2 = up(G2, ng), *dB2 = up(B2, ng), *dGr = up(Gr, ngr);
    float *dY = up(Y, n);
    uint16_t *dY16 = dev_update16(Y, n, 2, re, Yr);
    float *dA[2];
    uint16_t *d1[2], *d2[2];
    px_backend *be[2] = {ref, g};
    /* AdaLN (fp16 out) */
    cpu->adaln(cpu, M, C, X, G, B, gr, w1, PX_F32);
    for (int k = 0; k < 2; k++) {
      dA[k] = up(X, n);
      d1[k] = tu_dev_poison16(gpu, n);
      be[k]->adaln(be[k], M, C, dA[k], dG, dB, gr, d1[k], PX_F16);
    }
    snprintf(what, sizeof what, "row groups: adaln M=%d C=%d", M, C);
    compare16(what, d1[1], 2, 0, w1, n, 1e-3);
    same_bits(what, d1[0], d1[1], n, 2);
    /* residual + AdaLN with an fp32 update, then with a 16-bit one (stored times 2^-re) */
    for (int y16 = 0; y16 < 2; y16++) {
      memcpy(A, X, sizeof(float) * n);
      cpu->residual_adaln(cpu, M, C, A, Gr, grr, y16 ? Yr : Y, PX_F32, 0, G, B, gr, w1, PX_F32);
      for (int k = 0; k < 2; k++) {
        gpu->upload(gpu, dA[k], X, sizeof(float) * n);
        gpu->free(gpu, d1[k]);
        d1[k] = tu_dev_poison16(gpu, n);
        be[k]->residual_adaln(be[k], M, C, dA[k], dGr, grr, y16 ? (const void *)dY16 : dY, y16 ? PX_F16 : PX_F32,
                              y16 ? re : 0, dG, dB, gr, d1[k], PX_F16);
      }
      snprintf(what, sizeof what, "row groups: residual_adaln (A) M=%d C=%d update16 %d", M, C, y16);
      compare(what, dA[1], A, n, 1e-6);
      same_bits(what, dA[0], dA[1], n, 4);
      snprintf(what, sizeof what, "row groups: residual_adaln (LN) M=%d C=%d update16 %d", M, C, y16);
      compare16(what, d1[1], 2, 0, w1, n, 1e-3);
      same_bits(what, d1[0], d1[1], n, 2);
    }
    /* the atom blocks' AdaLN pair, with and without the residual (its Gr shares G's period) */
    for (int res = 0; C <= 256 && grr == gr && res < 2; res++) {
      memcpy(A, X, sizeof(float) * n);
      cpu_adaln_pair(M, C, A, res, Gr, Yr, G, B, G2, B2, gr, w1, w2);
      for (int k = 0; k < 2; k++) {
        gpu->upload(gpu, dA[k], X, sizeof(float) * n);
        gpu->free(gpu, d1[k]); /* it held the residual + AdaLN's output, which Y1 repeats */
        d1[k] = tu_dev_poison16(gpu, n);
        d2[k] = tu_dev_poison16(gpu, n);
        be[k]->adaln_pair(be[k], M, C, dA[k], res ? dGr : NULL, res ? dY16 : NULL, PX_F16, res ? re : 0, dG, dB,
                          dG2, dB2, gr, d1[k], d2[k], PX_F16);
      }
      snprintf(what, sizeof what, "row groups: adaln_pair Y1 M=%d C=%d residual %d", M, C, res);
      compare16(what, d1[1], 2, 0, w1, n, 1e-3);
      same_bits(what, d1[0], d1[1], n, 2);
      snprintf(what, sizeof what, "row groups: adaln_pair Y2 M=%d C=%d residual %d", M, C, res);
      compare16(what, d2[1], 2, 0, w2, n, 1e-3);
      same_bits(what, d2[0], d2[1], n, 2);
      snprintf(what, sizeof what, "row groups: adaln_pair A M=%d C=%d residual %d", M, C, res);
      compare(what, dA[1], A, n, 1e-6);
      same_bits(what, dA[0], dA[1], n, 4);
      for (int k = 0; k < 2; k++) gpu->free(gpu, d2[k]);
    }
    CHECK_MSG(ref->status(ref) == 0 && g->status(g) == 0, "row groups M=%d C=%d: CUDA error %s", M, C,
              px_last_error());
    for (int k = 0; k < 2; k++) {
      gpu->free(gpu, dA[k]);
      gpu->free(gpu, d1[k]);
    }
    gpu->free(gpu, dG); gpu->free(gpu, dB); gpu->free(gpu, dG2); gpu->free(gpu, dB2); gpu->free(gpu, dGr);
    gpu->free(gpu, dY); gpu->free(gpu, dY16);
    free(X); free(G); free(B); free(G2); free(B2); free(Gr); free(Y); free(Yr); free(A); free(w1); free(w2);
  }
  if (ref) px_cuda_backend_destroy(ref);
  if (g) px_cuda_backend_destroy(g);
}

static void test_sampler_kernels(void) {
  const int S = 3, N = 37;
  const size_t n3 = (size_t)N * 3, nx = n3 * S;
  const uint64_t seed = 0x1234abcd5678ULL ^ (uint64_t)rand();
  const uint32_t sample0 = 5, step = 7;
  const float t0 = 160.0f, sd = 3.25f;
  float *want = malloc(sizeof(float) * nx), *x = rnd(nx, 20.0), *xn_want = malloc(sizeof(float) * nx);
  /* init */
  float *dx = dev_poison(nx);
  gpu->sampler_init(gpu, S, N, seed, sample0, t0, dx);
  for (int s = 0; s < S; s++) {
    px_rng_normal(seed, sample0 + s, 0, PX_RNG_INIT, want + s * n3, (int64_t)n3);
    for (size_t i = 0; i < n3; i++) want[s * n3 + i] *= t0;
  }
  compare("sampler_init", dx, want, nx, 1e-6);
  /* augmentation + noise */
  gpu->upload(gpu, dx, x, sizeof(float) * nx);
  float *dxn = dev_poison(nx);
  gpu->sampler_noise(gpu, S, N, seed, sample0, step, sd, dx, dxn);
  memcpy(want, x, sizeof(float) * nx);
  float *noise = malloc(sizeof(float) * n3);
  for (int s = 0; s < S; s++) {
    float R[9], u[3], *xs = want + s * n3;
    px_rng_rotation(seed, sample0 + s, step, R);
    px_rng_translation(seed, sample0 + s, step, u);
    double mean[3] = {0, 0, 0};
    for (int n = 0; n < N; n++)
      for (int k = 0; k < 3; k++) mean[k] += xs[n * 3 + k];
    float mf[3];
    for (int k = 0; k < 3; k++) mf[k] = (float)(mean[k] / N);
    for (int n = 0; n < N; n++) {
      float p[3] = {xs[n * 3] - mf[0], xs[n * 3 + 1] - mf[1], xs[n * 3 + 2] - mf[2]};
      for (int k = 0; k < 3; k++) xs[n * 3 + k] = R[k * 3] * p[0] + R[k * 3 + 1] * p[1] + R[k * 3 + 2] * p[2] + u[k];
    }
    px_rng_normal(seed, sample0 + s, step, PX_RNG_NOISE, noise, (int64_t)n3);
    for (size_t i = 0; i < n3; i++) xn_want[s * n3 + i] = xs[i] + sd * noise[i];
  }
  compare("sampler_noise: augmented x", dx, want, nx, 1e-6);
  compare("sampler_noise: x_noisy", dxn, xn_want, nx, 1e-6);
  /* Euler step */
  float *xd = rnd(nx, 20.0);
  float *dxd = up(xd, nx);
  gpu->upload(gpu, dxn, xn_want, sizeof(float) * nx);
  gpu->sampler_euler(gpu, (int64_t)nx, dxn, dxd, 12.5f, -1.75f, dx);
  for (size_t i = 0; i < nx; i++) {
    float delta = (xn_want[i] - xd[i]) / 12.5f;
    want[i] = xn_want[i] + -1.75f * delta;
  }
  compare("sampler_euler", dx, want, nx, 1e-7);
  free(want); free(x); free(xn_want); free(noise); free(xd);
  gpu->free(gpu, dx); gpu->free(gpu, dxn); gpu->free(gpu, dxd);
}

/* The noise-level conditioning and the EDM scalings (one implementation per backend: the
 * CPU's is the host arithmetic the model always had) at PXDesign's sizes and awkward ones,
 * noise levels across the schedule (sigma_data 16: t from 0.004 to 2560). */
static void test_noise_cond_edm(void) {
  const float sigma = 16.0f;
  const int shapes[][4] = {{1, 1, 256, 384}, {3, 7, 256, 384}, {2, 333, 16, 129}, {5, 4, 33, 7}};
  for (int k = 0; k < 4; k++) {
    const int S = shapes[k][0], T = shapes[k][1], nf = shapes[k][2], C = shapes[k][3];
    float *t = malloc(sizeof(float) * S), *b = malloc(sizeof(float) * nf);
    for (int u = 0; u < S; u++) t[u] = sigma * powf(2.0f, -12.0f + 19.0f * (float)rand() / (float)RAND_MAX);
    for (int f = 0; f < nf; f++) b[f] = (float)rand() / (float)RAND_MAX;
    float *w = rnd(nf, 1.0), *lw = rnd(nf, 1.0), *Wn = rnd((size_t)C * nf, 0.1), *s0 = rnd((size_t)T * C, 1.0);
    const size_t ns = (size_t)S * T * C, nw = (size_t)S * (2 * (size_t)nf + C);
    float *want = malloc(sizeof(float) * ns), *work = malloc(sizeof(float) * nw);
    cpu->noise_cond(cpu, S, T, nf, C, t, sigma, w, b, lw, px_weight_f32(Wn), s0, work, want);
    float *dt = up(t, S), *dw = up(w, nf), *db = up(b, nf), *dlw = up(lw, nf), *dWn = up(Wn, (size_t)C * nf);
    float *ds0 = up(s0, (size_t)T * C), *dwork = dev_poison(nw), *ds = dev_poison(ns);
    gpu->noise_cond(gpu, S, T, nf, C, dt, sigma, dw, db, dlw, px_weight_f32(dWn), ds0, dwork, ds);
    char what[96];
    snprintf(what, sizeof what, "noise_cond S=%d T=%d nf=%d C=%d", S, T, nf, C);
    compare(what, ds, want, ns, 1e-5);
    /* EDM: r_noisy and the output mix, one level per sample and one shared */
    const int N = T * 3 + 1;
    const size_t nx = (size_t)S * N * 3;
    float *x = rnd(nx, 30.0), *rup = rnd(nx, 1.0), *ew = malloc(sizeof(float) * nx);
    float *dx = up(x, nx), *drup = up(rup, nx), *dout = dev_poison(nx);
    for (int mode = 0; mode < 2; mode++)
      for (int stride = 0; stride < 2; stride++) {
        cpu->edm(cpu, mode, S, N, x, t, stride, sigma, rup, ew);
        gpu->edm(gpu, mode, S, N, dx, dt, stride, sigma, drup, dout);
        snprintf(what, sizeof what, "edm mode %d t_stride %d S=%d N=%d", mode, stride, S, N);
        compare(what, dout, ew, nx, 1e-6);
      }
    free(t); free(b); free(w); free(lw); free(Wn); free(s0); free(want); free(work);
    free(x); free(rup); free(ew);
    float *bufs[] = {dt, dw, db, dlw, dWn, ds0, dwork, ds, dx, drup, dout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) gpu->free(gpu, bufs[i]);
  }
}

/* Out of memory is reported at the operation that met it, as PX_ERR_NOMEM's message naming it
 * and the device (backend.h), and leaves the context usable: alloc and host_alloc return NULL
 * with the reason set, and nothing is kept as a sticky failure for status(). */
/* PXDIFF_LT_SPLITK (issue 13 item 4, an opt-in experiment read when a context is made): the
 * one-wave 16-bit GEMMs of the token blocks' output projection and transition (N = 768, K = 768
 * / 1536, ~1650 rows per lane), with a bias and with padded input rows' neighbours: the same
 * result as without split-K within fp32 summation-order noise, and the CPU's within the fp16
 * bound, in a context made with the variable set and in one made without it. */
static void test_splitk(void) {
  const int shapes[][3] = {{1650, 768, 1536}, {1650, 768, 768}, {3100, 768, 1536}, {37, 768, 1536}};
  float *out[2][4] = {{NULL}};
  for (int on = 0; on < 2; on++) {
    if (on) setenv("PXDIFF_LT_SPLITK", "2", 1);
    px_backend *c = px_cuda_backend_create(0, PX_PRECISION_FP16);
    unsetenv("PXDIFF_LT_SPLITK");
    CHECK_MSG(c != NULL, "context: %s", px_last_error());
    if (!c) return;
    for (int t = 0; t < 4; t++) {
      const int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
      tu_rng_state = 1000 + (uint64_t)t; /* the same inputs with and without split-K */
      float *X = rnd((size_t)M * K, 1.0), *W = rnd((size_t)N * K, 1.0 / sqrt(K)), *b = rnd(N, 0.5);
      uint16_t *X16 = malloc(sizeof(uint16_t) * (size_t)M * K);
      for (size_t i = 0; i < (size_t)M * K; i++) {
        X16[i] = tu_half_bits(X[i], 2);
        X[i] = tu_half_value(X16[i], 2);
      }
      float *want = malloc(sizeof(float) * (size_t)M * N);
      cpu->linear(cpu, M, N, K, X, K, px_weight_f32(W), b, want, N, 0, 0, PX_F32, PX_F32);
      float *dW = c->alloc(c, sizeof(float) * (size_t)N * K), *db = c->alloc(c, sizeof(float) * N);
      float *dY = c->alloc(c, sizeof(float) * (size_t)M * N);
      uint16_t *dX = c->alloc(c, sizeof(uint16_t) * (size_t)M * K), *dW16 = c->alloc(c, sizeof(uint16_t) * (size_t)N * K);
      c->upload(c, dW, W, sizeof(float) * (size_t)N * K);
      c->upload(c, db, b, sizeof(float) * N);
      c->upload(c, dX, X16, sizeof(uint16_t) * (size_t)M * K);
      c->convert(c, (int64_t)N * K, dW, dW16, PX_F16);
      const px_weight hw = {dW, dW16, PX_F16, 0, 0};
      c->linear(c, M, N, K, dX, K, hw, db, dY, N, 0, 0, PX_F16, PX_F32);
      out[on][t] = malloc(sizeof(float) * (size_t)M * N);
      c->download(c, out[on][t], dY, sizeof(float) * (size_t)M * N);
      CHECK_MSG(c->status(c) == 0, "split-K %d M=%d N=%d K=%d: %s", on, M, N, K, px_last_error());
      const double e = tu_rel_err_ff(out[on][t], want, (size_t)M * N);
      CHECK_MSG(e <= 2e-3, "split-K %d M=%d N=%d K=%d: rel err %.3g vs CPU", on, M, N, K, e);
      if (on) {
        const double d = tu_rel_err_ff(out[1][t], out[0][t], (size_t)M * N);
        CHECK_MSG(d <= 1e-5, "M=%d N=%d K=%d: split-K vs not: rel diff %.3g", M, N, K, d);
      }
      free(X); free(W); free(b); free(X16); free(want);
      c->free(c, dW); c->free(c, db); c->free(c, dY); c->free(c, dX); c->free(c, dW16);
    }
    px_cuda_backend_destroy(c);
  }
  for (int on = 0; on < 2; on++)
    for (int t = 0; t < 4; t++) free(out[on][t]);
}

/* convert_rows (a pair bias's fp16 copy in padded rows) and max_abs (its range check):
 * exact against the host's rounding and maxima; the padding zero, rows and segments at
 * awkward sizes; a NaN, an infinity and a negative maximum each reported. */
static void test_bias16_ops(void) {
  CHECK(gpu->convert_rows != NULL && gpu->max_abs != NULL);
  if (!gpu->convert_rows || !gpu->max_abs) return;
  static const int shapes[][3] = {{1, 1, 8}, {37, 19, 24}, {16 * 330, 330, 336}, {3, 64, 64}, {70000, 5, 8}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    const int M = shapes[k][0], C = shapes[k][1], ldy = shapes[k][2], ldx = C + (int)(k % 2) * 3;
    const size_t nx = (size_t)M * ldx, ny = (size_t)M * ldy;
    float *X = rnd(nx, 3.0);
    uint16_t *h = malloc(sizeof(uint16_t) * ny);
    float *dX = up(X, nx);
    uint16_t *dY = tu_dev_poison16(gpu, ny);
    gpu->convert_rows(gpu, M, C, dX, ldx, dY, ldy, PX_F16);
    gpu->download(gpu, h, dY, sizeof(uint16_t) * ny);
    size_t bad = 0;
    for (size_t r = 0; r < (size_t)M; r++)
      for (int c = 0; c < ldy; c++)
        bad += h[r * ldy + c] != (c < C ? tu_half_bits(X[r * ldx + c], 2) : 0);
    CHECK_MSG(bad == 0 && gpu->status(gpu) == 0, "convert_rows M=%d C=%d ldx=%d ldy=%d: %zu values wrong", M, C, ldx,
              ldy, bad);
    free(X); free(h);
    gpu->free(gpu, dX); gpu->free(gpu, dY);
  }
  /* segments: plain, a NaN, an infinity, all negative, one value */
  static const int64_t ns[] = {1000, 333, 70001, 17, 1};
  const int count = 5;
  int64_t total = 0;
  for (int i = 0; i < count; i++) total = total > ns[i] ? total : ns[i];
  float *X = rnd((size_t)count * total, 2.0), want[5], got[5];
  X[1 * total + 100] = NAN;
  X[2 * total + 70000] = -INFINITY;
  for (int64_t j = 0; j < ns[3]; j++) X[3 * total + j] = -fabsf(X[3 * total + j]) - 1.0f;
  for (int i = 0; i < count; i++) { /* segment i: ns[i] values from X + i * total */
    want[i] = 0.0f;
    for (int64_t j = 0; j < ns[i]; j++) want[i] = fmaxf(want[i], fabsf(X[i * total + j]));
  }
  want[1] = NAN;
  float *dX = up(X, (size_t)count * total);
  for (int i = 0; i < count; i++) {
    got[i] = 0.0f;
    gpu->max_abs(gpu, 1, ns[i], dX + i * total, &got[i]);
    CHECK_MSG(isnan(want[i]) ? isnan(got[i]) : got[i] == want[i], "max_abs segment %d (%lld values): %g, want %g",
              i, (long long)ns[i], got[i], want[i]);
  }
  /* several segments of one length in one call */
  gpu->max_abs(gpu, 3, 333, dX, got);
  for (int i = 0; i < 3; i++) {
    float w = 0.0f;
    int nan = 0;
    for (int64_t j = 0; j < 333; j++) {
      const float v = X[i * 333 + j];
      nan |= isnan(v);
      w = fmaxf(w, fabsf(v));
    }
    CHECK_MSG(nan ? isnan(got[i]) : got[i] == w, "max_abs of 3 segments, segment %d: %g, want %g", i, got[i], w);
  }
  CHECK(gpu->status(gpu) == 0);
  /* bad arguments: refused with one error naming the op, nothing written */
  {
    uint16_t *dY = tu_dev_poison16(gpu, 64), h[64];
    static const int bad[][4] = {{8, 8, 4, PX_F16}, {8, 4, 8, PX_F16}, {8, 8, 8, PX_F32}}; /* C, ldx, ldy, type */
    for (int i = 0; i < 3; i++) {
      px_clear_error();
      gpu->convert_rows(gpu, 2, bad[i][0], dX, bad[i][1], dY, bad[i][2], (px_etype)bad[i][3]);
      const int rc = gpu->status(gpu);
      CHECK_MSG(rc == PX_ERR_BACKEND && strstr(px_last_error(), "convert_rows") != NULL,
                "convert_rows C=%d ldx=%d ldy=%d type %d: status %d, %s", bad[i][0], bad[i][1], bad[i][2],
                bad[i][3], rc, px_last_error());
      gpu->download(gpu, h, dY, sizeof h);
      size_t changed = 0;
      for (int j = 0; j < 64; j++) changed += h[j] != 0xFFFF;
      CHECK_MSG(changed == 0, "convert_rows with bad arguments wrote %zu values", changed);
    }
    px_clear_error();
    float *m = calloc(70000, sizeof(float));
    gpu->max_abs(gpu, 70000, 1, dX, m); /* more segments than a grid's y */
    CHECK_MSG(gpu->status(gpu) == PX_ERR_BACKEND && strstr(px_last_error(), "max_abs") != NULL && isnan(m[0]) &&
                  isnan(m[69999]),
              "max_abs of 70000 segments: %s, %g", px_last_error(), m[0]);
    CHECK(gpu->status(gpu) == 0);
    free(m);
    gpu->free(gpu, dY);
  }
  free(X);
  gpu->free(gpu, dX);
}

static void test_oom(void) {
  const size_t huge = (size_t)1 << 50; /* 1 PiB: more than any device or host has */
  px_clear_error();
  CHECK(gpu->alloc(gpu, huge) == NULL);
  CHECK_MSG(strstr(px_last_error(), "out of memory in alloc on cuda:") != NULL, "alloc: %s", px_last_error());
  px_clear_error();
  CHECK(gpu->host_alloc(gpu, huge) == NULL);
  CHECK_MSG(strstr(px_last_error(), "out of memory in host_alloc on cuda:") != NULL, "host_alloc: %s",
            px_last_error());
  CHECK_MSG(gpu->status(gpu) == 0, "a refused allocation left a sticky failure: %s", px_last_error());
  float *ok = gpu->alloc(gpu, 1024);
  CHECK(ok != NULL);
  gpu->free(gpu, ok);
}

int main(void) {
  if (px_cuda_device_count() <= 0) {
    return tu_skip("test_cuda_kernels", "no CUDA device");
  }
  tu_seed();
  cpu = px_cpu_backend();
  gpu = px_cuda_backend(PX_PRECISION_FP32);
  test_linear(PX_PRECISION_FP32, 1e-5, 0);
  test_linear(PX_PRECISION_TF32, 2e-3, 0);
  test_linear(PX_PRECISION_BF16, 2e-3, 0); /* no 16-bit weight copy: the TF32 path */
  test_linear(PX_PRECISION_FP16, 2e-3, 0);
  test_linear(PX_PRECISION_FP16, 2e-3, 1); /* fp16 operands: 10-bit mantissa like TF32 */
  test_linear(PX_PRECISION_BF16, 1e-2, 1); /* bf16 operands: 7-bit mantissa */
  test_linear_batched(PX_PRECISION_FP32, 1e-5);
  test_linear_batched(PX_PRECISION_TF32, 2e-3);
  test_rowwise();
  test_token_atom_maps();
  test_atoms_to_tokens_large();
  test_design_ops();
  test_bias16_ops();
  test_attention();
  test_attention_tc_gated();
  test_x16(PX_PRECISION_FP16);
  test_x16(PX_PRECISION_BF16);
  test_row_groups();
  test_sampler_kernels();
  test_noise_cond_edm();
  test_splitk();
  test_oom();
  return tu_finish("test_cuda_kernels");
}
#endif
