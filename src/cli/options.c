/* The CLI's option parser (options.h): one table per command drives both parsing and help. */
#include "cli/options.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "pxdiff.h"

/* "gpu" is not accepted: one spelling per device keeps scripts and summary.json uniform
 * (the help lists the names that work). */
const char *const cli_device_names[] = {"auto", "cpu", "cuda", NULL};
const int cli_device_values[] = {PX_DEVICE_AUTO, PX_DEVICE_CPU, PX_DEVICE_CUDA};
const char *const cli_precision_names[] = {"default", "fp32", "tf32", "bf16", "fp16", NULL};
const int cli_precision_values[] = {PX_PRECISION_DEFAULT, PX_PRECISION_FP32, PX_PRECISION_TF32,
                                    PX_PRECISION_BF16, PX_PRECISION_FP16};

void cli_paths_free(cli_paths *p) {
  if (!p) return;
  free(p->v);
  p->v = NULL;
  p->n = p->cap = 0;
}

static void see_help(const cli_command *c) {
  fprintf(stderr, "; see `pxdiff %s --help`\n", c->name);
}

int cli_usage_error(const cli_command *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "pxdiff: %s: ", c->name);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  see_help(c);
  return 2;
}

static void enum_list(char *buf, size_t cap, const char *const *names, const char *sep_mid,
                      const char *sep_last) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; names[i] && k < cap; i++) {
    const char *sep = i == 0 ? "" : names[i + 1] ? sep_mid : sep_last;
    int w = snprintf(buf + k, cap - k, "%s%s", sep, names[i]);
    if (w < 0) break;
    k += (size_t)w;
  }
}

/* Stores v into o->dst. Returns 0, or 2 after printing the one-line error. */
static int store(const cli_command *c, const cli_opt *o, const char *v) {
  char want[256];
  switch (o->kind) {
    case CLI_FLAG:
      *(int *)o->dst = 1;
      return 0;
    case CLI_PATH:
      if (!*v) return cli_usage_error(c, "%s needs a non-empty %s", o->name, o->meta ? o->meta : "value");
      *(const char **)o->dst = v;
      return 0;
    case CLI_STRING:
      *(const char **)o->dst = v;
      return 0;
    case CLI_PATHS: {
      if (!*v) return cli_usage_error(c, "%s needs a non-empty %s", o->name, o->meta ? o->meta : "value");
      cli_paths *p = o->dst;
      if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        const char **nv = realloc(p->v, sizeof *nv * (size_t)cap);
        if (!nv) return cli_usage_error(c, "out of memory reading %s", o->name);
        p->v = nv;
        p->cap = cap;
      }
      p->v[p->n++] = v;
      return 0;
    }
    case CLI_INT: {
      char *end;
      errno = 0;
      long x = strtol(v, &end, 10);
      if (errno || end == v || *end || (double)x < o->lo || (double)x > o->hi) {
        snprintf(want, sizeof want, "an integer in [%.0f, %.0f]", o->lo, o->hi);
        break;
      }
      *(long *)o->dst = x;
      return 0;
    }
    case CLI_U64: {
      char *end;
      errno = 0;
      unsigned long long x = strtoull(v, &end, 10);
      /* strtoull accepts a sign (and wraps "-1"): refuse it */
      if (errno || end == v || *end || v[0] == '-' || v[0] == '+' || v[0] == ' ') {
        snprintf(want, sizeof want, "an integer in [0, 18446744073709551615]");
        break;
      }
      *(uint64_t *)o->dst = (uint64_t)x;
      return 0;
    }
    case CLI_FLOAT: {
      char *end;
      errno = 0;
      double x = strtod(v, &end);
      if (errno || end == v || *end || !isfinite(x) || x < o->lo || x > o->hi) {
        snprintf(want, sizeof want, "a number in [%g, %g]", o->lo, o->hi);
        break;
      }
      *(float *)o->dst = (float)x;
      return 0;
    }
    case CLI_ENUM: {
      for (int i = 0; o->enum_names[i]; i++)
        if (!strcmp(v, o->enum_names[i])) {
          *(int *)o->dst = o->enum_values[i];
          return 0;
        }
      char names[200];
      enum_list(names, sizeof names, o->enum_names, ", ", " or ");
      snprintf(want, sizeof want, "one of %s", names);
      break;
    }
    case CLI_DEVICE: {
      px_device_ref *r = o->dst;
      for (int i = 0; cli_device_names[i]; i++)
        if (!strcmp(v, cli_device_names[i])) {
          *r = (px_device_ref){(enum px_device)cli_device_values[i], 0};
          return 0;
        }
      if (!strncmp(v, "cuda:", 5) && v[5] && strspn(v + 5, "0123456789") == strlen(v + 5)) {
        int n = 0; /* one device: the index checked against the devices this machine has */
        if (px_device_list_parse(v, r, 1, &n)) return cli_usage_error(c, "%s: %s", o->name, px_last_error());
        return 0;
      }
      char names[200];
      enum_list(names, sizeof names, cli_device_names, ", ", " or ");
      snprintf(want, sizeof want, "one of %s (or cuda:N)", names);
      break;
    }
  }
  fprintf(stderr, "pxdiff: %s: %s: '%s' is not %s", c->name, o->name, v, want);
  see_help(c);
  return 2;
}

