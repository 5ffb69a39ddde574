/* `pxdiff sample` and `pxdiff demo`: run the sampler for a design and write one mmCIF
 * (and optionally PDB) per sample plus summary.json; progress display; resume.
 *
 * Output protocol (also in the usage text):
 *   DIR/sample_<i>.cif   one per sample, zero-padded index (4 digits, more when needed),
 *                        written atomically; its last line is "# pxdiff-complete run=<id>"
 *                        where <id> fingerprints every setting and input that changes
 *                        coordinates (not --chunk, --threads or the sample count).
 *   DIR/sample_<i>.pdb   with --pdb, written before the .cif.
 *   DIR/summary.json     written last, atomically, only when every sample is written.
 *                        Any run first deletes an existing summary.json, so a directory
 *                        with no summary.json holds an unfinished run.
 * Ctrl-C (SIGINT/SIGTERM) stops after the current denoise step: finished samples stay,
 * the unfinished chunk is dropped, no summary.json is written, exit status 130.
 * --resume keeps every sample file whose trailer names this run's id and computes only
 * the others; because a sample's noise depends only on (seed, sample index, step), the
 * result equals an uninterrupted run's files byte for byte. */
#define _POSIX_C_SOURCE 200809L
#include "io/strbuf.h"
#include "cli/cmd_sample.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/bundle.h"
#include "io/structure.h"
#include "platform.h"
#include "pxdiff_synthetic.h"

#define DEMO_MODEL_SEED 2024
#define DEMO_SAMPLES 4
#define DEMO_STEPS 40
#define SYNTH_LABEL_ASCII "SYNTHETIC WEIGHTS -- not a trained model"
#define SYNTH_LABEL "SYNTHETIC WEIGHTS \xe2\x80\x94 not a trained model"

/* ---------------------------------------------------------------- usage ---- */

void cmd_sample_usage(void *file) {
  FILE *o = file;
  fprintf(o,
          "  sample --checkpoint CKPT --bundle B --out DIR [options]\n"
          "                                    sample designs; one mmCIF per sample + summary.json\n"
          "  demo --out DIR [options]          built-in synthetic problem and SYNTHETIC weights (no\n"
          "                                    downloads; %d samples x %d steps unless told)\n"
          "    sampler options (defaults = `pxdesign infer`/`pipeline`):\n"
          "      --samples N (%s) --steps K (400; demo %d) --seed S (0) --chunk C (10)\n"
          "      --eta-type const|linear|poly|cos|piecewise|piecewise_65|piecewise_70 (const)\n"
          "      --eta-min X (2.5) --eta-max X (2.5) --gamma0 X (1.0) --gamma-min X (0.01)\n"
          "      --noise-scale-lambda X (1.003)\n"
          "      --schedule-precision bf16|fp32 (bf16: the schedule rounded per operation as\n"
          "                                    PXDesign's default GPU run; fp32: plain float32)\n"
          "      --device auto|cpu|cuda (auto) --precision fp32|tf32|bf16|fp16|default (default)\n"
          "      --threads K (0 = library default) --pdb (also write sample_<i>.pdb; fails on\n"
          "                                    coordinates beyond the PDB columns)\n"
          "      --quiet (errors only) --resume (keep finished samples of the same run; refuses\n"
          "                                    a DIR holding samples of other settings)\n"
          "    output: DIR/sample_0000.cif ... (atomic; B_iso_or_equiv 1.00 = designed atom,\n"
          "      0.00 = condition atom), DIR/summary.json written last and only when all\n"
          "      samples exist; a run first deletes summary.json, so none = unfinished.\n"
          "      Ctrl-C keeps finished samples, writes no summary.json, exits 130; rerun with\n"
          "      --resume to finish (the result equals an uninterrupted run). Progress goes to\n"
          "      stderr (a bar on a terminal, periodic lines otherwise).\n",
          DEMO_SAMPLES, DEMO_STEPS, "1; demo 4", DEMO_STEPS);
}

/* ---------------------------------------------------------------- options -- */

typedef struct {
  const char *ckpt, *bundle, *out;
  long samples, chunk, threads;
  px_sampler_config cfg;
  int device, precision;
  int pdb, quiet, resume;
  int steps_given;
} opts_t;


const char *cmd_precision_label(const px_model *m) {
  static char buf[96];
  const char *name = px_model_precision_name(m);
  px_dims D;
  if (strcmp(name, "fp16") && strcmp(name, "bf16")) return name;
  if (px_model_get_dims(m, &D)) return name;
  snprintf(buf, sizeof buf, "%s, 16-bit GEMM inputs in %d/%d token blocks", name, px_model_x16_blocks(m),
           D.n_token_blocks);
  return buf;
}

static int bad_value(const char *flag, const char *v, const char *want) {
  fprintf(stderr, "pxdiff: %s: '%s' is not %s\n", flag, v, want);
  return 2;
}

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || end == v || x < lo || x > hi) {
    char want[96];
    snprintf(want, sizeof want, "an integer in [%ld, %ld]", lo, hi);
    return bad_value(flag, v, want);
  }
  *out = x;
  return 0;
}

