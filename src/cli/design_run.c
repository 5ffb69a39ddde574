/* The generation path shared by `design`, `featurize` and `demo` (design_run.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli/design_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "platform.h"
#include "pxdiff_synthetic.h"

/* ------------------------------------------------------------------- job -- */

static int job_alloc(design_job *J) {
  const int n = J->tasks.n;
  J->target = calloc((size_t)(n ? n : 1), sizeof *J->target);
  J->target_owner = calloc((size_t)(n ? n : 1), sizeof *J->target_owner);
  if (!J->target || !J->target_owner) return px_fail(PX_ERR_NOMEM, "out of memory reading the tasks");
  return PX_OK;
}

/* Featurize every task once, unaugmented: every input problem (a chain not in the file, a
 * crop outside the chain, a non-standard residue, ...) is reported now, before a model is
 * loaded or a file written. */
static int job_validate(design_job *J, const px_conformers *conf) {
  J->n_token = calloc((size_t)(J->tasks.n ? J->tasks.n : 1), sizeof *J->n_token);
  J->n_atom = calloc((size_t)(J->tasks.n ? J->tasks.n : 1), sizeof *J->n_atom);
  if (!J->n_token || !J->n_atom) return px_fail(PX_ERR_NOMEM, "out of memory reading the tasks");
  for (int k = 0; k < J->tasks.n; k++) {
    px_design_input *in = NULL;
    int rc = px_featurize(J->target[k], &J->tasks.task[k], conf, 0, 0, &in);
    if (!rc) {
      J->n_token[k] = in->n_token;
      J->n_atom[k] = in->n_atom;
    }
    px_design_input_free(in);
    if (rc) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", px_last_error());
      return px_fail(rc, "task '%s': %s", J->tasks.task[k].name, msg);
    }
  }
  return PX_OK;
}

/* Reads every structure the tasks name, one read per distinct path. */
static int job_read_targets(design_job *J) {
  int rc;
  if ((rc = job_alloc(J))) return rc;
  for (int k = 0; k < J->tasks.n; k++) {
    const char *path = J->tasks.task[k].structure_file;
    for (int j = 0; j < k && !J->target[k]; j++)
      if (!strcmp(J->tasks.task[j].structure_file, path)) J->target[k] = J->target[j];
    if (J->target[k]) continue;
    if ((rc = px_structure_read(path, &J->target[k]))) return rc;
    J->target_owner[k] = 1;
  }
  return PX_OK;
}

int design_job_read(design_job *J, const char *task_path, const px_conformers *conf) {
  memset(J, 0, sizeof *J);
  int rc = px_task_read(task_path, &J->tasks);
  if (rc) return rc;
  if (J->tasks.n < 1) return px_fail(PX_ERR_INPUT, "%s: no task", task_path);
  if ((rc = job_read_targets(J))) return rc;
  return job_validate(J, conf);
}

/* Moves list b's tasks and warnings to the end of a (b's containers are freed, its
 * contents now belong to a). */
static int task_list_append(px_task_list *a, px_task_list *b) {
  px_task *t = realloc(a->task, sizeof *t * (size_t)(a->n + b->n ? a->n + b->n : 1));
  if (!t) return px_fail(PX_ERR_NOMEM, "out of memory reading the tasks");
  a->task = t;
  char **w = realloc(a->warning, sizeof *w * (size_t)(a->n_warning + b->n_warning ? a->n_warning + b->n_warning : 1));
  if (!w) return px_fail(PX_ERR_NOMEM, "out of memory reading the tasks");
  a->warning = w;
  memcpy(a->task + a->n, b->task, sizeof *t * (size_t)b->n);
  a->n += b->n;
  if (b->n_warning) memcpy(a->warning + a->n_warning, b->warning, sizeof *w * (size_t)b->n_warning);
  a->n_warning += b->n_warning;
  free(b->task);
  free(b->warning);
  memset(b, 0, sizeof *b);
  return PX_OK;
}

int design_job_read_many(design_job *J, const char *const *paths, int n_path, const px_conformers *conf) {
  memset(J, 0, sizeof *J);
  if (n_path < 1) return px_fail(PX_ERR_INPUT, "no task file given");
  int rc = PX_OK, *from = NULL;
  for (int i = 0; i < n_path && !rc; i++) {
    px_task_list one;
    memset(&one, 0, sizeof one);
    if ((rc = px_task_read(paths[i], &one))) break;
    if (one.n < 1) {
      px_task_list_free(&one);
      rc = px_fail(PX_ERR_INPUT, "%s: no task", paths[i]);
      break;
    }
    int *f = realloc(from, sizeof *f * (size_t)(J->tasks.n + one.n));
    if (!f) {
      px_task_list_free(&one);
      rc = px_fail(PX_ERR_NOMEM, "out of memory reading the tasks");
      break;
    }
    from = f;
    for (int k = 0; k < one.n; k++) from[J->tasks.n + k] = i;
    if ((rc = task_list_append(&J->tasks, &one))) px_task_list_free(&one);
  }
  J->task_input = from;
  if (rc) return rc;
  if ((rc = job_read_targets(J))) return rc;
  return job_validate(J, conf);
}

