#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/flash_attention.h"
#include "backend/cpu/unpack.h"
#include "backend/op_checks.h"
#include "core/half.h"
#include "core/huge_pages.h"

namespace ama {

const char* compute_type_name(ComputeType t) {
  switch (t) {
    case ComputeType::f32: return "f32";
    case ComputeType::bf16: return "bf16";
    case ComputeType::int8: return "int8";
    case ComputeType::int10: return "int10";
    case ComputeType::int8_bc: return "int8-bc";
  }
  return "?";
}

namespace {

class F32Panels final : public PackedMatrix {
 public:
  HugeVector<float> data;  // cpu::pack_f32_panels layout
};

class Bf16Panels final : public PackedMatrix {
 public:
  HugeVector<uint16_t> data;  // cpu::pack_bf16_panels layout
};

class I8Panels final : public PackedMatrix {
 public:
  HugeVector<int8_t> data;  // cpu::pack_i8_panels layout
  std::vector<float> scale;
  std::vector<int32_t> col_sum;
  // int8_bc (backend.h): for output rows residual_row0.. (all of them but
  // for a stack whose first parts are plain int8), the int8 code of
  // W - scale q, applied to the input rows' column mean.
  std::unique_ptr<I8Panels> residual;
  int residual_row0 = 0;
};

class I10Panels final : public PackedMatrix {
 public:
  HugeVector<uint8_t> data;  // cpu::pack_i10_panels layout
  std::vector<float> scale;
  std::vector<int32_t> col_sum;
};

// Per-thread scratch for converted activations, reused across calls.
// Tag separates buffers of one type: the calling thread's activation
// buffers (tag 0) are read by every worker while each worker, the caller
// included, normalizes rows in its own row buffer (tag 1).
template <typename T, int Tag = 0>
T* scratch(size_t n) {
  thread_local HugeVector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Work split for a GEMM: blocks of rows by blocks of columns. Block sizes are
// fixed numbers, independent of the thread count, so results never depend on it.
constexpr int kRowBlock = 96;    // multiple of every row tile (4, 6, 32)
constexpr int kColBlock = 128;   // 8 panels: 128 x K floats of weights stay in L2 for K <= 2048

class CpuBackend final : public Backend {
 public:
  // small: the table for GEMMs of fewer than 16 rows (AMX tiles are 16 rows
  // tall, so decode steps run on AVX-512 instead of padding 1 row to 32).
  CpuBackend(const cpu::KernelTable& k, const cpu::KernelTable& small, int n_threads, ComputeType compute)
      : k_(k), small_(small), pool_(n_threads), compute_(compute) {}

  std::string describe() const override {
    auto gemm_name = [&](const cpu::KernelTable& t) {
      switch (compute_) {
        case ComputeType::f32: return t.gemm_f32_name;
        case ComputeType::bf16: return t.gemm_bf16_name;
        case ComputeType::int8: return t.gemm_i8_name;
        case ComputeType::int10: break;
        case ComputeType::int8_bc: return t.gemm_i8_name;
      }
      return t.gemm_i10_name;
    };
    std::string s = std::string("cpu isa=") + isa_name(k_.isa) + " threads=" + std::to_string(pool_.size()) +
                    " compute=" + compute_type_name(compute_) + " gemm=" + gemm_name(k_);
    if (&small_ != &k_ && compute_ != ComputeType::f32)
      s += std::string(" gemm_under_16_rows=") + gemm_name(small_);
    if (compute_ == ComputeType::int8)
      s += std::string(" (encoder MLPs, convolutions and attention; cross-attention keys and values) gemm_int10=") +
           k_.gemm_i10_name + " (decoder)";
    if (compute_ != ComputeType::f32) s += std::string(" gemm_f32=") + k_.gemm_f32_name;
    return s + " attention=" + k_.attend_name + " rowops=" + k_.vector_name;
  }
  int n_threads() const override { return pool_.size(); }
  ComputeType compute_type() const override { return compute_; }

  std::unique_ptr<PackedMatrix> pack_as(const float* w, int n_out, int n_in, ComputeType as) const override {
    std::unique_ptr<PackedMatrix> result;
    const size_t np = cpu::panel_count(n_out);
    switch (as) {
      case ComputeType::f32: {
        auto p = std::make_unique<F32Panels>();
        p->data.resize(np * n_in * cpu::kPanelWidth);
        cpu::pack_f32_panels(w, n_out, n_in, p->data.data());
        result = std::move(p);
        break;
      }
      case ComputeType::bf16: {
        auto p = std::make_unique<Bf16Panels>();
        p->data.resize(np * cpu::bf16_k_pairs(n_in) * 2 * cpu::kPanelWidth);
        cpu::pack_bf16_panels(w, n_out, n_in, p->data.data());
        result = std::move(p);
        break;
      }
      case ComputeType::int8:
        result = pack_i8(w, n_out, n_in);
        break;
      case ComputeType::int8_bc: {
        auto p = pack_i8(w, n_out, n_in);
        // What the first code missed, w - scale q, computed in f32: the
        // subtraction is exact (Sterbenz: |scale q - w| <= scale / 2 <= |w|
        // wherever q != 0), so R's only error is its own int8 rounding.
        std::vector<float> r(static_cast<size_t>(n_out) * n_in);
        for (int i = 0; i < n_out; ++i) {
          float* ri = r.data() + static_cast<size_t>(i) * n_in;
          cpu::unpack_i8_row(p->data.data(), p->scale.data(), n_in, i, ri);
          for (int k = 0; k < n_in; ++k) ri[k] = w[static_cast<size_t>(i) * n_in + k] - ri[k];
        }
        p->residual = pack_i8(r.data(), n_out, n_in);
        result = std::move(p);
        break;
      }
      case ComputeType::int10: {
        auto p = std::make_unique<I10Panels>();
        p->data.resize(cpu::i10_bytes(n_out, n_in));
        p->scale.resize(n_out);
        p->col_sum.resize(n_out);
        cpu::pack_i10_panels(w, n_out, n_in, p->data.data(), p->scale.data(), p->col_sum.data());
        result = std::move(p);
        break;
      }
    }
    result->n_out = n_out;
    result->n_in = n_in;
    return result;
  }

  static std::unique_ptr<I8Panels> pack_i8(const float* w, int n_out, int n_in) {
    auto p = std::make_unique<I8Panels>();
    p->data.resize(cpu::panel_count(n_out) * cpu::i8_k_quads(n_in) * 4 * cpu::kPanelWidth);
    p->scale.resize(n_out);
    p->col_sum.resize(n_out);
    cpu::pack_i8_panels(w, n_out, n_in, p->data.data(), p->scale.data(), p->col_sum.data());
    p->n_out = n_out;
    p->n_in = n_in;
    return p;
  }

  void linear(const float* x, int m, int ldx, const PackedMatrix& w, const float* bias, Activation act,
              bool accumulate, float* y, int ldy) override {
    check_linear(x, m, ldx, w.n_in, w.n_out, y, ldy);
    LinearOutput out;
    out.y = y;
    out.ldy = ldy;
    linear_fused(x, m, ldx, nullptr, w, bias, act, accumulate, out);
  }

  Result<std::unique_ptr<PackedMatrix>> stack_packed(const std::vector<const PackedMatrix*>& parts) const override {
    if (parts.empty()) return make_error("stack_packed: no matrices");
    for (const PackedMatrix* p : parts)
      if (!p) return make_error("stack_packed: a null matrix");
    const PackedMatrix* first = parts[0];
    if (dynamic_cast<const F32Panels*>(first))
      return stack<F32Panels>(parts, 16, [](F32Panels& d, const F32Panels& p) { append(d.data, p.data); });
    if (dynamic_cast<const Bf16Panels*>(first))
      return stack<Bf16Panels>(parts, 16, [](Bf16Panels& d, const Bf16Panels& p) { append(d.data, p.data); });
    if (dynamic_cast<const I8Panels*>(first)) {
      auto append_i8 = [](I8Panels& d, const I8Panels& p) {
        append(d.data, p.data);
        append(d.scale, p.scale);
        append(d.col_sum, p.col_sum);
      };
      // int8_bc parts (with a residual code) after any plain int8 ones: the
      // stack's residual is theirs, stacked, from the first such row on.
      std::vector<const PackedMatrix*> residuals;
      int row0 = 0;
      for (const PackedMatrix* p : parts) {
        const auto* q = dynamic_cast<const I8Panels*>(p);
        if (!q) break;  // stack() reports the mismatch
        if (q->residual)
          residuals.push_back(q->residual.get());
        else if (!residuals.empty())
          return make_error("stack_packed: an int8 matrix after an int8_bc one (int8_bc parts must come last)");
        else
          row0 += q->n_out;
      }
      auto stacked = stack<I8Panels>(parts, 16, append_i8);
      if (!stacked || residuals.empty()) return stacked;
      auto r = stack<I8Panels>(residuals, 16, append_i8);
      if (!r) return r;
      auto* d = static_cast<I8Panels*>(stacked->get());
      d->residual.reset(static_cast<I8Panels*>(r->release()));
      d->residual_row0 = row0;
      return stacked;
    }
    if (dynamic_cast<const I10Panels*>(first))  // int10 tiles hold two panels: 32 rows
      return stack<I10Panels>(parts, 32, [](I10Panels& d, const I10Panels& p) {
        append(d.data, p.data);
        append(d.scale, p.scale);
        append(d.col_sum, p.col_sum);
      });
    return make_error("stack_packed: the matrices were not packed by this CPU backend");
  }

  void unpack_row(const PackedMatrix& w, int n, float* out) const override {
    AMA_CHECK(out != nullptr && n >= 0 && n < w.n_out);
    if (const auto* f = dynamic_cast<const F32Panels*>(&w)) return cpu::unpack_f32_row(f->data.data(), w.n_in, n, out);
    if (const auto* b = dynamic_cast<const Bf16Panels*>(&w)) return cpu::unpack_bf16_row(b->data.data(), w.n_in, n, out);
    if (const auto* q = dynamic_cast<const I8Panels*>(&w))
      return cpu::unpack_i8_row(q->data.data(), q->scale.data(), w.n_in, n, out);
    const auto* q = dynamic_cast<const I10Panels*>(&w);
    AMA_CHECK(q != nullptr);  // not packed by this backend
    cpu::unpack_i10_row(q->data.data(), q->scale.data(), w.n_out, w.n_in, n, out);
  }

  void linear_fused(const float* x, int m, int ldx, const PreNorm* norm, const PackedMatrix& w, const float* bias,
                    Activation act, bool accumulate, const LinearOutput& out) override {
    check_linear_out(x, m, ldx, w.n_in, w.n_out, out.y, out.y_bf16, out.ldy, out.split, out.split_stride, accumulate,
                     !norm || (norm->gamma && norm->beta));
    const int k = w.n_in;
    // Input row r, normalized when asked, for the converters below: the
    // row itself, or the LayerNorm of it in this thread's row buffer (K
    // floats, in L1), which the conversion then reads.
    auto row_in = [&](const cpu::KernelTable& kt, size_t r) -> const float* {
      const float* xr = x + r * ldx;
      if (!norm) return xr;
      float* t = scratch<float, 1>(k);
      kt.layer_norm(xr, k, norm->gamma, norm->beta, norm->eps, t);
      return t;
    };
    if (const auto* f = dynamic_cast<const F32Panels*>(&w)) {
      // The f32 tiles read x in place, so the reference path normalizes the
      // whole matrix first.
      const float* xs = x;
      size_t lds = ldx;
      if (norm) {
        float* t = scratch<float>(static_cast<size_t>(m) * k);
        pool_.parallel_for(m, 16, [&](size_t r0, size_t r1) {
          for (size_t r = r0; r < r1; ++r)
            k_.layer_norm(x + r * ldx, k, norm->gamma, norm->beta, norm->eps, t + r * k);
        });
        xs = t;
        lds = k;
      }
      const size_t stride = static_cast<size_t>(k) * cpu::kPanelWidth;
      gemm_driver(m, k_.gemm_rows, w, bias, act, accumulate, out, [&](int i, int rows, int j, int n_panels, float* acc) {
        const float* xi = xs + static_cast<size_t>(i) * lds;
        const float* panels = f->data.data() + (j / 16) * stride;
        cpu::TileOut o;
        if (!acc) {
          if (!k_.gemm_f32_tile_out || !tile_out(out, i, j, n_panels, w.n_out, bias, act, accumulate, o)) return false;
          k_.gemm_f32_tile_out(xi, lds, rows, panels, stride, n_panels, k, o);
          return true;
        }
        k_.gemm_f32_tile(xi, lds, rows, panels, stride, n_panels, k, acc);
        return false;
      });
    } else if (const auto* b = dynamic_cast<const Bf16Panels*>(&w)) {
      const cpu::KernelTable& kt = m < 16 ? small_ : k_;
      // Activations to bf16 once per call (round to nearest even), K padded
      // with zeros, rows padded with zero rows to the tile height.
      const int kp = cpu::bf16_k_pairs(k);
      const size_t ldb = 2 * static_cast<size_t>(kp);
      const int m_pad = (m + kt.gemm_bf16_rows - 1) / kt.gemm_bf16_rows * kt.gemm_bf16_rows;
      uint16_t* xb = scratch<uint16_t>(static_cast<size_t>(m_pad) * ldb);
      pool_.parallel_for(m_pad, 32, [&](size_t r0, size_t r1) {
        for (size_t r = r0; r < r1; ++r) {
          size_t c = 0;
          if (r < static_cast<size_t>(m)) {
            kt.to_bf16_row(row_in(kt, r), k, xb + r * ldb);
            c = k;
          }
          for (; c < ldb; ++c) xb[r * ldb + c] = 0;
        }
      });
      bf16_gemm(kt, *b, m, xb, ldb, m_pad, nullptr, 0, bias, act, accumulate, out);
    } else if (const auto* q = dynamic_cast<const I8Panels*>(&w)) {
      // Per-row affine u8 activations, x ~ lo + s q with q in [0, 255] and
      // s = (max - min) / 255. vpdpbusd takes unsigned activations, so no
      // offset is needed, and one-sided rows (after GELU: [-0.17, max]) get
      // twice the resolution of a symmetric scale. Then
      // sum_k x_k w_k ~ sw (s sum_k q_k wq_k + lo sum_k wq_k).
      const cpu::KernelTable& kt = m < 16 ? small_ : k_;
      const size_t stride = static_cast<size_t>(cpu::i8_k_quads(k)) * 4 * cpu::kPanelWidth;
      integer_linear(kt, row_in, m, w, q->scale.data(), q->col_sum.data(), 1, kt.gemm_i8_rows, bias, act, accumulate,
                     out, q->residual ? q : nullptr,
                     [&](const uint8_t* xq, size_t ldq, int rows, int j, int n_panels, int kq, int32_t* iacc) {
                       kt.gemm_i8_tile(xq, ldq, rows, q->data.data() + (j / 16) * stride, stride, n_panels, kq, iacc);
                     },
                     kt.gemm_i8_tile_out ? FusedI8([&](const uint8_t* xq, size_t ldq, int rows, int j, int n_panels,
                                                       int kq, const cpu::TileOut& o) {
                       kt.gemm_i8_tile_out(xq, ldq, rows, q->data.data() + (j / 16) * stride, stride, n_panels, kq, o);
                     })
                                         : FusedI8());
    } else if (const auto* t = dynamic_cast<const I10Panels*>(&w)) {
      // The same with 16-bit activations, as two u8 digits that the tile
      // treats as two rows: 256 times the resolution of u8 activations for
      // twice the dot products, which a decoder step (1 row) has to spare
      // because it waits on the weights' bytes, not on arithmetic.
      const cpu::KernelTable& kt = m < 16 ? small_ : k_;
      const size_t tile_bytes = static_cast<size_t>(cpu::i8_k_quads(k)) * 2 * 80;  // 32 columns
      integer_linear(kt, row_in, m, w, t->scale.data(), t->col_sum.data(), 2, kt.gemm_i10_rows, bias, act, accumulate,
                     out, nullptr, [&](const uint8_t* xq, size_t ldq, int rows, int j, int n_panels, int kq, int32_t* iacc) {
                       kt.gemm_i10_tile(xq, ldq, rows, t->data.data() + (j / 32) * tile_bytes, n_panels, kq, iacc);
                     });
    } else {
      // Weights packed by another backend, or a PackedMatrix kind this one
      // does not know: a programming error, reported and aborted on like the
      // op checks (backend/op_checks.h), never cast blindly.
      AMA_CHECK(false && "linear: the weights were not packed by this CPU backend");
    }
  }

  void linear_bf16_in(const uint16_t* x, int m, int ldx, const PackedMatrix& w, const float* bias, Activation act,
                      bool accumulate, const LinearOutput& out) override {
    check_linear_out(x, m, ldx, w.n_in, w.n_out, out.y, out.y_bf16, out.ldy, out.split, out.split_stride, accumulate,
                     true);
    const int k = w.n_in;
    const auto* b = dynamic_cast<const Bf16Panels*>(&w);
    if (!b) {  // f32 or integer weights: the rows widened to f32 (exact), then the ordinary path
      float* xf = scratch<float, 2>(static_cast<size_t>(m) * k);
      pool_.parallel_for(m, 32, [&](size_t r0, size_t r1) {
        for (size_t r = r0; r < r1; ++r)
          for (int c = 0; c < k; ++c) xf[r * k + c] = bf16_to_f32(x[r * ldx + c]);
      });
      return linear_fused(xf, m, k, nullptr, w, bias, act, accumulate, out);
    }
    const cpu::KernelTable& kt = m < 16 ? small_ : k_;
    const int kp = cpu::bf16_k_pairs(k);
    const size_t ldb = 2 * static_cast<size_t>(kp);
    const int tr = kt.gemm_bf16_rows;
    auto copy_rows = [&](int r0, int r1, uint16_t* dst) {  // rows r0..r1 to ldb-wide rows, zero-padded
      for (int r = r0; r < r1; ++r) {
        uint16_t* d = dst + static_cast<size_t>(r - r0) * ldb;
        std::copy_n(x + static_cast<size_t>(r) * ldx, k, d);
        std::fill(d + k, d + ldb, uint16_t{0});
      }
    };
    if (k != static_cast<int>(ldb) || ldx < k) {
      // K not a multiple of 32: the tiles read K's padding (2 kp values per
      // row), which must be zeros rather than whatever follows the caller's
      // rows. A copy, as rare as such widths (no Whisper layer has one).
      const int m_pad = (m + tr - 1) / tr * tr;
      uint16_t* xb = scratch<uint16_t>(static_cast<size_t>(m_pad) * ldb);
      pool_.parallel_for(m_pad, 32, [&](size_t r0, size_t r1) {
        copy_rows(static_cast<int>(r0), static_cast<int>(std::min<size_t>(r1, m)), xb + r0 * ldb);
        for (size_t r = std::max<size_t>(r0, m); r < r1; ++r) std::fill_n(xb + r * ldb, ldb, uint16_t{0});
      });
      return bf16_gemm(kt, *b, m, xb, ldb, m_pad, nullptr, 0, bias, act, accumulate, out);
    }
    // In place, but for a last partial tile of rows: tiles may read their
    // whole height (AMX loads 32 rows), so those rows go through a
    // zero-padded copy (at most 31 rows).
    const int m_main = m / tr * tr;
    uint16_t* tail = nullptr;
    if (m_main < m) {
      tail = scratch<uint16_t>(static_cast<size_t>(tr) * ldb);
      copy_rows(m_main, m, tail);
      std::fill(tail + static_cast<size_t>(m - m_main) * ldb, tail + static_cast<size_t>(tr) * ldb, uint16_t{0});
    }
    bf16_gemm(kt, *b, m, x, static_cast<size_t>(ldx), m_main, tail, ldb, bias, act, accumulate, out);
  }

  void layer_norm(const float* x, int m, int n, int ld, const float* gamma, const float* beta, float eps,
                  float* y) override {
    check_layer_norm(x, m, n, ld, gamma, beta, y);
    pool_.parallel_for(m, 16, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) k_.layer_norm(x + i * ld, n, gamma, beta, eps, y + i * ld);
    });
  }

