// PRISM's memory expert (PRISM.md 2.3): a read head and a gated erase/add write on the shared tape of
// S slots of width M.
//   read:  q = W_q x;  w = softmax_s(q . tape_s / sqrt(M));  out = W_r sum_s w_s tape_s
//          H = mean over tokens of -sum_s w log(w + 1e-8)   (maximised through the aux loss)
//   write: v = W_v x;  omega = sigmoid(w_g . x + b_g);  e = sigmoid(W_e x + b_e)
//
// reference: the read sees the tape as it was at block entry ([B, S, M]); the write is the mean over
//   all T positions, erase = mean_t(omega e), add = mean_t(omega v), applied to every slot alike:
//   tape' = tape * (1 - erase) + add. Future positions leak into every earlier read of later
//   blocks, and the slots never differ.
// causal: the tape is position-wise ([N, S, M], entry t is what position t may see). Writer u
//   addresses slot s with a_u = softmax(W_a x_u + b_a); position t sees the prefix mean over the
//   writers u < t:
//     E_t = (1/max(t,1)) sum_{u<t} omega_u a_u[s] e_u[m],  A_t likewise with v_u
//     tape'_t = tape_t * (1 - E_t) + A_t
//   and reads tape'_t, so a block's reads see its own earlier writes and nothing later. Block 0's
//   incoming tape is empty, so it has no erase gate (E = 0 there).
// Backward of the causal write runs backwards in t with the suffix sums sum_{t>u} dE_t / max(t,1).
#pragma once

#include <vector>

#include "pgolf/model/prism/expert.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/swiglu.hpp"

namespace pgolf {
// In the causal behaviour the first block's tape arrives empty, so its erase gate would have nothing
// to erase (a dead tensor): that block has none.
constexpr bool prism_has_erase(bool causal, int block) { return !(causal && block == 0); }
}  // namespace pgolf

namespace pgolf::prism {

template <PrismSpec S, class T>
class MemoryExpert {
 public:
  static constexpr ExpertKind kind = ExpertKind::memory;
  static constexpr int D = S.d_model, M = S.d_mem, Sl = S.num_slots;
  static constexpr bool kCausal = S.causal();

  // PyTorch's default Linear init; the erase gate only where the block has one, the write address
  // only in the causal behaviour (absent rows have no elements and no place in the table).
  enum Row : int { kQ, kV, kGateW, kGateB, kEraseW, kEraseB, kReadOut, kAddrW, kAddrB };
  static constexpr RowList rows(int block) {
    const bool erase = prism_has_erase(kCausal, block);
    const auto Mx = OptimGroup::muon_matrix, Sc = OptimGroup::adam_scalar;
    const Init lin_d = torch_linear_init(D);
    return RowList{}
        .add({.name = "head.q_proj.weight", .rows = M, .cols = D, .rank = 2, .init = lin_d, .group = Mx})
        .add({.name = "head.v_proj_in.weight", .rows = M, .cols = D, .rank = 2, .init = lin_d, .group = Mx})
        .add({.name = "head.write_gate.weight", .rows = 1, .cols = D, .rank = 2, .init = lin_d, .group = Sc})
        .add({.name = "head.write_gate.bias", .rows = 1, .cols = 1, .rank = 1, .init = lin_d, .group = Sc})
        .add({.name = "head.erase_gate.weight", .rows = erase ? M : 0, .cols = D, .rank = 2, .init = lin_d, .group = Mx})
        .add({.name = "head.erase_gate.bias", .rows = erase ? M : 0, .cols = 1, .rank = 1, .init = lin_d, .group = Sc})
        .add({.name = "head.read_out.weight", .rows = D, .cols = M, .rank = 2, .init = torch_linear_init(M),
              .group = Mx})
        .add({.name = "head.address.weight", .rows = kCausal ? Sl : 0, .cols = D, .rank = 2, .init = lin_d,
              .group = Mx})
        .add({.name = "head.address.bias", .rows = kCausal ? Sl : 0, .cols = 1, .rank = 1, .init = lin_d,
              .group = Sc});
  }

  MemoryExpert(int batch, int seq, int block)
      : batch_(batch), seq_(seq), erase_gate_(prism_has_erase(kCausal, block)) {
    const std::size_t N = std::size_t(batch) * seq;
    const std::size_t tape = (kCausal ? N : std::size_t(batch)) * Sl * M;
    q_.resize(N * M), w_.resize(N * Sl), r_.resize(N * M), v_.resize(N * M), om_.resize(N), e_.resize(N * M);
    dr_.resize(N * M), dq_.resize(N * M), dv_.resize(N * M), dom_.resize(N), de_.resize(N * M);
    tape_mid_.resize(tape), dtm_.resize(tape);
    if constexpr (kCausal) a_.resize(N * Sl), da_.resize(N * Sl), ebar_.resize(tape);
    else erase_.resize(std::size_t(batch) * M), add_.resize(std::size_t(batch) * M);
  }

