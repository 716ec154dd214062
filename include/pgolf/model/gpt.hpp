// Gpt<Spec, T>: the parameter-golf reference GPT on the CPU backend (the reference, templated on the
// scalar type so the tests run it in double): LanguageModel<GptArch<Spec>, Cpu<T>> (model/language_model.hpp), built
// from the components GptArch<Spec> lists (model/gpt_spec.hpp). GptCuda<Spec> (model/gpt_cuda.cuh)
// is the same model on the CUDA backend.
//
//   x0 = RMSNorm(E[ids]);  x = x0
//   for virtual layer v (physical block b = schedule[v]):
//       decoder layers first add a U-Net skip: x = x + w_i * skip.pop()
//       x_in = m0 * x + m1 * x0
//       x1   = x_in + attn_scale * Attn(RMSNorm(x_in))
//       x    = x1 + mlp_scale * MLP(RMSNorm(x1))
//       encoder layers push x
//   loss = mean CE(softcap * tanh(RMSNorm(x) E^T / softcap), targets)
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/model/gpt_params.hpp"
#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/model/language_model.hpp"

namespace pgolf {

// A class rather than an alias: GCC 12 crashes substituting a dependent spec into an alias template.
template <GptSpec S, class T = float>
class Gpt : public LanguageModel<GptArch<S>, Cpu<T>> {
 public:
  using LanguageModel<GptArch<S>, Cpu<T>>::LanguageModel;
  static constexpr GptSpec spec = S;
};

}  // namespace pgolf
