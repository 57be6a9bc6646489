#include "model/whisper_model.h"

#include <cstdlib>
#include <filesystem>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unordered_map>

#include "core/huge_pages.h"
#include "model/ggml_file.h"
#include "model/hf_checkpoint.h"
#include "model/tensor_source.h"

namespace ama {

namespace {

std::string shape_str(const std::vector<int>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Where one tensor goes in the model. Vectors (biases, LayerNorms,
// positional tables) are read straight into their place; matrices go
// through a float32 buffer that lives only until they are packed.
struct Slot {
  const TensorSpec* spec = nullptr;
  std::vector<float>* vec = nullptr;  // a vector read in place
  LinearWeights* lin = nullptr;       // a matrix to pack [n_out][n_in]
  int n_out = 0, n_in = 0;
  bool conv_taps = false;  // [out][in][3] stored as [out][3][in] (see below)
  bool loaded = false;
};

}  // namespace

void release_free_heap() {
#ifdef __GLIBC__
  // Loading frees many blocks below glibc's mmap threshold (the f32 copies
  // of the smaller matrices, a checkpoint's parsed vocab.json): glibc keeps
  // them in the heap, where they would count in RSS for the whole run
  // (9 MB measured with a checkpoint directory) unless returned now.
  malloc_trim(0);
#endif
}

ComputeType layer_compute_type(const std::string& name, ComputeType requested) {
  if (requested != ComputeType::int8) return requested;
  // Measured on the oracle (micro and micro.en, tests/test_oracle.cpp; bar:
  // logits max abs 0.25, row correlation 0.9999), logits max abs / worst row
  // correlation:
  //  - int8 (per-row u8 activations, per-channel int8 weights) in every
  //    matrix: 0.53 / 0.99980. In the encoder's MLPs only (2/3 of its GEMM
  //    FLOPs), the rest bf16: 0.21 / 0.99997.
  //  - Adding the decoder in plain int8: every decoder matrix 0.44-0.50 /
  //    0.99980; the logits matrix alone 0.31-0.34 / 0.99992; the blocks
  //    alone 0.46 / 0.99984. No single layer is the culprit: in int8 each
  //    decoder matrix type adds to the logits' rms error (in quadrature,
  //    over bf16's 0.025) from ~0 (cross-attention query and key) to 0.037
  //    (cross-attention output) and 0.047 (logits), 0.074 all together. And
  //    it is the weights, not the activations (nor LayerNorm outliers):
  //    with 16-bit activations int8 weights still give 0.39-0.42, and with
  //    an f32 encoder 0.35-0.38. For these N(0, 1/fan_in) weights int8's
  //    rounding error (max|w| / 127 / sqrt(12), ~0.6% of the weights' rms)
  //    is 4x bf16's, and no 8-bit code comes close to bf16 (even ideal
  //    vector quantization at 8 bits gives 2^-8 = 0.4%).
  //  - So the decoder's matrices are int10 (8+2 bits per weight, 1.25 bytes)
  //    with 16-bit activations: the decoder alone then gives 0.09-0.10
  //    against bf16's 0.12-0.14, and the whole int8 path 0.20-0.21 /
  //    0.99997, as before. Weight bits against decoder-only logits rms
  //    error: 8: 0.071-0.080, 9: 0.034-0.039, 10: 0.019-0.020, 12: 0.007-0.008
  //    (bf16: 0.025-0.027); 9 bits gave 0.23-0.25 max abs overall.
  //    Speed, base at 2 threads (AMD EPYC Zen 4, amanuensis bench, medians
  //    of 3-5 runs on a shared machine): a decoder step reads 61 MB of
  //    weights instead of 97 and takes 2.63 ms/token instead of 3.9-4.2
  //    with bf16 decoder weights (4.8 before the attention work as well);
  //    5 tokens per step 1.20 against 1.23-1.26. With 16 tokens per step
  //    the four dot products per weight quad cost more than the bytes save
  //    (0.97 against 0.80-0.88 ms/token), and so in 256-token prompts (0.455
  //    against 0.33-0.34).
  //  - The cross-attention K/V projections run once per 30 s window on 1500
  //    rows, where int10's four dot products per weight quad make it slower
  //    than bf16: keys in plain int8 (measured: no change to the logits
  //    error on the oracle's random weights, whose cross-attention is
  //    diffuse; a trained model's sharp alignment heads are untested here),
  //    values in int8_bc (below; plain int8 values: 0.26 on micro.en).
  //  - The encoder's attention projections, measured again with Q/K/V as
  //    one stacked GEMM (stack_projections) and the int8 path otherwise as
  //    here (avx512, logits max abs / worst row correlation, micro and
  //    micro.en; as here: 0.197-0.211 / 0.99997): Q/K/V in int8 0.368 /
  //    0.99993 on micro; the output projection in int8 0.251 / 0.99996 on
  //    micro and 0.223 / 0.99996 on micro.en; both 0.324 / 0.252. Each
  //    misses the bar alone; which of Q/K/V does, below.
  //  - Measured again per matrix (this session, avx512, logits max abs /
  //    worst row correlation on micro, micro.en; as before 0.219 / 0.223):
  //    query alone in int8 0.213 / 0.224, key alone 0.214 / 0.221, query
  //    and key 0.205 / 0.213 (0.206-0.217 on every ISA, AMX on the tile
  //    model; correlation 0.99997), value alone 0.379 / 0.223 (fails on
  //    micro), output 0.230 / 0.266 (fails on micro.en). The query and key
  //    reach the logits only through the attention's scores, which the int8
  //    attention already computes from int8 roundings of Q and K
  //    (flash_attention_avx512.cpp), and the softmax damps a score's error;
  //    the value and output projections add their error to the residual
  //    stream directly. So Q and K are int8 (stacked [2n][n],
  //    stack_projections) and V and the output projection bf16. The cost
  //    on a trained model's sharp heads, where a score error moves the
  //    weights most, is not measurable without real weights: int8 weights
  //    add to Q K^T's error (per-row int8 activations, ~0.75% of a row's
  //    rms) about as much again (per-channel weights, ~0.6%).
  //  - The convolution stem (conv1 and conv2 as GEMMs over 3-frame
  //    windows), measured with int8 Q K^T in the encoder's attention: int8
  //    0.219 / 0.99996 on micro and 0.223 / 0.99997 on micro.en (bf16:
  //    0.202-0.206), within the bar, so int8 (base: 3.1 of the encoder's 87
  //    GFLOP).
  //  - int8_bc (backend.h: int8 plus a second int8 code applied to the
  //    rows' column mean) for the cross-attention values and the encoder's
  //    attention values and output projection. Where the plain int8 error comes from, measured by
  //    emulating each rounding alone in double (avx512, logits max abs on
  //    micro / micro.en, everything else as the int8 path; bf16 values:
  //    0.205 / 0.213): cross-attention values with u8 activations only
  //    0.204 / 0.215, int8 weights only 0.232 / 0.285, both 0.232 / 0.284,
  //    both with the mean's share of the weights' error put back exactly
  //    0.207 / 0.217. The encoder output's rows share a large mean (|mu|
  //    9.3 against a row norm of 11.6), and the diffuse cross-attention
  //    averages the rows, so what reaches the logits is mu (W - W_q)^T,
  //    which int8_bc cancels. The encoder's attention values the same way:
  //    plain int8 0.358 / 0.237, corrected 0.211 / 0.225; its output
  //    projection: plain 0.220 / 0.229, corrected 0.206 / 0.217. All three
  //    corrected, in double: 0.207 / 0.226. As built, on every ISA (AMX on
  //    the tile model): 0.206-0.208 / 0.224-0.229, row correlation
  //    0.999962-0.999967 (all three in bf16: 0.204-0.209 / 0.214-0.220).
  //    Speed (base, 2 threads, Zen 5, bench medians of 10, alternated with
  //    the bf16 binary): encoder 91.6-93.9 against 97.6-100.7 ms, cross K/V
  //    6.9-7.1 against 9.7 ms.
  //    A trained model's sharp heads (which average few rows) see the
  //    per-row part, (x_i - mu)(W - W_q)^T: about 0.6 of plain int8's
  //    error where |mu| is 0.8 of |x|, ~2-3 times bf16's, like the int8
  //    MLPs'. Untestable here without real weights.
  // Any other matrix outside the decoder (none in Whisper) runs in bf16.
  const bool encoder_mlp = name.rfind("encoder.blocks.", 0) == 0 && name.find(".mlp.") != std::string::npos;
  if (encoder_mlp) return ComputeType::int8;
  const bool encoder_qk = name.rfind("encoder.blocks.", 0) == 0 &&
                          (name.find(".attn.query") != std::string::npos || name.find(".attn.key") != std::string::npos);
  if (encoder_qk) return ComputeType::int8;
  const bool encoder_v = name.rfind("encoder.blocks.", 0) == 0 &&
                         (name.find(".attn.value") != std::string::npos || name.find(".attn.out") != std::string::npos);
  if (encoder_v) return ComputeType::int8_bc;
  if (name.rfind("encoder.conv", 0) == 0) return ComputeType::int8;
  if (name.rfind("decoder.", 0) != 0) return ComputeType::bf16;
  if (name.find(".cross_attn.key") != std::string::npos) return ComputeType::int8;
  if (name.find(".cross_attn.value") != std::string::npos) return ComputeType::int8_bc;
  return ComputeType::int10;  // decoder self-attention, cross-attention query/out, MLP, and the logits
}

// The lookups read the packed logits matrix instead of a 2-byte copy of
// the embedding (53 MB for base). At f32 compute that is exact; at int8 the
// logits matrix is int10 (per-row step max|w| / 511), at bf16 it is bf16
// (2^-9 relative), where the copy was f16 (2^-12). Measured on the oracle
// (avx512, logits max abs / worst row correlation, micro and micro.en;
// bar 0.25 / 0.9999), f16 copy -> packed rows: bf16 0.157 / 0.9999806 ->
// 0.173 / 0.9999794 and 0.153 / 0.9999856 -> 0.136 / 0.9999850; int8
// 0.197 / 0.9999698 -> 0.202 / 0.9999701 and 0.211 / 0.9999711 -> 0.206 /
// 0.9999702. Within the noise of the other layers' rounding, so no copy is
// kept at any compute type.
void WhisperModel::embed_token(const Backend& backend, int token, const float* pos, float* out) const {
  backend.unpack_row(*logits.w, token, out);
  for (int c = 0; c < hp.n_text_state; ++c) out[c] += pos[c];
}

Status load_weights(TensorSource& src, const Backend& backend, WhisperModel& model) {
  const HParams& hp = model.hp;
  const std::vector<TensorSpec> specs = expected_tensors(hp);
  std::unordered_map<std::string, Slot> slots;
  slots.reserve(specs.size());
  for (const TensorSpec& t : specs) slots[t.name].spec = &t;
  const int a = hp.n_audio_state, s = hp.n_text_state;
  // Every destination exists before the first tensor arrives, so the slots'
  // pointers stay valid whatever order the file stores the tensors in.
  model.encoder.clear();
  model.decoder.clear();
  model.encoder.resize(hp.n_audio_layer);
  model.decoder.resize(hp.n_text_layer);
  auto vec = [&](const std::string& name, std::vector<float>& dst) { slots.at(name).vec = &dst; };
  auto lin = [&](const std::string& p, LinearWeights& l, int n_out, int n_in, bool has_bias) {
    Slot& w = slots.at(p + ".weight");
    w.lin = &l;
    w.n_out = n_out;
    w.n_in = n_in;
    if (has_bias) vec(p + ".bias", l.b);
  };
  auto norm = [&](const std::string& p, NormWeights& n) {
    vec(p + ".weight", n.gamma);
    vec(p + ".bias", n.beta);
  };
  auto attention = [&](const std::string& p, AttentionWeights& w, int n) {
    lin(p + ".query", w.query, n, n, true);
    lin(p + ".key", w.key, n, n, false);
    lin(p + ".value", w.value, n, n, true);
    lin(p + ".out", w.out, n, n, true);
  };
  // conv weights [out][in][3] are packed as the GEMM matrix [out][3 * in],
  // taps first: w'[o][j in + c] = w[o][c][j]. A window of 3 input frames is
  // then 3 consecutive rows of a frame-major input, so the encoder runs the
  // convolutions on views of its buffers, with no im2col copies.
  lin("encoder.conv1", model.conv1, a, hp.n_mels * 3, true);
  lin("encoder.conv2", model.conv2, a, a * 3, true);
  slots.at("encoder.conv1.weight").conv_taps = true;
  slots.at("encoder.conv2.weight").conv_taps = true;
  vec("encoder.positional_embedding", model.encoder_pos);
  for (int l = 0; l < hp.n_audio_layer; ++l) {
    const std::string p = "encoder.blocks." + std::to_string(l);
    EncoderLayerWeights& e = model.encoder[l];
    norm(p + ".attn_ln", e.attn_ln);
    attention(p + ".attn", e.attn, a);
    norm(p + ".mlp_ln", e.mlp_ln);
    lin(p + ".mlp.0", e.mlp0, 4 * a, a, true);
    lin(p + ".mlp.2", e.mlp2, a, 4 * a, true);
  }
  norm("encoder.ln_post", model.ln_post);
  {
    Slot& te = slots.at("decoder.token_embedding.weight");
    te.lin = &model.logits;
    te.n_out = hp.n_vocab;
    te.n_in = s;
  }
  vec("decoder.positional_embedding", model.decoder_pos);
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const std::string p = "decoder.blocks." + std::to_string(l);
    DecoderLayerWeights& d = model.decoder[l];
    norm(p + ".attn_ln", d.attn_ln);
    attention(p + ".attn", d.attn, s);
    norm(p + ".cross_attn_ln", d.cross_ln);
    attention(p + ".cross_attn", d.cross, s);
    norm(p + ".mlp_ln", d.mlp_ln);
    lin(p + ".mlp.0", d.mlp0, 4 * s, s, true);
    lin(p + ".mlp.2", d.mlp2, s, 4 * s, true);
  }
  norm("decoder.ln", model.ln);

  const ComputeType requested = backend.compute_type();
  std::unique_ptr<float, decltype(&std::free)> staging(nullptr, &std::free);
  uint64_t staging_n = 0;
  constexpr uint64_t kStagingKeep = uint64_t{8} << 20;  // values (32 MB): medium's largest layer is 4 M
  for (;;) {
    auto rec = src.next();
    if (!rec) return rec.error();
    if (rec->name.empty()) break;
    auto it = slots.find(rec->name);
    if (it == slots.end())
      return make_error(src.path() + ": unexpected tensor " + rec->display() + " (not part of a Whisper model with " +
                        std::to_string(hp.n_audio_layer) + " encoder and " + std::to_string(hp.n_text_layer) +
                        " decoder layers)");
    Slot& slot = it->second;
    if (slot.loaded) return make_error(src.path() + ": tensor " + rec->display() + " appears twice");
    std::vector<int> got = rec->shape;
    // whisper.cpp stores vectors as 1-D; conv biases as [n, 1]. Accept either for biases.
    if (slot.spec->kind == TensorKind::conv_bias && got.size() == 1) got.push_back(1);
    if (got != slot.spec->shape)
      return make_error(src.path() + ": tensor " + rec->display() + " has shape " + shape_str(rec->shape) +
                        ", expected " + shape_str(slot.spec->shape));
    slot.loaded = true;
    if (slot.vec) {
      slot.vec->resize(rec->n_elements);
      AMA_TRY(src.read(*rec, slot.vec->data()));
      continue;
    }
    // One buffer for every matrix on its way to pack_as, grown to the
    // largest and kept for the load, in huge pages (core/huge_pages.h). A
    // fresh allocation per matrix faulted all of its pages in again: for
    // base, 57k page faults, ~0.3 s of a `transcribe` of 11 s of audio on
    // our VMs. Not a vector: a file may declare a tensor larger than memory,
    // which must be an error, not an uncaught bad_alloc.
    if (rec->n_elements > staging_n) {
      staging.reset();
      staging_n = 0;
      staging.reset(static_cast<float*>(huge_alloc(rec->n_elements * sizeof(float))));
      if (!staging) return make_error(src.path() + ": out of memory for tensor " + rec->display());
      staging_n = rec->n_elements;
    }
    float* w = staging.get();
    AMA_TRY(src.read(*rec, w));
    if (slot.conv_taps) {
      const int c_in = slot.n_in / 3;
      std::vector<float> row(slot.n_in);
      for (int o = 0; o < slot.n_out; ++o) {
        float* wo = w + static_cast<size_t>(o) * slot.n_in;
        for (int c = 0; c < c_in; ++c)
          for (int j = 0; j < 3; ++j) row[static_cast<size_t>(j) * c_in + c] = wo[c * 3 + j];
        std::copy(row.begin(), row.end(), wo);
      }
    }
    slot.lin->w = backend.pack_as(w, slot.n_out, slot.n_in, layer_compute_type(rec->name, requested));
    // The token embedding (26.5 M values for base, 66 M for large) is not
    // kept for the matrices after it: its 106-265 MB would stay resident
    // to the end of the load.
    if (staging_n > kStagingKeep) {
      staging.reset();
      staging_n = 0;
    }
  }
  for (const TensorSpec& t : specs)
    if (!slots.at(t.name).loaded) return make_error(src.path() + ": missing tensor '" + t.name + "'");
  stack_projections(backend, model);
  // GELU outputs that an int8 GEMM quantizes next (conv1's into conv2, the
  // MLP's hidden layer into its down projection) take the cheaper GELU
  // (Activation::gelu_q8: within 1e-4, where the 8-bit step of a row is
  // its range / 255). Base, one Zen 4 core: MLP up (+LN, GELU) 9.8-10.0 ->
  // 9.3-9.4 ms per layer (8.0 without GELU).
  auto quantized_next = [&](const char* name) { return layer_compute_type(name, requested) == ComputeType::int8; };
  model.conv1_act = quantized_next("encoder.conv2.weight") ? Activation::gelu_q8 : Activation::gelu;
  model.encoder_mlp_act = quantized_next("encoder.blocks.0.mlp.2.weight") ? Activation::gelu_q8 : Activation::gelu;
  return Status::Ok();
}

Result<std::shared_ptr<const WhisperModel>> load_model(const std::string& path, const Backend& backend) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return load_hf_checkpoint(path, backend);
  auto reader = GgmlReader::open(path);
  if (!reader) return reader.error();
  auto header = reader->read_header();
  if (!header) return header.error();
  auto tok = Tokenizer::create(std::move(header->vocab), header->hp.n_vocab);
  if (!tok) return make_error(path + ": " + tok.message());
  auto model = std::make_shared<WhisperModel>(std::move(tok.value()));
  model->path = path;
  model->hp = header->hp;
  model->mel_filters = std::move(header->mel_filters);
  auto source = ggml_tensor_source(std::move(reader.value()));
  AMA_TRY(load_weights(*source, backend, *model));
  release_free_heap();
  return std::shared_ptr<const WhisperModel>(std::move(model));
}

}  // namespace ama
