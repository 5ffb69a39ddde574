/* The run-output protocol of the commands that write one file set per sample into --out
 * (`pxdiff sample` / `demo` now; `pxdiff design` with PXDesign's tree next).
 *
 * What a user can rely on (every command that uses this):
 *  - A run owns only the files it writes, under names it controls (the layout's sample
 *    files, their ".tmp" siblings, its markers). Any other file in --out is never read,
 *    changed or removed, and does not stop a run.
 *  - Nothing is created or changed before every input is validated: the command calls
 *    run_out_check (read-only) first, loads and checks its inputs, and only then
 *    run_out_open, which checks again with the run's fingerprint and then creates the
 *    directories. A failed start leaves the disk as it was.
 *  - Without --resume or --overwrite (RUN_FRESH), a directory that holds any file of an
 *    earlier run is refused with one line naming it and the ways out (--resume,
 *    --overwrite, another --out): runs are never mixed silently.
 *  - RUN_RESUME keeps each sample whose files are complete and whose proof file (the
 *    layout's last extension) ends with this run's trailer, and computes the rest. It
 *    refuses, changing nothing, when a sample file names another run or when the
 *    directory holds files of this command that this run would neither write nor list.
 *  - RUN_OVERWRITE removes exactly the files it recognises by name (markers first), then
 *    runs fresh.
 *  - Every file is written atomically (NAME.tmp, then rename). The markers (summary.json)
 *    are removed before the first file of a run is changed and written last, so a
 *    directory with its markers holds a complete run whose files are exactly those the
 *    summary lists; without them it holds an unfinished run that --resume completes (a kill
 *    at any moment, SIGKILL included, leaves one of the two).
 *
 * Use:
 *   run_layout L = {.dir = out, .command = "sample", .n_samples = S, .ext = {"cif"}, .n_ext = 1,
 *                   .prefix = "sample_", .width = run_index_width(S),
 *                   .markers = {"summary.json"}, .n_markers = 1};
 *   if (run_out_check(&L, mode, NULL)) fail(px_last_error());       // before loading anything
 *   ... load, validate, build the design; id = run_fingerprint(settings text) ...
 *   run_out r;
 *   if (run_out_open(&r, &L, mode, id)) fail(px_last_error());      // creates/cleans DIR
 *   run_out_catch_signals();
 *   for each sample i with !r.have[i]: write files via run_out_path(&r, i, k, ...), the last
 *     one ending with the line "# " + r.trailer;
 *   build the summary (run_summary_files lists the files); run_out_write_marker(&r, 0, ...);
 *   run_out_release_signals(); run_out_close(&r, ok);
 *
 * Errors: px_fail codes with one line in px_last_error() (the CLI prints "pxdiff: " + it). */
#ifndef PX_CLI_RUN_OUTPUT_H
#define PX_CLI_RUN_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "io/strbuf.h"
#include "pxdiff.h"

typedef enum { RUN_FRESH = 0, RUN_RESUME = 1, RUN_OVERWRITE = 2 } run_mode;

#define RUN_MAX_EXT 4
#define RUN_MAX_MARKERS 4

typedef struct run_layout run_layout;
struct run_layout {
  const char *dir;     /* --out */
  const char *command; /* for messages: "sample" */
  long n_samples;
  /* Files written per sample, in write order; the last is the proof of completion (ends
   * with the trailer line). other_ext: what the command writes in other runs (e.g. "pdb"
   * without --pdb): recognised as the command's files, never written by this run. */
  const char *ext[RUN_MAX_EXT];
  int n_ext;
  const char *other_ext[RUN_MAX_EXT];
  int n_other_ext;
  /* Relative paths written after every sample, in this order (summary.json last). */
  const char *markers[RUN_MAX_MARKERS];
  int n_markers;
  /* Naming, default form: <subdir>/<prefix><index zero-padded to width digits>.<ext>
   * (subdir NULL or "": DIR itself; width 0: no padding). */
  const char *subdir, *prefix;
  int width;
  /* Or a tree of several sample directories (PXDesign's <task>/seed_<s>/predictions): dirs
   * lists the relative directories that may hold the command's sample files; locate gives
   * sample i's directory and file stem (name without ".ext"); identify maps a stem found
   * in dir to this run's index i, -1 for a name of the command's pattern that this run
   * does not write (another sample count, seed or width), -2 for a name not the command's. */
  const char *const *dirs;
  int n_dirs;
  int (*locate)(const run_layout *L, long i, char *reldir, size_t dcap, char *stem, size_t scap);
  long (*identify)(const run_layout *L, const char *reldir, const char *stem);
  void *user;
};

