// Word-level timestamps, after openai/whisper's timing.py: the
// cross-attention weights of the model's alignment heads over one 30 s
// window, normalised per frame over the tokens, median-filtered along time,
// averaged over the heads, and aligned to the audio frames by dynamic time
// warping; the path's jumps give each word its start and end. Then openai's
// heuristics: punctuation merged into its neighbours, over-long words at
// sentence and segment boundaries clamped, segment bounds adjusted.
//
// The pieces (median_filter, dtw, split_to_word_tokens, merge_punctuations,
// find_alignment) are plain functions so that each can be checked against
// openai's behaviour on its own (tests/test_timing.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "decode/transcript.h"
#include "engine/stages.h"
#include "model/hparams.h"
#include "text/tokenizer.h"

namespace ama {

using AttentionHead = DecoderStage::AttentionHead;

// The alignment heads of the standard models (openai's _ALIGNMENT_HEADS, as
// whisper.cpp's g_aheads tables), recognised by shape (n_text_layer,
// n_text_state, n_text_head, n_vocab, n_mels). large-v1 and large-v2 have the
// same shape; that shape gets large-v2's heads. Any other shape gets every
// head of the last half of the decoder layers (openai's default,
// alignment_heads[n_text_layer // 2:] = True). Sorted by (layer, head).
std::vector<AttentionHead> alignment_heads(const HParams& hp);
// The model's own heads when its checkpoint names them (a Hugging Face
// generation_config.json's alignment_heads), else alignment_heads(model.hp).
struct WhisperModel;
std::vector<AttentionHead> alignment_heads(const WhisperModel& model);

// openai median_filter: a median of odd `width` along the last axis of the
// row-major [rows][cols] x, with reflect padding (the edge value not
// repeated). Like openai, x is returned unchanged when cols <= width / 2.
std::vector<float> median_filter(const std::vector<float>& x, int rows, int cols, int width);

// openai dtw_cpu + backtrace over the row-major cost x [n][m]: the
// minimum-cost monotone path from (0, 0) to (n-1, m-1) with diagonal,
// down and right steps, ties going right, then down (openai's c0/c1/c2
// comparisons), accumulated in float32 like openai's cost array.
struct DtwPath {
  std::vector<int> text_indices, time_indices;  // the path's rows and columns, in order
};
DtwPath dtw(const float* x, int n, int m);

// openai Tokenizer.split_to_word_tokens: for zh, ja, th, lo, my and yue,
// split wherever the tokens so far decode to whole characters
// (split_tokens_on_unicode); otherwise also join pieces that do not start
// with a space and are not punctuation (split_tokens_on_spaces). Special
// tokens decode to their names ("<|endoftext|>"). Words are UTF-8, with
// U+FFFD for bytes that do not form a character.
struct WordTokens {
  std::vector<std::string> words;
  std::vector<std::vector<int>> tokens;
};
WordTokens split_to_word_tokens(const Tokenizer& tok, const std::vector<int>& tokens, const std::string& language);

// One aligned word (openai's WordTiming); times in seconds from the window start.
struct WordTiming {
  std::string word;
  std::vector<int> tokens;
  double start = 0, end = 0;
  double probability = 0;
};

inline constexpr const char* kPrependPunctuations = "\"'\u201c\u00bf([{-";
inline constexpr const char* kAppendPunctuations = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001";

// openai merge_punctuations: a word that starts with a space and whose
// stripped text is in `prepended` moves onto the next word; a word that is in
// `appended` moves onto the previous one unless that ends with a space. The
// emptied entries stay, with word "" and no tokens. ("in" is Python's
// substring test, as in openai.)
void merge_punctuations(std::vector<WordTiming>& alignment, const std::string& prepended = kPrependPunctuations,
                        const std::string& appended = kAppendPunctuations);

// openai find_alignment on weights the stage has already computed.
//  weights: [n_heads][n_tokens][n_ctx], each row a softmax over the n_ctx
//           audio positions, for the tokens sot_sequence (n_sot tokens),
//           no_timestamps, text_tokens, eot (n_tokens = n_sot + text + 2);
//  logits:  [n_tokens][n_vocab] for the same tokens;
//  num_frames: mel frames of the window's audio (its positions: num_frames / 2).
// Returns the words of text_tokens (without the eot word), times in seconds
// from the window start (0.02 s per position).
struct AlignmentInput {
  const float* weights = nullptr;
  int n_heads = 0, n_tokens = 0, n_ctx = 0;
  const float* logits = nullptr;
  int n_vocab = 0;
};
Result<std::vector<WordTiming>> find_alignment(const Tokenizer& tok, const std::string& language, int n_sot,
                                               const std::vector<int>& text_tokens, const AlignmentInput& in,
                                               int num_frames, int medfilt_width = 7);

struct WordTimestampOptions {
  std::string prepend_punctuations = kPrependPunctuations;
  std::string append_punctuations = kAppendPunctuations;
  int medfilt_width = 7;
};

// The part of add_word_timestamps after find_alignment: the duration clamps,
// punctuation merging, the hand-out to segments (by their counts of text
// tokens, those < eot) and the segment-boundary rules. alignment's times are
// from the window start; last_speech_timestamp is read as openai's argument
// and, on return, set like openai's transcribe loop sets it afterwards (the
// last word's end, else the last segment's end).
void distribute_words(std::vector<WordTiming> alignment, int eot, std::vector<Segment>& segments,
                      double& last_speech_timestamp, const WordTimestampOptions& options = {});

// openai add_word_timestamps for the segments of one window: aligns their
// text tokens (tokens < eot, timestamps stripped) with stage.align over
// `encoder`, clamps long words (max_duration = 2 x min(0.7, median word
// duration)), merges punctuation, hands the words out to the segments by
// token counts, shifts them by the window's offset (segments[0].seek x 0.01 s,
// rounded to 0.01 s like openai) and adjusts each segment's start and end as
// openai does. Fills Segment::words.
// sot_sequence: the window's start tokens (sot, language, task; sot alone
// for English-only models), without no_timestamps. num_frames: the window's
// mel frames (3000 for a full window). last_speech_timestamp: the end of the
// speech before this window (0 at the start); on return, the end of the last
// word, if any (as openai's transcribe loop updates it).
Status add_word_timestamps(DecoderStage& stage, std::shared_ptr<const EncoderState> encoder, const Tokenizer& tok,
                           const std::vector<int>& sot_sequence, const std::string& language,
                           const std::vector<AttentionHead>& heads, int num_frames, std::vector<Segment>& segments,
                           double& last_speech_timestamp, const WordTimestampOptions& options = {});

}  // namespace ama
