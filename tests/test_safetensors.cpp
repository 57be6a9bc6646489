// The safetensors reader: a round trip through the writer, the real VAD
// file, and malformed input of every kind, each of which must give an Error
// with a message (never a crash: CI runs this under ASan and UBSan).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/half.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace ama {
namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "/st_" + std::to_string(getpid()) + "_" + name; }

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file from a header and a data buffer, the length prefix computed.
std::string file_image(const std::string& header, const std::string& data) { return u64le(header.size()) + header + data; }

// A small valid file: two F32 tensors, one F16, one BF16, metadata.
struct SmallFile {
  std::vector<float> a{1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 65504.0f};  // [2, 3]
  std::vector<float> b{0.5f, -0.75f};                                 // [2]
  std::vector<float> c{1.0f, 0.333251953125f, -7.0f, 1e-5f};        // [4] as F16
  std::vector<float> d{3.140625f, -1.0f, 100.0f};                     // [3] as BF16
  std::string path;
  explicit SmallFile(const std::string& name) : path(temp_path(name)) {
    Status s = write_safetensors(path,
                                 {{"layer.a", {2, 3}, a.data(), StDtype::f32},
                                  {"layer.b", {2}, b.data(), StDtype::f32},
                                  {"half", {4}, c.data(), StDtype::f16},
                                  {"brain", {3}, d.data(), StDtype::bf16}},
                                 {{"format", "pt"}, {"note", "test"}});
    EXPECT_TRUE(s.ok()) << s.message();
  }
};

TEST(Safetensors, RoundTripThroughTheWriter) {
  SmallFile sf("roundtrip.safetensors");
  auto f = SafetensorsFile::open(sf.path);
  ASSERT_TRUE(f.ok()) << f.message();
  ASSERT_EQ(f->tensors().size(), 4u);
  // In data order, contiguous from 0.
  uint64_t pos = 0;
  for (const StTensorInfo& t : f->tensors()) {
    EXPECT_EQ(t.begin, pos) << t.name;
    pos = t.end;
  }
  const StTensorInfo* a = f->find("layer.a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, StDtype::f32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->n_elements, 6u);
  EXPECT_EQ(a->end - a->begin, 24u);
  EXPECT_EQ(f->find("half")->dtype, StDtype::f16);
  EXPECT_EQ(f->find("brain")->dtype, StDtype::bf16);
  EXPECT_EQ(f->find("nope"), nullptr);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "test");
  // The header is padded to a multiple of 8 bytes, as the reference writes it.
  EXPECT_EQ(f->data_start() % 8, 0u);

  auto va = f->read_f32("layer.a");
  ASSERT_TRUE(va.ok()) << va.message();
  EXPECT_EQ(*va, sf.a);
  auto vb = f->read_f32("layer.b");
  ASSERT_TRUE(vb.ok());
  EXPECT_EQ(*vb, sf.b);
  auto vc = f->read_f32("half");
  ASSERT_TRUE(vc.ok());
  for (size_t i = 0; i < sf.c.size(); ++i) EXPECT_EQ((*vc)[i], f16_to_f32(f32_to_f16(sf.c[i]))) << i;
  auto vd = f->read_f32("brain");
  ASSERT_TRUE(vd.ok());
  for (size_t i = 0; i < sf.d.size(); ++i) EXPECT_EQ((*vd)[i], bf16_to_f32(f32_to_bf16(sf.d[i]))) << i;
  auto missing = f->read_f32("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("no tensor 'nope'"), std::string::npos) << missing.message();
}

TEST(Safetensors, ReadsTheSileroVadFile) {
  auto f = SafetensorsFile::open(test::shared("models/silero_vad_16k.safetensors"));
  ASSERT_TRUE(f.ok()) << f.message();
  EXPECT_EQ(f->tensors().size(), 15u);
  const StTensorInfo* stft = f->find("stft_conv.weight");
  ASSERT_NE(stft, nullptr);
  EXPECT_EQ(stft->shape, (std::vector<int64_t>{258, 1, 256}));
  EXPECT_EQ(stft->dtype, StDtype::f32);
  auto w = f->read_f32("final_conv.bias");
  ASSERT_TRUE(w.ok()) << w.message();
  EXPECT_EQ(w->size(), 1u);
}

// Other dtypes are listed with their sizes but are not read as float.
TEST(Safetensors, ListsOtherDtypesButReadsOnlyFloats) {
  const std::string header =
      R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
      R"("wide":{"dtype":"F64","shape":[1],"data_offsets":[16,24]},)"
      R"("nib":{"dtype":"F4","shape":[4],"data_offsets":[24,26]},)"
      R"("empty":{"dtype":"F32","shape":[0,5],"data_offsets":[26,26]},)"
      R"("scalar":{"dtype":"U8","shape":[],"data_offsets":[26,27]}})";
  std::string data(27, '\0');
  const double wide = -1.5;
  std::memcpy(&data[16], &wide, 8);
  const std::string path = temp_path("dtypes.safetensors");
  write_bytes(path, file_image(header, data));
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.message();
  EXPECT_EQ(f->find("ids")->dtype, StDtype::i64);
  EXPECT_EQ(f->find("nib")->n_elements, 4u);
  EXPECT_EQ(f->find("scalar")->n_elements, 1u);
  EXPECT_EQ(f->find("empty")->n_elements, 0u);
  auto ids = f->read_f32("ids");
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.message().find("dtype I64"), std::string::npos) << ids.message();
  EXPECT_FALSE(f->read_f32("nib").ok());
  auto w = f->read_f32("wide");
  ASSERT_TRUE(w.ok()) << w.message();
  EXPECT_EQ((*w)[0], -1.5f);
  auto e = f->read_f32("empty");
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_TRUE(e->empty());
}

