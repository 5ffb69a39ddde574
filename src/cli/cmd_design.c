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
#include "cli/design_opts.h"
#include "cli/design_record.h"
#include "cli/design_run.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/run_output.h"
#include "error.h"
#include "io/strbuf.h"
#include "platform.h"

extern const unsigned char px_demo_task_yaml[], px_demo_target_cif[];
extern const size_t px_demo_task_yaml_len, px_demo_target_cif_len;

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

/* ------------------------------------------------------------- workers -- */

/* The run is a queue of units (campaign.h) that workers pull in order, one worker per
 * backend context (`--device cuda:0,2`: two; one GPU: one, on the main thread). A worker
 * keeps the design cache of the case its last unit belonged to, on its own context; a
 * case's features and condition embedding are computed once, by the first worker that
 * pulls one of its units (under the run's lock: the embedder has one context), and shared.
 * A unit's designs depend only on the task, seed, sample indices, settings and chunk, so
 * which worker computes it changes no file. A worker whose context fails hands its unit
 * back (another computes it) and stops; the run fails only when no worker is left. */

enum { UNIT_OK = 0, UNIT_CONTEXT_FAILED = -1 };

typedef struct work work;

typedef struct {
  work *W;
  int id;
  px_model *model;   /* the run's model (one worker) or a handle of it on its own context */
  char name[48];     /* "cuda:0", "cuda:0 (context 2)", "cpu" */
  px_design *design; /* the design cache of case case_id, on this worker's context */
  long case_id;
  float *x;
  size_t x_floats;
  int cur;                 /* samples in the unit being computed */
  _Atomic double frac;     /* of those, the fraction done (progress) */
  long fail_after;         /* PXDIFF_TEST_FAIL_WORKER: its context fails at its unit fail_after + 1 */
  int dead;
  px_thread *thread;
} worker;

/* One (task, seed) case while this shard has units of it to settle. */
typedef struct {
  long id; /* seed index * tasks + task */
  int k;
  uint64_t seed;
  const campaign_unit *units; /* the case's units in the queue */
  design_case C;
  char (*letter)[2];
  case_layout cl;
  run_out r;
  long pending; /* this shard's units of the case not yet settled */
  int todo, written;
  double t_sampling; /* engine and writing seconds of its units, all workers */
  long *by_worker;   /* [n_w] designs each worker computed */
  char failures[800];
} case_run;

struct work {
  const design_opts *o;
  const design_job *J;
  const design_models *M;
  const px_conformers *conf;
  const char *model_desc;
  const campaign_queue *q;
  long per;
  campaign_io *io;
  px_mutex *mu; /* everything below and the shared case state */
  long cursor;
  long *retry; /* units handed back by a failed worker */
  long n_retry, cap_retry;
  case_run **cases; /* [tasks * seeds], open cases */
  int rc;           /* 0, 1 (failed), 130 (interrupted): stops every worker */
  _Atomic int stop;
  int n_alive, busy;
  int written;
  cli_progress pr;
  worker *w;
  int n_w;
};

/* The settings summary.json records: the device list, then one entry per context that
 * computed designs of the case (several contexts only), then the failures of the case's units. */
static void summary_contexts(px_strbuf *b, const work *W, const case_run *cr) {
  if (W->n_w < 2 && !cr->failures[0]) return;
  px_sb_str(b, "  \"contexts\": [");
  for (int i = 0; i < W->n_w; i++) {
    px_sb_str(b, i ? ", {\"device\": " : "{\"device\": ");
    px_sb_json_string(b, W->w[i].name);
    px_sb_printf(b, ", \"designs\": %ld}", cr->by_worker[i]);
  }
  px_sb_str(b, "],\n  \"context_failures\": ");
  if (cr->failures[0]) px_sb_json_string(b, cr->failures);
  else px_sb_str(b, "null");
  px_sb_str(b, ",\n");
}

static void case_free(work *W, case_run *cr, int ok) {
  run_out_close(&cr->r, ok);
  free(cr->letter);
  free(cr->by_worker);
  design_case_free(&cr->C);
  W->cases[cr->id] = NULL;
  free(cr);
}

