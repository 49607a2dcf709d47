// A fixed workload for the portable inference: models with pseudo-random weights (a
// 64-bit LCG, no library RNG), fixed tokens, positions and latents; returns a 64-bit FNV-1a
// hash of the bits of all logits and of two decoders' images (floats and 8-bit pixels).
// Two builds (another instruction set, compiler, architecture or thread count) agree on it
// exactly when they compute bit-identical logits and images.
#pragma once

#include <cstdint>

namespace pie {
uint64_t selftest_hash(int threads);
}
