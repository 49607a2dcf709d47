// Prints the portable inference's self-test hash (csrc/portable_selftest.h) for 1 and 3
// threads: tests build this for other instruction sets and architectures and compare.
#include <cinttypes>
#include <cstdio>

#include "portable_selftest.h"

int main() {
  std::printf("%016" PRIx64 " %016" PRIx64 "\n", pie::selftest_hash(1), pie::selftest_hash(3));
  return 0;
}
