/* `pxdiff sample`: run the sampler for a design and write one mmCIF
 * (and optionally PDB) per sample plus summary.json.
 *
 * The pieces shared with other commands live beside this file: the option table parser
 * (options.h), the output protocol (run_output.h: fingerprint, resume, overwrite, the
 * completeness trailer, summary.json last) and the progress display (progress.h). This
 * file holds what is particular to sampling: the options, the fingerprint's settings, the
 * chunk loop and the summary's fields.
 *
 *   DIR/sample_<i>.cif   one per sample, zero-padded index (4 digits, more when needed),
 *                        written atomically; its last line is "# pxdiff-complete run=<id>"
 *                        where <id> fingerprints every setting and input that changes
 *                        coordinates (not --chunk, --threads or the sample count).
 *   DIR/sample_<i>.pdb   with --pdb, written before the .cif.
 *   DIR/summary.json     written last, only when every sample is written.
 * Because a sample's noise depends only on (seed, sample index, step) and samples run in
 * the chunks an uninterrupted run uses, a resumed run's files equal an uninterrupted run's
 * byte for byte. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cmd_sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/design_run.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/run_output.h"
#include "error.h"
#include "io/bundle.h"
#include "io/strbuf.h"
#include "io/structure.h"
#include "platform.h"
#include "pxdiff_synthetic.h"

#define SYNTH_LABEL_ASCII "SYNTHETIC WEIGHTS -- not a trained model"
#define SYNTH_LABEL "SYNTHETIC WEIGHTS \xe2\x80\x94 not a trained model"

/* ---------------------------------------------------------------- options -- */

typedef struct {
  const char *ckpt, *bundle, *out;
  long samples, chunk, threads;
  px_sampler_config cfg;
  long steps;
  px_device_ref device;
  int precision, eta_type, sched_bf16;
  int pdb, quiet, resume, overwrite;
  int chunk_given;     /* --chunk on the command line (else chosen on a GPU: choose_chunk) */
  char chunk_note[300]; /* how the chunk came about */
} opts_t;

static const char *const eta_names[] = {"const", "linear", "poly", "cos", "piecewise", "piecewise_65",
                                        "piecewise_70", NULL};
static int eta_values[8];
static const char *const sched_names[] = {"bf16", "fp32", NULL};
static const int sched_values[] = {1, 0};

static const char SAMPLE_DETAILS[] =
    "Defaults are what PXDesign's `pxdesign infer` / `pipeline` run.\n"
    "\n"
    "output (DIR):\n"
    "  sample_0000.cif ...  one per sample, written atomically; B_iso_or_equiv 1.00 = designed\n"
    "                       atom, 0.00 = condition atom; the last line names the run\n"
    "  sample_0000.pdb ...  with --pdb\n"
    "  summary.json         written last, only when every sample exists: no summary.json\n"
    "                       means an unfinished run\n"
    "  A run writes only these names and never touches other files in DIR. Nothing is\n"
    "  created before every input is checked. A DIR holding an earlier run's files is\n"
    "  refused unless --resume (finish the same run: kept files are reused, the result\n"
    "  equals an uninterrupted run byte for byte; refused, changing nothing, when the files\n"
    "  came from other settings) or --overwrite (remove that run's files first).\n"
    "  Ctrl-C (SIGINT/SIGTERM) stops after the current step: finished samples stay, no\n"
    "  summary.json, exit status 130; rerun with --resume to finish.\n"
    "  Progress goes to stderr (a bar on a terminal, periodic lines otherwise).\n"
    "\n"
    "devices: auto = cuda when a CUDA device is usable, else cpu; cuda = the first CUDA\n"
    "  device (fails when there is none), cuda:N = CUDA device N; precision default = fp32\n"
    "  on the CPU (the only one there), fp16 on CUDA.\n";

