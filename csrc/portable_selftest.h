// A fixed workload for the portable inference: models with pseudo-random weights (a
// 64-bit LCG, no library RNG), fixed tokens, positions and latents; returns a 64-bit FNV-1a
// hash of the bits of all logits and of two decoders' images (floats and 8-bit pixels).
// Two builds (another instruction set, compiler, architecture or thread count) agree on it
// exactly when they compute bit-identical logits and images.
#pragma once

#include <cstdint>

namespace pie {
class MaskedTransformer;

uint64_t selftest_hash(int threads);

/// Sets every parameter of ``t`` (built with ``depth`` encoder and ``decoder_depth`` decoder
/// blocks) to the self-test's pseudo-random weights, drawn from the LCG at ``state`` (advanced
/// past them); also what bench/native/transformer_speed.cc times.
void fill_transformer(MaskedTransformer& t, int depth, int decoder_depth, uint64_t& state);
}  // namespace pie
