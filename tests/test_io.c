/* Tensor-file readers: torch.save archives (torch 1.13 here, torch 2.x emulated and as
 * real files in tests/ref/io_torch2/), safetensors, malformed and hostile files, the
 * safetensors writer, and fault injection (truncations and flipped bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/tensorfile.h"
#include "pxdiff.h"
#include "testutil.h"

static char dir[256];
static char errbuf[1024];

static int is_float(px_dtype d) {
  return d == PX_DT_F32 || d == PX_DT_F16 || d == PX_DT_BF16 || d == PX_DT_F64;
}

/* Open file, compare with stem.manifest and stem.expect.safetensors (in fixdir). */
static void check_good(const char *fixdir, const char *file, const char *stem, int kind) {
  char path[512], man[512], exp[512];
  snprintf(path, sizeof path, "%s/%s", fixdir, file);
  snprintf(man, sizeof man, "%s/%s.manifest", fixdir, stem);
  snprintf(exp, sizeof exp, "%s/%s.expect.safetensors", fixdir, stem);
  px_tensorfile tf, ex;
  int rc = px_tensorfile_open(path, &tf, errbuf, sizeof errbuf);
  CHECK_MSG(rc == 0, "%s: %s", file, errbuf);
  if (rc) return;
  CHECK_MSG((int)tf.kind == kind, "%s: kind %d", file, tf.kind);
  rc = px_tensorfile_open(exp, &ex, errbuf, sizeof errbuf);
  CHECK_MSG(rc == 0, "%s: %s", exp, errbuf);
  if (rc) {
    px_tensorfile_close(&tf);
    return;
  }
  FILE *f = fopen(man, "r");
  CHECK_MSG(f != NULL, "no manifest %s", man);
  char line[1024];
  int lines = 0;
  while (f && fgets(line, sizeof line, f)) {
    size_t l = strlen(line);
    if (l && line[l - 1] == '\n') line[--l] = 0;
    char *t1 = strchr(line, '\t');
    char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t1 || !t2) continue;
    *t1 = 0;
    *t2 = 0;
    lines++;
    const char *name = line, *dt = t1 + 1, *dims = t2 + 1;
    const px_tensor_entry *e = px_tensorfile_find(&tf, name);
    CHECK_MSG(e != NULL, "%s: tensor %s missing", file, name);
    if (!e) continue;
    CHECK_MSG(strcmp(px_dtype_name(e->dtype), dt) == 0, "%s: %s dtype %s, expected %s", file,
              name, px_dtype_name(e->dtype), dt);
    int64_t shp[PX_MAX_DIMS];
    int nd = 0;
    for (const char *q = dims; *q && nd < PX_MAX_DIMS;) {
      shp[nd++] = strtoll(q, (char **)&q, 10);
      if (*q == ',') q++;
    }
    int same = nd == e->ndim;
    for (int d = 0; same && d < nd; d++) same = shp[d] == e->shape[d];
    CHECK_MSG(same, "%s: %s shape mismatch (ndim %d vs %d)", file, name, e->ndim, nd);
    int64_t n = px_entry_numel(e);
    float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (is_float(e->dtype)) {
      const px_tensor_entry *x = px_tensorfile_find(&ex, name);
      CHECK_MSG(x != NULL && px_entry_numel(x) == n, "%s: %s not in expect file", file, name);
      float *b = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
      tu_poison(a, (size_t)n);
      rc = px_tensorfile_read_f32(&tf, e, a, errbuf, sizeof errbuf);
      CHECK_MSG(rc == 0, "%s: %s: %s", file, name, errbuf);
      if (x && px_entry_numel(x) == n) {
        rc = px_tensorfile_read_f32(&ex, x, b, errbuf, sizeof errbuf);
        CHECK_MSG(rc == 0, "%s: %s", exp, errbuf);
        CHECK_MSG(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "%s: %s values differ", file,
                  name);
      }
      free(b);
    } else {
      errbuf[0] = 0;
      rc = px_tensorfile_read_f32(&tf, e, a, errbuf, sizeof errbuf);
      CHECK_MSG(rc != 0 && tu_one_line(errbuf) && strstr(errbuf, name),
                "%s: integer tensor %s read as float (rc %d, '%s')", file, name, rc, errbuf);
    }
    free(a);
  }
  if (f) fclose(f);
  CHECK_MSG(lines == tf.n, "%s: %d tensors indexed, manifest has %d", file, tf.n, lines);
  CHECK(px_tensorfile_find(&tf, "no.such.tensor") == NULL);
  px_tensorfile_close(&ex);
  px_tensorfile_close(&tf);
}