/* The command's option table. */
static int sample_options(cli_opt *t, opts_t *o) {
  for (int i = 0; eta_names[i]; i++) eta_values[i] = px_eta_type_from_name(eta_names[i]);
  int n = 0;
  t[n++] = (cli_opt){.name = "--checkpoint", .kind = CLI_PATH, .dst = &o->ckpt, .meta = "CKPT",
                     .flags = CLI_REQUIRED, .help = "PXDesign checkpoint (.pt) or pxdiff safetensors"};
  t[n++] = (cli_opt){.name = "--bundle", .kind = CLI_PATH, .dst = &o->bundle, .meta = "B",
                     .flags = CLI_REQUIRED, .help = "feature bundle of the design (docs/bundle.md)"};
  t[n++] = (cli_opt){.name = "--out", .kind = CLI_PATH, .dst = &o->out, .meta = "DIR", .flags = CLI_REQUIRED,
                     .help = "output directory (created when missing)"};
  t[n++] = (cli_opt){.name = "--samples", .kind = CLI_INT, .dst = &o->samples, .meta = "N",
                     .def = "1", .lo = 1, .hi = 1000000, .help = "designs to sample"};
  t[n++] = (cli_opt){.name = "--steps", .kind = CLI_INT, .dst = &o->steps, .meta = "K",
                     .def = "400", .lo = 1, .hi = 100000, .help = "sampler steps"};
  t[n++] = (cli_opt){.name = "--seed", .kind = CLI_U64, .dst = &o->cfg.seed, .meta = "S", .def = "0",
                     .help = "random seed"};
  t[n++] = (cli_opt){.name = "--chunk", .kind = CLI_INT, .dst = &o->chunk, .meta = "C", .def = "10", .lo = 1,
                     .hi = 4096, .given = &o->chunk_given,
                     .help = "samples per engine call (default: on a GPU chosen from its memory and the\n"
                             "design's size, the same on every run of that design on that card; else 10)"};
  t[n++] = (cli_opt){.name = "--eta-type", .kind = CLI_ENUM, .dst = &o->eta_type, .def = "const",
                     .enum_names = eta_names, .enum_values = eta_values, .help = "noise-scale schedule"};
  t[n++] = (cli_opt){.name = "--eta-min", .kind = CLI_FLOAT, .dst = &o->cfg.eta_min, .meta = "X", .def = "2.5",
                     .lo = -1e6, .hi = 1e6, .help = "step scale at the start"};
  t[n++] = (cli_opt){.name = "--eta-max", .kind = CLI_FLOAT, .dst = &o->cfg.eta_max, .meta = "X", .def = "2.5",
                     .lo = -1e6, .hi = 1e6, .help = "step scale at the end"};
  t[n++] = (cli_opt){.name = "--gamma0", .kind = CLI_FLOAT, .dst = &o->cfg.gamma0, .meta = "X", .def = "1.0",
                     .lo = 0, .hi = 1e6, .help = "noise injection factor"};
  t[n++] = (cli_opt){.name = "--gamma-min", .kind = CLI_FLOAT, .dst = &o->cfg.gamma_min, .meta = "X",
                     .def = "0.01", .lo = 0, .hi = 1e6, .help = "noise injected only above this level"};
  t[n++] = (cli_opt){.name = "--noise-scale-lambda", .kind = CLI_FLOAT, .dst = &o->cfg.noise_scale_lambda,
                     .meta = "X", .def = "1.003", .lo = 0, .hi = 1e6, .help = "injected noise scale"};
  t[n++] = (cli_opt){.name = "--schedule-precision", .kind = CLI_ENUM, .dst = &o->sched_bf16, .def = "bf16",
                     .enum_names = sched_names, .enum_values = sched_values,
                     .help = "bf16: the noise schedule rounded per operation as PXDesign's "
                             "default GPU run; fp32: plain float32"};
  t[n++] = (cli_opt){.name = "--device", .kind = CLI_DEVICE, .dst = &o->device, .def = "auto",
                     .help = "where to compute (see devices below)"};
  t[n++] = (cli_opt){.name = "--precision", .kind = CLI_ENUM, .dst = &o->precision, .def = "default",
                     .enum_names = cli_precision_names, .enum_values = cli_precision_values,
                     .help = "GEMM precision (CUDA: default fp16; CPU: default fp32, bf16 where it has AVX512_BF16)"};
  t[n++] = (cli_opt){.name = "--threads", .kind = CLI_INT, .dst = &o->threads, .meta = "K", .def = "0", .lo = 0,
                     .hi = 4096, .help = "CPU threads (0: the library's default)"};
  t[n++] = (cli_opt){.name = "--pdb", .kind = CLI_FLAG, .dst = &o->pdb,
                     .help = "also write sample_<i>.pdb (fails on coordinates beyond the PDB columns)"};
  t[n++] = (cli_opt){.name = "--resume", .kind = CLI_FLAG, .dst = &o->resume,
                     .help = "finish the run in DIR (same settings): keep its samples"};
  t[n++] = (cli_opt){.name = "--overwrite", .kind = CLI_FLAG, .dst = &o->overwrite,
                     .help = "remove an earlier run's files from DIR first"};
  t[n++] = (cli_opt){.name = "--quiet", .alias = "-q", .kind = CLI_FLAG, .dst = &o->quiet,
                     .help = "errors only"};
  return n;
}

