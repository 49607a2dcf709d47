// Time of the portable masked transformer (csrc/portable.h) at the default model's sizes (dim
// 128, 4 heads, 3 + 1 blocks, one code of K = 256) on a 32 x 48 grid (a Kodak image), with
// n known positions and one query: the self-test's pseudo-random weights
// (csrc/portable_selftest.h), min of 5 runs, per instruction set, without
// Python. Compare two versions of csrc/portable.cc, or two -march values, side by side (one
// command line, from the repository root):
//
//   g++ -std=c++17 -O3 -ffp-contract=off -fno-fast-math -fno-trapping-math -Wno-psabi
//       -DPIE_NO_CLONES -march=haswell -Icsrc -pthread bench/native/transformer_speed.cc
//       csrc/portable.cc csrc/portable_decoder.cc csrc/portable_selftest.cc
//       -o /tmp/transformer_speed && /tmp/transformer_speed [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "portable.h"
#include "portable_selftest.h"

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int M = 1, K = 256, d = 128, heads = 4, depth = 3, dec = 1, ratio = 4;
  pie::MaskedTransformer t(M, K, d, depth, dec, heads, ratio);
  uint64_t state = 1;
  pie::fill_transformer(t, depth, dec, state);
  t.finalize();
  const int h = 32, w = 48;
  std::vector<int32_t> tokens(h * w);
  for (int i = 0; i < h * w; ++i) tokens[i] = (i * 7919) % K;
  for (int nk : {512, 1024, 1400}) {
    std::vector<int64_t> known, query{int64_t{h * w - 1}};
    for (int p = 0; p < nk; ++p) known.push_back(p);
    std::vector<float> out(K);
    double best = 1e9;
    for (int r = 0; r < 5; ++r) {
      const auto start = std::chrono::steady_clock::now();
      t.forward(tokens.data(), h, w, known.data(), nk, query.data(), 1, 0, 0, out.data(), threads);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::printf("%d known, 1 query, %d threads: %.2f ms (min of 5)\n", nk, threads, best * 1e3);
  }
}
