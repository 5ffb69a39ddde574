/* Named-tensor files: kind detection, the .pt path (zip + restricted pickle), reading
 * one tensor as float32 with dtype conversion and strides. */
#include "io/tensorfile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pickle.h"
#include "io/safetensors.h"
#include "io/strbuf.h"
#include "io/zip.h"
#include "platform.h"
#include "pxdiff.h"

#define PKL_MAX ((uint64_t)1 << 30)
#define READ_CHUNK_ELEMS ((size_t)1 << 18)
#define GATHER_SLACK ((uint64_t)64 << 20)



const px_tensor_entry *px_tensorfile_find(const px_tensorfile *tf, const char *name) {
  for (int i = 0; i < tf->n; i++)
    if (strcmp(tf->t[i].name, name) == 0) return &tf->t[i];
  return NULL;
}

void px_tensorfile_close(px_tensorfile *tf) {
  if (!tf) return;
  if (tf->fd >= 0) px_file_close(tf->fd);
  for (int i = 0; i < tf->n; i++) free(tf->t[i].name);
  free(tf->t);
  free(tf->path);
  px_st_meta_free(&tf->meta);
  memset(tf, 0, sizeof *tf);
  tf->fd = -1;
}

/* ------------------------------------------------------------------ .pt files ---- */
typedef struct {
  int fd;
  const px_zip *z;
  const char *prefix;
  size_t plen;
  const char *path;
} pt_ctx;

static int pt_storage(void *vctx, const char *key, uint64_t *off, uint64_t *nbytes, char *err,
                      size_t errlen) {
  pt_ctx *c = vctx;
  char name[4096 + 80];
  if (c->plen + strlen(key) + 6 >= sizeof name)
    return px_errf(err, errlen, PX_ERR_FORMAT, "%s: storage name too long", c->path);
  snprintf(name, sizeof name, "%.*sdata/%s", (int)c->plen, c->prefix, key);
  const px_zip_entry *e = px_zip_find(c->z, name);
  if (!e)
    return px_errf(err, errlen, PX_ERR_FORMAT, "%s: storage %s is missing from the archive", c->path,
                 name);
  int rc = px_zip_check_stored(e, c->path, err, errlen);
  if (rc) return rc;
  *off = e->data_offset;
  *nbytes = e->size;
  return 0;
}