  // With int8 MLP weights (the int8 encoder), and int8 or int8_bc output-
  // projection weights on bf16 attention output where there is one, each task takes
  // kMlpChunk rows through the whole block on one thread: the projection
  // into x, LayerNorm and quantization, MLP up with its epilogue into
  // hidden rows, their quantization, MLP down adding into x. The hidden
  // rows (32 x 2048 floats at base, 256 KB) stay in the core's L2, where
  // the two GEMMs went through a [1500][2048] f32 matrix (12 MB per layer,
  // written by MLP up, read back by MLP down's quantization from L3) with
  // a wait for both threads after each step. Each chunk reads all the
  // block's weights again (2.5 MB at base, from L3, which holds them), so
  // only blocks up to kRowChunkMaxWeightBytes run so (tiny and base).
  // Measured (base, 2 threads, AMD EPYC Zen 4, encoder sections timed over
  // 20-run benches, alternated): the MLP 51.4-52.6 ms per window in two
  // GEMMs, 48.4-49.6 in chunks of 16 to 40 rows (chunks of 48 and 96:
  // 49.7-50.9); the output projection and the MLP 61.3-62.2 ms, 60.8-61.6
  // in chunks. The whole encoder (bench, 8 x 20 runs per binary,
  // alternated): fastest 152.1 -> 150.6 ms, p25 153.6 -> 152.9, median
  // 154.9 -> 154.0; the two paths alternated encode by encode in one
  // process (the machine's drift falls on both alike), medians of 50:
  // 151.7 against 153.6 ms. Results are those of the separate ops bit for bit: the
  // same row kernels, per row, on the same values.
  void mlp_block(float* x, int m, int ldx, const MlpBlock& b) override {
    const bool proj = b.out_proj != nullptr;
    check_mlp_block(x, m, ldx, b.up && b.down, b.up ? b.up->n_in : 0, b.up ? b.up->n_out : 0,
                    b.down ? b.down->n_in : 0, b.down ? b.down->n_out : 0, !b.norm || (b.norm->gamma && b.norm->beta),
                    proj, proj ? b.out_proj->n_in : 0, proj ? b.out_proj->n_out : 0,
                    (b.att != nullptr) != (b.att_bf16 != nullptr), b.ld_att);
    const auto* up = dynamic_cast<const I8Panels*>(b.up);
    const auto* down = dynamic_cast<const I8Panels*>(b.down);
    // Any other projection (bf16 once, before int8_bc) takes the separate
    // ops: no model configuration pairs it with int8 MLP weights now.
    const auto* proj8 = proj ? dynamic_cast<const I8Panels*>(b.out_proj) : nullptr;
    if (!up || !down || (proj && !(proj8 && b.att_bf16))) return mlp_block_unfused(x, m, ldx, b);
    const size_t weight_bytes = up->data.size() + down->data.size() + (proj8 ? proj8->data.size() : 0);
    if (weight_bytes > kRowChunkMaxWeightBytes) return mlp_block_unfused(x, m, ldx, b);
    const cpu::KernelTable& kt = m < 16 ? small_ : k_;
    const int n = up->n_in, h = up->n_out;
    // An int8_bc projection needs the column mean of all m attention rows
    // before any chunk runs: summed as integer_linear sums them (f32 per
    // group of 32 rows, widened from bf16 exactly), for the same bias.
    const float* o_bias = b.out_bias;
    if (proj8 && proj8->residual && m > 0) {
      const size_t groups = (static_cast<size_t>(m) + 31) / 32;
      float* part = scratch<float, 8>(groups * n);
      std::fill(part, part + groups * n, 0.0f);
      pool_.parallel_for(m, 32, [&](size_t r0, size_t r1) {
        float* t = scratch<float, 7>(n);
        for (size_t r = r0; r < r1; ++r) {
          const uint16_t* a = b.att_bf16 + r * b.ld_att;
          for (int c = 0; c < n; ++c) t[c] = bf16_to_f32(a[c]);
          add_row(t, n, part + (r / 32) * n);
        }
      });
      o_bias = corrected_bias(*proj8, part, groups, m, b.out_bias);
    }
    // Whole tiles of the int8 kernel's height (AMX tiles read 32 rows).
    const int tiles = kt.gemm_i8_rows;
    const int chunk = (kMlpChunk + tiles - 1) / tiles * tiles;
    const size_t ldq1 = 4 * static_cast<size_t>(cpu::i8_k_quads(n)), ldq2 = 4 * static_cast<size_t>(cpu::i8_k_quads(h));
    pool_.parallel_tasks((m + chunk - 1) / chunk, [&](size_t c) {
      const int r0 = static_cast<int>(c) * chunk, rows = std::min(chunk, m - r0);
      float* xc = x + static_cast<size_t>(r0) * ldx;
      // Per row: the step and offset of x's quantization, then the hidden
      // row's, then (an int8 projection) the attention row's.
      float* sx = scratch<float, 5>(6 * static_cast<size_t>(chunk));
      float *lo = sx + chunk, *sh = lo + chunk, *lh = sh + chunk, *sa = lh + chunk, *la = sa + chunk;
      if (proj8) {
        // The attention rows widened to f32 (exact) and quantized as
        // linear_bf16_in's path does.
        uint8_t* qa = scratch<uint8_t, 6>(chunk * ldq1);
        float* t = scratch<float, 7>(n);
        for (int r = 0; r < chunk; ++r) {
          const float* row = nullptr;
          if (r < rows) {
            const uint16_t* a = b.att_bf16 + static_cast<size_t>(r0 + r) * b.ld_att;
            for (int c = 0; c < n; ++c) t[c] = bf16_to_f32(a[c]);
            row = t;
          }
          quantize_row(kt, row, n, nullptr, qa + r * ldq1, ldq1, sa + r, la + r);
        }
        serial_i8(kt, qa, ldq1, rows, *proj8, sa, la, o_bias, Activation::none, true, xc, ldx);
      }
      uint8_t* q1 = scratch<uint8_t, 4>(chunk * ldq1);
      uint8_t* q2 = scratch<uint8_t, 5>(chunk * ldq2);
      float* hid = scratch<float, 6>(static_cast<size_t>(chunk) * h);
      for (int r = 0; r < chunk; ++r)
        quantize_row(kt, r < rows ? xc + r * ldx : nullptr, n, b.norm, q1 + r * ldq1, ldq1, sx + r, lo + r);
      serial_i8(kt, q1, ldq1, rows, *up, sx, lo, b.up_bias, b.act, false, hid, h);
      for (int r = 0; r < chunk; ++r)
        quantize_row(kt, r < rows ? hid + static_cast<size_t>(r) * h : nullptr, h, nullptr, q2 + r * ldq2, ldq2,
                     sh + r, lh + r);
      serial_i8(kt, q2, ldq2, rows, *down, sh, lh, b.down_bias, Activation::none, true, xc, ldx);
    });
  }

