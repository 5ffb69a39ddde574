/* The model's backend selection (CPU or a device, through the registry in src/backends.c),
 * device and precision names. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/model.h"

int px_device_from_name(const char *name) {
  if (!name) return px_fail(PX_ERR_INPUT, "px_device_from_name: NULL name"), PX_DEVICE_INVALID;
  if (!strcmp(name, "auto")) return PX_DEVICE_AUTO;
  if (!strcmp(name, "cpu")) return PX_DEVICE_CPU;
  if (!strcmp(name, "cuda") || !strcmp(name, "gpu")) return PX_DEVICE_CUDA;
  if (!strncmp(name, "cuda:", 5) && name[5] && strspn(name + 5, "0123456789") == strlen(name + 5)) {
    px_device_ref r; /* one device, its index one this machine has (the list parser's check) */
    int n = 0;
    return px_device_list_parse(name, &r, 1, &n) ? PX_DEVICE_INVALID : PX_DEVICE_CUDA;
  }
  px_fail(PX_ERR_INPUT, "device '%s': not a device (auto, cpu, cuda or cuda:N)", name);
  return PX_DEVICE_INVALID;
}

int px_precision_from_name(const char *name) {
  if (!name) return -2;
  if (!strcmp(name, "default")) return PX_PRECISION_DEFAULT;
  if (!strcmp(name, "fp32")) return PX_PRECISION_FP32;
  if (!strcmp(name, "tf32")) return PX_PRECISION_TF32;
  if (!strcmp(name, "bf16")) return PX_PRECISION_BF16;
  if (!strcmp(name, "fp16")) return PX_PRECISION_FP16;
  return -2;
}

int px_model_set_backend(px_model *m, int device, int precision) {
  if (!m) return px_fail(PX_ERR_INPUT, "px_model_set_backend: NULL model");
  if (device != PX_DEVICE_AUTO && device != PX_DEVICE_CPU && device != PX_DEVICE_CUDA)
    return px_fail(PX_ERR_INPUT, "unknown device %d", device);
  if (precision < PX_PRECISION_DEFAULT || precision > PX_PRECISION_FP16)
    return px_fail(PX_ERR_INPUT, "unknown precision %d", precision);
  if (device == PX_DEVICE_AUTO) device = px_cuda_device_count() > 0 ? PX_DEVICE_CUDA : PX_DEVICE_CPU;
  if (device == PX_DEVICE_CPU) {
    px_backend *cpu = px_backend_get(PX_DEVICE_CPU, 0, precision);
    if (!cpu) return PX_ERR_BACKEND; /* fp32, or bf16 where the CPU has it; reason set */
    px_model_release_device(m);
    px_model_cpu_bf16_free(m);
    m->device = PX_DEVICE_CPU;
    m->precision = PX_PRECISION_FP32;
    if (precision == PX_PRECISION_BF16) {
      const int rc = px_model_cpu_bf16_make(m, m->cpu_ctx ? m->cpu_ctx : cpu); /* the same table, its count */
      if (rc) return rc; /* the model stays at fp32 */
      m->precision = PX_PRECISION_BF16;
    }
    return PX_OK;
  }
  /* The context the model is on, else cuda:0's shared one. */
  px_backend *be = m->cuda_mirror ? m->be : px_backend_get(PX_DEVICE_CUDA, 0, PX_PRECISION_FP32);
  if (!be) return PX_ERR_BACKEND; /* the reason is set */
  return px_model_to_device(m, be, precision);
}

/* --------------------------------------------------- several devices, contexts -- */

/* Why a CUDA entry cannot be used when no device is visible. */
static int no_cuda(const char *text) {
  if (!px_backend_built(PX_DEVICE_CUDA))
    return px_fail(PX_ERR_INPUT, "device '%s': this pxdiff was built without CUDA (rebuild with nvcc on PATH)", text);
  return px_fail(PX_ERR_INPUT, "device '%s': no CUDA device is visible", text);
}

/* A CUDA index of the list: digits only, and a device this machine has. */
static int parse_index(const char *p, size_t len, const char *text, int visible, int *out) {
  if (!len) return px_fail(PX_ERR_INPUT, "device '%s': a CUDA device index is missing", text);
  long v = 0;
  for (size_t i = 0; i < len; i++) {
    if (p[i] < '0' || p[i] > '9' || v > 100000)
      return px_fail(PX_ERR_INPUT, "device '%s': '%.*s' is not a CUDA device index (cuda:0, cuda:1, ...)", text,
                     (int)len, p);
    v = v * 10 + (p[i] - '0');
  }
  if (v >= visible)
    return visible ? px_fail(PX_ERR_INPUT, "device '%s': no CUDA device cuda:%ld (%d visible: cuda:0 to cuda:%d)",
                             text, v, visible, visible - 1)
                   : no_cuda(text);
  *out = (int)v;
  return PX_OK;
}

