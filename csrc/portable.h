// Portable inference of the entropy models: float32 arithmetic whose every result is fixed
// by the inputs alone, so an encoder and a decoder on different machines (CPU type,
// instruction set, thread count, compiler) compute bit-identical logits.
//
// How: each output element is accumulated over its inputs in one fixed order, with separate
// IEEE multiplies and adds (built with -ffp-contract=off: no fused multiply-add anywhere);
// loops are vectorised across independent outputs only, never across a sum, so a vector
// lane does exactly what scalar code does; threads split rows of outputs, never a sum;
// exp, erf, sin and cos are our own polynomials (no libm); LayerNorm and softmax reduce in
// index order; denormals are flushed (FTZ/DAZ set explicitly, whatever the caller's mode).
// The alternative, integer networks (Balle et al., ICLR 2019), would need the models to be
// retrained with integer arithmetic; this keeps the torch models that train as they are,
// and their logits agree with torch's to float tolerance (tested).
//
// Plain C++17, no Python: bind_entropy.cc wraps it. The decoder: portable_decoder.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace pie {

/// exp(x) in float32 to ~2e-7 relative, branch-free; x clamped to [-87.3, 88] (below about
/// -87.3 the result is 0: denormals are flushed).
float exp_f(float x);
/// erf(x) in float32 to ~2e-7 absolute.
float erf_f(float x);
/// sin and cos in double precision to ~1e-16 (own range reduction and polynomials).
double sin_d(double x);
double cos_d(double x);

/// A set of named float32 parameters with the shapes a model declares.
class Params {
 public:
  void declare(const std::string& name, std::vector<int64_t> shape);
  /// Copies ``data`` into the parameter ``name``; std::invalid_argument for an unknown name
  /// or another shape.
  void set(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  /// set() of IEEE binary16 values given as their bits (how bundles store weights): each is
  /// widened to float32 exactly, so the result is set() of the same values widened elsewhere.
  void set_half(const std::string& name, const uint16_t* bits, const std::vector<int64_t>& shape);
  /// std::invalid_argument naming the first declared parameter that was never set.
  void check_complete() const;
  const std::vector<float>& get(const std::string& name) const;
  /// Frees ``name``'s values once a model has derived what it uses from them (it must be set
  /// again before the next check_complete()).
  void release(const std::string& name);
  /// Every declared parameter's name and shape, by name.
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes() const;

 private:
  struct Entry {
    std::vector<int64_t> shape;
    std::vector<float> data;
    bool set = false;
  };
  Entry& checked(const std::string& name, const std::vector<int64_t>& shape);
  std::map<std::string, Entry> entries_;
};

/// A model whose parameters are set by name (torch state_dict names), then finalize().
class ParamModule {
 public:
  /// std::invalid_argument for an unknown name or another shape.
  void set(const std::string& name, const float* data, const std::vector<int64_t>& shape) {
    params_.set(name, data, shape);
    ready_ = false;
  }
  /// set() of binary16 bits (Params::set_half).
  void set_half(const std::string& name, const uint16_t* bits, const std::vector<int64_t>& shape) {
    params_.set_half(name, bits, shape);
    ready_ = false;
  }
  /// The parameters set() accepts: name and shape, by name.
  std::vector<std::pair<std::string, std::vector<int64_t>>> parameters() const { return params_.shapes(); }

 protected:
  Params params_;
  bool ready_ = false;
};

/// A linear map y = x W^T + b with W stored transposed ([in][out]) for output-vectorised loops.
struct Linear {
  int in = 0, out = 0;
  std::vector<float> wt;  // [in][out]
  std::vector<float> b;   // [out]
};

struct LayerNorm {
  int dim = 0;
  std::vector<float> g, b;
};

struct Block {
  LayerNorm norm1, norm2;
  Linear q, kv, proj, fc1, fc2;
};

/// codec.models.mim.MaskedEntropyModel (MAE-style: a transformer over the known positions,
/// cross-attention blocks for the queried ones).
class MaskedTransformer : public ParamModule {
 public:
  /// Parameters (set()) by their torch state_dict names: embed.weight, encoder.0.q.weight, ...
  MaskedTransformer(int M, int K, int dim, int depth, int decoder_depth, int heads, int mlp_ratio);
  /// Checks every parameter was given and prepares the transposed weights.
  void finalize();
  /// Logits [nq][M][K] of the flat positions ``query`` of an h x w grid given the tokens
  /// [M][h][w] (int32, only the ``known`` positions are read); ``oy``, ``ox`` shift the
  /// position encoding.
  void forward(const int32_t* tokens, int h, int w, const int64_t* known, int64_t nk,
               const int64_t* query, int64_t nq, int oy, int ox, float* out, int threads) const;
  int M, K, dim, heads, mlp_ratio;

 private:
  int depth_, decoder_depth_;
  std::vector<float> embed_, context_token_, mask_token_;
  std::vector<Block> encoder_, decoder_;
  LayerNorm encoder_norm_, norm_;
  Linear head_;
};

/// codec.models.layered.ChannelContextModel: logits of sub-vector group g from the groups
/// before it, by a small conv network over the token grid.
class ChannelConv : public ParamModule {
 public:
  ChannelConv(int M, int K, int channels, int depth, std::vector<int> groups);
  void finalize();
  /// Logits [h*w][size_g][K] of group g (1 <= g < G) given tokens [rows][h][w] (int32,
  /// rows >= first sub-vector of g; only those before it are read).
  void forward(const int32_t* tokens, int rows, int h, int w, int g, float* out, int threads) const;
  int M, K, channels;
  std::vector<int> bounds;  // [0, g0, g0 + g1, ..., M]

 private:
  int depth_;
  std::vector<float> embed_, group_embed_;
  std::vector<Linear> conv3_, conv1_;  // conv3_: 3x3 convolutions as [9 * c][c] maps
  Linear head_;                        // [c][M * K]
};

}  // namespace pie