/* The case of unit u, opened when first met (under the lock): featurize, embed, the
 * directory (run-output protocol), designs.csv rows of a resumed run. NULL when that
 * failed (W->rc set, the message printed). */
static case_run *case_get(work *W, const campaign_unit *u) {
  const design_opts *o = W->o;
  const design_job *J = W->J;
  const long id = (long)u->seed_index * J->tasks.n + u->task;
  if (W->cases[id]) return W->cases[id];
  const int k = u->task;
  const uint64_t seed = o->seed[u->seed_index];
  const px_task *task = &J->tasks.task[k];
  campaign_io *io = W->io;
  case_run *cr = calloc(1, sizeof *cr);
  long *bw = calloc((size_t)W->n_w, sizeof *bw);
  if (!cr || !bw) {
    free(cr);
    free(bw);
    W->rc = say_io(io, "out of memory");
    return NULL;
  }
  cr->id = id;
  cr->k = k;
  cr->seed = seed;
  cr->units = W->q->u + id * W->per;
  cr->by_worker = bw;
  int rc = design_case_make(&cr->C, J, k, W->M, seed, !o->no_augment, o->dtype, W->conf, 0);
  if (!rc && o->pdb) {
    cr->letter = calloc((size_t)cr->C.in->n_chain + 1, sizeof *cr->letter);
    rc = !cr->letter ? px_fail(PX_ERR_NOMEM, "out of memory") : design_pdb_chains(cr->C.in, o->binder_first, cr->letter);
  }
  if (!rc) rc = make_layout(&cr->cl, o, task->name, seed, cr->units);
  if (!rc) rc = run_out_open(&cr->r, &cr->cl.L, mode_of(o), design_case_fingerprint(o, W->M, W->w[0].model, &cr->C, seed, W->model_desc));
  if (rc) {
    W->rc = say_io(io, px_last_error());
    free(cr->letter);
    free(bw);
    design_case_free(&cr->C);
    free(cr);
    return NULL;
  }
  W->cases[id] = cr;
  /* --resume: a design of the earlier run without its row (killed between the rename and
   * the append) gets it now, its time unknown */
  for (long i = 0; i < o->n_sample && io->csv && cr->r.n_have; i++) {
    char file[1400];
    if (!cr->r.have[i]) continue;
    csv_file(file, sizeof file, &cr->r, task->name, seed, i);
    if (!campaign_listed_has(&io->listed, file) &&
        campaign_csv_row(io->csv, task->name, seed, i, file, task->binder_length, -1.0)) {
      W->rc = say_io(io, px_last_error());
      case_free(W, cr, 0);
      return NULL;
    }
  }
  for (long c = 0; c < W->per; c++) {
    const campaign_unit *v = &cr->units[c];
    if (v->owner != o->shard.k) continue;
    cr->pending++;
    int missing = 0;
    for (long s = 0; s < v->n; s++) missing |= !cr->r.have[v->first + s];
    if (missing) cr->todo += (int)v->n;
  }
  if (!o->quiet) {
    cli_progress_close(&W->pr);
    fprintf(stderr, "pxdiff: %s, seed %llu: %d chains, %d tokens, %d atoms (binder %d)%s\n", task->name,
            (unsigned long long)seed, cr->C.in->n_chain, cr->C.in->n_token, cr->C.in->n_atom, task->binder_length,
            cr->r.n_have ? "; resuming" : "");
  }
  return cr;
}

/* The case's last unit is settled (under the lock): its markers, or the note that another
 * shard completes it. */
