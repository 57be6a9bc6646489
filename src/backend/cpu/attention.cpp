#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/flash_attention.h"
#include "backend/op_checks.h"
#include "core/half.h"

namespace ama::cpu {

namespace {
constexpr int kKeyBlock = 128;  // 8 panels: the score tile [rows][128] stays in L1

// Online softmax for one key block of one query row: turns the scores sr[0,
// kn) into exp(s - new max), folds them into the running max m and sum l,
// and rescales the output row o[d] accumulated under the old max.
inline void online_softmax_step(const KernelTable& kt, float* sr, int kn, float& m, float& l, float* o, int d) {
  float bmax = m;
  for (int j = 0; j < kn; ++j) bmax = std::max(bmax, sr[j]);
  const float alpha = m == -INFINITY ? 0.0f : std::exp(m - bmax);
  m = bmax;
  l = l * alpha + kt.exp_sum(sr, kn, bmax);
  for (int c = 0; c < d; ++c) o[c] *= alpha;
}

// Adds a GEMM tile acc[rows][32] (cols valid columns) into o[rows][d] at column c.
inline void add_tile(const float* acc, int rows, int cols, float* o, int d, int c) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < cols; ++j) o[static_cast<size_t>(r) * d + c + j] += acc[r * 32 + j];
}

// out rows = o / l, for the query rows i0.. of head h.
inline void write_rows(const AttentionArgs& a, int h, int i0, int rows, const float* o, const float* l) {
  const int d = a.d_head;
  for (int r = 0; r < rows; ++r) {
    const float inv = 1.0f / l[r];
    float* dst = a.out + static_cast<size_t>(i0 + r) * a.ld_out + h * d;
    for (int c = 0; c < d; ++c) dst[c] = o[static_cast<size_t>(r) * d + c] * inv;
  }
}
}  // namespace