static void check_bad(const char *file, const char *must_contain) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  px_tensorfile tf;
  errbuf[0] = 0;
  int rc = px_tensorfile_open(path, &tf, errbuf, sizeof errbuf);
  CHECK_MSG(rc < 0 && rc >= PX_ERR_CANCELLED, "%s: opened (rc %d)", file, rc);
  CHECK_MSG(tu_one_line(errbuf), "%s: message '%s'", file, errbuf);
  CHECK_MSG(strstr(errbuf, file) != NULL, "%s: message does not name the file: %s", file, errbuf);
  if (must_contain)
    CHECK_MSG(strstr(errbuf, must_contain) != NULL, "%s: message lacks '%s': %s", file,
              must_contain, errbuf);
  if (rc == 0) px_tensorfile_close(&tf);
  if (getenv("PXDIFF_TEST_VERBOSE")) printf("  %s\n", errbuf);
}

/* Open whatever is at path and read every tensor; must not crash. Returns 0 if all ok. */
static int open_and_read_all(const char *path) {
  px_tensorfile tf;
  char e[512];
  e[0] = 0;
  int rc = px_tensorfile_open(path, &tf, e, sizeof e);
  if (rc) {
    if (!tu_one_line(e)) {
      tu_failures++;
      fprintf(stderr, "%s: bad message for rc %d: '%s'\n", path, rc, e);
    }
    return rc;
  }
  int bad = 0;
  for (int i = 0; i < tf.n; i++) {
    int64_t n = px_entry_numel(&tf.t[i]);
    if (!is_float(tf.t[i].dtype)) continue;
    if (n > (1 << 22)) continue; /* an expanded (stride 0) view may claim huge sizes */
    float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (px_tensorfile_read_f32(&tf, &tf.t[i], a, e, sizeof e) != 0) {
      bad = 1;
      if (!tu_one_line(e)) {
        tu_failures++;
        fprintf(stderr, "%s: bad read message '%s'\n", path, e);
      }
    }
    free(a);
  }
  px_tensorfile_close(&tf);
  return bad;
}

static void fault_injection(const char *file) {
  char src[512], mut[512];
  snprintf(src, sizeof src, "%s", file);
  snprintf(mut, sizeof mut, "%s/mutant.bin", dir);
  size_t n;
  unsigned char *b = tu_slurp(src, &n);
  CHECK_MSG(b != NULL, "cannot read %s", src);
  if (!b) return;
  unsigned char *c = malloc(n);
  int opened = 0, tried = 0;
  /* truncations: every 7th length, plus the last 300 bytes one by one */
  for (size_t k = 0; k < n; k += (k + 300 >= n ? 1 : 7)) {
    tu_spit(mut, b, k);
    opened += open_and_read_all(mut) == 0;
    tried++;
  }
  /* flipped bytes: every byte of the first 1.5 KB and the last 1.5 KB, and random ones */
  for (int pass = 0; pass < 3; pass++)
    for (size_t k = 0; k < n; k++) {
      int pick = pass == 0 ? (k < 1536 || k + 1536 >= n) : (tu_u64() % 16 == 0);
      if (!pick) continue;
      memcpy(c, b, n);
      c[k] ^= pass == 2 ? (unsigned char)(1u << (tu_u64() % 8)) : 0xFF;
      tu_spit(mut, c, n);
      opened += open_and_read_all(mut) == 0;
      tried++;
    }
  /* multi-byte damage: random 4-byte values at random places */
  for (int r = 0; r < 400; r++) {
    memcpy(c, b, n);
    size_t k = (size_t)(tu_u64() % (n > 4 ? n - 4 : 1));
    uint32_t v = (uint32_t)tu_u64();
    if (r % 3 == 0) v = 0xFFFFFFFFu;
    if (r % 3 == 1) v &= 0xFF;
    memcpy(c + k, &v, n >= 4 ? 4 : n);
    tu_spit(mut, c, n);
    opened += open_and_read_all(mut) == 0;
    tried++;
  }
  printf("fault injection %s: %d variants, %d opened and read\n", src, tried, opened);
  remove(mut);
  free(b);
  free(c);
}

