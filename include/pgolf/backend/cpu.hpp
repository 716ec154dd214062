// Cpu<T>: the reference backend. Every register holds T, token-major ([tokens, width]); parameters,
// gradients and saved activations live in host memory (one arena); products run through CBLAS.
// Templated on T so the tests run whole models in double.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/backend/arena_plan.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/core/memory.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/distill.hpp"

namespace pgolf {

template <class T>
struct Cpu {
  using Scalar = T;
  using Weight = T;  // what products read
  template <Reg r>
  using Value = T;
  template <Reg r>
  using Grad = T;
  static constexpr bool device = false;

  // The parameter buffer's layout: the table's packed one.
  template <std::size_t N>
  static constexpr std::array<ParamInfo, N> storage_table(const std::array<ParamInfo, N>& table) {
    return table;
  }

  template <std::size_t N>
  static constexpr std::size_t storage_size(const std::array<ParamInfo, N>& table) {
    return table_size(table);
  }
  static void zero(T* p, std::size_t n) { std::fill(p, p + n, T(0)); }
  static void add_into(const T* a, std::size_t n, T* out) {
    for (std::size_t e = 0; e < n; ++e) out[e] += a[e];
  }

  // A model's host memory: parameters and gradients, the activation arena, the batch.
  class Runtime {
   public:
    explicit Runtime(std::size_t params) : params_(params, T(0)), grads_(params, T(0)) {}

    T* params() { return params_.data(); }
    const T* params() const { return params_.data(); }
    T* grads() { return grads_.data(); }
    const T* grads() const { return grads_.data(); }
    const T* weights() const { return params_.data(); }
    std::span<T> param_span() { return params_; }
    std::span<const T> param_span() const { return params_; }
    std::span<T> grad_span() { return grads_; }
    std::span<const T> grad_span() const { return grads_; }
    void zero_grad() { std::fill(grads_.begin(), grads_.end(), T(0)); }

    template <std::size_t N>
    void set_params(const std::array<ParamInfo, N>& table, const std::array<ParamInfo, N>&, std::span<const T> host) {
      PGOLF_CHECK(host.size() == table_size(table), "parameters: got ", host.size(), " values, the model has ",
                  table_size(table));
      std::copy(host.begin(), host.end(), params_.begin());
    }
    template <std::size_t N>
    std::vector<T> params_host(const std::array<ParamInfo, N>&, const std::array<ParamInfo, N>&) const {
      return params_;
    }
    template <std::size_t N>
    std::vector<T> grads_host(const std::array<ParamInfo, N>&, const std::array<ParamInfo, N>&) const {
      return grads_;
    }

    void allocate(const ArenaPlan& plan, const Shape& sh) {
      check_fits(plan.bytes() + 2 * params_.size() * sizeof(T), host_memory_bytes(),
                 format("the parameters and the activations of a %d x %d micro-batch", sh.batch, sh.seq), "this machine");
      arena_.assign(plan.bytes() + ArenaPlan::kAlign, std::byte{0});
      const auto base = reinterpret_cast<std::uintptr_t>(arena_.data());
      plan.assign(arena_.data() + (ArenaPlan::kAlign - base % ArenaPlan::kAlign) % ArenaPlan::kAlign);
    }
    std::size_t arena_bytes() const { return arena_.size(); }

    // The batch; ids and targets are checked where they are read (embedding, cross-entropy).
    void begin_forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets, int) {
      ids_.assign(ids.begin(), ids.end());
      targets_.assign(targets.begin(), targets.end());
    }
    const std::int32_t* ids() const { return ids_.data(); }
    const std::int32_t* targets() const { return targets_.data(); }
    std::span<const std::int32_t> host_targets() const { return targets_; }
    bool has_batch() const { return !ids_.empty(); }

    // Self-distillation: while a teacher's logits [tokens, vocab] are set, the loss is the
    // distillation loss against them (ops/cpu/distill.hpp) instead of the cross-entropy.
    void set_teacher(const T* logits, const ops::cpu::DistillOptions& o) {
      o.validate();
      teacher_ = logits, distill_ = o;
    }
    void clear_teacher() { teacher_ = nullptr; }
    const T* teacher() const { return teacher_; }
    const ops::cpu::DistillOptions& distill_options() const { return distill_; }

   private:
    const T* teacher_ = nullptr;
    ops::cpu::DistillOptions distill_;
    std::vector<T> params_, grads_;
    std::vector<std::byte> arena_;
    std::vector<std::int32_t> ids_, targets_;
  };
};

}  // namespace pgolf
