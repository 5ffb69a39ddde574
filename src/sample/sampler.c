/* PXDesign's sampler (docs/spec.md, "Sampler"; AF3 Algorithm 18 variant) over px_denoise.
 *
 * Randomness comes from the counter-based generator (rng.h): sample i's initial
 * noise, and at step k its rotation, translation and noise, are pure functions of
 * (seed, i, k). So a seed gives the same designs whatever the chunking or thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/model.h"
#include "rng.h"

/* t_hat of step k (px_sampler_step's arithmetic). */
static float step_t_hat(const px_sampler_config *c, float t_prev, float t_cur) {
  const float gamma = t_cur > c->gamma_min ? c->gamma0 : 0.0f;
  return t_prev * (gamma + 1.0f);
}

int px_sampler_step(const px_model *m, px_design *d, const px_sampler_config *c, int S, float *x,
                    float t_prev, float t_cur, float eta, const float *rot, const float *trans,
                    const float *noise) {
  if (!m || !d || !c || !x || !noise) return px_fail(PX_ERR_INPUT, "px_sampler_step: NULL argument");
  if (S <= 0) return px_fail(PX_ERR_INPUT, "px_sampler_step: n_sample must be positive");
  const int N = px_design_n_atoms(d);
  const size_t n3 = (size_t)N * 3;
  if (rot) {
    /* Centre each sample, then x = R x + u. */
    for (int s = 0; s < S; s++) {
      float *xs = x + (size_t)s * n3;
      double mean[3] = {0, 0, 0};
      for (int n = 0; n < N; n++)
        for (int k = 0; k < 3; k++) mean[k] += xs[n * 3 + k];
      float mf[3];
      for (int k = 0; k < 3; k++) mf[k] = (float)(mean[k] / N);
      const float *R = rot + (size_t)s * 9;
      const float *u = trans ? trans + (size_t)s * 3 : NULL;
      for (int n = 0; n < N; n++) {
        float p[3] = {xs[n * 3] - mf[0], xs[n * 3 + 1] - mf[1], xs[n * 3 + 2] - mf[2]};
        for (int k = 0; k < 3; k++) {
          float v = R[k * 3] * p[0] + R[k * 3 + 1] * p[1] + R[k * 3 + 2] * p[2];
          xs[n * 3 + k] = v + (u ? u[k] : 0.0f);
        }
      }
    }
  }
  const float t_hat = step_t_hat(c, t_prev, t_cur);
  const float sd = c->noise_scale_lambda * sqrtf(t_hat * t_hat - t_prev * t_prev);
  float *x_noisy = malloc(sizeof(float) * n3 * S);
  float *x_den = malloc(sizeof(float) * n3 * S);
  float *th = malloc(sizeof(float) * (size_t)S);
  if (!x_noisy || !x_den || !th) {
    free(x_noisy);
    free(x_den);
    free(th);
    return px_fail(PX_ERR_NOMEM, "out of memory in the sampler");
  }
  for (size_t i = 0; i < n3 * S; i++) x_noisy[i] = x[i] + sd * noise[i];
  for (int s = 0; s < S; s++) th[s] = t_hat;
  int rc = px_denoise(m, d, S, x_noisy, th, x_den);
  if (!rc) {
    const float step = eta * (t_cur - t_hat);
    for (size_t i = 0; i < n3 * S; i++) {
      float delta = (x_noisy[i] - x_den[i]) / t_hat;
      x[i] = x_noisy[i] + step * delta;
    }
  }
  free(x_noisy);
  free(x_den);
  free(th);
  return rc;
}

/* A whole chunk on a backend with the sampler's kernels (the GPU): the coordinates stay in
 * device memory from the initial noise to the last step; each step is three small kernels
 * around one shared-level device-pointer denoise call, and nothing crosses to the host but the
 * final coordinates. Same randomness and arithmetic as the host loop below (see
 * backend.h); the host waits once per step, for the progress report. */
static int sample_chunk_device(const px_model *m, px_design *d, const px_sampler_config *c, const float *t,
                               uint32_t sample0, int S, float *x_out, int done, int n,
                               px_progress_fn progress, void *user) {
  px_backend *be = d->be;
  const int N = px_design_n_atoms(d);
  const size_t n3 = (size_t)N * 3, nx = n3 * (size_t)S;
  float *x = be->alloc(be, sizeof(float) * nx), *xn = be->alloc(be, sizeof(float) * nx);
  float *xd = be->alloc(be, sizeof(float) * nx);
  float *th = be->alloc(be, sizeof(float) * (size_t)c->n_step);
  float *th_host = malloc(sizeof(float) * (size_t)c->n_step);
  int rc = PX_OK;
  if (!x || !xn || !xd || !th || !th_host) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory for a %d-sample chunk on the device", S);
    goto done;
  }
  for (int k = 0; k < c->n_step; k++) th_host[k] = step_t_hat(c, t[k], t[k + 1]);
  be->upload(be, th, th_host, sizeof(float) * (size_t)c->n_step);
  be->sampler_init(be, S, N, c->seed, sample0, t[0], x);
  for (int k = 0; k < c->n_step && !rc; k++) {
    const float t_hat = th_host[k];
    const float sd = c->noise_scale_lambda * sqrtf(t_hat * t_hat - t[k] * t[k]);
    be->sampler_noise(be, S, N, c->seed, sample0, (uint32_t)k, sd, x, xn);
    rc = px_denoise_device_queued(m, d, S, xn, th + k, xd);
    if (rc) break;
    be->sampler_euler(be, (int64_t)nx, xn, xd, t_hat, px_eta(c, k) * (t[k + 1] - t_hat), x);
    be->sync(be);
    if ((rc = be->status(be))) break;
    if (progress && progress(user, done, n, k + 1, c->n_step)) rc = px_fail(PX_ERR_CANCELLED, "sampling cancelled");
  }
  if (!rc) {
    be->download(be, x_out, x, sizeof(float) * nx);
    rc = be->status(be);
  }