static void test_write_roundtrip(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/written.safetensors", dir);
  float a[24], s0 = 2.5f, c[3];
  tu_fill_normal(a, 24, 1.0);
  c[0] = -0.0f;
  c[1] = 1e-45f;
  c[2] = 3.4e38f;
  int64_t sa[3] = {2, 3, 4}, se[2] = {3, 0}, sc[1] = {3};
  px_st_write_item items[] = {
      {"diffusion_module.w", 3, sa, a},
      {"scalar", 0, NULL, &s0},
      {"empty", 2, se, NULL},
      {"odd \"name\" \\ \t\xc3\xa9", 1, sc, c},
  };
  int rc = px_safetensors_write(path, items, 4, errbuf, sizeof errbuf);
  CHECK_MSG(rc == 0, "write: %s", errbuf);
  size_t n;
  unsigned char *raw = tu_slurp(path, &n);
  CHECK(raw != NULL);
  if (raw) {
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    CHECK((8 + hl) % 8 == 0);
    CHECK(n == 8 + hl + 4 * (24 + 1 + 0 + 3));
    free(raw);
  }
  px_tensorfile tf;
  rc = px_tensorfile_open(path, &tf, errbuf, sizeof errbuf);
  CHECK_MSG(rc == 0, "reopen: %s", errbuf);
  if (rc) return;
  CHECK(tf.kind == PX_FILE_SAFETENSORS && tf.n == 4);
  for (int i = 0; i < 4; i++) {
    const px_tensor_entry *e = px_tensorfile_find(&tf, items[i].name);
    CHECK_MSG(e != NULL, "missing %s", items[i].name);
    if (!e) continue;
    CHECK(e->dtype == PX_DT_F32 && e->ndim == items[i].ndim);
    for (int d = 0; d < e->ndim; d++) CHECK(e->shape[d] == items[i].shape[d]);
    int64_t m = px_entry_numel(e);
    float buf[32];
    CHECK(px_tensorfile_read_f32(&tf, e, buf, errbuf, sizeof errbuf) == 0);
    if (m) CHECK(memcmp(buf, items[i].data, (size_t)m * 4) == 0);
  }
  CHECK(strcmp(tf.t[0].name, "diffusion_module.w") == 0); /* order kept */
  px_tensorfile_close(&tf);
  /* bad arguments */
  px_st_write_item dup[] = {{"x", 0, NULL, &s0}, {"x", 0, NULL, &s0}};
  errbuf[0] = 0;
  CHECK(px_safetensors_write(path, dup, 2, errbuf, sizeof errbuf) == PX_ERR_INPUT && tu_one_line(errbuf));
  int64_t neg[1] = {-1};
  px_st_write_item badshape[] = {{"x", 1, neg, &s0}};
  CHECK(px_safetensors_write(path, badshape, 1, errbuf, sizeof errbuf) == PX_ERR_INPUT);
  char nodir[600];
  snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", dir);
  errbuf[0] = 0;
  CHECK(px_safetensors_write(nodir, items, 1, errbuf, sizeof errbuf) == PX_ERR_IO && tu_one_line(errbuf));
  /* empty file list */
  CHECK(px_safetensors_write(path, NULL, 0, errbuf, sizeof errbuf) == 0);
  rc = px_tensorfile_open(path, &tf, errbuf, sizeof errbuf);
  CHECK_MSG(rc == 0 && tf.n == 0, "empty safetensors: %s", errbuf);
  if (!rc) px_tensorfile_close(&tf);
}