  void attention(const float* q, int n_q, int ld_q, const float* k, const float* v, int n_kv, int ld_kv, int n_head,
                 int d_head, bool causal, int q_pos0, float* out, int ld_out) override {
    AttentionOperands io;
    io.q = q, io.ld_q = ld_q, io.k = k, io.v = v, io.ld_kv = ld_kv, io.out = out, io.ld_out = ld_out;
    attention_mixed(io, n_q, n_kv, n_head, d_head, causal, q_pos0);
  }

  void attention_bf16kv(const float* q, int n_q, int ld_q, const uint16_t* k, const uint16_t* v, int n_kv, int ld_kv,
                        int n_head, int d_head, bool causal, int q_pos0, float* out, int ld_out) override {
    AttentionOperands io;
    io.q = q, io.ld_q = ld_q, io.k_bf16 = k, io.v_bf16 = v, io.ld_kv = ld_kv, io.out = out, io.ld_out = ld_out;
    attention_mixed(io, n_q, n_kv, n_head, d_head, causal, q_pos0);
  }

  void attention_mixed(const AttentionOperands& io, int n_q, int n_kv, int n_head, int d_head, bool causal,
                       int q_pos0) override {
    check_attention(n_q, io.ld_q, n_kv, io.ld_kv, n_head, d_head, causal, q_pos0, io.ld_out);
    check_attention_operands(io.q, io.q_bf16, io.k, io.v, io.k_bf16, io.v_bf16, io.out, io.out_bf16);
    cpu::AttentionArgs args{io.q, n_q, io.ld_q, n_kv, io.ld_kv, n_head, d_head, causal, q_pos0, io.out, io.ld_out};
    args.q_bf16 = io.q_bf16;
    args.out_bf16 = io.out_bf16;
    // Many queries over many keys (the encoder; a decoder prompt's
    // cross-attention over bf16 K/V): flash, in f32 only at f32 compute with
    // f32 K/V. Decoder steps and prompts' self-attention: one query row at a
    // time (over bf16 K/V: 1500 keys packed per call made a 16-token step's
    // cross-attention 3x slower; a 256-token prompt's 6 cross-attentions at
    // base took 137 ms one row at a time, 73 ms on the flash tiles).
    const bool flash = !causal && n_q >= 32;
    const bool flash_f32 = flash && compute_ == ComputeType::f32 && io.k;
    const bool int8_scores = compute_ == ComputeType::int8;
    // Only the d_head 64 kernels take bf16 Q and output as they are; the
    // other paths run on f32 rows converted around them (exact widening of
    // Q, the output rounded once as the d_head 64 path rounds it).
    if (flash && !flash_f32 && d_head == cpu::kFlashDim) {
      if (io.k)
        cpu::attention_flash_bf16(k_, pool_, args, io.k, io.v, int8_scores);
      else
        cpu::attention_flash_bf16(k_, pool_, args, io.k_bf16, io.v_bf16, int8_scores);
      return;
    }
    const int width = n_head * d_head;
    if (io.q_bf16) {
      float* qf = scratch<float, 2>(static_cast<size_t>(n_q) * width);
      for (int i = 0; i < n_q; ++i)
        for (int x = 0; x < width; ++x)
          qf[static_cast<size_t>(i) * width + x] = bf16_to_f32(io.q_bf16[static_cast<size_t>(i) * io.ld_q + x]);
      args.q = qf, args.q_bf16 = nullptr, args.ld_q = width;
    }
    if (io.out_bf16) {
      args.out = scratch<float, 3>(static_cast<size_t>(n_q) * width);
      args.out_bf16 = nullptr, args.ld_out = width;
    }
    if (flash_f32)
      cpu::attention_flash_f32(k_, pool_, args, io.k, io.v);
    else if (flash && io.k)
      cpu::attention_flash_bf16(k_, pool_, args, io.k, io.v, int8_scores);
    else if (flash)
      cpu::attention_flash_bf16(k_, pool_, args, io.k_bf16, io.v_bf16, int8_scores);
    else if (io.k)
      cpu::attention_rows(k_, pool_, args, io.k, io.v);
    else
      cpu::attention_rows(k_, pool_, args, io.k_bf16, io.v_bf16);
    if (io.out_bf16)
      for (int i = 0; i < n_q; ++i)
        k_.to_bf16_row(args.out + static_cast<size_t>(i) * width, width,
                       io.out_bf16 + static_cast<size_t>(i) * io.ld_out);
  }

