/* `pxdiff design`: PXDesign's `pxdesign infer`, in C. A task file (PXDesign's YAML or JSON task
 * list) and the target structures it names in, designed binder backbones out, in PXDesign's
 * output tree (docs/design.md):
 *
 *   DUMP/config.yaml, DUMP/<stem>.json (YAML input), DUMP/input_tasks.json, DUMP/ERR/
 *   DUMP/<task>/seed_<s>/predictions/<task>_sample_<i>.cif     atomic; last line "# pxdiff-complete run=<id>"
 *   DUMP/<task>/seed_<s>/summary.json                          pxdiff's record of the run
 *   DUMP/<task>/seed_<s>/SUCCESS_FILE                          {"prediction": true}, written last
 *
 * Each (task, seed) directory follows the run-output protocol (run_output.h): nothing is
 * created before every input is checked, runs are never mixed silently (--resume completes
 * one, --overwrite replaces it), and SUCCESS_FILE exists only beside a complete set of samples.
 * `pxdiff demo` runs the same path on the built-in PD-L1 task with SYNTHETIC weights.
 * Here: the chunk and the command; the tree is design_tree.c, the workers and the run loop
 * design_workers.c. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/campaign.h"
#include "cli/cmd_design.h"
#include "cli/cmd_sample.h"
#include "cli/design_opts.h"
#include "cli/design_run.h"
#include "cli/design_tree.h"
#include "cli/design_workers.h"
#include "cli/options.h"
#include "error.h"
#include "platform.h"

extern const unsigned char px_demo_task_yaml[], px_demo_target_cif[];
extern const size_t px_demo_task_yaml_len, px_demo_target_cif_len;

/* ---------------------------------------------------------------- chunk -- */

/* Contexts added on one GPU when a case has too few samples to fill it. */
#define CHUNK_MAX_AUTO_CONTEXTS 4

/* The chunk an earlier run in DUMP_DIR recorded (config.yaml's diffusion_chunk_size), or 0. */
static long recorded_chunk(const char *dump_dir) {
  char *p = px_path_join(dump_dir, "config.yaml");
  FILE *f = p ? fopen(p, "r") : NULL;
  free(p);
  if (!f) return 0;
  char line[512];
  long v = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "diffusion_chunk_size: %ld", &v) == 1) break;
  fclose(f);
  return v > 0 && v <= 4096 ? v : 0;
}

/* o->chunk, unless --chunk was given: on --resume the chunk the run recorded; on a GPU
 * (unsharded) the largest that fills the card, bounded by its free memory shared among the
 * contexts on it and by N_sample; else 10 (on the CPU the chunk changes no design; shards
 * must agree on it). When a case's samples cannot fill the card, up to
 * CHUNK_MAX_AUTO_CONTEXTS contexts on the one GPU compute several cases' units at once
 * (o->dev grows). eng: a model on the run's device. note: how the chunk came about. */
