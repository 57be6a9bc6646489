// A std::vector allocator for large buffers that are filled at once (packed
// weights, the encoder's activations, the cross-attention K/V): from 2 MiB
// up, 2 MiB-aligned memory advised MADV_HUGEPAGE, so that a kernel whose
// transparent huge pages are in "madvise" mode (Debian's default) backs it
// with 2 MiB pages. Each first touch of a 4 KiB page is a page fault, and on
// the virtual machines we measure on a fault costs ~10 us: zero-filling a
// fresh 18 MiB vector (base's bf16 cross K/V) took 47 ms there, the same
// buffer advised 1.1-1.2 ms; `transcribe` of an 11 s clip with base spent a
// third of its 0.97-0.99 s in such faults. Where huge pages are off (THP
// "never") the advice does nothing and this is an aligned allocation.
// Smaller buffers come from operator new as usual.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace ama {

inline constexpr size_t kHugePage = size_t{2} << 20;
inline constexpr size_t kHugePageMin = kHugePage;  // smaller: operator new (no whole huge page inside)

// bytes (> 0), 2 MiB-aligned and advised; null when out of memory. Release
// with std::free. The size is not rounded up to whole huge pages: the
// kernel backs the whole 2 MiB spans with huge pages and the tail (under
// 2 MiB) with 4 KiB pages, so nothing is made resident that the caller
// does not touch. Rounding up had cost 49 MB of peak RSS in bench --e2e
// for base (373 against 324 MB): each huge page is resident as a whole.
inline void* huge_alloc(size_t bytes) {
  if (bytes == 0 || bytes > static_cast<size_t>(-1) - kHugePage) return nullptr;
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, bytes) != 0) return nullptr;
  madvise(p, bytes, MADV_HUGEPAGE);  // advice: its failure leaves 4 KiB pages
  return p;
}

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > (static_cast<size_t>(-1) - kHugePage) / sizeof(T)) throw std::bad_alloc();
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageMin) return static_cast<T*>(::operator new(bytes));
    void* p = huge_alloc(bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < kHugePageMin)
      ::operator delete(p);
    else
      std::free(p);
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

template <typename T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace ama