 private:
  // mlp_block's rows per task: 16 to 40 measured alike (see mlp_block); 32
  // is one AMX tile height.
  static constexpr int kMlpChunk = 32;
  // Every chunk reads the block's weights again, and past a few MB that
  // costs more than the hidden rows' round trip saves. Measured (2 threads,
  // AMD EPYC Zen 4, the two paths alternated encode by encode in one
  // process, medians): tiny (1.5 MB: int8 MLP 1.2 MB, bf16 output
  // projection 0.3 MB) 71.5 ms in chunks against 73.8; base (2.5 MB) 151.7
  // against 153.6; small (5.9 MB) 594 against 609, fastest 574 against 576;
  // medium (10.5 MB) 1988 against 1932, slower in chunks. So chunks up to
  // base's size, with room for its variants.
  static constexpr size_t kRowChunkMaxWeightBytes = size_t{4} << 20;

  // mlp_block through the separate ops and a [m][4n] hidden matrix (this
  // thread's scratch): any weights.
  void mlp_block_unfused(float* x, int m, int ldx, const MlpBlock& b) {
    if (b.out_proj) {
      LinearOutput o;
      o.y = x;
      o.ldy = ldx;
      if (b.att_bf16)
        linear_bf16_in(b.att_bf16, m, b.ld_att, *b.out_proj, b.out_bias, Activation::none, true, o);
      else
        linear(b.att, m, b.ld_att, *b.out_proj, b.out_bias, Activation::none, true, x, ldx);
    }
    const int h = b.up->n_out;
    LinearOutput hid;
    hid.y = scratch<float, 4>(static_cast<size_t>(m) * h);
    hid.ldy = h;
    linear_fused(x, m, ldx, b.norm, *b.up, b.up_bias, b.act, false, hid);
    linear(hid.y, m, h, *b.down, b.down_bias, Activation::none, true, x, ldx);
  }