static int choose_chunk(design_opts *o, const design_job *J, const px_model *eng, char *note, size_t cap) {
  snprintf(note, cap, "%s", o->chunk_given ? "given" : "the default");
  if (o->chunk_given) return PX_OK;
  if (o->resume) {
    const long r = recorded_chunk(o->dump_dir);
    if (r > 0) {
      o->chunk = r;
      snprintf(note, cap, "as the run recorded it in config.yaml");
      return PX_OK;
    }
  }
  const char *b = px_model_backend_name(eng);
  if (strncmp(b, "cuda", 4)) return PX_OK;
  if (o->shard.n > 1) {
    snprintf(note, cap, "the default: shards must agree on it, give --chunk to choose");
    return PX_OK;
  }
  const int dev = px_model_device_index(eng);
  int64_t fr = 0, tot = 0;
  int rc = px_device_memory(PX_DEVICE_CUDA, dev, &fr, &tot);
  if (rc) return rc;
  int same = 0;
  for (int i = 0; i < o->n_dev; i++) same += o->dev[i].kind == PX_DEVICE_CUDA && o->dev[i].index == dev;
  if (same < 1) same = 1;
  /* the largest design bounds the memory; its size sets how many samples fill the card */
  int big = 0;
  int64_t b1 = -1;
  for (int k = 0; k < J->tasks.n; k++) {
    const int64_t x = px_sample_bytes(eng, J->n_token[k], J->n_atom[k], 1);
    if (x > b1) {
      b1 = x;
      big = k;
    }
  }
  const int T = J->n_token[big], N = J->n_atom[big];
  /* what pxdiff does not count: the contexts' own scratch and cuBLAS workspaces, other
   * designs' caches in flight, fragmentation */
  const int64_t headroom = ((int64_t)1 << 30) + tot / 20;
  const int64_t weights = px_model_n_params(eng) * (int64_t)sizeof(float); /* an upper bound (fp16 copies) */
  /* fr holds one context's weights already (eng's); the others on this GPU take theirs */
  const int64_t budget = (fr - headroom - (same - 1) * weights) / same;
  const long fill = design_chunk_fill(T);
  const long S = design_chunk_fit(eng, T, N, o->n_sample, budget);
  o->chunk = S;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  int w = snprintf(note, cap, "chosen: %.1f of %.1f GiB free on cuda:%d, %.2f GiB per context for the largest design "
                   "(%d tokens, %d atoms) at %ld samples", (double)fr / gib, (double)tot / gib, dev,
                   (double)px_sample_bytes(eng, T, N, (int)S) / gib, T, N, S);
  if (S < fill && S == o->n_sample && o->n_dev == 1) {
    /* N_sample of a case underfills the card: contexts side by side take several cases */
    const long cases = (long)J->tasks.n * o->n_seed;
    long k = (fill + S - 1) / S;
    if (k > CHUNK_MAX_AUTO_CONTEXTS) k = CHUNK_MAX_AUTO_CONTEXTS;
    if (k > cases) k = cases;
    while (k > 1 && k * px_sample_bytes(eng, T, N, (int)S) + (k - 1) * weights > fr - headroom) k--;
    if (k > 1) {
      for (int i = 1; i < k; i++) o->dev[i] = o->dev[0];
      o->n_dev = (int)k;
      if (w > 0 && (size_t)w < cap)
        snprintf(note + w, cap - (size_t)w, "; %ld samples per case underfill it: %ld contexts on cuda:%d take "
                 "several cases at once", S, k, dev);
    }
  }
  return PX_OK;
}

