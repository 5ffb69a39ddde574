/* The run-output protocol (run_output.h).
 *
 * Directory listing, stat, access and rmdir are POSIX calls (Linux and macOS alike) that
 * src/platform.h does not offer yet; they are kept in the small "file system" section
 * below so that they can move there unchanged. */
#define _POSIX_C_SOURCE 200809L
#include "cli/run_output.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "io/structure.h"
#include "platform.h"
#include "pxdiff.h"

/* ------------------------------------------------------------ file system -- */

static int fs_is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int fs_exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

static int fs_writable_dir(const char *p) { return access(p, W_OK | X_OK) == 0; }

/* What p is, from one look: a directory (following symlinks), something else (a file, a
 * dangling symlink), or nothing. One answer rather than fs_is_dir then fs_exists: concurrent
 * shards create the same directories, and a directory made between those two calls read as
 * "exists but is not a directory" (ENOTDIR) for a path that was a directory all along. */
typedef enum { FS_NONE, FS_DIR, FS_OTHER } fs_kind_t;
static fs_kind_t fs_kind(const char *p) {
  struct stat st;
  if (stat(p, &st) == 0) return S_ISDIR(st.st_mode) ? FS_DIR : FS_OTHER;
  if (lstat(p, &st) != 0) return FS_NONE;
  return S_ISDIR(st.st_mode) ? FS_DIR : FS_OTHER; /* made since the stat, or a dangling link */
}

typedef int (*fs_entry_fn)(void *user, const char *name);

/* Calls fn for each entry of dir except "." and ".."; a missing dir has no entries.
 * Returns 0, -1 when dir exists but cannot be listed, or fn's nonzero value. */
static int fs_list(const char *dir, fs_entry_fn fn, void *user) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : -1;
  int rc = 0;
  struct dirent *e;
  while (!rc && (e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    rc = fn(user, e->d_name);
  }
  closedir(d);
  return rc;
}

static int fs_rmdir(const char *p) { return rmdir(p); }

/* ---------------------------------------------------------------- helpers -- */

int run_sampler_fields(char *buf, size_t cap, const px_sampler_config *c, uint64_t seed) {
  char f[6][24];
  run_fmt_float(f[0], sizeof f[0], c->gamma0);
  run_fmt_float(f[1], sizeof f[1], c->gamma_min);
  run_fmt_float(f[2], sizeof f[2], c->noise_scale_lambda);
  run_fmt_float(f[3], sizeof f[3], c->eta_min);
  run_fmt_float(f[4], sizeof f[4], c->eta_max);
  run_fmt_float(f[5], sizeof f[5], c->sigma_data);
  int n = snprintf(buf, cap,
                   "seed=%llu|steps=%d|eta=%s:%s:%s|gamma0=%s|gamma_min=%s|lambda=%s|sched=%s|smax=%a|smin=%a|"
                   "rho=%a|sd=%s",
                   (unsigned long long)seed, c->n_step, px_eta_type_name(c->eta_type), f[3], f[4], f[0], f[1],
                   f[2], c->schedule_bf16 ? "bf16" : "fp32", (double)c->s_max, (double)c->s_min, (double)c->rho,
                   f[5]);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

uint64_t run_fingerprint(const char *canonical) {
  uint64_t h = 14695981039346656037ull;
  for (const unsigned char *p = (const unsigned char *)canonical; *p; p++) {
    h ^= *p;
    h *= 1099511628211ull;
  }
  return h;
}

void run_fmt_float(char *buf, size_t cap, float v) {
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, cap, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v) return;
  }
}

int run_index_width(long n) {
  int w = 4;
  for (long x = 10000; x < n; x *= 10) w++;
  return w;
}

/* The default naming: <subdir>/<prefix><index>. */
static int default_locate(const run_layout *L, long i, char *reldir, size_t dcap, char *stem, size_t scap) {
  snprintf(reldir, dcap, "%s", L->subdir ? L->subdir : "");
  int n = snprintf(stem, scap, "%s%0*ld", L->prefix ? L->prefix : "", L->width, i);
  return n < 0 || (size_t)n >= scap ? -1 : 0;
}

static long default_identify(const run_layout *L, const char *reldir, const char *stem) {
  (void)reldir;
  const char *pre = L->prefix ? L->prefix : "";
  size_t lp = strlen(pre);
  if (strncmp(stem, pre, lp)) return -2;
  const char *d = stem + lp;
  if (!*d) return -2;
  for (const char *q = d; *q; q++)
    if (*q < '0' || *q > '9') return -2;
  if (strlen(d) > 18) return -1;
  long i = strtol(d, NULL, 10);
  char canon[32];
  snprintf(canon, sizeof canon, "%0*ld", L->width, i);
  return i < L->n_samples && !strcmp(canon, d) ? i : -1;
}