  // Row x (LayerNorm first when norm is set) to u8 with its step and
  // offset, zero-padded to ldq; a null x gives a zero row (tile padding).
  static void quantize_row(const cpu::KernelTable& kt, const float* x, int k, const PreNorm* norm, uint8_t* q,
                           size_t ldq, float* sx, float* lo) {
    if (!x) {
      std::fill(q, q + ldq, 0);
      *sx = *lo = 0.0f;
      return;
    }
    if (norm) {
      float* t = scratch<float, 1>(k);
      kt.layer_norm(x, k, norm->gamma, norm->beta, norm->eps, t);
      x = t;
    }
    kt.quantize_u8_row(x, k, q, sx, lo);
    std::fill(q + k, q + ldq, 0);
  }

  // y [rows][ldy] (+)= act(x W^T + bias) over every column of w, on this
  // thread: the int8 GEMM of integer_linear for rows already quantized
  // (xq, sx, lo; zero rows to whole tiles). Columns j0..j1 only when given
  // (j0 a multiple of 32).
  void serial_i8(const cpu::KernelTable& kt, const uint8_t* xq, size_t ldq, int rows, const I8Panels& w,
                 const float* sx, const float* lo, const float* bias, Activation act, bool accumulate, float* y,
                 size_t ldy, int j0 = 0, int j1 = -1) const {
    const int kq = cpu::i8_k_quads(w.n_in);
    const int kq_run = kt.isa != Isa::amx ? (w.n_in + 3) / 4 : kq;  // as integer_linear
    const size_t stride = static_cast<size_t>(kq) * 4 * cpu::kPanelWidth;
    const int j_end = j1 < 0 ? w.n_out : std::min(j1, w.n_out);
    for (int j = j0; j < j_end; j += 32) {
      const int cols = std::min(32, j_end - j), n_panels = cols > 16 ? 2 : 1;
      const int8_t* panels = w.data.data() + (j / 16) * stride;
      const float* bj = bias ? bias + j : nullptr;
      if (kt.gemm_i8_tile_out) {
        cpu::TileOut o{};
        o.sx = sx, o.lo = lo, o.w_scale = w.scale.data() + j, o.col_sum = w.col_sum.data() + j;
        o.bias = bj, o.act = to_act(act), o.accumulate = accumulate, o.cols = cols, o.y = y + j, o.ldy = ldy;
        kt.gemm_i8_tile_out(xq, ldq, rows, panels, stride, n_panels, kq_run, o);
        continue;
      }
      for (int i = 0; i < rows; i += kt.gemm_i8_rows) {
        const int r = std::min(kt.gemm_i8_rows, rows - i);
        alignas(64) int32_t iacc[cpu::kGemmMaxRows * 32];
        alignas(64) float acc[cpu::kGemmMaxRows * 32];
        kt.gemm_i8_tile(xq + i * ldq, ldq, r, panels, stride, n_panels, kq_run, iacc);
        kt.dequant_tile(iacc, r, 1, cols, sx + i, lo + i, w.scale.data() + j, w.col_sum.data() + j, acc);
        kt.epilogue_tile(acc, r, cols, bj, to_act(act), accumulate, y + i * ldy + j, ldy);
      }
    }
  }

