/* The one option parser of every `pxdiff` command.
 *
 * A command declares its options once, in a table of cli_opt, and both the parsing and the
 * `pxdiff CMD --help` text come from that table, so the two cannot disagree:
 *
 *   long samples; const char *out = NULL; int pdb = 0;
 *   const cli_opt opts[] = {
 *     {.name = "--out", .kind = CLI_PATH, .dst = &out, .meta = "DIR", .flags = CLI_REQUIRED,
 *      .help = "output directory"},
 *     {.name = "--samples", .kind = CLI_INT, .dst = &samples, .meta = "N", .def = "1",
 *      .lo = 1, .hi = 1e6, .help = "number of designs"},
 *     {.name = "--pdb", .kind = CLI_FLAG, .dst = &pdb, .help = "also write PDB files"},
 *   };
 *   const cli_command cmd = {.name = "sample", .args = "--out DIR [options]",
 *                            .summary = "...", .opts = opts, .n_opts = 3};
 *   int st = cli_parse(&cmd, argc, argv, NULL, NULL);
 *   if (st != CLI_RUN) return st;   // 0 after --help, 2 after a one-line error
 *
 * Rules (every command): `--name VALUE` and `--name=VALUE`; flags take no value; `-h` and
 * `--help` print the command's help on stdout and return 0; `--` ends the options; the
 * defaults (`def`, text) are parsed by the same code as the command line and stored before
 * argv is read (a default that does not parse is a programming error, reported as such);
 * an option given twice keeps the last value. Every error is one line on stderr starting
 * "pxdiff: " and naming `pxdiff CMD --help`, and cli_parse returns 2. Destinations by kind:
 *
 *   CLI_FLAG   int*         set to 1
 *   CLI_INT    long*        decimal integer in [lo, hi]
 *   CLI_U64    uint64_t*    decimal integer in [0, 2^64-1] (no sign)
 *   CLI_FLOAT  float*       finite number in [lo, hi]
 *   CLI_ENUM   int*         one of enum_names (NULL-terminated); stores enum_values[k]
 *   CLI_DEVICE px_device_ref* one device: auto, cpu, cuda (= cuda:0) or cuda:N, N a device this
 *                           machine has (else one line saying which it has, or why none); the
 *                           help lists auto|cpu|cuda, the option's help text names cuda:N
 *   CLI_PATH   const char** non-empty string (the argv pointer itself, not copied)
 *   CLI_STRING const char** any string
 *   CLI_PATHS  cli_paths*   one or more non-empty strings: `--name A B C` takes the values up to
 *                           the next argument starting with '-'; repeating the option appends
 *                           (free with cli_paths_free; a default is not allowed)
 */
#ifndef PX_CLI_OPTIONS_H
#define PX_CLI_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

#include "pxdiff.h" /* px_device_ref */

typedef enum { CLI_FLAG, CLI_INT, CLI_U64, CLI_FLOAT, CLI_ENUM, CLI_PATH, CLI_STRING, CLI_PATHS, CLI_DEVICE } cli_kind;

/* CLI_PATHS' destination: the argv pointers themselves, in command-line order. */
typedef struct {
  const char **v;
  int n, cap;
} cli_paths;
void cli_paths_free(cli_paths *p);

enum {
  CLI_REQUIRED = 1u, /* the command refuses to run without it */
  CLI_HIDDEN = 2u    /* parsed but not listed in the help (aliases kept for old scripts) */
};

typedef struct {
  const char *name;  /* long form, "--samples" */
  const char *alias; /* optional short form, "-q" */
  cli_kind kind;
  void *dst;
  const char *meta; /* value placeholder in help and messages ("N", "DIR"); enums list names */
  const char *def;  /* default as command-line text, applied before parsing; NULL: dst untouched */
  const char *help; /* one line; a '\n' starts a continuation line */
  double lo, hi;    /* CLI_INT / CLI_FLOAT bounds, inclusive */
  const char *const *enum_names;
  const int *enum_values;
  unsigned flags;
  int *given; /* optional: set to 1 when the option is on the command line */
} cli_opt;

typedef struct {
  const char *name;    /* "sample": messages say `pxdiff sample` */
  const char *args;    /* synopsis after the name, "--out DIR [options]" */
  const char *summary; /* one line: `pxdiff help` and the top of --help */
  const char *details; /* text after the option list (NULL: none) */
  const cli_opt *opts;
  int n_opts;
  /* Positional arguments: pos_name names them in messages ("FILE"); at most max_pos, at
   * least min_pos. With max_pos 0 any positional argument is an error. */
  const char *pos_name;
  int min_pos, max_pos;
} cli_command;

#define CLI_RUN (-1)

/* Parses argv (the arguments after the command name). Returns CLI_RUN when the command
 * should run, else the exit status to return at once (0 after --help, 2 after an error).
 * Positional arguments go to pos[0..*n_pos) (pos may be NULL when max_pos is 0). */
int cli_parse(const cli_command *c, int argc, char **argv, const char **pos, int *n_pos);

/* The full help of a command (what --help prints). */
void cli_help(const cli_command *c, FILE *o);

/* One-line error in the house form, "pxdiff: <cmd>: <what>; see `pxdiff <cmd> --help`",
 * for checks across options made after cli_parse. Returns 2. */
int cli_usage_error(const cli_command *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A command's failure after parsing: "pxdiff: <what>" on stderr, one line; returns 1 (the exit
 * status of a run that failed). */
int cli_fail(const char *what);

/* Enum names shared by the commands. Lists are NULL-terminated; values parallel. */
extern const char *const cli_device_names[];      /* auto, cpu, cuda */
extern const int cli_device_values[];
extern const char *const cli_precision_names[];   /* default, fp32, tf32, bf16, fp16 */
extern const int cli_precision_values[];

#endif
