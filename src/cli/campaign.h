/* Campaign scale for `pxdiff design` (docs/campaign.md): many task files in one process,
 * shards of one run spread over processes and machines, and a run that reports on itself.
 *
 * Units and shards. The work of a run is a list of units, one per chunk of samples of a
 * (task, seed) case: cases in PXDesign's order (every task for the first seed, then the next
 * seed), within a case chunk c covering samples [c*CHUNK, min((c+1)*CHUNK, N_sample)). Unit u
 * (numbered over the whole run) belongs to shard (u mod N) + 1 of `--shard K/N`. A design
 * depends only on the task, the seed, the sample index and the settings, so the union of the
 * N shards' files is the unsharded run's, byte for byte, wherever each shard ran. Each shard
 * writes only its own samples' files (and their ".tmp" siblings); the files every shard
 * writes (config.yaml, input_tasks.json, a case's summary.json and SUCCESS_FILE) go through
 * temporary names of their own (NAME.<tag>.tmp, tag = shard_K_of_N), so two shards never
 * write one path; a rename puts a complete file in place. A case's markers are written by
 * whichever shard, after its own last sample of that case, finds every sample file of the
 * case complete (the trailer of this run): at least one does, and two that do write the
 * same settings and file list.
 *
 * The queue (campaign_queue) is the list of units in order with their owners; one process
 * pulls its own units front to back. Several workers of one process (one per device, when
 * the engine has one backend context per device) would pull from the same list.
 *
 * A shard holds DUMP/<tag>.lock (created O_EXCL; "pid host" inside) while it runs: a second
 * process given the same K/N is refused, naming the holder; a lock whose process is gone
 * (same host, no such pid) is stale and taken over. Files per shard: DUMP/status.json
 * (unsharded) or DUMP/status_shard_K_of_N.json, rewritten atomically every few seconds;
 * DUMP/designs.csv, shared, one row per design appended with one write() of a whole line
 * after the design's files are in place (O_APPEND: rows of concurrent shards never mix on a
 * local file system). */
#ifndef PX_CLI_CAMPAIGN_H
#define PX_CLI_CAMPAIGN_H

#include <stddef.h>
#include <stdint.h>

#include "io/strbuf.h"

typedef struct {
  int k, n;      /* shard k of n, 1 <= k <= n; 1/1 is the whole run */
  char tag[48];  /* "shard_K_of_N" */
} campaign_shard;

/* "K/N" (1 <= K <= N <= 100000); NULL or "" is 1/1. */
int campaign_parse_shard(const char *text, campaign_shard *s);
int campaign_owns(const campaign_shard *s, long unit);

/* A directory given with -i stands for its task files (*.yaml, *.yml, *.json, sorted by
 * name, hidden files skipped); files are kept as given. *out: new strings, free with
 * campaign_free_strings. A directory without task files is refused. */
int campaign_expand_inputs(const char *const *in, int n_in, char ***out, int *n_out);
void campaign_free_strings(char **v, int n);
/* Appends a copy of s to the growable list (*v, *n, *cap). */
int campaign_push_string(char ***v, int *n, int *cap, const char *s);

/* Writes PATH through PATH.<tag>.tmp and a rename (tag distinguishes concurrent writers). */
int campaign_write_atomic(const char *path, const void *data, size_t n, const char *tag);

/* ------------------------------------------------------------------ queue -- */

typedef struct {
  int task, seed_index; /* the case */
  long first, n;        /* samples [first, first + n) */
  long unit;            /* index over the whole run */
  int owner;            /* shard 1..N */
} campaign_unit;

typedef struct {
  campaign_unit *u;
  long n;
} campaign_queue;

/* Units of n_task tasks x n_seed seeds, n_sample samples in chunks of chunk. */
int campaign_queue_make(campaign_queue *q, int n_task, int n_seed, long n_sample, long chunk,
                        const campaign_shard *s);
void campaign_queue_free(campaign_queue *q);
/* The next unit of shard k at or after *cursor, or NULL; *cursor moves past it. A worker
 * pulls its units this way; workers of one process (one per device, later) would share the
 * cursor (then atomic) and each keep the design cache of the case it is in. */
