// Python bindings (nanobind): numpy buffers in and out without copies, the GIL released
// while computing. The only files here that know about Python: this one (the module) and
// bind_*.cc (one per area, see bindings.h).
#include "bindings.h"

NB_MODULE(_rangecoder, m) {
  m.doc() = "C++ range coder (see codec.entropy.range_coder for the documented API).";
  bind::bind_coder(m);
  bind::bind_entropy_models(m);
  bind::bind_decoder(m);
}
