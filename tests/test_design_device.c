/* The design cache's device path without a GPU: a copy of the CPU backend's table that says
 * its buffers are device memory (device_memory = 1), so px_design_create_probe takes every step
 * it takes for a CUDA model (the model's weight mirror, the features uploaded, folded weights
 * uploaded, s0 into s0_dev and downloaded, index arrays uploaded, probes downloaded) with the
 * CPU's operations underneath: every probe and every cache buffer must equal the CPU model's
 * bit for bit. A mistake in what goes where (a host pointer handed to an op, a missing upload,
 * a wrong size) shows as a difference or a crash here, before a GPU sees it. */
#include "testutil.h"

#include "backend.h"
#include "model/model.h"
#include "pxdiff.h"
#include "pxdiff_synthetic.h"
#include "pxdiff_testing.h"

typedef struct {
  const char *name[8];
  float *data[8];
  int64_t n[8];
  int count;
} probes;

static void keep_probe(void *user, const char *name, const float *data, int64_t n) {
  probes *p = (probes *)user;
  if (p->count >= 8) return;
  p->name[p->count] = name;
  p->data[p->count] = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  memcpy(p->data[p->count], data, sizeof(float) * (size_t)n);
  p->n[p->count++] = n;
}

static int same(const void *a, const void *b, size_t bytes) { return a && b && memcmp(a, b, bytes) == 0; }

int main(void) {
  tu_seed();
  px_dims D;
  px_dims_released(&D);
  D.n_token_blocks = 2; /* the released widths, fewer blocks */
  D.n_enc_blocks = D.n_dec_blocks = 2;
  const int n_atom = 301 + (int)(tu_u64() % 40); /* not a multiple of 32: a partial last trunk */
  px_synthetic_design sd;
  if (px_synthetic_design_make(&D, 30, 12, n_atom, 7, &sd) != PX_OK) {
    CHECK_MSG(0, "synthetic design: %s", px_last_error());
    return tu_finish("test_design_device");
  }
  px_model *host_m = NULL, *dev_m = NULL;
  CHECK(px_model_synthetic(&D, 5, &host_m) == PX_OK);
  CHECK(px_model_synthetic(&D, 5, &dev_m) == PX_OK);
  if (!host_m || !dev_m) return tu_finish("test_design_device");
  static px_backend fake;
  fake = *px_cpu_backend();
  fake.name = "cpu-as-device";
  fake.device_memory = 1;
  CHECK_MSG(px_model_to_device(dev_m, &fake, PX_PRECISION_FP32) == PX_OK, "to device: %s", px_last_error());

  probes want = {0}, got = {0};
  px_design *dh = NULL, *dd = NULL;
  CHECK_MSG(px_design_create_probe(host_m, &sd.f, keep_probe, &want, &dh) == PX_OK, "host design: %s", px_last_error());
  CHECK_MSG(px_design_create_probe(dev_m, &sd.f, keep_probe, &got, &dd) == PX_OK, "device design: %s", px_last_error());
  if (!dh || !dd) return tu_finish("test_design_device");
  CHECK_MSG(dd->s0_dev != NULL && dh->s0_dev == NULL, "the device path was not taken");
  CHECK_MSG(want.count == 4 && got.count == 4, "probes: %d and %d", want.count, got.count);
  for (int i = 0; i < want.count && i < got.count; i++)
    CHECK_MSG(strcmp(want.name[i], got.name[i]) == 0 && want.n[i] == got.n[i] &&
                  same(want.data[i], got.data[i], sizeof(float) * (size_t)want.n[i]),
              "probe %s differs on the device path", want.name[i]);
  const size_t T = (size_t)dh->T, N = (size_t)dh->N, P = (size_t)dh->n_trunks * PX_ATOM_NQ * PX_ATOM_NK;
  CHECK(same(dh->s0, dd->s0, sizeof(float) * T * D.c_s) && same(dh->s0, dd->s0_dev, sizeof(float) * T * D.c_s));
  CHECK(same(dh->tok_pair_bias, dd->tok_pair_bias, sizeof(float) * (size_t)D.n_token_blocks * D.n_token_heads * T * T));
  CHECK(same(dh->c, dd->c, sizeof(float) * N * D.c_atom));
  CHECK(same(dh->atom_to_token, dd->atom_to_token, sizeof(int64_t) * N));
  CHECK(same(dh->inv_count, dd->inv_count, sizeof(float) * T));
  CHECK(dh->bytes == dd->bytes);
  const px_atom_block_cache *ch[2] = {dh->enc, dh->dec}, *cd[2] = {dd->enc, dd->dec};
  const int heads[2] = {D.n_enc_heads, D.n_dec_heads}, blocks[2] = {D.n_enc_blocks, D.n_dec_blocks};
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < blocks[w]; k++) {
      const px_atom_block_cache *a = &ch[w][k], *b = &cd[w][k];
      const float *fa[8] = {a->g_a, a->b_a, a->g_kv, a->b_kv, a->gate_last, a->g_c, a->b_c, a->gate_ctb};
      const float *fb[8] = {b->g_a, b->b_a, b->g_kv, b->b_kv, b->gate_last, b->g_c, b->b_c, b->gate_ctb};
      for (int i = 0; i < 8; i++)
        CHECK_MSG(same(fa[i], fb[i], sizeof(float) * N * D.c_atom), "%s block %d term %d differs",
                  w ? "decoder" : "encoder", k, i);
      CHECK_MSG(same(a->pair_bias, b->pair_bias, sizeof(float) * (size_t)heads[w] * P), "%s block %d pair bias differs",
                w ? "decoder" : "encoder", k);
    }
  for (int i = 0; i < want.count; i++) free(want.data[i]);
  for (int i = 0; i < got.count; i++) free(got.data[i]);
  px_design_free(dh);
  px_design_free(dd);
  px_model_free(host_m);
  px_model_free(dev_m);
  px_synthetic_free(&sd);
  return tu_finish("test_design_device");
}