static const cli_opt *find(const cli_command *c, const char *flag) {
  for (int i = 0; i < c->n_opts; i++) {
    const cli_opt *o = &c->opts[i];
    if (!strcmp(flag, o->name) || (o->alias && !strcmp(flag, o->alias))) return o;
  }
  return NULL;
}

int cli_parse(const cli_command *c, int argc, char **argv, const char **pos, int *n_pos) {
  unsigned char seen[128] = {0};
  int npos = 0;
  for (int i = 0; i < c->n_opts; i++) {
    const cli_opt *o = &c->opts[i];
    if (!o->def || o->kind == CLI_FLAG) continue;
    if (store(c, o, o->def)) {
      fprintf(stderr, "pxdiff: internal error: the default of %s does not parse\n", o->name);
      return 2;
    }
  }
  int only_pos = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!only_pos && !strcmp(a, "--")) {
      only_pos = 1;
      continue;
    }
    if (only_pos || a[0] != '-' || !a[1]) { /* "-" alone is a positional (stdin by convention) */
      if (npos >= c->max_pos) {
        if (c->max_pos == 0)
          return cli_usage_error(c, "unexpected argument '%s' (this command takes only options)", a);
        return cli_usage_error(c, "too many arguments ('%s'; it takes %d: %s)", a, c->max_pos,
                               c->pos_name ? c->pos_name : "arguments");
      }
      if (pos) pos[npos] = a;
      npos++;
      continue;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      cli_help(c, stdout);
      return 0;
    }
    char flag[64];
    const char *v = NULL;
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    if (eq && (size_t)(eq - a) < sizeof flag) {
      memcpy(flag, a, (size_t)(eq - a));
      flag[eq - a] = '\0';
      v = eq + 1;
    } else {
      snprintf(flag, sizeof flag, "%s", a);
    }
    const cli_opt *o = find(c, flag);
    if (!o) {
      fprintf(stderr, "pxdiff: unknown option %s for `pxdiff %s`", a, c->name);
      see_help(c);
      return 2;
    }
    int k = (int)(o - c->opts);
    if (k < (int)sizeof seen) seen[k] = 1;
    if (o->given) *o->given = 1;
    if (o->kind == CLI_FLAG) {
      if (v) return cli_usage_error(c, "%s takes no value", o->name);
      *(int *)o->dst = 1;
      continue;
    }
    if (!v) {
      if (i + 1 >= argc) return cli_usage_error(c, "%s needs a value (%s)", o->name, o->meta ? o->meta : "");
      v = argv[++i];
    }
    if (store(c, o, v)) return 2;
    /* `--input A B C`: the values up to the next option ("-" alone is a value) */
    if (o->kind == CLI_PATHS && !eq)
      while (i + 1 < argc && (argv[i + 1][0] != '-' || !argv[i + 1][1]))
        if (store(c, o, argv[++i])) return 2;
  }
  for (int i = 0; i < c->n_opts && i < (int)sizeof seen; i++) {
    const cli_opt *o = &c->opts[i];
    if ((o->flags & CLI_REQUIRED) && !seen[i])
      return cli_usage_error(c, "needs %s %s (usage: pxdiff %s %s)", o->name, o->meta ? o->meta : "", c->name,
                             c->args ? c->args : "[options]");
  }
  if (npos < c->min_pos)
    return cli_usage_error(c, "needs %s (usage: pxdiff %s %s)", c->pos_name ? c->pos_name : "more arguments",
                           c->name, c->args ? c->args : "[options]");
  if (n_pos) *n_pos = npos;
  return CLI_RUN;
}

