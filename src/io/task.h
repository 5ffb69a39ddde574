/* PXDesign task files: its YAML (the subset pxdesign/utils/inputs.py reads: mappings,
 * lists, scalars, comments, quoting) or its JSON task list, read into one form.
 *
 * YAML form:                               JSON form (a list of these):
 *   task_name: NAME   (default: file stem)   {"name": NAME,
 *   binder_length: 80                         "condition": {"structure_file": F,
 *   target:                                      "filter": {"chain_id": ["A"], "crop": {"A": "1-116"}},
 *     file: F                                    "msa": {"A": {"precomputed_msa_dir": D, ...}}},
 *     chains:                                 "hotspot": {"A": [40, 99, 107]},
 *       A: {crop: ["1-116"], hotspots: [..]}  "generation": [{"type": "protein", "length": 80, "count": 1}]}
 *       C: all | full | null
 *
 * Paths: the structure file and an msa directory are kept as written. A relative one is
 * relative to the *current directory*, not to the task file's: upstream checks and opens
 * it with a plain open() (inputs.py: os.path.exists(target_file_path); infer.py opens
 * cond_dict["structure_file"]), and writes it unchanged into <stem>.json.
 *
 * Rules (upstream's, refused here with one line "FILE[:LINE]: what is wrong"):
 * binder_length required, an integer (a quoted "80" too, as int() takes it) in 1..10000;
 * target, target.file, target.chains (a non-empty mapping) required; a chain's settings
 * are a mapping, "all"/"full" (any case) or empty; crop is a string or a list of strings
 * and integers joined with ",", each piece "N" or "A-B" with A <= B (spaces around
 * numbers allowed, as Python's int() allows them), "all"/"full"/"" = no crop; hotspots
 * a list of integers; msa a directory holding pairing.a3m and non_pairing.a3m.
 * Stricter than upstream (which would silently misbehave): duplicate keys or chains,
 * reversed crop ranges, a crop given as a bare number (upstream ignores it), non-integer
 * hotspots (upstream matches none), a float binder_length (upstream truncates), several
 * generation entries or count != 1 (one binder chain only), "sequences"/"ligands"
 * entries, a structure file not ending in .cif or .pdb, task names that are no file
 * name ("", ".", "..", '/' or '\\' or control characters inside). Unknown keys are
 * ignored, as upstream ignores them, with a warning in px_task_list.warning. */
#ifndef PX_IO_TASK_H
#define PX_IO_TASK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int lo, hi; /* inclusive residue numbers, lo <= hi */
} px_task_range;

typedef struct {
  char *id;             /* chain id as the task names it */
  int n_crop;           /* 0: the whole chain ("all", "full", null or absent) */
  px_task_range *crop;  /* in the task's order (may overlap, as upstream allows) */
  char *crop_text;      /* the crop string as upstream writes it into JSON, or NULL */
  int hotspot_given;    /* 1 when the task lists hotspots for this chain (even none) */
  int n_hotspot;
  int *hotspot;         /* residue numbers, in the task's order */
  char *msa_dir;        /* or NULL (never used for generation; checked for existence) */
  char *msa_pairing_db; /* JSON form's "pairing_db" ("uniref100" from YAML), or NULL */
} px_task_chain;

typedef struct {
  char *name;            /* task_name / "name" */
  char *structure_file;  /* as written (relative: to the current directory) */
  int n_chain;
  px_task_chain *chain;  /* task order = chain order in the model */
  int binder_length;     /* 1..10000 */
} px_task;

typedef struct {
  int n;
  px_task *task;
  int n_warning;
  char **warning;        /* one line each: "FILE:LINE: unknown key 'x' ignored" */
} px_task_list;

#define PX_TASK_MAX_BINDER 10000

/* Read a .yaml/.yml or .json task file (by extension, any case), then check that each
 * structure file and msa directory (pairing.a3m, non_pairing.a3m) exists. */
int px_task_read(const char *path, px_task_list *out);
/* The same from memory (fuzzing, tests) without the file checks; is_json selects the
 * syntax, name is used in messages and gives the YAML task's default name (its stem:
 * the base name without its last extension, like os.path.splitext). */
int px_task_parse(const char *text, size_t len, int is_json, const char *name, px_task_list *out);
void px_task_list_free(px_task_list *l);
/* The list in PXDesign's JSON task form, byte for byte what `pxdesign infer` writes as
 * <stem>.json (Python's json.dump: ", " and ": " separators, ASCII-only with \uXXXX
 * escapes, no trailing newline), in a new NUL-terminated buffer. */
int px_task_list_json(const px_task_list *l, char **out, size_t *len);

#endif
