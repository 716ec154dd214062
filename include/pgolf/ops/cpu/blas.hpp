// Row-major matrix product through CBLAS (OpenBLAS) for float and double.
//
// Threading: OpenBLAS's own thread pool is switched off and large products are split over the
// OpenMP team by blocks of output rows (or columns), each block one single-threaded BLAS call.
// One pool instead of two means no spinning threads competing for cores, and a product called
// inside an OpenMP region (attention runs one per head) simply runs on its calling thread.
#pragma once

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <type_traits>

extern "C" void openblas_set_num_threads(int num_threads);

namespace pgolf::ops::cpu {

namespace detail {
template <class T>
void cblas_gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
                 T beta, T* C, int ldc) {
  const auto ta = trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else if constexpr (std::is_same_v<T, double>) {
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "the CPU backend runs in float or double");
  }
}

inline bool blas_single_threaded() {
  static const bool done = (openblas_set_num_threads(1), true);
  return done;
}
}  // namespace detail

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C on the calling thread only.
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
                 T beta, T* C, int ldc) {
  detail::blas_single_threaded();
  detail::cblas_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major.
template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
          T beta, T* C, int ldc) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double work = double(M) * N * K;
  if (threads <= 1 || work < double(1 << 20) || M == 0 || N == 0) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the longer output side into one block per thread (multiples of 16 keep kernels aligned).
  const bool by_rows = M >= N;
  const int extent = by_rows ? M : N;
  const int chunk = std::max(16, (extent / threads + 15) / 16 * 16);
  const int blocks = (extent + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int i = 0; i < blocks; ++i) {
    const int lo = i * chunk, n = std::min(chunk, extent - lo);
    if (by_rows) {
      const T* Ab = trans_a ? A + lo : A + std::size_t(lo) * lda;
      gemm_serial(trans_a, trans_b, n, N, K, alpha, Ab, lda, B, ldb, beta, C + std::size_t(lo) * ldc, ldc);
    } else {
      const T* Bb = trans_b ? B + std::size_t(lo) * ldb : B + lo;
      gemm_serial(trans_a, trans_b, M, n, K, alpha, A, lda, Bb, ldb, beta, C + lo, ldc);
    }
  }
}

}  // namespace pgolf::ops::cpu
