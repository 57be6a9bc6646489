#include "model/hf_checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "audio/mel.h"
#include "model/tensor_source.h"
#include "model/whisper_model.h"
#include "text/tokenizer.h"

namespace ama {

namespace {

using json = nlohmann::json;

// config.json and generation_config.json are a few kB; tokenizer.json is
// 2.5 MB for large-v3 (vocab, merges and added tokens). Far larger files are
// not these files, and reading them whole would only waste memory.
constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr size_t kMaxTokenizerBytes = 64 << 20;
// A valid config nests 2 levels (objects in task_specific_params, arrays of
// suppress tokens); the cap keeps a hostile file from costing more than a
// flat scan before the parser sees it.
constexpr int kMaxJsonDepth = 32;

// (transformers' sub-module, openai/whisper's) within a layer.
constexpr std::pair<const char*, const char*> kLayerParts[] = {
    {"self_attn.q_proj", "attn.query"},
    {"self_attn.k_proj", "attn.key"},
    {"self_attn.v_proj", "attn.value"},
    {"self_attn.out_proj", "attn.out"},
    {"self_attn_layer_norm", "attn_ln"},
    {"encoder_attn.q_proj", "cross_attn.query"},
    {"encoder_attn.k_proj", "cross_attn.key"},
    {"encoder_attn.v_proj", "cross_attn.value"},
    {"encoder_attn.out_proj", "cross_attn.out"},
    {"encoder_attn_layer_norm", "cross_attn_ln"},
    {"fc1", "mlp.0"},
    {"fc2", "mlp.2"},
    {"final_layer_norm", "mlp_ln"},
};

// (transformers', openai/whisper's) outside the layers, after "model.".
constexpr std::pair<const char*, const char*> kTopLevel[] = {
    {"encoder.conv1.weight", "encoder.conv1.weight"},
    {"encoder.conv1.bias", "encoder.conv1.bias"},
    {"encoder.conv2.weight", "encoder.conv2.weight"},
    {"encoder.conv2.bias", "encoder.conv2.bias"},
    {"encoder.embed_positions.weight", "encoder.positional_embedding"},
    {"encoder.layer_norm.weight", "encoder.ln_post.weight"},
    {"encoder.layer_norm.bias", "encoder.ln_post.bias"},
    {"decoder.embed_tokens.weight", "decoder.token_embedding.weight"},
    {"decoder.embed_positions.weight", "decoder.positional_embedding"},
    {"decoder.layer_norm.weight", "decoder.ln.weight"},
    {"decoder.layer_norm.bias", "decoder.ln.bias"},
};

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Splits "<side>.<layers_word>.<N>.<part>.<weight|bias>" into side, N, part
// and param; false when the name has another form.
bool split_layer_name(std::string_view name, std::string_view layers_word, std::string& side, std::string& index,
                      std::string& part, std::string& param) {
  for (const char* s : {"encoder.", "decoder."}) {
    if (!starts_with(name, s)) continue;
    std::string_view rest = name.substr(8);
    if (!starts_with(rest, layers_word) || rest.size() <= layers_word.size() || rest[layers_word.size()] != '.')
      return false;
    rest.remove_prefix(layers_word.size() + 1);
    const size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string_view::npos) return false;
    for (size_t i = 0; i < dot; ++i)
      if (rest[i] < '0' || rest[i] > '9') return false;
    index = std::string(rest.substr(0, dot));
    rest.remove_prefix(dot + 1);
    const size_t last = rest.rfind('.');
    if (last == 0 || last == std::string_view::npos) return false;
    part = std::string(rest.substr(0, last));
    param = std::string(rest.substr(last + 1));
    if (param != "weight" && param != "bias") return false;
    side = std::string(s, 7);
    return true;
  }
  return false;
}

// Max nesting of brackets outside strings; stops counting past the cap.
bool json_depth_ok(std::string_view text, int cap) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > cap) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

// Parses JSON without throwing; `what` names the file in messages.
Result<json> parse_json(std::string_view text, const std::string& what) {
  if (!json_depth_ok(text, kMaxJsonDepth))
    return make_error(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ..."
    std::string why = e.what();
    const size_t cut = why.find("] ");
    return make_error(what + ": bad JSON: " + (cut == std::string::npos ? why : why.substr(cut + 2)));
  }
}

