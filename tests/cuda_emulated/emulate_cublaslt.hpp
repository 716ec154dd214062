// cuBLASLt as the CUDA backend calls it (backend/cuda/gemm.hpp), on the CPU: descriptors and layouts
// keep what the library sets, the heuristic accepts only consistent problems, and cublasLtMatmul
// computes D = alpha op(A) op(B) + beta C in column-major terms, summing in double and rounding once
// to D's type. Checked as cuBLASLt would (an error status, nothing written): operand shapes against
// each other, leading dimensions against rows, types (bf16 or fp32 operands, fp32 compute and
// scale), the workspace against the preference; and beyond cuBLASLt, every operand's extent (with
// its leading dimension, batch and stride) lies inside one allocation.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "emulate_runtime.hpp"

enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasLtMatmulDescAttributes_t { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4 };
enum cublasLtMatrixLayoutAttribute_t {
  CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
  CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
};
enum cublasLtMatmulPreferenceAttributes_t {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

struct cublasLtContext {};
using cublasLtHandle_t = cublasLtContext*;
struct cublasLtMatmulDescOpaque_t {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
};
using cublasLtMatmulDesc_t = cublasLtMatmulDescOpaque_t*;
struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type;
  std::uint64_t rows, cols;
  std::int64_t ld;
  std::int32_t batch = 1;
  std::int64_t stride = 0;
};
using cublasLtMatrixLayout_t = cublasLtMatrixLayoutOpaque_t*;
struct cublasLtMatmulPreferenceOpaque_t {
  std::uint64_t workspace = 0;
  std::uint32_t align[4] = {256, 256, 256, 256};
};
using cublasLtMatmulPreference_t = cublasLtMatmulPreferenceOpaque_t*;
struct cublasLtMatmulAlgo_t {
  std::uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  std::size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};

inline const char* cublasLtGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  static cublasLtContext context;
  *h = &context;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }

inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute,
                                               cudaDataType_t scale) {
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new cublasLtMatmulDescOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                     const void* v, std::size_t bytes) {
  if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
  cublasOperation_t op;
  std::memcpy(&op, v, bytes);
  if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
  (a == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = op;
  return a == CUBLASLT_MATMUL_DESC_TRANSA || a == CUBLASLT_MATMUL_DESC_TRANSB ? CUBLAS_STATUS_SUCCESS
                                                                               : CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType_t type, std::uint64_t rows,
                                                 std::uint64_t cols, std::int64_t ld) {
  if (type != CUDA_R_32F && type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
  // cuBLASLt: a column-major layout's leading dimension is at least its rows.
  if (ld < std::int64_t(rows)) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                       const void* v, std::size_t bytes) {
  if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && bytes == sizeof(std::int32_t)) {
    std::memcpy(&l->batch, v, bytes);
    return l->batch >= 1 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
  }
  if (a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET && bytes == sizeof(std::int64_t)) {
    std::memcpy(&l->stride, v, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new cublasLtMatmulPreferenceOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t a, const void* v,
                                                           std::size_t bytes) {
  if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && bytes == sizeof(std::uint64_t)) {
    std::memcpy(&p->workspace, v, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES &&
      bytes == sizeof(std::uint32_t)) {
    std::memcpy(&p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], v, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

namespace emu::lt {
// op(X)'s rows and columns.
inline std::uint64_t op_rows(const cublasLtMatrixLayoutOpaque_t& l, cublasOperation_t op) {
  return op == CUBLAS_OP_N ? l.rows : l.cols;
}
inline std::uint64_t op_cols(const cublasLtMatrixLayoutOpaque_t& l, cublasOperation_t op) {
  return op == CUBLAS_OP_N ? l.cols : l.rows;
}
inline bool consistent(const cublasLtMatmulDescOpaque_t& d, const cublasLtMatrixLayoutOpaque_t& a,
                       const cublasLtMatrixLayoutOpaque_t& b, const cublasLtMatrixLayoutOpaque_t& c,
                       const cublasLtMatrixLayoutOpaque_t& dl) {
  const auto m = op_rows(a, d.ta), k = op_cols(a, d.ta), n = op_cols(b, d.tb);
  const bool batches = a.batch == c.batch && b.batch == c.batch && dl.batch == c.batch;
  return op_rows(b, d.tb) == k && c.rows == m && c.cols == n && dl.rows == m && dl.cols == n && k >= 1 &&
         a.type == b.type && c.type == dl.type && batches && c.stride == dl.stride;
}
inline std::size_t type_bytes(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }
// Whether the elements a layout addresses at p lie inside one allocation.
inline bool inside(const void* p, const cublasLtMatrixLayoutOpaque_t& l) {
  const std::uint64_t last = (l.cols - 1) * std::uint64_t(l.ld) + l.rows - 1 + std::uint64_t(l.batch - 1) * l.stride;
  return device_range(p, (last + 1) * type_bytes(l.type));
}
inline double load(const void* p, cudaDataType_t t, std::uint64_t i) {
  return t == CUDA_R_16BF ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i])
                          : static_cast<const float*>(p)[i];
}
inline void store(void* p, cudaDataType_t t, std::uint64_t i, float v) {
  if (t == CUDA_R_16BF)
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  else
    static_cast<float*>(p)[i] = v;
}
}  // namespace emu::lt

inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                                     cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                                     cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl,
                                                     cublasLtMatmulPreference_t pref, int requested,
                                                     cublasLtMatmulHeuristicResult_t* results, int* found) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  if (!emu::lt::consistent(*d, *a, *b, *c, *dl)) return CUBLAS_STATUS_INVALID_VALUE;
  *found = 1;
  results[0] = {};
  results[0].algo.data[0] = pref->align[0] | (std::uint64_t(pref->align[1]) << 16) |
                            (std::uint64_t(pref->align[2]) << 32) | (std::uint64_t(pref->align[3]) << 48);
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.f;
  return CUBLAS_STATUS_SUCCESS;
}

// D = alpha op(A) op(B) + beta C (alpha, beta on the host), column-major, batched by stride.
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                                     cublasLtMatrixLayout_t la, const void* B, cublasLtMatrixLayout_t lb,
                                     const void* beta, const void* C, cublasLtMatrixLayout_t lc, void* D,
                                     cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t* algo, void* workspace,
                                     std::size_t workspace_bytes, cudaStream_t) {
  using namespace emu::lt;
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!algo || !consistent(*d, *la, *lb, *lc, *ld)) return CUBLAS_STATUS_INVALID_VALUE;
  if (workspace_bytes > 0 && !emu::device_range(workspace, workspace_bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  // The algorithm was chosen for these alignments: an operand less aligned is an error.
  const void* ops[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i) {
    const std::uint64_t align = (algo->data[0] >> (16 * i)) & 0xffff;
    if (align && reinterpret_cast<std::uintptr_t>(ops[i]) % align != 0) return CUBLAS_STATUS_INVALID_VALUE;
  }
  const char* names[4] = {"A", "B", "C", "D"};
  const cublasLtMatrixLayoutOpaque_t* layouts[4] = {la, lb, lc, ld};
  for (int i = 0; i < 4; ++i)
    if (!inside(ops[i], *layouts[i])) {
      std::fprintf(stderr, "CUDA emulation: cublasLtMatmul's %s (%llu x %llu, ld %lld, batch %d) runs past its allocation\n",
                   names[i], (unsigned long long)layouts[i]->rows, (unsigned long long)layouts[i]->cols,
                   (long long)layouts[i]->ld, int(layouts[i]->batch));
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  float al, be;
  std::memcpy(&al, alpha, 4);
  std::memcpy(&be, beta, 4);
  const auto m = op_rows(*la, d->ta), k = op_cols(*la, d->ta), n = op_cols(*lb, d->tb);
  // op(A) as rows of k and op(B)^T as rows of k, so each output is one contiguous dot product.
  std::vector<double> a(m * k), bt(n * k);
  std::vector<float> out(m * n);
  for (std::int32_t batch = 0; batch < lc->batch; ++batch) {
    const std::uint64_t oa = std::uint64_t(batch) * la->stride, ob = std::uint64_t(batch) * lb->stride,
                        oc = std::uint64_t(batch) * lc->stride;
    for (std::uint64_t i = 0; i < m; ++i)
      for (std::uint64_t p = 0; p < k; ++p)
        a[i * k + p] = load(A, la->type, oa + (d->ta == CUBLAS_OP_N ? i + p * la->ld : p + i * la->ld));
    for (std::uint64_t j = 0; j < n; ++j)
      for (std::uint64_t p = 0; p < k; ++p)
        bt[j * k + p] = load(B, lb->type, ob + (d->tb == CUBLAS_OP_N ? p + j * lb->ld : j + p * lb->ld));
    // All of D is computed before any of it is written: C and D may alias.
    for (std::uint64_t j = 0; j < n; ++j)
      for (std::uint64_t i = 0; i < m; ++i) {
        const double* x = &a[i * k];
        const double* y = &bt[j * k];
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains: the sum is exact enough either way
        std::uint64_t p = 0;
        for (; p + 4 <= k; p += 4) s0 += x[p] * y[p], s1 += x[p + 1] * y[p + 1], s2 += x[p + 2] * y[p + 2], s3 += x[p + 3] * y[p + 3];
        for (; p < k; ++p) s0 += x[p] * y[p];
        const double s = (s0 + s1) + (s2 + s3);
        const float prod = float(s) * al;
        // beta == 0: C is not read (it may hold NaN), as cuBLAS.
        out[i + j * m] = be == 0.f ? prod : prod + be * float(load(C, lc->type, oc + i + j * lc->ld));
      }
    for (std::uint64_t j = 0; j < n; ++j)
      for (std::uint64_t i = 0; i < m; ++i) store(D, ld->type, oc + i + j * ld->ld, out[i + j * m]);
  }
  return CUBLAS_STATUS_SUCCESS;
}
