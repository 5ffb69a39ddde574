/* pxdiff: PXDesign's diffusion module and sampler, in C (what it computes: docs/spec.md).
 *
 * This header is the library's public API: libpxdiff.so exports exactly the functions
 * declared with PXDIFF_API here, in pxdiff_synthetic.h and in pxdiff_testing.h (hooks for
 * tests and the Python package, not a stable API). Handles are opaque. Every function that
 * can fail returns PX_OK (0) or a negative error code and leaves a one-line message in
 * px_last_error() (thread-local).
 *
 * Shapes follow PyTorch's row-major layout, with S = samples, T = tokens, N = atoms.
 *
 * Ownership and threads, for every handle:
 *   px_model   created by px_model_load / px_model_from_arrays / px_model_synthetic, owned by
 *              the caller, released by px_model_free (NULL is a no-op) after every design made
 *              from it. Its weights never change after creation; px_model_set_backend and
 *              px_set_cuda_stream change how it computes and must not overlap any other call
 *              on the model or its designs.
 *   px_design  created by px_design_create from one model, owned by the caller, released by
 *              px_design_free before that model. It holds scratch memory that every call
 *              writes: one call at a time per design. It works only with the model (and the
 *              precision) it was made with.
 *   Threads:   on the CPU backend, calls on different designs may run concurrently on one
 *              model (the model is only read). On the CUDA backend, serialize all calls on a
 *              model and its designs (they share its device state and stream). The CPU
 *              backend's own parallelism is OpenMP with px_num_threads() threads, or the
 *              model's own count (px_model_set_num_threads).
 *   Inputs     (px_features, arrays, paths) are borrowed for the duration of the call only;
 *              nothing keeps a pointer to them after it returns.
 *   Strings    returned (px_last_error, names) are owned by the library: px_last_error's until
 *              the next failing call on the same thread, the others for the process (or, for
 *              px_model_*_name, the model's) lifetime. Never free them. */
#ifndef PXDIFF_H
#define PXDIFF_H

#include <stddef.h>
#include <stdint.h>

/* Marks the exported API. The library is built with -fvisibility=hidden, so everything
 * without it stays internal to libpxdiff.so. */
#if defined(_WIN32)
#define PXDIFF_API
#elif defined(__GNUC__) || defined(__clang__)
#define PXDIFF_API __attribute__((visibility("default")))
#else
#define PXDIFF_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PXDIFF_VERSION_MAJOR 0
#define PXDIFF_VERSION_MINOR 2
#define PXDIFF_VERSION_PATCH 0
#define PXDIFF_VERSION "0.2.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, for compile-time checks. */
#define PXDIFF_VERSION_NUMBER \
  (PXDIFF_VERSION_MAJOR * 10000 + PXDIFF_VERSION_MINOR * 100 + PXDIFF_VERSION_PATCH)

/* The version of the library actually loaded (may differ from the header's):
 * "MAJOR.MINOR.PATCH", and the same as PXDIFF_VERSION_NUMBER computes it. */
PXDIFF_API const char *px_version(void);
PXDIFF_API int px_version_number(void);

enum px_status {
  PX_OK = 0,
  PX_ERR_IO = -1,       /* file cannot be opened, read or written */
  PX_ERR_FORMAT = -2,   /* file content is malformed or of a foreign kind */
  PX_ERR_WEIGHTS = -3,  /* a tensor the model needs is missing or mis-shaped */
  PX_ERR_INPUT = -4,    /* caller's arguments or features are invalid */
  PX_ERR_NOMEM = -5,    /* allocation failed */
  PX_ERR_BACKEND = -6,  /* the requested backend is unavailable or failed */
  PX_ERR_CANCELLED = -7 /* a progress callback asked to stop */
};

/* Message of the last failure on this thread ("" if none). */
PXDIFF_API const char *px_last_error(void);

/* ---------------------------------------------------------------- model ---- */

typedef struct px_model px_model;

/* Dimensions read off the weights. */
typedef struct {
  int c_s, c_z, c_s_inputs, c_token, c_atom, c_atompair, n_fourier;
  int n_token_blocks, n_token_heads;
  int n_enc_blocks, n_enc_heads, n_dec_blocks, n_dec_heads;
  int c_ref_f; /* width of [ref_mask, ref_element, ref_atom_name_chars], 385 upstream */
  int n_relpe; /* relative position encoding features, 139 upstream */
  float sigma_data;
} px_dims;