/* Help: the option column is 30 wide, text wrapped at 80 columns (at spaces, and at each
 * '\n'); a left part too long for the column puts the text on the next line. */
#define HELP_COL 30
#define HELP_WIDTH 80

/* Writes text from column `col` (already used on the current line) on, each line starting
 * at column `indent`, broken at spaces before HELP_WIDTH and at every '\n'. */
static void wrap(FILE *o, const char *text, int col, int indent) {
  const char *p = text;
  while (*p) {
    const int room = HELP_WIDTH - indent;
    size_t len = strcspn(p, "\n");
    if (len > (size_t)room) { /* break at the last space that fits */
      size_t cut = (size_t)room;
      while (cut > 0 && p[cut] != ' ') cut--;
      if (cut > 0) len = cut;
    }
    fprintf(o, "%*s%.*s\n", indent > col ? indent - col : 0, "", (int)len, p);
    col = 0;
    p += len;
    while (*p == ' ') p++;
    if (*p == '\n') p++;
  }
}

static void help_line(FILE *o, const char *left, const char *text) {
  int w = fprintf(o, "  %s", left);
  if (w + 1 > HELP_COL) {
    fputc('\n', o);
    w = 0;
  }
  if (*text) wrap(o, text, w, HELP_COL);
  else fputc('\n', o);
}

void cli_help(const cli_command *c, FILE *o) {
  fprintf(o, "usage: pxdiff %s %s\n", c->name, c->args ? c->args : "[options]");
  if (c->summary) wrap(o, c->summary, 0, 0);
  fprintf(o, "\noptions:\n");
  for (int i = 0; i < c->n_opts; i++) {
    const cli_opt *op = &c->opts[i];
    if (op->flags & CLI_HIDDEN) continue;
    char left[160], text[640], names[200];
    const char *meta = op->meta;
    if (op->kind == CLI_ENUM) {
      enum_list(names, sizeof names, op->enum_names, "|", "|");
      meta = names;
    } else if (op->kind == CLI_DEVICE && !meta) {
      enum_list(names, sizeof names, cli_device_names, "|", "|"); /* its help names cuda:N */
      meta = names;
    }
    if (op->kind == CLI_FLAG || !meta)
      snprintf(left, sizeof left, "%s%s%s", op->alias ? op->alias : "", op->alias ? ", " : "", op->name);
    else
      snprintf(left, sizeof left, "%s%s%s %s", op->alias ? op->alias : "", op->alias ? ", " : "", op->name,
               meta);
    const char *req = (op->flags & CLI_REQUIRED) ? " (required)" : "";
    if (op->def && *op->def && op->kind != CLI_FLAG) /* "" defaults: the help says what none means */
      snprintf(text, sizeof text, "%s (default %s)%s", op->help ? op->help : "", op->def, req);
    else
      snprintf(text, sizeof text, "%s%s", op->help ? op->help : "", req);
    help_line(o, left, text);
  }
  help_line(o, "-h, --help", "this help");
  if (c->details) fprintf(o, "\n%s", c->details);
}

int cli_fail(const char *what) {
  fprintf(stderr, "pxdiff: %s\n", what);
  return 1;
}
