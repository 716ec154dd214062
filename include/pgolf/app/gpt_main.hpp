// app::gpt_main<Spec>: the entry point of a GPT variant binary. It carries the CPU specialisation
// Gpt<Spec, float> and, when the variant is compiled with CUDA (pgolf_add_variant(... CUDA) on a
// machine with nvcc, which defines PGOLF_WITH_CUDA), the GPU one GptCuda<Spec>; --device picks.
#pragma once

#include "pgolf/app/main.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/model/gpt_spec.hpp"
#ifdef PGOLF_WITH_CUDA
#include "pgolf/model/gpt_cuda.cuh"
#endif

namespace pgolf::app {

#ifdef PGOLF_WITH_CUDA
template <GptSpec S>
using GpuGpt = GptCuda<S>;
#else
template <GptSpec S>
using GpuGpt = void;
#endif

template <GptSpec S>
int gpt_main(int argc, char** argv, const Variant& variant) {
  return main<Gpt<S, float>, GpuGpt<S>>(argc, argv, variant);
}

}  // namespace pgolf::app
