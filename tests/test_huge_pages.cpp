// core/huge_pages.h: large buffers 2 MiB-aligned and advised MADV_HUGEPAGE,
// small ones from operator new, and vectors that grow across the threshold.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "core/huge_pages.h"

namespace ama {
namespace {

// The VmFlags line of the /proc/self/smaps mapping that holds p ("" if none).
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-' && line.find(':') > line.find(' ')) {
      inside = at >= lo && at < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

TEST(HugePages, LargeBlocksAreAlignedAndAdvised) {
  const size_t bytes = 3u << 20;  // not a multiple of 2 MiB: the last 1 MiB in 4 KiB pages
  void* p = huge_alloc(bytes);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHugePage, 0u);
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < bytes; i += 4096) b[i] = static_cast<unsigned char>(i >> 12);
  for (size_t i = 0; i < bytes; i += 4096) ASSERT_EQ(b[i], static_cast<unsigned char>(i >> 12)) << i;
  // madvise sets the mapping's "hg" flag whether or not the kernel then
  // finds huge pages for it (THP "never" included).
  const std::string flags = vm_flags_of(p);
  ASSERT_FALSE(flags.empty()) << "no /proc/self/smaps entry holds the block";
  EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
  std::free(p);
}

TEST(HugePages, AbsurdSizesAreNullNotACrash) {
  EXPECT_EQ(huge_alloc(0), nullptr);
  EXPECT_EQ(huge_alloc(static_cast<size_t>(-1)), nullptr);
  EXPECT_EQ(huge_alloc(static_cast<size_t>(-1) - kHugePage + 1), nullptr);
  HugePageAllocator<double> a;
  EXPECT_THROW(a.allocate(static_cast<size_t>(-1) / 4), std::bad_alloc);
}

TEST(HugePages, VectorsGrowAcrossTheThreshold) {
  HugeVector<float> v;
  for (int i = 0; i < 100; ++i) v.push_back(static_cast<float>(i));  // small: operator new
  EXPECT_LT(v.capacity() * sizeof(float), kHugePageMin);
  v.resize(kHugePageMin / sizeof(float) + 1);  // large: a huge block, the old one freed as it was made
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % kHugePage, 0u);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(v[i], static_cast<float>(i)) << i;
  EXPECT_EQ(v.back(), 0.0f);  // value-initialized
  HugeVector<float> copy = v;
  EXPECT_EQ(copy, v);
  v.clear();
  v.shrink_to_fit();  // large back to nothing
  EXPECT_EQ(v.capacity(), 0u);
}

}  // namespace
}  // namespace ama