static void case_finish(work *W, case_run *cr) {
  const design_opts *o = W->o;
  const px_task *task = &W->J->tasks.task[cr->k];
  campaign_io *io = W->io;
  int rc = 0;
  long mine = 0;
  for (long i = 0; i < o->n_sample; i++) mine += owns_sample(&cr->cl, i);
  cli_progress_close(&W->pr);
  if (o->shard.n > 1 && !case_complete(&cr->r)) {
    /* another shard's samples are missing: the shard that completes the case marks it */
    if (!o->quiet)
      fprintf(stderr, "pxdiff: %s, seed %llu: this shard's %ld samples are written; the case is marked complete "
                      "by the shard that writes its last sample\n", task->name, (unsigned long long)cr->seed, mine);
  } else {
    px_strbuf extra = {0};
    summary_contexts(&extra, W, cr);
    char *sum = design_case_summary(o, W->M, W->w[0].model, W->n_w, &cr->C, &cr->r, task, cr->seed, W->model_desc,
                             cr->t_sampling, cr->todo, cr->written, (const char(*)[2])cr->letter, extra.p);
    free(extra.p);
    static const char success[] = "{\"prediction\": true}";
    if (!sum) {
      rc = say_io(io, px_last_error());
    } else if (o->shard.n > 1) {
      /* summary.json, then SUCCESS_FILE, each under a temporary name of this shard's */
      for (int m = 0; m < 2 && !rc; m++) {
        char *p = join(cr->cl.dir, cr->cl.L.markers[m]);
        if (!p || campaign_write_atomic(p, m ? success : sum, m ? sizeof success - 1 : strlen(sum), o->shard.tag))
          rc = say_io(io, p ? px_last_error() : "out of memory");
        free(p);
      }
    } else if (run_out_write_marker(&cr->r, 0, sum, strlen(sum)) ||
               run_out_write_marker(&cr->r, 1, success, sizeof success - 1)) {
      rc = say_io(io, px_last_error());
    }
    free(sum);
    if (!rc && !o->quiet) {
      if (cr->todo)
        fprintf(stderr, "pxdiff: %s, seed %llu: %ld samples in %s/predictions (%.2f s/design at %d steps)\n",
                task->name, (unsigned long long)cr->seed, o->n_sample, cr->cl.dir, cr->t_sampling / cr->todo,
                o->cfg.n_step);
      else
        fprintf(stderr, "pxdiff: %s, seed %llu: all %ld samples were already written\n", task->name,
                (unsigned long long)cr->seed, o->n_sample);
    }
  }
  if (rc && !W->rc) {
    W->rc = rc;
    W->stop = 1;
  }
  case_free(W, cr, rc == 0);
}

/* The terminal progress over every worker, and status.json every few seconds while the
 * engine runs; never waits for the lock (a worker opening a case holds it). */
static int worker_progress(void *user, int done, int total, int step, int n_step) {
  (void)done;
  (void)total;
  worker *w = user;
  work *W = w->W;
  w->frac = (double)w->cur * step / n_step;
  if (run_out_interrupted() || W->stop) return 1;
  if (step < n_step && px_mutex_trylock(W->mu)) {
    double f = W->pr.done;
    for (int i = 0; i < W->n_w; i++) f += W->w[i].frac;
    W->pr.cur = w->cur;
    cli_progress_show(&W->pr, f, step, 0);
    if (W->io->st) campaign_status_write(W->io->st, 0);
    px_mutex_unlock(W->mu);
  }
  return 0;
}

/* The next unit: one handed back by a failed worker first, else this shard's next. -1: none. */
static long unit_next(work *W) {
  if (W->n_retry) return W->retry[--W->n_retry];
  const campaign_unit *u = campaign_queue_next(W->q, W->o->shard.k, &W->cursor);
  return u ? (long)(u - W->q->u) : -1;
}

/* Computes unit u of case cr on w's context and writes its files (no lock held). Returns
 * UNIT_OK, UNIT_CONTEXT_FAILED (the engine failed on this context: err says why), 1 (a
 * file could not be written: err) or 130 (cancelled). */
