// Portable inference of the autoencoder's decoder (codec.models.pqvae.Decoder): latents to
// pixels with the discipline of portable.h (every output summed in one fixed order, separate
// IEEE multiplies and adds, vector lanes across independent outputs only, threads across
// rows of outputs only, denormals flushed), so every machine, instruction set, compiler and
// thread count renders the same float image, hence the same 8-bit pixels.
//
// Arithmetic: every 3x3 convolution but the last runs in Winograd form F(4x4, 3x3) (Lavin &
// Gray, 2016): per 4x4 output tile and input channel a 6x6 input patch d becomes B^T d B
// (fixed additions and scalings), the weights g become G g G^T once at finalize() (in double,
// rounded once), each of the 36 transformed positions is a matrix product over the input
// channels (summed in channel order), and A^T m A plus the bias gives the outputs. That is 36
// multiplies per tile and channel pair instead of 144, which lets exact arithmetic (no fused
// multiply-add) run faster than torch's float32 FMA kernels. The transform is part of the
// definition: the same on every machine; its results differ from a direct convolution's by
// rounding only (about 1e-5 relative at worst here).
//
// Layout: activations channels-last ([row][column][channel]) with a zero border. Fused into
// each convolution: the LeakyReLU on its input (applied while reading a patch), the bias, the
// LeakyReLU on its output (a residual block's first convolution), the residual add (in
// place) and the pixel shuffle (the upsampling convolutions write the next stage's layout
// directly; their output channels are permuted at finalize() so that 16 lanes land on 16
// consecutive channels of one pixel). The last upsampling convolution and the output
// convolution (32 -> 3 channels, direct, vectorised over 16 pixels of a row) run in bands of
// rows: the full-resolution 32-channel activations never exist whole. Peak memory is then
// about twice the last stage's activations (2 x 25 MB for a 768 x 512 image with the shipped
// default model), the transformed weights 4x the model's float32 size.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "portable.h"

namespace pie {

/// A 3x3 convolution with padding 1 in Winograd form F(4x4, 3x3).
struct WinogradConv {
  int cin = 0, cout = 0, cpad = 0;  // cpad: cout rounded up to a multiple of 32
  std::unique_ptr<float[]> u;       // [36][cin][cpad]: G g G^T per (input, output) channel
  std::vector<float> bias;          // [cpad]
};

/// The last convolution, 3x3, cin -> 3 channels, direct.
struct OutputConv {
  int cin = 0;
  std::vector<float> w;  // [3][3][cin][3]: (ky, kx, input channel, output channel)
  float bias[3] = {0.f, 0.f, 0.f};
};

/// codec.models.pqvae.Decoder without attention: z [D][h][w] -> image [3][h*s][w*s].
/// Parameters (set()) by their torch state_dict names: net.0.weight, net.1.conv1.weight,
/// extra.1.0.conv2.bias, linear.weight, scale, ...
class ImageDecoder : public ParamModule {
 public:
  /// ``channels``, ``blocks`` and ``extra`` per stage as PQVAEConfig orders them (highest
  /// resolution first; ``extra`` empty: no extra blocks); ``transform``: the linear skip path
  /// (image = linear(z) + net(z / scale) / 2; without: net(z) / 2 + 1/2).
  ImageDecoder(int latent_dim, std::vector<int> channels, std::vector<int> blocks, std::vector<int> extra,
               bool transform);
  /// Checks every parameter was given and prepares the transformed weights (on ``threads``),
  /// freeing the convolution weights they came from: set them all again before another finalize().
  void finalize(int threads = 1);
  /// out [3][h*stride][w*stride] (unclamped) from z [latent_dim][h][w].
  void forward(const float* z, int h, int w, float* out, int threads) const;
  int latent_dim, stride;
  bool transform;

 private:
  struct Residual {
    std::string name;  // net.1, extra.3.0, ...
    WinogradConv conv1, conv2;
  };
  struct Stage {  // lowest resolution first
    int channels = 0, next = 0;  // next: channels after the pixel shuffle
    std::vector<Residual> blocks;
    std::string up_name;
    WinogradConv up;  // output channels permuted to (row, column, channel) of the shuffle
  };
  std::vector<Stage> stages_;
  std::string out_name_;
  WinogradConv first_;
  OutputConv out_;
  Linear linear_;             // [D][3 * s * s], the bias repeated over each channel's s * s outputs
  std::vector<float> scale_;  // [D]
};

/// uint8 [H][W][3] from x [3][Hs][Ws] (H <= Hs, W <= Ws): round(clamp(v, 0, 1) * 255) in
/// float32 with ties to even, as torch's (x.clamp(0, 1) * 255).round(); NaN gives 0.
void to_pixels(const float* x, int64_t Hs, int64_t Ws, int H, int W, uint8_t* out, int threads);

}  // namespace pie
