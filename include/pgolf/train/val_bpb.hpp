// val_bpb as the challenge computes it: per-token NLL (nats), token and byte counts accumulated in
// double; val_loss = loss_sum / tokens, val_bpb = (val_loss / ln 2) * (tokens / bytes).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "pgolf/core/error.hpp"
#include "pgolf/data/byte_tables.hpp"

namespace pgolf {

struct BpbMeter {
  double loss_sum = 0, tokens = 0, bytes = 0;

  // prev[i] is the token before target[i] (the model's input at that position).
  template <class T>
  void add(const data::ByteTables& tables, std::span<const std::int32_t> prev, std::span<const std::int32_t> target,
           std::span<const T> nll) {
    PGOLF_CHECK(prev.size() == target.size() && nll.size() == target.size(), "BpbMeter::add: size mismatch");
    for (std::size_t i = 0; i < target.size(); ++i) {
      loss_sum += double(nll[i]);
      bytes += tables.token_bytes(prev[i], target[i]);
    }
    tokens += double(target.size());
  }
  void merge(const BpbMeter& o) { loss_sum += o.loss_sum, tokens += o.tokens, bytes += o.bytes; }

  double val_loss() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
  double val_bpb() const {
    PGOLF_CHECK(bytes > 0, "val_bpb: the scored tokens cover zero bytes");
    return val_loss() / std::log(2.0) * (tokens / bytes);
  }
};

}  // namespace pgolf
