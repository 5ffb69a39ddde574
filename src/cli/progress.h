/* Progress display of long CLI runs (sampling now, `pxdiff design` next), on stderr.
 *
 *   cli_progress p;
 *   cli_progress_start(&p, "sampling", "designs", total_items, n_step, quiet);
 *   p.should_stop = run_out_interrupted;        // optional: Ctrl-C stops the engine
 *   p.cur = items_in_this_call;                 // before each engine call
 *   px_sample(..., cli_progress_cb, &p);        // updates within a call (step / n_step)
 *   p.done += items_in_this_call; cli_progress_show(&p, p.done, p.n_step, 1);
 *   cli_progress_close(&p);                     // ends an open terminal line
 *
 * On a terminal: one bar line redrawn at most 4 times a second ("\r\x1b[K"). Otherwise
 * (logs, pipes): a plain line at most every 15 s, and one per finished call. Times are
 * elapsed, ETA and seconds per item. quiet prints nothing. */
#ifndef PX_CLI_PROGRESS_H
#define PX_CLI_PROGRESS_H

#include <stddef.h>

typedef struct {
  const char *what;  /* "sampling" */
  const char *items; /* "designs" */
  double t0, last_print;
  int total, done, cur; /* items to compute, finished, in the current engine call */
  int n_step;
  int tty, quiet;
  int line_open;
  int (*should_stop)(void); /* cli_progress_cb returns 1 (cancel) when this says so */
} cli_progress;

void cli_progress_start(cli_progress *p, const char *what, const char *items, int total, int n_step,
                        int quiet);
/* frac_done: items done including fractions of the current call; step > 0 and < n_step
 * names the step within the call on non-terminal lines. force: print regardless of time. */
void cli_progress_show(cli_progress *p, double frac_done, int step, int force);
/* The engine's progress callback (px_progress_fn): user is the cli_progress. */
int cli_progress_cb(void *user, int samples_done, int samples_total, int step, int n_step);
void cli_progress_close(cli_progress *p);

/* "1:05" or "1:02:03"; "--:--" for unknown. */
void cli_fmt_duration(char *buf, size_t cap, double s);

#endif