static int parse_opts(const char *cmd, int argc, char **argv, opts_t *o, cli_command *c, cli_opt *table) {
  memset(o, 0, sizeof *o);
  px_sampler_config_default(&o->cfg);
  *c = (cli_command){.name = cmd,
                     .args = "--checkpoint CKPT --bundle B --out DIR [options]",
                     .summary = "Sample designs for a feature bundle: one mmCIF per sample + summary.json.",
                     .details = SAMPLE_DETAILS,
                     .opts = table,
                     .n_opts = sample_options(table, o)};
  int st = cli_parse(c, argc, argv, NULL, NULL);
  if (st != CLI_RUN) return st;
  if (o->resume && o->overwrite) return cli_usage_error(c, "--resume and --overwrite exclude each other");
  o->cfg.n_step = (int)o->steps;
  o->cfg.eta_type = o->eta_type;
  o->cfg.schedule_bf16 = o->sched_bf16;
  return CLI_RUN;
}

const char *cmd_precision_label(const px_model *m) {
  static char buf[128];
  const char *name = px_model_precision_name(m);
  px_dims D;
  if (strcmp(name, "fp16") && strcmp(name, "bf16")) return name;
  if (px_model_get_dims(m, &D)) return name;
  if (!strcmp(name, "fp16"))
    snprintf(buf, sizeof buf, "%s, 16-bit GEMM inputs in %d/%d token blocks, %d/%d atom blocks", name,
             px_model_x16_blocks(m), D.n_token_blocks, px_model_x16_atom_blocks(m), D.n_enc_blocks + D.n_dec_blocks);
  else
    snprintf(buf, sizeof buf, "%s, 16-bit GEMM inputs in %d/%d token blocks", name, px_model_x16_blocks(m),
             D.n_token_blocks);
  return buf;
}

/* ------------------------------------------------------------- the run ---- */

/* What the run needs to know about the design besides the model and cache. */
typedef struct {
  const char *command;    /* "sample" */
  const char *name;       /* data block prefix, e.g. "pxdiff-demo" */
  const char *model_desc; /* checkpoint path or "synthetic (seed 2024)" */
  int synthetic;
  int n_token, n_atom;
  px_structure tmpl; /* annotations; xyz filled per sample */
  double t_load, t_design;
  int64_t n_params;
  double sampling_s_per_design; /* set by run_sampling when it computed samples */
} problem_t;

static uint64_t sample_fingerprint(const px_model *m, const px_design *d, const px_sampler_config *c,
                                   const problem_t *pb, long chunk) {
  char buf[1024], fields[400];
  run_sampler_fields(fields, sizeof fields, c, c->seed);
  const char *backend = px_model_backend_name(m);
  snprintf(buf, sizeof buf, "pxdiff-run v1|%s|design=%016llx|model=%s|params=%lld|device=%.4s|prec=%s", fields,
           (unsigned long long)px_design_key(d), pb->model_desc, (long long)pb->n_params, backend ? backend : "?",
           px_model_precision_name(m));
  /* on a GPU the chunk changes the samples: a resume must use the same (the CPU's ids are
   * unchanged) */
  if (backend && !strncmp(backend, "cuda", 4)) {
    size_t l = strlen(buf);
    snprintf(buf + l, sizeof buf - l, "|chunk=%ld", chunk);
  }
  return run_fingerprint(buf);
}