static int unit_run(worker *w, case_run *cr, const campaign_unit *u, char *err, size_t cap, int *written,
                    double *dt_out) {
  work *W = w->W;
  const design_opts *o = W->o;
  const px_task *task = &W->J->tasks.task[cr->k];
  const double t0 = px_time_now();
  *written = 0;
  *dt_out = 0;
  if (w->fail_after >= 0 && w->fail_after-- == 0) {
    snprintf(err, cap, "%s: injected failure (PXDIFF_TEST_FAIL_WORKER)", w->name);
    return UNIT_CONTEXT_FAILED;
  }
  if (w->case_id != cr->id) {
    px_design_free(w->design);
    w->design = NULL;
    w->case_id = -1;
    if (px_design_create(w->model, &cr->C.f, &w->design)) {
      snprintf(err, cap, "%s: %s", w->name, px_last_error());
      return UNIT_CONTEXT_FAILED;
    }
    w->case_id = cr->id;
  }
  const size_t n3 = (size_t)cr->C.in->n_atom * 3;
  const size_t need = n3 * (size_t)u->n;
  if (need > w->x_floats) {
    free(w->x);
    w->x = malloc(sizeof(float) * need);
    w->x_floats = w->x ? need : 0;
    if (!w->x) {
      snprintf(err, cap, "out of memory");
      return 1;
    }
  }
  px_sampler_config cfg = o->cfg;
  cfg.seed = cr->seed;
  w->cur = (int)u->n;
  w->frac = 0;
  const int st = px_sample(w->model, w->design, &cfg, (int)u->first, (int)u->n, (int)o->chunk, w->x, worker_progress, w);
  w->frac = 0;
  if (st == PX_ERR_CANCELLED || run_out_interrupted()) return 130;
  if (st) {
    snprintf(err, cap, "%s: %s", w->name, px_last_error());
    return UNIT_CONTEXT_FAILED;
  }
  const double dt_sample = px_time_now() - t0;
  for (long s = 0; s < u->n; s++) {
    const long idx = u->first + s;
    if (cr->r.have[idx]) continue;
    char path[4096];
    if (o->pdb) {
      if (run_out_path(&cr->r, idx, 0, path, sizeof path)) {
        snprintf(err, cap, "output path too long");
        return 1;
      }
      if (design_write_pdb(path, cr->C.in, w->x + (size_t)s * n3, task->name, idx, o->binder_first,
                           (const char(*)[2])cr->letter)) {
        snprintf(err, cap, "%s", px_last_error());
        return 1;
      }
    }
    if (run_out_path(&cr->r, idx, cr->cl.L.n_ext - 1, path, sizeof path)) {
      snprintf(err, cap, "output path too long");
      return 1;
    }
    if (design_write_cif(path, cr->C.in, w->x + (size_t)s * n3, task->name, idx, cr->r.trailer)) {
      snprintf(err, cap, "%s", px_last_error());
      return 1;
    }
    (*written)++;
    if (W->io->csv) {
      char file[1400];
      csv_file(file, sizeof file, &cr->r, task->name, cr->seed, idx);
      if (campaign_csv_row(W->io->csv, task->name, cr->seed, idx, file, task->binder_length,
                           dt_sample / (double)u->n)) {
        snprintf(err, cap, "%s", px_last_error());
        return 1;
      }
    }
  }
  *dt_out = px_time_now() - t0;
  return UNIT_OK;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  work *W = w->W;
  const design_opts *o = W->o;
  campaign_status *st = W->io->st;
  campaign_device_status *ds = st && st->n_dev ? &st->dev[w->id] : NULL;
  px_mutex_lock(W->mu);
  for (;;) {
    if (W->rc) break;
    if (run_out_interrupted()) {
      W->rc = 130;
      W->stop = 1;
      break;
    }
    const long ui = unit_next(W);
    if (ui < 0) {
      if (!W->busy) break; /* no worker can hand a unit back any more */
      px_mutex_unlock(W->mu);
      px_sleep(0.01);
      px_mutex_lock(W->mu);
      continue;
    }
    const campaign_unit *u = &W->q->u[ui];
    case_run *cr = case_get(W, u);
    if (!cr) { /* the run fails: the others stop at their next step */
      W->stop = 1;
      break;
    }
    campaign_task_status *ts = st ? &st->task[cr->k] : NULL;
    int missing = 0;
    for (long s = 0; s < u->n; s++) missing |= !cr->r.have[u->first + s];
    if (missing) {
      if (ds) ds->state = "running";
      if (st && strcmp(st->state, "running")) {
        st->state = "running";
        campaign_status_write(st, 1);
      }
      W->busy++;
      px_mutex_unlock(W->mu);
      char err[600] = "";
      int written = 0;
      double dt = 0;
      const int r = unit_run(w, cr, u, err, sizeof err, &written, &dt);
      px_mutex_lock(W->mu);
      W->busy--;
      if (ds) ds->state = "idle";
      cr->written += written;
      W->written += written;
      if (r == UNIT_CONTEXT_FAILED) {
        /* this context is lost: its unit goes to the others; finished designs stay */
        w->dead = 1;
        W->n_alive--;
        if (W->n_retry == W->cap_retry) {
          long *v = realloc(W->retry, sizeof *v * (size_t)(W->cap_retry ? 2 * W->cap_retry : 8));
          if (v) {
            W->retry = v;
            W->cap_retry = W->cap_retry ? 2 * W->cap_retry : 8;
          }
        }
        if (W->n_retry < W->cap_retry) W->retry[W->n_retry++] = ui;
        if (ds) {
          ds->state = "failed";
          snprintf(ds->error, sizeof ds->error, "%s", err);
        }
        size_t l = strlen(cr->failures);
        snprintf(cr->failures + l, sizeof cr->failures - l, "%s%s", l ? "; " : "", err);
        cli_progress_close(&W->pr);
        note_error(W->io, err);
        if (W->n_alive > 0 && W->n_retry > 0) {
          fprintf(stderr, "pxdiff: %s; its unit (%s, seed %llu, samples %ld-%ld) goes to the other %d context%s\n",
                  err, W->J->tasks.task[cr->k].name, (unsigned long long)cr->seed, u->first, u->first + u->n - 1,
                  W->n_alive, W->n_alive == 1 ? "" : "s");
        } else {
          W->rc = cli_fail(err);
          W->stop = 1;
        }
        if (st) campaign_status_write(st, 1);
        break;
      }
      if (r) {
        if (r == 130) {
          if (!W->rc) W->rc = 130;
        } else if (!W->rc) {
          W->rc = say_io(W->io, err);
        }
        W->stop = 1;
        break;
      }
      cr->t_sampling += dt;
      cr->by_worker[w->id] += u->n;
      W->pr.done += (int)u->n;
      if (st) {
        st->busy_s += dt;
        st->computed += u->n;
      }
      if (ds) {
        ds->busy_s += dt;
        ds->units++;
        ds->designs += u->n;
      }
    } else {
      W->pr.done += (int)u->n;
    }
    if (ts) {
      ts->units_done++;
      ts->designs_done += u->n;
      campaign_status_write(st, 0);
    }
    cli_progress_show(&W->pr, W->pr.done, o->cfg.n_step, missing);
    if (--cr->pending == 0) case_finish(W, cr);
  }
  px_mutex_unlock(W->mu);
  return NULL;
}