Result<std::string> read_file(const std::string& path, size_t max_bytes, const std::string& role) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    if (errno == ENOENT) return make_error(path + ": missing (" + role + ")");
    return make_error(path + ": cannot open: " + std::strerror(errno));
  }
  std::string text;
  char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, got);
    if (text.size() > max_bytes) {
      std::fclose(f);
      return make_error(path + ": larger than " + std::to_string(max_bytes) + " bytes; not a " + role + " file?");
    }
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return make_error(path + ": cannot read (" + role + ")");
  return text;
}

bool exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

// The tokenizer from vocab.json (or tokenizer.json's model.vocab), with the
// special tokens of added_tokens.json (or tokenizer.json's added_tokens)
// checked against the layout our Tokenizer derives from n_vocab.
Result<Tokenizer> hf_tokenizer(const std::string& dir, int n_vocab) {
  const std::string vocab_path = dir + "/vocab.json", added_path = dir + "/added_tokens.json",
                    fast_path = dir + "/tokenizer.json";
  const bool has_vocab = exists(vocab_path), has_added = exists(added_path), has_fast = exists(fast_path);
  if (!has_vocab && !has_fast)
    return make_error(dir + ": missing vocab.json and tokenizer.json (the tokenizer's vocabulary)");
  if (!has_added && !has_fast)
    return make_error(dir + ": missing added_tokens.json and tokenizer.json (the special tokens)");
  json fast;
  if (has_fast && (!has_vocab || !has_added)) {
    auto text = read_file(fast_path, kMaxTokenizerBytes, "tokenizer");
    if (!text) return text.error();
    auto j = parse_json(*text, fast_path);
    if (!j) return j.error();
    fast = std::move(j.value());
    if (!fast.is_object()) return make_error(fast_path + ": not a JSON object");
  }
  // name -> id, from every file; one name may appear in several.
  std::vector<std::pair<std::string, int64_t>> entries;
  std::string vocab_where;
  auto take_object = [&](const json& obj, const std::string& where) -> Status {
    if (!obj.is_object()) return make_error(where + ": expected an object of token -> id");
    for (const auto& [name, id] : obj.items()) {
      if (!id.is_number_integer())
        return make_error(where + ": token \"" + name + "\" has a non-integer id " + id.dump());
      entries.emplace_back(name, id.get<int64_t>());
    }
    return Status::Ok();
  };
  if (has_vocab) {
    auto text = read_file(vocab_path, kMaxTokenizerBytes, "tokenizer vocabulary");
    if (!text) return text.error();
    auto j = parse_json(*text, vocab_path);
    if (!j) return j.error();
    AMA_TRY(take_object(*j, vocab_path));
    vocab_where = vocab_path;
  } else {
    const json* v = fast.contains("model") && fast["model"].is_object() && fast["model"].contains("vocab")
                        ? &fast["model"]["vocab"]
                        : nullptr;
    if (!v) return make_error(fast_path + ": no model.vocab");
    AMA_TRY(take_object(*v, fast_path + " model.vocab"));
    vocab_where = fast_path;
  }
  const size_t n_from_vocab = entries.size();
  if (has_added) {
    auto text = read_file(added_path, kMaxConfigBytes * 4, "special tokens");
    if (!text) return text.error();
    auto j = parse_json(*text, added_path);
    if (!j) return j.error();
    AMA_TRY(take_object(*j, added_path));
  } else {
    if (!fast.contains("added_tokens") || !fast["added_tokens"].is_array())
      return make_error(fast_path + ": no added_tokens list");
    for (const json& t : fast["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string())
        return make_error(fast_path + ": an added_tokens entry lacks an integer id or a string content");
      entries.emplace_back(t["content"].get<std::string>(), t["id"].get<int64_t>());
    }
  }
  // The regular tokens are the ids below <|endoftext|>.
  int64_t eot = -1;
  for (const auto& [name, id] : entries)
    if (name == "<|endoftext|>") eot = id;
  if (eot < 0) return make_error(dir + ": the tokenizer files have no <|endoftext|> token");
  if (eot >= n_vocab)
    return make_error(dir + ": <|endoftext|> has id " + std::to_string(eot) + ", outside vocab_size " +
                      std::to_string(n_vocab));
  std::vector<std::string> regular(static_cast<size_t>(eot));
  std::vector<bool> seen(regular.size(), false);
  for (size_t i = 0; i < n_from_vocab; ++i) {
    const auto& [name, id] = entries[i];
    if (id < 0 || id >= n_vocab)
      return make_error(vocab_where + ": token id " + std::to_string(id) + " is outside vocab_size " +
                        std::to_string(n_vocab));
    if (id >= eot) continue;  // specials, checked below
    if (seen[id]) return make_error(vocab_where + ": token id " + std::to_string(id) + " appears twice");
    seen[id] = true;
    regular[id] = name;
  }
  for (size_t id = 0; id < regular.size(); ++id)
    if (!seen[id]) return make_error(vocab_where + ": no token has id " + std::to_string(id));
  auto tok = Tokenizer::from_gpt2_unicode(regular, n_vocab);
  if (!tok) return make_error(vocab_where + ": " + tok.message());
  for (const auto& [name, id] : entries) {
    if (id < eot) continue;
    if (id >= n_vocab)
      return make_error(dir + ": special token \"" + name + "\" has id " + std::to_string(id) +
                        ", outside vocab_size " + std::to_string(n_vocab));
    const std::string ours = tok->token_text(static_cast<int>(id));
    // openai's tokenizer called <|nospeech|> <|nocaptions|> before large-v3.
    if (name == ours || (name == "<|nocaptions|>" && ours == "<|nospeech|>")) continue;
    return make_error(dir + ": special token \"" + name + "\" has id " + std::to_string(id) + ", where a Whisper " +
                      "model with vocab_size " + std::to_string(n_vocab) + " has \"" + ours + "\"");
  }
  return tok;
}

}  // namespace

