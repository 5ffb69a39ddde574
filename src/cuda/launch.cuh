// Kernel launches, and the two instructions of programmatic dependent launch (PDL).
//
// Every kernel of the CUDA backend is launched by px_launch and opens with px_pdl_enter()
// (tests/test_launch_lint.sh checks both). With `pdl` set (sm_90 and newer, when the context
// was made with PXDIFF_PDL=1; off by default), a launch may begin while the kernel before it
// in the stream is still draining: its blocks are placed on the SMs that kernel frees, and
// wait in px_pdl_enter() until it has finished and its writes are visible. The aim was to hide
// each of a call's ~240 launches' latency and ramp behind the tail of the one before; measured
// on an H200 it gained nothing the graph replay had not already (docs/benchmarks.md, GPU round
// eight), hence off.
//
// Why it is safe: px_pdl_enter() returns only when the whole previous grid has completed
// and flushed, and it is each kernel's first statement, so no kernel reads or writes global
// memory before everything queued before it is done -- the ordering of a plain launch. The
// wait is transitive (a kernel completes only after its own wait returned), so a kernel
// that reads the output of one two launches back is ordered too. Kernels not launched with
// the attribute (cuBLAS's, or any launch with pdl false) keep the stream's full ordering,
// and for them the wait returns at once.
#ifndef PX_CUDA_LAUNCH_CUH
#define PX_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>

#include <utility>

// A kernel's first statement: wait until the kernel before it has completed and its writes
// are visible (griddepcontrol.wait), then let the next launch's blocks be placed once every
// block of this one has started (griddepcontrol.launch_dependents: they take the SMs this
// kernel's last wave frees, and wait here in turn). Both are no-ops without PDL.
__device__ __forceinline__ void px_pdl_enter() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), with PDL when `pdl`. Returns the launch's
// error (the callers check cudaGetLastError / the context's sticky error as before).
template <typename... P, typename... A>
static inline cudaError_t px_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                    bool pdl, A &&...args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = pdl ? attr : nullptr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

#endif