  // y = x W^T on the bf16 tiles, x in bf16 rows: rows below m_main (a
  // multiple of the tile height) at xa (stride lda), the rest at xt (stride
  // ldt, from xt's first row, zero rows to a whole tile). Row strides cover
  // K's padding to 2 bf16_k_pairs(K), which must read as zeros.
  void bf16_gemm(const cpu::KernelTable& kt, const Bf16Panels& b, int m, const uint16_t* xa, size_t lda, int m_main,
                 const uint16_t* xt, size_t ldt, const float* bias, Activation act, bool accumulate,
                 const LinearOutput& out) {
    const int kp = cpu::bf16_k_pairs(b.n_in);
    const size_t stride = static_cast<size_t>(kp) * 2 * cpu::kPanelWidth;
    // K's own pairs where the kernels take any count (see integer_linear).
    const int kp_run = kt.isa != Isa::amx ? (b.n_in + 1) / 2 : kp;
    auto rows_at = [&](int r) { return r < m_main ? xa + r * lda : xt + (r - m_main) * ldt; };
    gemm_driver(m, kt.gemm_bf16_rows, b, bias, act, accumulate, out,
                [&](int i, int rows, int j, int n_panels, float* acc) {
                  const uint16_t* panels = b.data.data() + (j / 16) * stride;
                  // The kernel finishes the tile itself where it can, in up
                  // to two runs of rows (either side of m_main).
                  cpu::TileOut o;
                  if (!acc) {
                    if (!kt.gemm_bf16_tile_out || !tile_out(out, i, j, n_panels, b.n_out, bias, act, accumulate, o))
                      return false;
                    const int split = std::clamp(m_main - i, 0, rows);
                    if (split > 0) kt.gemm_bf16_tile_out(rows_at(i), lda, split, panels, stride, n_panels, kp_run, o);
                    if (split < rows) {
                      tile_out(out, i + split, j, n_panels, b.n_out, bias, act, accumulate, o);
                      kt.gemm_bf16_tile_out(rows_at(i + split), ldt, rows - split, panels, stride, n_panels, kp_run, o);
                    }
                    return true;
                  }
                  kt.gemm_bf16_tile(rows_at(i), i < m_main ? lda : ldt, rows, panels, stride, n_panels, kp_run, acc);
                  return false;
                });
  }

  static cpu::Act to_act(Activation a) {
    return a == Activation::gelu ? cpu::Act::gelu : a == Activation::gelu_q8 ? cpu::Act::gelu_q8 : cpu::Act::none;
  }

  // Where output row r, column c0 goes: row r of the split block holding
  // column c0 (split: per-layer blocks of the cross K/V), or plain rows.
  static size_t out_at(const LinearOutput& out, size_t r, int c0) {
    if (out.split > 0) return (c0 / out.split) * out.split_stride + r * out.ldy + c0 % out.split;
    return r * out.ldy + c0;
  }

  // The output of the tile at (i, j) for a kernel that finishes the tile
  // itself: f32 or bf16, into the split block that holds the tile's
  // columns. False when they straddle two blocks (a split that is not a
  // multiple of 32 columns); the caller then takes the general path.
  static bool tile_out(const LinearOutput& out, int i, int j, int n_panels, int n_out, const float* bias,
                       Activation act, bool accumulate, cpu::TileOut& o) {
    o = cpu::TileOut{};
    o.cols = std::min(16 * n_panels, n_out - j);
    if (out.split > 0 && j / out.split != (j + o.cols - 1) / out.split) return false;
    const size_t at = out_at(out, i, j);
    o.bias = bias ? bias + j : nullptr;
    o.act = to_act(act);
    o.accumulate = accumulate;
    if (out.y)
      o.y = out.y + at;
    else
      o.y_bf16 = out.y_bf16 + at;
    o.ldy = static_cast<size_t>(out.ldy);
    return true;
  }

  // The integer GEMMs: activations quantized per row (digits = 1: u8; 2:
  // 16 bits as a high and a low u8 digit, stored as consecutive rows), an
  // exact int32 tile product tile(xq, ldq, digit_rows, j, n_panels, k_quads,
  // iacc), and per row and column y = sw (s dot + lo col_sum) with
  // dot = the digits' sums combined as 256 hi + lo.
  // fused_i8(xq, ldq, rows, j, n_panels, k_quads, TileOut), or null: the
  // tile with its epilogue in registers (int8 only).
  using FusedI8 = std::function<void(const uint8_t*, size_t, int, int, int, int, const cpu::TileOut&)>;
  template <typename RowIn, typename Tile>
  void integer_linear(const cpu::KernelTable& kt, const RowIn& row_in, int m, const PackedMatrix& w,
                      const float* w_scale, const int32_t* col_sum, int digits, int tile_digit_rows,
                      const float* bias, Activation act, bool accumulate, const LinearOutput& out,
                      const I8Panels* bc, const Tile& tile, const FusedI8& fused_i8 = nullptr) {
    const int k = w.n_in;
    const int kq = cpu::i8_k_quads(k);
    const size_t ldq = 4 * static_cast<size_t>(kq);
    // The quads the kernels run: K's own on AVX-512 and below, whose loops
    // take any count (the padding to 16 quads is zeros, so stopping early
    // is exact); the padded count for the AMX tiles (16 quads a tile) and
    // the int10 kernel (groups of 4). conv1's K = 240: 60 quads, not 64.
    const int kq_run = digits == 1 && kt.isa != Isa::amx ? (k + 3) / 4 : kq;
    const int tile_rows = tile_digit_rows / digits;
    // Zero digit rows up to the tile height past the last real row (AMX
    // tiles always read 32 rows).
    const size_t q_rows = static_cast<size_t>((m + tile_rows - 1) / tile_rows * tile_rows) * digits;
    uint8_t* xq = scratch<uint8_t>(q_rows * ldq);
    std::fill(xq + static_cast<size_t>(m) * digits * ldq, xq + q_rows * ldq, 0);
    float* sx = scratch<float>(2 * static_cast<size_t>(m));
    float* lo_x = sx + m;
    // int8_bc: the column sums of the rows as quantized here (normalized
    // when asked), per group of 32 rows (parallel_for's chunks are whole
    // groups), added up in a fixed order below whatever the thread count.
    const size_t groups = (static_cast<size_t>(m) + 31) / 32;
    float* part = bc ? scratch<float, 8>(groups * k) : nullptr;
    if (part) std::fill(part, part + groups * k, 0.0f);
    pool_.parallel_for(m, 32, [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        uint8_t* row = xq + r * digits * ldq;
        const float* xr = row_in(kt, r);
        if (part) add_row(xr, k, part + (r / 32) * k);
        if (digits == 1)
          kt.quantize_u8_row(xr, k, row, &sx[r], &lo_x[r]);
        else
          kt.quantize_u16_row(xr, k, row, row + ldq, &sx[r], &lo_x[r]);
        for (int d = 0; d < digits; ++d) std::fill(row + d * ldq + k, row + (d + 1) * ldq, 0);
      }
    });
    if (bc && m > 0) bias = corrected_bias(*bc, part, groups, m, bias);
    // u8 activations: the kernel finishes the tile itself where the ISA has
    // such a kernel (KernelTable::gemm_i8_tile_out).
    gemm_driver(m, tile_rows, w, bias, act, accumulate, out, [&](int i, int rows, int j, int n_panels, float* acc) {
      cpu::TileOut o;
      if (!acc) {
        if (digits != 1 || !fused_i8 || !tile_out(out, i, j, n_panels, w.n_out, bias, act, accumulate, o)) return false;
        o.sx = sx + i;
        o.lo = lo_x + i;
        o.w_scale = w_scale + j;
        o.col_sum = col_sum + j;
        fused_i8(xq + static_cast<size_t>(i) * ldq, ldq, rows, j, n_panels, kq_run, o);
        return true;
      }
      alignas(64) int32_t iacc[cpu::kGemmMaxRows * 32];
      tile(xq + static_cast<size_t>(i) * digits * ldq, ldq, rows * digits, j, n_panels, kq_run, iacc);
      const int cols = std::min(16 * n_panels, w.n_out - j);
      kt.dequant_tile(iacc, rows, digits, cols, sx + i, lo_x + i, w_scale + j, col_sum + j, acc);
      return false;
    });
  }