  // The tape after this expert's write (before the router's blend in the reference).
  const T* tape_out() const { return tape_mid_.data(); }
  // Set by the block before backward: d loss / d tape_out, and d loss / d H.
  void set_tape_grad(const T* dtape_out) { dtape_out_ = dtape_out; }
  void set_entropy_grad(double g) { entropy_grad_ = g; }
  double read_entropy() const { return entropy_; }
  // max |slot_s - slot_0| over the output tape: 0 means the slots are identical (the reference's
  // degenerate tape, PRISM.md 9.2).
  double slot_spread() const {
    double m = 0;
    for (std::size_t base = 0; base < tape_mid_.size(); base += std::size_t(Sl) * M)
      for (int s = 1; s < Sl; ++s)
        for (int j = 0; j < M; ++j)
          m = std::max(m, double(std::abs(tape_mid_[base + std::size_t(s) * M + j] - tape_mid_[base + j])));
    return m;
  }

  void forward(const ExpertIo<T>& io, Tensors<const T> P, T* out) {
    namespace op = ops::cpu;
    const int N = int(io.tokens());
    // Write side first: the causal read sees this block's earlier writes.
    op::linear_forward(io.hx, w_v(P), v_.data(), N, D, M);
    op::linear_forward(io.hx, w_g(P), om_.data(), N, D, 1);
    if (erase_gate_) op::linear_forward(io.hx, w_e(P), e_.data(), N, D, M);
    for (int n = 0; n < N; ++n) {
      om_[std::size_t(n)] = op::sigmoid(om_[std::size_t(n)] + b_g(P)[0]);
      for (int m = 0; m < M; ++m)
        e_[std::size_t(n) * M + m] = erase_gate_ ? op::sigmoid(e_[std::size_t(n) * M + m] + b_e(P)[m]) : T(0);
    }
    if constexpr (kCausal) {
      op::linear_forward(io.hx, w_a(P), a_.data(), N, D, Sl);
      op::bias_forward(a_.data(), b_a(P), N, Sl);
      for (int n = 0; n < N; ++n) softmax_row(a_.data() + std::size_t(n) * Sl, Sl);
#pragma omp parallel for schedule(static)
      for (int b = 0; b < batch_; ++b) {
        std::vector<T> RE(std::size_t(Sl) * M, T(0)), RA(std::size_t(Sl) * M, T(0));
        for (int t = 0; t < seq_; ++t) {
          const std::size_t n = std::size_t(b) * seq_ + t, at = n * Sl * M;
          const T inv = T(1) / T(std::max(t, 1));
          for (std::size_t j = 0; j < std::size_t(Sl) * M; ++j) {
            ebar_[at + j] = RE[j] * inv;
            tape_mid_[at + j] = io.tape_in[at + j] * (T(1) - ebar_[at + j]) + RA[j] * inv;
          }
          const T rho = om_[n];
          for (int s = 0; s < Sl; ++s) {
            const T ra = rho * a_[n * Sl + s];
            for (int m = 0; m < M; ++m) {
              RE[std::size_t(s) * M + m] += ra * e_[n * M + m];
              RA[std::size_t(s) * M + m] += ra * v_[n * M + m];
            }
          }
        }
      }
    } else {
      const T invT = T(1) / T(seq_);
      std::fill(erase_.begin(), erase_.end(), T(0));
      std::fill(add_.begin(), add_.end(), T(0));
      for (int n = 0; n < N; ++n) {
        const int b = n / seq_;
        for (int m = 0; m < M; ++m) {
          erase_[std::size_t(b) * M + m] += om_[std::size_t(n)] * e_[std::size_t(n) * M + m] * invT;
          add_[std::size_t(b) * M + m] += om_[std::size_t(n)] * v_[std::size_t(n) * M + m] * invT;
        }
      }
      for (int b = 0; b < batch_; ++b)
        for (int s = 0; s < Sl; ++s)
          for (int m = 0; m < M; ++m) {
            const std::size_t j = (std::size_t(b) * Sl + s) * M + m;
            tape_mid_[j] = io.tape_in[j] * (T(1) - erase_[std::size_t(b) * M + m]) + add_[std::size_t(b) * M + m];
          }
    }
    // Read.
    op::linear_forward(io.hx, w_q(P), q_.data(), N, D, M);
    const T scale = T(1) / std::sqrt(T(M));
    double ent = 0;
#pragma omp parallel for schedule(static) reduction(+ : ent)
    for (int n = 0; n < N; ++n) {
      const T* R = read_tape(io, n);
      const T* q = q_.data() + std::size_t(n) * M;
      T* w = w_.data() + std::size_t(n) * Sl;
      for (int s = 0; s < Sl; ++s) {
        T d = 0;
        for (int m = 0; m < M; ++m) d += q[m] * R[std::size_t(s) * M + m];
        w[s] = d * scale;
      }
      softmax_row(w, Sl);
      ent += double(entropy_row(w, Sl));
      T* r = r_.data() + std::size_t(n) * M;
      std::fill(r, r + M, T(0));
      for (int s = 0; s < Sl; ++s)
        for (int m = 0; m < M; ++m) r[m] += w[s] * R[std::size_t(s) * M + m];
    }
    entropy_ = ent / double(N);
    op::linear_forward(r_.data(), w_r(P), out, N, M, D);
  }

