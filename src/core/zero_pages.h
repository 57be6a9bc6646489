// A std::vector allocator for large buffers that are written front to back
// and often only in part: memory straight from the kernel (anonymous mmap),
// whose pages read as zero and take no physical memory until first written,
// and elements that are not initialized on resize() (the zeros are already
// there). The decoder's KV caches use it: a cache is sized for n_text_ctx
// (448) positions, 2.75 MB per K or V for base, but a window's sequence
// rarely passes ~230 (224 sampled tokens plus the prompt), and a zero-filled
// vector made every page resident up front.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>
#include <utility>

namespace ama {

template <typename T>
struct ZeroPageAllocator {
  using value_type = T;
  ZeroPageAllocator() = default;
  template <typename U>
  ZeroPageAllocator(const ZeroPageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n == 0) return nullptr;
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    void* p = mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (p) munmap(p, n * sizeof(T));
  }
  // Value-initialization (resize(n)) leaves the zero pages untouched;
  // anything else constructs as usual. So a vector grown into fresh pages
  // reads zeros, but one shrunk and regrown within its capacity would read
  // its old values: never shrink and regrow such a vector, make a new one.
  template <typename U>
  void construct(U*) noexcept {}
  template <typename U, typename A, typename... Rest>
  void construct(U* p, A&& a, Rest&&... rest) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a), std::forward<Rest>(rest)...);
  }
  template <typename U>
  bool operator==(const ZeroPageAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace ama
