// Times the engine's GEMM shapes three ways on the GPU: cublasSgemm in TF32 mode (what the
// backend used first), cuBLASLt's first heuristic with a bias epilogue, and every one of
// cuBLASLt's top heuristic candidates, to see how much algorithm choice is worth per shape.
//
//   nvcc -O2 -std=c++20 -arch=sm_90 bench/gpu/gemm_algos.cu -lcublasLt -lcublas -o /tmp/gemm_algos
//   /tmp/gemm_algos [tokens atoms samples]      (default 330 2320 10)
//
// Row-major Y[M,N] = X[M,K] W[N,K]^T + b is column-major Y^T = op_T(W) X^T, as in the backend.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                 \
  do {                                                                        \
    cudaError_t e_ = (x);                                                     \
    if (e_ != cudaSuccess) {                                                  \
      fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      exit(1);                                                                \
    }                                                                         \
  } while (0)
#define CB(x)                                                                        \
  do {                                                                               \
    int s_ = (int)(x);                                                               \
    if (s_ != 0) {                                                                   \
      fprintf(stderr, "%s:%d cublas status %d\n", __FILE__, __LINE__, s_);          \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

static float time_it(cudaStream_t st, int reps, const auto &fn) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; i++) fn();
  CK(cudaEventRecord(a, st));
  for (int i = 0; i < reps; i++) fn();
  CK(cudaEventRecord(b, st));
  CK(cudaEventSynchronize(b));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / reps * 1e3f;  // us
}

int main(int argc, char **argv) {
  const int T = argc > 1 ? atoi(argv[1]) : 330, N_at = argc > 2 ? atoi(argv[2]) : 2320,
            S = argc > 3 ? atoi(argv[3]) : 10;
  struct Shape {
    const char *name;
    int M, N, K, count;  // count: how many such GEMMs one denoise call runs
  } shapes[] = {
      {"token qkvg / a12", S * T, 3072, 768, 32}, {"token o", S * T, 768, 768, 16},
      {"token ctb_b", S * T, 768, 1536, 16},      {"atom q|g, kv", S * N_at, 256, 128, 16},
      {"atom o", S * N_at, 128, 128, 8},          {"atom a12", S * N_at, 512, 128, 8},
      {"atom ctb_b", S * N_at, 128, 256, 8},
  };
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  cublasHandle_t h;
  CB(cublasCreate(&h));
  CB(cublasSetStream(h, st));
  CB(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
  cublasLtHandle_t lt;
  CB(cublasLtCreate(&lt));
  const size_t ws_bytes = 32u << 20;
  void *ws;
  CK(cudaMalloc(&ws, ws_bytes));
  CB(cublasSetWorkspace(h, ws, ws_bytes));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device %s, %d SMs; T=%d N=%d S=%d\n", prop.name, prop.multiProcessorCount, T, N_at, S);
  double total_sgemm = 0, total_lt0 = 0, total_best = 0;
  for (const Shape &sh : shapes) {
    const int M = sh.M, N = sh.N, K = sh.K;
    float *X, *W, *Y, *b;
    CK(cudaMalloc(&X, sizeof(float) * M * K));
    CK(cudaMalloc(&W, sizeof(float) * N * K));
    CK(cudaMalloc(&Y, sizeof(float) * M * N));
    CK(cudaMalloc(&b, sizeof(float) * N));
    std::vector<float> hx((size_t)M * K), hw((size_t)N * K), hb(N);
    for (auto &v : hx) v = rand() / (float)RAND_MAX - 0.5f;
    for (auto &v : hw) v = rand() / (float)RAND_MAX - 0.5f;
    for (auto &v : hb) v = rand() / (float)RAND_MAX - 0.5f;
    CK(cudaMemcpy(X, hx.data(), sizeof(float) * hx.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(W, hw.data(), sizeof(float) * hw.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b, hb.data(), sizeof(float) * N, cudaMemcpyHostToDevice));
    const float one = 1.0f, zero = 0.0f;
    const int reps = 50;
    const double gflop = 2.0 * M * N * K * 1e-9;
    float t_sgemm = time_it(st, reps, [&] {
      CB(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, K, X, K, &zero, Y, N));
    });

    cublasLtMatmulDesc_t op;
    CB(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b));
    cublasLtMatrixLayout_t la, lb, lc;
    CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, K, N, K));
    CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, K, M, K));
    CB(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, N));
    cublasLtMatmulPreference_t pref;
    CB(cublasLtMatmulPreferenceCreate(&pref));
    CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                            sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t res[32];
    int n_res = 0;
    CB(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 32, res, &n_res));
    std::vector<std::pair<float, int>> ts;
    for (int i = 0; i < n_res; i++) {
      if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
      float t = time_it(st, reps, [&] {
        CB(cublasLtMatmul(lt, op, &one, W, la, X, lb, &zero, Y, lc, Y, lc, &res[i].algo, ws, ws_bytes, st));
      });
      ts.push_back({t, i});
    }
    const float t_lt0 = ts.empty() ? 0 : ts[0].first;
    auto best = *std::min_element(ts.begin(), ts.end());
    printf("%-18s M=%5d N=%4d K=%4d x%2d | sgemm %7.1f us (%5.1f TF/s) | lt#0+bias %7.1f us | best lt#%d %7.1f us "
           "(%5.1f TF/s) of %d\n",
           sh.name, M, N, K, sh.count, t_sgemm, gflop / t_sgemm * 1e-3 * 1e3, t_lt0, best.second, best.first,
           gflop / best.first * 1e-3 * 1e3, n_res);
    printf("   candidates:");
    for (auto &p : ts) printf(" #%d=%.1f", p.second, p.first);
    printf("\n");
    total_sgemm += t_sgemm * sh.count;
    total_lt0 += t_lt0 * sh.count;
    total_best += best.first * sh.count;
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    cudaFree(X);
    cudaFree(W);
    cudaFree(Y);
    cudaFree(b);
  }
  printf("per call: sgemm %.2f ms, lt#0 with bias %.2f ms, best lt %.2f ms\n", total_sgemm * 1e-3, total_lt0 * 1e-3,
         total_best * 1e-3);
  return 0;
}
