// Coding many symbols at once: each symbol with its own distribution given as
// float logits, as a row of an integer CDF table, or as an index into a few
// shared tables.  Distribution work (the softmax and quantization of logits) is
// spread over threads; the arithmetic coding itself is sequential.  Results
// never depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "range_coder.h"

namespace rc {

/// Quantizes every row of logits [N, K] into freq [N, K] (see quantize_logits).
void quantize_logits_rows(const float* logits, size_t N, uint32_t K, uint32_t* freq, int threads);

/// logits: [N, K] row-major float32; symbols: [N] in [0, K).
/// Throws std::invalid_argument for a symbol out of range or K out of [1, 65536].
void encode_logits(Encoder& enc, const float* logits, const int32_t* symbols, size_t N,
                   uint32_t K, int threads);
/// Decodes N symbols into out[N]; throws CorruptStream on an impossible stream.
void decode_logits(Decoder& dec, const float* logits, int32_t* out, size_t N, uint32_t K,
                   int threads);

/// tables: [T, K+1] uint32 CDFs with cdf[0] = 0, cdf[K] = 2^precision, non-decreasing;
/// row i of the symbols uses table index[i] (index == nullptr: table i, T == N).
/// Coded symbols must have nonzero frequency.  Throws std::invalid_argument on
/// violated preconditions that it meets (it checks every row it uses).
void encode_tables(Encoder& enc, const uint32_t* tables, size_t T, uint32_t K,
                   const int32_t* index, const int32_t* symbols, size_t N, int precision);
void decode_tables(Decoder& dec, const uint32_t* tables, size_t T, uint32_t K,
                   const int32_t* index, int32_t* out, size_t N, int precision);

}  // namespace rc
