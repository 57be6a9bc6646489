// splitmix64: a tiny, well-mixed 64-bit generator, identical on every
// platform (the standard library's distributions are implementation-
// defined). The test-model weights and sampled tokens are drawn from it.
#pragma once

#include <cstdint>

namespace ama {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t s_;
};

}  // namespace ama