static int parse_float(const char *flag, const char *v, double lo, double hi, float *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || *end || end == v || !isfinite(x) || x < lo || x > hi) {
    char want[96];
    snprintf(want, sizeof want, "a number in [%g, %g]", lo, hi);
    return bad_value(flag, v, want);
  }
  *out = (float)x;
  return 0;
}

/* Returns 0, or the exit status (2) after printing one line. */
static int parse_opts(const char *cmd, int argc, char **argv, opts_t *o, int demo) {
  memset(o, 0, sizeof *o);
  px_sampler_config_default(&o->cfg);
  o->samples = demo ? DEMO_SAMPLES : 1;
  o->chunk = 10;
  o->device = PX_DEVICE_AUTO;
  o->precision = PX_PRECISION_DEFAULT;
  if (demo) o->cfg.n_step = DEMO_STEPS;
  for (int i = 0; i < argc; i++) {
    char flag[64];
    const char *a = argv[i], *v = NULL;
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    if (eq && (size_t)(eq - a) < sizeof flag) {
      memcpy(flag, a, (size_t)(eq - a));
      flag[eq - a] = '\0';
      v = eq + 1;
    } else {
      snprintf(flag, sizeof flag, "%s", a);
    }
    /* switches */
    if (!strcmp(flag, "--pdb") || !strcmp(flag, "--quiet") || !strcmp(flag, "-q") ||
        !strcmp(flag, "--resume")) {
      if (v) {
        fprintf(stderr, "pxdiff: %s takes no value\n", flag);
        return 2;
      }
      if (!strcmp(flag, "--pdb")) o->pdb = 1;
      else if (!strcmp(flag, "--resume")) o->resume = 1;
      else o->quiet = 1;
      continue;
    }
    static const char *const valued[] = {
        "--checkpoint", "--bundle", "--out", "--samples", "--steps", "--seed", "--chunk",
        "--eta-type", "--eta-min", "--eta-max", "--gamma0", "--gamma-min", "--noise-scale-lambda",
        "--schedule-precision", "--device", "--precision", "--threads", NULL};
    int known = 0;
    for (int k = 0; valued[k]; k++) known |= !strcmp(flag, valued[k]);
    if (!known || (demo && (!strcmp(flag, "--checkpoint") || !strcmp(flag, "--bundle")))) {
      fprintf(stderr, "pxdiff: %s: unknown option '%s' (try 'pxdiff help')\n", cmd, a);
      return 2;
    }
    if (!v) {
      if (i + 1 >= argc) {
        fprintf(stderr, "pxdiff: %s needs a value\n", flag);
        return 2;
      }
      v = argv[++i];
    }
    if (!strcmp(flag, "--checkpoint") || !strcmp(flag, "--bundle") || !strcmp(flag, "--out")) {
      if (!*v) {
        fprintf(stderr, "pxdiff: %s needs a non-empty path\n", flag);
        return 2;
      }
      if (!strcmp(flag, "--checkpoint")) o->ckpt = v;
      else if (!strcmp(flag, "--bundle")) o->bundle = v;
      else o->out = v;
    } else if (!strcmp(flag, "--samples")) {
      if (parse_long(flag, v, 1, 1000000, &o->samples)) return 2;
    } else if (!strcmp(flag, "--steps")) {
      long x;
      if (parse_long(flag, v, 1, 100000, &x)) return 2;
      o->cfg.n_step = (int)x;
      o->steps_given = 1;
    } else if (!strcmp(flag, "--seed")) {
      char *end;
      errno = 0;
      unsigned long long x = strtoull(v, &end, 10);
      if (errno || *end || end == v || v[0] == '-' || v[0] == '+')
        return bad_value(flag, v, "an integer in [0, 18446744073709551615]");
      o->cfg.seed = (uint64_t)x;
    } else if (!strcmp(flag, "--chunk")) {
      if (parse_long(flag, v, 1, 4096, &o->chunk)) return 2;
    } else if (!strcmp(flag, "--threads")) {
      if (parse_long(flag, v, 0, 4096, &o->threads)) return 2;
    } else if (!strcmp(flag, "--eta-type")) {
      int t = px_eta_type_from_name(v);
      if (t < 0)
        return bad_value(flag, v, "one of const, linear, poly, cos, piecewise, piecewise_65, piecewise_70");
      o->cfg.eta_type = t;
    } else if (!strcmp(flag, "--eta-min")) {
      if (parse_float(flag, v, -1e6, 1e6, &o->cfg.eta_min)) return 2;
    } else if (!strcmp(flag, "--eta-max")) {
      if (parse_float(flag, v, -1e6, 1e6, &o->cfg.eta_max)) return 2;
    } else if (!strcmp(flag, "--gamma0")) {
      if (parse_float(flag, v, 0, 1e6, &o->cfg.gamma0)) return 2;
    } else if (!strcmp(flag, "--gamma-min")) {
      if (parse_float(flag, v, 0, 1e6, &o->cfg.gamma_min)) return 2;
    } else if (!strcmp(flag, "--noise-scale-lambda")) {
      if (parse_float(flag, v, 0, 1e6, &o->cfg.noise_scale_lambda)) return 2;
    } else if (!strcmp(flag, "--schedule-precision")) {
      if (!strcmp(v, "bf16")) o->cfg.schedule_bf16 = 1;
      else if (!strcmp(v, "fp32")) o->cfg.schedule_bf16 = 0;
      else return bad_value(flag, v, "bf16 or fp32");
    } else if (!strcmp(flag, "--device")) {
      o->device = px_device_from_name(v);
      if (o->device < 0) return bad_value(flag, v, "auto, cpu or cuda");
    } else if (!strcmp(flag, "--precision")) {
      o->precision = px_precision_from_name(v);
      if (o->precision == -2) return bad_value(flag, v, "fp32, tf32, bf16, fp16 or default");
    }
  }
  if (!demo && (!o->ckpt || !o->bundle)) {
    fprintf(stderr, "pxdiff: sample needs --checkpoint CKPT and --bundle B (try 'pxdiff help')\n");
    return 2;
  }
  if (!o->out) {
    fprintf(stderr, "pxdiff: %s needs --out DIR\n", cmd);
    return 2;
  }
  return 0;
}

