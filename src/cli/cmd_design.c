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
 * `pxdiff demo` runs the same path on the built-in PD-L1 task with SYNTHETIC weights. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/campaign.h"
#include "cli/cmd_design.h"
#include "cli/cmd_sample.h"
#include "cli/design_run.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/run_output.h"
#include "error.h"
#include "io/strbuf.h"
#include "platform.h"

#define DEMO_MODEL_SEED 2024
#define SYNTH_LABEL "SYNTHETIC WEIGHTS -- not a trained model: the structures mean nothing"

extern const unsigned char px_demo_task_yaml[], px_demo_target_cif[];
extern const size_t px_demo_task_yaml_len, px_demo_target_cif_len;

typedef struct {
  cli_paths inputs; /* -i: task files and directories of task files */
  const char *input; /* the first task file (config.yaml, messages) */
  const char *shard_text;
  int pdb, binder_first, status_files;
  float status_interval;
  campaign_shard shard;
  char **paths; /* the task files, directories expanded */
  int n_paths;
  const char *dump_dir, *ckpt, *ckpt_dir, *seeds, *conformers, *use_fast_ln;
  long n_sample, n_step, chunk, threads;
  int dtype, eta_type, device, precision;
  float eta_min, eta_max;
  int resume, overwrite, quiet, no_augment;
  int demo;
  /* derived */
  uint64_t *seed;
  int n_seed;
  char ckpt_buf[4096];
  px_sampler_config cfg;
} design_opts;

static const char *const dtype_names[] = {"bf16", "fp32", NULL};
static const int dtype_values[] = {DESIGN_DTYPE_BF16, DESIGN_DTYPE_FP32};
static const char *const eta_names[] = {"const", "linear", "poly", "cos", "piecewise", "piecewise_65",
                                        "piecewise_70", NULL};
static const int eta_values[] = {PX_ETA_CONST, PX_ETA_LINEAR, PX_ETA_POLY, PX_ETA_COS,
                                 PX_ETA_PIECEWISE, PX_ETA_PIECEWISE_65, PX_ETA_PIECEWISE_70};

static const char DESIGN_DETAILS[] =
    "PXDesign's options keep their names and defaults, so `pxdesign infer ARGS` becomes\n"
    "`pxdiff design ARGS`. Output (PXDesign's tree under DUMP_DIR):\n"
    "  config.yaml, <task file stem>.json (YAML input), input_tasks.json, ERR/\n"
    "  <task>/seed_<s>/predictions/<task>_sample_<i>.cif   one per sample, written atomically\n"
    "  <task>/seed_<s>/summary.json                        pxdiff's record (settings, timings, files)\n"
    "  <task>/seed_<s>/SUCCESS_FILE                        written last: the seed's samples are complete\n"
    "A directory holding another run's files is refused (--resume completes a run with the same\n"
    "settings, --overwrite replaces it). Ctrl-C keeps finished samples and exits 130; --resume\n"
    "then finishes with files identical to an uninterrupted run's. A design depends only on the\n"
    "task, the checkpoint, the seed, the sample index and the settings (not on the thread count,\n"
    "nor on the chunk on the CPU).\n"
    "Reference conformers: the CCD ideal coordinates built in (upstream uses RDKit conformers from\n"
    "its CCD cache; docs/conformers.md: --conformers FILE and how to export them from PXDesign's).\n"
    "Campaigns (docs/campaign.md): several task files or a directory in one process; --shard K/N\n"
    "for N processes or nodes writing one tree (together the unsharded run's files); status.json\n"
    "and designs.csv as the run goes; `pxdiff status DIR`; --pdb for AF2/ProteinMPNN pipelines.";

