/* pxdiff command-line tool.
 *
 *   pxdiff info                          version, backends, BLAS, threads
 *   pxdiff convert IN.pt OUT.safetensors the diffusion module's tensors as float32 safetensors
 *   pxdiff bench [options]               time one denoise call on synthetic inputs
 *   pxdiff sample / demo [options]       sampling to mmCIF/PDB + summary.json (cmd_sample.c)
 *
 * Every failure prints one line "pxdiff: <what>" on stderr and exits nonzero. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_sample.h"
#include "platform.h"
#include "pxdiff.h"
#include "pxdiff_synthetic.h"

int cmd_bundle_info(int argc, char **argv); /* cmd_bundle.c */

static int usage(FILE *o) {
  fprintf(o,
          "usage: pxdiff <command> [options]\n"
          "commands:\n"
          "  info [--checkpoint CKPT]          version, compiled backends, BLAS; a checkpoint's dims\n"
          "  convert IN OUT.safetensors        rewrite a checkpoint's diffusion module as safetensors\n"
          "  bench [--checkpoint CKPT] [--tokens T] [--binder B] [--atoms N] [--samples S]\n"
          "        [--reps R] [--threads K] [--steps K] [--device auto|cpu|cuda]\n"
          "        [--precision fp32|tf32|bf16|fp16] [--sampler-steps K]\n"
          "                                    time one denoise call (synthetic weights unless\n"
          "                                    a checkpoint is given; synthetic inputs); with\n"
          "                                    --sampler-steps, also K steps of the whole sampler\n"
          "  bundle-info FILE [--checkpoint CKPT]\n"
          "                                    validate a feature bundle (docs/bundle.md), summarize it\n"
          );
  cmd_sample_usage(o);
  fprintf(o, "  help                              this text\n");
  return o == stderr ? 2 : 0;
}

static int die(const char *what) {
  fprintf(stderr, "pxdiff: %s\n", what);
  return 1;
}

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out) {
  if (!v) {
    fprintf(stderr, "pxdiff: %s needs a value\n", flag);
    return -1;
  }
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || end == v || x < lo || x > hi) {
    fprintf(stderr, "pxdiff: %s: '%s' is not an integer in [%ld, %ld]\n", flag, v, lo, hi);
    return -1;
  }
  *out = x;
  return 0;
}

