// Loads and stores of GEMM operands that may be 16-bit, shared by the CUDA kernels: a type
// code T is 0 for float, 1 for bf16, 2 for fp16 (rounding to nearest even). Kernels that
// write a GEMM's input directly in 16 bits (backend.h px_dtype) store through these.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

// Two floats to a packed pair of 16-bit values (round to nearest even), bf16 or fp16.
template <int AB>
__device__ __forceinline__ uint32_t pack_half2(float a, float b) {
  if (AB == 1) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t *>(&h);
  }
  const __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t *>(&h);
}
template <int AB>
__device__ __forceinline__ uint16_t to_half1(float a) {
  return (uint16_t)(pack_half2<AB>(a, 0.0f) & 0xffffu);
}

// Four floats stored at Y + i (OT 0: float; 1 / 2: bf16 / fp16 values, 8 bytes).
template <int OT>
__device__ __forceinline__ void store4(void *Y, size_t i, float4 v) {
  if (OT == 0)
    *reinterpret_cast<float4 *>(reinterpret_cast<float *>(Y) + i) = v;
  else
    *reinterpret_cast<uint2 *>(reinterpret_cast<uint16_t *>(Y) + i) =
        make_uint2(pack_half2<OT>(v.x, v.y), pack_half2<OT>(v.z, v.w));
}

// Four / one values of X at element i (IT 0: float; 1 / 2: bf16 / fp16), as floats.
template <int IT>
__device__ __forceinline__ float4 load4(const void *X, size_t i) {
  if (IT == 0) return *reinterpret_cast<const float4 *>(reinterpret_cast<const float *>(X) + i);
  const uint2 u = *reinterpret_cast<const uint2 *>(reinterpret_cast<const uint16_t *>(X) + i);
  if (IT == 1) {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
  }
  const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2 *>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
template <int IT>
__device__ __forceinline__ float load1(const void *X, size_t i) {
  if (IT == 0) return reinterpret_cast<const float *>(X)[i];
  const uint16_t u = reinterpret_cast<const uint16_t *>(X)[i];
  if (IT == 1) return __bfloat162float(*reinterpret_cast<const __nv_bfloat16 *>(&u));
  return __half2float(*reinterpret_cast<const __half *>(&u));
}
template <int OT>
__device__ __forceinline__ void store1(void *Y, size_t i, float v) {
  if (OT == 0)
    reinterpret_cast<float *>(Y)[i] = v;
  else
    reinterpret_cast<uint16_t *>(Y)[i] = to_half1<OT>(v);
}

// Four values of X at element i of run-time type t (0 float, 1 bf16, 2 fp16), times sc: a
// 16-bit GEMM output stored times 2^-e is read back with sc = 2^e (exact).
__device__ __forceinline__ float4 load4_scaled(const void *X, size_t i, int t, float sc) {
  if (t == 0) return load4<0>(X, i);
  const float4 v = t == 1 ? load4<1>(X, i) : load4<2>(X, i);
  return make_float4(v.x * sc, v.y * sc, v.z * sc, v.w * sc);
}
