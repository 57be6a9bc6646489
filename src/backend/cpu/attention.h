// CPU attention. Two algorithms behind the backend's attention op:
//  - flash: queries in register tiles stream over key blocks with an online
//    softmax, so the n_q x n_kv score matrix never exists (encoder: 1500 x
//    1500 per head would be 9 MB); scores and the value sums run on the
//    table's GEMM tiles.
//  - rows: one query at a time (decoder steps, prompts), over f32 or bf16
//    K/V caches.
#pragma once

#include <cstdint>

#include "backend/cpu/kernels.h"
#include "core/thread_pool.h"

namespace ama::cpu {

struct AttentionArgs {
  const float* q;
  int n_q, ld_q;
  int n_kv, ld_kv;
  int n_head, d_head;
  bool causal;
  int q_pos0;
  float* out;
  int ld_out;
  // bf16 Q (q null) or output (out null), same strides: taken by the d_head
  // 64 path of attention_flash_bf16 (attention_flash_d64) only; the backend
  // runs the other paths in f32 and converts around them.
  const uint16_t* q_bf16 = nullptr;
  uint16_t* out_bf16 = nullptr;
};

void attention_flash_f32(const KernelTable& k, ThreadPool& pool, const AttentionArgs& a, const float* keys,
                         const float* values);

// The same with Q, K, P and V in bf16, scores and sums in f32. For the bf16
// and int8 compute types; K and V in f32 (the encoder) or already in bf16 (a
// decoder prompt's cross-attention). d_head 64 without a mask (every Whisper
// encoder) runs the dedicated kernels of flash_attention.h (AVX-512 BF16,
// AMX, or portable, by the table's ISA); other head sizes run on the table's
// bf16 GEMM tiles. int8_scores: the d_head 64 path may take a kernel with
// int8 Q K^T where the ISA has one (the int8 compute type); false keeps the
// scores in bf16 (the bf16 compute type).
template <typename KV>  // float or uint16_t (bf16)
void attention_flash_bf16(const KernelTable& k, ThreadPool& pool, const AttentionArgs& a, const KV* keys,
                          const KV* values, bool int8_scores);

template <typename KV>  // float or uint16_t (bf16)
void attention_rows(const KernelTable& k, ThreadPool& pool, const AttentionArgs& a, const KV* keys, const KV* values);

}  // namespace ama::cpu