typedef struct {
  run_layout L;
  run_mode mode;
  uint64_t run_id;
  char trailer[48];     /* "pxdiff-complete run=<16 hex>"; files end with "# " + this */
  unsigned char *have;  /* [n_samples]: 1 = this run's files already complete (RUN_RESUME) */
  long n_have;
  char *created[32];    /* directories this run created, outermost first */
  int n_created;
  int wrote;            /* a file was written or removed */
} run_out;

/* Read-only: everything decidable about DIR now (is or can become a writable directory;
 * conflicts with an earlier run; with run_id, --resume's conflicts too). Changes nothing. */
int run_out_check(const run_layout *L, run_mode mode, const uint64_t *run_id);
/* run_out_check with the id, then prepares DIR (creates directories; RUN_RESUME: removes
 * the markers and ".tmp" leftovers; RUN_OVERWRITE: removes the markers, then every file it
 * recognises) and fills r->have. On failure nothing was changed and r needs no close. */
int run_out_open(run_out *r, const run_layout *L, run_mode mode, uint64_t run_id);
/* PXDIFF_TEST_FAIL_WRITE=I (tests): the index of the sample whose files the writers of
 * `pxdiff sample` and `pxdiff design` fail to write, as a failed write would (in every case
 * of a design run); -1 when unset. */
long run_out_test_fail_write(void);

/* Full path of sample i's k-th file (k indexes L.ext). 0, or -1 when cap is too small. */
int run_out_path(const run_out *r, long i, int k, char *buf, size_t cap);
/* Relative path (for summary.json's file list). */
int run_out_relpath(const run_out *r, long i, int k, char *buf, size_t cap);
/* Writes marker k atomically (after every sample is written). */
int run_out_write_marker(run_out *r, int k, const void *data, size_t n);
/* Frees r. ok == 0 (failure or interrupt): directories this run created and left empty
 * are removed again, so a run that wrote nothing leaves nothing. */
void run_out_close(run_out *r, int ok);

/* SIGINT / SIGTERM set a flag instead of ending the process (a second signal ends it at
 * once); commands poll run_out_interrupted() between steps and exit 130. */
void run_out_catch_signals(void);
void run_out_release_signals(void);
int run_out_interrupted(void);

/* The run fingerprint: FNV-1a 64 of a canonical text naming every setting and input that
 * changes a sample's coordinates ("pxdiff-run v1|seed=...|..."). */
uint64_t run_fingerprint(const char *canonical);
/* The sampler settings that change a sample's coordinates, as fingerprint fields:
 * "seed=S|steps=K|eta=TYPE:MIN:MAX|gamma0=..|gamma_min=..|lambda=..|sched=bf16|smax=..|smin=..|rho=..|sd=..".
 * The seed is given apart (design runs one config over several seeds). -1 when cap is too small. */
int run_sampler_fields(char *buf, size_t cap, const px_sampler_config *c, uint64_t seed);
/* Shortest decimal that reads back as the same float (for fingerprints and summaries). */
void run_fmt_float(char *buf, size_t cap, float v);
/* Digits of the sample index in file names: at least 4, more when n needs them. */
int run_index_width(long n);
/* summary.json's "files" array (no trailing newline): [{"index": i, "<ext>": "<relpath>", ...}]. */
void run_summary_files(px_strbuf *b, const run_out *r);

#endif