static void jb_str(px_strbuf *b, const char *s) {
  if (s) px_sb_json_string(b, s);
  else px_sb_str(b, "null");
}

static long eff_chunk(const opts_t *o) { return o->chunk < o->samples ? o->chunk : o->samples; }

static char *summary_text(const opts_t *o, const problem_t *pb, const px_model *m, const px_design *d,
                          const run_out *r, double t_sampling, int sampled, int computed, double t_total) {
  px_strbuf b = {0};
  char fl[8][32];
  const px_sampler_config *c = &o->cfg;
  run_fmt_float(fl[0], 32, c->eta_min);
  run_fmt_float(fl[1], 32, c->eta_max);
  run_fmt_float(fl[2], 32, c->gamma0);
  run_fmt_float(fl[3], 32, c->gamma_min);
  run_fmt_float(fl[4], 32, c->noise_scale_lambda);
  run_fmt_float(fl[5], 32, c->s_max);
  run_fmt_float(fl[6], 32, c->s_min);
  run_fmt_float(fl[7], 32, c->rho);
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
  px_sb_printf(&b, ", \"n_tokens\": %d, \"n_atoms\": %d, \"key\": \"%016llx\"},\n", pb->n_token, pb->n_atom,
               (unsigned long long)px_design_key(d));
  px_sb_printf(&b, "  \"run_id\": \"%016llx\",\n", (unsigned long long)r->run_id);
  px_sb_printf(&b, "  \"settings\": {\n    \"samples\": %ld,\n    \"steps\": %d,\n", o->samples, c->n_step);
  /* the chunk the engine ran: --chunk, or the sample count when smaller */
  px_sb_printf(&b, "    \"seed\": %llu,\n    \"chunk\": %ld,\n", (unsigned long long)c->seed, eff_chunk(o));
  px_sb_printf(&b, "    \"eta_type\": \"%s\",\n    \"eta_min\": %s,\n    \"eta_max\": %s,\n",
               px_eta_type_name(c->eta_type), fl[0], fl[1]);
  px_sb_printf(&b, "    \"gamma0\": %s,\n    \"gamma_min\": %s,\n    \"noise_scale_lambda\": %s,\n", fl[2], fl[3],
               fl[4]);
  px_sb_printf(&b, "    \"schedule_precision\": \"%s\",\n    \"s_max\": %s,\n    \"s_min\": %s,\n    \"rho\": %s,\n",
               c->schedule_bf16 ? "bf16" : "fp32", fl[5], fl[6], fl[7]);
  px_sb_printf(&b,
               "    \"device\": \"%s\",\n    \"precision\": \"%s\",\n    \"x16_token_blocks\": %d,\n"
               "    \"x16_atom_blocks\": %d,\n",
               px_model_backend_name(m), px_model_precision_name(m), px_model_x16_blocks(m),
               px_model_x16_atom_blocks(m));
  px_sb_printf(&b, "    \"threads\": %ld,\n", o->threads);
  px_sb_printf(&b, "    \"pdb\": %s\n  },\n", o->pdb ? "true" : "false");
  px_sb_printf(&b, "  \"timings\": {\n    \"model_load_s\": %.3f,\n    \"design_s\": %.3f,\n", pb->t_load,
               pb->t_design);
  px_sb_printf(&b, "    \"sampling_s\": %.3f,\n    \"s_per_design\": ", t_sampling);
  if (sampled) px_sb_printf(&b, "%.4f", t_sampling / sampled);
  else px_sb_printf(&b, "null");
  px_sb_printf(&b, ",\n    \"total_s\": %.3f\n  },\n", t_total);
  px_sb_printf(&b, "  \"samples_computed\": %d,\n  \"samples_resumed\": %ld,\n  \"samples_sampled\": %d,\n",
               computed, r->n_have, sampled);
  px_sb_printf(&b, "  \"b_factor\": \"1.00 = designed atom, 0.00 = condition atom\",\n  \"files\": ");
  run_summary_files(&b, r);
  px_sb_printf(&b, "\n}\n");
  if (b.oom) {
    free(b.p);
    px_fail(PX_ERR_NOMEM, "out of memory writing summary.json");
    return NULL;
  }
  return b.p;
}

