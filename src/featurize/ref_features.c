/* Reference features and the per-residue augmentation of ref_pos (featurize.h; upstream:
 * protenix/data/json_parser.py add_reference_features, pxdesign/data/featurizer.py
 * get_reference_features, protenix/utils/geometry.py random_transform).
 *
 * Upstream draws ref_pos afresh every time a task is featurized, which `pxdesign infer` does
 * once per (task, seed) (runner/inference.py: the data loader is iterated again for each seed)
 * and shares across that seed's samples. Here the draw is a pure function of (seed, task,
 * ref_space_uid) through pxdiff's counter-based Philox streams (rng.h: sample = ref_space_uid,
 * step = a 32-bit hash of the task name, so two tasks run under one seed draw independently),
 * under purposes of their own, so one seed reproduces the features exactly and never meets
 * the sampler's streams. */
#include <math.h>
#include <string.h>

#include "error.h"
#include "featurize/featurize_internal.h"
#include "rng_core.h"

/* Uniform rotation in double: a unit quaternion from 4 normals of stream
 * (seed, uid, task, PX_RNG_FEAT_ROT) (the same construction as the sampler's, kept in double). */
static void feat_rotation(uint64_t seed, uint32_t uid, uint32_t task, double R[9]) {
  double q[4], n2;
  for (uint64_t base = 0;; base += 4) {
    n2 = 0.0;
    for (int k = 0; k < 4; k++) {
      q[k] = px_rng_at(seed, uid, task, PX_RNG_FEAT_ROT, base + (uint64_t)k);
      n2 += q[k] * q[k];
    }
    if (n2 > 1e-300) break;
  }
  const double s = 1.0 / sqrt(n2);
  const double w = q[0] * s, x = q[1] * s, y = q[2] * s, z = q[3] * s;
  R[0] = 1.0 - 2.0 * (y * y + z * z);
  R[1] = 2.0 * (x * y - w * z);
  R[2] = 2.0 * (x * z + w * y);
  R[3] = 2.0 * (x * y + w * z);
  R[4] = 1.0 - 2.0 * (x * x + z * z);
  R[5] = 2.0 * (y * z - w * x);
  R[6] = 2.0 * (x * z - w * y);
  R[7] = 2.0 * (y * z + w * x);
  R[8] = 1.0 - 2.0 * (x * x + y * y);
}

/* t ~ U(-1, 1)^3 as upstream's np.random.uniform(-1, 1, 3): three 53-bit uniforms from Philox
 * blocks 0 and 1 of counter (block, PX_RNG_FEAT_TRANS << 24, uid, task) (rng.h's layout). */
static void feat_translation(uint64_t seed, uint32_t uid, uint32_t task, double t[3]) {
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  uint32_t w[8];
  for (uint32_t b = 0; b < 2; b++) {
    const uint32_t ctr[4] = {b, (PX_RNG_FEAT_TRANS & 0xffu) << 24, uid, task};
    px_philox_block(ctr, key, w + 4 * b);
  }
  const double two_m53 = 1.0 / 9007199254740992.0;
  for (int k = 0; k < 3; k++) {
    const uint64_t a = ((uint64_t)w[2 * k] << 21) ^ (w[2 * k + 1] >> 11);
    t[k] = 2.0 * ((double)a * two_m53) - 1.0;
  }
}

int px_feat_reference(px_design_input *d, const px_res_template *const *tmpl, const int *tmpl_atom,
                      const px_conformers *conf, uint64_t seed, uint32_t task, int augment) {
  const int N = d->n_atom;
  memset(d->ref_element, 0, (size_t)N * 128 * sizeof *d->ref_element);
  memset(d->ref_atom_name_chars, 0, (size_t)N * 256 * sizeof *d->ref_atom_name_chars);
  for (int i = 0; i < N; i++) {
    const px_res_template *t = tmpl[i];
    const int a = tmpl_atom[i];
    d->ref_mask[i] = 1.0f;
    d->ref_charge[i] = (float)t->charge[a];
    d->ref_element[(size_t)i * 128 + (size_t)(t->atomic_number[a] - 1)] = 1.0f;
    /* Name padded with blanks to 4 characters, one-hot of (code - 32) per character. */
    const char *nm = d->atom_name[i];
    const size_t len = strlen(nm);
    for (size_t c = 0; c < 4; c++) {
      const int ch = c < len ? (unsigned char)nm[c] : ' ';
      if (ch < 32 || ch >= 96)
        return px_fail(PX_ERR_INPUT, "atom name %s: character outside the 64 encoded ones", nm);
      d->ref_atom_name_chars[(size_t)i * 256 + c * 64 + (size_t)(ch - 32)] = 1.0f;
    }
    const float *x = conf ? px_conformers_get(conf, t->name, t->atom[a]) : t->ideal[a];
    memcpy(&d->ref_pos[(size_t)i * 3], x, 3 * sizeof(float));
  }

  /* Per ref_space_uid (ascending; for protein inputs = tokens, contiguous atoms): centre on the
   * mean and, with augment, apply (X - mu + t) R^T, all in double, stored float32. Upstream's
   * ref_pos annotation holds the float32 conformer values but is float64 by the time the
   * featurizer centres it (the mean and the difference are taken in float64, rounded to float32
   * once at the end; a float32 mean is an ulp off for some residues). */
  int i0 = 0;
  while (i0 < N) {
    int i1 = i0 + 1;
    while (i1 < N && d->ref_space_uid[i1] == d->ref_space_uid[i0]) i1++;
    double mu[3] = {0, 0, 0};
    for (int i = i0; i < i1; i++)
      for (int k = 0; k < 3; k++) mu[k] += d->ref_pos[(size_t)i * 3 + k];
    for (int k = 0; k < 3; k++) mu[k] /= (double)(i1 - i0);
    double R[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, t[3] = {0, 0, 0};
    if (augment) {
      const uint32_t uid = (uint32_t)d->ref_space_uid[i0];
      feat_rotation(seed, uid, task, R);
      feat_translation(seed, uid, task, t);
    }
    for (int i = i0; i < i1; i++) {
      float *p = &d->ref_pos[(size_t)i * 3];
      const double v[3] = {(double)p[0] - mu[0] + t[0], (double)p[1] - mu[1] + t[1], (double)p[2] - mu[2] + t[2]};
      if (!augment) {
        for (int k = 0; k < 3; k++) p[k] = (float)v[k];
        continue;
      }
      for (int k = 0; k < 3; k++) p[k] = (float)(R[3 * k] * v[0] + R[3 * k + 1] * v[1] + R[3 * k + 2] * v[2]);
    }
    i0 = i1;
  }
  return PX_OK;
}
