/* Campaign scale for `pxdiff design` (campaign.h, docs/campaign.md).
 *
 * Directory listing, O_EXCL/O_APPEND files, link, kill(pid, 0) and gethostname are POSIX
 * calls (Linux and macOS alike) that src/platform.h does not offer yet; they are kept in the
 * "system" section below so that they can move there unchanged, as run_output.c does. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "cli/campaign.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/options.h"
#include "cli/progress.h"
#include "error.h"
#include "io/doc.h"
#include "io/strbuf.h"
#include "io/structure.h"
#include "platform.h"
#include "pxdiff.h"

/* ----------------------------------------------------------------- system -- */

static int sys_is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int sys_exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

/* Names in dir (without "." and ".."), sorted; *names NULL-safe to free. */
static int sys_list(const char *dir, char ***names, int *n) {
  *names = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  int cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      char **v = realloc(*names, sizeof *v * (size_t)cap);
      if (!v) break;
      *names = v;
    }
    if (!((*names)[*n] = strdup(e->d_name))) break;
    (*n)++;
  }
  closedir(d);
  for (int i = 1; i < *n; i++) /* insertion sort: directories of task files are small */
    for (int j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
      char *t = (*names)[j];
      (*names)[j] = (*names)[j - 1];
      (*names)[j - 1] = t;
    }
  return 0;
}

static void sys_host(char *buf, size_t cap) {
  if (gethostname(buf, cap) != 0 || !*buf) snprintf(buf, cap, "unknown-host");
  buf[cap - 1] = '\0';
  for (char *p = buf; *p; p++)
    if (*p == ' ' || *p == '\n' || *p == '"' || *p == '\\') *p = '_';
}

static long sys_pid(void) { return (long)getpid(); }

/* 1 alive, 0 gone. */
static int sys_pid_alive(long pid) { return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM); }

/* Seconds since the file was last modified (0 when unknown). */
static double sys_age_s(const char *p) {
  struct stat st;
  if (stat(p, &st) != 0) return 0;
  return difftime(time(NULL), st.st_mtime);
}

/* Sets the file's modification time to now. */
static void sys_touch(const char *p) { utimensat(AT_FDCWD, p, NULL, 0); }

static int sys_write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* ---------------------------------------------------------------- helpers -- */

static int is_task_file(const char *name) {
  if (name[0] == '.') return 0;
  const char *dot = strrchr(name, '.');
  return dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml") || !strcmp(dot, ".json"));
}


int campaign_expand_inputs(const char *const *in, int n_in, char ***out, int *n_out) {
  char **v = NULL;
  int n = 0, cap = 0, rc = PX_OK;
  for (int i = 0; i < n_in && !rc; i++) {
    if (!sys_is_dir(in[i])) {
      rc = campaign_push_string(&v, &n, &cap, in[i]);
      continue;
    }
    char **names;
    int m, found = 0;
    if (sys_list(in[i], &names, &m)) {
      rc = px_fail(PX_ERR_IO, "cannot list %s: %s", in[i], strerror(errno));
      break;
    }
    for (int j = 0; j < m && !rc; j++) {
      if (!is_task_file(names[j])) continue;
      char *p = px_path_join(in[i], names[j]);
      if (!p) {
        rc = px_fail(PX_ERR_NOMEM, "out of memory");
        break;
      }
      if (!sys_is_dir(p)) {
        rc = campaign_push_string(&v, &n, &cap, p);
        found++;
      }
      free(p);
    }
    campaign_free_strings(names, m);
    if (!rc && !found) rc = px_fail(PX_ERR_INPUT, "%s holds no task file (*.yaml, *.yml or *.json)", in[i]);
  }
  if (rc) {
    campaign_free_strings(v, n);
    return rc;
  }
  *out = v;
  *n_out = n;
  return PX_OK;
}

