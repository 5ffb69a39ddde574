/* pxdiff command-line tool: the command table and the small commands (info, convert,
 * bench). sample / demo: cmd_sample.c; bundle-info: cmd_bundle.c. Every command parses
 * its options with options.h (so every one answers --help), and every failure prints one
 * line "pxdiff: <what>" on stderr and exits nonzero (2 for usage errors). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench_task.h"
#include "cli/design_run.h"
#include "cli/campaign.h"
#include "cli/cmd_design.h"
#include "cli/cmd_sample.h"
#include "cli/options.h"
#include "platform.h"
#include "pxdiff.h"
#include "pxdiff_synthetic.h"

int cmd_bundle_info(int argc, char **argv); /* cmd_bundle.c */

static int cmd_info(int argc, char **argv) {
  const char *ckpt = NULL;
  const cli_opt opts[] = {
      {.name = "--checkpoint", .kind = CLI_PATH, .dst = &ckpt, .meta = "CKPT",
       .help = "also load this checkpoint and print its dimensions"},
  };
  const cli_command c = {.name = "info", .args = "[--checkpoint CKPT]",
                         .summary = "Version, compiled backends, devices, BLAS; a checkpoint's dimensions.",
                         .opts = opts, .n_opts = 1};
  int st = cli_parse(&c, argc, argv, NULL, NULL);
  if (st != CLI_RUN) return st;
  /* Load first: a bad checkpoint gives its one-line error and nothing else. */
  px_model *m = NULL;
  double t0 = px_time_now();
  if (ckpt && px_model_load(ckpt, &m)) return cli_fail(px_last_error());
  const double t_load = px_time_now() - t0;
  printf("pxdiff %s\n", PXDIFF_VERSION);
  /* what the library was built with, as its backend registry says (the CLI knows no backend) */
  printf("backends: cpu%s\n", px_device_built(PX_DEVICE_CUDA) ? ", cuda" : "");
  printf("devices: cpu (%d logical cores)", px_cpu_count());
  for (int i = 0; i < px_cuda_device_count(); i++) printf(", cuda:%d", i);
  printf("\n");
  printf("blas: %s\n", px_blas_name());
  printf("cpu precisions: fp32; bf16: %s\n", px_cpu_bf16_name());
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
  const char *pos[2];
  int n_pos = 0, overwrite = 0;
  const cli_opt opts[] = {
      {.name = "--overwrite", .kind = CLI_FLAG, .dst = &overwrite, .help = "replace OUT when it exists"},
  };
  const cli_command c = {.name = "convert", .args = "IN.pt OUT.safetensors [--overwrite]",
                         .summary = "Rewrite a checkpoint's diffusion module as float32 safetensors (the "
                                    "tensors the engine keeps; loads faster than the .pt). OUT is written "
                                    "atomically and an existing OUT is kept unless --overwrite.",
                         .opts = opts, .n_opts = 1, .pos_name = "IN and OUT paths", .min_pos = 2, .max_pos = 2};
  int st = cli_parse(&c, argc, argv, pos, &n_pos);
  if (st != CLI_RUN) return st;
  /* Swapped arguments (`convert model.safetensors model.pt`) must not replace a finished
   * file: an existing OUT is refused unless asked for. */
  FILE *f = overwrite ? NULL : fopen(pos[1], "rb");
  if (f) {
    fclose(f);
    fprintf(stderr, "pxdiff: convert: %s exists; pass --overwrite to replace it, or choose another OUT\n", pos[1]);
    return 1;
  }
  double t0 = px_time_now();
  if (px_convert_to_safetensors(pos[0], pos[1])) return cli_fail(px_last_error());
  fprintf(stderr, "pxdiff: wrote %s (%.1f s)\n", pos[1], px_time_now() - t0);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static const char *const bench_dtype_names[] = {"bf16", "fp32", NULL};
static const int bench_dtype_values[] = {DESIGN_DTYPE_BF16, DESIGN_DTYPE_FP32};

static int cmd_bench(int argc, char **argv) {
  const char *ckpt = NULL, *task = NULL;
  int dtype = DESIGN_DTYPE_BF16;
  long tokens = 80, binder = -1, atoms = -1, samples = 2, reps = 5, threads = 0, steps = 400, sampler_steps = 0;
  px_device_ref device = {PX_DEVICE_AUTO, 0};
  int precision = PX_PRECISION_DEFAULT;
  const cli_opt opts[] = {
      {.name = "--checkpoint", .kind = CLI_PATH, .dst = &ckpt, .meta = "CKPT",
       .help = "weights to time (default: synthetic weights of the released shapes)"},
      {.name = "--tokens", .kind = CLI_INT, .dst = &tokens, .meta = "T", .def = "80", .lo = 1, .hi = 1 << 20,
       .help = "tokens of the synthetic design"},
      {.name = "--binder", .kind = CLI_INT, .dst = &binder, .meta = "B", .lo = 0, .hi = 1 << 20,
       .help = "designed tokens among them (default: a quarter of --tokens)"},
      {.name = "--atoms", .kind = CLI_INT, .dst = &atoms, .meta = "N", .lo = 1, .hi = 1 << 20,
       .help = "atoms (default: 7 per token)"},
      {.name = "--samples", .kind = CLI_INT, .dst = &samples, .meta = "S", .def = "2", .lo = 1, .hi = 4096,
       .help = "samples per call"},
      {.name = "--reps", .kind = CLI_INT, .dst = &reps, .meta = "R", .def = "5", .lo = 1, .hi = 100000,
       .help = "timed calls (after one warm-up call)"},
      {.name = "--threads", .kind = CLI_INT, .dst = &threads, .meta = "K", .def = "0", .lo = 0, .hi = 4096,
       .help = "CPU threads (0: the library's default)"},
      {.name = "--steps", .kind = CLI_INT, .dst = &steps, .meta = "K", .def = "400", .lo = 1, .hi = 1 << 20,
       .help = "steps for the per-design estimate"},
      {.name = "--device", .kind = CLI_DEVICE, .dst = &device, .def = "auto", .help = "auto: cuda when usable, else cpu; cuda:N: GPU N"},
      {.name = "--precision", .kind = CLI_ENUM, .dst = &precision, .def = "default",
       .enum_names = cli_precision_names, .enum_values = cli_precision_values,
       .help = "GEMM precision (CUDA: default fp16; CPU: default fp32, bf16 where it has AVX512_BF16)"},
      {.name = "--sampler-steps", .kind = CLI_INT, .dst = &sampler_steps, .meta = "K", .def = "0", .lo = 0,
       .hi = 100000, .help = "also time K steps of the whole sampler"},
      {.name = "--task", .kind = CLI_PATH, .dst = &task, .meta = "FILE",
       .help = "instead: time parse, featurize, condition embedding and design cache of this task file's first task"},
      {.name = "--dtype", .kind = CLI_ENUM, .dst = &dtype, .meta = "bf16|fp32", .def = "bf16",
       .enum_names = bench_dtype_names, .enum_values = bench_dtype_values,
       .help = "with --task: s_inputs as `pxdiff design --dtype`"},
  };
  const cli_command c = {.name = "bench", .args = "[options]",
                         .summary = "Time one denoise call on synthetic inputs (synthetic weights unless a\n"
                                    "checkpoint is given); with --sampler-steps, the whole sampler too.",
                         .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0])};
  int st = cli_parse(&c, argc, argv, NULL, NULL);
  if (st != CLI_RUN) return st;
  if (binder < 0) binder = tokens / 4;
  if (binder >= tokens) return cli_usage_error(&c, "--binder must be smaller than --tokens");
  if (atoms < 0) atoms = 7 * tokens;
  if (atoms < tokens) return cli_usage_error(&c, "--atoms must be at least --tokens");
  if (threads) px_set_num_threads((int)threads);
  if (task) return bench_task(task, ckpt, device, precision, (int)reps, dtype);

  px_model *m = NULL;
  double t0 = px_time_now();
  if (ckpt) {
    if (px_model_load(ckpt, &m)) return cli_fail(px_last_error());
  } else {
    px_dims D;
    px_dims_released(&D);
    if (px_model_synthetic(&D, 1, &m)) return cli_fail(px_last_error());
  }
  if (px_model_set_device(m, device.kind, device.index, 0, precision)) {
    px_model_free(m);
    return cli_fail(px_last_error());
  }
  double t_load = px_time_now() - t0;
  px_dims D;
  px_model_get_dims(m, &D);
  px_synthetic_design sd;
  if (px_synthetic_design_make(&D, (int)(tokens - binder), (int)binder, (int)atoms, 7, &sd)) {
    px_model_free(m);
    return cli_fail(px_last_error());
  }
  px_design *d = NULL;
  t0 = px_time_now();
  if (px_design_create(m, &sd.f, &d)) {
    px_synthetic_free(&sd);
    px_model_free(m);
    return cli_fail(px_last_error());
  }
  double t_design = px_time_now() - t0;
  const size_t n3 = (size_t)atoms * 3 * (size_t)samples;
  float *x = malloc(sizeof(float) * n3), *y = malloc(sizeof(float) * n3);
  float *t = malloc(sizeof(float) * (size_t)samples);
  double *times = malloc(sizeof(double) * (size_t)reps);
  int rc = 0;
  if (!x || !y || !t || !times) {
    rc = cli_fail("out of memory");
    goto done;
  }
  px_rng_normal(3, 0, 0, PX_RNG_INIT, x, (int64_t)n3);
  for (size_t i = 0; i < n3; i++) x[i] *= 20.0f;
  for (long s = 0; s < samples; s++) t[s] = 12.5f;
  if (px_denoise(m, d, (int)samples, x, t, y)) { /* warm-up: workspace, BLAS buffers */
    rc = cli_fail(px_last_error());
    goto done;
  }
  for (long r = 0; r < reps; r++) {
    double a = px_time_now();
    if (px_denoise(m, d, (int)samples, x, t, y)) {
      rc = cli_fail(px_last_error());
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
      rc = cli_fail(px_last_error());
      goto done;
    }
    c.n_step = (int)sampler_steps;
    double a = px_time_now();
    if (px_sample(m, d, &c, 0, (int)samples, (int)samples, y, NULL, NULL)) {
      rc = cli_fail(px_last_error());
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

/* The commands. `pxdiff CMD --help` prints each one's options (from its option table). */
static const struct {
  const char *name, *line;
  int (*run)(int argc, char **argv);
} commands[] = {
    {"info", "version, compiled backends, devices, BLAS; a checkpoint's dimensions", cmd_info},
    {"design", "design binders for a target: PXDesign's `pxdesign infer` (task + structure in)", cmd_design},
    {"featurize", "one task's features and condition embedding as a feature bundle", cmd_featurize},
    {"status", "what a `pxdiff design` run (every shard) has done, is doing and still misses", cmd_status},
    {"sample", "sample designs for a feature bundle: one mmCIF per sample + summary.json", cmd_sample},
    {"demo", "PXDesign's quick-start target designed with SYNTHETIC weights (no downloads)", cmd_design_demo},
    {"bundle-info", "validate a feature bundle (docs/bundle.md) and summarize it", cmd_bundle_info},
    {"convert", "rewrite a checkpoint's diffusion module as float32 safetensors", cmd_convert},
    {"bench", "time one denoise call (and the sampler) on synthetic inputs", cmd_bench},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static int usage(FILE *o) {
  fprintf(o, "usage: pxdiff <command> [options]\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++) fprintf(o, "  %-13s %s\n", commands[i].name, commands[i].line);
  fprintf(o, "  %-13s %s\n", "help", "this text; `pxdiff help CMD` = `pxdiff CMD --help`");
  fprintf(o, "  %-13s %s\n", "version", "the version");
  fprintf(o, "Every command answers --help with its options and defaults.\n");
  return o == stderr ? 2 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(stderr);
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    if (argc > 2) { /* pxdiff help CMD */
      for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[2], commands[i].name)) continue;
        char *h[] = {"--help", NULL};
        return commands[i].run(1, h);
      }
      fprintf(stderr, "pxdiff: unknown command '%s'; see `pxdiff help`\n", argv[2]);
      return 2;
    }
    return usage(stdout);
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("pxdiff %s\n", PXDIFF_VERSION);
    return 0;
  }
  for (int i = 0; i < N_COMMANDS; i++)
    if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 2, argv + 2);
  fprintf(stderr, "pxdiff: unknown command '%s'; see `pxdiff help`\n", cmd);
  return 2;
}