static int design_option_table(cli_opt *t, design_opts *o) {
  int k = 0;
  t[k++] = (cli_opt){.name = "--input", .alias = "-i", .kind = CLI_PATHS, .dst = &o->inputs, .meta = "TASK...",
                     .flags = o->demo ? CLI_HIDDEN : CLI_REQUIRED,
                     .help = "PXDesign task: YAML (.yaml/.yml) or JSON task list (.json); several files "
                             "(-i a.yaml b.yaml, or -i repeated) or a directory of them run as one campaign"};
  t[k++] = (cli_opt){.name = "--dump_dir", .alias = "-o", .kind = CLI_PATH, .dst = &o->dump_dir,
                     .meta = "DIR", .flags = o->demo ? 0 : CLI_REQUIRED, .help = "output directory (PXDesign's tree)"};
  if (o->demo) /* the demo's earlier spelling */
    t[k++] = (cli_opt){.name = "--out", .kind = CLI_PATH, .dst = &o->dump_dir, .meta = "DIR", .flags = CLI_HIDDEN,
                       .help = "the same as --dump_dir"};
  if (!o->demo) {
    t[k++] = (cli_opt){.name = "--checkpoint", .kind = CLI_PATH, .dst = &o->ckpt, .meta = "CKPT",
                       .help = "pxdesign_v0.1.0.pt (or a .safetensors conversion)"};
    t[k++] = (cli_opt){.name = "--load_checkpoint_dir", .kind = CLI_PATH, .dst = &o->ckpt_dir, .meta = "DIR",
                       .help = "or, as PXDesign: the directory holding pxdesign_v0.1.0.pt"};
  }
  t[k++] = (cli_opt){.name = "--N_sample", .kind = CLI_INT, .dst = &o->n_sample, .meta = "N",
                     .def = o->demo ? "2" : "5", .lo = 1, .hi = 1000000, .help = "designs per task and seed"};
  t[k++] = (cli_opt){.name = "--N_step", .kind = CLI_INT, .dst = &o->n_step, .meta = "K",
                     .def = o->demo ? "20" : "400", .lo = 1, .hi = 100000,
                     .help = o->demo ? "sampler steps (PXDesign's default is 400; the demo uses fewer)"
                                     : "sampler steps"};
  if (o->demo) { /* the demo's earlier spellings */
    t[k++] = (cli_opt){.name = "--samples", .kind = CLI_INT, .dst = &o->n_sample, .meta = "N", .lo = 1,
                       .hi = 1000000, .flags = CLI_HIDDEN, .help = "the same as --N_sample"};
    t[k++] = (cli_opt){.name = "--steps", .kind = CLI_INT, .dst = &o->n_step, .meta = "K", .lo = 1, .hi = 100000,
                       .flags = CLI_HIDDEN, .help = "the same as --N_step"};
  }
  t[k++] = (cli_opt){.name = "--seeds", .kind = CLI_STRING, .dst = &o->seeds, .meta = "S1,S2,...",
                     .def = o->demo ? "101" : "",
                     .help = "comma-separated seeds (none: one seed from the clock, as PXDesign)"};
  t[k++] = (cli_opt){.name = "--dtype", .kind = CLI_ENUM, .dst = &o->dtype, .meta = "bf16|fp32", .def = "bf16",
                     .enum_names = dtype_names, .enum_values = dtype_values,
                     .help = "as PXDesign's: bf16 rounds s_inputs and the noise schedule to bfloat16 as its "
                             "default GPU run does; fp32 keeps float32"};
  t[k++] = (cli_opt){.name = "--eta_type", .kind = CLI_ENUM, .dst = &o->eta_type, .meta = "TYPE",
                     .def = "const", .enum_names = eta_names, .enum_values = eta_values,
                     .help = "step-scale schedule"};
  t[k++] = (cli_opt){.name = "--eta_min", .kind = CLI_FLOAT, .dst = &o->eta_min, .meta = "X", .def = "2.5",
                     .lo = 0, .hi = 1000, .help = "step scale at the start"};
  t[k++] = (cli_opt){.name = "--eta_max", .kind = CLI_FLOAT, .dst = &o->eta_max, .meta = "X", .def = "2.5",
                     .lo = 0, .hi = 1000, .help = "step scale at the end"};
  t[k++] = (cli_opt){.name = "--use_fast_ln", .kind = CLI_STRING, .dst = &o->use_fast_ln, .meta = "BOOL",
                     .flags = CLI_HIDDEN, .help = "accepted for PXDesign's command lines; no effect"};
  t[k++] = (cli_opt){.name = "--chunk", .kind = CLI_INT, .dst = &o->chunk, .meta = "C", .def = "10", .lo = 1,
                     .hi = 4096, .help = "samples per engine batch (PXDesign: 10)"};
  t[k++] = (cli_opt){.name = "--device", .kind = CLI_ENUM, .dst = &o->device, .meta = "auto|cpu|cuda",
                     .def = "auto", .enum_names = cli_device_names, .enum_values = cli_device_values,
                     .help = "where the engine runs (auto: CUDA when a GPU is present)"};
  t[k++] = (cli_opt){.name = "--precision", .kind = CLI_ENUM, .dst = &o->precision,
                     .meta = "default|fp32|tf32|bf16|fp16", .def = "default", .enum_names = cli_precision_names,
                     .enum_values = cli_precision_values,
                     .help = "GPU arithmetic (default: fp16 on CUDA, fp32 on the CPU)"};
  t[k++] = (cli_opt){.name = "--threads", .kind = CLI_INT, .dst = &o->threads, .meta = "K", .def = "0", .lo = 0,
                     .hi = 4096, .help = "CPU threads (0: every usable core)"};
  t[k++] = (cli_opt){.name = "--conformers", .kind = CLI_PATH, .dst = &o->conformers, .meta = "FILE",
                     .help = "reference conformer table (docs/conformers.md; default: built in)"};
  t[k++] = (cli_opt){.name = "--no-augment", .kind = CLI_FLAG, .dst = &o->no_augment,
                     .help = "reference positions only centred, not randomly moved (comparisons)"};
  if (!o->demo) {
    t[k++] = (cli_opt){.name = "--shard", .kind = CLI_STRING, .dst = &o->shard_text, .meta = "K/N",
                       .help = "run shard K of N (1 <= K <= N) of the work into a tree shared by all N "
                               "(docs/campaign.md); the N shards' files are the unsharded run's"};
    t[k++] = (cli_opt){.name = "--status", .kind = CLI_FLAG, .dst = &o->status_files,
                       .help = "write DUMP_DIR/status.json and designs.csv as the run goes (on with "
                               "--shard or several task files)"};
    t[k++] = (cli_opt){.name = "--status-interval", .kind = CLI_FLOAT, .dst = &o->status_interval, .meta = "S",
                       .def = "5", .lo = 0, .hi = 86400, .flags = CLI_HIDDEN,
                       .help = "seconds between rewrites of status.json"};
    t[k++] = (cli_opt){.name = "--pdb", .kind = CLI_FLAG, .dst = &o->pdb,
                       .help = "also write each design as PDB (one-character chain ids, binder residues GLY)"};
    t[k++] = (cli_opt){.name = "--binder-first", .kind = CLI_FLAG, .dst = &o->binder_first,
                       .help = "with --pdb: the binder is chain A, first in the file (AF2 initial guess)"};
  }
  t[k++] = (cli_opt){.name = "--resume", .kind = CLI_FLAG, .dst = &o->resume,
                     .help = "keep finished samples of the same run and compute the rest"};
  t[k++] = (cli_opt){.name = "--overwrite", .kind = CLI_FLAG, .dst = &o->overwrite,
                     .help = "replace an earlier run's files in DIR"};
  t[k++] = (cli_opt){.name = "--quiet", .alias = "-q", .kind = CLI_FLAG, .dst = &o->quiet,
                     .help = "errors only"};
  return k;
}

/* The file name of a YAML task path (its <stem>.json goes to DUMP_DIR), and the length of
 * its stem; 0 for a path that is not YAML. */
static const char *yaml_stem(const char *path) {
  const char *b = strrchr(path, '/');
  return b ? b + 1 : path;
}
static size_t yaml_stem_len(const char *base) {
  const char *dot = strrchr(base, '.');
  return dot && dot != base && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml")) ? (size_t)(dot - base) : 0;
}

