/* `pxdiff featurize`: one task's features and condition embedding as a feature bundle
 * (docs/bundle.md, "Design inputs"), so that every stage of `pxdiff design` can be inspected
 * and compared, and `pxdiff sample --bundle` can run it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_design.h"
#include "cli/design_run.h"
#include "cli/options.h"
#include "error.h"
#include "io/bundle.h"
#include "platform.h"

static const char *const dtype_names[] = {"bf16", "fp32", NULL};
static const int dtype_values[] = {DESIGN_DTYPE_BF16, DESIGN_DTYPE_FP32};

static int write_bundle(const char *path, const design_case *C, const design_models *M, const px_task *task,
                        uint64_t seed, int augment, int dtype, const char *conformers) {
  const px_design_input *in = C->in;
  const int T = in->n_token, N = in->n_atom;
  const char **tok = malloc(sizeof(char *) * (size_t)T * 2), **atom = malloc(sizeof(char *) * (size_t)N * 2);
  int64_t *res_num = malloc(sizeof(int64_t) * (size_t)T), *restype = malloc(sizeof(int64_t) * (size_t)T);
  uint8_t *designed = malloc((size_t)T), *hot = malloc((size_t)T), *templ = malloc((size_t)T * (size_t)T);
  int rc = PX_OK;
  if (!tok || !atom || !res_num || !restype || !designed || !hot || !templ) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory writing %s", path);
    goto out;
  }
  for (int t = 0; t < T; t++) {
    const int a0 = in->token_atom_start[t];
    const px_design_chain *c = &in->chain[in->token_chain[t]];
    tok[t] = in->res_name[a0];
    tok[T + t] = c->label;
    res_num[t] = in->residue_index[t];
    designed[t] = (uint8_t)c->is_binder;
    hot[t] = in->hotspot[t] != 0.0f;
    restype[t] = -1;
    for (int k = 0; k < PX_FEAT_N_RESTYPE; k++)
      if (in->restype[(size_t)t * PX_FEAT_N_RESTYPE + k] == 1.0f) restype[t] = k;
  }
  for (int i = 0; i < N; i++) {
    atom[i] = in->atom_name[i];
    atom[N + i] = in->element[i];
  }
  for (size_t i = 0; i < (size_t)T * T; i++) templ[i] = (uint8_t)in->conditional_templ[i];
  px_bundle_annotations a = {.res_name = tok, .chain_id = tok + T, .res_num = res_num, .is_designed = designed,
                             .atom_name = atom, .element = atom + N};
  const int64_t sT[1] = {T}, sTT[2] = {T, T}, sN[1] = {N};
  px_bundle_item extra[5] = {
      {"restype_index", "I64", 1, sT, restype},
      {"hotspot", "U8", 1, sT, hot},
      {"conditional_templ", "U8", 2, sTT, templ},
      {"conditional_templ_mask", "U8", 2, sTT, in->conditional_templ_mask},
      {"atom_is_resolved", "U8", 1, sN, in->is_resolved},
  };
  char seed_s[32];
  snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
  const char *mk[6] = {"source", "task", "seed", "augment_ref_pos", "dtype", "reference_conformers"};
  const char *mv[6] = {"pxdiff featurize " PXDIFF_VERSION, task->name, seed_s, augment ? "true" : "false",
                       dtype == DESIGN_DTYPE_BF16 ? "bf16" : "fp32",
                       conformers ? conformers : "built-in (CCD ideal coordinates)"};
  px_features f = C->f;
  f.s_trunk = NULL; /* zeros: a bundle without s_trunk means exactly that */
  rc = px_bundle_write_ex(path, &f, M->dims.c_s_inputs, 0, M->dims.c_z, &a, task->name, extra, 5, mk, mv, 6);
out:
  free(tok);
  free(atom);
  free(res_num);
  free(restype);
  free(designed);
  free(hot);
  free(templ);
  return rc;
}