/* The layout of sample output (run_output.h). */
static run_layout sample_layout(const opts_t *o, const char *command) {
  run_layout L = {.dir = o->out, .command = command, .n_samples = o->samples, .prefix = "sample_",
                  .width = run_index_width(o->samples), .markers = {"summary.json"}, .n_markers = 1};
  if (o->pdb) {
    L.ext[0] = "pdb"; /* the .cif, written last, proves the sample complete */
    L.ext[1] = "cif";
    L.n_ext = 2;
  } else {
    L.ext[0] = "cif";
    L.n_ext = 1;
    L.other_ext[0] = "pdb";
    L.n_other_ext = 1;
  }
  return L;
}

static run_mode mode_of(const opts_t *o) {
  return o->resume ? RUN_RESUME : o->overwrite ? RUN_OVERWRITE : RUN_FRESH;
}

/* Annotation problems surface before anything is written, not after the first chunk. */
static int check_template(const opts_t *o, const problem_t *pb) {
  const size_t n3 = (size_t)pb->n_atom * 3;
  float *zero = calloc(n3 ? n3 : 1, sizeof(float));
  if (!zero) return cli_fail("out of memory");
  px_structure t = pb->tmpl;
  t.xyz = zero;
  char *text = NULL;
  int bad = px_structure_cif(&t, "check", NULL, 0, NULL, &text, NULL);
  free(text);
  text = NULL;
  if (!bad && o->pdb) bad = px_structure_pdb(&t, NULL, 0, &text, NULL);
  free(text);
  free(zero);
  return bad ? cli_fail(px_last_error()) : 0;
}

/* Sample idx's files (coordinates xyz), each written atomically. 0, or nonzero with the line
 * to print in why (its path named). Called from several threads at once: it touches only its
 * own sample's files and buffers. */
static int write_sample(const opts_t *o, const problem_t *pb, const run_out *r, long idx, const float *xyz,
                        const char *eta_min, const char *eta_max, long fail_write, char *why, size_t cap) {
  char c0[256], c1[160], path[4096], name[96];
  const char *comment[4];
  int n_comment = 0;
  if (pb->synthetic) comment[n_comment++] = SYNTH_LABEL_ASCII;
  comment[n_comment++] = c0;
  comment[n_comment++] = c1;
  comment[n_comment++] = "B_iso_or_equiv: 1.00 = designed atom, 0.00 = condition atom";
  snprintf(c0, sizeof c0, "pxdiff %s %s: sample %ld, seed %llu, %d steps, eta %s %s..%s, schedule %s",
           PXDIFF_VERSION, pb->command, idx, (unsigned long long)o->cfg.seed, o->cfg.n_step,
           px_eta_type_name(o->cfg.eta_type), eta_min, eta_max, o->cfg.schedule_bf16 ? "bf16" : "fp32");
  snprintf(c1, sizeof c1, "model: %s; design: %s", pb->model_desc, pb->name);
  px_structure t = pb->tmpl;
  t.xyz = xyz;
  if (idx == fail_write) { /* run_out_test_fail_write */
    snprintf(why, cap, "injected write failure (PXDIFF_TEST_FAIL_WRITE)");
    return 1;
  }
  for (int k = 0; k < r->L.n_ext; k++) {
    if (run_out_path(r, idx, k, path, sizeof path)) {
      snprintf(why, cap, "output path too long under %s", o->out);
      return 1;
    }
    int failed;
    if (!strcmp(r->L.ext[k], "pdb")) {
      failed = px_structure_write_pdb(path, &t, comment, n_comment);
    } else {
      char stem[64];
      run_out_relpath(r, idx, k, stem, sizeof stem);
      stem[strlen(stem) - 4] = '\0'; /* ".cif" */
      snprintf(name, sizeof name, "%.40s_%s", pb->name, stem);
      failed = px_structure_write_cif(path, &t, name, comment, n_comment, r->trailer);
    }
    if (failed) {
      const char *err = px_last_error();
      if (!strncmp(err, "cannot write", 12) || strstr(err, path)) snprintf(why, cap, "%s", err);
      else snprintf(why, cap, "cannot write %s: %s", path, err);
      return 1;
    }
  }
  return 0;
}