static int parse_design_opts(int argc, char **argv, design_opts *o, int demo) {
  memset(o, 0, sizeof *o);
  o->demo = demo;
  cli_opt t[40];
  int n = design_option_table(t, o);
  const cli_command c = {
      .name = demo ? "demo" : "design",
      .args = demo ? "-o DIR [options]" : "-i TASK... -o DUMP_DIR (--checkpoint CKPT | --load_checkpoint_dir DIR) [options]",
      .summary = demo ? "PXDesign's quick-start target (PD-L1, built in) designed with SYNTHETIC weights: the "
                        "whole `pxdiff design` path, no downloads."
                      : "Design binders for a target: PXDesign's `pxdesign infer` in C (task + structure in, "
                        "binder backbones out, PXDesign's output tree).",
      .details = DESIGN_DETAILS,
      .opts = t,
      .n_opts = n};
  /* cuda:all / cuda:0,2 name one backend context per device, which the engine does not have
   * yet (issue 12, the model/backend seam, comes first): say so instead of "not one of". */
  for (int i = 0; i < argc; i++) {
    const char *v = !strcmp(argv[i], "--device") && i + 1 < argc ? argv[i + 1]
                    : !strncmp(argv[i], "--device=", 9)          ? argv[i] + 9
                                                                 : NULL;
    if (v && !strncmp(v, "cuda:", 5))
      return cli_usage_error(&c,
                             "--device %s: several devices in one process need one backend context per device, "
                             "which the engine does not have yet (the model/backend seam, issue 12); run one "
                             "shard per GPU instead: CUDA_VISIBLE_DEVICES=i pxdiff design --shard K/N ... "
                             "(docs/campaign.md)",
                             v);
  }
  int st = cli_parse(&c, argc, argv, NULL, NULL);
  if (st != CLI_RUN) return st;
  if (campaign_parse_shard(o->shard_text, &o->shard)) return cli_usage_error(&c, "%s", px_last_error());
  if (o->binder_first && !o->pdb) return cli_usage_error(&c, "--binder-first orders the PDB files: give --pdb too");
  if (o->shard.n > 1 && (!o->seeds || !o->seeds[strspn(o->seeds, " ")]))
    return cli_usage_error(&c, "--shard needs --seeds: without them each shard would draw its own seed from the clock");
  if (o->overwrite && o->shard.n > 1)
    return cli_usage_error(&c, "--overwrite with --shard: the shards share the tree; remove the earlier run (or "
                               "use another -o) instead");
  if (!demo) {
    if (campaign_expand_inputs(o->inputs.v, o->inputs.n, &o->paths, &o->n_paths)) {
      fprintf(stderr, "pxdiff: %s\n", px_last_error());
      return 1;
    }
    o->input = o->paths[0];
  }
  if (o->shard.n > 1 || o->n_paths > 1) o->status_files = 1;
  /* YAML inputs each leave <stem>.json in DUMP_DIR: two of one stem would write one file */
  for (int i = 0; i < o->n_paths; i++)
    for (int j = 0; j < i; j++) {
      const char *a = yaml_stem(o->paths[i]), *b = yaml_stem(o->paths[j]);
      const size_t la = yaml_stem_len(a);
      if (la && la == yaml_stem_len(b) && !strncmp(a, b, la)) {
        fprintf(stderr, "pxdiff: %s and %s both become %.*s.json in the output directory; rename one\n",
                o->paths[j], o->paths[i], (int)la, a);
        return 1;
      }
    }
  if (o->resume && o->overwrite) return cli_usage_error(&c, "--resume and --overwrite exclude each other");
  if (!o->dump_dir) return cli_usage_error(&c, "give the output directory: -o DIR");
  if (!demo) {
    if (!o->ckpt && !o->ckpt_dir)
      return cli_usage_error(&c, "give the checkpoint: --checkpoint CKPT or --load_checkpoint_dir DIR");
    if (o->ckpt && o->ckpt_dir) return cli_usage_error(&c, "give --checkpoint or --load_checkpoint_dir, not both");
    if (o->ckpt_dir) {
      /* PXDesign's InferenceRunner looks for <model_name>.pt there. */
      size_t l = strlen(o->ckpt_dir);
      snprintf(o->ckpt_buf, sizeof o->ckpt_buf, "%s%spxdesign_v0.1.0.pt", o->ckpt_dir,
               l && o->ckpt_dir[l - 1] == '/' ? "" : "/");
      o->ckpt = o->ckpt_buf;
    }
  }
  if (design_parse_seeds(o->seeds, &o->seed, &o->n_seed)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    return 2;
  }
  px_sampler_config_default(&o->cfg);
  o->cfg.n_step = (int)o->n_step;
  o->cfg.eta_type = o->eta_type;
  o->cfg.eta_min = o->eta_min;
  o->cfg.eta_max = o->eta_max;
  o->cfg.schedule_bf16 = o->dtype == DESIGN_DTYPE_BF16;
  return CLI_RUN;
}

static run_mode mode_of(const design_opts *o) {
  return o->resume ? RUN_RESUME : o->overwrite ? RUN_OVERWRITE : RUN_FRESH;
}

/* -------------------------------------------------------------- the tree -- */

/* A task name becomes a directory and file-name prefix: refuse what cannot be one. */
static int check_task_name(const char *name) {
  if (!name || !*name || !strcmp(name, ".") || !strcmp(name, "..") || strlen(name) > 200)
    return px_fail(PX_ERR_INPUT, "task name '%s' cannot name a directory", name ? name : "");
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    if (*p == '/' || *p == '\\' || *p < ' ' || *p == 127)
      return px_fail(PX_ERR_INPUT, "task name '%s' holds a character a directory name cannot", name);
  return PX_OK;
}

typedef struct {
  char dir[4096];    /* DUMP/<task>/seed_<s> */
  char prefix[256];  /* <task>_sample_ */
  run_layout L;
  /* sharded runs: the case's units (chunk c = units[c]) and this shard's number */
  const campaign_unit *units;
  long chunk;
  int shard_k;
} case_layout;

/* <prefix><index> as the default naming reads it (no padding), where a sample of another
 * shard reads as a name that is not this run's (-2): its files are never read, removed or
 * counted as a conflict by this shard (the run-output protocol, per shard). */