int design_job_parse(design_job *J, const char *task_text, size_t task_len, int is_json,
                     const char *task_name, const char *cif_text, size_t cif_len, const char *cif_name,
                     const px_conformers *conf) {
  memset(J, 0, sizeof *J);
  int rc = px_task_parse(task_text, task_len, is_json, task_name, &J->tasks);
  if (rc) return rc;
  if (J->tasks.n < 1) return px_fail(PX_ERR_INPUT, "%s: no task", task_name);
  if ((rc = job_alloc(J))) return rc;
  px_structure_in *s = NULL;
  if ((rc = px_structure_parse(cif_text, cif_len, cif_name, &s))) return rc;
  for (int k = 0; k < J->tasks.n; k++) J->target[k] = s;
  J->target_owner[0] = 1;
  return job_validate(J, conf);
}

void design_job_free(design_job *J) {
  if (!J) return;
  for (int k = 0; k < J->tasks.n && J->target; k++)
    if (J->target_owner && J->target_owner[k]) px_structure_in_free(J->target[k]);
  free(J->target);
  free(J->target_owner);
  free(J->task_input);
  free(J->n_token);
  free(J->n_atom);
  px_task_list_free(&J->tasks);
  memset(J, 0, sizeof *J);
}

/* ---------------------------------------------------------------- models -- */

/* The two modules must agree on the widths that pass between them. */
static int models_check(design_models *M) {
  px_embedder_dims E;
  px_model_get_dims(M->model, &M->dims);
  px_embedder_get_dims(M->embedder, &E);
  if (E.c_s_inputs != M->dims.c_s_inputs || E.c_z != M->dims.c_z)
    return px_fail(PX_ERR_WEIGHTS,
                   "the condition embedder writes s_inputs %d wide and z %d wide, but the diffusion module "
                   "reads %d and %d",
                   E.c_s_inputs, E.c_z, M->dims.c_s_inputs, M->dims.c_z);
  M->n_params = px_model_n_params(M->model) + px_embedder_n_params(M->embedder);
  return PX_OK;
}

/* The embedder runs where it is told, or (embed_device < 0) on the device the diffusion
 * module ended up on. */
static int models_backend(design_models *M, px_device_ref model_dev, int embed_device, int precision) {
  int rc = px_model_set_device(M->model, model_dev.kind, model_dev.index, 0, precision);
  if (rc) return rc;
  if (embed_device < 0) {
    const char *b = px_model_backend_name(M->model);
    embed_device = b && !strncmp(b, "cuda", 4) ? PX_DEVICE_CUDA : PX_DEVICE_CPU;
  }
  return px_embedder_set_backend(M->embedder, embed_device);
}

int design_models_load(design_models *M, const char *ckpt, px_device_ref model_dev, int embed_device, int precision) {
  memset(M, 0, sizeof *M);
  double t0 = px_time_now();
  int rc = px_model_load(ckpt, &M->model);
  if (!rc) rc = px_embedder_load(ckpt, &M->embedder);
  if (!rc) rc = models_check(M);
  M->t_load = px_time_now() - t0;
  if (!rc) rc = models_backend(M, model_dev, embed_device, precision);
  return rc;
}

int design_models_synthetic(design_models *M, uint64_t seed, px_device_ref model_dev, int embed_device,
                            int precision) {
  memset(M, 0, sizeof *M);
  double t0 = px_time_now();
  px_dims D;
  px_embedder_dims E;
  px_dims_released(&D);
  px_embedder_dims_released(&E);
  int rc = px_model_synthetic(&D, seed, &M->model);
  if (!rc) rc = px_embedder_synthetic(&E, seed + 1, &M->embedder);
  if (!rc) rc = models_check(M);
  M->t_load = px_time_now() - t0;
  if (!rc) rc = models_backend(M, model_dev, embed_device, precision);
  return rc;
}

void design_models_free(design_models *M) {
  if (!M) return;
  px_embedder_free(M->embedder);
  px_model_free(M->model);
  memset(M, 0, sizeof *M);
}

/* ------------------------------------------------------------------ case -- */

