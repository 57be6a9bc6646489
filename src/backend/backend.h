// The seam between the model and the hardware. Model code (src/model) calls
// these ops and knows nothing of ISAs; a backend knows nothing of Whisper.
// A future NPU or GPU backend implements this interface.
//
// Shapes: activations are row-major float32 matrices [rows][cols] with the
// given leading dimension. Every op checks its arguments in check_* helpers
// (backend/op_checks.h) before a device implementation runs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

// int10 is a weight format, not a user-facing mode: per-channel 10-bit
// integer weights (an int8 high part and a 2-bit low part, 1.25 bytes per
// weight) times per-row 16-bit integer activations, accumulated exactly in
// int32. The int8 compute type uses it for the decoder (whisper_model.cpp,
// layer_compute_type), where plain int8 weights miss the accuracy bar.
//
// int8_bc is another: int8 weights W_q plus a second int8 code R of what
// the first missed (W - W_q), which a GEMM applies only to the column
// mean mu of its input rows, as a per-call bias correction:
// y_i = x_i W_q^T + (b + mu R^T). The systematic part of the weights'
// rounding error, mu (W - W_q)^T, which every row shares and no averaging
// over rows removes, drops ~100-fold; what is left, (x_i - mu)(W - W_q)^T,
// is the part that differs from row to row. For inputs with a large common
// component across rows (the encoder's: |mu| is 0.8 of a row's norm on the
// oracle's micro model), that is what lets the attention's value and
// output projections and the cross-attention values run on the int8 tiles
// within the accuracy bar (whisper_model.cpp, layer_compute_type). The
// correction costs one 1-row GEMM per call and a sum over the rows as they
// are quantized; the weights take 2 bytes a value, as bf16's.
enum class ComputeType { f32, bf16, int8, int10, int8_bc };
const char* compute_type_name(ComputeType t);

// gelu_q8: GELU within 7.9e-5 + 2^-14 |GELU(x)| of the erf form (x sigma
// of a fitted odd polynomial; cpu kernels.h, kGeluQ8A), at about 60% of
// the cost, for outputs that the next GEMM quantizes to 8 bits, whose step
// (a row's range / 255) is far coarser. The int8 encoder's conv1 and MLP up
// use it.
enum class Activation { none, gelu, gelu_q8 };

// A LayerNorm of each input row, applied as the row is converted for the
// GEMM (bf16 rounding or int8 quantization), so that the normalized
// activations never exist as an f32 matrix: y = ((x - mean) / sqrt(var +
// eps) * gamma + beta) W^T.
struct PreNorm {
  const float* gamma = nullptr;
  const float* beta = nullptr;
  float eps = 1e-5f;
};

class PackedMatrix;

// The weights of Backend::mlp_block: LayerNorm (may be null), the MLP's up
// and down projections, and optionally the attention's output projection
// before them, on the attention's output att [m][ld_att] in bf16 (as
// attention_mixed writes it) or in f32.
struct MlpBlock {
  const PreNorm* norm = nullptr;
  const PackedMatrix* up = nullptr;
  const float* up_bias = nullptr;
  Activation act = Activation::gelu;
  const PackedMatrix* down = nullptr;
  const float* down_bias = nullptr;
  const PackedMatrix* out_proj = nullptr;  // null: no output projection
  const float* out_bias = nullptr;
  const uint16_t* att_bf16 = nullptr;  // one of these with out_proj
  const float* att = nullptr;
  int ld_att = 0;
};

// Where a linear's outputs go: f32 (y) or bf16 (y_bf16, rounded to nearest
// even; no accumulate), exactly one of them. With split > 0 the output
// columns are blocks of `split` and column c of row r lands at
// (c / split) * split_stride + r * ldy + c % split: one GEMM over the
// stacked matrices of several layers writes each layer's block where that
// layer reads it (the decoder's cross-attention K/V, [layer][frame][state]).
struct LinearOutput {
  float* y = nullptr;
  uint16_t* y_bf16 = nullptr;
  int ldy = 0;
  int split = 0;
  size_t split_stride = 0;
};

// attention_mixed's operands: exactly one pointer of each kind set (q or
// q_bf16; k and v, or k_bf16 and v_bf16; out or out_bf16), with the row
// strides of attention().
struct AttentionOperands {
  const float* q = nullptr;
  const uint16_t* q_bf16 = nullptr;
  int ld_q = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  const uint16_t* k_bf16 = nullptr;
  const uint16_t* v_bf16 = nullptr;
  int ld_kv = 0;
  float* out = nullptr;
  uint16_t* out_bf16 = nullptr;
  int ld_out = 0;
};

// A weight matrix W[n_out][n_in] repacked once, at load, into a backend's
// preferred layout. Immutable after packing; shared by all streams.
class PackedMatrix {
 public:
  virtual ~PackedMatrix() = default;
  int n_out = 0;
  int n_in = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string describe() const = 0;
  virtual int n_threads() const = 0;
  virtual ComputeType compute_type() const = 0;