/* The sampling loop, after run_out_open. Returns the exit
 * status. */
static int run_sampling(const opts_t *o, const px_model *m, px_design *d, problem_t *pb, run_out *r,
                        double t_start) {
  const long S = o->samples;
  const size_t n3 = (size_t)pb->n_atom * 3;
  const long C = o->chunk;
  float *x = malloc(sizeof(float) * n3 * (size_t)eff_chunk(o));
  unsigned char *ok = malloc((size_t)eff_chunk(o)); /* a chunk's samples written by this run */
  int rc = 0;
  if (!x || !ok) {
    free(x);
    free(ok);
    return cli_fail("out of memory");
  }
  /* Samples run in the chunks an uninterrupted run uses ([k*C, (k+1)*C)), so each sample
   * meets the same batch on resume: bitwise equal files also where a backend's rounding
   * depends on the batch (GPU). A chunk with any sample missing is sampled whole; only
   * its missing files are written. */
  int todo = 0;
  for (long c0 = 0; c0 < S; c0 += C) {
    const long n = S - c0 < C ? S - c0 : C;
    int missing = 0;
    for (long s = 0; s < n; s++) missing |= !r->have[c0 + s];
    if (missing) todo += (int)n;
  }
  if (!o->quiet && o->resume)
    fprintf(stderr, "pxdiff: resume: %ld of %ld samples already written, %ld to compute\n", r->n_have, S,
            S - r->n_have);
  cli_progress pr;
  cli_progress_start(&pr, "sampling", "designs", todo, o->cfg.n_step, o->quiet);
  pr.should_stop = run_out_interrupted;
  if (todo > 0) cli_progress_show(&pr, 0, 0, 1);
  char eta_min[32], eta_max[32];
  const long fail_write = run_out_test_fail_write();
  run_fmt_float(eta_min, sizeof eta_min, o->cfg.eta_min);
  run_fmt_float(eta_max, sizeof eta_max, o->cfg.eta_max);
  int written = 0;
  for (long i = 0; i < S && !rc; i += C) {
    const long n = S - i < C ? S - i : C;
    int missing = 0;
    for (long s = 0; s < n; s++) missing |= !r->have[i + s];
    if (!missing) continue;
    if (run_out_interrupted()) {
      rc = 130;
      break;
    }
    pr.cur = (int)n;
    int st = px_sample(m, d, &o->cfg, (int)i, (int)n, (int)C, x, cli_progress_cb, &pr);
    if (st == PX_ERR_CANCELLED || run_out_interrupted()) {
      rc = 130;
      break;
    }
    if (st) {
      cli_progress_close(&pr);
      rc = cli_fail(px_last_error());
      break;
    }
    /* The chunk's files, written by the process's threads (each on its own, atomically; the
     * GPU waits for them), then counted in order; on a failure the first failing sample's
     * line is printed (the others still written are complete; no summary is written). */
    long bad = -1;
    char bad_msg[4400] = "";
    memset(ok, 0, (size_t)n);
#pragma omp parallel for num_threads(px_num_threads()) schedule(dynamic)
    for (long s = 0; s < n; s++) {
      const long idx = i + s;
      if (r->have[idx]) continue;
      char why[4400];
      if (write_sample(o, pb, r, idx, x + (size_t)s * n3, eta_min, eta_max, fail_write, why, sizeof why)) {
#pragma omp critical(sample_write_failure)
        if (bad < 0 || s < bad) {
          bad = s;
          snprintf(bad_msg, sizeof bad_msg, "%s", why);
        }
      } else {
        ok[s] = 1;
      }
    }
    for (long s = 0; s < n; s++) written += ok[s];
    if (bad >= 0) {
      cli_progress_close(&pr);
      fprintf(stderr, "pxdiff: %s\n", bad_msg);
      rc = 1;
    }
    pr.done += (int)n;
    if (!rc) cli_progress_show(&pr, pr.done, o->cfg.n_step, 1);
  }
  cli_progress_close(&pr);
  free(x);
  free(ok);
  double t_sampling = px_time_now() - pr.t0;
  if (rc == 130) {
    fprintf(stderr,
            "pxdiff: interrupted: %ld of %ld samples written to %s (no summary.json); rerun with "
            "--resume to finish\n",
            r->n_have + written, S, o->out);
    return rc;
  }
  if (rc) return rc;
  char *text = summary_text(o, pb, m, d, r, t_sampling, pr.done, written, px_time_now() - t_start);
  if (!text || run_out_write_marker(r, 0, text, strlen(text))) {
    free(text);
    return cli_fail(px_last_error());
  }
  free(text);
  if (pr.done) pb->sampling_s_per_design = t_sampling / pr.done;
  if (!o->quiet) {
    char first[64];
    run_out_relpath(r, 0, r->L.n_ext - 1, first, sizeof first);
    printf("wrote %ld sample%s to %s (%s%s%s) and summary.json\n", S, S == 1 ? "" : "s", o->out, first,
           S > 1 ? " ..." : "", o->pdb ? ", .pdb" : "");
    if (pr.done)
      printf("  sampling %.2f s for %d sample%s: %.2f s/design at %d steps (chunks of %ld)%s\n", t_sampling,
             pr.done, pr.done == 1 ? "" : "s", t_sampling / pr.done, o->cfg.n_step, eff_chunk(o),
             r->n_have ? "; the rest resumed" : "");
    else
      printf("  all samples were already written (resumed)\n");
  }
  return 0;
}

