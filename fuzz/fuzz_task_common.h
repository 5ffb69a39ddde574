/* Shared body of the task-file fuzzers (fuzz_task_yaml.c, fuzz_task_json.c). An input
 * either fails with one non-empty line and an empty list, or reads into tasks that obey
 * task.h (binder length in range, crop ranges ordered, distinct chains) and whose JSON
 * form reads back into the same JSON, byte for byte. */
#ifndef PX_FUZZ_TASK_COMMON_H
#define PX_FUZZ_TASK_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/doc.h"
#include "io/task.h"
#include "pxdiff.h"

/* run.sh links platform.c and strbuf.c; the rest is compiled in here. */
#include "error.c"
#include "io/doc.c"
#include "io/json.c"
#include "io/task.c"
#include "io/yaml.c"

static void one_line(const char *m) {
  if (!m || !m[0] || strchr(m, '\n')) {
    fprintf(stderr, "bad message: '%s'\n", m ? m : "(null)");
    abort();
  }
}

static void check_list(const px_task_list *l) {
  if (l->n < 1) abort();
  for (int k = 0; k < l->n; k++) {
    const px_task *t = &l->task[k];
    if (!t->name || !t->name[0] || !t->structure_file || t->n_chain < 1) abort();
    if (t->binder_length < 1 || t->binder_length > PX_TASK_MAX_BINDER) abort();
    for (int j = 0; j < t->n_chain; j++) {
      const px_task_chain *c = &t->chain[j];
      if (!c->id || !c->id[0]) abort();
      for (int q = 0; q < j; q++)
        if (!strcmp(c->id, t->chain[q].id)) abort();
      if ((c->n_crop > 0) != (c->crop_text != NULL)) abort();
      for (int q = 0; q < c->n_crop; q++)
        if (c->crop[q].lo > c->crop[q].hi) abort();
      if (c->n_hotspot && !c->hotspot_given) abort();
    }
  }
  for (int k = 0; k < l->n_warning; k++) one_line(l->warning[k]);
}

static int fuzz_task(const uint8_t *data, size_t size, int is_json) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  if (size) memcpy(text, data, size);
  text[size] = 0;
  px_task_list l;
  int r = px_task_parse(text, size, is_json, is_json ? "fuzz.json" : "fuzz.yaml", &l);
  if (r) {
    one_line(px_last_error());
    if (l.n || l.task || l.warning) abort();
  } else {
    check_list(&l);
    char *js = NULL;
    size_t n = 0;
    if (px_task_list_json(&l, &js, &n) == 0) {
      px_task_list l2;
      if (px_task_parse(js, n, 1, "again.json", &l2) != 0) {
        fprintf(stderr, "own JSON refused: %s\n%s\n", px_last_error(), js);
        abort();
      }
      char *js2 = NULL;
      size_t n2 = 0;
      if (px_task_list_json(&l2, &js2, &n2) || n2 != n || memcmp(js, js2, n)) abort();
      free(js2);
      px_task_list_free(&l2);
      free(js);
    }
    px_task_list_free(&l);
  }
  free(text);
  return 0;
}

#endif
