// PRISM modules in isolation, finite differences in double: the memory expert (both behaviours:
// its output, the tape it writes and its read entropy, with respect to its weights, its input and
// the incoming tape) and the router (mixing weights and load balance, decisions frozen).
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "prism_test_specs.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {

std::vector<double> randn(std::size_t n, std::uint32_t stream, double scale) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * normal01(5, stream, i);
  return v;
}

template <PrismSpec S>
void check_memory_expert(int block) {
  constexpr int B = 2, T = 5, D = S.d_model;
  using E = prism::MemoryExpert<S, double>;
  using M = Prism<S, double>;
  // The expert's tensors, moved to a buffer of their own (offsets relative to its first tensor).
  const ModuleRows& in_model = M::layout.blocks[std::size_t(block)].expert[1];  // memory is expert 1
  constexpr RowList rl = E::rows(0);
  std::size_t lo = ~std::size_t(0), hi = 0;
  for (int j = 0; j < rl.count; ++j) {
    const std::size_t n = std::size_t(E::rows(block).row[std::size_t(j)].rows) * E::rows(block).row[std::size_t(j)].cols;
    if (n == 0) continue;
    lo = std::min(lo, in_model.at[std::size_t(j)]);
    hi = std::max(hi, in_model.at[std::size_t(j)] + n);
  }
  ModuleRows own{};
  for (int j = 0; j < rl.count; ++j) own.at[std::size_t(j)] = in_model.at[std::size_t(j)] - lo;
  const std::size_t np = hi - lo;
  REQUIRE(int(std::count_if(M::param_table.begin(), M::param_table.end(), [&](const ParamInfo& p) {
            return p.offset >= lo && p.offset < hi;
          })) == prism_expert_rows<S>(ExpertKind::memory, block));
  const std::size_t N = std::size_t(B) * T, tape = M::tape_size_for(B, T);
  auto P = randn(np, 1, 0.4), hx = randn(N * D, 2, 1.0), tin = randn(tape, 3, 0.5);
  const auto r_out = randn(N * D, 4, 1.0), r_tape = randn(tape, 5, 1.0);
  const double kappa = 0.3;  // d loss / d H
  E e(B, T, block);
  std::vector<double> out(N * D);
  auto loss = [&] {
    const prism::ExpertIo<double> io{B, T, hx.data(), tin.data()};
    e.forward(io, Tensors<const double>{P.data(), &own}, out.data());
    return weighted_sum(r_out, out.data()) + weighted_sum(r_tape, e.tape_out()) + kappa * e.read_entropy();
  };
  loss();
  std::vector<double> G(np, 0.0), dhx(N * D, 0.0), dtin(tape, 0.0);
  e.set_tape_grad(r_tape.data());
  e.set_entropy_grad(kappa);
  const prism::ExpertIo<double> io{B, T, hx.data(), tin.data()};
  e.backward(io, Tensors<const double>{P.data(), &own}, Tensors<double>{G.data(), &own}, r_out.data(), dhx.data(),
             dtin.data());
  CHECK(fd_max_error(loss, P.data(), G.data(), np) < 1e-6);
  CHECK(fd_max_error(loss, hx.data(), dhx.data(), hx.size()) < 1e-6);
  CHECK(fd_max_error(loss, tin.data(), dtin.data(), tin.size()) < 1e-6);
}

template <PrismSpec S>
void check_router() {
  constexpr int B = 2, T = 6, D = S.d_model, Mw = S.d_mem, E = 3;
  prism::Router<S, double, E> r(B, T);
  const std::size_t N = std::size_t(B) * T, tape = Prism<S, double>::tape_size_for(B, T);
  auto W = randn(std::size_t(E) * (D + Mw), 11, 0.8), b = randn(E, 12, 0.3), hx = randn(N * D, 13, 1.0),
       tin = randn(tape, 14, 1.0);
  const auto rp = randn(N * E, 15, 1.0);
  const double lb = 0.7;
  auto loss = [&] {
    r.forward(hx.data(), tin.data(), W.data(), b.data());
    return weighted_sum(rp, r.probs()) + lb * r.aux();
  };
  loss();
  std::vector<double> dW(W.size(), 0.0), db(E, 0.0), dhx(N * D, 0.0), dtin(tape, 0.0);
  r.backward(rp.data(), lb, W.data(), dW.data(), db.data(), dhx.data(), dtin.data());
  r.freeze_decisions(true);  // straight-through: FD of the loss with the masks held
  // Central differences (h = 1e-5) on an O(10) loss carry ~1e-10 absolute roundoff: gradients
  // below 1e-4 are held to that absolute error, larger ones to 1e-6 relative.
  CHECK(fd_max_error(loss, W.data(), dW.data(), W.size(), {}, 1e-5, 1e-4) < 1e-6);
  CHECK(fd_max_error(loss, b.data(), db.data(), b.size(), {}, 1e-5, 1e-4) < 1e-6);
  CHECK(fd_max_error(loss, hx.data(), dhx.data(), hx.size(), {}, 1e-5, 1e-4) < 1e-6);
  CHECK(fd_max_error(loss, tin.data(), dtin.data(), tin.size(), {}, 1e-5, 1e-4) < 1e-6);
}

}  // namespace

TEST_CASE("PRISM memory expert in isolation matches finite differences", "[gradcheck][prism]") {
  check_memory_expert<kPrismTiny>(0);     // causal, first block: no erase gate
  check_memory_expert<kPrismTiny>(1);     // causal, with the erase gate
  check_memory_expert<kPrismTinyRef>(0);  // reference
  check_memory_expert<kPrismTinyRef>(1);
}

TEST_CASE("PRISM router in isolation matches finite differences (top-1 and top-2, both tape layouts)",
          "[gradcheck][prism]") {
  check_router<kPrismTiny>();
  check_router<kPrismTinyRef>();
  constexpr PrismSpec top2{.vocab = 11, .d_model = 8, .layers = 3, .num_rates = 2, .num_slots = 3, .d_mem = 4,
                           .router_topk = 2};
  check_router<top2>();
}
