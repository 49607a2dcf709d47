#include "batch.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace rc {
namespace {

// Rows per block: bounds the scratch memory (about 4 MiB of tables) whatever N is.
size_t block_rows(uint32_t K) { return std::max<size_t>(1, (size_t{1} << 20) / (K + 1)); }

// Runs fn(begin, end) over [0, n) split into contiguous parts, one per thread.
template <class Fn>
void parallel_for(size_t n, size_t work_per_item, int threads, Fn fn) {
  // Spawning a thread costs ~20 us: only worth it for enough work.
  size_t t = static_cast<size_t>(std::max(1, threads));
  t = std::min(t, std::max<size_t>(1, n * work_per_item / (1u << 16)));
  t = std::min(t, std::max<size_t>(1, n));
  if (t <= 1) {
    fn(size_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t chunk = (n + t - 1) / t;
  for (size_t i = 1; i < t; ++i) {
    const size_t b = std::min(n, i * chunk), e = std::min(n, b + chunk);
    pool.emplace_back([=] { fn(b, e); });
  }
  fn(size_t{0}, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

void check_alphabet(uint32_t K) {
  if (K < 1 || K > kMaxAlphabet)
    throw std::invalid_argument("alphabet size K must be in [1, 65536], got " + std::to_string(K));
}

void check_precision(int precision) {
  if (precision < 1 || precision > kMaxPrecision)
    throw std::invalid_argument("precision must be in [1, 24], got " + std::to_string(precision));
}

void bad_symbol(size_t i, int32_t s, uint32_t K) {
  throw std::invalid_argument("symbol " + std::to_string(s) + " at position " + std::to_string(i) +
                              " is outside [0, " + std::to_string(K) + ")");
}

}  // namespace

void quantize_logits_rows(const float* logits, size_t N, uint32_t K, uint32_t* freq,
                          int threads) {
  check_alphabet(K);
  parallel_for(N, K, threads, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) quantize_logits(logits + i * K, K, freq + i * K);
  });
}

void encode_logits(Encoder& enc, const float* logits, const int32_t* symbols, size_t N,
                   uint32_t K, int threads) {
  check_alphabet(K);
  for (size_t i = 0; i < N; ++i)
    if (symbols[i] < 0 || static_cast<uint32_t>(symbols[i]) >= K) bad_symbol(i, symbols[i], K);
  const size_t B = std::max<size_t>(block_rows(K), 4096);
  std::vector<uint32_t> cum(std::min(N, B)), freq(std::min(N, B));
  for (size_t b0 = 0; b0 < N; b0 += B) {
    const size_t n = std::min(B, N - b0);
    parallel_for(n, K, threads, [&](size_t b, size_t e) {
      std::vector<uint32_t> row(K);
      for (size_t i = b; i < e; ++i) {
        const size_t r = b0 + i;
        quantize_logits(logits + r * K, K, row.data());
        const uint32_t s = static_cast<uint32_t>(symbols[r]);
        uint32_t c = 0;
        for (uint32_t k = 0; k < s; ++k) c += row[k];
        cum[i] = c;
        freq[i] = row[s];
      }
    });
    for (size_t i = 0; i < n; ++i) enc.encode(cum[i], freq[i], kLogitPrecision);
  }
}

void decode_logits(Decoder& dec, const float* logits, int32_t* out, size_t N, uint32_t K,
                   int threads) {
  check_alphabet(K);
  // Pipelined: the tables of block j + 1 (and j + 2) are computed by helper threads while
  // the calling thread decodes block j, which it helps to compute when it runs ahead.
  // Rows are assigned to threads dynamically, but each row's table is the same pure
  // function of its logits, so the result never depends on the schedule.
  constexpr size_t kRing = 3, kChunk = 32;
  const size_t B = std::max<size_t>(kChunk, (size_t{1} << 18) / (K + 1));  // ~1 MiB per block
  const size_t blocks = (N + B - 1) / B;
  const size_t helpers =
      std::min<size_t>(static_cast<size_t>(std::max(1, threads)) - 1, N * K >> 16);
  std::vector<uint32_t> ring(kRing * std::min(N, B) * (K + 1));
  std::unique_ptr<std::atomic<size_t>[]> next(new std::atomic<size_t>[blocks]);
  std::unique_ptr<std::atomic<size_t>[]> done(new std::atomic<size_t>[blocks]);
  for (size_t j = 0; j < blocks; ++j) next[j] = 0, done[j] = 0;
  std::atomic<size_t> decoded{0};  // blocks fully decoded: their ring slots are free again
  std::atomic<bool> stop{false};
  auto rows_in = [&](size_t j) { return std::min(B, N - j * B); };
  auto slot = [&](size_t j) { return ring.data() + (j % kRing) * B * (K + 1); };
  auto compute = [&](size_t j) {  // grab chunks of block j until none are left
    const size_t n = rows_in(j);
    for (size_t c; (c = next[j].fetch_add(kChunk)) < n;) {
      const size_t e = std::min(n, c + kChunk);
      for (size_t i = c; i < e; ++i)
        quantize_logits_cdf(logits + (j * B + i) * K, K, slot(j) + i * (K + 1));
      done[j].fetch_add(e - c, std::memory_order_release);
    }
  };
  std::vector<std::thread> pool;
  for (size_t h = 0; h < helpers; ++h)
    pool.emplace_back([&] {
      for (size_t j = 0; j < blocks; ++j) {
        while (j >= decoded.load(std::memory_order_acquire) + kRing) {
          if (stop.load()) return;
          std::this_thread::yield();
        }
        if (stop.load()) return;
        compute(j);
      }
    });
  try {
    for (size_t j = 0; j < blocks; ++j) {
      compute(j);
      const size_t n = rows_in(j);
      while (done[j].load(std::memory_order_acquire) < n) std::this_thread::yield();
      const uint32_t* tables = slot(j);
      for (size_t i = 0; i < n; ++i) {
        const uint32_t* cdf = tables + i * (K + 1);
        const uint32_t t = dec.target(kLogitPrecision);
        const uint32_t s = static_cast<uint32_t>(std::upper_bound(cdf + 1, cdf + K + 1, t) - cdf - 1);
        dec.consume(cdf[s], cdf[s + 1] - cdf[s]);
        out[j * B + i] = static_cast<int32_t>(s);
      }
      decoded.store(j + 1, std::memory_order_release);
    }
  } catch (...) {
    stop = true;
    for (auto& th : pool) th.join();
    throw;
  }
  for (auto& th : pool) th.join();
}

namespace {

const uint32_t* table_row(const uint32_t* tables, size_t T, uint32_t K, const int32_t* index,
                          size_t i, int precision) {
  size_t t = i;
  if (index) {
    if (index[i] < 0 || static_cast<size_t>(index[i]) >= T)
      throw std::invalid_argument("table index " + std::to_string(index[i]) + " at position " +
                                  std::to_string(i) + " is outside [0, " + std::to_string(T) + ")");
    t = static_cast<size_t>(index[i]);
  }
  const uint32_t* cdf = tables + t * (K + 1);
  if (cdf[0] != 0 || cdf[K] != (1u << precision))
    throw std::invalid_argument("CDF table " + std::to_string(t) +
                                " must start at 0 and end at 2^precision");
  return cdf;
}

}  // namespace

void encode_tables(Encoder& enc, const uint32_t* tables, size_t T, uint32_t K,
                   const int32_t* index, const int32_t* symbols, size_t N, int precision) {
  check_alphabet(K);
  check_precision(precision);
  for (size_t i = 0; i < N; ++i) {
    const uint32_t* cdf = table_row(tables, T, K, index, i, precision);
    const int32_t s = symbols[i];
    if (s < 0 || static_cast<uint32_t>(s) >= K) bad_symbol(i, s, K);
    if (cdf[s + 1] <= cdf[s])
      throw std::invalid_argument("symbol " + std::to_string(s) + " at position " +
                                  std::to_string(i) + " has zero frequency in its CDF table");
    enc.encode(cdf[s], cdf[s + 1] - cdf[s], precision);
  }
}

void decode_tables(Decoder& dec, const uint32_t* tables, size_t T, uint32_t K,
                   const int32_t* index, int32_t* out, size_t N, int precision) {
  check_alphabet(K);
  check_precision(precision);
  for (size_t i = 0; i < N; ++i) {
    const uint32_t* cdf = table_row(tables, T, K, index, i, precision);
    const uint32_t t = dec.target(precision);
    const uint32_t s = static_cast<uint32_t>(std::upper_bound(cdf + 1, cdf + K + 1, t) - cdf - 1);
    if (cdf[s] > t || cdf[s + 1] <= t)
      throw std::invalid_argument("CDF table used at position " + std::to_string(i) +
                                  " is not non-decreasing");
    dec.consume(cdf[s], cdf[s + 1] - cdf[s]);
    out[i] = static_cast<int32_t>(s);
  }
}

}  // namespace rc