  // sum[c] += x[c], for int8_bc's column sums: restrict, so that it
  // vectorizes, and cloned per ISA, so that it does so at the machine's
  // width (as a plain SSE loop it added ~80 us to base's 1500 x 512 rows
  // at 2 threads, against a 90 us quantization pass).
  __attribute__((target_clones("avx512f", "avx2", "default"))) static void add_row(const float* __restrict x, int n,
                                                                                   float* __restrict sum) {
    for (int c = 0; c < n; ++c) sum[c] += x[c];
  }

  // int8_bc: bias + mu R^T for the residual's rows (bias alone before
  // them), mu the column mean of the m input rows from their per-group sums
  // (groups of k), in scratch that lives until the next call. The 1-row
  // product runs on the small-GEMM table, in column blocks over the
  // threads: its u8 rounding of mu is ~0.4% of mu's range, on R, itself
  // ~1/250 of W. It sits between two parallel phases, so its time is the
  // other thread's wait (and past the pool's 50 us spin, a wake-up).
  // Measured (Zen 5, 2 threads): 80 us for base's cross-attention values
  // (1.5 MB of R, cold), 18-24 us for a 512-row matrix, where the GEMMs
  // take 3.3 and 0.6 ms; 107 and 34 us on one thread with the sums'
  // loops the other way round (strided).
  const float* corrected_bias(const I8Panels& w, const float* part, size_t groups, int m, const float* bias) {
    const I8Panels& r = *w.residual;
    const int k = w.n_in;
    const cpu::KernelTable& kt = small_;
    const size_t ldq = 4 * static_cast<size_t>(cpu::i8_k_quads(k));
    double* sum = scratch<double, 9>(k);
    float* mu = scratch<float, 9>(static_cast<size_t>(k) + w.n_out + r.n_out);
    float *b = mu + k, *c = b + w.n_out;
    std::fill(sum, sum + k, 0.0);
    for (size_t g = 0; g < groups; ++g)
      for (int j = 0; j < k; ++j) sum[j] += part[g * k + j];
    for (int j = 0; j < k; ++j) mu[j] = static_cast<float>(sum[j] / m);
    uint8_t* q = scratch<uint8_t, 9>(static_cast<size_t>(kt.gemm_i8_rows) * ldq);
    std::fill(q, q + static_cast<size_t>(kt.gemm_i8_rows) * ldq, 0);  // rows 1.. pad the tile
    float s = 0, lo = 0;
    kt.quantize_u8_row(mu, k, q, &s, &lo);
    pool_.parallel_for(r.n_out, 256, [&](size_t j0, size_t j1) {
      serial_i8(kt, q, ldq, 1, r, &s, &lo, nullptr, Activation::none, false, c, r.n_out, static_cast<int>(j0),
                static_cast<int>(j1));
    });
    for (int j = 0; j < w.n_out; ++j) {
      const float b0 = bias ? bias[j] : 0.0f;
      b[j] = j < w.residual_row0 ? b0 : b0 + c[j - w.residual_row0];
    }
    return b;
  }

