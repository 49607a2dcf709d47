// What the binding files share (nanobind): array types, output arrays owned by numpy, and
// the functions that add each area's bindings to the module (bindings.cc calls them).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace bind {

namespace nb = nanobind;

/// A C-contiguous CPU array of T (read-only), with optional shape constraints.
template <class T, class... Extra>
using CArray = nb::ndarray<const T, nb::c_contig, nb::device::cpu, Extra...>;

/// A new numpy array of ``shape``, freed with it; ``data`` receives its storage.
template <class T>
nb::ndarray<nb::numpy, T> new_array(std::initializer_list<size_t> shape, T** data) {
  size_t n = 1;
  for (size_t s : shape) n *= s;
  auto* buf = new T[n ? n : 1];
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  *data = buf;
  return nb::ndarray<nb::numpy, T>(buf, shape, owner);
}

/// The shape of ``a`` as int64 (what pie::Params::set takes).
template <class A>
std::vector<int64_t> shape_of(const A& a) {
  std::vector<int64_t> s;
  for (size_t i = 0; i < a.ndim(); ++i) s.push_back(static_cast<int64_t>(a.shape(i)));
  return s;
}

void bind_coder(nb::module_& m);           // bind_coder.cc: the range coder
void bind_entropy_models(nb::module_& m);  // bind_entropy.cc: portable entropy models, self-test
void bind_decoder(nb::module_& m);         // bind_decoder.cc: the portable image decoder

}  // namespace bind