static long shard_identify(const run_layout *L, const char *reldir, const char *stem) {
  (void)reldir;
  const case_layout *cl = L->user;
  const size_t lp = strlen(cl->prefix);
  if (strncmp(stem, cl->prefix, lp)) return -2;
  const char *d = stem + lp;
  if (!*d || strlen(d) > 18 || (d[0] == '0' && d[1])) return *d ? -1 : -2;
  for (const char *q = d; *q; q++)
    if (*q < '0' || *q > '9') return -2;
  const long i = strtol(d, NULL, 10);
  if (i >= L->n_samples) return -1;
  return cl->units[i / cl->chunk].owner == cl->shard_k ? i : -2;
}

static int owns_sample(const case_layout *cl, long i) {
  return !cl->units || cl->units[i / cl->chunk].owner == cl->shard_k;
}

static int make_layout(case_layout *cl, const design_opts *o, const char *task, uint64_t seed,
                       const campaign_unit *units) {
  memset(cl, 0, sizeof *cl);
  size_t l = strlen(o->dump_dir);
  int n = snprintf(cl->dir, sizeof cl->dir, "%s%s%s/seed_%llu", o->dump_dir,
                   l && o->dump_dir[l - 1] == '/' ? "" : "/", task, (unsigned long long)seed);
  if (n < 0 || (size_t)n >= sizeof cl->dir) return px_fail(PX_ERR_INPUT, "output path too long under %s", o->dump_dir);
  snprintf(cl->prefix, sizeof cl->prefix, "%s_sample_", task);
  cl->L = (run_layout){.dir = cl->dir, .command = o->demo ? "demo" : "design", .n_samples = o->n_sample,
                       .ext = {"cif"}, .n_ext = 1, .other_ext = {"pdb"}, .n_other_ext = 1,
                       .markers = {"summary.json", "SUCCESS_FILE"},
                       .n_markers = 2, .subdir = "predictions", .prefix = cl->prefix, .width = 0};
  if (o->pdb) { /* the CIF stays last: its trailer proves the sample complete */
    cl->L.ext[0] = "pdb";
    cl->L.ext[1] = "cif";
    cl->L.n_ext = 2;
    cl->L.n_other_ext = 0;
  }
  if (o->shard.n > 1 && units) {
    cl->units = units;
    cl->chunk = o->chunk;
    cl->shard_k = o->shard.k;
    cl->L.identify = shard_identify;
    cl->L.user = cl;
  }
  return PX_OK;
}

/* Files that every shard writes (the same bytes) go through a temporary name of the
 * shard's own, so that two shards never write one path. */
static int put_file(const design_opts *o, const char *path, const void *data, size_t n) {
  return o->shard.n > 1 ? campaign_write_atomic(path, data, n, o->shard.tag) : px_write_file_atomic_msg(path, data, n);
}

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *p = malloc(la + lb + 2);
  if (!p) return NULL;
  memcpy(p, a, la);
  size_t k = la;
  if (la && a[la - 1] != '/') p[k++] = '/';
  memcpy(p + k, b, lb + 1);
  return p;
}