static int cmd_info(int argc, char **argv) {
  const char *ckpt = NULL;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) {
      ckpt = argv[++i];
    } else {
      fprintf(stderr, "pxdiff: info: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  /* Load first: a bad checkpoint gives its one-line error and nothing else. */
  px_model *m = NULL;
  double t0 = px_time_now();
  if (ckpt && px_model_load(ckpt, &m)) return die(px_last_error());
  const double t_load = px_time_now() - t0;
  printf("pxdiff %s\n", PXDIFF_VERSION);
#ifdef PX_HAVE_CUDA
  printf("backends: cpu, cuda\n");
#else
  printf("backends: cpu\n");
#endif
  printf("devices: cpu (%d logical cores)", px_cpu_count());
  for (int i = 0; i < px_cuda_device_count(); i++) printf(", cuda:%d", i);
  printf("\n");
  printf("blas: %s\n", px_blas_name());
  if (ckpt) {
    px_dims D;
    px_model_get_dims(m, &D);
    printf("checkpoint: %s (loaded in %.2f s)\n", ckpt, t_load);
    printf("  parameters kept: %lld (%.1f MB float32)\n", (long long)px_model_n_params(m),
           (double)px_model_n_params(m) * 4.0 / 1048576.0);
    printf("  c_token %d, c_s %d, c_z %d, c_s_inputs %d, c_atom %d, c_atompair %d, fourier %d\n",
           D.c_token, D.c_s, D.c_z, D.c_s_inputs, D.c_atom, D.c_atompair, D.n_fourier);
    printf("  token transformer: %d blocks x %d heads; atom encoder %d x %d; decoder %d x %d\n",
           D.n_token_blocks, D.n_token_heads, D.n_enc_blocks, D.n_enc_heads, D.n_dec_blocks,
           D.n_dec_heads);
    px_model_free(m);
  }
  return 0;
}

static int cmd_convert(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "pxdiff: convert needs IN and OUT paths\n");
    return 2;
  }
  double t0 = px_time_now();
  if (px_convert_to_safetensors(argv[0], argv[1])) return die(px_last_error());
  fprintf(stderr, "pxdiff: wrote %s (%.1f s)\n", argv[1], px_time_now() - t0);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int cmd_bench(int argc, char **argv) {
  const char *ckpt = NULL;
  long tokens = 80, binder = -1, atoms = -1, samples = 2, reps = 5, threads = 0, steps = 400, sampler_steps = 0;
  int device = PX_DEVICE_AUTO, precision = PX_PRECISION_DEFAULT;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long *dst = NULL;
    long lo = 1, hi = 1 << 20;
    if (!strcmp(a, "--checkpoint")) {
      if (!v) return die("--checkpoint needs a path");
      ckpt = v;
      i++;
      continue;
    } else if (!strcmp(a, "--device")) {
      if ((device = px_device_from_name(v)) < 0) return die("--device must be auto, cpu or cuda");
      i++;
      continue;
    } else if (!strcmp(a, "--precision")) {
      if ((precision = px_precision_from_name(v)) < -1) return die("--precision must be fp32, tf32, bf16, fp16 or default");
      i++;
      continue;
    } else if (!strcmp(a, "--tokens")) dst = &tokens;
    else if (!strcmp(a, "--binder")) { dst = &binder; lo = 0; }
    else if (!strcmp(a, "--atoms")) dst = &atoms;
    else if (!strcmp(a, "--samples")) { dst = &samples; hi = 4096; }
    else if (!strcmp(a, "--reps")) { dst = &reps; hi = 100000; }
    else if (!strcmp(a, "--threads")) { dst = &threads; lo = 0; hi = 4096; }
    else if (!strcmp(a, "--steps")) dst = &steps;
    else if (!strcmp(a, "--sampler-steps")) { dst = &sampler_steps; lo = 0; hi = 100000; }
    else {
      fprintf(stderr, "pxdiff: bench: unknown option '%s'\n", a);
      return 2;
    }
    if (parse_int(a, v, lo, hi, dst)) return 2;
    i++;
  }
  if (binder < 0) binder = tokens / 4;
  if (binder >= tokens) return die("bench: --binder must be smaller than --tokens");
  if (atoms < 0) atoms = 7 * tokens;
  if (atoms < tokens) return die("bench: --atoms must be at least --tokens");
  if (threads) px_set_num_threads((int)threads);

  px_model *m = NULL;
  double t0 = px_time_now();
  if (ckpt) {
    if (px_model_load(ckpt, &m)) return die(px_last_error());
  } else {
    px_dims D;
    px_dims_released(&D);
    if (px_model_synthetic(&D, 1, &m)) return die(px_last_error());
  }
  if (px_model_set_backend(m, device, precision)) {
    px_model_free(m);
    return die(px_last_error());
  }
  double t_load = px_time_now() - t0;
  px_dims D;
  px_model_get_dims(m, &D);
  px_synthetic_design sd;
  if (px_synthetic_design_make(&D, (int)(tokens - binder), (int)binder, (int)atoms, 7, &sd)) {
    px_model_free(m);
    return die(px_last_error());
  }
  px_design *d = NULL;
  t0 = px_time_now();
  if (px_design_create(m, &sd.f, &d)) {
    px_synthetic_free(&sd);
    px_model_free(m);
    return die(px_last_error());
  }
  double t_design = px_time_now() - t0;
  const size_t n3 = (size_t)atoms * 3 * (size_t)samples;
  float *x = malloc(sizeof(float) * n3), *y = malloc(sizeof(float) * n3);
  float *t = malloc(sizeof(float) * (size_t)samples);
  double *times = malloc(sizeof(double) * (size_t)reps);
  int rc = 0;
  if (!x || !y || !t || !times) {
    rc = die("out of memory");
    goto done;
  }
  px_rng_normal(3, 0, 0, PX_RNG_INIT, x, (int64_t)n3);
  for (size_t i = 0; i < n3; i++) x[i] *= 20.0f;
  for (long s = 0; s < samples; s++) t[s] = 12.5f;
  if (px_denoise(m, d, (int)samples, x, t, y)) { /* warm-up: workspace, BLAS buffers */
    rc = die(px_last_error());
    goto done;
  }
  for (long r = 0; r < reps; r++) {
    double a = px_time_now();
    if (px_denoise(m, d, (int)samples, x, t, y)) {
      rc = die(px_last_error());
      goto done;
    }
    times[r] = px_time_now() - a;
  }
  qsort(times, (size_t)reps, sizeof(double), cmp_double);
  double med = times[reps / 2];
  printf("pxdiff bench: %s weights, %ld tokens (%ld binder), %ld atoms, %ld samples, backend %s (%s)%s%s\n",
         ckpt ? "checkpoint" : "synthetic", tokens, binder, atoms, samples, px_model_backend_name(m),
         cmd_precision_label(m), px_cuda_device_count() ? "" : ", ",
         px_cuda_device_count() ? "" : px_blas_name());
  printf("  load %.2f s, design cache %.3f s (%.1f MB)\n", t_load, t_design,
         (double)px_design_bytes(d) / 1048576.0);
  printf("  denoise call: median %.2f ms (min %.2f, max %.2f, %ld reps)\n", med * 1e3, times[0] * 1e3,
         times[reps - 1] * 1e3, reps);
  printf("  per design at %ld steps: %.3f s\n", steps, med * (double)steps / (double)samples);
  if (sampler_steps > 0) {
    /* The whole sampler (noise, augmentation, denoise, Euler step; on the GPU without
     * leaving the device), after a 2-step warm-up that also captures the call's graph. */
    px_sampler_config c;
    px_sampler_config_default(&c);
    c.n_step = 2;
    c.seed = 11;
    if (px_sample(m, d, &c, 0, (int)samples, (int)samples, y, NULL, NULL)) {
      rc = die(px_last_error());
      goto done;
    }
    c.n_step = (int)sampler_steps;
    double a = px_time_now();
    if (px_sample(m, d, &c, 0, (int)samples, (int)samples, y, NULL, NULL)) {
      rc = die(px_last_error());
      goto done;
    }
    const double per_step = (px_time_now() - a) / (double)sampler_steps;
    printf("  sampler: %ld steps, %.2f ms per step, %.3f s per design at %ld steps\n", sampler_steps,
           per_step * 1e3, per_step * (double)steps / (double)samples, steps);
  }
done:
  free(x);
  free(y);
  free(t);
  free(times);
  px_design_free(d);
  px_synthetic_free(&sd);
  px_model_free(m);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(stderr);
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) return usage(stdout);
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("pxdiff %s\n", PXDIFF_VERSION);
    return 0;
  }
  if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
  if (!strcmp(cmd, "convert")) return cmd_convert(argc - 2, argv + 2);
  if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
  if (!strcmp(cmd, "sample")) return cmd_sample(argc - 2, argv + 2);
  if (!strcmp(cmd, "demo")) return cmd_demo(argc - 2, argv + 2);
  if (!strcmp(cmd, "bundle-info")) return cmd_bundle_info(argc - 2, argv + 2);
  fprintf(stderr, "pxdiff: unknown command '%s' (try 'pxdiff help')\n", cmd);
  return 2;
}