/* Load a checkpoint (.pt written by torch.save, or .safetensors; detected by content).
 * Names may carry "module."; a top-level {"model": {...}} dict is unwrapped; tensors
 * outside "diffusion_module." are ignored. */
PXDIFF_API int px_model_load(const char *path, px_model **out);

/* Build a model from named float32 tensors already in memory (the Python binding's
 * from_torch path). names are as in the released checkpoint (prefix optional);
 * data are contiguous float32 arrays that are copied. */
PXDIFF_API int px_model_from_arrays(int n, const char *const *names, const float *const *data,
                                    const int *ndims, const int64_t *const *shapes, px_model **out);

PXDIFF_API void px_model_free(px_model *m);
PXDIFF_API int px_model_get_dims(const px_model *m, px_dims *out);
/* Number of float32 values the engine keeps for the model's weights. */
PXDIFF_API int64_t px_model_n_params(const px_model *m);

/* Backends. A model computes on the CPU until told otherwise; designs created after
 * px_model_set_backend use the chosen backend (weights are copied to the device once). */
enum px_device {
  PX_DEVICE_INVALID = -1, /* what px_device_from_name returns for an unknown name */
  PX_DEVICE_AUTO = 0,
  PX_DEVICE_CPU = 1,
  PX_DEVICE_CUDA = 2
};
enum px_precision {
  PX_PRECISION_INVALID = -2, /* what px_precision_from_name returns for an unknown name */
  PX_PRECISION_DEFAULT = -1, /* the backend's documented default: fp32 on the CPU, fp16 on CUDA */
  PX_PRECISION_FP32 = 0,     /* true float32 everywhere */
  PX_PRECISION_TF32 = 1,     /* TF32 tensor-core GEMMs (CUDA) */
  PX_PRECISION_BF16 = 2,     /* GEMMs on bfloat16 operands, fp32 accumulate: CUDA (tensor cores),
                                and the CPU where it has AVX512_BF16 (the token blocks that pass
                                its accuracy gate; the rest fp32: px_model_x16_blocks) */
  PX_PRECISION_FP16 = 3      /* token-block GEMMs on fp16 operands (TF32's 10-bit mantissa, at
                                twice TF32's tensor-core rate), fp32 accumulate, for blocks whose
                                inputs are proven inside fp16's range; the rest as tf32 */
};
/* Number of usable CUDA devices (0 when none or when built without CUDA). */
PXDIFF_API int px_cuda_device_count(void);
/* 1 when this library was built with the backend of `device` (CPU: always; CUDA: compiled
 * with nvcc, whether or not a GPU is present), else 0. */
PXDIFF_API int px_device_built(enum px_device device);
/* "auto" picks CUDA when a device is present, else the CPU. Fails with PX_ERR_BACKEND
 * (message says why) when the device asked for is unavailable or the precision is not
 * supported there (the CPU computes in fp32, and in bf16 where it has AVX512_BF16). */
PXDIFF_API int px_model_set_backend(px_model *m, enum px_device device, enum px_precision precision);
/* "cpu" or "cuda:0"; and the precision in use ("fp32", "tf32", "bf16", "fp16"). */
PXDIFF_API const char *px_model_backend_name(const px_model *m);
PXDIFF_API const char *px_model_precision_name(const px_model *m);
/* Token blocks whose GEMMs take 16-bit inputs (CUDA fp16 / bf16; the CPU at bf16). At fp16
 * only blocks whose inputs are proven, from their weights, to stay inside fp16's range (the
 * others run TF32); on the CPU at bf16 the blocks its gate admits (the others fp32); 0 at
 * fp32 / tf32. Out of px_dims.n_token_blocks. */
PXDIFF_API int px_model_x16_blocks(const px_model *m);
/* Atom blocks (encoder and decoder atom transformers) whose GEMMs take fp16 inputs: CUDA at
 * fp16, the blocks whose inputs are proven inside fp16's range (the others TF32; all of them
 * when PXDIFF_NO_X16_ATOMS was set when the model was prepared); 0 elsewhere. Out of
 * px_dims.n_enc_blocks + n_dec_blocks. */
PXDIFF_API int px_model_x16_atom_blocks(const px_model *m);
/* "auto" | "cpu" | "cuda" ("gpu" is accepted as "cuda") | "cuda:N" for a device N this machine
 * has (px_device_list_parse gives its index); PX_DEVICE_INVALID for anything else, NULL
 * included, with px_last_error saying why in one line ("no CUDA device cuda:3 (1 visible: ...)",
 * "built without CUDA", "not a device"). */
