/* `pxdiff design` / `pxdiff demo`: the options (design_opts.c), declared once for the one
 * parser (cli/options.h), and what they are checked and expanded into before a run. */
#ifndef PX_CLI_DESIGN_OPTS_H
#define PX_CLI_DESIGN_OPTS_H

#include <stdint.h>

#include "cli/campaign.h"
#include "cli/options.h"
#include "pxdiff.h"

#define DEMO_MODEL_SEED 2024
#define MAX_CONTEXTS 64
#define SYNTH_LABEL "SYNTHETIC WEIGHTS -- not a trained model: the structures mean nothing"

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
  int dtype, eta_type, precision;
  const char *device_text; /* --device as given: "auto", "cuda:0,2", ... */
  px_device_ref demo_device; /* the demo's --device (one device) */
  char demo_device_text[24];
  px_device_ref dev[MAX_CONTEXTS]; /* one entry per backend context (worker) */
  int n_dev;
  int chunk_given; /* --chunk on the command line (else it is chosen: choose_chunk) */
  float eta_min, eta_max;
  int resume, overwrite, quiet, no_augment;
  int demo;
  /* derived */
  uint64_t *seed;
  int n_seed;
  char ckpt_buf[4096];
  px_sampler_config cfg;
} design_opts;

/* Parses and checks a design (demo != 0: demo) command line into *o. CLI_RUN when the command
 * should run, else its exit status (0 after --help, 1 or 2 after a one-line error). */
int design_opts_parse(int argc, char **argv, design_opts *o, int demo);

#endif