/* Opens the output (after every input is checked), runs, closes. */
static int open_and_run(const opts_t *o, const px_model *m, px_design *d, problem_t *pb, double t_start,
                        void (*header)(const opts_t *, const px_model *, const problem_t *)) {
  if (check_template(o, pb)) return 1;
  run_layout L = sample_layout(o, pb->command);
  run_out r;
  /* Signals are caught from before the directory exists: an interrupt at any point after
   * this ends in run_sampling's orderly stop (exit 130, no empty directory left behind). */
  run_out_catch_signals();
  if (run_out_open(&r, &L, mode_of(o), sample_fingerprint(m, d, &o->cfg, pb, eff_chunk(o)))) {
    run_out_release_signals();
    return cli_fail(px_last_error());
  }
  if (header && !o->quiet) header(o, m, pb);
  int rc = run_sampling(o, m, d, pb, &r, t_start);
  run_out_release_signals();
  run_out_close(&r, rc == 0);
  return rc;
}

static int setup_backend(const opts_t *o, px_model *m) {
  if (px_model_set_device(m, o->device.kind, o->device.index, 0, o->precision) == PX_OK) return 0;
  return cli_fail(px_last_error());
}

/* Before anything is loaded: options, and whether --out can take this run. */
static int precheck(const opts_t *o, const char *command) {
  run_layout L = sample_layout(o, command);
  if (run_out_check(&L, mode_of(o), NULL)) return cli_fail(px_last_error());
  return 0;
}

/* ---------------------------------------------------------------- sample -- */