Result<HParams> parse_hf_config(std::string_view text) {
  auto parsed = parse_json(text, "config.json");
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  if (!j.is_object()) return make_error("config.json: not a JSON object");
  auto integer = [&](const char* key, int& out) -> Status {
    if (!j.contains(key)) return make_error(std::string("config.json: missing \"") + key + "\"");
    const json& v = j[key];
    if (!v.is_number_integer()) return make_error(std::string("config.json: \"") + key + "\" is not an integer");
    const int64_t x = v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), INT64_MAX))
                                             : v.get<int64_t>();
    if (x < 0 || x > (1 << 30))
      return make_error(std::string("config.json: \"") + key + "\" = " + v.dump() + " is out of range");
    out = static_cast<int>(x);
    return Status::Ok();
  };
  if (j.contains("model_type") && j["model_type"] != "whisper")
    return make_error("config.json: model_type is " + j["model_type"].dump() + ", not \"whisper\"");
  HParams hp;
  int d_model = 0;
  AMA_TRY(integer("d_model", d_model));
  hp.n_audio_state = hp.n_text_state = d_model;
  AMA_TRY(integer("encoder_layers", hp.n_audio_layer));
  AMA_TRY(integer("encoder_attention_heads", hp.n_audio_head));
  AMA_TRY(integer("decoder_layers", hp.n_text_layer));
  AMA_TRY(integer("decoder_attention_heads", hp.n_text_head));
  AMA_TRY(integer("num_mel_bins", hp.n_mels));
  AMA_TRY(integer("vocab_size", hp.n_vocab));
  AMA_TRY(integer("max_source_positions", hp.n_audio_ctx));
  AMA_TRY(integer("max_target_positions", hp.n_text_ctx));
  // Our encoder and decoder compute openai/whisper's blocks: MLPs of 4 x
  // d_model with GELU, unscaled embeddings. Other settings transformers
  // allows would load and compute something else.
  for (const char* key : {"encoder_ffn_dim", "decoder_ffn_dim"}) {
    if (!j.contains(key)) continue;
    int ffn = 0;
    AMA_TRY(integer(key, ffn));
    // 64-bit: d_model may be up to 2^30 here (validate_hparams runs last), and 4 x 2^30 overflows int.
    const int64_t mlp = 4 * static_cast<int64_t>(d_model);
    if (ffn != mlp)
      return make_error(std::string("config.json: ") + key + " = " + std::to_string(ffn) +
                        " is not supported (our MLPs are 4 x d_model = " + std::to_string(mlp) + ")");
  }
  if (j.contains("activation_function") && j["activation_function"] != "gelu")
    return make_error("config.json: activation_function " + j["activation_function"].dump() +
                      " is not supported (only \"gelu\")");
  if (j.contains("scale_embedding") && j["scale_embedding"] != false)
    return make_error("config.json: scale_embedding " + j["scale_embedding"].dump() + " is not supported");
  // ftype says whether the matrices are stored in 16 bits; it only informs.
  for (const char* key : {"torch_dtype", "dtype"})
    if (j.contains(key) && j[key].is_string())
      hp.ftype = j[key] == "float16" || j[key] == "bfloat16" ? 1 : 0;
  Status valid = validate_hparams(hp);
  if (!valid) return make_error("config.json: " + valid.message());
  return hp;
}

