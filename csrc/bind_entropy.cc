// Bindings of the portable entropy models (csrc/portable.h) and the portable self-test
// (csrc/portable_selftest.h): bit-identical logits on every machine.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.h"
#include "portable.h"
#include "portable_selftest.h"

namespace bind {

using namespace nb::literals;

void bind_entropy_models(nb::module_& m) {
  m.def(
      "portable_selftest",
      [](int threads) {
        nb::gil_scoped_release release;
        return pie::selftest_hash(threads);
      },
      "threads"_a = 1);

  // Portable inference of the entropy models (csrc/portable.h): bit-identical logits on
  // every machine.  Parameters by their torch state_dict names, then finalize().
  nb::class_<pie::MaskedTransformer>(m, "MaskedTransformer")
      .def(nb::init<int, int, int, int, int, int, int>(), "M"_a, "K"_a, "dim"_a, "depth"_a,
           "decoder_depth"_a, "heads"_a, "mlp_ratio"_a)
      .def("set",
           [](pie::MaskedTransformer& self, const std::string& name, CArray<float> a) {
             self.set(name, a.data(), shape_of(a));
           },
           "name"_a, "array"_a)
      .def("set_half",
           [](pie::MaskedTransformer& self, const std::string& name, CArray<uint16_t> bits) {
             self.set_half(name, bits.data(), shape_of(bits));
           },
           "name"_a, "bits"_a)
      .def("finalize", &pie::MaskedTransformer::finalize)
      .def("forward",
           [](const pie::MaskedTransformer& self, CArray<int32_t, nb::ndim<3>> tokens,
              CArray<int64_t, nb::ndim<1>> known, CArray<int64_t, nb::ndim<1>> query, int oy, int ox,
              int threads) {
             if (tokens.shape(0) != static_cast<size_t>(self.M))
               throw std::invalid_argument("tokens must be [M, h, w]");
             float* out;
             const size_t nq = query.shape(0);
             auto result = new_array<float>({nq, static_cast<size_t>(self.M), static_cast<size_t>(self.K)}, &out);
             nb::gil_scoped_release release;
             self.forward(tokens.data(), static_cast<int>(tokens.shape(1)), static_cast<int>(tokens.shape(2)),
                          known.data(), static_cast<int64_t>(known.shape(0)), query.data(),
                          static_cast<int64_t>(nq), oy, ox, out, threads);
             return result;
           },
           "tokens"_a, "known"_a, "query"_a, "oy"_a, "ox"_a, "threads"_a);

  nb::class_<pie::ChannelConv>(m, "ChannelConv")
      .def(nb::init<int, int, int, int, std::vector<int>>(), "M"_a, "K"_a, "channels"_a, "depth"_a,
           "groups"_a)
      .def("set",
           [](pie::ChannelConv& self, const std::string& name, CArray<float> a) {
             self.set(name, a.data(), shape_of(a));
           },
           "name"_a, "array"_a)
      .def("set_half",
           [](pie::ChannelConv& self, const std::string& name, CArray<uint16_t> bits) {
             self.set_half(name, bits.data(), shape_of(bits));
           },
           "name"_a, "bits"_a)
      .def("finalize", &pie::ChannelConv::finalize)
      .def("forward",
           [](const pie::ChannelConv& self, CArray<int32_t, nb::ndim<3>> tokens, int g, int threads) {
             if (g < 1 || g + 1 >= static_cast<int>(self.bounds.size()))
               throw std::invalid_argument("group must be in 1..G-1");
             const size_t h = tokens.shape(1), w = tokens.shape(2);
             const size_t n = static_cast<size_t>(self.bounds[g + 1] - self.bounds[g]);
             float* out;
             auto result = new_array<float>({h * w, n, static_cast<size_t>(self.K)}, &out);
             nb::gil_scoped_release release;
             self.forward(tokens.data(), static_cast<int>(tokens.shape(0)), static_cast<int>(h),
                          static_cast<int>(w), g, out, threads);
             return result;
           },
           "tokens"_a, "g"_a, "threads"_a);
}

}  // namespace bind