done:
  be->sync(be);
  be->free(be, x);
  be->free(be, xn);
  be->free(be, xd);
  be->free(be, th);
  free(th_host);
  return rc;
}

/* The device loop unless the backend lacks the sampler's kernels or PXDIFF_HOST_SAMPLER=1
 * asks for the host loop (comparisons, debugging). */
static int use_device_loop(const px_design *d) {
  const px_backend *be = d->be;
  const char *e = getenv("PXDIFF_HOST_SAMPLER");
  return be->sampler_init && be->sampler_noise && be->sampler_euler && !(e && *e && *e != '0');
}

int px_sample(const px_model *m, px_design *d, const px_sampler_config *c, int first, int n,
              int chunk, float *x_out, px_progress_fn progress, void *user) {
  return px_sample_schedule(m, d, c, NULL, first, n, chunk, x_out, progress, user);
}

int px_sample_schedule(const px_model *m, px_design *d, const px_sampler_config *c,
                       const float *schedule, int first, int n, int chunk, float *x_out,
                       px_progress_fn progress, void *user) {
  if (!m || !d || !c || !x_out) return px_fail(PX_ERR_INPUT, "px_sample: NULL argument");
  if (n <= 0 || first < 0) return px_fail(PX_ERR_INPUT, "px_sample: need n > 0 and first >= 0");
  if (chunk <= 0) return px_fail(PX_ERR_INPUT, "px_sample: chunk must be positive, got %d", chunk);
  if (c->n_step <= 0) return px_fail(PX_ERR_INPUT, "px_sample: n_step must be positive");
  const int N = px_design_n_atoms(d);
  const size_t n3 = (size_t)N * 3;
  float *t = malloc(sizeof(float) * (size_t)(c->n_step + 1));
  float *rot = malloc(sizeof(float) * 9 * (size_t)chunk);
  float *tr = malloc(sizeof(float) * 3 * (size_t)chunk);
  float *noise = malloc(sizeof(float) * n3 * (size_t)chunk);
  int rc = PX_OK;
  if (!t || !rot || !tr || !noise) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory in the sampler");
    goto done;
  }
  if (schedule) {
    for (int k = 0; k <= c->n_step; k++) {
      if (!isfinite(schedule[k]) || schedule[k] < 0.0f || (k < c->n_step && !(schedule[k] > 0.0f))) {
        rc = px_fail(PX_ERR_INPUT, "px_sample_schedule: schedule[%d] = %g; levels must be finite, > 0 before the last", k,
                     (double)schedule[k]);
        goto done;
      }
      t[k] = schedule[k];
    }
  } else {
    rc = px_noise_schedule(c, t);
    if (rc) goto done;
  }
  for (int c0 = 0; c0 < n && !rc; c0 += chunk) {
    const int S = n - c0 < chunk ? n - c0 : chunk;
    float *x = x_out + (size_t)c0 * n3;
    if (use_device_loop(d) && S <= 65535) { /* (the kernels put samples on a grid axis) */
      rc = sample_chunk_device(m, d, c, t, (uint32_t)(first + c0), S, x, c0, n, progress, user);
      if (!rc && progress && progress(user, c0 + S, n, c->n_step, c->n_step))
        rc = px_fail(PX_ERR_CANCELLED, "sampling cancelled");
      continue;
    }
    for (int s = 0; s < S; s++) {
      uint32_t idx = (uint32_t)(first + c0 + s);
      px_rng_normal(c->seed, idx, 0, PX_RNG_INIT, x + (size_t)s * n3, (int64_t)n3);
      for (size_t i = 0; i < n3; i++) x[(size_t)s * n3 + i] *= t[0];
    }
    for (int k = 0; k < c->n_step; k++) {
      /* The step's randomness, one sample per thread (each value a pure function of
       * (seed, sample, step), so threads do not change it). The process's count: host work
       * of the sampler, not of the model's backend context (px_model_set_num_threads). */
#pragma omp parallel for num_threads(px_num_threads()) schedule(static)
      for (int s = 0; s < S; s++) {
        uint32_t idx = (uint32_t)(first + c0 + s);
        px_rng_rotation(c->seed, idx, (uint32_t)k, rot + (size_t)s * 9);
        px_rng_translation(c->seed, idx, (uint32_t)k, tr + (size_t)s * 3);
        px_rng_normal(c->seed, idx, (uint32_t)k, PX_RNG_NOISE, noise + (size_t)s * n3, (int64_t)n3);
      }
      rc = px_sampler_step(m, d, c, S, x, t[k], t[k + 1], px_eta(c, k), rot, tr, noise);
      if (rc) break;
      if (progress && progress(user, c0, n, k + 1, c->n_step)) {
        rc = px_fail(PX_ERR_CANCELLED, "sampling cancelled");
        break;
      }
    }
    if (!rc && progress && progress(user, c0 + S, n, c->n_step, c->n_step))
      rc = px_fail(PX_ERR_CANCELLED, "sampling cancelled");
  }
done:
  free(t);
  free(rot);
  free(tr);
  free(noise);
  return rc;
}
