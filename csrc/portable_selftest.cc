#include "portable_selftest.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "portable.h"
#include "portable_decoder.h"

namespace pie {
namespace {

struct Lcg {
  uint64_t s;
  float next() {  // uniform in [-0.5, 0.5): exact conversions only
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int32_t>(s >> 40) - (1 << 23)) / 16777216.f;
  }
};

template <class Model>
void fill(Model& m, const std::string& name, std::vector<int64_t> shape, Lcg& g, float scale) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<float> v(n);
  for (auto& x : v) x = g.next() * scale;
  m.set(name, v.data(), shape);
}

void hash_floats(uint64_t& h, const std::vector<float>& v) {
  for (float f : v) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
}

void hash_bytes(uint64_t& h, const std::vector<uint8_t>& v) {
  for (uint8_t b : v) {
    h ^= b;
    h *= 1099511628211ull;
  }
}

// A decoder with pseudo-random weights (He-like scales, positive spreads) on a pseudo-random
// h x w latent: its float image and its pixels cropped by 3 rows and 5 columns.
void hash_decoder(uint64_t& hash, Lcg& g, int D, std::vector<int> channels, std::vector<int> blocks,
                  std::vector<int> extra, bool transform, int h, int w, int threads) {
  ImageDecoder dec(D, channels, blocks, extra, transform);
  for (const auto& [name, shape] : dec.parameters()) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> v(n);
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const float scale = name == "scale"           ? 1.f
                        : bias                    ? 0.2f
                        : name == "linear.weight" ? 2.f / std::sqrt(static_cast<float>(D))
                                                  : 3.4f / std::sqrt(static_cast<float>(shape[1] * 9));
    for (auto& x : v) x = name == "scale" ? 0.75f + g.next() : g.next() * scale;
    dec.set(name, v.data(), shape);
  }
  dec.finalize();
  std::vector<float> z(static_cast<size_t>(D) * h * w);
  for (auto& x : z) x = g.next() * 2.f;
  const int H = h * dec.stride, W = w * dec.stride;
  std::vector<float> out(static_cast<size_t>(3) * H * W);
  dec.forward(z.data(), h, w, out.data(), threads);
  hash_floats(hash, out);
  std::vector<uint8_t> px(static_cast<size_t>(H - 3) * (W - 5) * 3);
  to_pixels(out.data(), H, W, H - 3, W - 5, px.data(), threads);
  hash_bytes(hash, px);
}

}  // namespace

void fill_transformer(MaskedTransformer& t, int depth, int decoder_depth, uint64_t& state) {
  Lcg g{state};
  const int M = t.M, K = t.K, d = t.dim, ratio = t.mlp_ratio;
  auto block = [&](const std::string& p) {
    for (const char* n : {".norm1", ".norm2"}) {
      fill(t, p + n + ".weight", {d}, g, 2.f);
      fill(t, p + n + ".bias", {d}, g, 0.2f);
    }
    fill(t, p + ".q.weight", {d, d}, g, 0.5f);
    fill(t, p + ".q.bias", {d}, g, 0.1f);
    fill(t, p + ".kv.weight", {2 * d, d}, g, 0.5f);
    fill(t, p + ".kv.bias", {2 * d}, g, 0.1f);
    fill(t, p + ".proj.weight", {d, d}, g, 0.3f);
    fill(t, p + ".proj.bias", {d}, g, 0.1f);
    fill(t, p + ".mlp.0.weight", {ratio * d, d}, g, 0.3f);
    fill(t, p + ".mlp.0.bias", {ratio * d}, g, 0.1f);
    fill(t, p + ".mlp.2.weight", {d, ratio * d}, g, 0.2f);
    fill(t, p + ".mlp.2.bias", {d}, g, 0.1f);
  };
  fill(t, "embed.weight", {M * K, d}, g, 1.f);
  fill(t, "context_token", {1, 1, d}, g, 1.f);
  fill(t, "mask_token", {1, 1, d}, g, 1.f);
  for (int i = 0; i < depth; ++i) block("encoder." + std::to_string(i));
  for (int i = 0; i < decoder_depth; ++i) block("decoder." + std::to_string(i));
  for (const char* n : {"encoder_norm", "norm"}) {
    fill(t, std::string(n) + ".weight", {d}, g, 2.f);
    fill(t, std::string(n) + ".bias", {d}, g, 0.2f);
  }
  fill(t, "head.weight", {M * K, d}, g, 1.f);
  fill(t, "head.bias", {M * K}, g, 0.5f);
  state = g.s;
}

uint64_t selftest_hash(int threads) {
  Lcg g{12345};
  // a transformer with head dim 32 (the vector paths) over a 12 x 23 grid: 276 positions,
  // enough for the 128-key blocks and their tails
  const int M = 2, K = 64, d = 64, heads = 2, depth = 2, dec = 1, ratio = 4;
  MaskedTransformer t(M, K, d, depth, dec, heads, ratio);
  fill_transformer(t, depth, dec, g.s);
  t.finalize();
  const int h = 12, w = 23, n = h * w;
  std::vector<int32_t> tokens(static_cast<size_t>(M) * n);
  for (auto& x : tokens) x = static_cast<int32_t>((g.next() + 0.5f) * K) % K;
  std::vector<int64_t> known, query;
  for (int p = 0; p < n; ++p) ((p * 7919) % 5 < 3 ? known : query).push_back(p);
  std::vector<float> out(query.size() * M * K);
  uint64_t hash = 14695981039346656037ull;
  t.forward(tokens.data(), h, w, known.data(), static_cast<int64_t>(known.size()), query.data(),
            static_cast<int64_t>(query.size()), 3, 5, out.data(), threads);
  hash_floats(hash, out);
  // the channel model: groups 1, 2, 3 of M = 6, 24 channels (vector tails), 2 blocks
  const std::vector<int> groups = {1, 2, 3};
  ChannelConv c(6, K, 24, 2, groups);
  fill(c, "embed.weight", {6 * K, 24}, g, 1.f);
  fill(c, "group_embed.weight", {3, 24}, g, 1.f);
  for (int i = 0; i < 2; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    fill(c, p + ".1.weight", {24, 24, 3, 3}, g, 0.3f);
    fill(c, p + ".1.bias", {24}, g, 0.1f);
    fill(c, p + ".3.weight", {24, 24, 1, 1}, g, 0.3f);
    fill(c, p + ".3.bias", {24}, g, 0.1f);
  }
  fill(c, "head.weight", {6 * K, 24, 1, 1}, g, 0.5f);
  fill(c, "head.bias", {6 * K}, g, 0.5f);
  c.finalize();
  std::vector<int32_t> tok6(static_cast<size_t>(6) * n);
  for (auto& x : tok6) x = static_cast<int32_t>((g.next() + 0.5f) * K) % K;
  for (int gi = 1; gi < 3; ++gi) {
    std::vector<float> o(static_cast<size_t>(n) * groups[gi] * K);
    c.forward(tok6.data(), 6, h, w, gi, o.data(), threads);
    hash_floats(hash, o);
  }
  // decoders: 8 and 16 channels, an odd number of input channels, extra blocks, the linear
  // path (the scalar tails); then 16 and 32 channels without it (the vector paths); odd sizes
  hash_decoder(hash, g, 24, {8, 16}, {1, 2}, {1, 0}, true, 5, 7, threads);
  hash_decoder(hash, g, 32, {16, 32}, {1, 1}, {}, false, 5, 9, threads);
  return hash;
}

}  // namespace pie