// Unknown fields inside a tensor entry are ignored, as the reference does
// (serde without deny_unknown_fields), however they nest (up to the depth cap).
TEST(Safetensors, IgnoresUnknownTensorFields) {
  const std::string header = R"({"t":{"extra":{"a":[1,{"b":null}],"c":"x"},"dtype":"F32","shape":[1],"z":true,"data_offsets":[0,4]}})";
  const std::string path = temp_path("unknown_field.safetensors");
  write_bytes(path, file_image(header, std::string(4, '\0')));
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.message();
  EXPECT_EQ(f->find("t")->shape, (std::vector<int64_t>{1}));
}

TEST(Safetensors, EveryTruncationIsAnError) {
  SmallFile sf("truncate_src.safetensors");
  const std::string bytes = read_bytes(sf.path);
  ASSERT_GT(bytes.size(), 100u);
  const std::string path = temp_path("truncated.safetensors");
  for (size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(path, bytes.substr(0, n));
    auto f = SafetensorsFile::open(path);
    ASSERT_FALSE(f.ok()) << "a file truncated to " << n << " of " << bytes.size() << " bytes was accepted";
    EXPECT_FALSE(f.message().empty());
  }
  // Appended bytes are an error too (the reference rejects a buffer the tensors do not cover).
  write_bytes(path, bytes + "x");
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("after the last tensor"), std::string::npos) << f.message();
}

