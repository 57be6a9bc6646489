#include "model/whisper_model.h"

#include <map>
#include <set>

#include "model/ggml_file.h"

namespace ama {

namespace {

std::string shape_str(const std::vector<int>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Reads every tensor into float32, checking names and shapes against the spec.
Result<std::map<std::string, std::vector<float>>> read_tensors(GgmlReader& reader, const HParams& hp) {
  std::map<std::string, TensorSpec> spec;
  for (auto& t : expected_tensors(hp)) spec.emplace(t.name, t);
  std::map<std::string, std::vector<float>> out;
  for (;;) {
    auto rec = reader.next_tensor();
    if (!rec) return rec.error();
    if (rec->name.empty()) break;
    auto it = spec.find(rec->name);
    if (it == spec.end())
      return make_error(reader.path() + ": unexpected tensor '" + rec->name + "' (not part of a Whisper model with " +
                        std::to_string(hp.n_audio_layer) + " encoder and " + std::to_string(hp.n_text_layer) +
                        " decoder layers)");
    if (out.count(rec->name)) return make_error(reader.path() + ": tensor '" + rec->name + "' appears twice");
    std::vector<int> want = it->second.shape;
    std::vector<int> got = rec->shape;
    // whisper.cpp stores vectors as 1-D; conv biases as [n, 1]. Accept either for biases.
    if (it->second.kind == TensorKind::conv_bias && got.size() == 1) got.push_back(1);
    if (got != want)
      return make_error(reader.path() + ": tensor '" + rec->name + "' has shape " + shape_str(rec->shape) +
                        ", expected " + shape_str(want));
    std::vector<float> data(rec->n_elements);
    AMA_TRY(reader.read_tensor_data(*rec, data.data()));
    out.emplace(rec->name, std::move(data));
  }
  for (const auto& [name, s] : spec)
    if (!out.count(name)) return make_error(reader.path() + ": missing tensor '" + name + "'");
  return out;
}

}  // namespace

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
  //    values in bf16 (plain int8 values: 0.26 on micro.en).
  // Everything else (the encoder's attention and convolutions) runs in bf16.
  const bool encoder_mlp = name.rfind("encoder.blocks.", 0) == 0 && name.find(".mlp.") != std::string::npos;
  if (encoder_mlp) return ComputeType::int8;
  if (name.rfind("decoder.", 0) != 0) return ComputeType::bf16;
  if (name.find(".cross_attn.key") != std::string::npos) return ComputeType::int8;
  if (name.find(".cross_attn.value") != std::string::npos) return ComputeType::bf16;
  return ComputeType::int10;  // decoder self-attention, cross-attention query/out, MLP, and the logits
}

Result<std::shared_ptr<const WhisperModel>> load_model(const std::string& path, const Backend& backend) {
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

  auto tensors = read_tensors(*reader, model->hp);
  if (!tensors) return tensors.error();
  auto& t = *tensors;
  auto take = [&](const std::string& name) { return std::move(t.at(name)); };
  const HParams& hp = model->hp;
  auto pack = [&](const std::string& name, int n_out, int n_in) {
    std::vector<float> w = take(name);
    return backend.pack_as(w.data(), n_out, n_in, layer_compute_type(name, backend.compute_type()));
  };
  auto lin = [&](const std::string& p, int n_out, int n_in, bool has_bias) {
    LinearWeights l;
    l.w = pack(p + ".weight", n_out, n_in);
    if (has_bias) l.b = take(p + ".bias");
    return l;
  };
  auto norm = [&](const std::string& p) { return NormWeights{take(p + ".weight"), take(p + ".bias")}; };
  auto attention = [&](const std::string& p, int n) {
    return AttentionWeights{lin(p + ".query", n, n, true), lin(p + ".key", n, n, false), lin(p + ".value", n, n, true),
                            lin(p + ".out", n, n, true)};
  };
  const int a = hp.n_audio_state, s = hp.n_text_state;
  const ComputeType sensitive = layer_compute_type("decoder.token_embedding", backend.compute_type());
  // conv weights [out][in][3] are already the GEMM matrix [out][in * 3].
  model->conv1 = lin("encoder.conv1", a, hp.n_mels * 3, true);
  model->conv2 = lin("encoder.conv2", a, a * 3, true);
  model->encoder_pos = take("encoder.positional_embedding");
  for (int l = 0; l < hp.n_audio_layer; ++l) {
    const std::string p = "encoder.blocks." + std::to_string(l);
    EncoderLayerWeights e;
    e.attn_ln = norm(p + ".attn_ln");
    e.attn = attention(p + ".attn", a);
    e.mlp_ln = norm(p + ".mlp_ln");
    e.mlp0 = lin(p + ".mlp.0", 4 * a, a, true);
    e.mlp2 = lin(p + ".mlp.2", a, 4 * a, true);
    model->encoder.push_back(std::move(e));
  }
  model->ln_post = norm("encoder.ln_post");
  model->token_embedding = take("decoder.token_embedding.weight");
  model->logits.w = backend.pack_as(model->token_embedding.data(), hp.n_vocab, s, sensitive);
  model->decoder_pos = take("decoder.positional_embedding");
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const std::string p = "decoder.blocks." + std::to_string(l);
    DecoderLayerWeights d;
    d.attn_ln = norm(p + ".attn_ln");
    d.attn = attention(p + ".attn", s);
    d.cross_ln = norm(p + ".cross_attn_ln");
    d.cross = attention(p + ".cross_attn", s);
    d.mlp_ln = norm(p + ".mlp_ln");
    d.mlp0 = lin(p + ".mlp.0", 4 * s, s, true);
    d.mlp2 = lin(p + ".mlp.2", s, 4 * s, true);
    model->decoder.push_back(std::move(d));
  }
  model->ln = norm("decoder.ln");
  return std::shared_ptr<const WhisperModel>(std::move(model));
}

}  // namespace ama
