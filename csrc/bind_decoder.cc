// Bindings of the portable image decoder (csrc/portable_decoder.h): latents to the same
// float image and 8-bit pixels on every machine, the GIL released while decoding.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.h"
#include "portable_decoder.h"

namespace bind {

using namespace nb::literals;

namespace {

using Latent = CArray<float, nb::ndim<3>>;

// std::invalid_argument unless z is a [latent_dim, h, w] latent of a sane size.
void check_latent(const pie::ImageDecoder& d, const Latent& z) {
  if (z.shape(0) != static_cast<size_t>(d.latent_dim))
    throw std::invalid_argument("the latent has " + std::to_string(z.shape(0)) + " channels, the decoder takes " +
                                std::to_string(d.latent_dim));
  if (z.shape(1) < 1 || z.shape(2) < 1) throw std::invalid_argument("the latent is empty");
  const size_t limit = size_t{1} << 16;  // pixels per side
  if (z.shape(1) * d.stride > limit || z.shape(2) * d.stride > limit)
    throw std::invalid_argument("the image would exceed 65536 pixels per side");
}

}  // namespace

void bind_decoder(nb::module_& m) {
  // Parameters by their torch state_dict names (parameters() lists them), then finalize().
  nb::class_<pie::ImageDecoder>(m, "ImageDecoder")
      .def(nb::init<int, std::vector<int>, std::vector<int>, std::vector<int>, bool>(), "latent_dim"_a,
           "channels"_a, "blocks"_a, "extra"_a, "transform"_a)
      .def_ro("latent_dim", &pie::ImageDecoder::latent_dim)
      .def_ro("stride", &pie::ImageDecoder::stride)
      .def_ro("transform", &pie::ImageDecoder::transform)
      .def("parameters", &pie::ImageDecoder::parameters)
      .def("set",
           [](pie::ImageDecoder& self, const std::string& name, CArray<float> a) {
             self.set(name, a.data(), shape_of(a));
           },
           "name"_a, "array"_a)
      .def("set_half",
           [](pie::ImageDecoder& self, const std::string& name, CArray<uint16_t> bits) {
             self.set_half(name, bits.data(), shape_of(bits));
           },
           "name"_a, "bits"_a)
      .def(
          "finalize",
          [](pie::ImageDecoder& self, int threads) {
            nb::gil_scoped_release release;
            self.finalize(threads);
          },
          "threads"_a = 1)
      .def("forward",
           [](const pie::ImageDecoder& self, Latent z, int threads) {
             check_latent(self, z);
             const size_t h = z.shape(1), w = z.shape(2), s = static_cast<size_t>(self.stride);
             float* out;
             auto result = new_array<float>({3, h * s, w * s}, &out);
             nb::gil_scoped_release release;
             self.forward(z.data(), static_cast<int>(h), static_cast<int>(w), out, threads);
             return result;
           },
           "z"_a, "threads"_a)
      .def("pixels",
           [](const pie::ImageDecoder& self, Latent z, int height, int width, int threads) {
             check_latent(self, z);
             const size_t h = z.shape(1), w = z.shape(2), s = static_cast<size_t>(self.stride);
             const size_t Hs = h * s, Ws = w * s;
             if (height < 1 || width < 1 || static_cast<size_t>(height) > Hs || static_cast<size_t>(width) > Ws)
               throw std::invalid_argument("size (" + std::to_string(height) + ", " + std::to_string(width) +
                                           ") is not within the decoded " + std::to_string(Hs) + " x " +
                                           std::to_string(Ws));
             uint8_t* px;
             auto result = new_array<uint8_t>({static_cast<size_t>(height), static_cast<size_t>(width), 3}, &px);
             nb::gil_scoped_release release;
             std::vector<float> out(3 * Hs * Ws);
             self.forward(z.data(), static_cast<int>(h), static_cast<int>(w), out.data(), threads);
             pie::to_pixels(out.data(), static_cast<int64_t>(Hs), static_cast<int64_t>(Ws), height, width, px,
                            threads);
             return result;
           },
           "z"_a, "height"_a, "width"_a, "threads"_a);
}

}  // namespace bind