static int locate(const run_layout *L, long i, char *reldir, size_t dcap, char *stem, size_t scap) {
  return (L->locate ? L->locate : default_locate)(L, i, reldir, dcap, stem, scap);
}

static long identify(const run_layout *L, const char *reldir, const char *stem) {
  return (L->identify ? L->identify : default_identify)(L, reldir, stem);
}

static int relpath(const run_layout *L, long i, int k, char *buf, size_t cap) {
  char dir[512], stem[256];
  if (locate(L, i, dir, sizeof dir, stem, sizeof stem)) return -1;
  int n = *dir ? snprintf(buf, cap, "%s/%s.%s", dir, stem, L->ext[k]) : snprintf(buf, cap, "%s.%s", stem, L->ext[k]);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int run_out_relpath(const run_out *r, long i, int k, char *buf, size_t cap) { return relpath(&r->L, i, k, buf, cap); }

long run_out_test_fail_write(void) {
  const char *e = getenv("PXDIFF_TEST_FAIL_WRITE");
  long i;
  return e && sscanf(e, "%ld", &i) == 1 && i >= 0 ? i : -1;
}

int run_out_path(const run_out *r, long i, int k, char *buf, size_t cap) {
  char rel[1024];
  if (relpath(&r->L, i, k, rel, sizeof rel)) return -1;
  const char *d = r->L.dir;
  size_t ld = strlen(d);
  int n = snprintf(buf, cap, "%s%s%s", d, ld && d[ld - 1] != '/' ? "/" : "", rel);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ------------------------------------------------------------------ scan ---- */

/* What the directory holds of this command's files. */
typedef struct {
  const run_layout *L;
  const char *reldir;
  const char *trailer_line; /* "# pxdiff-complete run=..."; NULL: id unknown */
  unsigned char *present;   /* [n_samples * n_ext] */
  unsigned char *same;      /* [n_samples]: proof file ends with this run's trailer */
  long n_files;             /* recognised, not .tmp */
  long n_listed, n_extra, n_tmp, n_other_run;
  char first[256], first_extra[256], first_other[256], first_tmp[256];
  int markers;              /* how many markers exist */
  int failed;               /* px_fail code */
  /* removal pass */
  int remove_all, remove_tmp;
} scan_t;

static int ext_index(const char *const *ext, int n, const char *e) {
  for (int k = 0; k < n; k++)
    if (!strcmp(ext[k], e)) return k;
  return -1;
}

static void keep_name(char *dst, size_t cap, const char *reldir, const char *name) {
  if (*dst) return;
  if (reldir && *reldir) snprintf(dst, cap, "%s/%s", reldir, name);
  else snprintf(dst, cap, "%s", name);
}

static int scan_entry(void *user, const char *name) {
  scan_t *s = user;
  const run_layout *L = s->L;
  char base[512];
  size_t ln = strlen(name);
  if (ln >= sizeof base) return 0;
  memcpy(base, name, ln + 1);
  int tmp = ln > 4 && !strcmp(base + ln - 4, ".tmp");
  if (tmp) base[ln - 4] = '\0';
  char *dot = strrchr(base, '.');
  if (!dot || dot == base) return 0;
  *dot = '\0';
  const char *ext = dot + 1;
  int k = ext_index(L->ext, L->n_ext, ext);
  int other = k < 0 && ext_index(L->other_ext, L->n_other_ext, ext) >= 0;
  if (k < 0 && !other) return 0;
  long i = identify(L, s->reldir, base);
  if (i == -2) return 0;
  char *dir = px_path_join(L->dir, s->reldir);
  char *full = dir ? px_path_join(dir, name) : NULL;
  free(dir);
  if (!full) {
    s->failed = px_fail(PX_ERR_NOMEM, "out of memory");
    return 1;
  }
  if (s->remove_all || (s->remove_tmp && tmp)) {
    if (remove(full) != 0 && errno != ENOENT) {
      s->failed = px_fail(PX_ERR_IO, "cannot remove %s: %s", full, strerror(errno));
      free(full);
      return 1;
    }
    free(full);
    return 0;
  }
  if (!s->present) { /* a removal pass that keeps this file */
    free(full);
    return 0;
  }
  if (tmp) {
    s->n_tmp++;
    keep_name(s->first_tmp, sizeof s->first_tmp, s->reldir, name);
  } else {
    s->n_files++;
    keep_name(s->first, sizeof s->first, s->reldir, name);
    if (i >= 0 && k >= 0) {
      s->n_listed++;
      s->present[i * L->n_ext + k] = 1;
      if (k == L->n_ext - 1) {
        char last[128];
        if (px_structure_file_last_line(full, last, sizeof last) == 0) {
          if (s->trailer_line && !strcmp(last, s->trailer_line)) {
            s->same[i] = 1;
          } else if (s->trailer_line && !strncmp(last, "# pxdiff-complete run=", 22)) {
            s->n_other_run++;
            keep_name(s->first_other, sizeof s->first_other, s->reldir, name);
          }
        }
      }
    } else {
      s->n_extra++;
      keep_name(s->first_extra, sizeof s->first_extra, s->reldir, name);
    }
  }
  free(full);
  return 0;
}

/* The relative directories that may hold sample files. */
static int n_scan_dirs(const run_layout *L) { return L->dirs ? L->n_dirs : 1; }
static const char *scan_dir(const run_layout *L, int j) {
  return L->dirs ? L->dirs[j] : (L->subdir ? L->subdir : "");
}

static int scan(scan_t *s) {
  const run_layout *L = s->L;
  for (int j = 0; j < n_scan_dirs(L); j++) {
    s->reldir = scan_dir(L, j);
    char *dir = px_path_join(L->dir, s->reldir);
    if (!dir) return px_fail(PX_ERR_NOMEM, "out of memory");
    int rc = fs_list(dir, scan_entry, s);
    if (rc < 0) {
      int e = errno;
      rc = px_fail(PX_ERR_IO, "cannot list %s: %s", dir, strerror(e));
      free(dir);
      return rc;
    }
    free(dir);
    if (s->failed) return s->failed;
  }
  for (int m = L->n_markers - 1; m >= 0; m--) {
    char *p = px_path_join(L->dir, L->markers[m]);
    if (!p) return px_fail(PX_ERR_NOMEM, "out of memory");
    char *t = malloc(strlen(p) + 5);
    if (!t) {
      free(p);
      return px_fail(PX_ERR_NOMEM, "out of memory");
    }
    sprintf(t, "%s.tmp", p);
    if (s->remove_all || s->remove_tmp) {
      /* markers go first: from here on the directory reads as unfinished */
      if ((s->remove_all && remove(p) != 0 && errno != ENOENT) || (remove(t) != 0 && errno != ENOENT)) {
        int e = errno;
        int rc = px_fail(PX_ERR_IO, "cannot remove %s: %s", p, strerror(e));
        free(p);
        free(t);
        return rc;
      }
    } else {
      if (fs_exists(p)) s->markers++;
      if (fs_exists(t)) {
        s->n_tmp++;
        keep_name(s->first_tmp, sizeof s->first_tmp, "", L->markers[m]);
      }
    }
    free(p);
    free(t);
  }
  return 0;
}

/* ----------------------------------------------------------- writability -- */

/* DIR is a writable directory, or its nearest existing ancestor is one (so that it can be
 * created). Nothing is created here. */
static int check_dir_usable(const char *dir) {
  const fs_kind_t k = fs_kind(dir);
  if (k == FS_DIR) {
    if (!fs_writable_dir(dir))
      return px_fail(PX_ERR_IO, "cannot write to output directory %s: %s", dir, strerror(errno));
    return 0;
  }
  if (k == FS_OTHER) return px_fail(PX_ERR_IO, "cannot create output directory %s: %s", dir, strerror(ENOTDIR));
  char *p = malloc(strlen(dir) + 2);
  if (!p) return px_fail(PX_ERR_NOMEM, "out of memory");
  strcpy(p, dir);
  for (;;) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash) {
      strcpy(p, ".");
    } else if (slash == p) {
      p[1] = '\0';
    } else {
      *slash = '\0';
    }
    const fs_kind_t pk = fs_kind(p);
    if (pk == FS_DIR) break;
    if (pk == FS_OTHER) {
      free(p);
      return px_fail(PX_ERR_IO, "cannot create output directory %s: %s", dir, strerror(ENOTDIR));
    }
    if (!strcmp(p, ".") || !strcmp(p, "/")) break;
  }
  int ok = fs_writable_dir(p);
  int e = errno;
  free(p);
  if (!ok) return px_fail(PX_ERR_IO, "cannot create output directory %s: %s", dir, strerror(e));
  return 0;
}