static int open_pt(px_tensorfile *tf, char *err, size_t errlen) {
  const char *path = tf->path;
  px_zip z;
  int rc = px_zip_open(tf->fd, tf->file_size, path, &z, err, errlen);
  if (rc) return rc;
  uint8_t *pkl = NULL;
  char *where = NULL;
  /* data.pkl sits in the archive's top folder ("archive/", "<stem>/", ...). */
  const px_zip_entry *pe = NULL;
  int ncand = 0;
  for (int i = 0; i < z.n; i++) {
    const char *nm = z.e[i].name;
    size_t l = strlen(nm);
    const char *slash = strchr(nm, '/');
    int top = (l == 8 && strcmp(nm, "data.pkl") == 0) ||
              (l > 9 && strcmp(nm + l - 9, "/data.pkl") == 0 && slash == nm + l - 9);
    if (!top) continue;
    ncand++;
    if (!pe) pe = &z.e[i];
  }
  if (!pe) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: zip archive has no data.pkl (not a torch.save file)",
               path);
    goto done;
  }
  if (ncand > 1) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: zip archive holds %d data.pkl records", path, ncand);
    goto done;
  }
  size_t plen = strlen(pe->name) - 8;
  if ((rc = px_zip_check_stored(pe, path, err, errlen))) goto done;
  /* byteorder record (torch >= 2.0): little-endian only. */
  {
    char bo[4200];
    snprintf(bo, sizeof bo, "%.*sbyteorder", (int)plen, pe->name);
    const px_zip_entry *be = px_zip_find(&z, bo);
    if (be) {
      char val[16] = {0};
      if ((rc = px_zip_check_stored(be, path, err, errlen))) goto done;
      if (be->size >= sizeof val) {
        rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: bad byteorder record (%llu bytes)", path,
                   (unsigned long long)be->size);
        goto done;
      }
      if (be->size && px_file_pread(tf->fd, val, (size_t)be->size, be->data_offset) != 0) {
        rc = px_errf(err, errlen, PX_ERR_IO, "%s: cannot read byteorder at offset %llu", path,
                   (unsigned long long)be->data_offset);
        goto done;
      }
      if (strcmp(val, "little") != 0) {
        for (char *q = val; *q; q++)
          if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f) *q = '?';
        rc = px_errf(err, errlen, PX_ERR_FORMAT,
                   "%s: archive byteorder is '%s'; pxdiff reads little-endian archives only", path,
                   val);
        goto done;
      }
    }
  }
  if (pe->size > PKL_MAX) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: data.pkl is %llu bytes (limit 1 GiB)", path,
               (unsigned long long)pe->size);
    goto done;
  }
  pkl = malloc(pe->size ? (size_t)pe->size : 1);
  where = malloc(strlen(path) + strlen(pe->name) + 4);
  if (!pkl || !where) {
    rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory for data.pkl", path);
    goto done;
  }
  sprintf(where, "%s: %s", path, pe->name);
  if (pe->size && px_file_pread(tf->fd, pkl, (size_t)pe->size, pe->data_offset) != 0) {
    rc = px_errf(err, errlen, PX_ERR_IO, "%s: cannot read data.pkl at offset %llu", path,
               (unsigned long long)pe->data_offset);
    goto done;
  }
  pt_ctx ctx = {tf->fd, &z, pe->name, plen, path};
  rc = px_pickle_index(pkl, (size_t)pe->size, where, pt_storage, &ctx, &tf->t, &tf->n, err, errlen);
done:
  free(pkl);
  free(where);
  px_zip_close(&z);
  return rc;
}

int px_tensorfile_open(const char *path, px_tensorfile *tf, char *err, size_t errlen) {
  memset(tf, 0, sizeof *tf);
  tf->fd = -1;
  if (err && errlen) err[0] = 0;
  if (!path) return px_errf(err, errlen, PX_ERR_INPUT, "no path given");
  size_t pl = strlen(path);
  tf->path = malloc(pl + 1);
  if (!tf->path) return px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
  memcpy(tf->path, path, pl + 1);
  tf->fd = px_file_open_read(path);
  if (tf->fd < 0) {
    px_tensorfile_close(tf);
    return px_errf(err, errlen, PX_ERR_IO, "%s: cannot open file", path);
  }
  int64_t sz = px_file_size(tf->fd);
  if (sz < 0) {
    px_tensorfile_close(tf);
    return px_errf(err, errlen, PX_ERR_IO, "%s: cannot get the size (not a regular file?)", path);
  }
  tf->file_size = (uint64_t)sz;
  uint8_t head[16] = {0};
  size_t hn = tf->file_size < sizeof head ? (size_t)tf->file_size : sizeof head;
  if (hn && px_file_pread(tf->fd, head, hn, 0) != 0) {
    px_tensorfile_close(tf);
    return px_errf(err, errlen, PX_ERR_IO, "%s: cannot read", path);
  }
  static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20};
  int rc;
  if (hn >= 4 && head[0] == 'P' && head[1] == 'K' &&
      ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6))) {
    tf->kind = PX_FILE_PT;
    rc = open_pt(tf, err, errlen);
  } else if (hn >= sizeof legacy && memcmp(head, legacy, sizeof legacy) == 0) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT,
               "%s: legacy torch.save format (torch < 1.6 or _use_new_zipfile_serialization=False); "
               "re-save it with a current torch",
               path);
  } else if (hn >= 9 && head[8] == '{') {
    tf->kind = PX_FILE_SAFETENSORS;
    rc = px_safetensors_index(tf->fd, tf->file_size, path, &tf->t, &tf->n, &tf->meta, err, errlen);
  } else {
    rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: not a PyTorch checkpoint or safetensors file", path);
  }
  if (rc) {
    tf->t = NULL;
    tf->n = 0;
    px_tensorfile_close(tf);
  }
  return rc;
}