int px_device_list_parse(const char *text, px_device_ref *out, int cap, int *n) {
  if (!text || !out || !n || cap < 1) return px_fail(PX_ERR_INPUT, "px_device_list_parse: NULL or empty argument");
  *n = 0;
  if (!*text) return px_fail(PX_ERR_INPUT, "device '': empty (auto, cpu, cuda, cuda:N, cuda:N,M or cuda:all)");
  const int visible = px_backend_device_count(PX_DEVICE_CUDA);
  int k = 0, after_cuda = 0; /* a bare index continues a "cuda:" entry: cuda:0,2 */
  const char *p = text;
  for (;;) {
    const char *e = strchr(p, ',');
    const size_t len = e ? (size_t)(e - p) : strlen(p);
    px_device_ref r = {PX_DEVICE_INVALID, 0};
    int many = 0;
    if (len == 4 && !strncmp(p, "auto", 4) && !e && k == 0) {
      r.kind = PX_DEVICE_AUTO;
    } else if (len == 3 && !strncmp(p, "cpu", 3)) {
      r.kind = PX_DEVICE_CPU;
      after_cuda = 0;
    } else if (len == 4 && !strncmp(p, "cuda", 4)) {
      r.kind = PX_DEVICE_CUDA;
      if (!visible) return no_cuda(text);
      after_cuda = 1;
    } else if (len >= 5 && !strncmp(p, "cuda:", 5)) {
      r.kind = PX_DEVICE_CUDA;
      after_cuda = 1;
      if (len == 8 && !strncmp(p + 5, "all", 3)) {
        if (!visible) return no_cuda(text);
        many = visible;
      } else {
        const int rc = parse_index(p + 5, len - 5, text, visible, &r.index);
        if (rc) return rc;
      }
    } else if (after_cuda && len && p[0] >= '0' && p[0] <= '9') {
      r.kind = PX_DEVICE_CUDA;
      const int rc = parse_index(p, len, text, visible, &r.index);
      if (rc) return rc;
    } else {
      return px_fail(PX_ERR_INPUT, "device '%s': '%.*s' is not a device (auto, cpu, cuda, cuda:N, cuda:N,M or "
                                   "cuda:all)", text, (int)len, p);
    }
    for (int i = 0; i < (many ? many : 1); i++) {
      if (k == cap) return px_fail(PX_ERR_INPUT, "device '%s': more than %d entries", text, cap);
      out[k] = r;
      if (many) out[k].index = i;
      k++;
    }
    if (!e) break;
    p = e + 1;
  }
  *n = k;
  return PX_OK;
}

int px_model_share(const px_model *m, px_model **out) {
  if (!m || !out) return px_fail(PX_ERR_INPUT, "px_model_share: NULL argument");
  *out = NULL;
  if (m->cpu_bf16) /* its token blocks hold bf16 copies every handle would then read */
    return px_fail(PX_ERR_INPUT, "px_model_share: the model is at bf16 on the CPU; share it at fp32 (or on CUDA)");
  px_model *h = malloc(sizeof *h);
  if (!h) return px_fail(PX_ERR_NOMEM, "out of memory");
  px_backend *cpu = px_backend_create(PX_DEVICE_CPU, 0, PX_PRECISION_FP32); /* the handle's own, at the process's count */
  if (!cpu) {
    free(h);
    return PX_ERR_NOMEM; /* the reason is set */
  }
  *h = *m; /* the same host weight pointers, borrowed */
  h->cpu_ctx = cpu;
  h->shared_of = m->shared_of ? m->shared_of : m;
  h->cuda_mirror = NULL;
  h->be = NULL;
  h->own_ctx = NULL;
  h->device = PX_DEVICE_CPU;
  h->precision = PX_PRECISION_FP32;
  *out = h;
  return PX_OK;
}

/* A model's free is its handle's: the device copy and an own context go first, then a handle
 * of px_model_share is freed whole, a model that owns its weights frees them (weights.c). Here
 * rather than in weights.c so that the arrows run runtime -> device -> weights, no circle. */