/* PXDIFF_TEST_FAIL_WORKER=I:K (tests): worker I's context fails at its unit K + 1, as an
 * engine failure would; -1 for the others. */
static long test_fail_after(int id) {
  const char *e = getenv("PXDIFF_TEST_FAIL_WORKER");
  int wi;
  long k;
  return e && sscanf(e, "%d:%ld", &wi, &k) == 2 && wi == id && k >= 0 ? k : -1;
}

/* The workers: one on the main thread with the run's model, or one thread per context each
 * with a handle of the model on that context (px_model_share, px_model_set_device). */
static int workers_make(work *W, const design_opts *o, const design_models *M) {
  W->n_w = o->n_dev;
  W->w = calloc((size_t)W->n_w, sizeof *W->w);
  if (!W->w) return px_fail(PX_ERR_NOMEM, "out of memory");
  for (int i = 0; i < W->n_w; i++) {
    worker *w = &W->w[i];
    w->W = W;
    w->id = i;
    w->case_id = -1;
    w->fail_after = test_fail_after(i);
    int rc;
    if (W->n_w == 1) {
      w->model = M->model;
      rc = PX_OK;
    } else {
      rc = px_model_share(M->model, &w->model);
      if (!rc) rc = px_model_set_device(w->model, o->dev[i].kind, o->dev[i].index, 1, o->precision);
    }
    if (rc) return rc;
    /* the context's name; repeated devices are told apart by their position */
    int same = 0, before = 0;
    for (int j = 0; j < W->n_w; j++)
      if (o->dev[j].kind == o->dev[i].kind && o->dev[j].index == o->dev[i].index) {
        same++;
        before += j < i;
      }
    const char *b = px_model_backend_name(w->model);
    if (same > 1) snprintf(w->name, sizeof w->name, "%s (context %d)", b, before + 1);
    else snprintf(w->name, sizeof w->name, "%s", b);
  }
  W->n_alive = W->n_w;
  return PX_OK;
}

