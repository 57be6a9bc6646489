// libFuzzer target: whisper.cpp's ggml model reader (src/model/ggml_file.h),
// read_header then every next_tensor / read_tensor_data to the end.
//
// Input: one mode byte, then the file (fuzz/ggml_input.h): the whole file,
// or tensor records after a fixed valid header, so that mutations land on the
// tensor records (every ggml type id, dimensions, names, truncation). The
// seeds in fuzz/corpus/ggml/ hold tensors of every type the reader knows.
//
// Checks beyond "no crash, no sanitizer report": a tensor record's shape has
// 1 to 4 dimensions whose product is n_elements; the record is only returned
// when its data can be in the file (the caller allocates n_elements floats,
// so n_elements stays within 8 per byte of the file: no type packs more than
// 8 elements per byte); errors carry a message; the walk ends at the end of
// the file, with an empty name.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_file.h"
#include "fuzz/ggml_input.h"
#include "model/ggml_file.h"

using namespace ama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> file = fuzz::ggml_fuzz_file(data, size);
  if (file.empty()) return 0;
  fuzz::MemFile mem(file.data(), file.size());

  auto reader = GgmlReader::open(mem.path());
  if (!reader) fuzz::fail("GgmlReader::open failed on a regular file");
  auto header = reader->read_header();
  if (!header) {
    if (header.message().empty()) fuzz::fail("read_header error without a message");
    return 0;
  }
  if (header->mel_filters.size() != static_cast<size_t>(header->hp.n_mels) * header->n_filter_bins)
    fuzz::fail("mel filter count does not match n_mels x bins");
  if (header->vocab.size() > static_cast<size_t>(header->hp.n_vocab)) fuzz::fail("vocabulary larger than n_vocab");

  std::vector<float> out;
  for (;;) {
    auto rec = reader->next_tensor();
    if (!rec) {
      if (rec.message().empty()) fuzz::fail("next_tensor error without a message");
      return 0;
    }
    if (rec->name.empty()) break;  // clean end of file
    if (rec->shape.empty() || rec->shape.size() > 4) fuzz::fail("tensor with 0 or more than 4 dimensions");
    uint64_t n = 1;
    for (int d : rec->shape) {
      if (d < 1) fuzz::fail("tensor dimension below 1");
      n *= static_cast<uint64_t>(d);
    }
    if (n != rec->n_elements) fuzz::fail("n_elements differs from the product of the shape");
    if (rec->n_elements > 8 * static_cast<uint64_t>(file.size()))
      fuzz::fail("next_tensor returned a tensor larger than the file can hold");
    out.assign(rec->n_elements, 0.0f);
    if (Status s = reader->read_tensor_data(*rec, out.data()); !s) {
      if (s.message().empty()) fuzz::fail("read_tensor_data error without a message");
      return 0;
    }
  }
  // After the clean end, the reader stays at the end.
  auto again = reader->next_tensor();
  if (!again || !again->name.empty()) fuzz::fail("next_tensor after the end did not report the end again");
  return 0;
}
