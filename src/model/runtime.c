/* The model's backend selection (CPU or a device, through the registry in src/backends.c),
 * device and precision names. */
#include <string.h>

#include "error.h"
#include "model/model.h"

int px_device_from_name(const char *name) {
  if (!name) return -1;
  if (!strcmp(name, "auto")) return PX_DEVICE_AUTO;
  if (!strcmp(name, "cpu")) return PX_DEVICE_CPU;
  if (!strcmp(name, "cuda") || !strcmp(name, "gpu") || !strcmp(name, "cuda:0")) return PX_DEVICE_CUDA;
  return -1;
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
    if (!px_backend_get(PX_DEVICE_CPU, 0, precision)) return PX_ERR_BACKEND; /* fp32 only; reason set */
    px_model_release_device(m);
    m->device = PX_DEVICE_CPU;
    m->precision = PX_PRECISION_FP32;
    return PX_OK;
  }
  /* The context the model is on, else cuda:0's shared one. */
  px_backend *be = m->cuda_mirror ? m->be : px_backend_get(PX_DEVICE_CUDA, 0, PX_PRECISION_FP32);
  if (!be) return PX_ERR_BACKEND; /* the reason is set */
  return px_model_to_device(m, be, precision);
}

int px_model_x16_blocks(const px_model *m) {
  return m && m->device == PX_DEVICE_CUDA ? px_model_device_x16_blocks(m) : 0;
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
