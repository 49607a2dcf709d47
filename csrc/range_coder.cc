#include "range_coder.h"

#include <cmath>
#include <cstring>

namespace rc {
namespace {

// 2^f on [0, 1), least-squares fit of the relative error with p(0) = 1 exactly
// (max relative error 8.5e-8).  float32 constants, evaluated without FMA.
constexpr float kC1 = 0.69315135f, kC2 = 0.24016415f, kC3 = 0.05580049f,
                kC4 = 0.00901663f, kC5 = 0.00186721f;

// Weight 2^24 * exp(d) truncated to an integer, for d <= 0 (or NaN, -inf).
// exp(0) gives exactly 2^24; exp(d) below 2^-25 gives 0.  Branch-free so the
// compiler vectorizes the loop that calls it; every operation is exact IEEE
// arithmetic, so the result is the same on every machine.
inline uint32_t exp_weight(float d) {
  float t = d * 1.44269504f;          // log2(e) * d
  t = (t >= -25.0f) ? t : -25.0f;     // NaN and -inf clamp here too
  const float u = t + 32.0f;          // in [7, 32]
  const int32_t i = static_cast<int32_t>(u);  // floor, u > 0
  const float f = u - static_cast<float>(i);
  const float p = 1.0f + f * (kC1 + f * (kC2 + f * (kC3 + f * (kC4 + f * kC5))));
  const uint32_t bits = static_cast<uint32_t>(i - 8 + 127) << 23;  // 2^(i-8), i-8 in [-1, 24]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return static_cast<uint32_t>(static_cast<int32_t>(p * scale));
}

}  // namespace

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// Same arithmetic, wider vectors where the CPU has them (results are identical:
// no FMA is enabled by "avx2" and contraction is off for this file).
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void quantize_logits(const float* x, uint32_t K, uint32_t* w) {
  // Max over 8 independent lanes (vectorizes to maxps; NaN never wins; the
  // order of a max does not change its value).
  float lanes[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                    -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  uint32_t k0 = 0;
  for (; k0 + 8 <= K; k0 += 8)
    for (int j = 0; j < 8; ++j) lanes[j] = (x[k0 + j] > lanes[j]) ? x[k0 + j] : lanes[j];
  for (; k0 < K; ++k0) lanes[0] = (x[k0] > lanes[0]) ? x[k0] : lanes[0];
  float m = lanes[0];
  for (int j = 1; j < 8; ++j) m = (lanes[j] > m) ? lanes[j] : m;
  if (m == INFINITY) {
    for (uint32_t k = 0; k < K; ++k) w[k] = (x[k] == INFINITY) ? (1u << 24) : 0u;
  } else if (m == -INFINITY) {
    for (uint32_t k = 0; k < K; ++k) w[k] = 1u << 24;
  } else {
    for (uint32_t k = 0; k < K; ++k) w[k] = exp_weight(x[k] - m);
  }
  // Exact integer normalization: freq = 1 + floor(w * budget / S), the rest to the first argmax.
  uint64_t S = 0;
  uint32_t wmax = 0;
  for (uint32_t k = 0; k < K; ++k) {
    S += w[k];
    wmax = w[k] > wmax ? w[k] : wmax;
  }
  uint32_t argmax = 0;
  while (w[argmax] != wmax) ++argmax;
  const uint64_t budget = (uint64_t{1} << kLogitPrecision) - K;
  const uint64_t inv = (budget << 32) / S;  // S >= 2^24, so inv < 2^32 and w * inv < 2^56
  uint32_t total = 0;
  for (uint32_t k = 0; k < K; ++k) {
    const uint32_t f = 1u + static_cast<uint32_t>((w[k] * inv) >> 32);
    w[k] = f;
    total += f;
  }
  w[argmax] += (1u << kLogitPrecision) - total;
}

void quantize_logits_cdf(const float* x, uint32_t K, uint32_t* cdf) {
  quantize_logits(x, K, cdf + 1);
  cdf[0] = 0;
  uint32_t acc = 0;  // in a register: no store-to-load chain through cdf[]
  for (uint32_t k = 1; k <= K; ++k) {
    acc += cdf[k];
    cdf[k] = acc;
  }
}

void Encoder::propagate_carry() {
  // The coded interval always lies inside [0, 1), so a carry stops before
  // running off the first byte.
  for (size_t i = out_.size(); i-- > 0;) {
    if (++out_[i] != 0) return;
  }
}

std::vector<uint8_t> Encoder::finish() {
  const size_t emitted = out_.size();  // the decoder reads these and 8 bytes more
  // Pick the value in [low, low + range) with the fewest significant bytes.
  if (low_ != 0) {
    if (range_ - 1 > ~low_) {
      propagate_carry();  // the interval holds the next multiple of 2^64
    } else {
      constexpr uint64_t kMask = (uint64_t{1} << 56) - 1;
      const uint64_t v = low_ + ((kMask + 1 - (low_ & kMask)) & kMask);  // no overflow: see above
      out_.push_back(static_cast<uint8_t>(v >> 56));
    }
  }
  // Trailing zeros are implied (the decoder reads zeros past the end), but at most
  // kMaxDroppedZeros of the emitted bytes are dropped: the decoder's bound on reading past the end.
  const size_t keep = emitted > kMaxDroppedZeros ? emitted - kMaxDroppedZeros : 0;
  while (out_.size() > keep && out_.back() == 0) out_.pop_back();
  std::vector<uint8_t> result;
  result.swap(out_);
  low_ = 0;
  range_ = ~uint64_t{0};
  return result;
}

Decoder::Decoder(const uint8_t* data, size_t size) : data_(data), size_(size) {
  for (int i = 0; i < 8; ++i) point_ = (point_ << 8) | next_byte();
}

}  // namespace rc
