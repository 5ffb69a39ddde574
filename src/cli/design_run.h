/* The generation path shared by `pxdiff design`, `pxdiff featurize` and `pxdiff demo`:
 * task file(s) + target structures in, per (task, seed) the features, the condition
 * embedding and the design cache out (docs/design.md).
 *
 *   design_job J;                      // tasks and their parsed targets, validated
 *   design_job_read(&J, task_path);    // or design_job_parse (in-memory task + target)
 *   design_models M;                   // diffusion module + condition embedder
 *   design_models_load(&M, ckpt, dev, -1, precision);
 *   design_case C;                     // one (task, seed): features, embedding, cache
 *   design_case_make(&C, &J, k, &M, seed, augment, dtype, conformers);
 *   ... px_sample(M.model, C.design, ...) ...
 *   design_case_free(&C); design_models_free(&M); design_job_free(&J);
 *
 * Every function returns 0 or a px_status code with one line in px_last_error(). */
#ifndef PX_CLI_DESIGN_RUN_H
#define PX_CLI_DESIGN_RUN_H

#include <stdint.h>

#include "featurize/featurize.h"
#include "io/structure.h"
#include "io/structure_in.h"
#include "io/task.h"
#include "model/embedder.h"
#include "pxdiff.h"

typedef struct {
  px_task_list tasks;
  px_structure_in **target; /* [tasks.n]; targets read from one path are shared */
  int *target_owner;        /* [tasks.n] 1 where target[k] is freed with the job */
  int *task_input;          /* [tasks.n] index of the task file task k came from (read_many), or NULL */
  int *n_token, *n_atom;    /* [tasks.n] each task's size, from the unaugmented featurization */
} design_job;

/* Read a task file and every structure it names, and featurize each task once without
 * augmentation to find every input problem before anything runs. */
int design_job_read(design_job *J, const char *task_path, const px_conformers *conf);
/* Several task files as one job (`pxdiff design -i a.yaml b.json ...`): their tasks in the
 * order given, each structure read once however many tasks name it; task_input records
 * which file each task came from. Warnings name their file. */
int design_job_read_many(design_job *J, const char *const *paths, int n_path, const px_conformers *conf);
/* The same from memory: a task text (YAML, or JSON when is_json) whose tasks all use the one
 * structure text given (the demo's built-in copy). */
int design_job_parse(design_job *J, const char *task_text, size_t task_len, int is_json,
                     const char *task_name, const char *cif_text, size_t cif_len, const char *cif_name,
                     const px_conformers *conf);
void design_job_free(design_job *J);

typedef struct {
  px_model *model;
  px_embedder *embedder;
  px_dims dims;
  double t_load;
  int64_t n_params; /* both modules */
} design_models;

/* Both modules from one checkpoint (.pt or .safetensors): the diffusion module on model_dev
 * (the process's shared context of that device), the embedder on embed_device (an enum
 * px_device), or where the model runs when embed_device < 0. A run of several contexts keeps
 * this model on the CPU and gives each context a handle of it (px_model_share). */
int design_models_load(design_models *M, const char *ckpt, px_device_ref model_dev, int embed_device, int precision);
/* Synthetic weights of the released shapes (the demo). */
int design_models_synthetic(design_models *M, uint64_t seed, px_device_ref model_dev, int embed_device,
                            int precision);
void design_models_free(design_models *M);

typedef struct {
  px_design_input *in; /* features + annotations */
  float *s_inputs;     /* [T, c_s_inputs] */
  float *s_trunk;      /* [T, c_s] zeros */
  float *z_trunk;      /* [T, T, c_z] */
  px_features f;       /* in->f with the three conditioning inputs set */
  px_design *design;   /* the diffusion module's cache (NULL when not asked for) */
  double t_featurize, t_embed, t_design;
} design_case;

enum { DESIGN_DTYPE_BF16 = 0, DESIGN_DTYPE_FP32 = 1 };

/* Task k of J for one seed: featurize (augment: ref_pos drawn from the seed), embed
 * (dtype as `pxdesign infer --dtype`), and with want_design the diffusion module's cache. */
int design_case_make(design_case *C, const design_job *J, int k, const design_models *M, uint64_t seed,
                     int augment, int dtype, const px_conformers *conf, int want_design);
void design_case_free(design_case *C);

/* The chunk that keeps a GPU busy for a design of T tokens and N atoms on eng's device:
 * ceil(DESIGN_CHUNK_FILL_ROWS / T) samples (the samples x tokens of one call beyond which a
 * larger call gains little: docs/campaign.md), at most max_samples, shrunk by 1/8 at a time
 * until px_sample_bytes fits in budget bytes; at least 1. */
#define DESIGN_CHUNK_FILL_ROWS 32768
long design_chunk_fill(int T);
long design_chunk_fit(const px_model *eng, int T, int N, long max_samples, int64_t budget);

/* `--seeds 1,2,3` (PXDesign's comma list: non-negative integers, no duplicates). An empty
 * or absent list gives one seed derived from the clock, as `pxdesign infer` does (printed). */
int design_parse_seeds(const char *text, uint64_t **seeds, int *n);

#endif