PXDIFF_API enum px_device px_device_from_name(const char *name);
/* "fp32" | "tf32" | "bf16" | "fp16" | "default"; PX_PRECISION_INVALID for anything else. */
PXDIFF_API enum px_precision px_precision_from_name(const char *name);

/* Several devices and contexts in one process (0.2): one model handle per backend context,
 * each driven by its own thread. A device is a kind and an index: "cpu" is
 * {PX_DEVICE_CPU, 0}, "cuda:1" {PX_DEVICE_CUDA, 1}. */
typedef struct {
  enum px_device kind;
  int index;
} px_device_ref;

/* Parses a device list: "auto", "cpu", "cuda" (= cuda:0), "cuda:N", "cuda:N,M,..." (a device
 * may repeat: one context per entry, "cuda:0,0" is two on one GPU), "cuda:all" (every visible
 * GPU), or full entries separated by commas ("cuda:0,cuda:2"; "cpu,cpu": two CPU workers, which
 * share the cores: for tests). Writes at most cap entries and their count to *n. PX_ERR_INPUT
 * with one line naming the entry for a malformed list ("cuda:x", "cuda:-1", ""), a CUDA index
 * this machine does not have (or any CUDA entry in a build without CUDA), or more than cap
 * entries. "auto" is {PX_DEVICE_AUTO, 0}: px_model_set_device resolves it. */
PXDIFF_API int px_device_list_parse(const char *text, px_device_ref *out, int cap, int *n);

/* Another handle on m's weights, which are not copied: it starts on the CPU and
 * px_model_set_device gives it a device copy of its own. m must outlive it. Handles of one
 * model are independent models for every other function (designs are made per handle). */
PXDIFF_API int px_model_share(const px_model *m, px_model **out);

/* px_model_set_backend on device `index` of the kind (the CPU has index 0 only; AUTO picks
 * cuda:index when a GPU is present, else the CPU). With own_context != 0 the handle computes
 * on a backend context of its own on that device (its streams, scratch and cuBLAS handle,
 * freed with the handle) instead of the one the process shares per device, so that handles
 * on one GPU can compute at the same time from different threads. Free the handle's designs
 * before calling it again. */
PXDIFF_API int px_model_set_device(px_model *m, enum px_device device, int index, int own_context,
                                   enum px_precision precision);
/* The device index the model computes on (0 on the CPU). */
PXDIFF_API int px_model_device_index(const px_model *m);

/* Free and total memory of a device, in bytes (the CPU reports 0 and 0). */
PXDIFF_API int px_device_memory(enum px_device device, int index, int64_t *free_bytes, int64_t *total_bytes);
/* Bytes of the model's device memory that one design of n_token tokens and n_atom atoms and
 * px_sample with chunks of `chunk` samples take together: the design cache, the workspace of a
 * denoise call of `chunk` samples and the sampler's coordinates (computed as the engine lays
 * them out, before anything is allocated). For choosing a chunk that fits; -1 on bad input. */
PXDIFF_API int64_t px_sample_bytes(const px_model *m, int n_token, int n_atom, int chunk);

/* Threads of the CPU backend; n <= 0 returns to the default. Results do not depend on it.
 * The engine keeps its own count: it never changes the process's OpenMP setting, and what
 * the host did to OpenMP (e.g. PyTorch's set_num_threads) does not change it. */
PXDIFF_API void px_set_num_threads(int n);
/* The thread count the CPU backend runs on: px_set_num_threads's value if set, else
 * $PXDIFF_NUM_THREADS (a positive integer, read once), else the CPUs this process may use
 * (affinity mask and cgroup CPU quota on Linux). */
PXDIFF_API int px_num_threads(void);
/* Threads of one model handle's CPU work: each handle (px_model_load, px_model_from_arrays,
 * px_model_synthetic, px_model_share) computes on a CPU backend context of its own, and n > 0
 * runs every parallel region of its designs' calls (those made before and after this call) on
 * n threads (capped at 4096); 0, the default, returns to the process's count (px_num_threads).
 * Handles in one process may run on different counts at the same time (e.g. two workers of 2
 * threads each); results do not depend on it. The process-wide host work of the library (the
 * sampler's per-step noise, the embedder) stays on px_num_threads. Like px_model_set_backend,
 * it must not overlap any other call on the model or its designs. PX_ERR_INPUT for a NULL model
 * or n < 0; PX_ERR_BACKEND when the model computes on CUDA (its work runs on the GPU: the count
 * would change nothing; set it after px_model_set_backend(PX_DEVICE_CPU), or use
 * px_set_num_threads for the host's work). Nothing changes on failure. */
