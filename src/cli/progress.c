/* Progress display (progress.h). */
#include "cli/progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "platform.h"

void cli_fmt_duration(char *buf, size_t cap, double s) {
  if (!(s >= 0) || s > 1e8) {
    snprintf(buf, cap, "--:--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void cli_progress_start(cli_progress *p, const char *what, const char *items, int total, int n_step,
                        int quiet) {
  memset(p, 0, sizeof *p);
  p->what = what;
  p->items = items;
  p->t0 = px_time_now();
  p->total = total;
  p->n_step = n_step;
  p->tty = px_isatty(2);
  p->quiet = quiet;
}

void cli_progress_show(cli_progress *p, double frac_done, int step, int force) {
  if (p->quiet) return;
  double now = px_time_now(), el = now - p->t0;
  if (!force && now - p->last_print < (p->tty ? 0.25 : 15.0)) return;
  p->last_print = now;
  double spd = frac_done > 0 ? el / frac_done : NAN;
  char e1[32], e2[32], rate[48];
  const char *item = p->items ? p->items : "items";
  size_t il = strlen(item);
  cli_fmt_duration(e1, sizeof e1, el);
  cli_fmt_duration(e2, sizeof e2, frac_done > 0 ? spd * (p->total - frac_done) : NAN);
  /* "s/design": the singular of the plural item name */
  if (frac_done > 0) snprintf(rate, sizeof rate, "%.2f s/%.*s", spd, (int)(il > 1 && item[il - 1] == 's' ? il - 1 : il), item);
  else snprintf(rate, sizeof rate, "-- s/%.*s", (int)(il > 1 && item[il - 1] == 's' ? il - 1 : il), item);
  if (p->tty) {
    char bar[31];
    int fill = p->total > 0 ? (int)(30.0 * frac_done / p->total) : 30;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '-';
    bar[30] = '\0';
    fprintf(stderr, "\r\x1b[K%s [%s] %d/%d %s | %s elapsed | ETA %s | %s", p->what ? p->what : "", bar,
            p->done, p->total, item, e1, e2, rate);
    p->line_open = 1;
  } else if (step > 0 && step < p->n_step) {
    fprintf(stderr, "pxdiff: %d/%d %s done (chunk of %d at step %d/%d), %s elapsed, ETA %s, %s\n", p->done,
            p->total, item, p->cur, step, p->n_step, e1, e2, rate);
  } else {
    fprintf(stderr, "pxdiff: %d/%d %s done, %s elapsed, ETA %s, %s\n", p->done, p->total, item, e1, e2,
            rate);
  }
  fflush(stderr);
}

int cli_progress_cb(void *user, int samples_done, int samples_total, int step, int n_step) {
  cli_progress *p = user;
  (void)samples_done;
  (void)samples_total;
  if (p->should_stop && p->should_stop()) return 1;
  if (step < n_step) cli_progress_show(p, p->done + (double)p->cur * step / n_step, step, 0);
  return 0;
}

void cli_progress_close(cli_progress *p) {
  if (p->line_open) {
    fputc('\n', stderr);
    p->line_open = 0;
  }
}