int main(void) {
  tu_seed();
  snprintf(dir, sizeof dir, "/tmp/pxdiff_test_io_%lu_%llu", (unsigned long)time(NULL),
           (unsigned long long)(tu_u64() % 1000000));
  char cmd[600];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/make_io_fixtures.py %s > /dev/null", dir);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "fixture script failed: %s", cmd);
  if (rc != 0) return tu_finish("test_io");

  static const char *pt_good[] = {"plain", "plain_p2", "plain_p3", "plain_p4", "plain_p5",
                                  "plain_newzip", "ckpt", "ckpt_p4", "dtypes", "views", "params",
                                  "statedict", "params_model", "model_str", "empty_dict",
                                  "torch2emu", "zip64", "zip64_noalign", "handmade"};
  for (size_t i = 0; i < sizeof pt_good / sizeof *pt_good; i++) {
    char f[128];
    snprintf(f, sizeof f, "%s.pt", pt_good[i]);
    check_good(dir, f, pt_good[i], PX_FILE_PT);
  }
  static const char *st_good[] = {"st_good", "st_order", "st_ws"};
  for (size_t i = 0; i < sizeof st_good / sizeof *st_good; i++) {
    char f[128];
    snprintf(f, sizeof f, "%s.safetensors", st_good[i]);
    check_good(dir, f, st_good[i], PX_FILE_SAFETENSORS);
  }
  /* Real torch 2.11 archives, written on the device machine by the same script. */
  static const char *t2[] = {"plain", "plain_p5", "ckpt", "dtypes", "views", "params", "statedict"};
  for (size_t i = 0; i < sizeof t2 / sizeof *t2; i++) {
    char f[128];
    snprintf(f, sizeof f, "%s.pt", t2[i]);
    check_good("tests/ref/io_torch2", f, t2[i], PX_FILE_PT);
  }
  /* Spot checks of the layout the reader reports. */
  {
    char p[512];
    px_tensorfile tf;
    snprintf(p, sizeof p, "%s/views.pt", dir);
    if (px_tensorfile_open(p, &tf, errbuf, sizeof errbuf) == 0) {
      const px_tensor_entry *t = px_tensorfile_find(&tf, "transposed");
      const px_tensor_entry *b = px_tensorfile_find(&tf, "base");
      const px_tensor_entry *r = px_tensorfile_find(&tf, "rows_2_4");
      const px_tensor_entry *x = px_tensorfile_find(&tf, "expanded");
      CHECK(t && t->stride[0] == 1 && t->stride[1] == 10);
      CHECK(b && r && r->offset == b->offset + 2 * 10 * 4); /* shared storage */
      CHECK(x && x->stride[0] == 0 && x->span == 5 * 4);
      px_tensorfile_close(&tf);
    }
    snprintf(p, sizeof p, "%s/ckpt.pt", dir);
    if (px_tensorfile_open(p, &tf, errbuf, sizeof errbuf) == 0) {
      CHECK(tf.n == 7 && strncmp(tf.t[0].name, "module.", 7) == 0);
      px_tensorfile_close(&tf);
    }
  }

  /* Every bad fixture: nonzero status, one-line message naming the file. */
  char listp[512];
  snprintf(listp, sizeof listp, "%s/bad_list.txt", dir);
  FILE *lf = fopen(listp, "r");
  CHECK(lf != NULL);
  char line[256];
  int nbad = 0;
  while (lf && fgets(line, sizeof line, lf)) {
    line[strcspn(line, "\n")] = 0;
    if (!line[0]) continue;
    check_bad(line, NULL);
    nbad++;
  }
  if (lf) fclose(lf);
  CHECK(nbad > 60);
  check_bad("bad_evil_os.pt", "'os.system', which pxdiff does not allow");
  check_bad("bad_evil_eval.pt", "'builtins.eval'");
  check_bad("bad_evil_posix.pt", "'posix.system'");
  check_bad("bad_evil_getattr.pt", "'builtins.getattr'");
  check_bad("bad_evil_torchload.pt", "'torch.load'");
  check_bad("bad_evil_nested.pt", "'subprocess.Popen'");
  check_bad("bad_evil_inst.pt", "opcode");
  check_bad("bad_compressed.pt", "is compressed (method 8); pxdiff reads only stored entries");
  check_bad("bad_bigendian.pt", "byteorder");
  check_bad("bad_legacy.pt", "legacy");
  check_bad("bad_text.bin", "not a PyTorch checkpoint or safetensors file");
  check_bad("bad_empty.bin", "not a PyTorch checkpoint or safetensors file");
  check_bad("bad_toplist.pt", "expected a dict");
  check_bad("bad_span.pt", "'w'");
  check_bad("bad_missing_storage.pt", "data/9");
  check_bad("bad_model_complex.pt", "ComplexFloatStorage");
  check_bad("bad_st_overlap.safetensors", "overlap");
  check_bad("bad_st_hdr_absurd.safetensors", "header length");
  check_bad("bad_st_json08.safetensors", "twice");
  check_bad("bad_st_dtype.safetensors", "F31");
  {
    px_tensorfile tf;
    CHECK(px_tensorfile_open("/nonexistent/dir/x.pt", &tf, errbuf, sizeof errbuf) == PX_ERR_IO);
    CHECK(tu_one_line(errbuf) && strstr(errbuf, "/nonexistent/dir/x.pt"));
    CHECK(px_tensorfile_open("/tmp", &tf, errbuf, sizeof errbuf) == PX_ERR_IO);
  }

  test_write_roundtrip();

  char p[512];
  snprintf(p, sizeof p, "%s/plain.pt", dir);
  fault_injection(p);
  fault_injection("tests/ref/io_torch2/views.pt");
  snprintf(p, sizeof p, "%s/zip64.pt", dir);
  fault_injection(p);
  snprintf(p, sizeof p, "%s/st_good.safetensors", dir);
  fault_injection(p);

  if (!tu_failures) {
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  } else {
    fprintf(stderr, "fixtures kept in %s\n", dir);
  }
  return tu_finish("test_io");
}