PXDIFF_API int px_model_set_num_threads(px_model *m, int n);

/* ------------------------------------------------------------- features ---- */

/* One design's inputs, as PXDesign hands them to the diffusion module.
 * Pointers are borrowed for the duration of the call that takes them. */
typedef struct {
  int n_token, n_atom;
  const float *s_inputs;            /* [T, c_s_inputs] */
  const float *s_trunk;             /* [T, c_s] */
  const float *z_trunk;             /* [T, T, c_z] */
  const float *ref_pos;             /* [N, 3] */
  const float *ref_charge;          /* [N] */
  const float *ref_mask;            /* [N] */
  const float *ref_element;         /* [N, 128] one-hot */
  const float *ref_atom_name_chars; /* [N, 256] one-hot (4 x 64) */
  const int64_t *ref_space_uid;     /* [N] */
  const int64_t *atom_to_token_idx; /* [N], values in [0, T) */
  const int64_t *asym_id;           /* [T] */
  const int64_t *residue_index;     /* [T] */
  const int64_t *entity_id;         /* [T] */
  const int64_t *token_index;       /* [T] */
  const int64_t *sym_id;            /* [T] */
} px_features;

/* Everything about one design that does not depend on noise level or sample
 * (docs/spec.md, "computed once per design"): built once, reused by every call. */
typedef struct px_design px_design;

PXDIFF_API int px_design_create(const px_model *m, const px_features *f, px_design **out);
PXDIFF_API void px_design_free(px_design *d);
PXDIFF_API int px_design_n_atoms(const px_design *d);
PXDIFF_API int px_design_n_tokens(const px_design *d);
/* Bytes held by the design cache. */
PXDIFF_API int64_t px_design_bytes(const px_design *d);

/* A 64-bit fingerprint of a design's inputs (every array, with the model's widths):
 * equal inputs give equal keys. It keys the design cache (python binding, drop-in). */
PXDIFF_API uint64_t px_features_hash(const px_model *m, const px_features *f);
/* The fingerprint of the inputs a design was built from. */
PXDIFF_API uint64_t px_design_key(const px_design *d);

/* --------------------------------------------------------------- denoise --- */

/* x_denoised = DiffusionModule(x_noisy, t_hat) for S samples.
 * x_noisy, x_out: [S, N, 3]; t_hat: [S] (> 0). x_out may alias x_noisy. */
PXDIFF_API int px_denoise(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                          const float *t_hat, float *x_out);

/* The same call with x_noisy, t_hat and x_out in the backend's memory (CUDA device
 * pointers on the GPU backend; host pointers on the CPU): coordinates stay on the device.
 * The work is ordered after what is queued on the stream given to px_set_cuda_stream (if
 * any) and that stream waits for it, without a host wait; with no stream set the call is
 * synchronous. Nothing is read back to the host: the noise embedding is computed on the
 * device for each sample, and t_hat and x_noisy are not checked (positive, finite) on this
 * path. Errors of the queued work surface at a later call or synchronisation. */
PXDIFF_API int px_denoise_device(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                                 const float *t_hat, float *x_out);
/* px_denoise_device with one noise level for every sample: t_hat points to a single float
 * in device memory. PXDesign's sampler always shares the level within a chunk (upstream
 * passes it as an expanded tensor); the token-level conditioning is then computed once per
 * call rather than once per sample, as on the host path. */
PXDIFF_API int px_denoise_device_shared_t(const px_model *m, px_design *d, int n_sample, const float *x_noisy,
                                          const float *t_hat, float *x_out);
/* The caller's cudaStream_t for px_denoise_device (NULL: none). */
PXDIFF_API int px_set_cuda_stream(px_model *m, void *stream);

/* --------------------------------------------------------------- sampler --- */

enum px_eta_type {
  PX_ETA_INVALID = -1, /* what px_eta_type_from_name returns for an unknown name */
  PX_ETA_CONST = 0, PX_ETA_LINEAR, PX_ETA_POLY, PX_ETA_COS,
  PX_ETA_PIECEWISE, PX_ETA_PIECEWISE_65, PX_ETA_PIECEWISE_70
};

typedef struct {
  int n_step;            /* 400 */
  float gamma0;          /* 1.0 */
  float gamma_min;       /* 0.01 */
  float noise_scale_lambda; /* 1.003 */
  enum px_eta_type eta_type; /* PX_ETA_CONST */
  float eta_min, eta_max;   /* 2.5, 2.5 */
  int schedule_bf16;     /* 1: round each op to bfloat16 as PXDesign's default GPU run */
  float s_max, s_min, rho, sigma_data; /* 160, 4e-4, 7, 16 */
  uint64_t seed;
} px_sampler_config;