void attention_flash_f32(const KernelTable& kt, ThreadPool& pool, const AttentionArgs& a, const float* keys,
                         const float* values) {
  AMA_CHECK(a.q && a.out);  // bf16 Q or output: the d_head 64 path only (attention.h)
  const int d = a.d_head, n_kv = a.n_kv;
  const int kv_panels = static_cast<int>(panel_count(n_kv));
  const int n_kv_pad = kv_panels * kPanelWidth;
  const int d_panels = static_cast<int>(panel_count(d));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int mr = kt.gemm_rows;
  const int q_tiles = (a.n_q + mr - 1) / mr;
  // Per head: K^T as panels [n_kv / 16][d][16] (keys are the GEMM's output
  // columns), V as panels [d / 16][n_kv_pad][16] (head dims are). Packing
  // costs n_kv d per head against n_q n_kv d multiply-adds of attention.
  std::vector<float> kp(static_cast<size_t>(a.n_head) * kv_panels * d * kPanelWidth);
  std::vector<float> vp(static_cast<size_t>(a.n_head) * d_panels * n_kv_pad * kPanelWidth);
  const size_t kp_head = static_cast<size_t>(kv_panels) * d * kPanelWidth;
  const size_t vp_head = static_cast<size_t>(d_panels) * n_kv_pad * kPanelWidth;
  pool.parallel_for(a.n_head, 1, [&](size_t h0, size_t h1) {
    for (size_t h = h0; h < h1; ++h) {
      float* kh = kp.data() + h * kp_head;
      float* vh = vp.data() + h * vp_head;
      for (int p = 0; p < kv_panels; ++p)
        for (int j = 0; j < kPanelWidth; ++j) {
          const int key = p * kPanelWidth + j;
          for (int c = 0; c < d; ++c)
            kh[(static_cast<size_t>(p) * d + c) * kPanelWidth + j] =
                key < n_kv ? keys[static_cast<size_t>(key) * a.ld_kv + h * d + c] : 0.0f;
        }
      for (int p = 0; p < d_panels; ++p)
        for (int key = 0; key < n_kv_pad; ++key)
          for (int j = 0; j < kPanelWidth; ++j) {
            const int c = p * kPanelWidth + j;
            vh[(static_cast<size_t>(p) * n_kv_pad + key) * kPanelWidth + j] =
                key < n_kv && c < d ? values[static_cast<size_t>(key) * a.ld_kv + h * d + c] : 0.0f;
          }
    }
  });

  // Tasks: (head, tile of mr query rows). Each row is computed by one task.
  pool.parallel_for(static_cast<size_t>(a.n_head) * q_tiles, 1, [&](size_t t0, size_t t1) {
    alignas(64) float s[kGemmMaxRows * kKeyBlock];
    alignas(64) float acc[kGemmMaxRows * 32];
    std::vector<float> o(static_cast<size_t>(kGemmMaxRows) * d);
    float m[kGemmMaxRows], l[kGemmMaxRows];
    for (size_t t = t0; t < t1; ++t) {
      const int h = static_cast<int>(t / q_tiles);
      const int i0 = static_cast<int>(t % q_tiles) * mr;
      const int rows = std::min(mr, a.n_q - i0);
      const float* qh = a.q + static_cast<size_t>(i0) * a.ld_q + h * d;
      const float* kh = kp.data() + h * kp_head;
      const float* vh = vp.data() + h * vp_head;
      std::fill(o.begin(), o.end(), 0.0f);
      for (int r = 0; r < rows; ++r) m[r] = -INFINITY, l[r] = 0.0f;
      for (int kb = 0; kb < n_kv; kb += kKeyBlock) {
        const int kn = std::min(kKeyBlock, n_kv - kb);
        // Scores for keys kb..kb+kn, 32 at a time.
        for (int c = 0; c < kn; c += 32) {
          const int np = kn - c > 16 ? 2 : 1;
          kt.gemm_f32_tile(qh, a.ld_q, rows, kh + static_cast<size_t>((kb + c) / kPanelWidth) * d * kPanelWidth,
                           static_cast<size_t>(d) * kPanelWidth, np, d, acc);
          const int cols = std::min(32, kn - c);
          for (int r = 0; r < rows; ++r)
            for (int j = 0; j < cols; ++j) s[r * kKeyBlock + c + j] = acc[r * 32 + j] * scale;
        }
        for (int r = 0; r < rows; ++r) {
          float* sr = s + r * kKeyBlock;
          online_softmax_step(kt, sr, kn, m[r], l[r], o.data() + static_cast<size_t>(r) * d, d);
          for (int j = kn; j < kKeyBlock; ++j) sr[j] = 0.0f;  // the tail must not add stale values
        }
        // o += P V for this key block, 32 head dims at a time. Keys are the
        // GEMM's K dimension here; a partial last block reads zero-padded V.
        const int kk = std::min(kKeyBlock, n_kv_pad - kb);
        for (int c = 0; c < d; c += 32) {
          const int np = d - c > 16 ? 2 : 1;
          kt.gemm_f32_tile(s, kKeyBlock, rows,
                           vh + (static_cast<size_t>(c / kPanelWidth) * n_kv_pad + kb) * kPanelWidth,
                           static_cast<size_t>(n_kv_pad) * kPanelWidth, np, kk, acc);
          add_tile(acc, rows, std::min(32, d - c), o.data(), d, c);
        }
      }
      write_rows(a, h, i0, rows, o.data(), l);
    }
  });
}

