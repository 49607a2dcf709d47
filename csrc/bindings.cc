// Python bindings (nanobind) for the range coder: numpy buffers in and out
// without copies, the GIL released while coding.  The only file here that
// knows about Python.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "batch.h"
#include "portable.h"
#include "portable_selftest.h"
#include "range_coder.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

template <class T, class... Extra>
using CArray = nb::ndarray<const T, nb::c_contig, nb::device::cpu, Extra...>;

using IntOut = nb::ndarray<nb::numpy, int32_t, nb::ndim<1>>;

IntOut new_int_array(size_t n, int32_t** data) {
  auto* buf = new int32_t[n ? n : 1];
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<int32_t*>(p); });
  *data = buf;
  return IntOut(buf, {n}, owner);
}

void check_rows(size_t rows, size_t n, const char* what) {
  if (rows != n)
    throw std::invalid_argument(std::string(what) + " has " + std::to_string(rows) +
                                " rows but there are " + std::to_string(n) + " symbols");
}

struct PyEncoder {
  rc::Encoder enc;
  bool finished = false;
  void check() const {
    if (finished) throw std::runtime_error("RangeEncoder.finish() was already called");
  }
};

struct PyDecoder {
  std::string data;  // owned copy of the stream
  std::unique_ptr<rc::Decoder> dec;
  explicit PyDecoder(nb::bytes b) : data(b.c_str(), b.size()) {
    dec = std::make_unique<rc::Decoder>(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  }
};

using FloatOut = nb::ndarray<nb::numpy, float>;

FloatOut new_float_array(std::initializer_list<size_t> shape, float** data) {
  size_t n = 1;
  for (size_t s : shape) n *= s;
  auto* buf = new float[n ? n : 1];
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
  *data = buf;
  return FloatOut(buf, shape, owner);
}

std::vector<int64_t> shape_of(const CArray<float>& a) {
  std::vector<int64_t> s;
  for (size_t i = 0; i < a.ndim(); ++i) s.push_back(static_cast<int64_t>(a.shape(i)));
  return s;
}

}  // namespace