int cmd_featurize(int argc, char **argv) {
  const char *input = NULL, *out = NULL, *ckpt = NULL, *task_name = NULL, *conformers = NULL;
  uint64_t seed = 0;
  int no_augment = 0, dtype = DESIGN_DTYPE_BF16;
  px_device_ref device = {PX_DEVICE_CPU, 0};
  long threads = 0;
  const cli_opt opts[] = {
      {.name = "--input", .alias = "-i", .kind = CLI_PATH, .dst = &input, .meta = "TASK", .flags = CLI_REQUIRED,
       .help = "PXDesign task: YAML or JSON task list"},
      {.name = "--out", .kind = CLI_PATH, .dst = &out, .meta = "BUNDLE", .flags = CLI_REQUIRED,
       .help = "feature bundle to write (safetensors, docs/bundle.md)"},
      {.name = "--checkpoint", .kind = CLI_PATH, .dst = &ckpt, .meta = "CKPT", .flags = CLI_REQUIRED,
       .help = "checkpoint holding the condition embedder (and the diffusion module)"},
      {.name = "--task", .kind = CLI_STRING, .dst = &task_name, .meta = "NAME",
       .help = "which task of a file holding several (default: the only one)"},
      {.name = "--seed", .kind = CLI_U64, .dst = &seed, .meta = "S", .def = "0",
       .help = "seed of the reference-position augmentation (as `design --seeds S`)"},
      {.name = "--no-augment", .kind = CLI_FLAG, .dst = &no_augment,
       .help = "reference positions only centred (upstream with the augmentation off)"},
      {.name = "--conformers", .kind = CLI_PATH, .dst = &conformers, .meta = "FILE",
       .help = "reference conformer table (docs/conformers.md; default: built in)"},
      {.name = "--dtype", .kind = CLI_ENUM, .dst = &dtype, .meta = "bf16|fp32", .def = "bf16",
       .enum_names = dtype_names, .enum_values = dtype_values, .help = "s_inputs rounded to bfloat16, or float32"},
      {.name = "--device", .kind = CLI_DEVICE, .dst = &device, .def = "cpu", .help = "where the embedder runs (cuda:N: GPU N)"},
      {.name = "--threads", .kind = CLI_INT, .dst = &threads, .meta = "K", .def = "0", .lo = 0, .hi = 4096,
       .help = "CPU threads (0: every usable core)"},
  };
  const cli_command c = {.name = "featurize", .args = "-i TASK --checkpoint CKPT --out BUNDLE [options]",
                         .summary = "Features and condition embedding of one task as a feature bundle (what\n"
                                    "`pxdiff design` samples from; `pxdiff sample --bundle` runs it).",
                         .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0])};
  int st = cli_parse(&c, argc, argv, NULL, NULL);
  if (st != CLI_RUN) return st;
  if (threads) px_set_num_threads((int)threads);
  px_conformers *conf = NULL;
  design_job J;
  design_models M;
  design_case C;
  memset(&J, 0, sizeof J);
  memset(&M, 0, sizeof M);
  memset(&C, 0, sizeof C);
  int rc = 1, k = 0;
  if (conformers && px_conformers_read(conformers, &conf)) {
    cli_fail(px_last_error());
    goto done;
  }
  if (design_job_read(&J, input, conf)) {
    cli_fail(px_last_error());
    goto done;
  }
  if (task_name) {
    for (k = 0; k < J.tasks.n && strcmp(J.tasks.task[k].name, task_name); k++) {
    }
    if (k == J.tasks.n) {
      fprintf(stderr, "pxdiff: %s holds no task named '%s'\n", input, task_name);
      goto done;
    }
  } else if (J.tasks.n > 1) {
    fprintf(stderr, "pxdiff: %s holds %d tasks; choose one with --task NAME\n", input, J.tasks.n);
    goto done;
  }
  if (design_models_load(&M, ckpt, device, -1, PX_PRECISION_DEFAULT) ||
      design_case_make(&C, &J, k, &M, seed, !no_augment, dtype, conf, 0) ||
      write_bundle(out, &C, &M, &J.tasks.task[k], seed, !no_augment, dtype, conformers)) {
    cli_fail(px_last_error());
    goto done;
  }
  fprintf(stderr, "pxdiff: wrote %s: task %s, %d tokens, %d atoms (featurize %.3f s, embed %.3f s)\n", out,
          J.tasks.task[k].name, C.in->n_token, C.in->n_atom, C.t_featurize, C.t_embed);
  rc = 0;
done:
  design_case_free(&C);
  design_models_free(&M);
  design_job_free(&J);
  px_conformers_free(conf);
  return rc;
}