  // Splits y = x W^T into (row block, column block) tasks. Per task and
  // column pair, tile(m0, block rows, j, n_panels, nullptr) first: true if
  // the kernel finished the whole block itself (a *_tile_out kernel, which
  // steps through its tiles); otherwise tile(i, rows, j, n_panels, acc) for
  // each register tile, and the fused epilogue (bias, GELU, residual add)
  // here while the tile is in cache.
  template <typename Tile>
  void gemm_driver(int m, int tile_rows, const PackedMatrix& w, const float* bias, Activation act, bool accumulate,
                   const LinearOutput& out, const Tile& tile) {
    const int n = w.n_out;
    const size_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
    const size_t col_blocks = (n + kColBlock - 1) / kColBlock;
    const cpu::Act gelu = to_act(act);
    // Column c0.. of output row r: one run of columns within one split block.
    auto store = [&](float* acc, int r, int c0, int cols) {
      const size_t at = out_at(out, r, c0);
      const float* b = bias ? bias + c0 : nullptr;
      if (out.y) {
        k_.epilogue_tile(acc, 1, cols, b, gelu, accumulate, out.y + at, 0);
      } else {
        k_.epilogue_tile(acc, 1, cols, b, gelu, false, acc, 0);  // in place (acc is this thread's tile)
        k_.to_bf16_row(acc, cols, out.y_bf16 + at);
      }
    };
    // Many rows (the encoder): thread s owns a contiguous run of row blocks
    // and walks it column block by column block, so its rows of x (base,
    // 750 rows of K = 512: 375 KB in int8) stay in its own L2 while the
    // 128-column weight blocks stream past; when its run is done it helps
    // with what is left of the other's, one task at a time, so a thread the
    // VM slows down for a while does not hold the call up (fixed halves:
    // base's Q/K/V GEMM at 1.74x the one-thread speed; claimed one at a
    // time, 1.98x). Before, both threads claimed tasks from one counter in
    // column-block order, each taking every other row block, so each read
    // all of x from L3 for every column block: on a Zen 5 VM at 2 threads
    // base's cross K/V (1500 x 512 x 6144) took 8.8-8.9 ms in int8 against
    // 7.1-7.4 ms so, MLP up 3.0-3.1 against 2.4-2.5 (bf16 5.3-5.4 against
    // 4.5-4.7; oneDNN 2.3-2.5 and 4.5-4.7). With one thread the order is
    // the same as before. A few rows (a decoder step, which streams the
    // weights from memory): fixed halves of the column blocks, each thread
    // one contiguous run of the weights.
    std::vector<size_t> first_row_block, bounds;  // thread s's run: its row blocks and its tasks
    if (m >= 16) {
      const size_t threads = static_cast<size_t>(pool_.size());
      for (size_t s = 0; s <= threads; ++s) {
        first_row_block.push_back(s * row_blocks / threads);
        bounds.push_back(col_blocks * first_row_block.back());
      }
    }
    auto body = [&](size_t t) {
      alignas(64) float acc[cpu::kGemmMaxRows * 32];
      int cb, rb;
      if (m >= 16) {  // t in thread s's run: column block outer, its row blocks inner
        size_t s = 0;
        while (t >= bounds[s + 1]) ++s;
        const size_t local = t - bounds[s], rows = first_row_block[s + 1] - first_row_block[s];
        cb = static_cast<int>(local / rows), rb = static_cast<int>(first_row_block[s] + local % rows);
      } else {
        cb = static_cast<int>(t / row_blocks), rb = static_cast<int>(t % row_blocks);
      }
      const int n0 = cb * kColBlock, n1 = std::min(n, n0 + kColBlock);
      const int m0 = rb * kRowBlock, m1 = std::min(m, m0 + kRowBlock);
      for (int j = n0; j < n1; j += 32) {
        const int cols = std::min(32, n1 - j);
        const int n_panels = cols > 16 ? 2 : 1;
        // Split blocks need not be multiples of 32: a tile's columns may
        // straddle two of them.
        const int cut = out.split > 0 ? std::min(cols, (j / out.split + 1) * out.split - j) : cols;
        // The whole row block in one call where the kernel finishes its
        // tiles itself (acc null: a span, kernels.h's *_tile_out).
        if (tile(m0, m1 - m0, j, n_panels, nullptr)) continue;
        for (int i = m0; i < m1; i += tile_rows) {
          const int rows = std::min(tile_rows, m1 - i);
          tile(i, rows, j, n_panels, acc);
          if (cut == cols) {  // the tile lies in one split block (always without a split): one call
            const size_t at = out_at(out, i, j);
            const float* b = bias ? bias + j : nullptr;
            if (out.y) {
              k_.epilogue_tile(acc, rows, cols, b, gelu, accumulate, out.y + at, out.ldy);
            } else {  // bf16 out (the cross K/V caches): the epilogue in place, then rounding
              k_.epilogue_tile(acc, rows, cols, b, gelu, false, acc, 32);
              for (int r = 0; r < rows; ++r) k_.to_bf16_row(acc + r * 32, cols, out.y_bf16 + at + r * out.ldy);
            }
            continue;
          }
          for (int r = 0; r < rows; ++r) {
            float* a = acc + r * 32;
            store(a, i + r, j, cut);
            for (int c = cut; c < cols; c += out.split) store(a + c, i + r, j + c, std::min(out.split, cols - c));
          }
        }
      }
    };
    if (m >= 16) return pool_.parallel_tasks_owned(bounds, body);
    pool_.parallel_for(row_blocks * col_blocks, 1, [&](size_t b, size_t e) {
      for (size_t t = b; t < e; ++t) body(t);
    });
  }

  template <typename P, typename Append>
  static Result<std::unique_ptr<PackedMatrix>> stack(const std::vector<const PackedMatrix*>& parts, int rows_per_tile,
                                                     const Append& append_part) {
    auto d = std::make_unique<P>();
    d->n_in = parts[0]->n_in;
    for (size_t i = 0; i < parts.size(); ++i) {
      const P* p = dynamic_cast<const P*>(parts[i]);
      if (!p) return make_error("stack_packed: the matrices differ in compute type");
      if (p->n_in != d->n_in)
        return make_error("stack_packed: the matrices differ in width (" + std::to_string(p->n_in) + " and " +
                          std::to_string(d->n_in) + ")");
      if (i + 1 < parts.size() && p->n_out % rows_per_tile != 0)
        return make_error("stack_packed: a matrix of " + std::to_string(p->n_out) +
                          " rows does not fill whole panels of " + std::to_string(rows_per_tile));
      append_part(*d, *p);
      d->n_out += p->n_out;
    }
    return std::unique_ptr<PackedMatrix>(std::move(d));
  }
  template <typename V>
  static void append(V& d, const V& p) {
    d.insert(d.end(), p.begin(), p.end());
  }

  const cpu::KernelTable& k_;
  const cpu::KernelTable& small_;
  ThreadPool pool_;
  ComputeType compute_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_cpu_backend(const CpuBackendOptions& options) {
  if (options.emulate_amx) {
    if (!isa_supported(Isa::avx512)) return make_error("AMX emulation runs on the AVX-512 kernels; this CPU lacks them");
    const int threads = options.n_threads > 0 ? options.n_threads : ThreadPool::hardware_threads();
    return std::unique_ptr<Backend>(new CpuBackend(cpu::kernel_table_amx_emulated(),
                                                   cpu::kernel_table(Isa::avx512), threads, options.compute));
  }
  Isa isa = options.force_isa ? options.isa : selected_isa().isa;
  if (!isa_supported(isa)) return make_error(std::string("ISA ") + isa_name(isa) + " is not supported by this CPU");
  int threads = options.n_threads > 0 ? options.n_threads : ThreadPool::hardware_threads();
  if (threads > 256) return make_error("thread count " + std::to_string(threads) + " is absurd (max 256)");
  const Isa small = isa == Isa::amx ? Isa::avx512 : isa;
  return std::unique_ptr<Backend>(new CpuBackend(cpu::kernel_table(isa), cpu::kernel_table(small), threads, options.compute));
}

}  // namespace ama

namespace ama {

ComputeType default_compute_type() {
  const Isa isa = selected_isa().isa;
  const CpuFeatures& f = cpu_features();
  if (isa == Isa::amx || (isa == Isa::avx512 && f.avx512_bf16 && f.avx512_vnni)) return ComputeType::int8;
  if (isa == Isa::avx512) return f.avx512_bf16 ? ComputeType::bf16 : ComputeType::f32;
  if (isa == Isa::avx2) return ComputeType::int8;  // its vpmaddwd int8 tiles beat its bf16 ones (see the header)
  return ComputeType::bf16;  // scalar: the bf16 tiles beat its f32 ones
}

Result<ComputeType> parse_compute_type(const std::string& s) {
  if (s == "auto") return default_compute_type();
  if (s == "f32") return ComputeType::f32;
  if (s == "bf16") return ComputeType::bf16;
  if (s == "int8") return ComputeType::int8;
  return make_error("unknown compute type '" + s + "' (auto, f32, bf16, int8)");
}

}  // namespace ama