/* DUMP's top-level files, as `pxdesign infer` writes them (after every input was checked). */
static int write_top_level(const design_opts *o, const design_job *J) {
  if (px_mkdir_p(o->dump_dir)) return px_fail(PX_ERR_IO, "cannot create %s: %s", o->dump_dir, strerror(errno));
  char *err = join(o->dump_dir, "ERR");
  if (!err) return px_fail(PX_ERR_NOMEM, "out of memory");
  int rc = px_mkdir_p(err) ? px_fail(PX_ERR_IO, "cannot create %s: %s", err, strerror(errno)) : PX_OK;
  free(err);
  if (rc) return rc;
  char *json = NULL;
  size_t len = 0;
  /* YAML input: PXDesign writes the converted task list beside the outputs as <stem>.json
   * (several task files: one per YAML file, its own tasks). */
  const int n_in = o->demo ? 1 : o->n_paths;
  for (int f = 0, first = 0; f < n_in && !rc; f++) {
    int count = 0;
    while (first + count < J->tasks.n && (!J->task_input || J->task_input[first + count] == f)) count++;
    const char *in = o->demo ? "pdl1_demo.yaml" : o->paths[f];
    const char *base = strrchr(in, '/');
    base = base ? base + 1 : in;
    const char *dot = strrchr(base, '.');
    if (dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml"))) {
      const px_task_list view = {.n = count, .task = J->tasks.task + first};
      char name[512];
      snprintf(name, sizeof name, "%.*s.json", (int)(dot - base) > 400 ? 400 : (int)(dot - base), base);
      char *p = join(o->dump_dir, name);
      if (!p) rc = px_fail(PX_ERR_NOMEM, "out of memory");
      else if (!(rc = px_task_list_json(&view, &json, &len))) rc = put_file(o, p, json, len);
      free(p);
      free(json);
      json = NULL;
    }
    first += count;
  }
  if (!rc && !(rc = px_task_list_json(&J->tasks, &json, &len))) {
    char *p = join(o->dump_dir, "input_tasks.json");
    rc = p ? put_file(o, p, json, len) : px_fail(PX_ERR_NOMEM, "out of memory");
    free(p);
  }
  free(json);
  if (rc) return rc;
  /* config.yaml: the settings of this run (PXDesign writes its whole config; these are the
   * values that decide the designs, under PXDesign's names, plus pxdiff's own). */
  px_strbuf b = {0};
  char f1[32], f2[32];
  run_fmt_float(f1, sizeof f1, o->eta_min);
  run_fmt_float(f2, sizeof f2, o->eta_max);
  px_sb_printf(&b, "# pxdiff %s design: the settings of this run\n", PXDIFF_VERSION);
  px_sb_printf(&b, "input_json_path: %s\n", o->demo ? "(built-in demo task)" : o->input);
  for (int f = 1; !o->demo && f < o->n_paths; f++) px_sb_printf(&b, "  # and %s\n", o->paths[f]);
  px_sb_printf(&b, "dump_dir: %s\n", o->dump_dir);
  px_sb_printf(&b, "load_checkpoint_path: %s\n", o->demo ? "(synthetic weights)" : o->ckpt);
  px_sb_printf(&b, "dtype: %s\nseeds:", o->dtype == DESIGN_DTYPE_BF16 ? "bf16" : "fp32");
  for (int i = 0; i < o->n_seed; i++) px_sb_printf(&b, "%s%llu", i ? ", " : " [", (unsigned long long)o->seed[i]);
  px_sb_printf(&b, "]\nsample_diffusion:\n  N_sample: %ld\n  N_step: %ld\n", o->n_sample, o->n_step);
  px_sb_printf(&b, "  eta_schedule:\n    type: %s\n    min: %s\n    max: %s\n", px_eta_type_name(o->eta_type), f1, f2);
  px_sb_printf(&b, "  gamma0: 1.0\n  gamma_min: 0.01\n  noise_scale_lambda: 1.003\n");
  px_sb_printf(&b, "diffusion_chunk_size: %ld\n", o->chunk);
  px_sb_printf(&b, "pxdiff:\n  reference_conformers: %s\n  augment_ref_pos: %s\n",
               o->conformers ? o->conformers : "built-in (CCD ideal coordinates)", o->no_augment ? "false" : "true");
  if (b.oom) {
    free(b.p);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  char *p = join(o->dump_dir, "config.yaml");
  rc = p ? put_file(o, p, b.p, b.n) : px_fail(PX_ERR_NOMEM, "out of memory");
  free(p);
  free(b.p);
  return rc;
}

/* ------------------------------------------------------------- one case -- */

static uint64_t case_fingerprint(const design_opts *o, const design_models *M, const design_case *C,
                                 uint64_t seed, const char *model_desc) {
  char buf[2048], fields[400];
  run_sampler_fields(fields, sizeof fields, &o->cfg, seed);
  const char *backend = px_model_backend_name(M->model);
  snprintf(buf, sizeof buf, "pxdiff-design v1|%s|features=%016llx|model=%s|params=%lld|device=%.4s|prec=%s|dtype=%s",
           fields, (unsigned long long)px_features_hash(M->model, &C->f), model_desc, (long long)M->n_params,
           backend ? backend : "?", px_model_precision_name(M->model), o->dtype == DESIGN_DTYPE_BF16 ? "bf16" : "fp32");
  /* --pdb files are part of the run: a resume must write them the same way */
  if (o->pdb) {
    size_t l = strlen(buf);
    snprintf(buf + l, sizeof buf - l, "|pdb=%s", o->binder_first ? "binder-first" : "task-order");
  }
  return run_fingerprint(buf);
}

static char *case_summary(const design_opts *o, const design_models *M, const design_case *C, const run_out *r,
                          const px_task *task, uint64_t seed, const char *model_desc, double t_sampling,
                          int sampled, int computed, const char (*letter)[2]) {
  px_strbuf b = {0};
  char fl[2][32];
  run_fmt_float(fl[0], 32, o->eta_min);
  run_fmt_float(fl[1], 32, o->eta_max);
  px_sb_printf(&b, "{\n  \"pxdiff_version\": \"%s\",\n  \"command\": \"%s\",\n  \"complete\": true,\n",
               PXDIFF_VERSION, o->demo ? "demo" : "design");
  px_sb_printf(&b, "  \"synthetic_weights\": %s,\n", o->demo ? "true" : "false");
  if (o->demo) px_sb_printf(&b, "  \"note\": \"%s\",\n", SYNTH_LABEL);
  px_sb_printf(&b, "  \"model\": ");
  px_sb_json_string(&b, model_desc);
  px_sb_printf(&b, ",\n  \"model_parameters\": %lld,\n  \"task\": ", (long long)M->n_params);
  px_sb_json_string(&b, task->name);
  px_sb_printf(&b, ",\n  \"structure_file\": ");
  px_sb_json_string(&b, o->demo ? "(built-in PD-L1, PDB 5O45 chain A)" : task->structure_file);
  px_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"n_tokens\": %d,\n  \"n_atoms\": %d,\n  \"binder_length\": %d,\n",
               (unsigned long long)seed, C->in->n_token, C->in->n_atom, task->binder_length);
  px_sb_printf(&b, "  \"run_id\": \"%016llx\",\n", (unsigned long long)r->run_id);
  px_sb_printf(&b, "  \"settings\": {\n    \"N_sample\": %ld,\n    \"N_step\": %d,\n    \"dtype\": \"%s\",\n",
               o->n_sample, o->cfg.n_step, o->dtype == DESIGN_DTYPE_BF16 ? "bf16" : "fp32");
  px_sb_printf(&b, "    \"eta_type\": \"%s\",\n    \"eta_min\": %s,\n    \"eta_max\": %s,\n",
               px_eta_type_name(o->eta_type), fl[0], fl[1]);
  px_sb_printf(&b, "    \"chunk\": %ld,\n", o->chunk < o->n_sample ? o->chunk : o->n_sample);
  px_sb_printf(&b, "    \"device\": \"%s\",\n    \"precision\": \"%s\",\n    \"x16_token_blocks\": %d,\n",
               px_model_backend_name(M->model), px_model_precision_name(M->model), px_model_x16_blocks(M->model));
  px_sb_printf(&b, "    \"threads\": %d,\n", px_num_threads());
  px_sb_printf(&b, "    \"reference_conformers\": ");
  px_sb_json_string(&b, o->conformers ? o->conformers : "built-in (CCD ideal coordinates)");
  px_sb_printf(&b, ",\n    \"augment_ref_pos\": %s\n  },\n", o->no_augment ? "false" : "true");
  if (letter) { /* --pdb: the one-character chain ids the PDB files use */
    px_sb_printf(&b, "  \"pdb\": {\"binder_first\": %s, \"chain_ids\": {", o->binder_first ? "true" : "false");
    for (int c = 0; c < C->in->n_chain; c++) {
      px_sb_str(&b, c ? ", " : "");
      px_sb_json_string(&b, C->in->chain[c].label);
      px_sb_str(&b, ": ");
      px_sb_json_string(&b, letter[c]);
    }
    px_sb_str(&b, "}},\n");
  }
  px_sb_printf(&b, "  \"timings\": {\n    \"featurize_s\": %.4f,\n    \"embed_s\": %.4f,\n    \"design_s\": %.4f,\n",
               C->t_featurize, C->t_embed, C->t_design);
  px_sb_printf(&b, "    \"sampling_s\": %.3f,\n    \"s_per_design\": ", t_sampling);
  if (sampled) px_sb_printf(&b, "%.4f", t_sampling / sampled);
  else px_sb_printf(&b, "null");
  px_sb_printf(&b, "\n  },\n  \"samples_computed\": %d,\n  \"samples_resumed\": %ld,\n  \"files\": ", computed,
               r->n_have);
  run_summary_files(&b, r);
  px_sb_printf(&b, "\n}\n");
  if (b.oom) {
    free(b.p);
    px_fail(PX_ERR_NOMEM, "out of memory writing summary.json");
    return NULL;
  }
  return b.p;
}

