// An independent float64 implementation of the Whisper forward pass
// (openai/whisper model.py), used by the tests to check the float32 engine at
// real shapes. It shares nothing with src/model/encoder.*, decoder.*,
// whisper_model.* or the backend: it reads the ggml file with GgmlReader into
// its own double arrays and computes everything in double, with exact-erf
// GELU, two-pass LayerNorm (eps 1e-5) and max-subtracted softmax.
//
// The big products run through a blocked double GEMM on two threads, so the
// base encoder (~90 GFLOP) takes seconds, not minutes.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/hparams.h"

namespace ama::test {

// C[M][N] = A[M][K] * op(B) + bias[N] (bias may be null).
// b_nk: B is [N][K] (a torch Linear weight, ldb >= K); otherwise B is [K][N] (ldb >= N).
// Deterministic: the summation order does not depend on n_threads.
void ref_gemm(int M, int N, int K, const double* A, int lda, const double* B, int ldb, bool b_nk, const double* bias,
              double* C, int ldc, int n_threads = 2);

struct RefWhisper {
  HParams hp;
  struct Tensor {
    std::vector<int> shape;  // PyTorch order
    std::vector<double> data;
  };
  std::map<std::string, Tensor> tensors;

  static Result<RefWhisper> load(const std::string& path);

  // mel: normalized log-mel [n_mels][ld], ld >= 3000; the first 3000 columns
  // are the window. Returns the encoder output after ln_post: [n_audio_ctx][n_audio_state].
  std::vector<double> encode(const float* mel, int ld) const;

  // Logits for tokens fed from position 0 (causal self-attention,
  // cross-attention to enc): [tokens.size()][n_vocab]; row i predicts token i+1.
  std::vector<double> logits(const std::vector<double>& enc, const std::vector<int>& tokens) const;

  // The named tensor; aborts the process if it is missing or has another shape
  // (load() already checked every tensor the forward pass uses).
  const double* get(const std::string& name, const std::vector<int>& shape) const;
};

}  // namespace ama::test