static void workers_free(work *W, const design_models *M) {
  for (int i = 0; i < W->n_w; i++) {
    worker *w = &W->w[i];
    px_design_free(w->design); /* before the handle that made it */
    free(w->x);
    if (w->model && w->model != M->model) px_model_free(w->model);
  }
  free(W->w);
  W->w = NULL;
}

/* Does shard k own a unit of the case? */
static int case_is_mine(const design_opts *o, const campaign_unit *units, long per) {
  for (long c = 0; c < per; c++)
    if (units[c].owner == o->shard.k) return 1;
  return 0;
}

static int run_design(design_opts *o, const design_job *J, const design_models *M, const px_conformers *conf,
                      const char *model_desc, double t_start, const campaign_queue *q, work *Wp) {
  const long per = (o->n_sample + o->chunk - 1) / o->chunk;
  campaign_lock lock;
  campaign_status st;
  campaign_csv csv = {.fd = -1};
  campaign_io io = {0};
  work W = *Wp; /* its workers are made (workers_make); given back at the end */
  memset(&lock, 0, sizeof lock);
  memset(&st, 0, sizeof st);
  int rc = 0;
  W.o = o;
  W.J = J;
  W.M = M;
  W.conf = conf;
  W.model_desc = model_desc;
  W.q = q;
  W.per = per;
  W.io = &io;
  W.mu = px_mutex_new();
  W.cases = calloc((size_t)J->tasks.n * (size_t)o->n_seed, sizeof *W.cases);
  for (int i = 0; i < W.n_w; i++) W.w[i].W = &W;
  if (!W.mu || !W.cases) {
    rc = cli_fail("out of memory");
    goto out;
  }
  /* the shard's lock comes first: a second process of the same K/N writes nothing at all */
  if (o->status_files) {
    if (px_mkdir_p(o->dump_dir)) {
      px_fail(PX_ERR_IO, "cannot create %s: %s", o->dump_dir, strerror(errno));
      rc = cli_fail(px_last_error());
      goto out;
    }
    if (campaign_lock_take(&lock, o->dump_dir, &o->shard)) {
      rc = cli_fail(px_last_error());
      goto out;
    }
  }
  if (write_top_level(o, J)) {
    rc = cli_fail(px_last_error());
    goto out;
  }
  if (o->status_files && o->overwrite) { /* the replaced run's rows go with its files */
    char *p = join(o->dump_dir, "designs.csv");
    if (!p || (remove(p) != 0 && errno != ENOENT)) {
      px_fail(p ? PX_ERR_IO : PX_ERR_NOMEM, "cannot remove %s: %s", p ? p : "designs.csv", strerror(errno));
      free(p);
      rc = cli_fail(px_last_error());
      goto out;
    }
    free(p);
  }
  long designs_total = 0;
  for (long u = 0; u < q->n; u++)
    if (q->u[u].owner == o->shard.k) designs_total += q->u[u].n;
  if (o->status_files) {
    if (campaign_status_init(&st, o->dump_dir, &o->shard, J->tasks.n, o->status_interval) ||
        campaign_csv_open(&csv, o->dump_dir, o->shard.tag) ||
        (o->resume && campaign_csv_listed(o->dump_dir, &io.listed))) {
      rc = cli_fail(px_last_error());
      goto out;
    }
    st.command = o->demo ? "demo" : "design";
    st.device = px_model_backend_name(W.w[0].model);
    st.threads = px_num_threads();
    if (W.n_w > 1) {
      st.dev = calloc((size_t)W.n_w, sizeof *st.dev);
      if (!st.dev) {
        rc = cli_fail("out of memory");
        goto out;
      }
      st.n_dev = W.n_w;
      for (int i = 0; i < W.n_w; i++) {
        snprintf(st.dev[i].name, sizeof st.dev[i].name, "%s", W.w[i].name);
        st.dev[i].state = "idle";
      }
    }
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
  cli_progress_start(&W.pr, "sampling", "designs", (int)designs_total, o->cfg.n_step, o->quiet);
  if (W.n_w == 1) {
    worker_main(&W.w[0]);
  } else {
    int started = 0;
    for (int i = 0; i < W.n_w; i++) {
      if (px_thread_start(&W.w[i].thread, worker_main, &W.w[i])) {
        px_mutex_lock(W.mu);
        if (!W.rc) W.rc = cli_fail("cannot start a worker thread");
        W.stop = 1;
        px_mutex_unlock(W.mu);
        break;
      }
      started++;
    }
    for (int i = 0; i < started; i++) px_thread_join(W.w[i].thread);
  }
  cli_progress_close(&W.pr);
  rc = W.rc;
  /* cases left open: the run stopped (interrupted, or it failed) */
  for (long c = 0; c < (long)J->tasks.n * o->n_seed; c++) {
    case_run *cr = W.cases[c];
    if (!cr) continue;
    if (rc == 130) {
      long mine = 0;
      for (long i = 0; i < o->n_sample; i++) mine += owns_sample(&cr->cl, i);
      fprintf(stderr, "pxdiff: interrupted: %ld of %ld samples of %s seed %llu written (no SUCCESS_FILE); rerun "
                      "with --resume to finish\n", cr->r.n_have + cr->written, mine, J->tasks.task[cr->k].name,
              (unsigned long long)cr->seed);
    }
    case_free(&W, cr, 0);
  }
  run_out_release_signals();
  if (io.st) {
    st.state = rc == 0 ? "done" : rc == 130 ? "interrupted" : "failed";
    campaign_status_write(&st, 1);
  }
  if (!rc && !o->quiet) {
    printf("pxdiff %s: %d task%s x %d seed%s x %ld samples in %s (%d computed", o->demo ? "demo" : "design",
           J->tasks.n, J->tasks.n == 1 ? "" : "s", o->n_seed, o->n_seed == 1 ? "" : "s", o->n_sample, o->dump_dir,
           W.written);
    if (o->shard.n > 1) printf(" by shard %d/%d", o->shard.k, o->shard.n);
    if (W.n_w > 1) {
      int lost = 0;
      for (int i = 0; i < W.n_w; i++) lost += W.w[i].dead;
      printf(" on %d contexts", W.n_w);
      if (lost) printf(", %d of them failed", lost);
    }
    printf(") in %.1f s\n", px_time_now() - t_start);
    if (o->demo) printf("  %s\n", SYNTH_LABEL);
  }
out:
  for (int i = 0; i < W.n_w; i++) W.w[i].W = Wp;
  *Wp = W;
  free(W.cases);
  free(W.retry);
  px_mutex_free(W.mu);
  campaign_listed_free(&io.listed);
  campaign_csv_close(&csv);
  free(st.dev);
  st.dev = NULL;
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

/* ---------------------------------------------------------------- chunk -- */

/* Contexts added on one GPU when a case has too few samples to fill it. */
#define CHUNK_MAX_AUTO_CONTEXTS 4

/* The chunk an earlier run in DUMP_DIR recorded (config.yaml's diffusion_chunk_size), or 0. */
static long recorded_chunk(const char *dump_dir) {
  char *p = join(dump_dir, "config.yaml");
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
