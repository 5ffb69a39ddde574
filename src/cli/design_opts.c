/* The options of `pxdiff design` and `pxdiff demo` (design_opts.h): their table for the one
 * parser, the help's details, and the checks across options before anything is loaded. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/design_opts.h"
#include "cli/design_run.h"
#include "error.h"

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
                     .hi = 4096, .given = &o->chunk_given,
                     .help = "samples per engine batch (default: on a GPU chosen from its free memory and\n"
                             "the largest design, recorded for --resume; else 10, PXDesign's)"};
  if (o->demo) /* one device, named as every one-device command names it */
    t[k++] = (cli_opt){.name = "--device", .kind = CLI_DEVICE, .dst = &o->demo_device, .def = "auto",
                       .help = "where the engine runs (auto: CUDA when a GPU is present; cuda:N: GPU N)"};
  else
    t[k++] = (cli_opt){.name = "--device", .kind = CLI_STRING, .dst = &o->device_text, .meta = "DEV",
                       .def = "auto",
                       .help = "where the engine runs: auto (CUDA when a GPU is present), cpu, cuda, cuda:N;\n"
                               "several contexts pulling from one queue: cuda:0,2, cuda:all, cuda:0,0"};
  t[k++] = (cli_opt){.name = "--precision", .kind = CLI_ENUM, .dst = &o->precision,
                     .meta = "default|fp32|tf32|bf16|fp16", .def = "default", .enum_names = cli_precision_names,
                     .enum_values = cli_precision_values,
                     .help = "arithmetic (default: fp16 on CUDA, fp32 on the CPU; bf16 also on a CPU with AVX512_BF16)"};
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

int design_opts_parse(int argc, char **argv, design_opts *o, int demo) {
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
  int st = cli_parse(&c, argc, argv, NULL, NULL);
  if (st != CLI_RUN) return st;
  if (campaign_parse_shard(o->shard_text, &o->shard)) return cli_usage_error(&c, "%s", px_last_error());
  if (demo) { /* the model load says why a device cannot be used */
    const px_device_ref d = o->demo_device;
    if (d.kind == PX_DEVICE_CUDA)
      snprintf(o->demo_device_text, sizeof o->demo_device_text, "cuda:%d", d.index);
    else
      snprintf(o->demo_device_text, sizeof o->demo_device_text, "%s", d.kind == PX_DEVICE_CPU ? "cpu" : "auto");
    o->device_text = o->demo_device_text;
    o->dev[0] = d;
    o->n_dev = 1;
  } else if (px_device_list_parse(o->device_text, o->dev, MAX_CONTEXTS, &o->n_dev)) {
    return cli_usage_error(&c, "--device: %s", px_last_error());
  }
  if (o->dev[0].kind == PX_DEVICE_AUTO) o->dev[0].kind = px_cuda_device_count() > 0 ? PX_DEVICE_CUDA : PX_DEVICE_CPU;
  for (int i = 1; i < o->n_dev; i++)
    if (o->dev[i].kind != o->dev[0].kind) /* the CPU's designs differ from a GPU's */
      return cli_usage_error(&c, "--device %s mixes the CPU and CUDA devices, whose designs differ; list one kind",
                             o->device_text);
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
