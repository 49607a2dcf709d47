// A FIFO range coder with 64-bit state and byte-wise output, plus a deterministic
// logits -> integer-frequency quantizer.  Plain C++17: no Python, no torch.
//
// Model: tensorflow-compression's range_coder.h (preconditions stated per call).
//
// Coding interval: `low` (64 bits below the bytes already written) and `range`,
// kept in [2^56, 2^64) after every symbol, so a symbol of frequency f out of a
// total 2^p (p <= 24) loses at most 2^(p-56) of its interval to truncation:
// the overhead over the information content is below 1e-7 bits per symbol,
// plus at most one byte to terminate the stream.
//
// Stream layout: the big-endian bytes of a number v in [0, 1) written as a
// base-256 fraction; trailing zero bytes are dropped and the decoder reads
// zeros past the end of its buffer (it never reads outside the buffer).
// The encoder drops at most kMaxDroppedZeros of the bytes its decoder will
// read, so a decoder never needs more than kMaxOverread bytes past the end (its
// 8-byte window plus those): one that does is decoding a truncated or forged
// stream, and stops (CorruptStream) instead of decoding zeros for ever.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace rc {

/// Precision of the frequencies produced from logits: they sum to 2^24.
constexpr int kLogitPrecision = 24;
/// Largest precision accepted for integer CDF tables.
constexpr int kMaxPrecision = 24;
/// Largest alphabet the logits quantizer accepts.
constexpr uint32_t kMaxAlphabet = 1u << 16;
/// Zero bytes at most that the encoder drops from the end of what its decoder
/// reads.  Streams written before this limit dropped any number, but more than 64
/// takes a final run of symbols 0 worth over 500 bits (or 64 bytes 0xff and a
/// carry): real files decode as before.
constexpr size_t kMaxDroppedZeros = 64;
/// Bytes a decoder may read past the end of its stream (its 8-byte window plus
/// the dropped zeros); reading further throws CorruptStream.
constexpr size_t kMaxOverread = 8 + kMaxDroppedZeros;

/// Raised by the decoder when the stream cannot have been produced by the
/// encoder with the same distributions (a corrupt or mismatched stream).
class CorruptStream : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Quantizes one row of logits into frequencies.
///
/// Writes freq[0..K) with every freq >= 1 and sum == 2^24.  The result is a
/// pure function of the input bits: only IEEE-754 add/mul/convert (no libm,
/// no fused multiply-add, no reassociation) then integer arithmetic, so every
/// build on every machine gives the same table.  Rules: NaN counts as -inf;
/// if some logits are +inf the mass is split evenly among them; if all are
/// -inf/NaN the row is uniform.  Otherwise freq ~ softmax(logits) with
/// exp(d) approximated to ~1e-7 relative and probabilities below ~2^-25
/// clamped to the minimum frequency 1.
/// Preconditions: 1 <= K <= kMaxAlphabet.
void quantize_logits(const float* logits, uint32_t K, uint32_t* freq);

/// Same as quantize_logits but writes the cumulative table cdf[0..K]
/// (cdf[0] = 0, cdf[K] = 2^24, strictly increasing).
void quantize_logits_cdf(const float* logits, uint32_t K, uint32_t* cdf);

class Encoder {
 public:
  /// Encodes one symbol occupying [cum, cum + freq) of a total 2^precision.
  /// Preconditions: 1 <= precision <= 24, freq >= 1, cum + freq <= 2^precision.
  inline void encode(uint32_t cum, uint32_t freq, int precision) {
    const uint64_t r = range_ >> precision;
    const uint64_t new_low = low_ + r * cum;
    if (new_low < low_) propagate_carry();
    low_ = new_low;
    range_ = r * freq;
    while (range_ < (uint64_t{1} << 56)) {
      out_.push_back(static_cast<uint8_t>(low_ >> 56));
      low_ <<= 8;
      range_ <<= 8;
    }
  }
  /// Terminates the stream and returns it; the encoder is reset afterwards.
  std::vector<uint8_t> finish();
  /// Bytes written so far (the final size is at most this + 1).
  size_t size() const { return out_.size(); }

 private:
  void propagate_carry();
  uint64_t low_ = 0;
  uint64_t range_ = ~uint64_t{0};
  std::vector<uint8_t> out_;
};

class Decoder {
 public:
  Decoder(const uint8_t* data, size_t size);

  /// Returns the value t in [0, 2^precision) that selects the next symbol:
  /// the symbol s with cum(s) <= t < cum(s) + freq(s).  Throws CorruptStream
  /// if the stream points outside any symbol.  Must be followed by consume().
  inline uint32_t target(int precision) {
    r_ = range_ >> precision;
    const uint64_t t = point_ / r_;
    if (t >> precision) throw CorruptStream("range decoder: value outside the coding interval");
    return static_cast<uint32_t>(t);
  }
  /// Removes the symbol [cum, cum + freq) chosen for the last target().
  inline void consume(uint32_t cum, uint32_t freq) {
    point_ -= r_ * cum;
    range_ = r_ * freq;
    while (range_ < (uint64_t{1} << 56)) {
      point_ = (point_ << 8) | next_byte();
      range_ <<= 8;
    }
  }
  /// Bytes taken from the stream so far, counting the zero padding read past its end.
  size_t position() const { return pos_; }

 private:
  inline uint64_t next_byte() {
    if (pos_ < size_) return data_[pos_++];
    // Past the end: the zeros the encoder dropped, up to kMaxOverread; further, the
    // stream is truncated or forged, and decoding on would take time unbounded by its length.
    if (pos_ - size_ >= kMaxOverread)
      throw CorruptStream("range decoder: read past the end of the stream (truncated or forged)");
    ++pos_;
    return 0;
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint64_t point_ = 0;  // value - low
  uint64_t range_ = ~uint64_t{0};
  uint64_t r_ = 1;
};

}  // namespace rc
