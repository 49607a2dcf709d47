// What the portable kernels share (csrc/portable.cc, csrc/portable_decoder.cc): the
// floating-point environment, the thread pool and row splitting, the 16-float vector type.
// Internal: not part of the library's interface (portable.h, portable_decoder.h).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "portable.h"

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#define PIE_X86 1
#endif

#if defined(__GNUC__)
#define PIE_INLINE inline __attribute__((always_inline))
#else
#define PIE_INLINE inline
#endif

// Elementwise loops over independent outputs: each lane does exactly what scalar code does
// (separate IEEE multiply and add), so the ISA each clone is compiled for changes nothing.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(PIE_NO_CLONES)
#define PIE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define PIE_HAS_CLONES 1
#else
#define PIE_CLONES
#endif

namespace pie {
namespace detail {

// ---- deterministic floating-point environment -------------------------------------------
// Denormals flushed on inputs and outputs, whatever the calling thread's mode (torch's
// set_flush_denormal changes it for the caller): the same results from every thread.
class FlushDenormals {
 public:
  FlushDenormals() {
#if defined(PIE_X86)
    saved_ = _mm_getcsr();
    _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    fpcr |= (uint64_t{1} << 24);  // FZ
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#endif
  }
  ~FlushDenormals() {
#if defined(PIE_X86)
    _mm_setcsr(static_cast<unsigned>(saved_));
#elif defined(__aarch64__)
    uint64_t fpcr = saved_;
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#endif
  }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  uint64_t saved_ = 0;
};

// A persistent pool of worker threads (spawning threads per operation cost more than the
// operations). run(t, fn) calls fn(part) for part in [0, t): part 0 on the caller, the others
// on workers; one job at a time (callers from several threads queue on a mutex).
class Pool {
 public:
  /// The process's pool (a forked child gets its own); defined in portable.cc.
  static Pool& instance();

  void run(int t, const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    {
      std::lock_guard<std::mutex> lk(m_);
      while (static_cast<int>(workers_.size()) < t - 1) workers_.emplace_back([this] { loop(); });
      job_ = &fn;
      parts_ = t;
      next_ = 1;
      pending_ = t - 1;
      ++generation_;
    }
    cv_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      while (job_ && next_ < parts_) {
        const int part = next_++;
        const std::function<void(int)>* fn = job_;
        lk.unlock();
        (*fn)(part);
        lk.lock();
        if (--pending_ == 0) done_.notify_all();
      }
    }
  }

  std::mutex job_mutex_, m_;
  std::condition_variable cv_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0, next_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
};

// Runs fn(begin, end) over [0, n) in contiguous parts, one per thread: a row is always
// computed whole by one thread, so the thread count never changes a result.
template <class Fn>
void parallel_rows(int64_t n, double work_per_row, int threads, Fn fn) {
  int64_t t = std::max(1, threads);
  t = std::min<int64_t>(t, std::max<int64_t>(1, static_cast<int64_t>(n * work_per_row / 1e5)));
  t = std::min<int64_t>(t, std::max<int64_t>(1, n));
  if (t <= 1) {
    fn(int64_t{0}, n);  // the caller set the flush mode
    return;
  }
  const int64_t chunk = (n + t - 1) / t;
  const std::function<void(int)> part = [&](int i) {
    FlushDenormals flush;
    const int64_t b = std::min(n, i * chunk), e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  };
  Pool::instance().run(static_cast<int>(t), part);
}

// GCC/Clang vector extensions: 16 floats, elementwise IEEE operations (on SSE2 the compiler
// splits them into 4-lane halves; any split gives the same bits).
typedef float v16 __attribute__((vector_size(64)));
PIE_INLINE v16 load16(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
PIE_INLINE void store16(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

/// Whether register blocks may use 32 vector registers (AVX-512: 8 x 32 outputs per block) or
/// must fit AVX2's 16 (6 x 16). The block shape changes no result: each output is the same sum.
inline bool wide_blocks() {
#if defined(PIE_HAS_CLONES)
  static const bool wide = __builtin_cpu_supports("avx512f");
  return wide;
#elif defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

/// 8 floats: AVX2's register. GCC lowers a v16 on AVX2 through the stack in long loops, so
/// the AVX2 register blocks are written in v8 (the same elementwise operations, the same bits).
typedef float v8 __attribute__((vector_size(32)));
template <typename V>
constexpr int kLanes = static_cast<int>(sizeof(V) / sizeof(float));
template <typename V>
PIE_INLINE V loadv(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V>
PIE_INLINE void storev(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

/// The register block of every matrix product: y[p][j] = init[j] + sum_k x[p][k] * w[k][j]
/// (k increasing; init nullptr: 0) for P rows and NV vectors V of columns. Row strides ldx,
/// ldw, ldy.
template <typename V, int P, int NV>
PIE_INLINE void gemm_block(const float* x, int64_t ldx, int K, const float* w, int64_t ldw, const float* init,
                           float* y, int64_t ldy) {
  constexpr int L = kLanes<V>;
  V acc[P][NV];
  for (int p = 0; p < P; ++p)
    for (int n = 0; n < NV; ++n) acc[p][n] = init ? loadv<V>(init + L * n) : V{};
  for (int k = 0; k < K; ++k) {
    V wv[NV];
    for (int n = 0; n < NV; ++n) wv[n] = loadv<V>(w + k * ldw + L * n);
    for (int p = 0; p < P; ++p) {
      const float c = x[p * ldx + k];
      for (int n = 0; n < NV; ++n) acc[p][n] = acc[p][n] + c * wv[n];
    }
  }
  for (int p = 0; p < P; ++p)
    for (int n = 0; n < NV; ++n) storev<V>(y + p * ldy + L * n, acc[p][n]);
}

/// y[r][col0 + j] = b[col0 + j] + sum_k x[r][k] * wt[k][col0 + j], k in increasing order,
/// for rows [r0, r1) and j in [0, ncols) (portable.cc).
void linear_rows(const float* x, int64_t r0, int64_t r1, const Linear& L, int col0, int ncols, int ldx,
                 float* y, int ldy);

}  // namespace detail
}  // namespace pie