/* The campaign side of a run: status file, designs.csv (both NULL/-1 when off). */
typedef struct {
  campaign_status *st;
  campaign_csv *csv;
  campaign_listed listed; /* --resume: the files designs.csv lists already */
} campaign_io;

/* designs.csv's name for sample idx of a case. */
static void csv_file(char *buf, size_t cap, const run_out *r, const char *task, uint64_t seed, long idx) {
  char rel[1024];
  run_out_relpath(r, idx, r->L.n_ext - 1, rel, sizeof rel);
  snprintf(buf, cap, "%s/seed_%llu/%s", task, (unsigned long long)seed, rel);
}

typedef struct {
  cli_progress *pr;
  campaign_status *st;
} progress_pair;

/* The terminal progress, and status.json every few seconds while the engine runs. */
static int progress_cb(void *user, int done, int total, int step, int n_step) {
  progress_pair *pp = user;
  int r = cli_progress_cb(pp->pr, done, total, step, n_step);
  if (pp->st) campaign_status_write(pp->st, 0);
  return r;
}

static void note_error(campaign_io *io, const char *msg) {
  if (io->st) snprintf(io->st->last_error, sizeof io->st->last_error, "%s", msg);
}

static int say_io(campaign_io *io, const char *what) {
  note_error(io, what);
  return cli_fail(what);
}

/* Every sample file of the case is complete and of this run (any shard's). */
static int case_complete(const run_out *r) {
  char path[4096], line[64];
  snprintf(line, sizeof line, "# %s", r->trailer);
  for (long i = 0; i < r->L.n_samples; i++) {
    for (int k = 0; k < r->L.n_ext; k++) {
      if (run_out_path(r, i, k, path, sizeof path)) return 0;
      const int last = k == r->L.n_ext - 1;
      if (!px_structure_file_has_trailer(path, last ? line : "END")) return 0;
    }
  }
  return 1;
}

/* Sample task k for one seed into its directory: the units of this shard among units[0..per).
 * Returns the exit status (0, 1, 130). */
