/* The output tree of `pxdiff design` / `pxdiff demo` (design_tree.h): each (task, seed)
 * directory's layout, DUMP's top-level files and the check that every directory can take the run. */
#define _POSIX_C_SOURCE 200809L
#include "cli/design_tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"
#include "error.h"
#include "io/strbuf.h"
#include "platform.h"

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

int owns_sample(const case_layout *cl, long i) {
  return !cl->units || cl->units[i / cl->chunk].owner == cl->shard_k;
}

int make_layout(case_layout *cl, const design_opts *o, const char *task, uint64_t seed,
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

int write_top_level(const design_opts *o, const design_job *J) {
  if (px_mkdir_p(o->dump_dir)) return px_fail(PX_ERR_IO, "cannot create %s: %s", o->dump_dir, strerror(errno));
  char *err = px_path_join(o->dump_dir, "ERR");
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
      char *p = px_path_join(o->dump_dir, name);
      if (!p) rc = px_fail(PX_ERR_NOMEM, "out of memory");
      else if (!(rc = px_task_list_json(&view, &json, &len))) rc = put_file(o, p, json, len);
      free(p);
      free(json);
      json = NULL;
    }
    first += count;
  }
  if (!rc && !(rc = px_task_list_json(&J->tasks, &json, &len))) {
    char *p = px_path_join(o->dump_dir, "input_tasks.json");
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
  char *p = px_path_join(o->dump_dir, "config.yaml");
  rc = p ? put_file(o, p, b.p, b.n) : px_fail(PX_ERR_NOMEM, "out of memory");
  free(p);
  free(b.p);
  return rc;
}

/* Does shard k own a unit of the case? */
static int case_is_mine(const design_opts *o, const campaign_unit *units, long per) {
  for (long c = 0; c < per; c++)
    if (units[c].owner == o->shard.k) return 1;
  return 0;
}

int precheck_outputs(const design_opts *o, const design_job *J, const campaign_queue *q) {
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