/* ------------------------------------------------------------------ check ---- */

static int check_scan(const run_layout *L, run_mode mode, const uint64_t *run_id, scan_t *s) {
  memset(s, 0, sizeof *s); /* the callers free s's arrays whatever this returns */
  if (!L->dir || !*L->dir) return px_fail(PX_ERR_INPUT, "%s needs --out DIR", L->command);
  if (L->n_ext < 1 || L->n_ext > RUN_MAX_EXT || L->n_samples < 1)
    return px_fail(PX_ERR_INPUT, "run_output: bad layout");
  int rc = check_dir_usable(L->dir);
  if (rc) return rc;
  char trailer_line[64];
  if (run_id) snprintf(trailer_line, sizeof trailer_line, "# pxdiff-complete run=%016llx", (unsigned long long)*run_id);
  memset(s, 0, sizeof *s);
  s->L = L;
  s->trailer_line = run_id ? trailer_line : NULL;
  s->present = calloc((size_t)L->n_samples * (size_t)L->n_ext, 1);
  s->same = calloc((size_t)L->n_samples, 1);
  if (!s->present || !s->same) return px_fail(PX_ERR_NOMEM, "out of memory");
  if ((rc = scan(s))) return rc;
  s->trailer_line = NULL;
  if (mode == RUN_OVERWRITE) return 0;
  if (mode == RUN_FRESH) {
    long n = s->n_files + s->n_tmp;
    if (n == 0 && s->markers == 0) return 0;
    char what[700];
    if (s->markers && s->n_files)
      snprintf(what, sizeof what, "a finished earlier run (%ld sample file%s, e.g. %s, and %s)", s->n_files,
               s->n_files == 1 ? "" : "s", s->first, L->markers[L->n_markers - 1]);
    else if (s->n_files || s->n_tmp)
      snprintf(what, sizeof what, "an unfinished earlier run (%ld file%s, e.g. %s; no %s)", n, n == 1 ? "" : "s",
               s->n_files ? s->first : s->first_tmp, L->n_markers ? L->markers[L->n_markers - 1] : "summary");
    else
      snprintf(what, sizeof what, "an earlier run's %s", L->markers[L->n_markers - 1]);
    return px_fail(PX_ERR_INPUT,
                   "%s holds %s; use --resume to continue that run, --overwrite to replace it, or another --out",
                   L->dir, what);
  }
  /* RUN_RESUME */
  if (s->n_other_run)
    return px_fail(PX_ERR_INPUT,
                   "--resume: %s/%s was written by a run with other settings or inputs (this run's id is "
                   "%016llx); nothing was changed; use --overwrite to replace that run, or another --out",
                   L->dir, s->first_other, run_id ? (unsigned long long)*run_id : 0ull);
  if (s->n_extra)
    return px_fail(PX_ERR_INPUT,
                   "--resume: %s holds %ld file%s this run would not write (e.g. %s: another sample count or "
                   "file options); nothing was changed; resume with the earlier run's options, use --overwrite, "
                   "or another --out",
                   L->dir, s->n_extra, s->n_extra == 1 ? "" : "s", s->first_extra);
  return 0;
}

