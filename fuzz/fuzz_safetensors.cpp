// libFuzzer target: the safetensors reader (src/model/safetensors.h): open()
// (header length, the JSON header through the SAX parser, the layout checks)
// and read_f32 of every tensor.
//
// Input: the whole file. Checks beyond "no crash, no sanitizer report", the
// promises of safetensors.h: an opened file's tensors are in data-offset
// order and tile the byte buffer exactly (from 0, no gaps or overlaps, up to
// the end of the file); each range is n_elements x the dtype's size; the
// shape's product is n_elements; find() finds every tensor by name; read_f32
// succeeds exactly for F32, F16, BF16 and F64 and errors (with a message)
// for every other dtype; the header parser alone, fed the same JSON, agrees
// with open().
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fuzz/fuzz_file.h"
#include "model/safetensors.h"

using namespace ama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::MemFile mem(data, size);
  auto file = SafetensorsFile::open(mem.path());
  if (!file) {
    if (file.message().empty()) fuzz::fail("open error without a message");
    return 0;
  }

  const uint64_t data_size = size - file->data_start();
  uint64_t expect_begin = 0;
  std::vector<float> out;
  for (const StTensorInfo& t : file->tensors()) {
    if (t.begin != expect_begin || t.end < t.begin) fuzz::fail("tensor ranges do not tile the buffer");
    expect_begin = t.end;
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fuzz::fail("negative dimension accepted");
      n *= static_cast<uint64_t>(d);
    }
    if (n != t.n_elements) fuzz::fail("n_elements differs from the product of the shape");
    // bits may be 4 or 6: the byte count is n x bits / 8, whole bytes.
    if ((t.end - t.begin) * 8 != t.n_elements * static_cast<uint64_t>(st_dtype_bits(t.dtype)))
      fuzz::fail("byte range is not n_elements x dtype size");
    if (file->find(t.name) != &t) fuzz::fail("find() does not return the tensor by its name");

    out.assign(t.n_elements, 0.0f);
    const Status s = file->read_f32(t, out.data());
    const bool convertible =
        t.dtype == StDtype::f32 || t.dtype == StDtype::f16 || t.dtype == StDtype::bf16 || t.dtype == StDtype::f64;
    if (s.ok() != convertible) fuzz::fail("read_f32 succeeded for a dtype it cannot convert, or failed for one it can");
    if (!s.ok() && s.message().empty()) fuzz::fail("read_f32 error without a message");
  }
  if (expect_begin != data_size) fuzz::fail("tensors do not end at the end of the file");

  // The header parser on its own gives the same tensors.
  const size_t json_size = static_cast<size_t>(file->data_start() - 8);
  std::vector<StTensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  const Status again = parse_safetensors_header(reinterpret_cast<const char*>(data) + 8, json_size, data_size, "fuzz",
                                                tensors, metadata);
  if (!again.ok() || tensors.size() != file->tensors().size() || metadata != file->metadata())
    fuzz::fail("parse_safetensors_header disagrees with open()");
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].name != file->tensors()[i].name || tensors[i].begin != file->tensors()[i].begin)
      fuzz::fail("parse_safetensors_header disagrees with open()");
  return 0;
}
