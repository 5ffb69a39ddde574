/* The workers of `pxdiff design` / `pxdiff demo`, one per backend context, and the run
 * loop that drives them over the campaign's queue (design_workers.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli/design_workers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_design.h"
#include "cli/design_record.h"
#include "cli/design_tree.h"
#include "cli/options.h"
#include "cli/run_output.h"
#include "error.h"
#include "io/strbuf.h"
#include "io/structure.h"
#include "platform.h"

/* ------------------------------------------------------------- one case -- */

/* The campaign side of a run: status file, designs.csv (both NULL/-1 when off). */
struct campaign_io {
  campaign_status *st;
  campaign_csv *csv;
  campaign_listed listed; /* --resume: the files designs.csv lists already */
};

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

/* One (task, seed) case while this shard has units of it to settle. */
struct case_run {
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
        char *p = px_path_join(cr->cl.dir, cr->cl.L.markers[m]);
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
  /* The unit's files, written by the process's threads (each file is formatted and written
   * atomically on its own; the GPU waits for them: on one core 100 CIFs of ~1000 atoms took
   * 1.3 s, 13 ms each, mostly the shortest-digit coordinates), then their CSV rows in sample
   * order. On a failure the first failing sample's message is reported; the files written
   * still get their rows (--resume also adds a row for a design without one). */
  long bad = -1;
  char bad_msg[1024] = "";
  const long fail_write = run_out_test_fail_write();
  unsigned char *ok = calloc((size_t)u->n, 1);
  if (!ok) {
    snprintf(err, cap, "out of memory");
    return 1;
  }
#pragma omp parallel for num_threads(px_num_threads()) schedule(dynamic)
  for (long s = 0; s < u->n; s++) {
    const long idx = u->first + s;
    if (cr->r.have[idx]) continue;
    char path[4096];
    const char *why = NULL;
    if (o->pdb) {
      if (run_out_path(&cr->r, idx, 0, path, sizeof path))
        why = "output path too long";
      else if (design_write_pdb(path, cr->C.in, w->x + (size_t)s * n3, task->name, idx, o->binder_first,
                                (const char(*)[2])cr->letter))
        why = px_last_error();
    }
    if (!why) {
      if (idx == fail_write)
        why = "injected write failure (PXDIFF_TEST_FAIL_WRITE)";
      else if (run_out_path(&cr->r, idx, cr->cl.L.n_ext - 1, path, sizeof path))
        why = "output path too long";
      else if (design_write_cif(path, cr->C.in, w->x + (size_t)s * n3, task->name, idx, cr->r.trailer))
        why = px_last_error();
    }
    if (!why) {
      ok[s] = 1;
      continue;
    }
#pragma omp critical(design_write_failure)
    if (bad < 0 || s < bad) {
      bad = s;
      snprintf(bad_msg, sizeof bad_msg, "%s", why);
    }
  }
  for (long s = 0; s < u->n; s++) {
    if (!ok[s]) continue;
    const long idx = u->first + s;
    (*written)++;
    if (W->io->csv) {
      char file[1400];
      csv_file(file, sizeof file, &cr->r, task->name, cr->seed, idx);
      if (campaign_csv_row(W->io->csv, task->name, cr->seed, idx, file, task->binder_length,
                           dt_sample / (double)u->n)) {
        snprintf(err, cap, "%s", px_last_error());
        free(ok);
        return 1;
      }
    }
  }
  free(ok);
  if (bad >= 0) {
    snprintf(err, cap, "%s", bad_msg);
    return 1;
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

int workers_make(work *W, const design_opts *o, const design_models *M) {
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

void workers_free(work *W, const design_models *M) {
  for (int i = 0; i < W->n_w; i++) {
    worker *w = &W->w[i];
    px_design_free(w->design); /* before the handle that made it */
    free(w->x);
    if (w->model && w->model != M->model) px_model_free(w->model);
  }
  free(W->w);
  W->w = NULL;
}

int run_design(design_opts *o, const design_job *J, const design_models *M, const px_conformers *conf,
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
    char *p = px_path_join(o->dump_dir, "designs.csv");
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