static int design_main(int argc, char **argv, int demo) {
  design_opts o;
  int st = design_opts_parse(argc, argv, &o, demo);
  if (st != CLI_RUN) {
    free(o.seed);
    cli_paths_free(&o.inputs);
    campaign_free_strings(o.paths, o.n_paths);
    return st;
  }
  const double t_start = px_time_now();
  if (o.threads) px_set_num_threads((int)o.threads);
  px_conformers *conf = NULL;
  design_job J;
  design_models M;
  campaign_queue q = {0};
  work W;
  memset(&J, 0, sizeof J);
  memset(&M, 0, sizeof M);
  memset(&W, 0, sizeof W);
  int rc = 1;
  if (o.conformers && px_conformers_read(o.conformers, &conf)) {
    cli_fail(px_last_error());
    goto done;
  }
  if (demo ? design_job_parse(&J, (const char *)px_demo_task_yaml, px_demo_task_yaml_len, 0, "pdl1_demo",
                              (const char *)px_demo_target_cif, px_demo_target_cif_len, "pdl1_5o45_A.cif", conf)
           : design_job_read_many(&J, (const char *const *)o.paths, o.n_paths, conf)) {
    cli_fail(px_last_error());
    goto done;
  }
  for (int i = 0; i < J.tasks.n_warning && !o.quiet; i++) fprintf(stderr, "pxdiff: warning: %s\n", J.tasks.warning[i]);
  if (campaign_queue_make(&q, J.tasks.n, o.n_seed, o.n_sample, o.chunk, &o.shard)) {
    cli_fail(px_last_error());
    goto done;
  }
  if (precheck_outputs(&o, &J, &q)) goto done;
  /* several contexts: this model stays on the CPU (each context gets a handle of it), and the
   * embedder runs on the process's shared context of the first device, under the run's lock */
  const px_device_ref mdev = o.n_dev > 1 ? (px_device_ref){PX_DEVICE_CPU, 0} : o.dev[0];
  const int edev = o.n_dev > 1 ? (int)o.dev[0].kind : -1;
  if (demo ? design_models_synthetic(&M, DEMO_MODEL_SEED, mdev, edev, o.precision)
           : design_models_load(&M, o.ckpt, mdev, edev, o.precision)) {
    cli_fail(px_last_error());
    goto done;
  }
  /* the chunk (on a GPU chosen here, unless given), then the contexts and the queue in its units */
  char note[400];
  const long chunk0 = o.chunk;
  const int n_dev0 = o.n_dev;
  px_model *probe = NULL;
  if (o.n_dev > 1 && !o.chunk_given &&
      (px_model_share(M.model, &probe) || px_model_set_device(probe, o.dev[0].kind, o.dev[0].index, 1, o.precision))) {
    px_model_free(probe);
    cli_fail(px_last_error());
    goto done;
  }
  rc = choose_chunk(&o, &J, probe ? probe : M.model, note, sizeof note);
  px_model_free(probe); /* a handle on its own context, made only to size the chunk */
  if (rc) {
    rc = cli_fail(px_last_error());
    goto done;
  }
  rc = 1;
  if (n_dev0 == 1 && o.n_dev > 1 &&
      px_model_set_device(M.model, PX_DEVICE_CPU, 0, 0, PX_PRECISION_DEFAULT)) { /* the contexts get handles */
    cli_fail(px_last_error());
    goto done;
  }
  if (workers_make(&W, &o, &M)) {
    cli_fail(px_last_error());
    goto done;
  }
  if (o.chunk != chunk0) {
    campaign_queue_free(&q);
    if (campaign_queue_make(&q, J.tasks.n, o.n_seed, o.n_sample, o.chunk, &o.shard)) {
      cli_fail(px_last_error());
      goto done;
    }
  }
  char model_desc[1024];
  if (demo) snprintf(model_desc, sizeof model_desc, "synthetic weights, released shapes, seed %d", DEMO_MODEL_SEED);
  else snprintf(model_desc, sizeof model_desc, "%s", o.ckpt);
  if (!o.quiet) {
    if (demo) printf("pxdiff demo: %s\n", SYNTH_LABEL);
    printf("pxdiff %s: %d task%s, seeds", demo ? "demo" : "design", J.tasks.n, J.tasks.n == 1 ? "" : "s");
    for (int i = 0; i < o.n_seed; i++) printf("%s%llu", i ? "," : " ", (unsigned long long)o.seed[i]);
    char devs[256] = "";
    for (int i = 0, l = 0; i < W.n_w && l < (int)sizeof devs - 1; i++)
      l += snprintf(devs + l, sizeof devs - (size_t)l, "%s%s", i ? ", " : "", W.w[i].name);
    printf("; %ld sample%s x %ld steps, chunks of %ld (%s); %.1f M parameters (%.2f s); %s (%s), %d CPU threads\n",
           o.n_sample, o.n_sample == 1 ? "" : "s", o.n_step, o.chunk < o.n_sample ? o.chunk : o.n_sample, note,
           (double)M.n_params / 1e6, M.t_load, devs, cmd_precision_label(W.w[0].model), px_num_threads());
    fflush(stdout);
  }
  rc = run_design(&o, &J, &M, conf, model_desc, t_start, &q, &W);
done:
  workers_free(&W, &M);
  campaign_queue_free(&q);
  cli_paths_free(&o.inputs);
  campaign_free_strings(o.paths, o.n_paths);
  design_models_free(&M);
  design_job_free(&J);
  px_conformers_free(conf);
  free(o.seed);
  return rc;
}

int cmd_design(int argc, char **argv) { return design_main(argc, argv, 0); }
int cmd_design_demo(int argc, char **argv) { return design_main(argc, argv, 1); }
