#include "model/hparams.h"

#include <map>

namespace ama {

namespace {

struct Limit {
  const char* name;
  int HParams::*field;
  int lo, hi;
};

// Upper bounds are far above any released model (large-v3: 1280 state,
// 32 layers, 51866 vocab) but low enough that sizes cannot overflow.
constexpr Limit kLimits[] = {
    {"n_vocab", &HParams::n_vocab, 51864, 1 << 20},
    {"n_audio_ctx", &HParams::n_audio_ctx, 1, 1 << 16},
    {"n_audio_state", &HParams::n_audio_state, 1, 16384},
    {"n_audio_head", &HParams::n_audio_head, 1, 1024},
    {"n_audio_layer", &HParams::n_audio_layer, 1, 512},
    {"n_text_ctx", &HParams::n_text_ctx, 4, 1 << 16},
    {"n_text_state", &HParams::n_text_state, 1, 16384},
    {"n_text_head", &HParams::n_text_head, 1, 1024},
    {"n_text_layer", &HParams::n_text_layer, 1, 512},
    {"n_mels", &HParams::n_mels, 1, 512},
    {"ftype", &HParams::ftype, 0, 1 << 30},
};

HParams make(int vocab, int state, int head, int enc_layers, int dec_layers, int mels) {
  HParams hp;
  hp.n_vocab = vocab;
  hp.n_audio_ctx = kAudioCtx;
  hp.n_audio_state = state;
  hp.n_audio_head = head;
  hp.n_audio_layer = enc_layers;
  hp.n_text_ctx = 448;
  hp.n_text_state = state;
  hp.n_text_head = head;
  hp.n_text_layer = dec_layers;
  hp.n_mels = mels;
  hp.ftype = 1;
  return hp;
}

const std::vector<std::pair<std::string, HParams>>& standard_table() {
  static const std::vector<std::pair<std::string, HParams>> table = {
      {"tiny", make(51865, 384, 6, 4, 4, 80)},
      {"tiny.en", make(51864, 384, 6, 4, 4, 80)},
      {"base", make(51865, 512, 8, 6, 6, 80)},
      {"base.en", make(51864, 512, 8, 6, 6, 80)},
      {"small", make(51865, 768, 12, 12, 12, 80)},
      {"small.en", make(51864, 768, 12, 12, 12, 80)},
      {"medium", make(51865, 1024, 16, 24, 24, 80)},
      {"medium.en", make(51864, 1024, 16, 24, 24, 80)},
      {"large-v1", make(51865, 1280, 20, 32, 32, 80)},
      {"large-v2", make(51865, 1280, 20, 32, 32, 80)},
      {"large-v3", make(51866, 1280, 20, 32, 32, 128)},
      {"large-v3-turbo", make(51866, 1280, 20, 32, 4, 128)},
  };
  return table;
}

}  // namespace

Status validate_hparams(const HParams& hp) {
  for (const Limit& l : kLimits) {
    int v = hp.*(l.field);
    if (v < l.lo || v > l.hi)
      return make_error("hparam " + std::string(l.name) + " = " + std::to_string(v) + " is outside [" +
                        std::to_string(l.lo) + ", " + std::to_string(l.hi) + "]");
  }
  if (hp.n_audio_state % hp.n_audio_head != 0)
    return make_error("n_audio_state " + std::to_string(hp.n_audio_state) + " is not divisible by n_audio_head " +
                      std::to_string(hp.n_audio_head));
  if (hp.n_text_state % hp.n_text_head != 0)
    return make_error("n_text_state " + std::to_string(hp.n_text_state) + " is not divisible by n_text_head " +
                      std::to_string(hp.n_text_head));
  if (hp.n_audio_ctx != kAudioCtx)
    return make_error("n_audio_ctx = " + std::to_string(hp.n_audio_ctx) +
                      ": Whisper's 30 s windows need exactly 1500 audio positions");
  if (hp.n_audio_state != hp.n_text_state)
    return make_error("n_audio_state " + std::to_string(hp.n_audio_state) + " differs from n_text_state " +
                      std::to_string(hp.n_text_state) + " (cross-attention needs them equal)");
  return Status::Ok();
}

Result<HParams> standard_hparams(const std::string& arch) {
  std::string name = arch == "turbo" || arch == "large-v3-turbo" ? "large-v3-turbo" : arch;
  if (name == "large") name = "large-v3";
  for (const auto& [n, hp] : standard_table())
    if (n == name) return hp;
  std::string known;
  for (const auto& n : standard_arch_names()) known += (known.empty() ? "" : ", ") + n;
  return make_error("unknown architecture '" + arch + "' (known: " + known + ")");
}

std::vector<std::string> standard_arch_names() {
  std::vector<std::string> names;
  for (const auto& [n, hp] : standard_table()) names.push_back(n);
  return names;
}

std::string arch_name(const HParams& hp) {
  HParams a = hp;
  a.ftype = 1;
  for (const auto& [n, s] : standard_table())
    if (s == a && n != "large-v1") return n == "large-v2" ? "large-v1/v2" : n;
  return "custom";
}

std::vector<TensorSpec> expected_tensors(const HParams& hp) {
  std::vector<TensorSpec> t;
  const int a = hp.n_audio_state, s = hp.n_text_state;
  auto add = [&](std::string name, std::vector<int> shape, TensorKind kind) {
    t.push_back({std::move(name), std::move(shape), kind});
  };
  auto attention = [&](const std::string& p, int n) {
    add(p + ".query.weight", {n, n}, TensorKind::matrix);
    add(p + ".query.bias", {n}, TensorKind::vector);
    add(p + ".key.weight", {n, n}, TensorKind::matrix);
    add(p + ".value.weight", {n, n}, TensorKind::matrix);
    add(p + ".value.bias", {n}, TensorKind::vector);
    add(p + ".out.weight", {n, n}, TensorKind::matrix);
    add(p + ".out.bias", {n}, TensorKind::vector);
  };
  auto norm = [&](const std::string& p, int n) {
    add(p + ".weight", {n}, TensorKind::vector);
    add(p + ".bias", {n}, TensorKind::vector);
  };
  auto mlp = [&](const std::string& p, int n) {
    add(p + ".mlp.0.weight", {4 * n, n}, TensorKind::matrix);
    add(p + ".mlp.0.bias", {4 * n}, TensorKind::vector);
    add(p + ".mlp.2.weight", {n, 4 * n}, TensorKind::matrix);
    add(p + ".mlp.2.bias", {n}, TensorKind::vector);
  };
  add("encoder.positional_embedding", {hp.n_audio_ctx, a}, TensorKind::positional);
  add("encoder.conv1.weight", {a, hp.n_mels, 3}, TensorKind::matrix);
  add("encoder.conv1.bias", {a, 1}, TensorKind::conv_bias);
  add("encoder.conv2.weight", {a, a, 3}, TensorKind::matrix);
  add("encoder.conv2.bias", {a, 1}, TensorKind::conv_bias);
  for (int l = 0; l < hp.n_audio_layer; ++l) {
    std::string p = "encoder.blocks." + std::to_string(l);
    attention(p + ".attn", a);
    norm(p + ".attn_ln", a);
    mlp(p, a);
    norm(p + ".mlp_ln", a);
  }
  norm("encoder.ln_post", a);
  add("decoder.positional_embedding", {hp.n_text_ctx, s}, TensorKind::positional);
  add("decoder.token_embedding.weight", {hp.n_vocab, s}, TensorKind::matrix);
  for (int l = 0; l < hp.n_text_layer; ++l) {
    std::string p = "decoder.blocks." + std::to_string(l);
    attention(p + ".attn", s);
    norm(p + ".attn_ln", s);
    attention(p + ".cross_attn", s);
    norm(p + ".cross_attn_ln", s);
    mlp(p, s);
    norm(p + ".mlp_ln", s);
  }
  norm("decoder.ln", s);
  return t;
}

}  // namespace ama