// Every byte of the header replaced by characters that break JSON or the
// schema in different ways: each result is either an error with a message,
// or a file whose tensors tile the data and read back.
TEST(Safetensors, MutatedHeaderBytesNeverCrash) {
  SmallFile sf("mutate_src.safetensors");
  const std::string bytes = read_bytes(sf.path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  const std::string path = temp_path("mutated.safetensors");
  int accepted = 0, rejected = 0;
  for (size_t pos = 0; pos < 8 + n; ++pos) {
    for (char c : {'{', '}', '[', '"', '-', '9', ',', '\xff', '\0'}) {
      if (bytes[pos] == c) continue;
      std::string m = bytes;
      m[pos] = c;
      write_bytes(path, m);
      auto f = SafetensorsFile::open(path);
      if (!f.ok()) {
        EXPECT_FALSE(f.message().empty());
        ++rejected;
        continue;
      }
      ++accepted;
      uint64_t end = 0;
      for (const StTensorInfo& t : f->tensors()) {
        ASSERT_EQ(t.begin, end) << "byte " << pos;
        end = t.end;
        if (t.dtype == StDtype::f32 || t.dtype == StDtype::f16 || t.dtype == StDtype::bf16) {
          auto v = f->read_f32(t.name);
          ASSERT_TRUE(v.ok()) << v.message();
        }
      }
      ASSERT_EQ(f->data_start() + end, m.size());
    }
  }
  EXPECT_GT(rejected, 1000);  // nearly every mutation breaks the file
  std::printf("[ info ] %d mutated headers rejected, %d still valid (e.g. a changed digit in a name)\n", rejected,
              accepted);
}

struct BadHeader {
  const char* what;
  std::string header;
  uint64_t data_size;
  const char* message;  // a part of the expected error
};

TEST(Safetensors, BadHeadersGiveClearErrors) {
  const std::string ok_t = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<BadHeader> cases = {
      {"empty header", "", 8, "invalid JSON"},
      {"invalid JSON", R"({"t":)", 8, "invalid JSON"},
      {"trailing garbage", "{" + ok_t + "} x", 8, "invalid JSON"},
      {"invalid UTF-8 in a name", "{\"\xff\":{}}", 0, "invalid JSON"},
      {"array header", "[1, 2]", 0, "not a JSON object"},
      {"string header", R"("hello")", 0, "not a JSON object"},
      {"number header", "42", 0, "not a JSON object"},
      {"null header", "null", 0, "not a JSON object"},
      {"entry not an object", R"({"t":3})", 0, "tensor 't' is a number, not an object"},
      {"entry an array", R"({"t":[1]})", 0, "tensor 't' is an array, not an object"},
      {"missing dtype", R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8, "has no dtype"},
      {"missing shape", R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8, "has no shape"},
      {"missing offsets", R"({"t":{"dtype":"F32","shape":[2]}})", 8, "has no data_offsets"},
      {"dtype a number", R"({"t":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", 8, "dtype is a number"},
      {"dtype an array", R"({"t":{"dtype":["F32"],"shape":[2],"data_offsets":[0,8]}})", 8, "dtype is an array"},
      {"unknown dtype", R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8, "unknown dtype 'F33'"},
      {"shape a string", R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8, "shape is a string"},
      {"shape an object", R"({"t":{"dtype":"F32","shape":{},"data_offsets":[0,8]}})", 8, "shape is an object"},
      {"negative dimension", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "negative number -2"},
      {"fractional dimension", R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8, "not an integer"},
      {"dimension beyond 64 bits", R"({"t":{"dtype":"F32","shape":[1e30],"data_offsets":[0,8]}})", 8,
       "not an integer"},
      {"dimension beyond int64", R"({"t":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})", 8,
       "absurd"},
      {"string dimension", R"({"t":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8, "shape holds a string"},
      {"nested shape", R"({"t":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", 8, "shape holds an array"},
      {"33 dimensions",
       R"({"t":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})",
       4, "more than 32 dimensions"},
      {"element count overflows", R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}})", 8,
       "overflows 64 bits"},
      {"byte count overflows", R"({"t":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8,
       "too many bytes"},
      {"one offset", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8, "has 1 entries, expected 2"},
      {"three offsets", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", 8, "more than 2 entries"},
      {"negative offset", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", 8, "negative number -1"},
      {"offsets a string", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":"0,8"}})", 8, "data_offsets is a string"},
      {"backwards offsets", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8, "run backwards"},
      {"end beyond the data", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, "holds only 4 bytes"},
      {"huge end", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", 8, "holds only"},
      {"size mismatch", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4, "needs 8 bytes"},
      {"F16 size mismatch", R"({"t":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8, "needs 4 bytes"},
      {"partial byte", R"({"t":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2, "whole number of bytes"},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "overlaps tensor 'a'"},
      {"same range twice", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       8, "overlaps"},
      {"gap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
       20, "4 unused bytes before tensor 'b'"},
      {"not from 0", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, "unused bytes before"},
      {"bytes after the last tensor", "{" + ok_t + "}", 12, "4 bytes after the last tensor"},
      {"duplicate name", "{" + ok_t + "," + ok_t + "}", 8, "lists tensor 't' twice"},
      {"duplicate field", R"({"t":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8, "field 'dtype' twice"},
      {"metadata not an object", R"({"__metadata__":"x"})", 0, "__metadata__ is a string, not an object"},
      {"metadata value a number", R"({"__metadata__":{"k":1}})", 0, "__metadata__ value 'k' is a number"},
      {"metadata value an object", R"({"__metadata__":{"k":{}}})", 0, "__metadata__ value 'k' is an object"},
      {"metadata twice", R"({"__metadata__":{},"__metadata__":{}})", 0, "__metadata__ twice"},
      {"metadata key twice", R"({"__metadata__":{"k":"a","k":"b"}})", 0, "the key 'k' twice"},
      {"deep nesting", R"({"t":{"x":)" + std::string(200, '[') + std::string(200, ']') + "}}", 0, "deeper than 16"},
  };
  for (const BadHeader& c : cases) {
    std::vector<StTensorInfo> tensors;
    std::map<std::string, std::string> metadata;
    Status s = parse_safetensors_header(c.header.data(), c.header.size(), c.data_size, "file", tensors, metadata);
    ASSERT_FALSE(s.ok()) << c.what << ": accepted";
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.what << ": " << s.message();
    EXPECT_EQ(s.message().rfind("file: ", 0), 0u) << c.what << ": " << s.message();
    // The same through a file on disk.
    const std::string path = temp_path("bad.safetensors");
    write_bytes(path, file_image(c.header, std::string(c.data_size, '\0')));
    auto f = SafetensorsFile::open(path);
    ASSERT_FALSE(f.ok()) << c.what << ": file accepted";
    EXPECT_NE(f.message().find(c.message), std::string::npos) << c.what << ": " << f.message();
  }
  // And the valid control case passes.
  std::vector<StTensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  const std::string good = "{" + ok_t + R"(,"__metadata__":{"k":"v"}})";
  Status s = parse_safetensors_header(good.data(), good.size(), 8, "file", tensors, metadata);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(tensors.size(), 1u);
  EXPECT_EQ(metadata.at("k"), "v");
}

TEST(Safetensors, BadLengthPrefixes) {
  const std::string path = temp_path("prefix.safetensors");
  write_bytes(path, "abc");
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("too small"), std::string::npos) << f.message();

  write_bytes(path, u64le(200'000'000) + "{}");
  f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("absurd"), std::string::npos) << f.message();

  write_bytes(path, u64le(~uint64_t{0}) + "{}");
  f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("absurd"), std::string::npos) << f.message();

  write_bytes(path, u64le(64) + "{}");
  f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("runs past the end"), std::string::npos) << f.message();

  // An empty header object with no data is a valid, empty file.
  write_bytes(path, u64le(2) + "{}");
  f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.message();
  EXPECT_TRUE(f->tensors().empty());

  f = SafetensorsFile::open(temp_path("does_not_exist.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("cannot open"), std::string::npos) << f.message();
  f = SafetensorsFile::open(::testing::TempDir());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("not a regular file"), std::string::npos) << f.message();
}

TEST(Safetensors, WriterRejectsBadInput) {
  const float x[2] = {1, 2};
  const std::string path = temp_path("w.safetensors");
  EXPECT_FALSE(write_safetensors(path, {{"a", {-1}, x, StDtype::f32}}).ok());
  EXPECT_FALSE(write_safetensors(path, {{"a", {2}, x, StDtype::i32}}).ok());
  EXPECT_FALSE(write_safetensors(path, {{"a", {2}, x, StDtype::f32}, {"a", {2}, x, StDtype::f32}}).ok());
  EXPECT_FALSE(write_safetensors(path, {{"__metadata__", {2}, x, StDtype::f32}}).ok());
  EXPECT_FALSE(write_safetensors(path, {{"a", {2}, nullptr, StDtype::f32}}).ok());
  EXPECT_FALSE(write_safetensors(::testing::TempDir() + "/no_such_dir/x.safetensors", {{"a", {2}, x, StDtype::f32}}).ok());
}

}  // namespace
}  // namespace ama
