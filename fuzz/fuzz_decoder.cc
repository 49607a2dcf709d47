// libFuzzer target for the raw C++ range decoder (all three distribution forms).
// The first bytes choose the alphabet, the symbol count and the distributions; the
// rest is the stream.  Properties checked: no crash, no out-of-bounds access
// (run under ASan/UBSan), termination, every decoded symbol in range, and a
// stream re-encoded from the decoded symbols decodes to the same symbols.
//
//   make fuzz                      # builds with clang and runs for 10 minutes
//   build/fuzz_decoder -runs=N     # or by hand
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "batch.h"
#include "range_coder.h"

namespace {

struct Input {
  const uint8_t* p;
  size_t n;
  uint32_t take(int bytes) {
    uint32_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v = (v << 8) | (n ? *p : 0);
      if (n) ++p, --n;
    }
    return v;
  }
};

std::vector<int32_t> decode(const std::vector<uint8_t>& stream, int form, const std::vector<float>& logits,
                            const std::vector<uint32_t>& tables, const std::vector<int32_t>& index,
                            size_t N, uint32_t K, size_t T, int precision, int threads) {
  rc::Decoder dec(stream.data(), stream.size());
  std::vector<int32_t> out(N);
  if (form == 0) rc::decode_logits(dec, logits.data(), out.data(), N, K, threads);
  else rc::decode_tables(dec, tables.data(), T, K, form == 2 ? index.data() : nullptr, out.data(), N, precision);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  const int form = in.take(1) % 3;
  const uint32_t K = 1 + in.take(2) % 1024;
  const size_t N = in.take(2) % (1 + 65536 / K);  // at most 64K table entries per input
  const int precision = 10 + in.take(1) % 15;  // >= log2(1024)
  const int threads = 1 + in.take(1) % 2;
  const uint32_t seed = in.take(4);
  // Distributions from a tiny PRNG (fast, deterministic).
  uint32_t x = seed | 1;
  auto rnd = [&x] { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x; };
  std::vector<float> logits;
  std::vector<uint32_t> tables;
  std::vector<int32_t> index;
  size_t T = 0;
  if (form == 0) {
    logits.resize(N * K);
    for (auto& v : logits) {
      const uint32_t r = rnd();
      v = (r & 0xff) == 0 ? -INFINITY : static_cast<float>(static_cast<int32_t>(r >> 8) % 2000) / 100.0f;
    }
  } else {
    T = form == 1 ? N : 1 + rnd() % 4;
    tables.resize(T * (K + 1));
    for (size_t t = 0; t < T; ++t) {
      // Random non-decreasing CDF ending at 2^precision (zero-frequency symbols allowed).
      uint32_t* c = &tables[t * (K + 1)];
      std::vector<uint32_t> cuts(K - 1);
      for (auto& v : cuts) v = rnd() % ((1u << precision) + 1);
      std::sort(cuts.begin(), cuts.end());
      c[0] = 0;
      for (uint32_t k = 1; k < K; ++k) c[k] = cuts[k - 1];
      c[K] = 1u << precision;
    }
    index.resize(N);
    for (auto& v : index) v = static_cast<int32_t>(rnd() % T);
  }
  std::vector<uint8_t> stream(in.p, in.p + in.n);
  std::vector<int32_t> out;
  try {
    out = decode(stream, form, logits, tables, index, N, K, T, precision, threads);
  } catch (const rc::CorruptStream&) {
    return 0;
  } catch (const std::invalid_argument&) {
    if (form == 0) abort();  // our own logits tables are always valid
    return 0;
  }
  for (int32_t s : out)
    if (s < 0 || static_cast<uint32_t>(s) >= K) abort();
  // Re-encode what was decoded: it must decode to the same symbols.
  rc::Encoder enc;
  try {
    if (form == 0) rc::encode_logits(enc, logits.data(), out.data(), N, K, threads);
    else rc::encode_tables(enc, tables.data(), T, K, form == 2 ? index.data() : nullptr, out.data(), N, precision);
  } catch (const std::invalid_argument&) {
    abort();  // a decoded symbol always has nonzero frequency
  }
  if (decode(enc.finish(), form, logits, tables, index, N, K, T, precision, threads) != out) abort();
  return 0;
}