const campaign_unit *campaign_queue_next(const campaign_queue *q, int shard_k, long *cursor);

/* ------------------------------------------------------------------- lock -- */

typedef struct {
  char path[4096];
  int held;
} campaign_lock;

/* DUMP/<name>: "run.lock" for 1/1, else "<tag>.lock". */
int campaign_lock_take(campaign_lock *L, const char *dump_dir, const campaign_shard *s);
void campaign_lock_release(campaign_lock *L);
/* A lock file's holder: 1 alive (this host, the pid exists), 0 stale (this host, no such
 * pid; or another host and no heartbeat for CAMPAIGN_LOCK_STALE_S), 2 another host, recently
 * alive; -1 unreadable. pid/host filled when readable. A running shard touches its lock at
 * every status rewrite (every few seconds while it samples), so that a shard requeued on
 * another node after its node died takes the lock over. */
#define CAMPAIGN_LOCK_STALE_S 900
int campaign_lock_probe(const char *path, long *pid, char *host, size_t cap);

/* ------------------------------------------------------------ designs.csv -- */

typedef struct {
  int fd;
} campaign_csv;

/* One row's text (with its newline) as campaign_csv_row appends it. */
void campaign_csv_format(px_strbuf *b, const char *task, uint64_t seed, long sample, const char *file,
                         int binder_length, double seconds);
/* Opens (creates with its header line when absent) DUMP/designs.csv for appending. */
int campaign_csv_open(campaign_csv *c, const char *dump_dir, const char *tag);
/* One row: task,seed,sample,file,binder_length,seconds (file relative to DUMP; seconds < 0:
 * unknown, written empty). */
int campaign_csv_row(campaign_csv *c, const char *task, uint64_t seed, long sample, const char *file,
                     int binder_length, double seconds);
void campaign_csv_close(campaign_csv *c);
/* The files designs.csv lists (its 4th column), sorted, for --resume: a design whose file
 * was renamed into place just before a kill, without its row, gets the row then. */
typedef struct {
  char **file;
  int n;
} campaign_listed;
int campaign_csv_listed(const char *dump_dir, campaign_listed *out);
/* The same from designs.csv's text (header line first); rows not of 6 fields are skipped. */
int campaign_csv_parse(const char *text, size_t len, campaign_listed *out);
int campaign_listed_has(const campaign_listed *l, const char *file);
void campaign_listed_free(campaign_listed *l);

/* ------------------------------------------------------------ status.json -- */

typedef struct {
  const char *name;
  long units_total, units_done;
  long designs_total, designs_done;
} campaign_task_status;

/* One backend context of the run (a worker: `--device cuda:0,2` has two). */
typedef struct {
  char name[48];      /* "cuda:0", "cuda:0 (context 2)", "cpu" */
  long units, designs; /* computed by it */
  double busy_s;
  const char *state;  /* "running", "idle", "failed" */
  char error[400];    /* why it failed ("" when it did not) */
} campaign_device_status;

typedef struct {
  char path[4096];
  const char *tag, *command, *device;
  const char *lock_path; /* touched at each rewrite: the lock's heartbeat (or NULL) */
  campaign_shard shard;
  int n_task;
  campaign_task_status *task; /* [n_task], this shard's share */
  double t0, last_write, interval, busy_s;
  long computed; /* designs computed by this process */
  int threads;
  const char *state; /* "starting", "running", "done", "interrupted", "failed" */
  campaign_device_status *dev; /* [n_dev]: per context; n_dev 0: one entry from device/busy_s */
  int n_dev;
  char last_error[512];
} campaign_status;

/* DUMP/status.json (1/1) or DUMP/status_<tag>.json. interval: seconds between rewrites. */
int campaign_status_init(campaign_status *st, const char *dump_dir, const campaign_shard *s, int n_task,
                         double interval);
/* Rewrites the file now (force) or when interval has passed since the last rewrite. */
int campaign_status_write(campaign_status *st, int force);
void campaign_status_free(campaign_status *st);

/* `pxdiff status DIR`. */
int cmd_status(int argc, char **argv);

#endif