static int run_case(const design_opts *o, const design_job *J, int k, const design_models *M,
                    const px_conformers *conf, uint64_t seed, const char *model_desc, const campaign_unit *units,
                    long per, campaign_io *io, int *n_written) {
  const px_task *task = &J->tasks.task[k];
  campaign_task_status *ts = io->st ? &io->st->task[k] : NULL;
  const int sharded = o->shard.n > 1;
  design_case C;
  int rc = design_case_make(&C, J, k, M, seed, !o->no_augment, o->dtype, conf, 0);
  if (rc) {
    design_case_free(&C);
    return say_io(io, px_last_error());
  }
  char(*letter)[2] = NULL;
  if (o->pdb) {
    letter = calloc((size_t)C.in->n_chain + 1, sizeof *letter);
    if (!letter || design_pdb_chains(C.in, o->binder_first, letter)) {
      rc = say_io(io, letter ? px_last_error() : "out of memory");
      free(letter);
      design_case_free(&C);
      return rc;
    }
  }
  case_layout cl;
  if (make_layout(&cl, o, task->name, seed, units)) {
    free(letter);
    design_case_free(&C);
    return say_io(io, px_last_error());
  }
  const uint64_t id = case_fingerprint(o, M, &C, seed, model_desc);
  run_out r;
  if (run_out_open(&r, &cl.L, mode_of(o), id)) {
    free(letter);
    design_case_free(&C);
    return say_io(io, px_last_error());
  }
  const long S = o->n_sample, CH = o->chunk;
  /* --resume: a design of the earlier run without its row (killed between the rename and
   * the append) gets it now, its time unknown */
  for (long i = 0; i < S && io->csv && r.n_have; i++) {
    char file[1400];
    if (!r.have[i]) continue;
    csv_file(file, sizeof file, &r, task->name, seed, i);
    if (!campaign_listed_has(&io->listed, file) &&
        campaign_csv_row(io->csv, task->name, seed, i, file, task->binder_length, -1.0)) {
      run_out_close(&r, 0);
      free(letter);
      design_case_free(&C);
      return say_io(io, px_last_error());
    }
  }
  int todo = 0;
  for (long c = 0; c < per; c++) {
    const campaign_unit *u = &units[c];
    if (u->owner != o->shard.k) continue;
    int missing = 0;
    for (long s = 0; s < u->n; s++) missing |= !r.have[u->first + s];
    if (missing) todo += (int)u->n;
    else if (ts) {
      ts->units_done++;
      ts->designs_done += u->n;
    }
  }
  if (!o->quiet)
    fprintf(stderr, "pxdiff: %s, seed %llu: %d chains, %d tokens, %d atoms (binder %d)%s\n", task->name,
            (unsigned long long)seed, C.in->n_chain, C.in->n_token, C.in->n_atom, task->binder_length,
            r.n_have ? "; resuming" : "");
  float *x = NULL;
  int written = 0;
  double t_sampling = 0;
  if (todo) {
    double t0 = px_time_now();
    rc = px_design_create(M->model, &C.f, &C.design);
    C.t_design = px_time_now() - t0;
    if (rc) rc = say_io(io, px_last_error());
    const size_t n3 = (size_t)C.in->n_atom * 3;
    if (!rc && !(x = malloc(sizeof(float) * n3 * (size_t)(CH < S ? CH : S)))) rc = say_io(io, "out of memory");
    cli_progress pr;
    cli_progress_start(&pr, "sampling", "designs", todo, o->cfg.n_step, o->quiet);
    pr.should_stop = run_out_interrupted;
    progress_pair pp = {.pr = &pr, .st = io->st};
    if (!rc) cli_progress_show(&pr, 0, 0, 1);
    px_sampler_config cfg = o->cfg;
    cfg.seed = seed;
    if (io->st) {
      io->st->state = "running";
      campaign_status_write(io->st, 1);
    }
    for (long c = 0; c < per && !rc; c++) {
      const campaign_unit *u = &units[c];
      if (u->owner != o->shard.k) continue;
      const long i = u->first, n = u->n;
      int missing = 0;
      for (long s = 0; s < n; s++) missing |= !r.have[i + s];
      if (!missing) continue;
      if (run_out_interrupted()) {
        rc = 130;
        break;
      }
      pr.cur = (int)n;
      const double tc = px_time_now();
      int st = px_sample(M->model, C.design, &cfg, (int)i, (int)n, (int)CH, x, progress_cb, &pp);
      const double dt = px_time_now() - tc;
      if (st == PX_ERR_CANCELLED || run_out_interrupted()) {
        rc = 130;
        break;
      }
      if (st) {
        cli_progress_close(&pr);
        rc = say_io(io, px_last_error());
        break;
      }
      for (long s = 0; s < n && !rc; s++) {
        const long idx = i + s;
        if (r.have[idx]) continue;
        char path[4096];
        if (o->pdb) {
          if (run_out_path(&r, idx, 0, path, sizeof path)) {
            rc = say_io(io, "output path too long");
            break;
          }
          if (design_write_pdb(path, C.in, x + (size_t)s * n3, task->name, idx, o->binder_first,
                               (const char(*)[2])letter)) {
            cli_progress_close(&pr);
            rc = say_io(io, px_last_error());
            break;
          }
        }
        if (run_out_path(&r, idx, cl.L.n_ext - 1, path, sizeof path)) {
          rc = say_io(io, "output path too long");
          break;
        }
        if (design_write_cif(path, C.in, x + (size_t)s * n3, task->name, idx, r.trailer)) {
          cli_progress_close(&pr);
          rc = say_io(io, px_last_error());
        } else {
          written++;
          if (io->csv) {
            char file[1400];
            csv_file(file, sizeof file, &r, task->name, seed, idx);
            if (campaign_csv_row(io->csv, task->name, seed, idx, file, task->binder_length, dt / (double)n)) {
              cli_progress_close(&pr);
              rc = say_io(io, px_last_error());
            }
          }
        }
      }
      pr.done += (int)n;
      if (io->st) {
        io->st->busy_s += dt;
        io->st->computed += n;
        ts->units_done++;
        ts->designs_done += n;
        campaign_status_write(io->st, 0);
      }
      if (!rc) cli_progress_show(&pr, pr.done, o->cfg.n_step, 1);
    }
    cli_progress_close(&pr);
    t_sampling = px_time_now() - pr.t0;
  }
  free(x);
  long mine = 0;
  for (long i = 0; i < S; i++) mine += owns_sample(&cl, i);
  if (rc == 130) {
    fprintf(stderr, "pxdiff: interrupted: %ld of %ld samples of %s seed %llu written (no SUCCESS_FILE); rerun with "
                    "--resume to finish\n", r.n_have + written, mine, task->name, (unsigned long long)seed);
  } else if (!rc && sharded && !case_complete(&r)) {
    /* another shard's samples are missing: the shard that completes the case marks it */
    if (!o->quiet)
      fprintf(stderr, "pxdiff: %s, seed %llu: this shard's %ld samples are written; the case is marked complete "
                      "by the shard that writes its last sample\n", task->name, (unsigned long long)seed, mine);
  } else if (!rc) {
    char *sum = case_summary(o, M, &C, &r, task, seed, model_desc, t_sampling, todo, written,
                             (const char(*)[2])letter);
    static const char success[] = "{\"prediction\": true}";
    if (!sum) {
      rc = say_io(io, px_last_error());
    } else if (sharded) {
      /* summary.json, then SUCCESS_FILE, each under a temporary name of this shard's */
      for (int m = 0; m < 2 && !rc; m++) {
        char *p = join(cl.dir, cl.L.markers[m]);
        if (!p || campaign_write_atomic(p, m ? success : sum, m ? sizeof success - 1 : strlen(sum), o->shard.tag))
          rc = say_io(io, p ? px_last_error() : "out of memory");
        free(p);
      }
    } else if (run_out_write_marker(&r, 0, sum, strlen(sum)) ||
               run_out_write_marker(&r, 1, success, sizeof success - 1)) {
      rc = say_io(io, px_last_error());
    }
    free(sum);
    if (!rc && !o->quiet) {
      if (todo)
        fprintf(stderr, "pxdiff: %s, seed %llu: %ld samples in %s/predictions (%.2f s/design at %d steps)\n",
                task->name, (unsigned long long)seed, S, cl.dir, t_sampling / todo, o->cfg.n_step);
      else
        fprintf(stderr, "pxdiff: %s, seed %llu: all %ld samples were already written\n", task->name,
                (unsigned long long)seed, S);
    }
  }
  *n_written += written;
  run_out_close(&r, rc == 0);
  free(letter);
  design_case_free(&C);
  return rc;
}

/* ---------------------------------------------------------------- command -- */

/* Does shard k own a unit of the case? */
static int case_is_mine(const design_opts *o, const campaign_unit *units, long per) {
  for (long c = 0; c < per; c++)
    if (units[c].owner == o->shard.k) return 1;
  return 0;
}

