#define _POSIX_C_SOURCE 200809L /* setenv */
/* Two CUDA backend contexts in one process, side by side: each holds a copy of the same
 * synthetic model and runs the same small denoise, interleaved with the other's calls.
 * On one device the two contexts must give bit-identical results (fp32 kernels are
 * deterministic and neither context may see the other's state: streams, scratch, weight
 * copies); the second context goes to cuda:1 when the machine has one. Both are checked
 * against the CPU backend (the design cache, built on the device, stage by stage within 1e-5;
 * the call's output: relative Frobenius <= 1e-4 in fp32; at TF32, where the tensor-core
 * attention and cuBLASLt run on each context's own limits and plans, <= 2e-2 and the two
 * contexts again identical), and destroying the contexts must return every byte they held. Without a GPU (or without the CUDA build) it exits 77. */
#include "testutil.h"

#include "backend.h"
#include "model/model.h"
#include "pxdiff.h"
#include "pxdiff_synthetic.h"
#include "pxdiff_testing.h"
#ifdef PX_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#ifndef PX_HAVE_CUDA
int main(void) { return tu_skip("test_cuda_contexts", "pxdiff was built without CUDA"); }
#else

enum { S = 3, N_TARGET = 30, N_BINDER = 12, N_ATOM = 330 };

static px_dims dims(void) {
  px_dims D;
  px_dims_released(&D);
  D.n_token_blocks = 2; /* the released widths, fewer blocks: a quick call */
  D.n_enc_blocks = D.n_dec_blocks = 1;
  return D;
}

/* One denoise of the synthetic design on model m (on whatever backend it is): out [S, N, 3]. */
static int run(const px_model *m, const px_features *f, const float *x, const float *t, float *out) {
  px_design *d = NULL;
  int rc = px_design_create(m, f, &d);
  CHECK_MSG(rc == PX_OK, "design: %s", px_last_error());
  if (rc) return rc;
  rc = px_denoise(m, d, S, x, t, out);
  CHECK_MSG(rc == PX_OK, "denoise: %s", px_last_error());
  px_design_free(d);
  return rc;
}

/* Two calls of m into out (the second replays a captured graph), out poisoned before each,
 * each printed under `label`: the larger relative error against want (nx values), or -1
 * when no call ran. */
static double worst_of_two(const px_model *m, const px_features *f, const float *x, const float *t, float *out,
                           const float *want, size_t nx, const char *label) {
  double err = -1;
  for (int round = 0; round < 2; round++) {
    tu_poison(out, nx);
    if (run(m, f, x, t, out)) continue;
    const double e = tu_rel_err_ff(out, want, nx);
    printf("  %s, call %d: rel err vs CPU fp32 %.3g\n", label, round, e);
    if (e > err) err = e;
  }
  return err;
}

/* The design cache's probes (s0, pair_z, c, p), copied by name. */
typedef struct {
  const char *name[8];
  float *data[8];
  int64_t n[8];
  int count;
} probes;

static void keep_probe(void *user, const char *name, const float *data, int64_t n) {
  probes *p = (probes *)user;
  if (p->count >= 8) return;
  p->name[p->count] = name;
  p->data[p->count] = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  memcpy(p->data[p->count], data, sizeof(float) * (size_t)n);
  p->n[p->count++] = n;
}

static void probes_free(probes *p) {
  for (int i = 0; i < p->count; i++) free(p->data[i]);
  p->count = 0;
}

/* The design cache built on the device (every stage as backend operations there, exact fp32)
 * against the CPU's: each probed stage within 1e-5 (the CUDA feature kernels do the CPU's float
 * operations in its order; the GEMMs and LayerNorms sum in another order). */
static void check_design_cache(const px_model *cpu_m, const px_model *gpu_m, const px_features *f) {
  probes want = {0}, got = {0};
  px_design *dc = NULL, *dg = NULL;
  CHECK_MSG(px_design_create_probe(cpu_m, f, keep_probe, &want, &dc) == PX_OK, "CPU design: %s", px_last_error());
  CHECK_MSG(px_design_create_probe(gpu_m, f, keep_probe, &got, &dg) == PX_OK, "CUDA design: %s", px_last_error());
  CHECK_MSG(want.count == 4 && got.count == want.count, "probes: %d on the CPU, %d on CUDA", want.count, got.count);
  for (int i = 0; i < want.count && i < got.count; i++) {
    CHECK_MSG(strcmp(want.name[i], got.name[i]) == 0 && want.n[i] == got.n[i], "probe %d: %s vs %s", i,
              want.name[i], got.name[i]);
    if (want.n[i] != got.n[i]) continue;
    const double e = tu_rel_err_ff(got.data[i], want.data[i], (size_t)want.n[i]);
    CHECK_MSG(e <= 1e-5, "design cache %s on CUDA vs CPU: rel err %.3g", want.name[i], e);
  }
  px_design_free(dc);
  px_design_free(dg);
  probes_free(&want);
  probes_free(&got);
}

