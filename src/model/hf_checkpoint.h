// Hugging Face `openai/whisper-*` checkpoints, as transformers'
// save_pretrained writes them: a directory with
//   config.json             the dimensions (d_model, encoder_layers, ...)
//   model.safetensors       the weights, F32, F16 or BF16, named as in
//                           transformers' modeling_whisper.py
//   vocab.json              the BPE vocabulary (GPT-2 byte-level spelling),
//                           or tokenizer.json's model.vocab
//   added_tokens.json       the special tokens (or tokenizer.json's
//                           added_tokens), checked against our layout
//   generation_config.json  optional: alignment_heads for word timestamps
// The mel filterbank is computed (slaney_mel_filters), as these directories
// do not carry it outside preprocessor_config.json.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/result.h"
#include "model/hparams.h"

namespace ama {

struct WhisperModel;

// config.json's text to our hparams, validated (validate_hparams). Requires
// d_model, encoder_layers, encoder_attention_heads, decoder_layers,
// decoder_attention_heads, num_mel_bins, vocab_size, max_source_positions
// and max_target_positions as integers; refuses shapes our encoder and
// decoder do not compute (ffn dims other than 4 * d_model, an activation
// other than gelu, scaled embeddings, a model_type other than whisper).
// Never throws; messages start with "config.json: ".
Result<HParams> parse_hf_config(std::string_view json);

// transformers' tensor name to openai/whisper's ("model.encoder.layers.3.
// self_attn.q_proj.weight" -> "encoder.blocks.3.attn.query.weight"); "" for
// proj_out.weight (the output projection, tied to embed_tokens; save_pretrained
// usually drops it); the name unchanged when it is not a Whisper tensor.
std::string hf_to_openai_name(const std::string& hf_name);
// The inverse, for writing checkpoints (tests); "" for an unknown name.
std::string openai_to_hf_name(const std::string& name);

// generation_config.json's "alignment_heads" ([[layer, head], ...]),
// checked against hp; empty when the key is absent.
Result<std::vector<std::pair<int, int>>> parse_hf_alignment_heads(std::string_view json, const HParams& hp);

// Loads the checkpoint directory `dir` (see above).
Result<std::shared_ptr<const WhisperModel>> load_hf_checkpoint(const std::string& dir, const Backend& backend);

}  // namespace ama