  // Packs for the backend's compute type, or for `as` when given (the model
  // keeps precision-sensitive layers at a wider type).
  virtual std::unique_ptr<PackedMatrix> pack(const float* w, int n_out, int n_in) const {
    return pack_as(w, n_out, n_in, compute_type());
  }
  virtual std::unique_ptr<PackedMatrix> pack_as(const float* w, int n_out, int n_in, ComputeType as) const = 0;

  // One matrix whose rows are the parts' rows in order ([sum n_out][n_in]),
  // from matrices this backend packed at one compute type, so that several
  // projections of the same input run as one wider GEMM (the encoder's
  // Q/K/V; the cross-attention K/V of every decoder layer). An error when
  // the parts differ in type or n_in, or when a part other than the last
  // does not fill whole panels (n_out a multiple of 32 is always enough).
  virtual Result<std::unique_ptr<PackedMatrix>> stack_packed(const std::vector<const PackedMatrix*>& parts) const = 0;

  // out[k] = W[n][k], k < n_in, as the GEMMs see it: exact for f32,
  // the bf16 value for bf16, q * scale[n] for int8 and int10 (int8_bc: its
  // first code, the one each row is multiplied by). Lets the
  // decoder look its token embedding up in the packed logits matrix
  // instead of keeping a second copy (base: 53 MB). n must be < n_out, w
  // packed by this backend.
  virtual void unpack_row(const PackedMatrix& w, int n, float* out) const = 0;

  // y[m][n] (+)= act(sum_k x[m][k] * W[n][k] + bias[n]).  With accumulate,
  // the result is added to y (a fused residual add). bias may be null.
  // Row m of x starts at x + m ldx; rows may overlap (ldx < K: a sliding
  // window, as the encoder's convolutions read their input), y must not
  // overlap x.
  virtual void linear(const float* x, int m, int ldx, const PackedMatrix& w, const float* bias, Activation act,
                      bool accumulate, float* y, int ldy) = 0;

  // The general form: an optional LayerNorm of each x row first (norm may
  // be null), outputs as described by `out` (f32 or bf16, optionally split
  // into per-layer blocks). linear() is linear_fused without a norm into
  // one f32 block.
  virtual void linear_fused(const float* x, int m, int ldx, const PreNorm* norm, const PackedMatrix& w,
                            const float* bias, Activation act, bool accumulate, const LinearOutput& out) = 0;

  // linear_fused without a norm on bf16 activations x [m][ldx] (K = w.n_in
  // values per row): the bf16 GEMM reads them in place, with no conversion
  // pass (weights of another type widen them to f32, exactly). Gives
  // linear_fused's result bit for bit when its f32 x holds the same values.
  virtual void linear_bf16_in(const uint16_t* x, int m, int ldx, const PackedMatrix& w, const float* bias,
                              Activation act, bool accumulate, const LinearOutput& out) = 0;

  // y = (x - mean) / sqrt(var + eps) * gamma + beta, per row of n.
  virtual void layer_norm(const float* x, int m, int n, int ld, const float* gamma, const float* beta, float eps,
                          float* y) = 0;

  // The position-wise half of a transformer block, in place on x [m][ldx]
  // (n = up.n_in = down.n_out columns), row by row:
  //   x += att W_o^T + b_o            (when MlpBlock::out_proj is set), then
  //   x += act(LN(x) W_up^T + b_up) W_down^T + b_down.
  // Equal bit for bit to linear_bf16_in (or linear) and then linear_fused
  // and linear through a [m][4n] hidden matrix. Rows are independent, so a
  // backend may run them in chunks that keep the hidden rows in cache (see
  // the CPU backend).
  virtual void mlp_block(float* x, int m, int ldx, const MlpBlock& b) = 0;

  // Multi-head attention: q [n_q][ld_q], k and v [n_kv][ld_kv], heads of
  // d_head side by side. Scores are q.k * d_head^-0.5 (Whisper scales q and
  // k each by d_head^-0.25). With causal, query i sits at position
  // q_pos0 + i and sees keys 0..q_pos0 + i. out [n_q][ld_out].
  virtual void attention(const float* q, int n_q, int ld_q, const float* k, const float* v, int n_kv, int ld_kv,
                         int n_head, int d_head, bool causal, int q_pos0, float* out, int ld_out) = 0;

  // The same with K and V in bf16 (the decoder's caches at bf16/int8 compute).
  virtual void attention_bf16kv(const float* q, int n_q, int ld_q, const uint16_t* k, const uint16_t* v, int n_kv,
                                int ld_kv, int n_head, int d_head, bool causal, int q_pos0, float* out,
                                int ld_out) = 0;

  // The general form: Q, K/V (both alike) and the output each in f32 or
  // bf16 (AttentionOperands). A bf16 output is the f32 result rounded to
  // nearest even, row by row as it is finished, so that the next bf16
  // GEMM (linear_bf16_in) reads it without a conversion pass; bf16 Q is
  // what the bf16/int8 kernels round Q to anyway. The encoder at bf16/int8
  // compute runs [q | k | v] and its output this way.
  virtual void attention_mixed(const AttentionOperands& io, int n_q, int n_kv, int n_head, int d_head, bool causal,
                               int q_pos0) = 0;
};

}  // namespace ama