void px_model_free(px_model *m) {
  if (!m) return;
  px_model_release_device(m);
  px_backend_destroy(m->own_ctx); /* after the mirror on it (designs were freed first) */
  m->own_ctx = NULL;
  px_backend_destroy(m->cpu_ctx); /* its CPU designs were freed first too */
  m->cpu_ctx = NULL;
  if (m->shared_of) {
    free(m);
    return;
  }
  px_model_cpu_bf16_free(m);
  px_model_weights_free(m);
}

int px_model_set_device(px_model *m, enum px_device device, int index, int own_context, enum px_precision precision) {
  if (!m) return px_fail(PX_ERR_INPUT, "px_model_set_device: NULL model");
  if (device == PX_DEVICE_AUTO) device = px_cuda_device_count() > 0 ? PX_DEVICE_CUDA : PX_DEVICE_CPU;
  if (device == PX_DEVICE_CPU && index != 0) return px_fail(PX_ERR_INPUT, "px_model_set_device: the CPU has index 0 only");
  if (device != PX_DEVICE_CUDA) return px_model_set_backend(m, device, precision); /* CPU, or refused there */
  if (precision < PX_PRECISION_DEFAULT || precision > PX_PRECISION_FP16)
    return px_fail(PX_ERR_INPUT, "unknown precision %d", precision);
  const int visible = px_cuda_device_count();
  if (!visible && !px_backend_get(PX_DEVICE_CUDA, 0, PX_PRECISION_FP32))
    return PX_ERR_BACKEND; /* the real cause: no CUDA in this build, no driver, ... */
  if (index < 0 || index >= visible)
    return px_fail(PX_ERR_BACKEND, "no CUDA device cuda:%d (%d visible)", index, visible);
  px_backend *be;
  if (own_context) {
    if (!m->own_ctx || px_backend_index(m->own_ctx) != index) {
      px_backend *ctx = px_backend_create(PX_DEVICE_CUDA, index, PX_PRECISION_FP32);
      if (!ctx) return PX_ERR_BACKEND; /* the reason is set */
      px_model_release_device(m); /* a mirror on the old context goes before it */
      px_backend_destroy(m->own_ctx);
      m->own_ctx = ctx;
    }
    be = m->own_ctx;
  } else {
    be = px_backend_get(PX_DEVICE_CUDA, index, PX_PRECISION_FP32);
    if (!be) return PX_ERR_BACKEND;
  }
  return px_model_to_device(m, be, precision);
}

/* The count lives in the handle's CPU context (src/backend.h px_backend_set_threads), which
 * every CPU design of the handle computes on, whenever the design was made. */
int px_model_set_num_threads(px_model *m, int n) {
  if (!m) return px_fail(PX_ERR_INPUT, "px_model_set_num_threads: NULL model");
  if (n < 0) return px_fail(PX_ERR_INPUT, "px_model_set_num_threads: %d threads (0: the process's count)", n);
  if (m->device == PX_DEVICE_CUDA)
    return px_fail(PX_ERR_BACKEND, "px_model_set_num_threads: the model computes on %s, not the CPU (its host work "
                   "follows px_set_num_threads)", px_model_backend_name(m));
  if (!m->cpu_ctx) return px_fail(PX_ERR_BACKEND, "px_model_set_num_threads: the model has no CPU context of its own");
  return px_backend_set_threads(m->cpu_ctx, n);
}

int px_model_device_index(const px_model *m) {
  return m && m->device == PX_DEVICE_CUDA && m->be ? px_backend_index(m->be) : 0;
}

int px_model_x16_blocks(const px_model *m) {
  if (!m) return 0;
  return m->device == PX_DEVICE_CUDA ? px_model_device_x16_blocks(m) : px_model_cpu_bf16_blocks(m);
}

int px_model_x16_atom_blocks(const px_model *m) {
  return m && m->device == PX_DEVICE_CUDA ? px_model_device_x16_atom_blocks(m) : 0;
}

const char *px_model_backend_name(const px_model *m) {
  return m && m->device == PX_DEVICE_CUDA && m->be ? m->be->name : "cpu";
}

const char *px_precision_label(int precision) {
  switch (precision) {
    case PX_PRECISION_TF32: return "tf32";
    case PX_PRECISION_BF16: return "bf16";
    case PX_PRECISION_FP16: return "fp16";
    default: return "fp32";
  }
}

const char *px_model_precision_name(const px_model *m) { return px_precision_label(m ? m->precision : PX_PRECISION_FP32); }
