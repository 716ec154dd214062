// Whole-model finite-difference check shared by the model tests: the gradient already in
// model.grads() (from one backward of `loss`'s forward) against central differences of `loss` on up
// to `samples` entries spread over every parameter tensor (all of a small one).
#pragma once

#include <algorithm>
#include <functional>
#include <vector>

#include <catch2/catch.hpp>

#include "../test_util.hpp"

namespace pgolf::test {

template <class Model>
void check_every_tensor(Model& model, const std::function<double()>& loss, std::size_t samples) {
  const std::vector<double> grad(model.grads().begin(), model.grads().end());
  for (const auto& info : Model::param_table) {
    std::vector<std::size_t> idx;
    const std::size_t n = info.numel(), k = std::min<std::size_t>(n, samples);
    for (std::size_t j = 0; j < k; ++j) idx.push_back((j * n) / k + (j * 7919) % std::max<std::size_t>(1, n / k));
    // The losses here are O(10), so central differences (h = 1e-5) carry ~1e-9 absolute roundoff:
    // gradients below 1e-3 are held to that absolute error, larger ones to 1e-6 relative.
    const double err =
        fd_max_error(loss, model.params().data() + info.offset, grad.data() + info.offset, n, idx, 1e-5, 1e-3);
    INFO(info.name.c_str() << " max relative error " << err);
    CHECK(err < 1e-6);
  }
}

}  // namespace pgolf::test