PXDIFF_API void px_sampler_config_default(px_sampler_config *c);
/* "const", "linear", "poly", "cos", "piecewise", "piecewise_65", "piecewise_70";
 * PX_ETA_INVALID for anything else, NULL included. */
PXDIFF_API enum px_eta_type px_eta_type_from_name(const char *name);
/* The name of an eta type; "unknown" for values outside the enum. */
PXDIFF_API const char *px_eta_type_name(enum px_eta_type eta_type);

/* The noise schedule t[0..n_step] (t[n_step] = 0). */
PXDIFF_API int px_noise_schedule(const px_sampler_config *c, float *t);
/* eta for step k (0-based). */
PXDIFF_API float px_eta(const px_sampler_config *c, int k);

/* Progress: called after each step and after each finished chunk; return nonzero to cancel. */
typedef int (*px_progress_fn)(void *user, int samples_done, int samples_total, int step,
                              int n_step);

/* Run the whole sampler for samples [first, first + n) of a run with this seed.
 * Noise depends only on (seed, sample index, step), so any split into calls or chunks
 * gives the same coordinates. x_out: [n, N, 3]. chunk: samples per denoise batch. */
PXDIFF_API int px_sample(const px_model *m, px_design *d, const px_sampler_config *c, int first, int n,
                         int chunk, float *x_out, px_progress_fn progress, void *user);

/* px_sample over a caller-given schedule t[0..c->n_step] (levels > 0, the last may be 0)
 * instead of the one c describes (the drop-in passes PXDesign's own tensor). */
PXDIFF_API int px_sample_schedule(const px_model *m, px_design *d, const px_sampler_config *c,
                                  const float *schedule, int first, int n, int chunk, float *x_out,
                                  px_progress_fn progress, void *user);

/* One sampler step with caller-provided randomness (tests, drop-in loops):
 * x [S, N, 3] is updated in place: centre, x = R x + u, add noise, denoise, Euler step.
 * rot: [S, 3, 3] (x_new = R @ x per atom), trans: [S, 3], noise: [S, N, 3].
 * When rot is NULL no centring/augmentation is applied. */
PXDIFF_API int px_sampler_step(const px_model *m, px_design *d, const px_sampler_config *c, int n_sample,
                               float *x, float t_prev, float t_cur, float eta, const float *rot,
                               const float *trans, const float *noise);

/* The counter-based generator (Philox-4x32-10 + Box-Muller), exposed for tests:
 * fills out[0..n) with N(0,1) values of stream (seed, sample, step, purpose). */
enum px_rng_purpose { PX_RNG_INIT = 0, PX_RNG_ROT = 1, PX_RNG_TRANS = 2, PX_RNG_NOISE = 3 };
PXDIFF_API void px_rng_normal(uint64_t seed, uint32_t sample, uint32_t step, uint32_t purpose, float *out,
                              int64_t n);
/* The sampler's per-step augmentation for (seed, sample, step): a uniformly random rotation
 * (row-major, x_new = R x) and a translation u ~ N(0, I_3). */
PXDIFF_API void px_rng_rotation(uint64_t seed, uint32_t sample, uint32_t step, float R[9]);
PXDIFF_API void px_rng_translation(uint64_t seed, uint32_t sample, uint32_t step, float u[3]);

/* ---------------------------------------------------------------- convert -- */

/* Rewrite a checkpoint's diffusion-module tensors as float32 safetensors. */
PXDIFF_API int px_convert_to_safetensors(const char *in_path, const char *out_path);

/* The cblas the build chose and the one loaded, and the CPU's own GEMM kernels, in one line:
 * "BLIS; loaded: BLIS 0.9.0; GEMMs of depth >= 128: pxdiff's AVX-512 kernel", ... */
PXDIFF_API const char *px_blas_name(void);
/* The CPU's bf16 precision in one line: its kernel, or why there is none. */
PXDIFF_API const char *px_cpu_bf16_name(void);

#ifdef __cplusplus
}
#endif

/* The library's own sources (built with -DPXDIFF_BUILDING_LIBRARY) see the declarations of
 * the test hooks too, so that their definitions are exported. */
#ifdef PXDIFF_BUILDING_LIBRARY
#include "pxdiff_testing.h"
#endif
#endif