NB_MODULE(_rangecoder, m) {
  m.doc() = "C++ range coder (see codec.entropy.range_coder for the documented API).";
  nb::exception<rc::CorruptStream>(m, "CorruptStreamError");
  m.attr("LOGIT_PRECISION") = rc::kLogitPrecision;
  m.attr("MAX_PRECISION") = rc::kMaxPrecision;
  m.attr("MAX_ALPHABET") = rc::kMaxAlphabet;

  m.def(
      "quantize_logits",
      [](CArray<float, nb::ndim<2>> logits, int threads) {
        const size_t N = logits.shape(0);
        const uint32_t K = static_cast<uint32_t>(logits.shape(1));
        auto* buf = new uint32_t[N * K ? N * K : 1];
        nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<uint32_t*>(p); });
        {
          nb::gil_scoped_release release;
          rc::quantize_logits_rows(logits.data(), N, K, buf, threads);
        }
        return nb::ndarray<nb::numpy, uint32_t, nb::ndim<2>>(buf, {N, K}, owner);
      },
      "logits"_a, "threads"_a = 1);

  nb::class_<PyEncoder>(m, "Encoder")
      .def(nb::init<>())
      .def("encode_logits",
           [](PyEncoder& self, CArray<int32_t, nb::ndim<1>> symbols,
              CArray<float, nb::ndim<2>> logits, int threads) {
             self.check();
             check_rows(logits.shape(0), symbols.shape(0), "logits");
             nb::gil_scoped_release release;
             rc::encode_logits(self.enc, logits.data(), symbols.data(), symbols.shape(0),
                               static_cast<uint32_t>(logits.shape(1)), threads);
           },
           "symbols"_a, "logits"_a, "threads"_a)
      .def("encode_tables",
           [](PyEncoder& self, CArray<int32_t, nb::ndim<1>> symbols,
              CArray<uint32_t, nb::ndim<2>> tables, std::optional<CArray<int32_t, nb::ndim<1>>> index,
              int precision) {
             self.check();
             if (tables.shape(1) < 2) throw std::invalid_argument("CDF tables need K + 1 >= 2 columns");
             if (index) check_rows(index->shape(0), symbols.shape(0), "index");
             else check_rows(tables.shape(0), symbols.shape(0), "tables");
             nb::gil_scoped_release release;
             rc::encode_tables(self.enc, tables.data(), tables.shape(0),
                               static_cast<uint32_t>(tables.shape(1) - 1),
                               index ? index->data() : nullptr, symbols.data(), symbols.shape(0),
                               precision);
           },
           "symbols"_a, "tables"_a, "index"_a.none(), "precision"_a)
      .def("finish",
           [](PyEncoder& self) {
             self.check();
             self.finished = true;
             std::vector<uint8_t> out = self.enc.finish();
             return nb::bytes(reinterpret_cast<const char*>(out.data()), out.size());
           })
      .def_prop_ro("size", [](const PyEncoder& self) { return self.enc.size(); });

  nb::class_<PyDecoder>(m, "Decoder")
      .def(nb::init<nb::bytes>(), "data"_a)
      .def("decode_logits",
           [](PyDecoder& self, CArray<float, nb::ndim<2>> logits, int threads) {
             int32_t* out;
             IntOut result = new_int_array(logits.shape(0), &out);
             nb::gil_scoped_release release;
             rc::decode_logits(*self.dec, logits.data(), out, logits.shape(0),
                               static_cast<uint32_t>(logits.shape(1)), threads);
             return result;
           },
           "logits"_a, "threads"_a)
      .def("decode_tables",
           [](PyDecoder& self, CArray<uint32_t, nb::ndim<2>> tables,
              std::optional<CArray<int32_t, nb::ndim<1>>> index, size_t n, int precision) {
             if (tables.shape(1) < 2) throw std::invalid_argument("CDF tables need K + 1 >= 2 columns");
             if (index) check_rows(index->shape(0), n, "index");
             else check_rows(tables.shape(0), n, "tables");
             int32_t* out;
             IntOut result = new_int_array(n, &out);
             nb::gil_scoped_release release;
             rc::decode_tables(*self.dec, tables.data(), tables.shape(0),
                               static_cast<uint32_t>(tables.shape(1) - 1),
                               index ? index->data() : nullptr, out, n, precision);
             return result;
           },
           "tables"_a, "index"_a.none(), "n"_a, "precision"_a)
      .def_prop_ro("position", [](const PyDecoder& self) { return self.dec->position(); });

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
      .def("finalize", &pie::MaskedTransformer::finalize)
      .def("forward",
           [](const pie::MaskedTransformer& self, CArray<int32_t, nb::ndim<3>> tokens,
              CArray<int64_t, nb::ndim<1>> known, CArray<int64_t, nb::ndim<1>> query, int oy, int ox,
              int threads) {
             if (tokens.shape(0) != static_cast<size_t>(self.M))
               throw std::invalid_argument("tokens must be [M, h, w]");
             float* out;
             const size_t nq = query.shape(0);
             FloatOut result = new_float_array({nq, static_cast<size_t>(self.M), static_cast<size_t>(self.K)}, &out);
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
      .def("finalize", &pie::ChannelConv::finalize)
      .def("forward",
           [](const pie::ChannelConv& self, CArray<int32_t, nb::ndim<3>> tokens, int g, int threads) {
             if (g < 1 || g + 1 >= static_cast<int>(self.bounds.size()))
               throw std::invalid_argument("group must be in 1..G-1");
             const size_t h = tokens.shape(1), w = tokens.shape(2);
             const size_t n = static_cast<size_t>(self.bounds[g + 1] - self.bounds[g]);
             float* out;
             FloatOut result = new_float_array({h * w, n, static_cast<size_t>(self.K)}, &out);
             nb::gil_scoped_release release;
             self.forward(tokens.data(), static_cast<int>(tokens.shape(0)), static_cast<int>(h),
                          static_cast<int>(w), g, out, threads);
             return result;
           },
           "tokens"_a, "g"_a, "threads"_a);
}