// d_head 64 without a mask (every encoder): the dedicated kernels of
// flash_attention.h. K and V are packed once per head, Q converted to bf16
// rows (zero-padded to whole tiles: the AMX kernel loads 32 rows), then the
// tasks (head, tile of query rows) run in head order, so that each thread
// works through one head's K and V (384 KB for 1500 keys; 768 KB as the
// AVX2 kernel's f32) while they sit in its L2 (or, for AVX2 on a Zen 3's
// 512 KB L2, in L3). Each row is computed by one task with a fixed key order: results
// do not depend on the thread count.
template <typename KV>
void attention_flash_d64(const KernelTable& kt, const FlashKernel& fk, ThreadPool& pool, const AttentionArgs& a,
                         const KV* keys, const KV* values) {
  const int H = a.n_head, R = fk.rows, D = kFlashDim;
  const size_t packed = flash_packed_size(a.n_kv) * (fk.f32_kv ? 2 : 1);
  const int q_tiles = (a.n_q + R - 1) / R;
  const size_t q_head = static_cast<size_t>(q_tiles) * R * D;
  // Reused across calls (an encoder runs one per layer): 2 x 192 KB per head
  // of base would otherwise be fresh pages, faulted in at every call.
  thread_local std::vector<uint16_t> buf;
  buf.resize(static_cast<size_t>(H) * (2 * packed + q_head));
  uint16_t* kp = buf.data();
  uint16_t* vp = kp + H * packed;
  uint16_t* qb = vp + H * packed;
  pool.parallel_for(H, 1, [&](size_t h0, size_t h1) {
    for (size_t h = h0; h < h1; ++h) {
      if (fk.f32_kv)
        flash_pack_kv_f32(keys + h * D, values + h * D, a.n_kv, a.ld_kv, kp + h * packed, vp + h * packed);
      else if (fk.int8_v)
        flash_pack_kv_int8kv_avx512(keys + h * D, values + h * D, a.n_kv, a.ld_kv, kp + h * packed, vp + h * packed);
      else if (fk.int8_k)
        flash_pack_kv_int8_avx512(keys + h * D, values + h * D, a.n_kv, a.ld_kv, kp + h * packed, vp + h * packed);
      else if (kt.isa >= Isa::avx512)
        flash_pack_kv_avx512(keys + h * D, values + h * D, a.n_kv, a.ld_kv, kp + h * packed, vp + h * packed);
      else
        flash_pack_kv(keys + h * D, values + h * D, a.n_kv, a.ld_kv, kp + h * packed, vp + h * packed);
      uint16_t* qh = qb + h * q_head;
      if (a.q_bf16)  // already bf16 (the encoder's Q/K GEMM writes it so): only rearranged into the head's rows
        for (int i = 0; i < a.n_q; ++i)
          std::memcpy(qh + static_cast<size_t>(i) * D, a.q_bf16 + static_cast<size_t>(i) * a.ld_q + h * D,
                      D * sizeof(uint16_t));
      else
        for (int i = 0; i < a.n_q; ++i)
          kt.to_bf16_row(a.q + static_cast<size_t>(i) * a.ld_q + h * D, D, qh + static_cast<size_t>(i) * D);
      std::fill(qh + static_cast<size_t>(a.n_q) * D, qh + q_head, uint16_t{0});
    }
  });
  const float c = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(D)));  // log2(e) / sqrt(d)
  // Claimed in runs of 8 tiles (48 rows of one head on AVX-512) as threads
  // come free (parallel_tasks): with fixed halves a thread slowed down for a
  // while on this 2-vCPU VM held the whole call up.
  constexpr int kTilesPerTask = 8;
  const size_t tasks_per_head = (q_tiles + kTilesPerTask - 1) / kTilesPerTask;
  pool.parallel_tasks(static_cast<size_t>(H) * tasks_per_head, [&](size_t task) {
    const size_t h = task / tasks_per_head;
    const int t0 = static_cast<int>(task % tasks_per_head) * kTilesPerTask;
    for (int t = t0; t < std::min(q_tiles, t0 + kTilesPerTask); ++t) {
      const int i0 = t * R, rows = std::min(R, a.n_q - i0);
      const uint16_t* qt = qb + h * q_head + static_cast<size_t>(i0) * D;
      if (!a.out_bf16) {
        fk.fn(qt, rows, kp + h * packed, vp + h * packed, a.n_kv, c, a.out + static_cast<size_t>(i0) * a.ld_out + h * D,
              a.ld_out);
        continue;
      }
      // bf16 out (for the next bf16 GEMM): the kernel's rows land in this
      // L1-resident tile (at most 32 x 64 floats) and are rounded from there,
      // on every ISA's kernel alike. The separate pass this replaces, the O
      // projection's to_bf16_row over the whole f32 output (1500 x 512 per
      // layer at base), read 3 MB and wrote 1.5 MB per layer.
      alignas(64) float tile[kFlashMaxRows * D];
      fk.fn(qt, rows, kp + h * packed, vp + h * packed, a.n_kv, c, tile, D);
      uint16_t* dst = a.out_bf16 + static_cast<size_t>(i0) * a.ld_out + h * D;
      // On AVX-512 the rounding in vector code: the table's to_bf16_row is
      // the generic loop, which took 3x as long here (perf, base's attention
      // block at 2 threads: 1.15% of the samples against 0.39%).
      if (kt.isa >= Isa::avx512)
        flash_store_bf16_avx512(tile, rows, dst, a.ld_out);
      else
        for (int r = 0; r < rows; ++r) kt.to_bf16_row(tile + r * D, D, dst + static_cast<size_t>(r) * a.ld_out);
    }
  });
}

