/* Sampler configuration defaults, the noise schedule and the eta schedules.
 *
 * The schedule is upstream's InferenceNoiseScheduler (Protenix, used by PXDesign):
 *
 *   t = sigma_data * (s_max**(1/rho) + arange(N+1) * (1/N) * (s_min**(1/rho) -
 * s_max**(1/rho)))**rho t[-1] = 0
 *
 * evaluated by torch on a CUDA device in the dtype of s_inputs. The Python-level constants
 * (1/N, s_max**(1/rho), s_min**(1/rho) - s_max**(1/rho)) are doubles; the CUDA kernels turn a
 * Python scalar into the op's math type (float32 for both float32 and bfloat16 tensors), do
 * each operation in float32 and, for bfloat16 tensors, round its result to bfloat16 (round to
 * nearest even). The order of the operations is Python's left-to-right:
 *
 *   x = bf(i)                       arange, computed in float, stored in the dtype
 *   x = bf(x * fp32(1/N))
 *   x = bf(x * fp32(s_min^(1/rho) - s_max^(1/rho)))
 *   x = bf(fp32(s_max^(1/rho)) + x)
 *   x = bf(powf_cuda(x, fp32(rho)))   (torch's special cases for rho = 0.5, 1, 2, 3 aside)
 *   x = bf(fp32(sigma_data) * x)
 *
 * where bf() is the identity for the float32 schedule. powf_cuda below is an emulation of
 * CUDA's single-precision powf (libdevice __nv_powf, transcribed from the PTX that NVRTC 13.0
 * emits for it): it is not correctly rounded (errors up to ~0.8 ulp here), and with it the
 * float32 schedules of tests/data/reference/noise_schedules_cuda.txt are reproduced bit for bit, where a
 * correctly rounded pow misses 53 of 765 values by one ulp (see powf_cuda_abs for the one
 * instruction it cannot model exactly). (The bfloat16 column is insensitive to this choice.) The
 * emulation uses only IEEE float32 add/mul/fma in round-to-nearest, so it gives the same bits on
 * every platform; this file must be compiled without floating-point contraction of its other
 * products (ISO C mode, which the build uses: GCC's -std=c11 implies -ffp-contract=off; clang
 * honours the pragma below; the products where fusing would matter also go through rn()) and with
 * SSE-style float arithmetic (no x87 excess precision).
 *
 * The double-precision constants use libm's pow(), as Python does. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "pxdiff.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Round to float32 here: a volatile store keeps a product from being fused into a following
 * addition even where a compiler is told to contract across statements (-ffp-contract=fast,
 * GCC's default outside ISO mode). Used where a fused result would change the bits. */
static inline float rn(float x) {
  volatile float v = x;
  return v;
}

#define PX_PI 3.14159265358979323846

void px_sampler_config_default(px_sampler_config *c) {
  if (!c) return;
  memset(c, 0, sizeof *c);
  c->n_step = 400;
  c->gamma0 = 1.0f;
  c->gamma_min = 0.01f;
  c->noise_scale_lambda = 1.003f;
  c->eta_type = PX_ETA_CONST;
  c->eta_min = 2.5f;
  c->eta_max = 2.5f;
  c->schedule_bf16 = 1;
  c->s_max = 160.0f;
  c->s_min = 4e-4f;
  c->rho = 7.0f;
  c->sigma_data = 16.0f;
  c->seed = 0;
}

static const char *const eta_names[] = {"const",     "linear",       "poly",        "cos",
                                        "piecewise", "piecewise_65", "piecewise_70"};
#define N_ETA_TYPES ((int)(sizeof eta_names / sizeof eta_names[0]))

int px_eta_type_from_name(const char *name) {
  if (!name) return -1;
  for (int i = 0; i < N_ETA_TYPES; i++)
    if (strcmp(name, eta_names[i]) == 0) return i;
  return -1;
}

const char *px_eta_type_name(int eta_type) {
  if (eta_type < 0 || eta_type >= N_ETA_TYPES) return "unknown";
  return eta_names[eta_type];
}

/* ------------------------------------------------------------------ bits ---- */

static inline float f_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static inline uint32_t f_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* float32 -> bfloat16 (round to nearest, ties to even) -> float32, as torch/c10 does.
 * NaN stays NaN (quietened); overflow rounds to infinity. */