int run_out_check(const run_layout *L, run_mode mode, const uint64_t *run_id) {
  scan_t s;
  int rc = check_scan(L, mode, run_id, &s);
  free(s.present);
  free(s.same);
  return rc;
}

/* Creates DIR and the sample directories, recording which ones this run created. */
static int make_dir(run_out *r, const char *path) {
  /* each missing component, outermost first */
  char *p = malloc(strlen(path) + 1);
  if (!p) return px_fail(PX_ERR_NOMEM, "out of memory");
  strcpy(p, path);
  size_t n = strlen(p);
  for (size_t k = 1; k <= n; k++) {
    if (p[k] != '/' && p[k] != '\0') continue;
    char c = p[k];
    p[k] = '\0';
    if (!fs_is_dir(p)) {
      errno = 0;
      if (px_mkdir_p(p) != 0) {
        int e = errno;
        int rc = px_fail(PX_ERR_IO, "cannot create output directory %s: %s", path, strerror(e));
        free(p);
        return rc;
      }
      if (r->n_created < (int)(sizeof r->created / sizeof r->created[0])) {
        r->created[r->n_created] = malloc(k + 1);
        if (r->created[r->n_created]) memcpy(r->created[r->n_created++], p, k + 1);
      }
    }
    p[k] = c;
  }
  free(p);
  return 0;
}