std::string hf_to_openai_name(const std::string& hf) {
  if (hf == "proj_out.weight") return "";
  if (!starts_with(hf, "model.")) return hf;
  const std::string_view rest = std::string_view(hf).substr(6);
  for (const auto& [from, to] : kTopLevel)
    if (rest == from) return to;
  std::string side, index, part, param;
  if (!split_layer_name(rest, "layers", side, index, part, param)) return hf;
  for (const auto& [from, to] : kLayerParts)
    if (part == from) return side + ".blocks." + index + "." + to + "." + param;
  return hf;
}

std::string openai_to_hf_name(const std::string& name) {
  for (const auto& [hf, ours] : kTopLevel)
    if (name == ours) return std::string("model.") + hf;
  std::string side, index, part, param;
  if (!split_layer_name(name, "blocks", side, index, part, param)) return "";
  for (const auto& [hf, ours] : kLayerParts)
    if (part == ours) return "model." + side + ".layers." + index + "." + hf + "." + param;
  return "";
}

Result<std::vector<std::pair<int, int>>> parse_hf_alignment_heads(std::string_view text, const HParams& hp) {
  auto parsed = parse_json(text, "generation_config.json");
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  if (!j.is_object()) return make_error("generation_config.json: not a JSON object");
  std::vector<std::pair<int, int>> heads;
  if (!j.contains("alignment_heads") || j["alignment_heads"].is_null()) return heads;
  const json& a = j["alignment_heads"];
  const std::string bad = "generation_config.json: alignment_heads must be a list of [layer, head] pairs";
  if (!a.is_array()) return make_error(bad);
  for (const json& p : a) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() || !p[1].is_number_integer())
      return make_error(bad);
    const int64_t layer = p[0].get<int64_t>(), head = p[1].get<int64_t>();
    if (layer < 0 || layer >= hp.n_text_layer || head < 0 || head >= hp.n_text_head)
      return make_error("generation_config.json: alignment head [" + std::to_string(layer) + ", " +
                        std::to_string(head) + "] is outside the decoder's " + std::to_string(hp.n_text_layer) +
                        " layers x " + std::to_string(hp.n_text_head) + " heads");
    heads.emplace_back(static_cast<int>(layer), static_cast<int>(head));
  }
  std::sort(heads.begin(), heads.end());
  heads.erase(std::unique(heads.begin(), heads.end()), heads.end());
  return heads;
}

Result<std::shared_ptr<const WhisperModel>> load_hf_checkpoint(const std::string& dir, const Backend& backend) {
  // A directory without config.json is most likely a wrong -m argument.
  if (!exists(dir + "/config.json"))
    return make_error(dir + ": not a regular file, and not a Hugging Face checkpoint directory (no config.json)");
  auto config = read_file(dir + "/config.json", kMaxConfigBytes, "the model's config");
  if (!config) return config.error();
  auto hp = parse_hf_config(*config);
  if (!hp) return make_error(dir + "/" + hp.message());
  auto tok = hf_tokenizer(dir, hp->n_vocab);
  if (!tok) return tok.error();
  auto model = std::make_shared<WhisperModel>(std::move(tok.value()));
  model->path = dir;
  model->hp = *hp;
  model->mel_filters = slaney_mel_filters(hp->n_mels);
  const std::string gen_path = dir + "/generation_config.json";
  if (exists(gen_path)) {
    auto gen = read_file(gen_path, kMaxConfigBytes, "generation config");
    if (!gen) return gen.error();
    auto heads = parse_hf_alignment_heads(*gen, *hp);
    if (!heads) return make_error(dir + "/" + heads.message());
    model->alignment_heads = std::move(heads.value());
  }
  const std::string weights = dir + "/model.safetensors";
  if (!exists(weights)) {
    if (exists(dir + "/model.safetensors.index.json"))
      return make_error(dir + ": sharded safetensors checkpoints (model.safetensors.index.json) are not supported");
    if (exists(dir + "/pytorch_model.bin"))
      return make_error(dir + ": has pytorch_model.bin but no model.safetensors; only safetensors weights are read");
    return make_error(dir + "/model.safetensors: missing (the weights)");
  }
  auto source = safetensors_tensor_source(weights, hf_to_openai_name);
  if (!source) return source.error();
  AMA_TRY(load_weights(**source, backend, *model));
  release_free_heap();
  return std::shared_ptr<const WhisperModel>(std::move(model));
}

}  // namespace ama