static float round_bf16(float x) {
  uint32_t u = f_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return f_from_bits((u | 0x00400000u) & 0xffff0000u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return f_from_bits(u & 0xffff0000u);
}

/* ------------------------------------------------------- CUDA powf model ---- */

/* Is y an odd integer? */
static int is_odd_integer(float y) {
  float h = y * 0.5f; /* exact unless y is subnormal, which is no integer */
  return isfinite(y) && truncf(y) == y && truncf(h) != h;
}

/* powf(|x|, y) for finite x != 0, as libdevice's __nv_powf computes it: log2(|x|) as an
 * unevaluated float pair, times y in float-float, then exp2 by a polynomial and exponent
 * scaling. The only approximate instruction of the device code is rcp.approx.ftz.f32 of
 * m + 1 in [1.7, 2.5); it is modelled by the correctly rounded reciprocal. Measured on an
 * H200 (CUDA 13.0): the hardware reciprocal is 1 ulp off the correctly rounded one for 13.6%
 * of the floats in that interval, and through this model that changes 470 of the 2,003,000
 * float32 schedule values for n_step = 1..2000 (each by 1 ulp; 0 of the reference file's
 * 765); with a table of the hardware reciprocal the model reproduced all 2,003,000, and
 * every bfloat16 schedule value matches either way. Errors of powf itself: up to ~0.8 ulp. */
static float powf_cuda_abs(float x, float y) {
  float ax = fabsf(x);
  int sub = ax < f_from_bits(0x00800000u);             /* subnormal input */
  float xs = sub ? ax * f_from_bits(0x4B800000u) : ax; /* * 2^24 */
  float e0 = sub ? -24.0f : 0.0f;
  uint32_t ix = f_bits(xs);
  uint32_t ie = (ix - 0x3F3504F3u) & 0xFF800000u; /* exponent so that m in [sqrt(.5), sqrt(2)) */
  float m = f_from_bits(ix - ie);
  float e = fmaf((float)(int32_t)ie, f_from_bits(0x34000000u), e0); /* ie * 2^-23 */
  float mm1 = m - 1.0f, mp1 = m + 1.0f;
  float rcp = 1.0f / mp1;
  float two_mm1 = mm1 + mm1;
  float u = rn(two_mm1 * rcp); /* 2(m-1)/(m+1) */
  float u2 = u * u;
  float d = mm1 - u;
  d = d + d;
  float ulo = rcp * fmaf(-u, mm1, d); /* correction of u */
  float p = fmaf(f_from_bits(0x3A2C32E4u), u2, f_from_bits(0x3B52E7DBu));
  p = fmaf(p, u2, f_from_bits(0x3C93BB73u));
  p = fmaf(p, u2, f_from_bits(0x3DF6384Fu));
  p = p * u2;
  const float log2e_hi = f_from_bits(0x3FB8AA3Bu), log2e_lo = f_from_bits(0x32A55E34u);
  float hi = fmaf(u, log2e_hi, e);
  float lo = fmaf(u, log2e_hi, e - hi);
  lo = fmaf(ulo, log2e_hi, lo);
  lo = fmaf(u, log2e_lo, lo);
  lo = fmaf(p * 3.0f, ulo, lo);
  lo = fmaf(p, u, lo);
  float l_hi = rn(hi + lo); /* log2|x| = l_hi + l_lo */
  float l_lo = lo - (l_hi - hi);
  float t_hi = rn(l_hi * y); /* y * log2|x| = t_hi + t_lo */
  float t_lo = fmaf(l_lo, y, fmaf(l_hi, y, -t_hi));
  float n = rintf(t_hi);
  float f = t_lo + (t_hi - n);
  float q = fmaf(f_from_bits(0x391FCB8Eu), f, f_from_bits(0x3AAF85EDu));
  q = fmaf(q, f, f_from_bits(0x3C1D9856u));
  q = fmaf(q, f, f_from_bits(0x3D6357BBu));
  q = fmaf(q, f, f_from_bits(0x3E75FDECu));
  q = fmaf(q, f, f_from_bits(0x3F317218u));
  q = fmaf(q, f, 1.0f); /* 2^f */
  if (fabsf(t_hi) > 152.0f) return t_hi < 0.0f ? 0.0f : INFINITY;
  /* 2^n in two factors so that neither overflows nor goes subnormal too early */
  int32_t ni = (int32_t)n;
  uint32_t bias = n > 0.0f ? 0u : 0x83000000u;
  float r = q * f_from_bits(bias + 0x7F000000u);
  return r * f_from_bits(((uint32_t)ni << 23) - bias);
}

/* CUDA's powf(x, y). Special cases follow C99 Annex F (which CUDA follows). */
static float powf_cuda(float x, float y) {
  if (x == 1.0f || y == 0.0f) return 1.0f;
  if (isnan(x) || isnan(y)) return x + y;
  int odd = is_odd_integer(y);
  if (x == 0.0f || isinf(x)) {
    int big = (x != 0.0f) == (y > 0.0f); /* result infinite? */
    float r = big ? INFINITY : 0.0f;
    return (odd && signbit(x)) ? -r : r;
  }
  if (isinf(y)) {
    float ax = fabsf(x);
    if (ax == 1.0f) return 1.0f;
    return ((ax > 1.0f) == (y > 0.0f)) ? INFINITY : 0.0f;
  }
  float r = powf_cuda_abs(x, y);
  if (x < 0.0f) {
    if (truncf(y) != y) return NAN;
    if (odd) r = -r;
  }
  return r;
}

/* torch.pow(tensor, scalar exponent) on CUDA for a float32 (bf = 0) or bfloat16 (bf = 1)
 * tensor, before the result is stored: exponents 0 and 1 fill/copy, 0.5 is sqrt, 2 and 3
 * are products in the tensor's dtype (a bfloat16 product rounds to bfloat16), anything else
 * is powf. (-0.5, -1 and -2 also have special kernels; the schedule never uses them.) */
static float torch_pow_scalar(float x, float y, int bf) {
  if (y == 0.0f) return 1.0f;
  if (y == 1.0f) return x;
  if (y == 0.5f) return sqrtf(x);
  if (y == 2.0f) return rn(x * x);
  if (y == 3.0f) {
    float x2 = rn(x * x);
    if (bf) x2 = round_bf16(x2);
    return rn(x2 * x);
  }
  return powf_cuda(x, y);
}

/* ------------------------------------------------------------- schedule ---- */

static int finite_pos(float v) { return isfinite(v) && v > 0.0f; }

int px_noise_schedule(const px_sampler_config *c, float *t) {
  if (!c || !t) return px_fail(PX_ERR_INPUT, "px_noise_schedule: NULL argument");
  if (c->n_step < 1) return px_fail(PX_ERR_INPUT, "px_noise_schedule: n_step %d is below 1", c->n_step);
  if (!finite_pos(c->s_max) || !finite_pos(c->s_min) || !finite_pos(c->rho) ||
      !finite_pos(c->sigma_data))
    return px_fail(PX_ERR_INPUT, "px_noise_schedule: s_max, s_min, rho and sigma_data must be finite and positive");
  const int n = c->n_step;
  const int bf = c->schedule_bf16 != 0;
  /* Python-level doubles, as in upstream's __call__ */
  const double rho = (double)c->rho;
  const double a_d = pow((double)c->s_max, 1.0 / rho);
  const double diff_d = pow((double)c->s_min, 1.0 / rho) - a_d;
  const float step = (float)(1.0 / (double)n);
  const float diff = (float)diff_d;
  const float a = (float)a_d;
  const float rho_f = c->rho;
  const float sd = c->sigma_data;
  for (int i = 0; i <= n; i++) {
    float x = (float)i; /* exact for i < 2^24 */
    if (bf) x = round_bf16(x);
    x = rn(x * step);
    if (bf) x = round_bf16(x);
    x = rn(x * diff);
    if (bf) x = round_bf16(x);
    x = rn(a + x);
    if (bf) x = round_bf16(x);
    x = torch_pow_scalar(x, rho_f, bf);
    if (bf) x = round_bf16(x);
    x = rn(sd * x);
    if (bf) x = round_bf16(x);
    t[i] = x;
  }
  t[n] = 0.0f;
  return PX_OK;
}

/* ------------------------------------------------------------------ eta ---- */

/* eta(k), K = n_step + 1; upstream computes these in Python doubles. */
float px_eta(const px_sampler_config *c, int k) {
  if (!c) return NAN;
  const double lo = (double)c->eta_min, hi = (double)c->eta_max;
  const double K = (double)c->n_step + 1.0;
  const double r = (double)k / K;
  switch (c->eta_type) {
    case PX_ETA_CONST:
      return (float)lo;
    case PX_ETA_LINEAR:
      return (float)(lo + (hi - lo) * r);
    case PX_ETA_POLY:
      return (float)(lo + (hi - lo) * (r * r));
    case PX_ETA_COS:
      return (float)(lo + (hi - lo) * (1.0 - cos(PX_PI * r)) / 2.0);
    case PX_ETA_PIECEWISE:
      return (float)(r < 0.5 ? lo : hi);
    case PX_ETA_PIECEWISE_65:
      return (float)(r < 0.65 ? lo : hi);
    case PX_ETA_PIECEWISE_70:
      return (float)(r < 0.70 ? lo : hi);
    default:
      return NAN;
  }
}
