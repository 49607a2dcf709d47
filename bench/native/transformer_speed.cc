// Time of the portable masked transformer (csrc/portable.h) at the default model's sizes (dim
// 128, 4 heads, 3 + 1 blocks, one code of K = 256) on a 32 x 48 grid (a Kodak image), with
// n known positions and one query: random weights, min of 5 runs, per instruction set, without
// Python. Compare two versions of csrc/portable.cc, or two -march values, side by side (one
// command line, from the repository root):
//
//   g++ -std=c++17 -O3 -ffp-contract=off -fno-fast-math -fno-trapping-math -Wno-psabi
//       -DPIE_NO_CLONES -march=haswell -Icsrc -pthread bench/native/transformer_speed.cc
//       csrc/portable.cc -o /tmp/transformer_speed && /tmp/transformer_speed [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include "portable.h"
using namespace pie;

namespace {

struct Lcg {  // uniform in [-0.5, 0.5), as the self-test's
  uint64_t s;
  float next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int32_t>(s >> 40) - (1 << 23)) / 16777216.f;
  }
};

void fill(MaskedTransformer& m, const std::string& name, std::vector<int64_t> shape, Lcg& g, float scale) {
  int64_t n = 1;
  for (int64_t x : shape) n *= x;
  std::vector<float> v(n);
  for (float& x : v) x = g.next() * scale;
  m.set(name, v.data(), shape);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int M = 1, K = 256, d = 128, heads = 4, depth = 3, dec = 1, ratio = 4;
  MaskedTransformer t(M, K, d, depth, dec, heads, ratio);
  Lcg g{1};
  auto block = [&](const std::string& p) {
    for (const char* n : {".norm1", ".norm2"}) {
      fill(t, p + n + ".weight", {d}, g, 2.f);
      fill(t, p + n + ".bias", {d}, g, 0.2f);
    }
    fill(t, p + ".q.weight", {d, d}, g, 0.2f);
    fill(t, p + ".q.bias", {d}, g, 0.1f);
    fill(t, p + ".kv.weight", {2 * d, d}, g, 0.2f);
    fill(t, p + ".kv.bias", {2 * d}, g, 0.1f);
    fill(t, p + ".proj.weight", {d, d}, g, 0.2f);
    fill(t, p + ".proj.bias", {d}, g, 0.1f);
    fill(t, p + ".mlp.0.weight", {ratio * d, d}, g, 0.2f);
    fill(t, p + ".mlp.0.bias", {ratio * d}, g, 0.1f);
    fill(t, p + ".mlp.2.weight", {d, ratio * d}, g, 0.1f);
    fill(t, p + ".mlp.2.bias", {d}, g, 0.1f);
  };
  fill(t, "embed.weight", {M * K, d}, g, 1.f);
  fill(t, "context_token", {1, 1, d}, g, 1.f);
  fill(t, "mask_token", {1, 1, d}, g, 1.f);
  for (int i = 0; i < depth; ++i) block("encoder." + std::to_string(i));
  for (int i = 0; i < dec; ++i) block("decoder." + std::to_string(i));
  for (const char* n : {"encoder_norm", "norm"}) {
    fill(t, std::string(n) + ".weight", {d}, g, 2.f);
    fill(t, std::string(n) + ".bias", {d}, g, 0.2f);
  }
  fill(t, "head.weight", {M * K, d}, g, 1.f);
  fill(t, "head.bias", {M * K}, g, 0.5f);
  t.finalize();
  const int h = 32, w = 48;
  std::vector<int32_t> tokens(h * w);
  for (int32_t& x : tokens) x = static_cast<int32_t>((g.next() + 0.5f) * K) % K;
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