/* ---------------------------------------------------------------- conversion ---- */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (ex == 0) {
    if (man == 0) {
      bits = sign;
    } else {
      uint32_t s = 0;
      while (!(man & 0x400)) {
        man <<= 1;
        s++;
      }
      bits = sign | ((113 - s) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (ex == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((ex + 112) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static float load_f32(px_dtype dt, const uint8_t *p) {
  switch (dt) {
  case PX_DT_F32: {
    uint32_t b = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    float f;
    memcpy(&f, &b, 4);
    return f;
  }
  case PX_DT_F16: return f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
  case PX_DT_BF16: {
    uint32_t b = ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 24);
    float f;
    memcpy(&f, &b, 4);
    return f;
  }
  case PX_DT_F64: {
    uint64_t b = 0;
    for (int i = 7; i >= 0; i--) b = (b << 8) | p[i];
    double d;
    memcpy(&d, &b, 8);
    return (float)d;
  }
  default: return 0.0f;
  }
}

static int host_little(void) {
  const uint16_t x = 1;
  return *(const uint8_t *)&x == 1;
}


/* Advance the multi-index idx over dimensions 0..last of e (odometer order) and return the
 * element offset of the next element, src being the current one. */
static int64_t next_index(const px_tensor_entry *e, int64_t *idx, int last, int64_t src) {
  for (int d = last; d >= 0; d--) {
    if (++idx[d] < e->shape[d]) return src + e->stride[d];
    src -= (idx[d] - 1) * e->stride[d];
    idx[d] = 0;
  }
  return src;
}

int px_tensorfile_read_f32(const px_tensorfile *tf, const px_tensor_entry *e, float *dst,
                           char *err, size_t errlen) {
  const char *path = tf && tf->path ? tf->path : "?";
  char nm[160];
  px_shown_name(nm, sizeof nm, e ? e->name : NULL);
  if (!tf || !e || tf->fd < 0) return px_errf(err, errlen, PX_ERR_INPUT, "%s: file is not open", path);
  if (e->dtype != PX_DT_F32 && e->dtype != PX_DT_F16 && e->dtype != PX_DT_BF16 && e->dtype != PX_DT_F64)
    return px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: tensor %s has dtype %s; pxdiff reads only floating-point tensors", path,
                 nm, px_dtype_name(e->dtype));
  if (e->ndim < 0 || e->ndim > PX_MAX_DIMS)
    return px_errf(err, errlen, PX_ERR_FORMAT, "%s: tensor %s has %d dimensions", path, nm, e->ndim);
  const uint64_t es = px_dtype_size(e->dtype);
  int64_t numel = 1, extent = 1;
  int contiguous = 1;
  int64_t want = 1;
  for (int d = e->ndim - 1; d >= 0; d--) {
    if (e->shape[d] < 0 || e->stride[d] < 0)
      return px_errf(err, errlen, PX_ERR_FORMAT, "%s: tensor %s has a negative size or stride", path, nm);
    if (e->shape[d] == 0) numel = 0;
  }
  for (int d = e->ndim - 1; d >= 0 && numel; d--) {
    if (e->shape[d] > ((int64_t)1 << 62) / numel ||
        (e->shape[d] > 1 && e->stride[d] > (((int64_t)1 << 62) - extent) / (e->shape[d] - 1)))
      return px_errf(err, errlen, PX_ERR_FORMAT, "%s: tensor %s is impossibly large", path, nm);
    numel *= e->shape[d];
    extent += (e->shape[d] - 1) * e->stride[d];
    if (e->shape[d] != 1 && e->stride[d] != want) contiguous = 0;
    want *= e->shape[d];
  }
  if (numel == 0) return 0;
  if ((uint64_t)extent > e->span / es || e->offset > tf->file_size ||
      e->span > tf->file_size - e->offset)
    return px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: tensor %s: %llu bytes at offset %llu lie outside the file (%llu bytes)", path,
                 nm, (unsigned long long)((uint64_t)extent * es),
                 (unsigned long long)e->offset, (unsigned long long)tf->file_size);
  if (contiguous) {
    if (e->dtype == PX_DT_F32 && host_little()) {
      if (px_file_pread(tf->fd, dst, (size_t)numel * 4, e->offset) != 0)
        return px_errf(err, errlen, PX_ERR_IO, "%s: tensor %s: read failed at offset %llu", path,
                     nm, (unsigned long long)e->offset);
      return 0;
    }
    size_t chunk = (size_t)numel < READ_CHUNK_ELEMS ? (size_t)numel : READ_CHUNK_ELEMS;
    uint8_t *buf = malloc(chunk * es);
    if (!buf) return px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < numel;) {
      size_t m = (size_t)(numel - i) < chunk ? (size_t)(numel - i) : chunk;
      uint64_t at = e->offset + (uint64_t)i * es;
      if (px_file_pread(tf->fd, buf, m * es, at) != 0) {
        free(buf);
        return px_errf(err, errlen, PX_ERR_IO, "%s: tensor %s: read failed at offset %llu", path,
                     nm, (unsigned long long)at);
      }
      for (size_t k = 0; k < m; k++) dst[i + (int64_t)k] = load_f32(e->dtype, buf + k * es);
      i += (int64_t)m;
    }
    free(buf);
    return 0;
  }
  /* Strided: gather from the whole span when it is not much larger than the tensor,
   * else row by row (rows along the last dimension), else element by element. */
  uint64_t span_bytes = (uint64_t)extent * es;
  int64_t idx[PX_MAX_DIMS] = {0};
  int nd = e->ndim;
  if (span_bytes <= (uint64_t)numel * es + GATHER_SLACK) {
    uint8_t *buf = malloc((size_t)span_bytes);
    if (!buf) return px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory for tensor %s", path, nm);
    if (px_file_pread(tf->fd, buf, (size_t)span_bytes, e->offset) != 0) {
      free(buf);
      return px_errf(err, errlen, PX_ERR_IO, "%s: tensor %s: read failed at offset %llu", path,
                   nm, (unsigned long long)e->offset);
    }
    int64_t src = 0;
    for (int64_t i = 0; i < numel; i++) {
      dst[i] = load_f32(e->dtype, buf + (uint64_t)src * es);
      src = next_index(e, idx, nd - 1, src);
    }
    free(buf);
    return 0;
  }
  int64_t rowlen = e->shape[nd - 1], rstride = e->stride[nd - 1];
  uint64_t row_span = (uint64_t)((rowlen - 1) * rstride + 1) * es;
  int per_elem = row_span > (uint64_t)rowlen * es + GATHER_SLACK;
  uint8_t *buf = malloc(per_elem ? (size_t)es : (size_t)row_span);
  if (!buf) return px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory for tensor %s", path, nm);
  int64_t rows = numel / rowlen, src = 0;
  for (int64_t r = 0; r < rows; r++) {
    uint64_t at = e->offset + (uint64_t)src * es;
    if (!per_elem && px_file_pread(tf->fd, buf, (size_t)row_span, at) != 0) {
      free(buf);
      return px_errf(err, errlen, PX_ERR_IO, "%s: tensor %s: read failed at offset %llu", path,
                   nm, (unsigned long long)at);
    }
    for (int64_t k = 0; k < rowlen; k++) {
      if (per_elem) {
        uint64_t a = at + (uint64_t)(k * rstride) * es;
        if (px_file_pread(tf->fd, buf, (size_t)es, a) != 0) {
          free(buf);
          return px_errf(err, errlen, PX_ERR_IO, "%s: tensor %s: read failed at offset %llu", path,
                       nm, (unsigned long long)a);
        }
        dst[r * rowlen + k] = load_f32(e->dtype, buf);
      } else {
        dst[r * rowlen + k] = load_f32(e->dtype, buf + (uint64_t)(k * rstride) * es);
      }
    }
    src = next_index(e, idx, nd - 2, src);
  }
  free(buf);
  return 0;
}