int design_case_make(design_case *C, const design_job *J, int k, const design_models *M, uint64_t seed,
                     int augment, int dtype, const px_conformers *conf, int want_design) {
  memset(C, 0, sizeof *C);
  double t0 = px_time_now();
  int rc = px_featurize(J->target[k], &J->tasks.task[k], conf, seed, augment, &C->in);
  if (rc) return rc;
  C->t_featurize = px_time_now() - t0;
  const size_t T = (size_t)C->in->n_token;
  const px_dims *D = &M->dims;
  C->s_inputs = malloc(T * (size_t)D->c_s_inputs * sizeof(float));
  C->s_trunk = calloc(T * (size_t)D->c_s, sizeof(float));
  C->z_trunk = malloc(T * T * (size_t)D->c_z * sizeof(float));
  if (!C->s_inputs || !C->s_trunk || !C->z_trunk)
    return px_fail(PX_ERR_NOMEM, "out of memory for the condition embedding of %zu tokens", T);
  t0 = px_time_now();
  rc = px_embed(M->embedder, &C->in->f, C->in->restype, C->in->hotspot, C->in->conditional_templ,
                C->in->conditional_templ_mask, dtype == DESIGN_DTYPE_BF16 ? PX_EMBED_BF16 : PX_EMBED_FP32,
                C->s_inputs, C->z_trunk);
  if (rc) return rc;
  C->t_embed = px_time_now() - t0;
  C->f = C->in->f;
  C->f.s_inputs = C->s_inputs;
  C->f.s_trunk = C->s_trunk;
  C->f.z_trunk = C->z_trunk;
  if (!want_design) return PX_OK;
  t0 = px_time_now();
  rc = px_design_create(M->model, &C->f, &C->design);
  C->t_design = px_time_now() - t0;
  return rc;
}

void design_case_free(design_case *C) {
  if (!C) return;
  px_design_free(C->design);
  px_design_input_free(C->in);
  free(C->s_inputs);
  free(C->s_trunk);
  free(C->z_trunk);
  memset(C, 0, sizeof *C);
}

/* ----------------------------------------------------------------- chunk -- */

long design_chunk_fill(int T) { return T > 0 ? (DESIGN_CHUNK_FILL_ROWS + T - 1) / T : 1; }

long design_chunk_fit(const px_model *eng, int T, int N, long max_samples, int64_t budget) {
  long S = design_chunk_fill(T);
  if (S > max_samples) S = max_samples;
  if (S > 4096) S = 4096;
  while (S > 1 && px_sample_bytes(eng, T, N, (int)S) > budget) S = S * 7 / 8;
  return S < 1 ? 1 : S;
}

/* ----------------------------------------------------------------- seeds -- */

/* FNV-1a over the clock's nanoseconds: `pxdesign infer` derives its default seed from the
 * clock too (blake2b, mod 10^6); any value of that range is as good, and it is printed. */
static uint64_t clock_seed(void) {
  struct timespec ts = {0, 0};
  timespec_get(&ts, TIME_UTC);
  uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, h = 1469598103934665603ull;
  for (int i = 0; i < 8; i++) h = (h ^ ((ns >> (8 * i)) & 0xff)) * 1099511628211ull;
  return h % 1000000u;
}

int design_parse_seeds(const char *text, uint64_t **seeds, int *n) {
  *seeds = NULL;
  *n = 0;
  int cap = 1;
  for (const char *p = text ? text : ""; *p; p++) cap += *p == ',';
  uint64_t *s = malloc(sizeof *s * (size_t)cap);
  if (!s) return px_fail(PX_ERR_NOMEM, "out of memory");
  int k = 0;
  const char *p = text ? text : "";
  while (*p == ' ') p++;
  if (!*p) {
    s[k++] = clock_seed();
  } else {
    for (;;) {
      while (*p == ' ') p++;
      char *end;
      errno = 0;
      if (*p < '0' || *p > '9') break;
      unsigned long long v = strtoull(p, &end, 10);
      if (errno) break;
      for (int j = 0; j < k; j++)
        if (s[j] == v) {
          free(s);
          return px_fail(PX_ERR_INPUT, "--seeds: %llu is listed twice", v);
        }
      s[k++] = v;
      p = end;
      while (*p == ' ') p++;
      if (!*p) {
        *seeds = s;
        *n = k;
        return PX_OK;
      }
      if (*p != ',') break;
      p++;
    }
    free(s);
    return px_fail(PX_ERR_INPUT, "--seeds: '%s' is not a comma-separated list of non-negative integers", text);
  }
  *seeds = s;
  *n = k;
  return PX_OK;
}
