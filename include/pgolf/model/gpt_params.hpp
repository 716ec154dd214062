// The parameter table of Gpt<Spec>, built at compile time from the components of GptArch<Spec>.
// Names follow the reference trainer's state dict (tok_emb.weight, blocks.N.attn.c_q.weight, ...) so
// checkpoints and golden files map one to one. A physical block owns one copy of its tensors however
// many virtual layers use it; with Sharing::matrices its scalars are owned per virtual layer
// (layers.V.attn_scale, ...).
#pragma once

#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/model/language_model.hpp"

namespace pgolf {

template <GptSpec S>
constexpr auto gpt_param_table() {
  return arch_layout<GptArch<S>>().table;
}

}  // namespace pgolf