/* --------------------------------------------------------------- helpers -- */

static volatile sig_atomic_t g_interrupted = 0;

static void on_signal(int sig) {
  g_interrupted = 1;
  signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

static char *path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t k = a;
  if (a && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* Shortest decimal that reads back as the same float. */
static void fmt_float(char *buf, size_t cap, float v) {
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, cap, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v) return;
  }
}

static void fmt_duration(char *buf, size_t cap, double s) {
  if (!(s >= 0) || s > 1e8) {
    snprintf(buf, cap, "--:--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

/* summary.json is built in a px_strbuf (io/strbuf.h); a NULL string is written as null. */
static void jb_str(px_strbuf *b, const char *s) {
  if (s)
    px_sb_json_string(b, s);
  else
    px_sb_str(b, "null");
}

/* ------------------------------------------------------------- the run ---- */

/* What the run needs to know about the design besides the model and cache. */
typedef struct {
  const char *command;    /* "sample" | "demo" */
  const char *name;       /* data block prefix, e.g. "pxdiff-demo" */
  const char *model_desc; /* checkpoint path or "synthetic (seed 2024)" */
  int synthetic;
  int n_token, n_atom;
  px_structure tmpl;      /* annotations; xyz filled per sample */
  double t_load, t_design;
  int64_t n_params;
  double sampling_s_per_design; /* set by run_sampling when it computed samples */
} problem_t;

typedef struct {
  double t0, last_print;
  int total, done, cur; /* samples to compute, finished, in the current call */
  int n_step;
  int tty, quiet;
  int line_open;
} progress_t;

static void progress_show(progress_t *p, double frac_done, int step, int force) {
  if (p->quiet) return;
  double now = px_time_now(), el = now - p->t0;
  if (!force && now - p->last_print < (p->tty ? 0.25 : 15.0)) return;
  p->last_print = now;
  double spd = frac_done > 0 ? el / frac_done : NAN;
  char e1[32], e2[32], rate[32];
  fmt_duration(e1, sizeof e1, el);
  fmt_duration(e2, sizeof e2, frac_done > 0 ? spd * (p->total - frac_done) : NAN);
  if (frac_done > 0) snprintf(rate, sizeof rate, "%.2f s/design", spd);
  else snprintf(rate, sizeof rate, "-- s/design");
  int done_whole = p->done;
  if (p->tty) {
    char bar[31];
    int fill = p->total > 0 ? (int)(30.0 * frac_done / p->total) : 30;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '-';
    bar[30] = '\0';
    fprintf(stderr, "\r\x1b[Ksampling [%s] %d/%d designs | %s elapsed | ETA %s | %s", bar, done_whole,
            p->total, e1, e2, rate);
    p->line_open = 1;
  } else if (step > 0 && step < p->n_step) {
    fprintf(stderr, "pxdiff: %d/%d designs done (chunk of %d at step %d/%d), %s elapsed, ETA %s, %s\n",
            done_whole, p->total, p->cur, step, p->n_step, e1, e2, rate);
  } else {
    fprintf(stderr, "pxdiff: %d/%d designs done, %s elapsed, ETA %s, %s\n", done_whole, p->total, e1,
            e2, rate);
  }
  fflush(stderr);
}

static int progress_cb(void *user, int samples_done, int samples_total, int step, int n_step) {
  progress_t *p = user;
  if (g_interrupted) return 1;
  if (step < n_step) {
    double frac = p->done + (double)p->cur * step / n_step;
    progress_show(p, frac, step, 0);
  }
  (void)samples_done;
  (void)samples_total;
  return 0;
}

static void progress_close(progress_t *p) {
  if (p->line_open) {
    fputc('\n', stderr);
    p->line_open = 0;
  }
}

static uint64_t run_fingerprint(const px_model *m, const px_design *d, const px_sampler_config *c,
                                const problem_t *pb) {
  char buf[1024], f[6][24];
  fmt_float(f[0], sizeof f[0], c->gamma0);
  fmt_float(f[1], sizeof f[1], c->gamma_min);
  fmt_float(f[2], sizeof f[2], c->noise_scale_lambda);
  fmt_float(f[3], sizeof f[3], c->eta_min);
  fmt_float(f[4], sizeof f[4], c->eta_max);
  fmt_float(f[5], sizeof f[5], c->sigma_data);
  const char *backend = px_model_backend_name(m);
  snprintf(buf, sizeof buf,
           "pxdiff-run v1|seed=%llu|steps=%d|eta=%s:%s:%s|gamma0=%s|gamma_min=%s|lambda=%s|sched=%s|"
           "smax=%a|smin=%a|rho=%a|sd=%s|design=%016llx|model=%s|params=%lld|device=%.4s|prec=%s",
           (unsigned long long)c->seed, c->n_step, px_eta_type_name(c->eta_type), f[3], f[4], f[0], f[1],
           f[2], c->schedule_bf16 ? "bf16" : "fp32", (double)c->s_max, (double)c->s_min, (double)c->rho,
           f[5], (unsigned long long)px_design_key(d), pb->model_desc, (long long)pb->n_params,
           backend ? backend : "?", px_model_precision_name(m));
  return fnv1a(14695981039346656037ull, buf, strlen(buf));
}

/* "sample_<idx>.<ext>", idx zero-padded to width digits. */
static void sample_file(char *buf, size_t cap, int width, long idx, const char *ext) {
  char digits[32];
  int k = snprintf(digits, sizeof digits, "%ld", idx);
  int pad = width > k ? width - k : 0;
  snprintf(buf, cap, "sample_%.*s%s.%s", pad, "00000000000000000000", digits, ext);
}

/* File names: sample_<i>.cif with at least 4 digits. */
static int index_width(long n) {
  int w = 4;
  for (long x = 10000; x < n; x *= 10) w++;
  return w;
}

static int write_summary(const char *path, const opts_t *o, const problem_t *pb, const px_model *m,
                         const px_design *d, uint64_t run_id, double t_sampling, int sampled,
                         int computed, int resumed, double t_total, int width) {
  px_strbuf b = {0};
  char fl[8][32];
  const px_sampler_config *c = &o->cfg;
  fmt_float(fl[0], 32, c->eta_min);
  fmt_float(fl[1], 32, c->eta_max);
  fmt_float(fl[2], 32, c->gamma0);
  fmt_float(fl[3], 32, c->gamma_min);
  fmt_float(fl[4], 32, c->noise_scale_lambda);
  fmt_float(fl[5], 32, c->s_max);
  fmt_float(fl[6], 32, c->s_min);
  fmt_float(fl[7], 32, c->rho);
  px_sb_printf(&b, "{\n  \"pxdiff_version\": \"%s\",\n  \"command\": \"%s\",\n  \"complete\": true,\n",
            PXDIFF_VERSION, pb->command);
  px_sb_printf(&b, "  \"synthetic_weights\": %s,\n", pb->synthetic ? "true" : "false");
  if (pb->synthetic) px_sb_printf(&b, "  \"note\": \"%s\",\n", SYNTH_LABEL);
  px_sb_printf(&b, "  \"checkpoint\": ");
  jb_str(&b, o->ckpt);
  px_sb_printf(&b, ",\n  \"model\": ");
  jb_str(&b, pb->model_desc);
  px_sb_printf(&b, ",\n  \"model_parameters\": %lld,\n  \"bundle\": ", (long long)pb->n_params);
  jb_str(&b, o->bundle);
  px_sb_printf(&b, ",\n  \"design\": {\"name\": ");
  jb_str(&b, pb->name);
  px_sb_printf(&b, ", \"n_tokens\": %d, \"n_atoms\": %d, \"key\": \"%016llx\"},\n", pb->n_token,
            pb->n_atom, (unsigned long long)px_design_key(d));
  px_sb_printf(&b, "  \"run_id\": \"%016llx\",\n", (unsigned long long)run_id);
  px_sb_printf(&b, "  \"settings\": {\n    \"samples\": %ld,\n    \"steps\": %d,\n", o->samples, c->n_step);
  if (!strcmp(pb->command, "demo") && c->n_step != 400)
    px_sb_printf(&b, "    \"steps_note\": \"%d steps, fewer than PXDesign's default 400 (the demo's default is %d, "
                  "chosen so the demo finishes in under a minute on 2 CPU cores)\",\n",
              c->n_step, DEMO_STEPS);
  px_sb_printf(&b, "    \"seed\": %llu,\n    \"chunk\": %ld,\n", (unsigned long long)c->seed, o->chunk);
  px_sb_printf(&b, "    \"eta_type\": \"%s\",\n    \"eta_min\": %s,\n    \"eta_max\": %s,\n",
            px_eta_type_name(c->eta_type), fl[0], fl[1]);
  px_sb_printf(&b, "    \"gamma0\": %s,\n    \"gamma_min\": %s,\n    \"noise_scale_lambda\": %s,\n", fl[2],
            fl[3], fl[4]);
  px_sb_printf(&b, "    \"schedule_precision\": \"%s\",\n    \"s_max\": %s,\n    \"s_min\": %s,\n    \"rho\": %s,\n",
            c->schedule_bf16 ? "bf16" : "fp32", fl[5], fl[6], fl[7]);
  px_sb_printf(&b, "    \"device\": \"%s\",\n    \"precision\": \"%s\",\n    \"x16_token_blocks\": %d,\n",
            px_model_backend_name(m), px_model_precision_name(m), px_model_x16_blocks(m));
  px_sb_printf(&b, "    \"threads\": %ld,\n", o->threads);
  px_sb_printf(&b, "    \"pdb\": %s\n  },\n", o->pdb ? "true" : "false");
  px_sb_printf(&b, "  \"timings\": {\n    \"model_load_s\": %.3f,\n    \"design_s\": %.3f,\n", pb->t_load,
            pb->t_design);
  px_sb_printf(&b, "    \"sampling_s\": %.3f,\n    \"s_per_design\": ", t_sampling);
  if (sampled) px_sb_printf(&b, "%.4f", t_sampling / sampled);
  else px_sb_printf(&b, "null");
  px_sb_printf(&b, ",\n    \"total_s\": %.3f\n  },\n", t_total);
  px_sb_printf(&b, "  \"samples_computed\": %d,\n  \"samples_resumed\": %d,\n  \"samples_sampled\": %d,\n",
            computed, resumed, sampled);
  px_sb_printf(&b, "  \"b_factor\": \"1.00 = designed atom, 0.00 = condition atom\",\n  \"files\": [");
  for (long i = 0; i < o->samples; i++) {
    px_sb_printf(&b, "%s\n    {\"index\": %ld, \"cif\": \"sample_%0*ld.cif\"", i ? "," : "", i, width, i);
    if (o->pdb) px_sb_printf(&b, ", \"pdb\": \"sample_%0*ld.pdb\"", width, i);
    px_sb_printf(&b, "}");
  }
  px_sb_printf(&b, "\n  ]\n}\n");
  if (b.oom) {
    free(b.p);
    return px_fail(PX_ERR_NOMEM, "out of memory writing summary.json");
  }
  int rc = px_write_file_atomic_msg(path, b.p, b.n);
  free(b.p);
  return rc;
}

/* Creates DIR and checks it takes files; prints one line and returns 1 when not. */
static int prepare_out_dir(const char *dir) {
  errno = 0;
  if (px_mkdir_p(dir) != 0) {
    fprintf(stderr, "pxdiff: cannot create output directory %s: %s\n", dir, strerror(errno));
    return 1;
  }
  char *probe = path_join(dir, ".pxdiff-write-test");
  if (!probe) {
    fprintf(stderr, "pxdiff: out of memory\n");
    return 1;
  }
  static const char text[] = "pxdiff\n";
  int rc = px_file_write_atomic(probe, text, sizeof text - 1);
  int e = errno;
  remove(probe);
  free(probe);
  if (rc) {
    fprintf(stderr, "pxdiff: cannot write to output directory %s: %s\n", dir, strerror(e));
    return 1;
  }
  return 0;
}

/* The sampling loop shared by `sample` and `demo`. Returns the exit status. */
static int run_sampling(const opts_t *o, const px_model *m, px_design *d, problem_t *pb, double t_start) {
  const long S = o->samples;
  const int width = index_width(S);
  const int N = pb->n_atom;
  const size_t n3 = (size_t)N * 3;
  uint64_t run_id = run_fingerprint(m, d, &o->cfg, pb);
  char trailer[64], trailer_line[80], name[64];
  snprintf(trailer, sizeof trailer, "pxdiff-complete run=%016llx", (unsigned long long)run_id);
  snprintf(trailer_line, sizeof trailer_line, "# %s", trailer);
  char *summary = path_join(o->out, "summary.json");
  unsigned char *have = calloc((size_t)S, 1);
  float *x = malloc(sizeof(float) * n3 * (size_t)(o->chunk < S ? o->chunk : S));
  char *cif = NULL, *pdb = NULL;
  int rc = 0;
  if (!summary || !have || !x) {
    fprintf(stderr, "pxdiff: out of memory\n");
    rc = 1;
    goto done;
  }
  /* Annotation problems surface now, not after the first chunk. */
  {
    float *zero = calloc(n3 ? n3 : 1, sizeof(float));
    px_structure t = pb->tmpl;
    t.xyz = zero;
    char *text = NULL;
    int bad = !zero || px_structure_cif(&t, "check", NULL, 0, NULL, &text, NULL);
    free(text);
    text = NULL;
    if (!bad && o->pdb) bad = px_structure_pdb(&t, NULL, 0, &text, NULL);
    free(text);
    free(zero);
    if (bad) {
      fprintf(stderr, "pxdiff: %s\n", px_last_error());
      rc = 1;
      goto done;
    }
  }
  remove(summary); /* from here on the directory holds an unfinished run */
  int resumed = 0;
  if (o->resume) {
    for (long i = 0; i < S; i++) {
      char fname[64];
      sample_file(fname, sizeof fname, width, i, "cif");
      char *p = path_join(o->out, fname);
      if (!p) continue;
      char last[128];
      if (px_structure_file_last_line(p, last, sizeof last) == 0) {
        if (!strcmp(last, trailer_line)) {
          have[i] = 1;
          if (o->pdb) { /* the .pdb is written before the .cif; check it anyway */
            p[strlen(p) - 3] = '\0';
            strcat(p, "pdb");
            have[i] = (unsigned char)px_structure_file_has_trailer(p, "END");
          }
        } else if (!strncmp(last, "# pxdiff-complete run=", 22)) {
          fprintf(stderr,
                  "pxdiff: --resume: %s was written by a run with other settings or inputs "
                  "(this run's id is %016llx); use another --out, or drop --resume to overwrite\n",
                  p, (unsigned long long)run_id);
          free(p);
          rc = 1;
          goto done;
        }
      }
      resumed += have[i];
      free(p);
    }
  }
  /* Samples run in the chunks an uninterrupted run uses ([k*C, (k+1)*C)), so each sample
   * meets the same batch on resume: bitwise equal files also where a backend's rounding
   * depends on the batch (GPU). A chunk with any sample missing is sampled whole; only
   * its missing files are written. */
  const long C = o->chunk;
  int todo = 0;
  for (long c0 = 0; c0 < S; c0 += C) {
    const long n = S - c0 < C ? S - c0 : C;
    int missing = 0;
    for (long s = 0; s < n; s++) missing |= !have[c0 + s];
    if (missing) todo += (int)n;
  }
  int written = 0;
  if (!o->quiet) {
    if (o->resume)
      fprintf(stderr, "pxdiff: resume: %d of %ld samples already written, %ld to compute\n", resumed, S,
              S - resumed);
  }
  progress_t pr = {0};
  pr.t0 = px_time_now();
  pr.total = todo;
  pr.n_step = o->cfg.n_step;
  pr.tty = px_isatty(2);
  pr.quiet = o->quiet;
  g_interrupted = 0;
  void (*old_int)(int) = signal(SIGINT, on_signal);
  void (*old_term)(int) = signal(SIGTERM, on_signal);
  if (todo > 0) progress_show(&pr, 0, 0, 1);
  const char *synth_comment[4];
  int n_comment = 0;
  char c0[256], c1[160];
  char eta_min[32], eta_max[32];
  fmt_float(eta_min, sizeof eta_min, o->cfg.eta_min);
  fmt_float(eta_max, sizeof eta_max, o->cfg.eta_max);
  if (pb->synthetic) synth_comment[n_comment++] = SYNTH_LABEL_ASCII;
  synth_comment[n_comment++] = c0;
  synth_comment[n_comment++] = c1;
  synth_comment[n_comment++] = "B_iso_or_equiv: 1.00 = designed atom, 0.00 = condition atom";
  for (long i = 0; i < S && !rc; i += C) {
    const long n = S - i < C ? S - i : C;
    int missing = 0;
    for (long s = 0; s < n; s++) missing |= !have[i + s];
    if (!missing) continue;
    pr.cur = (int)n;
    int st = px_sample(m, d, &o->cfg, (int)i, (int)n, (int)C, x, progress_cb, &pr);
    if (st == PX_ERR_CANCELLED || g_interrupted) {
      rc = 130;
      break;
    }
    if (st) {
      progress_close(&pr);
      fprintf(stderr, "pxdiff: %s\n", px_last_error());
      rc = 1;
      break;
    }
    for (long s = 0; s < n && !rc; s++) {
      long idx = i + s;
      if (have[idx]) continue;
      char fname[64];
      snprintf(c0, sizeof c0, "pxdiff %s %s: sample %ld, seed %llu, %d steps, eta %s %s..%s, schedule %s",
               PXDIFF_VERSION, pb->command, idx, (unsigned long long)o->cfg.seed, o->cfg.n_step,
               px_eta_type_name(o->cfg.eta_type), eta_min, eta_max, o->cfg.schedule_bf16 ? "bf16" : "fp32");
      snprintf(c1, sizeof c1, "model: %s; design: %s", pb->model_desc, pb->name);
      px_structure t = pb->tmpl;
      t.xyz = x + (size_t)s * n3;
      const char *failed = NULL;
      if (o->pdb) {
        sample_file(fname, sizeof fname, width, idx, "pdb");
        free(pdb);
        pdb = path_join(o->out, fname);
        if (!pdb || px_structure_write_pdb(pdb, &t, synth_comment, n_comment)) failed = pdb ? pdb : "";
      }
      if (!failed) {
        char base[64];
        sample_file(base, sizeof base, width, idx, "cif");
        base[strlen(base) - 4] = '\0';
        snprintf(name, sizeof name, "%.40s_%s", pb->name, base);
        sample_file(fname, sizeof fname, width, idx, "cif");
        free(cif);
        cif = path_join(o->out, fname);
        if (!cif || px_structure_write_cif(cif, &t, name, synth_comment, n_comment, trailer))
          failed = cif ? cif : "";
      }
      if (failed) {
        rc = 1;
        progress_close(&pr);
        const char *err = *failed ? px_last_error() : "out of memory";
        if (!strncmp(err, "cannot write", 12)) fprintf(stderr, "pxdiff: %s\n", err);
        else fprintf(stderr, "pxdiff: cannot write %s: %s\n", failed, err);
      } else {
        written++;
      }
    }
    pr.done += (int)n;
    if (!rc) progress_show(&pr, pr.done, o->cfg.n_step, 1);
  }
  signal(SIGINT, old_int == SIG_ERR ? SIG_DFL : old_int);
  signal(SIGTERM, old_term == SIG_ERR ? SIG_DFL : old_term);
  progress_close(&pr);
  double t_sampling = px_time_now() - pr.t0;
  if (rc == 130) {
    fprintf(stderr,
            "pxdiff: interrupted: %d of %ld samples written to %s (no summary.json); rerun with "
            "--resume to finish\n",
            resumed + written, S, o->out);
    goto done;
  }
  if (rc) goto done;
  if (write_summary(summary, o, pb, m, d, run_id, t_sampling, pr.done, written, resumed,
                    px_time_now() - t_start, width)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    rc = 1;
    goto done;
  }
  if (pr.done) pb->sampling_s_per_design = t_sampling / pr.done;
  if (!o->quiet) {
    printf("wrote %ld sample%s to %s (sample_%0*d.cif%s", S, S == 1 ? "" : "s", o->out, width, 0,
           S > 1 ? " ..." : "");
    printf("%s) and summary.json\n", o->pdb ? ", .pdb" : "");
    if (pr.done)
      printf("  sampling %.2f s for %d sample%s: %.2f s/design at %d steps (chunks of %ld)%s\n", t_sampling,
             pr.done, pr.done == 1 ? "" : "s", t_sampling / pr.done, o->cfg.n_step, o->chunk,
             resumed ? "; the rest resumed" : "");
    else
      printf("  all samples were already written (resumed)\n");
  }
done:
  free(summary);
  free(have);
  free(x);
  free(cif);
  free(pdb);
  return rc;
}

static int setup_backend(const opts_t *o, px_model *m) {
  if (o->device == PX_DEVICE_AUTO && o->precision == PX_PRECISION_DEFAULT) {
    if (px_model_set_backend(m, PX_DEVICE_AUTO, PX_PRECISION_DEFAULT) == PX_OK) return 0;
  } else if (px_model_set_backend(m, o->device, o->precision) == PX_OK) {
    return 0;
  }
  fprintf(stderr, "pxdiff: %s\n", px_last_error());
  return 1;
}

/* ---------------------------------------------------------------- sample -- */

int cmd_sample(int argc, char **argv) {
  opts_t o;
  int st = parse_opts("sample", argc, argv, &o, 0);
  if (st) return st;
  const double t_start = px_time_now();
  if (prepare_out_dir(o.out)) return 1;
  if (o.threads) px_set_num_threads((int)o.threads);
  problem_t pb = {0};
  pb.command = "sample";
  pb.model_desc = o.ckpt;
  px_model *m = NULL;
  px_bundle *b = NULL;
  px_design *d = NULL;
  int rc = 1;
  const char **atom_name = NULL, **element = NULL, **res_name = NULL, **chain_id = NULL;
  int *res_seq = NULL;
  float *bf = NULL;
  double t0 = px_time_now();
  if (px_model_load(o.ckpt, &m)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    goto done;
  }
  pb.t_load = px_time_now() - t0;
  pb.n_params = px_model_n_params(m);
  if (setup_backend(&o, m)) goto done;
  if (px_bundle_open(o.bundle, &b)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    goto done;
  }
  const px_features *f = NULL;
  if (px_bundle_features_for_model(b, m, &f)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    goto done;
  }
  t0 = px_time_now();
  if (px_design_create(m, f, &d)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    goto done;
  }
  pb.t_design = px_time_now() - t0;
  const int N = f->n_atom;
  pb.n_atom = N;
  pb.n_token = f->n_token;
  pb.name = px_bundle_meta(b, "name");
  if (!pb.name || !*pb.name) pb.name = "design";
  atom_name = malloc(sizeof(char *) * (size_t)N);
  element = malloc(sizeof(char *) * (size_t)N);
  res_name = malloc(sizeof(char *) * (size_t)N);
  chain_id = malloc(sizeof(char *) * (size_t)N);
  res_seq = malloc(sizeof(int) * (size_t)N);
  bf = malloc(sizeof(float) * (size_t)N);
  if (!atom_name || !element || !res_name || !chain_id || !res_seq || !bf) {
    fprintf(stderr, "pxdiff: out of memory\n");
    goto done;
  }
  for (int i = 0; i < N; i++) {
    int t = (int)f->atom_to_token_idx[i];
    atom_name[i] = px_bundle_atom_name(b, i);
    element[i] = px_bundle_atom_element(b, i);
    res_name[i] = px_bundle_res_name(b, t);
    chain_id[i] = px_bundle_chain_id(b, t);
    res_seq[i] = (int)px_bundle_res_num(b, t);
    bf[i] = px_bundle_is_designed(b, t) ? 1.0f : 0.0f;
  }
  pb.tmpl = (px_structure){.n_atom = N, .atom_name = atom_name, .element = element, .res_name = res_name,
                           .chain_id = chain_id, .res_seq = res_seq, .b_factor = bf};
  if (!o.quiet)
    fprintf(stderr, "pxdiff: %s: %d tokens, %d atoms; %ld sample%s x %d steps, seed %llu, backend %s (%s)\n",
            o.bundle, pb.n_token, N, o.samples, o.samples == 1 ? "" : "s", o.cfg.n_step,
            (unsigned long long)o.cfg.seed, px_model_backend_name(m), cmd_precision_label(m));
  rc = run_sampling(&o, m, d, &pb, t_start);
done:
  free(atom_name);
  free(element);
  free(res_name);
  free(chain_id);
  free(res_seq);
  free(bf);
  px_design_free(d);
  px_bundle_free(b);
  px_model_free(m);
  return rc;
}

/* ------------------------------------------------------------------ demo -- */

int cmd_demo(int argc, char **argv) {
  opts_t o;
  int st = parse_opts("demo", argc, argv, &o, 1);
  if (st) return st;
  const double t_start = px_time_now();
  if (prepare_out_dir(o.out)) return 1;
  if (o.threads) px_set_num_threads((int)o.threads);
  problem_t pb = {0};
  pb.command = "demo";
  pb.name = "pxdiff-demo";
  pb.synthetic = 1;
  char desc[96];
  snprintf(desc, sizeof desc, "synthetic weights, released PXDesign v0.1.0 shapes, seed %d", DEMO_MODEL_SEED);
  pb.model_desc = desc;
  if (!o.quiet) {
    printf("pxdiff demo: %s\n", SYNTH_LABEL);
    printf("  built-in problem: %d-residue target (chain A) + %d-residue designed binder (chain B), "
           "%d atoms\n",
           PX_DEMO_TARGET, PX_DEMO_BINDER, (PX_DEMO_TARGET + PX_DEMO_BINDER) * PX_DEMO_ATOMS_PER_RES);
    printf("  %ld sample%s x %d steps%s, seed %llu\n", o.samples, o.samples == 1 ? "" : "s", o.cfg.n_step,
           o.cfg.n_step == 400 ? "" : " (PXDesign's default is 400; the demo uses fewer to finish quickly)",
           (unsigned long long)o.cfg.seed);
    fflush(stdout);
  }
  px_dims D;
  px_dims_released(&D);
  px_model *m = NULL;
  px_design *d = NULL;
  px_demo_design dd;
  memset(&dd, 0, sizeof dd);
  int rc = 1;
  double t0 = px_time_now();
  if (px_model_synthetic(&D, DEMO_MODEL_SEED, &m)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    goto done;
  }
  pb.t_load = px_time_now() - t0;
  pb.n_params = px_model_n_params(m);
  if (setup_backend(&o, m)) goto done;
  px_model_get_dims(m, &D);
  if (px_demo_design_make(&D, &dd)) {
    fprintf(stderr, "pxdiff: out of memory building the demo design\n");
    goto done;
  }
  t0 = px_time_now();
  if (px_design_create(m, &dd.f, &d)) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    goto done;
  }
  pb.t_design = px_time_now() - t0;
  pb.n_atom = dd.f.n_atom;
  pb.n_token = dd.f.n_token;
  pb.tmpl = (px_structure){.n_atom = dd.f.n_atom, .atom_name = dd.atom_name, .element = dd.element,
                           .res_name = dd.res_name, .chain_id = dd.chain_id, .res_seq = dd.res_seq,
                           .b_factor = dd.designed};
  if (!o.quiet) {
    printf("  model: %.1f M parameters generated in %.2f s; design cache %.3f s; backend %s (%s)\n",
           (double)pb.n_params / 1e6, pb.t_load, pb.t_design, px_model_backend_name(m),
           cmd_precision_label(m));
    fflush(stdout);
  }
  rc = run_sampling(&o, m, d, &pb, t_start);
  if (!rc && !o.quiet) {
    if (o.cfg.n_step != 400 && pb.sampling_s_per_design > 0)
      printf("  (at PXDesign's default 400 steps this would be about %.0f s/design here)\n",
             pb.sampling_s_per_design * 400.0 / o.cfg.n_step);
    printf("  total %.1f s. %s\n", px_time_now() - t_start, SYNTH_LABEL);
  }
done:
  px_design_free(d);
  px_demo_design_free(&dd);
  px_model_free(m);
  return rc;
}