static int run_design(design_opts *o, const design_job *J, const design_models *M, const px_conformers *conf,
                      const char *model_desc, double t_start, const campaign_queue *q) {
  const long per = (o->n_sample + o->chunk - 1) / o->chunk;
  campaign_lock lock;
  campaign_status st;
  campaign_csv csv = {.fd = -1};
  campaign_io io = {0};
  memset(&lock, 0, sizeof lock);
  memset(&st, 0, sizeof st);
  int rc = 0, written = 0;
  /* the shard's lock comes first: a second process of the same K/N writes nothing at all */
  if (o->status_files) {
    if (px_mkdir_p(o->dump_dir)) {
      px_fail(PX_ERR_IO, "cannot create %s: %s", o->dump_dir, strerror(errno));
      return cli_fail(px_last_error());
    }
    if (campaign_lock_take(&lock, o->dump_dir, &o->shard)) return cli_fail(px_last_error());
  }
  if (write_top_level(o, J)) {
    campaign_lock_release(&lock);
    return cli_fail(px_last_error());
  }
  if (o->status_files && o->overwrite) { /* the replaced run's rows go with its files */
    char *p = join(o->dump_dir, "designs.csv");
    if (!p || (remove(p) != 0 && errno != ENOENT)) {
      px_fail(p ? PX_ERR_IO : PX_ERR_NOMEM, "cannot remove %s: %s", p ? p : "designs.csv", strerror(errno));
      free(p);
      campaign_lock_release(&lock);
      return cli_fail(px_last_error());
    }
    free(p);
  }
  if (o->status_files) {
    if (campaign_status_init(&st, o->dump_dir, &o->shard, J->tasks.n, o->status_interval) ||
        campaign_csv_open(&csv, o->dump_dir, o->shard.tag) ||
        (o->resume && campaign_csv_listed(o->dump_dir, &io.listed))) {
      rc = cli_fail(px_last_error());
      goto out;
    }
    st.command = o->demo ? "demo" : "design";
    st.device = px_model_backend_name(M->model);
    st.threads = px_num_threads();
    for (long u = 0; u < q->n; u++) {
      campaign_task_status *t = &st.task[q->u[u].task];
      t->name = J->tasks.task[q->u[u].task].name;
      if (q->u[u].owner != o->shard.k) continue;
      t->units_total++;
      t->designs_total += q->u[u].n;
    }
    st.lock_path = lock.path;
    io.st = &st;
    io.csv = &csv;
    campaign_status_write(&st, 1);
  }
  run_out_catch_signals();
  /* The queue's order is PXDesign's (every task for the first seed, then the next seed). This
   * shard pulls its next unit; the case it belongs to is then run for all of the shard's units
   * in it (one design cache per case), and the pull resumes after the case. */
  long cursor = 0;
  const campaign_unit *u;
  while (!rc && (u = campaign_queue_next(q, o->shard.k, &cursor)) != NULL) {
    const long first = ((long)u->seed_index * J->tasks.n + u->task) * per;
    rc = run_case(o, J, u->task, M, conf, o->seed[u->seed_index], model_desc, q->u + first, per, &io, &written);
    cursor = first + per;
  }
  run_out_release_signals();
  if (io.st) {
    st.state = rc == 0 ? "done" : rc == 130 ? "interrupted" : "failed";
    campaign_status_write(&st, 1);
  }
  if (!rc && !o->quiet) {
    printf("pxdiff %s: %d task%s x %d seed%s x %ld samples in %s (%d computed", o->demo ? "demo" : "design",
           J->tasks.n, J->tasks.n == 1 ? "" : "s", o->n_seed, o->n_seed == 1 ? "" : "s", o->n_sample, o->dump_dir,
           written);
    if (o->shard.n > 1) printf(" by shard %d/%d", o->shard.k, o->shard.n);
    printf(") in %.1f s\n", px_time_now() - t_start);
    if (o->demo) printf("  %s\n", SYNTH_LABEL);
  }
out:
  campaign_listed_free(&io.listed);
  campaign_csv_close(&csv);
  campaign_status_free(&st);
  campaign_lock_release(&lock);
  return rc;
}

/* Every (task, seed) directory can take this run: checked before anything is loaded. */
static int precheck_outputs(const design_opts *o, const design_job *J, const campaign_queue *q) {
  const long per = (o->n_sample + o->chunk - 1) / o->chunk;
  for (int k = 0; k < J->tasks.n; k++) {
    if (check_task_name(J->tasks.task[k].name)) return cli_fail(px_last_error());
    for (int j = 0; j < k; j++)
      if (!strcmp(J->tasks.task[j].name, J->tasks.task[k].name)) {
        fprintf(stderr, "pxdiff: two tasks are named '%s': their outputs would share a directory\n",
                J->tasks.task[k].name);
        return 1;
      }
    for (int si = 0; si < o->n_seed; si++) {
      const campaign_unit *units = q->u + ((long)si * J->tasks.n + k) * per;
      if (!case_is_mine(o, units, per)) continue;
      case_layout cl;
      if (make_layout(&cl, o, J->tasks.task[k].name, o->seed[si], units) || run_out_check(&cl.L, mode_of(o), NULL))
        return cli_fail(px_last_error());
    }
  }
  return 0;
}

static int design_main(int argc, char **argv, int demo) {
  design_opts o;
  int st = parse_design_opts(argc, argv, &o, demo);
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
  memset(&J, 0, sizeof J);
  memset(&M, 0, sizeof M);
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
  if (demo ? design_models_synthetic(&M, DEMO_MODEL_SEED, o.device, o.precision)
           : design_models_load(&M, o.ckpt, o.device, o.precision)) {
    cli_fail(px_last_error());
    goto done;
  }
  char model_desc[1024];
  if (demo) snprintf(model_desc, sizeof model_desc, "synthetic weights, released shapes, seed %d", DEMO_MODEL_SEED);
  else snprintf(model_desc, sizeof model_desc, "%s", o.ckpt);
  if (!o.quiet) {
    if (demo) printf("pxdiff demo: %s\n", SYNTH_LABEL);
    printf("pxdiff %s: %d task%s, seeds", demo ? "demo" : "design", J.tasks.n, J.tasks.n == 1 ? "" : "s");
    for (int i = 0; i < o.n_seed; i++) printf("%s%llu", i ? "," : " ", (unsigned long long)o.seed[i]);
    printf("; %ld sample%s x %ld steps, chunks of %ld; %.1f M parameters (%.2f s); %s (%s), %d CPU threads\n",
           o.n_sample, o.n_sample == 1 ? "" : "s", o.n_step, o.chunk < o.n_sample ? o.chunk : o.n_sample,
           (double)M.n_params / 1e6, M.t_load, px_model_backend_name(M.model), cmd_precision_label(M.model),
           px_num_threads());
    fflush(stdout);
  }
  rc = run_design(&o, &J, &M, conf, model_desc, t_start, &q);
done:
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
