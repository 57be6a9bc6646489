// libFuzzer target: whisper.cpp's ggml model reader (src/model/ggml_file.h),
// read_header then every next_tensor / read_tensor_data to the end.
//
// Input: one mode byte, then the file. Even mode: the rest is the whole file.
// Odd mode: the next byte picks the header's ftype and the rest is appended
// to a fixed valid header (1 mel filter, an empty vocabulary: 820 bytes), so
// that mutations land on the tensor records (every ggml type id, dimensions,
// names, truncation) instead of being spent on the header checks. The seeds
// in fuzz/corpus/ggml/ hold tensors of every type the reader knows.
//
// Checks beyond "no crash, no sanitizer report": a tensor record's shape has
// 1 to 4 dimensions whose product is n_elements; the record is only returned
// when its data can be in the file (the caller allocates n_elements floats,
// so n_elements stays within 8 per byte of the file: no type packs more than
// 8 elements per byte); errors carry a message; the walk ends at the end of
// the file, with an empty name.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_file.h"
#include "model/ggml_file.h"

using namespace ama;

namespace {

void put_i32(std::vector<uint8_t>& b, int32_t v) {
  uint8_t p[4];
  std::memcpy(p, &v, 4);
  b.insert(b.end(), p, p + 4);
}

// magic, 11 hparams (the smallest shape validate_hparams accepts), 1 x 201
// mel filter, 0 vocabulary entries.
std::vector<uint8_t> fixed_header(int32_t ftype) {
  std::vector<uint8_t> b;
  put_i32(b, static_cast<int32_t>(kGgmlMagic));
  const int32_t hp[11] = {51865, kAudioCtx, 4, 1, 1, 4, 4, 1, 1, 1, ftype};
  for (int32_t v : hp) put_i32(b, v);
  put_i32(b, 1);
  put_i32(b, kNFft / 2 + 1);
  for (int i = 0; i < kNFft / 2 + 1; ++i) put_i32(b, 0x3c23d70a);  // 0.01f
  put_i32(b, 0);
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> file;
  if (data[0] & 1) {
    if (size < 2) return 0;
    // ftype = version * 1000 + type, as whisper.cpp's quantize writes it (version 0..3, type 0..31).
    const int32_t ftype = ((data[1] >> 5) & 3) * 1000 + (data[1] & 31);
    file = fixed_header(ftype);
    file.insert(file.end(), data + 2, data + size);
  } else {
    file.assign(data + 1, data + size);
  }
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