/* A comparison context: one made on device 0 with the switch `env`=1 (read when a context is
 * made), m0 prepared at FP16 on ctx0 and m1 on the new context. NULL when either step failed
 * (checked here); else release m1 and destroy it with end_with. */
static px_backend *fp16_pair_with(const char *env, px_backend *ctx0, px_model *m0, px_model *m1) {
  setenv(env, "1", 1);
  px_backend *b = px_cuda_backend_create(0, PX_PRECISION_FP32);
  unsetenv(env);
  CHECK_MSG(b != NULL, "context with %s=1: %s", env, px_last_error());
  if (!b) return NULL;
  px_model_release_device(m0);
  px_model_release_device(m1);
  const int rc0 = px_model_to_device(m0, ctx0, PX_PRECISION_FP16);
  const int rc1 = px_model_to_device(m1, b, PX_PRECISION_FP16);
  CHECK_MSG(rc0 == PX_OK && rc1 == PX_OK, "prepare at fp16 (%s=1 on one side): %s", env, px_last_error());
  if (rc0 == PX_OK && rc1 == PX_OK) return b;
  px_model_release_device(m1);
  px_cuda_backend_destroy(b);
  return NULL;
}
static void end_with(px_backend *b, px_model *m1) {
  px_model_release_device(m1);
  px_cuda_backend_destroy(b);
}