  // dout = d loss / d out (already scaled by the router's weight); dhx and dtape_in accumulated.
  void backward(const ExpertIo<T>& io, Tensors<const T> P, Tensors<T> G, const T* dout, T* dhx, T* dtape_in) {
    namespace op = ops::cpu;
    const int N = int(io.tokens());
    const std::size_t SM = std::size_t(Sl) * M;
    std::copy(dtape_out_, dtape_out_ + dtm_.size(), dtm_.begin());
    op::linear_backward(dout, r_.data(), w_r(P), dr_.data(), w_r(G), N, M, D, false);
    const T scale = T(1) / std::sqrt(T(M));
    const T kappa = T(entropy_grad_ / double(N));
    // Read backward; the reference reads the entry tape (one per sequence: its rows are summed by
    // one thread per sequence), the causal behaviour the written tape of its own position.
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch_; ++b)
      for (int t = 0; t < seq_; ++t) {
        const int n = b * seq_ + t;
        const T* R = read_tape(io, n);
        T* dR = kCausal ? dtm_.data() + std::size_t(n) * SM : dtape_in + std::size_t(b) * SM;
        const T* w = w_.data() + std::size_t(n) * Sl;
        const T* dr = dr_.data() + std::size_t(n) * M;
        const T* q = q_.data() + std::size_t(n) * M;
        T dw[Sl];
        for (int s = 0; s < Sl; ++s) {
          T d = 0;
          for (int m = 0; m < M; ++m) d += dr[m] * R[std::size_t(s) * M + m];
          dw[s] = d - kappa * (std::log(w[s] + T(1e-8)) + w[s] / (w[s] + T(1e-8)));
        }
        softmax_row_backward(w, dw, Sl);
        T* dq = dq_.data() + std::size_t(n) * M;
        std::fill(dq, dq + M, T(0));
        for (int s = 0; s < Sl; ++s)
          for (int m = 0; m < M; ++m) {
            dq[m] += dw[s] * scale * R[std::size_t(s) * M + m];
            dR[std::size_t(s) * M + m] += w[s] * dr[m] + dw[s] * scale * q[m];
          }
      }
    op::linear_backward(dq_.data(), io.hx, w_q(P), dhx, w_q(G), N, D, M, true);

