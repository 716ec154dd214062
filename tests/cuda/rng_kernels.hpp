#pragma once

#include <cstddef>
#include <cstdint>

// Draws uniform01 and normal01 for indices [0, n) on the device.
void draw_on_device(std::uint64_t seed, std::uint32_t stream, std::size_t n, double* uniform, double* normal);