int run_out_open(run_out *r, const run_layout *L, run_mode mode, uint64_t run_id) {
  memset(r, 0, sizeof *r);
  scan_t s;
  int rc = check_scan(L, mode, &run_id, &s);
  if (rc) {
    free(s.present);
    free(s.same);
    return rc;
  }
  r->L = *L;
  r->mode = mode;
  r->run_id = run_id;
  snprintf(r->trailer, sizeof r->trailer, "pxdiff-complete run=%016llx", (unsigned long long)run_id);
  r->have = calloc((size_t)L->n_samples, 1);
  if (!r->have) {
    free(s.present);
    free(s.same);
    return px_fail(PX_ERR_NOMEM, "out of memory");
  }
  if (mode == RUN_RESUME) {
    for (long i = 0; i < L->n_samples; i++) {
      int all = s.same[i];
      for (int k = 0; k < L->n_ext; k++) all &= s.present[i * L->n_ext + k];
      r->have[i] = (unsigned char)all;
      r->n_have += all;
    }
  }
  free(s.present);
  free(s.same);
  /* From here on the disk changes: directories, then the removals. */
  if ((rc = make_dir(r, L->dir))) goto fail;
  for (int j = 0; j < n_scan_dirs(L); j++) {
    const char *rel = scan_dir(L, j);
    if (!*rel) continue;
    char *d = px_path_join(L->dir, rel);
    if (!d) {
      rc = px_fail(PX_ERR_NOMEM, "out of memory");
      goto fail;
    }
    rc = make_dir(r, d);
    free(d);
    if (rc) goto fail;
  }
  if (mode != RUN_FRESH) {
    scan_t rm;
    memset(&rm, 0, sizeof rm);
    rm.L = L;
    rm.remove_all = mode == RUN_OVERWRITE;
    rm.remove_tmp = 1;
    /* the markers go first, the last written (the proof of completion) first of all: an
     * interrupted removal leaves a directory that reads as an unfinished run */
    for (int m = L->n_markers - 1; m >= 0; m--) {
      char *p = px_path_join(L->dir, L->markers[m]);
      if (!p) {
        rc = px_fail(PX_ERR_NOMEM, "out of memory");
        goto fail;
      }
      if (remove(p) != 0 && errno != ENOENT) {
        rc = px_fail(PX_ERR_IO, "cannot remove %s: %s", p, strerror(errno));
        free(p);
        goto fail;
      }
      free(p);
    }
    r->wrote = 1;
    if ((rc = scan(&rm))) goto fail;
  }
  return 0;
fail:
  run_out_close(r, 0);
  return rc;
}

int run_out_write_marker(run_out *r, int k, const void *data, size_t n) {
  if (k < 0 || k >= r->L.n_markers) return px_fail(PX_ERR_INPUT, "run_output: no marker %d", k);
  char *p = px_path_join(r->L.dir, r->L.markers[k]);
  if (!p) return px_fail(PX_ERR_NOMEM, "out of memory");
  r->wrote = 1;
  int rc = px_write_file_atomic_msg(p, data, n);
  free(p);
  return rc;
}

void run_out_close(run_out *r, int ok) {
  if (!ok) /* innermost first; rmdir leaves any directory that holds something */
    for (int i = r->n_created - 1; i >= 0; i--) fs_rmdir(r->created[i]);
  for (int i = 0; i < r->n_created; i++) free(r->created[i]);
  r->n_created = 0;
  free(r->have);
  r->have = NULL;
}

void run_summary_files(px_strbuf *b, const run_out *r) {
  char rel[1024];
  px_sb_str(b, "[");
  for (long i = 0; i < r->L.n_samples; i++) {
    px_sb_printf(b, "%s\n    {\"index\": %ld", i ? "," : "", i);
    /* the proof file first (summary readers look for "cif" first), then the others */
    for (int j = 0; j < r->L.n_ext; j++) {
      int k = (r->L.n_ext - 1 + j) % r->L.n_ext;
      if (relpath(&r->L, i, k, rel, sizeof rel)) continue;
      px_sb_printf(b, ", \"%s\": ", r->L.ext[k]);
      px_sb_json_string(b, rel);
    }
    px_sb_str(b, "}");
  }
  px_sb_str(b, "\n  ]");
}

/* ---------------------------------------------------------------- signals -- */

static volatile sig_atomic_t g_interrupted = 0;
static void (*g_old_int)(int), (*g_old_term)(int);

static void on_signal(int sig) {
  g_interrupted = 1;
  signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

void run_out_catch_signals(void) {
  g_interrupted = 0;
  g_old_int = signal(SIGINT, on_signal);
  g_old_term = signal(SIGTERM, on_signal);
}

void run_out_release_signals(void) {
  signal(SIGINT, g_old_int == SIG_ERR ? SIG_DFL : g_old_int);
  signal(SIGTERM, g_old_term == SIG_ERR ? SIG_DFL : g_old_term);
}

int run_out_interrupted(void) { return g_interrupted != 0; }
