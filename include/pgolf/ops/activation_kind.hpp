// The MLP activations an op can be specialised for (ops/cpu/activation.hpp, ops/cuda/activation.cuh).
#pragma once

namespace pgolf {

enum class Activation {
  relu2,        // max(u, 0)^2 (baseline)
  leaky_relu2,  // LeakyReLU(0.5)(u)^2
};

}  // namespace pgolf