static void sample_header(const opts_t *o, const px_model *m, const problem_t *pb) {
  fprintf(stderr, "pxdiff: %s: %d tokens, %d atoms; %ld sample%s x %d steps, seed %llu, backend %s (%s)\n",
          o->bundle, pb->n_token, pb->n_atom, o->samples, o->samples == 1 ? "" : "s", o->cfg.n_step,
          (unsigned long long)o->cfg.seed, px_model_backend_name(m), cmd_precision_label(m));
  if (o->chunk_note[0]) fprintf(stderr, "pxdiff: chunks of %ld (%s)\n", eff_chunk(o), o->chunk_note);
}

/* Unless --chunk was given, on a GPU: the chunk that fills the card for this design
 * (design_chunk_fit), within the card's total memory less 20%, 1 GiB and the weights. The
 * total, not the free memory, so that a resumed run (whose files hold no record of the chunk
 * but whose run id includes it) chooses the same on the same card; when the card is shared
 * and less is free, the free memory bounds it and the note says to pass --chunk on resume. */
static int choose_chunk(opts_t *o, const px_model *m, int T, int N) {
  if (o->chunk_given || strncmp(px_model_backend_name(m), "cuda", 4)) return PX_OK;
  int64_t fr = 0, tot = 0;
  int rc = px_device_memory(PX_DEVICE_CUDA, px_model_device_index(m), &fr, &tot);
  if (rc) return rc;
  const int64_t gib = (int64_t)1 << 30, weights = px_model_n_params(m) * (int64_t)sizeof(float);
  const int64_t by_total = tot - tot / 5 - gib - weights, by_free = fr - tot / 20 - gib;
  const int shared = by_free < by_total;
  o->chunk = design_chunk_fit(m, T, N, o->samples, shared ? by_free : by_total);
  snprintf(o->chunk_note, sizeof o->chunk_note,
           "chosen for %d tokens, %d atoms: %.2f GiB on cuda:%d of %.1f GiB%s", T, N,
           (double)px_sample_bytes(m, T, N, (int)eff_chunk(o)) / (double)gib, px_model_device_index(m),
           (double)tot / (double)gib,
           shared ? "; less is free than usual on this card: give --resume the same --chunk" : "");
  return PX_OK;
}

int cmd_sample(int argc, char **argv) {
  opts_t o;
  cli_command c;
  cli_opt table[32];
  int st = parse_opts("sample", argc, argv, &o, &c, table);
  if (st != CLI_RUN) return st;
  const double t_start = px_time_now();
  if (precheck(&o, "sample")) return 1;
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
    cli_fail(px_last_error());
    goto done;
  }
  pb.t_load = px_time_now() - t0;
  pb.n_params = px_model_n_params(m);
  if (setup_backend(&o, m)) goto done;
  if (px_bundle_open(o.bundle, &b)) {
    cli_fail(px_last_error());
    goto done;
  }
  const px_features *f = NULL;
  px_dims dims;
  if (px_model_get_dims(m, &dims) || px_bundle_features_for_dims(b, &dims, &f)) {
    cli_fail(px_last_error());
    goto done;
  }
  t0 = px_time_now();
  if (px_design_create(m, f, &d)) {
    cli_fail(px_last_error());
    goto done;
  }
  pb.t_design = px_time_now() - t0;
  const int N = f->n_atom;
  pb.n_atom = N;
  pb.n_token = f->n_token;
  if (choose_chunk(&o, m, pb.n_token, pb.n_atom)) {
    cli_fail(px_last_error());
    goto done;
  }
  pb.name = px_bundle_meta(b, "name");
  if (!pb.name || !*pb.name) pb.name = "design";
  atom_name = malloc(sizeof(char *) * (size_t)N);
  element = malloc(sizeof(char *) * (size_t)N);
  res_name = malloc(sizeof(char *) * (size_t)N);
  chain_id = malloc(sizeof(char *) * (size_t)N);
  res_seq = malloc(sizeof(int) * (size_t)N);
  bf = malloc(sizeof(float) * (size_t)N);
  if (!atom_name || !element || !res_name || !chain_id || !res_seq || !bf) {
    cli_fail("out of memory");
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
  rc = open_and_run(&o, m, d, &pb, t_start, sample_header);
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