template <typename KV>
void attention_flash_bf16(const KernelTable& kt, ThreadPool& pool, const AttentionArgs& a, const KV* keys,
                          const KV* values, bool int8_scores) {
  if (a.d_head == kFlashDim && !a.causal) return attention_flash_d64(kt, flash_kernel(kt, int8_scores), pool, a, keys, values);
  AMA_CHECK(a.q && a.out);  // bf16 Q or output: the d_head 64 path only (attention.h)
  // Other head sizes: the same algorithm on the table's GEMM tiles.
  // bf16 inputs widen exactly to f32, and packing rounds them back unchanged.
  auto f = [](KV x) {
    if constexpr (std::is_same_v<KV, float>)
      return x;
    else
      return bf16_to_f32(x);
  };
  const int d = a.d_head, n_kv = a.n_kv;
  const int dp = bf16_k_pairs(d);             // head dims in pairs, padded for the tiles
  const int kv_pairs = bf16_k_pairs(n_kv);    // keys in pairs, padded (V as the GEMM's K)
  const int kv_panels = static_cast<int>(panel_count(n_kv));
  const int d_panels = static_cast<int>(panel_count(d));
  const size_t k_stride = static_cast<size_t>(dp) * 2 * kPanelWidth;        // one K^T panel
  const size_t v_stride = static_cast<size_t>(kv_pairs) * 2 * kPanelWidth;  // one V panel
  const int mr = kt.gemm_bf16_rows;
  const int q_tiles = (a.n_q + mr - 1) / mr;
  const int ldq = 2 * dp;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // Per head, in the bf16 GEMM layouts: K^T panels (keys are output columns),
  // V panels (head dims are output columns, keys the reduction), and Q rows
  // zero-padded to whole tiles.
  std::vector<uint16_t> kp(static_cast<size_t>(a.n_head) * kv_panels * k_stride);
  std::vector<uint16_t> vp(static_cast<size_t>(a.n_head) * d_panels * v_stride);
  std::vector<uint16_t> qb(static_cast<size_t>(a.n_head) * q_tiles * mr * ldq, 0);
  pool.parallel_for(a.n_head, 1, [&](size_t h0, size_t h1) {
    std::vector<float> tmp(static_cast<size_t>(std::max(n_kv, 1)) * d);
    for (size_t h = h0; h < h1; ++h) {
      for (int j = 0; j < n_kv; ++j)
        for (int c = 0; c < d; ++c) tmp[static_cast<size_t>(j) * d + c] = f(keys[static_cast<size_t>(j) * a.ld_kv + h * d + c]);
      pack_bf16_panels(tmp.data(), n_kv, d, kp.data() + h * kv_panels * k_stride);
      for (int j = 0; j < n_kv; ++j)
        for (int c = 0; c < d; ++c) tmp[static_cast<size_t>(c) * n_kv + j] = f(values[static_cast<size_t>(j) * a.ld_kv + h * d + c]);
      pack_bf16_panels(tmp.data(), d, n_kv, vp.data() + h * d_panels * v_stride);
      uint16_t* qh = qb.data() + h * q_tiles * mr * ldq;
      for (int i = 0; i < a.n_q; ++i) kt.to_bf16_row(a.q + static_cast<size_t>(i) * a.ld_q + h * d, d, qh + static_cast<size_t>(i) * ldq);
    }
  });

  pool.parallel_for(static_cast<size_t>(a.n_head) * q_tiles, 1, [&](size_t t0, size_t t1) {
    alignas(64) float s[kGemmMaxRows * kKeyBlock];
    alignas(64) uint16_t pb[kGemmMaxRows * kKeyBlock];
    alignas(64) float acc[kGemmMaxRows * 32];
    std::vector<float> o(static_cast<size_t>(kGemmMaxRows) * d);
    float m[kGemmMaxRows], l[kGemmMaxRows];
    std::memset(pb, 0, sizeof pb);
    for (size_t t = t0; t < t1; ++t) {
      const int h = static_cast<int>(t / q_tiles);
      const int tile = static_cast<int>(t % q_tiles);
      const int i0 = tile * mr;
      const int rows = std::min(mr, a.n_q - i0);
      const uint16_t* qh = qb.data() + (static_cast<size_t>(h) * q_tiles + tile) * mr * ldq;
      const uint16_t* kh = kp.data() + static_cast<size_t>(h) * kv_panels * k_stride;
      const uint16_t* vh = vp.data() + static_cast<size_t>(h) * d_panels * v_stride;
      std::fill(o.begin(), o.end(), 0.0f);
      for (int r = 0; r < rows; ++r) m[r] = -INFINITY, l[r] = 0.0f;
      for (int kb = 0; kb < n_kv; kb += kKeyBlock) {
        const int kn = std::min(kKeyBlock, n_kv - kb);
        for (int c = 0; c < kn; c += 32) {
          const int np = kn - c > 16 ? 2 : 1;
          kt.gemm_bf16_tile(qh, ldq, rows, kh + static_cast<size_t>((kb + c) / kPanelWidth) * k_stride, k_stride, np,
                            dp, acc);
          const int cols = std::min(32, kn - c);
          for (int r = 0; r < rows; ++r)
            for (int j = 0; j < cols; ++j) s[r * kKeyBlock + c + j] = acc[r * 32 + j] * scale;
        }
        for (int r = 0; r < rows; ++r) {
          float* sr = s + r * kKeyBlock;
          online_softmax_step(kt, sr, kn, m[r], l[r], o.data() + static_cast<size_t>(r) * d, d);
          kt.to_bf16_row(sr, kn, pb + r * kKeyBlock);
          for (int j = kn; j < kKeyBlock; ++j) pb[r * kKeyBlock + j] = 0;  // stale values must not add
        }
        // o += P V: keys kb.. are the reduction, a whole number of tile pairs.
        const int k_pairs = std::min(kKeyBlock / 2, kv_pairs - kb / 2);
        for (int c = 0; c < d; c += 32) {
          const int np = d - c > 16 ? 2 : 1;
          kt.gemm_bf16_tile(pb, kKeyBlock, rows, vh + static_cast<size_t>(c / kPanelWidth) * v_stride + static_cast<size_t>(kb / 2) * 32,
                            v_stride, np, k_pairs, acc);
          add_tile(acc, rows, std::min(32, d - c), o.data(), d, c);
        }
      }
      write_rows(a, h, i0, rows, o.data(), l);
    }
  });
}

