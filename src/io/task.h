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
 * A relative structure path is resolved as upstream resolves it (see task.c).
 * Every failure returns a px_status code with one line naming the file and what is wrong. */
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
  px_task_range *crop;
  int n_hotspot;
  int *hotspot;         /* residue numbers, in the task's order */
  char *msa_dir;        /* or NULL (never used for generation; checked for existence) */
} px_task_chain;

typedef struct {
  char *name;            /* task_name / "name" */
  char *structure_file;  /* path as resolved for opening */
  int n_chain;
  px_task_chain *chain;  /* task order = chain order in the model */
  int binder_length;     /* >= 1 */
} px_task;

typedef struct {
  int n;
  px_task *task;
} px_task_list;

/* Read a .yaml/.yml or .json task file. */
int px_task_read(const char *path, px_task_list *out);
/* The same from memory (fuzzing, tests); is_json selects the syntax, name is used in
 * messages and as the YAML task's default name (its stem). */
int px_task_parse(const char *text, size_t len, int is_json, const char *name, px_task_list *out);
void px_task_list_free(px_task_list *l);
/* The list in PXDesign's JSON task form (what `pxdesign infer` writes as <stem>.json),
 * in a new NUL-terminated buffer. */
int px_task_list_json(const px_task_list *l, char **out, size_t *len);

#endif