int campaign_write_atomic(const char *path, const void *data, size_t n, const char *tag) {
  size_t l = strlen(path) + strlen(tag) + 8;
  char *tmp = malloc(l);
  if (!tmp) return px_fail(PX_ERR_NOMEM, "out of memory");
  snprintf(tmp, l, "%s.%s.tmp", path, tag);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int rc = PX_OK;
  if (fd < 0 || sys_write_all(fd, data, n) != 0) {
    rc = px_fail(PX_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    unlink(tmp);
  } else if (close(fd) != 0 || px_file_rename(tmp, path) != 0) {
    rc = px_fail(PX_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
  }
  free(tmp);
  return rc;
}

/* ------------------------------------------------------------------ queue -- */

int campaign_queue_make(campaign_queue *q, int n_task, int n_seed, long n_sample, long chunk,
                        const campaign_shard *s) {
  memset(q, 0, sizeof *q);
  if (chunk < 1 || n_sample < 1) return px_fail(PX_ERR_INPUT, "campaign: bad chunking");
  const long per = (n_sample + chunk - 1) / chunk;
  const long total = per * (long)n_task * (long)n_seed;
  q->u = malloc(sizeof *q->u * (size_t)(total ? total : 1));
  if (!q->u) return px_fail(PX_ERR_NOMEM, "out of memory for %ld work units", total);
  long u = 0;
  for (int si = 0; si < n_seed; si++)
    for (int t = 0; t < n_task; t++)
      for (long c = 0; c < per; c++, u++) {
        const long first = c * chunk;
        q->u[u] = (campaign_unit){.task = t, .seed_index = si, .first = first,
                                  .n = n_sample - first < chunk ? n_sample - first : chunk, .unit = u,
                                  .owner = (int)(u % s->n) + 1};
      }
  q->n = total;
  return PX_OK;
}

const campaign_unit *campaign_queue_next(const campaign_queue *q, int shard_k, long *cursor) {
  for (long u = *cursor; u < q->n; u++)
    if (q->u[u].owner == shard_k) {
      *cursor = u + 1;
      return &q->u[u];
    }
  *cursor = q->n;
  return NULL;
}

void campaign_queue_free(campaign_queue *q) {
  free(q->u);
  memset(q, 0, sizeof *q);
}

/* ------------------------------------------------------------------- lock -- */

static void lock_name(char *buf, size_t cap, const campaign_shard *s) {
  if (s->n == 1) snprintf(buf, cap, "run.lock");
  else snprintf(buf, cap, "%s.lock", s->tag);
}

int campaign_lock_probe(const char *path, long *pid, char *host, size_t cap) {
  *pid = 0;
  if (cap) host[0] = '\0';
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[512] = "";
  int ok = fgets(line, sizeof line, f) != NULL;
  fclose(f);
  char h[256] = "";
  if (!ok || sscanf(line, "pid %ld host %255s", pid, h) != 2) return -1;
  snprintf(host, cap, "%s", h);
  char me[256];
  sys_host(me, sizeof me);
  if (strcmp(me, h)) return sys_age_s(path) > CAMPAIGN_LOCK_STALE_S ? 0 : 2;
  return sys_pid_alive(*pid);
}

int campaign_lock_take(campaign_lock *L, const char *dump_dir, const campaign_shard *s) {
  memset(L, 0, sizeof *L);
  char name[96];
  lock_name(name, sizeof name, s);
  size_t ld = strlen(dump_dir);
  int w = snprintf(L->path, sizeof L->path, "%s%s%s", dump_dir, ld && dump_dir[ld - 1] == '/' ? "" : "/", name);
  if (w < 0 || (size_t)w >= sizeof L->path) return px_fail(PX_ERR_INPUT, "output path too long under %s", dump_dir);
  char host[256], text[400];
  sys_host(host, sizeof host);
  snprintf(text, sizeof text, "pid %ld host %s\n", sys_pid(), host);
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = open(L->path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) {
      int bad = sys_write_all(fd, text, strlen(text));
      if (close(fd) != 0 || bad) {
        unlink(L->path);
        return px_fail(PX_ERR_IO, "cannot write %s: %s", L->path, strerror(errno));
      }
      L->held = 1;
      return PX_OK;
    }
    if (errno != EEXIST) return px_fail(PX_ERR_IO, "cannot create %s: %s", L->path, strerror(errno));
    long pid;
    char h[256];
    int st = campaign_lock_probe(L->path, &pid, h, sizeof h);
    const char *who = s->n == 1 ? "this run" : s->tag;
    if (st == 1)
      return px_fail(PX_ERR_INPUT, "%s of %s is already running (pid %ld, %s holds %s); not started", who, dump_dir,
                     pid, h, L->path);
    if (st == 2)
      return px_fail(PX_ERR_INPUT,
                     "%s of %s is held by pid %ld on host %s (%s, alive within the last %d minutes); not started. "
                     "If that process is gone, remove the lock file and rerun with --resume",
                     who, dump_dir, pid, h, L->path, CAMPAIGN_LOCK_STALE_S / 60);
    if (st == -1)
      return px_fail(PX_ERR_INPUT, "%s exists but names no process; if no run of %s is going, remove it", L->path,
                     dump_dir);
    /* st == 0: its process is gone (killed); the lock is stale */
    if (unlink(L->path) != 0 && errno != ENOENT)
      return px_fail(PX_ERR_IO, "cannot remove the stale lock %s: %s", L->path, strerror(errno));
  }
  return px_fail(PX_ERR_IO, "cannot take %s (another process took it meanwhile)", L->path);
}

void campaign_lock_release(campaign_lock *L) {
  if (L->held) unlink(L->path);
  L->held = 0;
}

/* ------------------------------------------------------------ designs.csv -- */

static const char CSV_HEADER[] = "task,seed,sample,file,binder_length,seconds\n";

int campaign_csv_open(campaign_csv *c, const char *dump_dir, const char *tag) {
  c->fd = -1;
  char *p = px_path_join(dump_dir, "designs.csv");
  size_t l = p ? strlen(p) + strlen(tag) + 8 : 0;
  char *tmp = p ? malloc(l) : NULL;
  if (!p || !tmp) {
    free(p);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  snprintf(tmp, l, "%s.%s.tmp", p, tag);
  int rc = PX_OK;
  if (!sys_exists(p)) {
    /* Created whole with its header: a temporary file linked into place (link fails when
     * another shard created it first), so no reader or appender sees a file without it. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int bad = fd < 0 || sys_write_all(fd, CSV_HEADER, sizeof CSV_HEADER - 1) != 0;
    if (fd >= 0 && close(fd) != 0) bad = 1;
    if (bad) rc = px_fail(PX_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    else if (link(tmp, p) != 0 && errno != EEXIST) rc = px_fail(PX_ERR_IO, "cannot create %s: %s", p, strerror(errno));
  }
  unlink(tmp); /* also a leftover of this shard killed while creating the file */
  if (!rc && (c->fd = open(p, O_WRONLY | O_APPEND)) < 0) rc = px_fail(PX_ERR_IO, "cannot open %s: %s", p, strerror(errno));
  free(tmp);
  free(p);
  return rc;
}

int campaign_csv_row(campaign_csv *c, const char *task, uint64_t seed, long sample, const char *file,
                     int binder_length, double seconds) {
  if (c->fd < 0) return PX_OK;
  px_strbuf b = {0};
  campaign_csv_format(&b, task, seed, sample, file, binder_length, seconds);
  int rc = PX_OK;
  if (b.oom) rc = px_fail(PX_ERR_NOMEM, "out of memory");
  /* one write() of the whole line: O_APPEND places it at the end in one piece */
  else if (write(c->fd, b.p, b.n) != (ssize_t)b.n) rc = px_fail(PX_ERR_IO, "cannot append to designs.csv: %s", strerror(errno));
  free(b.p);
  return rc;
}

static char *read_text(const char *path);

int campaign_csv_listed(const char *dump_dir, campaign_listed *out) {
  memset(out, 0, sizeof *out);
  char *p = px_path_join(dump_dir, "designs.csv");
  if (!p) return px_fail(PX_ERR_NOMEM, "out of memory");
  char *text = sys_exists(p) ? read_text(p) : NULL;
  free(p);
  if (!text) return PX_OK;
  int rc = campaign_csv_parse(text, strlen(text), out);
  free(text);
  return rc;
}

void campaign_csv_close(campaign_csv *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

/* ------------------------------------------------------------ status.json -- */

static void utc_text(char *buf, size_t cap, double unix_s) {
  time_t t = (time_t)unix_s;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static double wall_now(void) {
  struct timespec ts = {0, 0};
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int campaign_status_init(campaign_status *st, const char *dump_dir, const campaign_shard *s, int n_task,
                         double interval) {
  memset(st, 0, sizeof *st);
  st->shard = *s;
  st->tag = st->shard.tag;
  char name[96];
  if (s->n == 1) snprintf(name, sizeof name, "status.json");
  else snprintf(name, sizeof name, "status_%s.json", s->tag);
  size_t ld = strlen(dump_dir);
  int w = snprintf(st->path, sizeof st->path, "%s%s%s", dump_dir, ld && dump_dir[ld - 1] == '/' ? "" : "/", name);
  if (w < 0 || (size_t)w >= sizeof st->path) return px_fail(PX_ERR_INPUT, "output path too long under %s", dump_dir);
  st->n_task = n_task;
  st->task = calloc((size_t)(n_task ? n_task : 1), sizeof *st->task);
  if (!st->task) return px_fail(PX_ERR_NOMEM, "out of memory");
  st->t0 = px_time_now();
  st->last_write = -1e30;
  st->interval = interval;
  st->state = "starting";
  return PX_OK;
}

int campaign_status_write(campaign_status *st, int force) {
  if (!st->task) return PX_OK;
  const double now = px_time_now();
  if (!force && now - st->last_write < st->interval) return PX_OK;
  st->last_write = now;
  long ut = 0, ud = 0, dt = 0, dd = 0;
  for (int k = 0; k < st->n_task; k++) {
    ut += st->task[k].units_total;
    ud += st->task[k].units_done;
    dt += st->task[k].designs_total;
    dd += st->task[k].designs_done;
  }
  const double el = now - st->t0, wnow = wall_now();
  char t_start[32], t_now[32], host[256];
  utc_text(t_start, sizeof t_start, wnow - el);
  utc_text(t_now, sizeof t_now, wnow);
  sys_host(host, sizeof host);
  px_strbuf b = {0};
  px_sb_printf(&b, "{\n  \"pxdiff_version\": \"%s\",\n  \"command\": \"%s\",\n  \"shard\": \"%d/%d\",\n",
               PXDIFF_VERSION, st->command ? st->command : "design", st->shard.k, st->shard.n);
  px_sb_printf(&b, "  \"pid\": %ld,\n  \"host\": ", sys_pid());
  px_sb_json_string(&b, host);
  px_sb_printf(&b, ",\n  \"state\": \"%s\",\n  \"started\": \"%s\",\n  \"updated\": \"%s\",\n  \"elapsed_s\": %.1f,\n",
               st->state, t_start, t_now, el);
  px_sb_printf(&b, "  \"units\": {\"done\": %ld, \"total\": %ld},\n", ud, ut);
  px_sb_printf(&b, "  \"designs\": {\"done\": %ld, \"total\": %ld, \"computed\": %ld},\n", dd, dt, st->computed);
  /* rate from what this process computed (resumed designs cost nothing) */
  if (st->computed > 0 && st->busy_s > 0) {
    const double per_h = 3600.0 * (double)st->computed / el;
    px_sb_printf(&b, "  \"designs_per_hour\": %.1f,\n  \"eta_s\": %.0f,\n", per_h, (double)(dt - dd) * 3600.0 / per_h);
  } else {
    px_sb_printf(&b, "  \"designs_per_hour\": null,\n  \"eta_s\": %s,\n", dd == dt ? "0" : "null");
  }
  px_sb_str(&b, "  \"tasks\": [");
  for (int k = 0; k < st->n_task; k++) {
    const campaign_task_status *t = &st->task[k];
    px_sb_printf(&b, "%s\n    {\"task\": ", k ? "," : "");
    px_sb_json_string(&b, t->name ? t->name : "");
    px_sb_printf(&b, ", \"units_done\": %ld, \"units_total\": %ld, \"designs_done\": %ld, \"designs_total\": %ld}",
                 t->units_done, t->units_total, t->designs_done, t->designs_total);
  }
  px_sb_str(&b, "\n  ],\n  \"devices\": [");
  if (!st->n_dev) {
    px_sb_str(&b, "{\"device\": ");
    px_sb_json_string(&b, st->device ? st->device : "cpu");
    px_sb_printf(&b, ", \"threads\": %d, \"busy_s\": %.1f, \"load\": %.3f}", st->threads, st->busy_s,
                 el > 0 ? st->busy_s / el : 0.0);
  }
  for (int i = 0; i < st->n_dev; i++) { /* one entry per backend context */
    const campaign_device_status *d = &st->dev[i];
    px_sb_str(&b, i ? ",\n    {\"device\": " : "\n    {\"device\": ");
    px_sb_json_string(&b, d->name);
    px_sb_printf(&b, ", \"threads\": %d, \"state\": \"%s\", \"units\": %ld, \"designs\": %ld, \"busy_s\": %.1f, "
                 "\"load\": %.3f, \"error\": ", st->threads, d->state ? d->state : "idle", d->units, d->designs,
                 d->busy_s, el > 0 ? d->busy_s / el : 0.0);
    if (d->error[0]) px_sb_json_string(&b, d->error);
    else px_sb_str(&b, "null");
    px_sb_str(&b, "}");
  }
  px_sb_str(&b, st->n_dev ? "\n  ],\n  \"last_error\": " : "],\n  \"last_error\": ");
  if (st->last_error[0]) px_sb_json_string(&b, st->last_error);
  else px_sb_str(&b, "null");
  px_sb_str(&b, "\n}\n");
  int rc = b.oom ? px_fail(PX_ERR_NOMEM, "out of memory") : campaign_write_atomic(st->path, b.p, b.n, st->tag);
  if (st->lock_path) sys_touch(st->lock_path);
  free(b.p);
  return rc;
}

void campaign_status_free(campaign_status *st) {
  free(st->task);
  st->task = NULL;
}

/* ------------------------------------------------------------ pxdiff status -- */

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  px_strbuf b = {0};
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) px_sb_put(&b, buf, n);
  fclose(f);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (!b.p) return calloc(1, 1);
  return b.p;
}

typedef struct {
  long n_sample;
  char **task;
  int n_task;
  unsigned long long *seed;
  int n_seed;
} run_plan;

static void plan_free(run_plan *p) {
  campaign_free_strings(p->task, p->n_task);
  free(p->seed);
}

/* A JSON or YAML file of the run as a tree (the project's own parsers). */
static int read_doc(const char *path, int yaml, px_doc *d) {
  memset(d, 0, sizeof *d);
  char *text = read_text(path);
  if (!text) return px_fail(PX_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  char err[512];
  int rc = yaml ? px_yaml_parse(text, strlen(text), path, d, err, sizeof err)
                : px_json_parse(text, strlen(text), path, d, err, sizeof err);
  free(text);
  return rc ? px_fail(rc, "%s", err) : PX_OK;
}

/* The run's tasks (input_tasks.json), seeds and N_sample (config.yaml). */
static int plan_read(const char *dir, run_plan *P) {
  memset(P, 0, sizeof *P);
  char *cp = px_path_join(dir, "config.yaml"), *tp = px_path_join(dir, "input_tasks.json");
  if (!cp || !tp) {
    free(cp);
    free(tp);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  px_doc conf, tasks;
  memset(&conf, 0, sizeof conf);
  memset(&tasks, 0, sizeof tasks);
  int rc = PX_OK;
  if (!sys_exists(cp) || !sys_exists(tp)) {
    rc = px_fail(PX_ERR_INPUT, "%s holds no pxdiff design run (no %s)", dir,
                 !sys_exists(cp) ? "config.yaml" : "input_tasks.json");
    goto out;
  }
  if ((rc = read_doc(cp, 1, &conf)) || (rc = read_doc(tp, 0, &tasks))) goto out;
  const px_doc *seeds = px_doc_get(&conf, "seeds");
  const px_doc *n = px_doc_get(px_doc_get(&conf, "sample_diffusion"), "N_sample");
  if (!seeds || seeds->type != PX_DOC_LIST || !n || n->type != PX_DOC_INT || n->i < 1 || tasks.type != PX_DOC_LIST) {
    rc = px_fail(PX_ERR_FORMAT, "%s: not a pxdiff design run's config.yaml / input_tasks.json", dir);
    goto out;
  }
  P->n_sample = (long)n->i;
  P->seed = calloc((size_t)seeds->n + 1, sizeof *P->seed);
  P->task = calloc((size_t)tasks.n + 1, sizeof *P->task);
  if (!P->seed || !P->task) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (int i = 0; i < seeds->n; i++) {
    if (seeds->item[i].type != PX_DOC_INT || seeds->item[i].i < 0) {
      rc = px_fail(PX_ERR_FORMAT, "%s: seeds hold a value that is not a seed", cp);
      goto out;
    }
    P->seed[P->n_seed++] = (unsigned long long)seeds->item[i].i;
  }
  for (int i = 0; i < tasks.n; i++) {
    const px_doc *name = px_doc_get(&tasks.item[i], "name");
    if (!name || name->type != PX_DOC_STR || !(P->task[P->n_task] = strdup(name->text))) {
      rc = px_fail(PX_ERR_FORMAT, "%s: task %d has no name", tp, i + 1);
      goto out;
    }
    P->n_task++;
  }
out:
  px_doc_free(&conf);
  px_doc_free(&tasks);
  free(cp);
  free(tp);
  return rc;
}

static int complete_cif(const char *path) {
  char last[128];
  return px_structure_file_last_line(path, last, sizeof last) == 0 && !strncmp(last, "# pxdiff-complete run=", 22);
}

static int status_main(const char *dir) {
  run_plan P;
  if (plan_read(dir, &P)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    plan_free(&P);
    return 1;
  }
  long total = 0, done = 0;
  int cases_done = 0, n_case = P.n_task * P.n_seed;
  printf("%s: %d task%s x %d seed%s x %ld samples\n", dir, P.n_task, P.n_task == 1 ? "" : "s", P.n_seed,
         P.n_seed == 1 ? "" : "s", P.n_sample);
  for (int si = 0; si < P.n_seed; si++)
    for (int t = 0; t < P.n_task; t++) {
      char rel[1024], path[4400], tmp[4410];
      snprintf(rel, sizeof rel, "%s/seed_%llu", P.task[t], P.seed[si]);
      snprintf(path, sizeof path, "%s/%s/SUCCESS_FILE", dir, rel);
      const int success = sys_exists(path);
      long have = 0, n_tmp = 0;
      for (long i = 0; i < P.n_sample; i++) {
        snprintf(path, sizeof path, "%s/%s/predictions/%s_sample_%ld.cif", dir, rel, P.task[t], i);
        if (complete_cif(path)) have++;
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        if (sys_exists(tmp)) n_tmp++;
      }
      total += P.n_sample;
      done += have;
      cases_done += success;
      const char *state = success ? "done"
                          : have == P.n_sample ? "samples complete, no SUCCESS_FILE yet (rerun any shard with --resume)"
                          : have || n_tmp ? "in progress or interrupted"
                                        : "not started";
      printf("  %-32s seed %-8llu %6ld/%-6ld %s%s\n", P.task[t], P.seed[si], have, P.n_sample, state,
             n_tmp ? " (a sample being written)" : "");
    }
  printf("designs: %ld of %ld done, %ld missing; cases: %d of %d done\n", done, total, total - done, cases_done,
         n_case);
  /* the shards: their lock files and status files */
  char **names;
  int m;
  if (sys_list(dir, &names, &m) == 0) {
    for (int j = 0; j < m; j++) {
      const char *nm = names[j];
      int k = 0, n = 0;
      char tail[16] = "";
      const int is_status = sscanf(nm, "status_shard_%d_of_%d%15s", &k, &n, tail) == 3 && !strcmp(tail, ".json");
      const int is_plain = !strcmp(nm, "status.json");
      if (!is_status && !is_plain) continue;
      if (is_plain) k = n = 1;
      char *sp = px_path_join(dir, nm);
      px_doc sd;
      memset(&sd, 0, sizeof sd);
      const int have_doc = sp && read_doc(sp, 0, &sd) == PX_OK;
      const px_doc *d_state = have_doc ? px_doc_get(&sd, "state") : NULL;
      const px_doc *d_err = have_doc ? px_doc_get(&sd, "last_error") : NULL;
      const px_doc *d_units = have_doc ? px_doc_get(&sd, "units") : NULL;
      const px_doc *d_rate = have_doc ? px_doc_get(&sd, "designs_per_hour") : NULL;
      const px_doc *d_eta = have_doc ? px_doc_get(&sd, "eta_s") : NULL;
      const px_doc *ud = px_doc_get(d_units, "done"), *ut = px_doc_get(d_units, "total");
      const char *state = d_state && d_state->type == PX_DOC_STR ? d_state->text : "unreadable";
      char lk[128];
      if (n == 1) snprintf(lk, sizeof lk, "run.lock");
      else snprintf(lk, sizeof lk, "shard_%d_of_%d.lock", k, n);
      char *lp = px_path_join(dir, lk);
      long pid = 0;
      char host[256] = "";
      int alive = lp ? campaign_lock_probe(lp, &pid, host, sizeof host) : -1;
      printf("shard %d/%d: ", k, n);
      if (!strcmp(state, "running") || !strcmp(state, "starting")) {
        if (alive == 1) printf("running (pid %ld)", pid);
        else if (alive == 2) printf("running on %s (pid %ld)", host, pid);
        else printf("stopped without finishing (killed?): rerun it with --resume");
      } else {
        printf("%s", state);
      }
      if (ud && ut && ud->type == PX_DOC_INT && ut->type == PX_DOC_INT) printf(", %lld/%lld units", ud->i, ut->i);
      if (d_rate && (d_rate->type == PX_DOC_FLOAT || d_rate->type == PX_DOC_INT)) printf(", %.1f designs/h", d_rate->f);
      if (d_eta && (d_eta->type == PX_DOC_FLOAT || d_eta->type == PX_DOC_INT) && (alive == 1 || alive == 2)) {
        char dd[32];
        cli_fmt_duration(dd, sizeof dd, d_eta->f);
        printf(", ETA %s", dd);
      }
      /* several contexts (`--device cuda:0,2`): how many, and which failed */
      const px_doc *d_dev = have_doc ? px_doc_get(&sd, "devices") : NULL;
      if (d_dev && d_dev->type == PX_DOC_LIST && d_dev->n > 1) {
        int failed = 0;
        for (int i = 0; i < d_dev->n; i++) {
          const px_doc *ds = px_doc_get(&d_dev->item[i], "state");
          failed += ds && ds->type == PX_DOC_STR && !strcmp(ds->text, "failed");
        }
        printf(", %d contexts", d_dev->n);
        if (failed) printf(" (%d failed)", failed);
      }
      if (d_err && d_err->type == PX_DOC_STR) printf("; last error: %s", d_err->text);
      printf("\n");
      px_doc_free(&sd);
      free(sp);
      free(lp);
    }
    campaign_free_strings(names, m);
  }
  plan_free(&P);
  return 0;
}

int cmd_status(int argc, char **argv) {
  const char *pos[1] = {NULL};
  int n_pos = 0;
  const cli_command c = {.name = "status",
                         .args = "DIR",
                         .summary = "what a `pxdiff design` run (all its shards) has done, is doing and still misses",
                         .details = "Reads DIR's files only (config.yaml, input_tasks.json, the sample files and\n"
                                    "markers, each shard's status and lock file); changes nothing.",
                         .opts = NULL,
                         .n_opts = 0,
                         .pos_name = "DIR",
                         .min_pos = 1,
                         .max_pos = 1};
  int st = cli_parse(&c, argc, argv, pos, &n_pos);
  if (st != CLI_RUN) return st;
  return status_main(pos[0]);
}
