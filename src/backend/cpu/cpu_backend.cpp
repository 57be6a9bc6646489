#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/op_checks.h"

namespace ama {

const char* compute_type_name(ComputeType t) {
  switch (t) {
    case ComputeType::f32: return "f32";
    case ComputeType::bf16: return "bf16";
    case ComputeType::int8: return "int8";
  }
  return "?";
}

namespace {

class F32Panels final : public PackedMatrix {
 public:
  std::vector<float> data;  // cpu::pack_f32_panels layout
};

// Work split for a GEMM: blocks of rows by blocks of columns. Block sizes are
// fixed numbers, independent of the thread count, so results never depend on it.
constexpr int kRowBlock = 96;    // multiple of every row tile (4, 6)
constexpr int kColBlock = 128;   // 8 panels: 128 x K floats of weights stay in L2 for K <= 2048

class CpuBackend final : public Backend {
 public:
  CpuBackend(const cpu::KernelTable& k, int n_threads, ComputeType compute)
      : k_(k), pool_(n_threads), compute_(compute) {}

  std::string describe() const override {
    return std::string("cpu isa=") + isa_name(k_.isa) + " threads=" + std::to_string(pool_.size()) +
           " compute=" + compute_type_name(compute_) + " gemm=" + k_.gemm_f32_name + " rowops=" + k_.vector_name;
  }
  int n_threads() const override { return pool_.size(); }
  ComputeType compute_type() const override { return compute_; }

  std::unique_ptr<PackedMatrix> pack(const float* w, int n_out, int n_in) const override {
    auto p = std::make_unique<F32Panels>();
    p->n_out = n_out;
    p->n_in = n_in;
    p->data.resize(cpu::panel_count(n_out) * n_in * cpu::kPanelWidth);
    cpu::pack_f32_panels(w, n_out, n_in, p->data.data());
    return p;
  }

  void linear(const float* x, int m, int ldx, const PackedMatrix& w, const float* bias, Activation act,
              bool accumulate, float* y, int ldy) override {
    check_linear(x, m, ldx, w.n_in, w.n_out, y, ldy);
    const auto& pw = static_cast<const F32Panels&>(w);
    const int n = w.n_out, k = w.n_in;
    const size_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
    const size_t col_blocks = (n + kColBlock - 1) / kColBlock;
    const size_t panel_stride = static_cast<size_t>(k) * cpu::kPanelWidth;
    // Column blocks outermost: with one row (decoding), threads split the weights.
    pool_.parallel_for(row_blocks * col_blocks, 1, [&](size_t begin, size_t end) {
      alignas(64) float acc[cpu::kGemmMaxRows * 32];
      for (size_t t = begin; t < end; ++t) {
        const int cb = static_cast<int>(t / row_blocks), rb = static_cast<int>(t % row_blocks);
        const int n0 = cb * kColBlock, n1 = std::min(n, n0 + kColBlock);
        const int m0 = rb * kRowBlock, m1 = std::min(m, m0 + kRowBlock);
        for (int j = n0; j < n1; j += 32) {
          const int cols = std::min(32, n1 - j);
          const int n_panels = cols > 16 ? 2 : 1;
          const float* panels = pw.data.data() + (j / cpu::kPanelWidth) * panel_stride;
          for (int i = m0; i < m1; i += k_.gemm_rows) {
            const int rows = std::min(k_.gemm_rows, m1 - i);
            k_.gemm_f32_tile(x + static_cast<size_t>(i) * ldx, ldx, rows, panels, panel_stride, n_panels, k, acc);
            for (int r = 0; r < rows; ++r) {
              float* yr = y + static_cast<size_t>(i + r) * ldy + j;
              float* a = acc + r * 32;
              if (bias)
                for (int c = 0; c < cols; ++c) a[c] += bias[j + c];
              if (act == Activation::gelu) k_.gelu(a, cols);
              if (accumulate)
                for (int c = 0; c < cols; ++c) yr[c] += a[c];
              else
                for (int c = 0; c < cols; ++c) yr[c] = a[c];
            }
          }
        }
      }
    });
  }

  void layer_norm(const float* x, int m, int n, int ld, const float* gamma, const float* beta, float eps,
                  float* y) override {
    check_layer_norm(x, m, n, ld, gamma, beta, y);
    pool_.parallel_for(m, 16, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) k_.layer_norm(x + i * ld, n, gamma, beta, eps, y + i * ld);
    });
  }

  void attention(const float* q, int n_q, int ld_q, const float* k, const float* v, int n_kv, int ld_kv, int n_head,
                 int d_head, bool causal, int q_pos0, float* out, int ld_out) override {
    check_attention(n_q, ld_q, n_kv, ld_kv, n_head, d_head, causal, q_pos0, ld_out);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d_head));
    // Tasks are (head, block of 16 queries); each query row is computed
    // entirely by one task: scores, softmax, weighted sum of values.
    constexpr int kQBlock = 16;
    const size_t q_blocks = (n_q + kQBlock - 1) / kQBlock;
    pool_.parallel_for(n_head * q_blocks, 1, [&](size_t b, size_t e) {
      std::vector<float> scores(n_kv);
      for (size_t t = b; t < e; ++t) {
        const int h = static_cast<int>(t / q_blocks);
        const int i0 = static_cast<int>(t % q_blocks) * kQBlock, i1 = std::min(n_q, i0 + kQBlock);
        for (int i = i0; i < i1; ++i) {
          const float* qi = q + static_cast<size_t>(i) * ld_q + h * d_head;
          const int visible = causal ? q_pos0 + i + 1 : n_kv;
          for (int j = 0; j < visible; ++j)
            scores[j] = k_.dot(qi, k + static_cast<size_t>(j) * ld_kv + h * d_head, d_head) * scale;
          k_.softmax(scores.data(), visible);
          float* o = out + static_cast<size_t>(i) * ld_out + h * d_head;
          std::fill(o, o + d_head, 0.0f);
          for (int j = 0; j < visible; ++j) k_.axpy(scores[j], v + static_cast<size_t>(j) * ld_kv + h * d_head, o, d_head);
        }
      }
    });
  }

 private:
  const cpu::KernelTable& k_;
  ThreadPool pool_;
  ComputeType compute_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_cpu_backend(const CpuBackendOptions& options) {
  Isa isa = options.force_isa ? options.isa : selected_isa().isa;
  if (!isa_supported(isa)) return make_error(std::string("ISA ") + isa_name(isa) + " is not supported by this CPU");
  if (options.compute != ComputeType::f32)
    return make_error(std::string("--compute ") + compute_type_name(options.compute) +
                      " is not available yet; use --compute f32");
  int threads = options.n_threads > 0 ? options.n_threads : ThreadPool::hardware_threads();
  if (threads > 256) return make_error("thread count " + std::to_string(threads) + " is absurd (max 256)");
  return std::unique_ptr<Backend>(new CpuBackend(cpu::kernel_table(isa), threads, options.compute));
}

}  // namespace ama