template <typename KV>
void attention_rows(const KernelTable& kt, ThreadPool& pool, const AttentionArgs& a, const KV* keys,
                    const KV* values) {
  AMA_CHECK(a.q && a.out);  // bf16 Q or output: the d_head 64 path only (attention.h)
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.d_head));
  // Each query row's keys go in chunks of kKeyChunk, all heads of a chunk in
  // one kernel call (kernels.h, attend_heads: each key row is read as one
  // run of bytes, at twice the speed of one head at a time), and the chunks'
  // partial softmaxes are merged in chunk order. Tasks are (chunk, row), so
  // a decoder step's 1500-key cross-attention is 6 tasks that the threads
  // share, each streaming its own rows, and in a batched step a thread takes
  // each chunk for all rows in turn while its 512 KB (base) are in L2.
  // (Sharing each key row's loads among a batch's queries in one kernel call
  // was slower: base, 5 and 16 queries, 4.7 and 11.3 ms per step against 3.4
  // and 9.7 at 1 thread; once in L2 the loads are the cheap part.) Chunks
  // are fixed and each query is computed alone, so results depend neither on
  // the thread count nor on the batch.
  constexpr int kKeyChunk = 256;
  const int H = a.n_head, d = a.d_head;
  const int max_chunks = (a.n_kv + kKeyChunk - 1) / kKeyChunk;
  // Partial results [chunk][row][head] (m, l) and [chunk][row][head][d] (o).
  const size_t per_chunk = static_cast<size_t>(a.n_q) * H;
  thread_local std::vector<float> partial;
  partial.resize(static_cast<size_t>(max_chunks) * per_chunk * (d + 2));
  float* pm = partial.data();
  float* pl = pm + max_chunks * per_chunk;
  float* po = pl + max_chunks * per_chunk;
  auto visible = [&](int i) { return a.causal ? a.q_pos0 + i + 1 : a.n_kv; };
  pool.parallel_for(static_cast<size_t>(max_chunks) * a.n_q, 1, [&](size_t b, size_t e) {
    thread_local std::vector<float> scores;
    if (scores.size() < static_cast<size_t>(H) * kKeyChunk) scores.resize(static_cast<size_t>(H) * kKeyChunk);
    for (size_t t = b; t < e; ++t) {
      const int c = static_cast<int>(t / a.n_q), i = static_cast<int>(t % a.n_q);
      const int j0 = c * kKeyChunk, n = std::min(kKeyChunk, visible(i) - j0);
      if (n <= 0) continue;  // past this (causal) row's last key
      const float* q = a.q + static_cast<size_t>(i) * a.ld_q;
      const size_t at = static_cast<size_t>(j0) * a.ld_kv;
      const size_t r = c * per_chunk + static_cast<size_t>(i) * H;
      if constexpr (std::is_same_v<KV, float>)
        kt.attend_heads_f32(q, keys + at, values + at, n, a.ld_kv, H, d, scale, scores.data(), pm + r, pl + r,
                            po + r * d);
      else
        kt.attend_heads_bf16(q, keys + at, values + at, n, a.ld_kv, H, d, scale, scores.data(), pm + r, pl + r,
                             po + r * d);
    }
  });
  // out = sum_c exp(m_c - M) o_c / sum_c exp(m_c - M) l_c, M = max_c m_c.
  pool.parallel_for(a.n_q, 16, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const int chunks = (visible(static_cast<int>(i)) + kKeyChunk - 1) / kKeyChunk;
      for (int h = 0; h < H; ++h) {
        const size_t r = i * H + h;
        float M = -INFINITY;
        for (int c = 0; c < chunks; ++c) M = std::max(M, pm[c * per_chunk + r]);
        float* o = a.out + i * a.ld_out + static_cast<size_t>(h) * d;
        float L = 0;
        for (int c = 0; c < chunks; ++c) {
          const float w = chunks == 1 ? 1.0f : std::exp(pm[c * per_chunk + r] - M);
          L += w * pl[c * per_chunk + r];
          const float* oc = po + (c * per_chunk + r) * d;
          for (int x = 0; x < d; ++x) o[x] = (c == 0 ? 0.0f : o[x]) + w * oc[x];
        }
        const float inv = 1.0f / L;
        for (int x = 0; x < d; ++x) o[x] *= inv;
      }
    }
  });
}

template void attention_flash_bf16<float>(const KernelTable&, ThreadPool&, const AttentionArgs&, const float*,
                                          const float*, bool);
template void attention_flash_bf16<uint16_t>(const KernelTable&, ThreadPool&, const AttentionArgs&, const uint16_t*,
                                             const uint16_t*, bool);
template void attention_flash_d64<float>(const KernelTable&, const FlashKernel&, ThreadPool&, const AttentionArgs&,
                                         const float*, const float*);
template void attention_flash_d64<uint16_t>(const KernelTable&, const FlashKernel&, ThreadPool&, const AttentionArgs&,
                                            const uint16_t*, const uint16_t*);
template void attention_rows<float>(const KernelTable&, ThreadPool&, const AttentionArgs&, const float*, const float*);
template void attention_rows<uint16_t>(const KernelTable&, ThreadPool&, const AttentionArgs&, const uint16_t*,
                                       const uint16_t*);

}  // namespace ama::cpu
