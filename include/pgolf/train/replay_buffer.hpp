// ReplayBuffer: the FIFO of late replay (TECHNIQUES.md 7.5): the last `capacity` micro-batches
// (inputs and targets) a rank trained on, oldest first. Its state is a flat vector of token ids so
// it travels in a checkpoint (ids are below 2^24, exact in float).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <utility>
#include <vector>

#include "pgolf/core/error.hpp"

namespace pgolf {

class ReplayBuffer {
 public:
  explicit ReplayBuffer(std::size_t capacity) : capacity_(capacity) {
    PGOLF_CHECK(capacity > 0, "ReplayBuffer: capacity must be positive");
  }

  void push(std::span<const std::int32_t> x, std::span<const std::int32_t> y) {
    PGOLF_CHECK(x.size() == y.size() && !x.empty(), "ReplayBuffer::push: inputs and targets differ in size");
    PGOLF_CHECK(items_.empty() || x.size() == items_.front().first.size(),
                "ReplayBuffer::push: every micro-batch must have the same shape");
    if (items_.size() == capacity_) items_.pop_front();
    items_.emplace_back(std::vector<std::int32_t>(x.begin(), x.end()), std::vector<std::int32_t>(y.begin(), y.end()));
  }
  std::size_t size() const { return items_.size(); }
  std::size_t capacity() const { return capacity_; }
  // The i-th oldest micro-batch.
  const std::pair<std::vector<std::int32_t>, std::vector<std::int32_t>>& at(std::size_t i) const { return items_.at(i); }

  // [count, tokens per micro-batch, then x and y of each micro-batch, oldest first].
  template <class T>
  std::vector<T> state() const {
    const std::size_t n = items_.empty() ? 0 : items_.front().first.size();
    std::vector<T> s{T(items_.size()), T(n)};
    for (const auto& [x, y] : items_) {
      for (std::int32_t v : x) s.push_back(T(v));
      for (std::int32_t v : y) s.push_back(T(v));
    }
    return s;
  }
  template <class T>
  void set_state(const std::vector<T>& s) {
    PGOLF_CHECK(s.size() >= 2, "checkpoint replay buffer is truncated");
    const double count = double(s[0]), n = double(s[1]);
    PGOLF_CHECK(count >= 0 && count <= double(capacity_) && n >= 0 && count == double(std::size_t(count)) &&
                    n == double(std::size_t(n)) && double(s.size()) == 2 + 2 * count * n && (count == 0 || n > 0),
                "checkpoint replay buffer holds ", count, " micro-batches of ", n, " tokens in ", s.size(),
                " values (capacity ", capacity_, "): not this run's buffer (replay_batches must match)");
    items_.clear();
    std::size_t at = 2;
    for (std::size_t k = 0; k < std::size_t(count); ++k) {
      std::vector<std::int32_t> x(static_cast<std::size_t>(n)), y(static_cast<std::size_t>(n));
      for (auto& v : x) v = std::int32_t(s[at++]);
      for (auto& v : y) v = std::int32_t(s[at++]);
      items_.emplace_back(std::move(x), std::move(y));
    }
  }

 private:
  std::size_t capacity_;
  std::deque<std::pair<std::vector<std::int32_t>, std::vector<std::int32_t>>> items_;
};

}  // namespace pgolf
