#pragma once

#include <vector>

// Runs `steps` optimizer steps on the GPU over the kSmall parameter table (table layout in and
// out): Muon for the matrices, Adam for the embedding and the scalars, grads[s] the gradient of
// step s; Muon with MuonEq-R when row_normalize. Returns the parameters after the last step.
std::vector<float> gpu_optimizer_steps(const std::vector<float>& params, const std::vector<std::vector<float>>& grads,
                                       double matrix_lr, double adam_lr, double momentum, bool row_normalize);

// Global-norm clipping on the GPU over g (in place); returns the norm before clipping.
double gpu_clip_grad_norm(std::vector<float>& g, double max_norm);
