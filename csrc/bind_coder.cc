// Bindings of the range coder (csrc/range_coder.h, csrc/batch.h): logits or CDF tables in,
// symbols out, the GIL released while coding.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch.h"
#include "bindings.h"
#include "range_coder.h"

namespace bind {
namespace {

using namespace nb::literals;

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

}  // namespace

void bind_coder(nb::module_& m) {
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
}

}  // namespace bind