    std::fill(dom_.begin(), dom_.end(), T(0));
    if constexpr (kCausal) {
      for (std::size_t j = 0; j < dtm_.size(); ++j) dtape_in[j] += dtm_[j] * (T(1) - ebar_[j]);
#pragma omp parallel for schedule(static)
      for (int b = 0; b < batch_; ++b) {
        std::vector<T> GE(SM, T(0)), GA(SM, T(0));
        for (int t = seq_ - 1; t >= 0; --t) {
          const std::size_t n = std::size_t(b) * seq_ + t;
          T* da = da_.data() + n * Sl;
          T* de = de_.data() + n * M;
          T* dv = dv_.data() + n * M;
          std::fill(da, da + Sl, T(0));
          std::fill(de, de + M, T(0));
          std::fill(dv, dv + M, T(0));
          {
            const T rho = om_[n];
            const T* a = a_.data() + n * Sl;
            const T* e = e_.data() + n * M;
            const T* v = v_.data() + n * M;
            T dom = 0;
            for (int s = 0; s < Sl; ++s) {
              T acc = 0;
              for (int m = 0; m < M; ++m) {
                const T ge = GE[std::size_t(s) * M + m], ga = GA[std::size_t(s) * M + m];
                acc += ge * e[m] + ga * v[m];
                de[m] += rho * a[s] * ge;
                dv[m] += rho * a[s] * ga;
              }
              da[s] = rho * acc;
              dom += a[s] * acc;
            }
            dom_[n] = dom;
          }
          const T inv = T(1) / T(std::max(t, 1));
          const T* tin = io.tape_in + n * SM;
          const T* g = dtm_.data() + n * SM;
          for (std::size_t j = 0; j < SM; ++j) {
            GE[j] -= g[j] * tin[j] * inv;
            GA[j] += g[j] * inv;
          }
        }
      }
      for (int n = 0; n < N; ++n) softmax_row_backward(a_.data() + std::size_t(n) * Sl, da_.data() + std::size_t(n) * Sl, Sl);
      op::linear_backward(da_.data(), io.hx, w_a(P), dhx, w_a(G), N, D, Sl, true);
      op::bias_backward(da_.data(), N, Sl, b_a(G));
    } else {
      const T invT = T(1) / T(seq_);
      std::vector<T> derase(std::size_t(batch_) * M, T(0)), dadd(std::size_t(batch_) * M, T(0));
      for (int b = 0; b < batch_; ++b)
        for (int s = 0; s < Sl; ++s)
          for (int m = 0; m < M; ++m) {
            const std::size_t j = (std::size_t(b) * Sl + s) * M + m;
            dtape_in[j] += dtm_[j] * (T(1) - erase_[std::size_t(b) * M + m]);
            derase[std::size_t(b) * M + m] -= dtm_[j] * io.tape_in[j];
            dadd[std::size_t(b) * M + m] += dtm_[j];
          }
      for (int n = 0; n < N; ++n) {
        const std::size_t b = std::size_t(n / seq_);
        T dom = 0;
        for (int m = 0; m < M; ++m) {
          const std::size_t k = std::size_t(n) * M + m;
          dom += (derase[b * M + m] * e_[k] + dadd[b * M + m] * v_[k]) * invT;
          de_[k] = derase[b * M + m] * om_[std::size_t(n)] * invT;
          dv_[k] = dadd[b * M + m] * om_[std::size_t(n)] * invT;
        }
        dom_[std::size_t(n)] = dom;
      }
    }
    // Through the gates' sigmoids to their products.
    for (int n = 0; n < N; ++n) {
      const T o = om_[std::size_t(n)];
      dom_[std::size_t(n)] *= o * (T(1) - o);
      for (int m = 0; m < M; ++m) {
        const std::size_t k = std::size_t(n) * M + m;
        de_[k] *= e_[k] * (T(1) - e_[k]);
      }
    }
    op::linear_backward(dv_.data(), io.hx, w_v(P), dhx, w_v(G), N, D, M, true);
    op::linear_backward(dom_.data(), io.hx, w_g(P), dhx, w_g(G), N, D, 1, true);
    op::bias_backward(dom_.data(), N, 1, b_g(G));
    if (erase_gate_) {
      op::linear_backward(de_.data(), io.hx, w_e(P), dhx, w_e(G), N, D, M, true);
      op::bias_backward(de_.data(), N, M, b_e(G));
    }
  }

 private:
  const T* read_tape(const ExpertIo<T>& io, int n) const {
    if constexpr (kCausal) return tape_mid_.data() + std::size_t(n) * Sl * M;
    else return io.tape_in + std::size_t(n / seq_) * Sl * M;
  }
  template <class X> static X* w_q(Tensors<X> p) { return p[kQ]; }
  template <class X> static X* w_v(Tensors<X> p) { return p[kV]; }
  template <class X> static X* w_g(Tensors<X> p) { return p[kGateW]; }
  template <class X> static X* b_g(Tensors<X> p) { return p[kGateB]; }
  template <class X> static X* w_e(Tensors<X> p) { return p[kEraseW]; }  // only with the erase gate
  template <class X> static X* b_e(Tensors<X> p) { return p[kEraseB]; }
  template <class X> static X* w_r(Tensors<X> p) { return p[kReadOut]; }
  template <class X> static X* w_a(Tensors<X> p) { return p[kAddrW]; }  // causal only
  template <class X> static X* b_a(Tensors<X> p) { return p[kAddrB]; }

  int batch_, seq_;
  bool erase_gate_;
  std::vector<T> q_, w_, r_, v_, om_, e_, dr_, dq_, dv_, dom_, de_, tape_mid_, dtm_;
  std::vector<T> a_, da_, ebar_;    // causal
  std::vector<T> erase_, add_;      // reference
  const T* dtape_out_ = nullptr;
  double entropy_grad_ = 0, entropy_ = 0;
};

}  // namespace pgolf::prism