int main(void) {
  const int ndev = px_cuda_device_count();
  if (ndev <= 0) return tu_skip("test_cuda_contexts", "no CUDA device");
  tu_seed();
  const px_dims D = dims();
  px_synthetic_design sd;
  if (px_synthetic_design_make(&D, N_TARGET, N_BINDER, N_ATOM, 7, &sd) != PX_OK) {
    CHECK_MSG(0, "synthetic design: %s", px_last_error());
    return tu_finish("test_cuda_contexts");
  }
  const size_t nx = (size_t)S * N_ATOM * 3;
  float *x = malloc(sizeof(float) * nx), *want = malloc(sizeof(float) * nx);
  float *got[2] = {malloc(sizeof(float) * nx), malloc(sizeof(float) * nx)};
  tu_fill_normal(x, nx, 10.0);
  const float t[S] = {80.0f, 4.0f, 0.3f};

  /* A device that does not exist: refused with one line naming it. */
  CHECK(px_cuda_backend_create(ndev + 7, PX_PRECISION_FP32) == NULL);
  CHECK_MSG(strstr(px_last_error(), "cuda:") != NULL, "message: %s", px_last_error());

  px_model *cpu_m = NULL, *m[2] = {NULL, NULL};
  CHECK(px_model_synthetic(&D, 5, &cpu_m) == PX_OK);
  for (int k = 0; k < 2; k++) CHECK(px_model_synthetic(&D, 5, &m[k]) == PX_OK);
  if (!cpu_m || !m[0] || !m[1]) return tu_finish("test_cuda_contexts");
  run(cpu_m, &sd.f, x, t, want);

  const int64_t base = px_cuda_memory_in_use();
  const int dev2 = ndev > 1 ? 1 : 0;
  px_backend *ctx[2] = {px_cuda_backend_create(0, PX_PRECISION_FP32),
                        px_cuda_backend_create(dev2, PX_PRECISION_FP32)};
  CHECK_MSG(ctx[0] && ctx[1], "context: %s", px_last_error());
  if (!ctx[0] || !ctx[1]) return tu_finish("test_cuda_contexts");
  CHECK(ctx[0] != ctx[1]);
  CHECK(px_cuda_backend_device(ctx[0]) == 0 && px_cuda_backend_device(ctx[1]) == dev2);
  CHECK(ctx[0]->device_memory && ctx[1]->device_memory && !px_cpu_backend()->device_memory);
  CHECK(px_cuda_backend_view(ctx[1], PX_PRECISION_TF32) != ctx[1]);
  CHECK(px_cuda_backend_view(px_cuda_backend_view(ctx[1], PX_PRECISION_TF32), PX_PRECISION_FP32) == ctx[1]);
  CHECK(ctx[1]->at_precision(ctx[1], PX_PRECISION_FP16) == px_cuda_backend_view(ctx[1], PX_PRECISION_FP16));
  for (int k = 0; k < 2; k++)
    CHECK_MSG(px_model_to_device(m[k], ctx[k], PX_PRECISION_FP32) == PX_OK, "prepare %d: %s", k,
              px_last_error());

  /* Interleaved: context 0, context 1, then context 0 again (its state untouched by 1's). */
  for (int round = 0; round < 2; round++) {
    for (int k = 0; k < 2; k++) {
      tu_poison(got[k], nx);
      if (run(m[k], &sd.f, x, t, got[k])) continue;
      const double e = tu_rel_err_ff(got[k], want, nx);
      CHECK_MSG(e <= 1e-4, "round %d context %d (cuda:%d) vs CPU: rel err %.3g", round, k,
                px_cuda_backend_device(ctx[k]), e);
    }
    if (dev2 == 0)
      CHECK_MSG(memcmp(got[0], got[1], sizeof(float) * nx) == 0,
                "round %d: two contexts on one device differ", round);
    else
      CHECK_MSG(tu_rel_err_ff(got[1], got[0], nx) <= 1e-6, "round %d: cuda:0 and cuda:1 differ", round);
  }

  check_design_cache(cpu_m, m[0], &sd.f);
  check_design_cache(cpu_m, m[1], &sd.f);

  /* TF32: the tensor-core attention and the cuBLASLt plans, whose launch limits and plans
   * each context keeps for its own device (a second device's kernels configured by the
   * first's context would fail to launch there). */
  for (int k = 0; k < 2; k++)
    CHECK_MSG(px_model_to_device(m[k], ctx[k], PX_PRECISION_TF32) == PX_OK, "prepare %d at tf32: %s", k,
              px_last_error());
  /* The cache is built in exact fp32 whatever the model's precision. */
  check_design_cache(cpu_m, m[0], &sd.f);
  for (int round = 0; round < 2; round++) {
    for (int k = 0; k < 2; k++) {
      tu_poison(got[k], nx);
      if (run(m[k], &sd.f, x, t, got[k])) continue;
      const double e = tu_rel_err_ff(got[k], want, nx);
      CHECK_MSG(e <= 2e-2, "tf32 round %d context %d (cuda:%d) vs CPU: rel err %.3g", round, k,
                px_cuda_backend_device(ctx[k]), e);
    }
    if (dev2 == 0)
      CHECK_MSG(memcmp(got[0], got[1], sizeof(float) * nx) == 0,
                "tf32 round %d: two contexts on one device differ", round);
    else
      CHECK_MSG(tu_rel_err_ff(got[1], got[0], nx) <= 1e-6, "tf32 round %d: cuda:0 and cuda:1 differ", round);
  }

  /* FP16 (issue 13): the token blocks, and the atom blocks admitted by their range bounds, on
   * fp16 operands (the synthetic weights admit every block); then the same with the atom blocks
   * kept TF32 by PXDIFF_NO_X16_ATOMS (read when the model is prepared). fp16 atom activations
   * must not cost more than a little accuracy against the CPU's fp32: within the per-call bound
   * of 2e-3, or within 1.5x of the TF32 atom blocks' error where that is already larger (the
   * synthetic weights are not the checkpoint's). */
  {
    const int n_atom_blocks = D.n_enc_blocks + D.n_dec_blocks;
    double err[2] = {-1, -1};
    for (int off = 0; off < 2; off++) {
      px_model_release_device(m[0]);
      if (off) setenv("PXDIFF_NO_X16_ATOMS", "1", 1);
      const int rc = px_model_to_device(m[0], ctx[0], PX_PRECISION_FP16);
      unsetenv("PXDIFF_NO_X16_ATOMS");
      CHECK_MSG(rc == PX_OK, "prepare at fp16 (atoms %s): %s", off ? "off" : "on", px_last_error());
      if (rc) continue;
      CHECK_MSG(px_model_x16_blocks(m[0]) == D.n_token_blocks, "fp16 token blocks %d of %d", px_model_x16_blocks(m[0]),
                D.n_token_blocks);
      CHECK_MSG(px_model_x16_atom_blocks(m[0]) == (off ? 0 : n_atom_blocks), "fp16 atom blocks %d (atoms %s, of %d)",
                px_model_x16_atom_blocks(m[0]), off ? "off" : "on", n_atom_blocks);
      err[off] = worst_of_two(m[0], &sd.f, x, t, got[0], want, nx, off ? "fp16, atom blocks TF32" : "fp16, atom blocks fp16");
    }
    CHECK_MSG(err[0] >= 0 && err[1] >= 0, "fp16 calls failed");
    CHECK_MSG(err[0] <= 2e-3 || err[0] <= 1.5 * err[1],
              "fp16 atom blocks: rel err %.3g vs CPU fp32 (TF32 atom blocks: %.3g; bound 2e-3)", err[0], err[1]);
  }

  /* FP16's residual updates (the output projections' and transitions' GEMM outputs) in fp16
   * where fp16_range.c bounds them (the synthetic weights: every one), against the model
   * prepared with PXDIFF_NO_X16_UPDATE=1 (fp32 updates): both within the per-call bound, and
   * different bits. */
  {
    const int n_blocks = D.n_token_blocks + D.n_enc_blocks + D.n_dec_blocks;
    double err[2] = {-1, -1};
    float *res[2] = {got[0], got[1]};
    for (int off = 0; off < 2; off++) {
      px_model_release_device(m[0]);
      if (off) setenv("PXDIFF_NO_X16_UPDATE", "1", 1);
      const int rc = px_model_to_device(m[0], ctx[0], PX_PRECISION_FP16);
      unsetenv("PXDIFF_NO_X16_UPDATE");
      CHECK_MSG(rc == PX_OK, "prepare at fp16 (updates %s): %s", off ? "fp32" : "fp16", px_last_error());
      if (rc) continue;
      CHECK_MSG(px_model_device_x16_updates(m[0]) == (off ? 0 : 2 * n_blocks), "fp16 updates %d (of %d, %s)",
                px_model_device_x16_updates(m[0]), 2 * n_blocks, off ? "off" : "on");
      err[off] = worst_of_two(m[0], &sd.f, x, t, res[off], want, nx, off ? "fp16, updates fp32" : "fp16, updates fp16");
    }
    CHECK_MSG(err[0] >= 0 && err[1] >= 0, "fp16 calls failed");
    CHECK_MSG(err[0] <= 2e-3 || err[0] <= 1.5 * err[1],
              "fp16 updates: rel err %.3g vs CPU fp32 (fp32 updates: %.3g; bound 2e-3)", err[0], err[1]);
    CHECK_MSG(memcmp(res[0], res[1], sizeof(float) * nx) != 0,
              "PXDIFF_NO_X16_UPDATE changed nothing: the fp16 updates were not taken");
  }

  /* FP16's [q k v g] projections written in fp16 and read by attention_full_h16 and
   * attention_local_h16 (the default), against a context made with PXDIFF_NO_X16_QKV=1 (read
   * when a context is made: fp32 projections and the fp32-input attentions in token and atom
   * blocks) and one made with PXDIFF_NO_X16_ATOM_QKV=1 (the atom blocks' alone). Each within
   * the per-call bound of the CPU's fp32 (or within 1.5x of the other's error where that is
   * larger), and not the same bits: the default context really takes each fp16-input path. */
  static const char *const qkv_envs[2] = {"PXDIFF_NO_X16_QKV", "PXDIFF_NO_X16_ATOM_QKV"};
  for (int v = 0; v < 2; v++) {
    px_backend *plain = fp16_pair_with(qkv_envs[v], ctx[0], m[0], m[1]);
    if (plain) {
      const px_backend *def16 = px_cuda_backend_view(ctx[0], PX_PRECISION_FP16);
      const px_backend *plain16 = px_cuda_backend_view(plain, PX_PRECISION_FP16);
      CHECK(def16->attention_full_h16 != NULL && def16->attention_local_h16 != NULL);
      CHECK(v == 0 ? plain16->attention_full_h16 == NULL : plain16->attention_full_h16 != NULL);
      CHECK(plain16->attention_local_h16 == NULL);
      CHECK(px_cuda_backend_view(ctx[0], PX_PRECISION_TF32)->attention_full_h16 == NULL);
      CHECK(px_cuda_backend_view(ctx[0], PX_PRECISION_TF32)->attention_local_h16 == NULL);
      double err[2] = {-1, -1};
      for (int k = 0; k < 2; k++) {
        char label[64];
        snprintf(label, sizeof label, "fp16, %s %s", v == 0 ? "[q k v g]" : "atom [q g] [k v]", k ? "off" : "on");
        err[k] = worst_of_two(m[k], &sd.f, x, t, got[k], want, nx, label);
      }
      CHECK_MSG(err[0] >= 0 && err[1] >= 0, "fp16 calls failed");
      CHECK_MSG(err[0] <= 2e-3 || err[0] <= 1.5 * err[1],
                "fp16 projections: rel err %.3g vs CPU fp32 (with %s: %.3g; bound 2e-3)", err[0], qkv_envs[v], err[1]);
      CHECK_MSG(memcmp(got[0], got[1], sizeof(float) * nx) != 0,
                "%s changed nothing: the default context did not take the fp16-input attention", qkv_envs[v]);
      end_with(plain, m[1]);
    }
  }

  /* The token blocks' pair biases read from the design cache's fp16 copy (the default at
   * FP16), against a context made with PXDIFF_NO_BIAS16=1 (no copy: the fp32 biases): both
   * within the per-call bound of the CPU's fp32 (or 1.5x the other's error where that is
   * larger), and different bits (the copy was made and read). */
  {
    px_backend *nob = fp16_pair_with("PXDIFF_NO_BIAS16", ctx[0], m[0], m[1]);
    if (nob) {
      CHECK(px_cuda_backend_view(nob, PX_PRECISION_FP16)->convert_rows == NULL);
      CHECK(px_cuda_backend_view(ctx[0], PX_PRECISION_FP16)->convert_rows != NULL);
      double err[2] = {-1, -1};
      for (int k = 0; k < 2; k++)
        err[k] = worst_of_two(m[k], &sd.f, x, t, got[k], want, nx,
                              k ? "fp16, fp32 pair biases" : "fp16, fp16 pair biases");
      CHECK_MSG(err[0] >= 0 && err[1] >= 0, "fp16 calls failed");
      CHECK_MSG(err[0] <= 2e-3 || err[0] <= 1.5 * err[1],
                "fp16 pair biases: rel err %.3g vs CPU fp32 (fp32 biases: %.3g; bound 2e-3)", err[0], err[1]);
      CHECK_MSG(memcmp(got[0], got[1], sizeof(float) * nx) != 0,
                "PXDIFF_NO_BIAS16 changed nothing: the fp16 pair biases were not read");
      end_with(nob, m[1]);
    }
  }

  /* Programmatic dependent launch (src/cuda/launch.cuh): a context made with PXDIFF_PDL=1
   * launches each kernel while the one before it drains; every kernel waits for its
   * predecessor before touching memory, so the results are the same bits as the plain
   * launches', call after call (graph capture and replay included). A kernel that read before
   * its wait would race and differ here from one call to the next. */
  {
    px_backend *pdl = fp16_pair_with("PXDIFF_PDL", ctx[0], m[0], m[1]);
    if (pdl) {
      for (int call = 0; call < 6; call++) {
        tu_poison(got[0], nx);
        tu_poison(got[1], nx);
        if (run(m[0], &sd.f, x, t, got[0]) || run(m[1], &sd.f, x, t, got[1])) break;
        CHECK_MSG(memcmp(got[0], got[1], sizeof(float) * nx) == 0, "call %d: PXDIFF_PDL=1 changed the result", call);
        const double e = tu_rel_err_ff(got[1], want, nx);
        CHECK_MSG(e <= 2e-3, "call %d with PXDIFF_PDL=1: rel err %.3g vs CPU fp32", call, e);
      }
      end_with(pdl, m[1]);
    }
  }

  /* Releasing the models and destroying the contexts returns every byte. */
  for (int k = 0; k < 2; k++) px_model_free(m[k]);
  for (int k = 0; k < 2; k++) px_cuda_backend_destroy(ctx[k]);
  CHECK_MSG(px_cuda_memory_in_use() == base, "device memory %lld bytes after, %lld before",
            (long long)px_cuda_memory_in_use(), (long long)base);

  px_model_free(cpu_m);
  px_synthetic_free(&sd);
  free(x);
  free(want);
  free(got[0]);
  free(got[1]);
  return tu_finish("test_cuda_contexts");
}
#endif
