// Gemm: every matrix product of the CUDA backend, through cuBLASLt, in row-major terms.
//
//   C[M, N] = alpha * op(A) op(B) + beta * C,  op(X) = X or X^T,  optionally batched with strides.
//
// Operands are bf16 or fp32 (bf16 products accumulate in fp32; C may be fp32 so weight gradients
// accumulate into the fp32 master gradients directly). cuBLAS is column-major, so the call computes
// C^T = op(B)^T op(A)^T. The descriptors and the heuristic's algorithm are chosen once per shape and
// cached: a training step repeats the same few dozen shapes. Pointers must be 16-byte aligned (the
// plans are chosen for that alignment, which the model's buffers guarantee).
#pragma once

#include <cstdint>
#include <map>
#include <tuple>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "pgolf/core/cuda_check.hpp"
#include "pgolf/core/error.hpp"

#define PGOLF_CUBLAS_CHECK(call)                                                              \
  do {                                                                                        \
    const cublasStatus_t pgolf_st_ = (call);                                                  \
    if (pgolf_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
      PGOLF_FAIL("cuBLASLt call ", #call, " failed: status ", int(pgolf_st_), " (",            \
                 cublasLtGetStatusName(pgolf_st_), ")");                                      \
  } while (0)

namespace pgolf::cuda {

enum class DType : std::uint8_t { f32, bf16 };

struct GemmShape {
  bool ta = false, tb = false;
  int M = 0, N = 0, K = 0;
  long long lda = 0, ldb = 0, ldc = 0;
  DType a = DType::bf16, b = DType::bf16, c = DType::f32;
  int batch = 1;
  long long stride_a = 0, stride_b = 0, stride_c = 0;

  auto key() const {
    return std::tuple(ta, tb, M, N, K, lda, ldb, ldc, a, b, c, batch, stride_a, stride_b, stride_c);
  }
};

class Gemm {
 public:
  explicit Gemm(std::size_t workspace_bytes = std::size_t(64) << 20) : ws_bytes_(workspace_bytes) {
    PGOLF_CUBLAS_CHECK(cublasLtCreate(&handle_));
    PGOLF_CUDA_CHECK(cudaMalloc(&workspace_, ws_bytes_));
  }
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  ~Gemm() {
    for (auto& [k, p] : plans_) p.destroy();
    cudaFree(workspace_);
    cublasLtDestroy(handle_);
  }

  void run(const GemmShape& s, const void* A, const void* B, void* C, float alpha, float beta,
           cudaStream_t stream = nullptr) {
    run(s, A, B, C, C, alpha, beta, stream);
  }
  // D = alpha * op(A) op(B) + beta * C, with C and D of the same shape and type (may alias).
  void run(const GemmShape& s, const void* A, const void* B, const void* C, void* D, float alpha, float beta,
           cudaStream_t stream = nullptr) {
    for (const void* p : {A, B, C, static_cast<const void*>(D)})
      PGOLF_CHECK(reinterpret_cast<std::uintptr_t>(p) % 16 == 0, "Gemm: operand pointer ", p,
                  " is not 16-byte aligned");
    const Plan& plan = plan_for(s);
    // Column-major view: cuBLAS's A is our B, its B is our A.
    PGOLF_CUBLAS_CHECK(cublasLtMatmul(handle_, plan.op, &alpha, B, plan.lb, A, plan.la, &beta, C, plan.lc, D, plan.lc,
                                      &plan.algo, workspace_, ws_bytes_, stream));
  }

  std::size_t plans() const { return plans_.size(); }

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulAlgo_t algo{};
    void destroy() {
      if (op) cublasLtMatmulDescDestroy(op);
      for (auto l : {la, lb, lc})
        if (l) cublasLtMatrixLayoutDestroy(l);
    }
  };

  static cudaDataType_t cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

  static cublasLtMatrixLayout_t layout(DType t, long long rows, long long cols, long long ld, int batch,
                                       long long stride) {
    cublasLtMatrixLayout_t l = nullptr;
    PGOLF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, cuda_type(t), std::uint64_t(rows), std::uint64_t(cols), ld));
    if (batch > 1) {
      PGOLF_CUBLAS_CHECK(
          cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
      PGOLF_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                          sizeof(stride)));
    }
    return l;
  }

  const Plan& plan_for(const GemmShape& s) {
    const auto key = s.key();
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    PGOLF_CHECK(s.M > 0 && s.N > 0 && s.K > 0 && s.batch > 0, "Gemm: empty product ", s.M, "x", s.N, "x", s.K,
                " (batch ", s.batch, ")");
    Plan p;
    PGOLF_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t opa = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's A = our B
    const cublasOperation_t opb = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    PGOLF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    PGOLF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    // Stored shapes in column-major terms: our row-major [r, c] with leading dim ld is cuBLAS's [c, r].
    p.lb = layout(s.b, s.tb ? s.K : s.N, s.tb ? s.N : s.K, s.ldb, s.batch, s.stride_b);
    p.la = layout(s.a, s.ta ? s.M : s.K, s.ta ? s.K : s.M, s.lda, s.batch, s.stride_a);
    p.lc = layout(s.c, s.N, s.M, s.ldc, s.batch, s.stride_c);

    cublasLtMatmulPreference_t pref = nullptr;
    PGOLF_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    PGOLF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes_,
                                                            sizeof(ws_bytes_)));
    const std::uint32_t align = 16;
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      PGOLF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.lb, p.la, p.lc, p.lc, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      p.destroy();
      PGOLF_FAIL("Gemm: cuBLASLt has no algorithm for C[", s.M, "x", s.N, "] = op(A) op(B) with K=", s.K,
                 " (ta=", s.ta, " tb=", s.tb, ", batch ", s.batch, ")");
    }
    p.algo = result.algo;
    return plans_.emplace(key, p).first->second;
  }

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t ws_bytes_;
  std::map<decltype(GemmShape{}.key()), Plan> plans_;
};

}  // namespace pgolf::cuda
