// Flash attention for the encoder's shape: many queries over many keys, no
// mask, d_head 64 (every Whisper size: tiny 6 heads, base 8, small 12,
// medium 16, large 20, all of 64). One head's K and V are packed once per
// call into the layout the dot instruction reads (below), then each block
// of query rows streams over them with an online softmax; the n_q x n_kv
// score matrix never exists.
//
// Packed layouts, per head, in blocks of kFlashKeys = 64 keys (the last
// block zero-padded; its padded keys are masked out of the softmax):
//   K: [block][d pair p < 32][key panel i < 4][16 keys][2]
//      = bf16(K[64 b + 16 i + j][2 p + t]): one vdpbf16ps operand is the
//      16 keys of a panel at one pair of head dims, and the 4 panels of a
//      pair are 256 contiguous bytes. An AMX B tile (16 pairs x 16 keys) is
//      the same bytes read with a 256-byte row stride.
//   V: [block][key pair kp < 32][dim panel c < 4][16 dims][2]
//      = bf16(V[64 b + 2 kp + t][16 c + j]): the P V product's operand is
//      16 head dims at one pair of keys; again 256 contiguous bytes per pair.
//   K as int8 (the vpdpbusd kernel; V as above), kFlashI8BlockBytes per block:
//      bytes [dim quad p < 16][key panel i < 4][16 keys][4]
//      = ik(64 b + 16 i + j)[4 p + t] + 128, then 64 f32 steps sk_j, where
//      K[key] ~ sk ik, ik in [-127, 127] (flash_attention_avx512.cpp).
//      4352 bytes per block: less than the bf16 block's 8 KB, so it fits in
//      a buffer of flash_packed_size.
//   V as int8 (the all-int8 kernel, flash_pack_kv_int8kv_avx512; K as the
//      int8 K above), 4096 bytes per block:
//      bytes [key quad kq < 16][dim panel c < 4][16 dims][4 keys]
//      = iv(64 b + key(kq, e))[16 c + j], key(kq, e) = 16 (kq % 4) +
//      4 (kq / 4) + e (the order in which vpackusdw + vpackuswb leave the
//      kernel's P bytes: flash_attention_avx512.cpp), then, after the last
//      block, the 64 f32 steps sv_x of the head, V[key][x] ~ sv_x iv[x],
//      iv in [-127, 127], sv_x = max over the head's keys of |V[.][x]| / 127.
//      blocks x 4096 + 256 bytes: within flash_packed_size's 8 KB per block.
// Packing reads n_kv x 64 values per head and writes them once: 0.1 M
// values against 1500 x 1500 x 64 x 2 = 288 M multiply-adds per head.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ama {
class ThreadPool;
}

namespace ama::cpu {

inline constexpr int kFlashDim = 64;    // the head size the packed kernels take
inline constexpr int kFlashKeys = 64;   // keys per block (see flash_attention_avx512.cpp for why)
inline constexpr int kFlashMaxRows = 32;  // largest query tile of any variant (AMX)

inline int flash_blocks(int n_kv) { return (n_kv + kFlashKeys - 1) / kFlashKeys; }
// uint16 elements of one head's packed K (or V).
inline size_t flash_packed_size(int n_kv) { return static_cast<size_t>(flash_blocks(n_kv)) * kFlashKeys * kFlashDim; }
inline constexpr size_t kFlashI8BlockBytes = kFlashKeys * kFlashDim + kFlashKeys * sizeof(float);

// Packs one head: rows j < n_kv of k and v (stride ld, at the head's slice),
// f32 or bf16, into kp and vp (flash_packed_size(n_kv) each).
void flash_pack_kv(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
void flash_pack_kv(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
// The same bytes with AVX-512 (F + BW) moves, where the CPU has them.
void flash_pack_kv_avx512(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
void flash_pack_kv_avx512(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
// rows x 64 f32 (stride 64) to bf16 rows of out (stride ld_out), rounded as
// f32_to_bf16: the d_head 64 path's bf16 output (attention.cpp) on AVX-512.
void flash_store_bf16_avx512(const float* tile, int rows, uint16_t* out, size_t ld_out);
// K as int8 (bytes and steps, in kp's flash_packed_size elements), V as bf16.
void flash_pack_kv_int8_avx512(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
void flash_pack_kv_int8_avx512(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
// K and V as int8 (the all-int8 kernel's layouts). A key row with a NaN or
// infinity (a NaN key step) makes every dim step NaN, so that the kernel,
// which drops a NaN score's weight to 0 when it converts P to bytes, still
// returns NaN in every row, as the other kernels do.
void flash_pack_kv_int8kv_avx512(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
void flash_pack_kv_int8kv_avx512(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp,
                                 uint16_t* vp);

// The kernel contract (KernelTable::flash_d64): q holds `rows` query rows
// (rows <= the table's flash_rows) of 64 bf16 each, contiguous; kp and vp one
// head's packed K and V over n_kv >= 1 keys; c = log2(e) / sqrt(64) turns a
// dot product into the base-2 exponent of its softmax weight. Writes
// out[r * ld_out + x] = sum_j softmax_j(c' q_r . k_j) v_j[x] for x < 64.
// Scores, the softmax and the sums are f32; P is rounded to bf16 for the
// P V product, and the softmax's sum adds the rounded weights, so that the
// output is an exact weighted average of V under the weights used. (The
// int8 Q K^T kernel computes q_r . k_j from the int8 roundings of both:
// flash_attention_avx512.cpp.)
using FlashD64Fn = void (*)(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                            float* out, size_t ld_out);

// The portable kernel (plain C++, flash_attention_generic.h; the scalar
// table), 4 rows.
void flash_d64_generic_scalar(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                              float* out, size_t ld_out);
// K and V as f32 (the AVX2 kernel, which has no bf16 dot product), the
// values rounded to bf16 first as the other packers do, 2 x
// flash_packed_size uint16 each (so kp and vp hold floats):
//   K: [block][key panel i < 4][head dim x < 64][16 keys]
//      = K[64 b + 16 i + j][x],
//   V: [block][dim panel c < 4][key kj < 64][16 dims] = V[64 b + kj][16 c + j]:
//   either way 4 KB panels, the B operand of an f32 register tile read
//   64 contiguous bytes a step.
void flash_pack_kv_f32(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);
void flash_pack_kv_f32(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp);

// AVX2 + FMA on K and V packed as f32 (flash_pack_kv_f32), up to
// kFlashAvx2Rows rows.
inline constexpr int kFlashAvx2Rows = 24;
void flash_d64_avx2(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                    float* out, size_t ld_out);
// AVX-512 BF16 (vdpbf16ps), 6 rows; only where cpuid reports AVX512_BF16.
void flash_d64_avx512bf16(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                          float* out, size_t ld_out);
// AVX-512 VNNI + BF16: Q K^T in int8 (Q quantized per row on entry, kp
// from flash_pack_kv_int8_avx512), P V in bf16, 6 rows; where cpuid reports
// both.
void flash_d64_avx512vnni_bf16(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv,
                               float c, float* out, size_t ld_out);
// AVX-512 VNNI, all-int8: Q K^T as flash_d64_avx512vnni_bf16, and P V by
// vpdpbusd too, P as u8 (255 x 2^(c s - block max), one step per row and
// block) times V as s8 (flash_pack_kv_int8kv_avx512); 6 rows. The softmax
// sum adds the u8 weights as used, so the output is an exact weighted
// average of the int8 V. Deviation from the contract above: an infinity in
// V gives NaN (not +-inf) in its column, as its dim step is NaN.
void flash_d64_avx512vnni(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                          float* out, size_t ld_out);

// 2^x for x <= 0 as the kernels compute it (flash_attention_generic.h:
// degree-3 minimax polynomial), exposed for its test. x below -100 gives
// 2^-100-ish instead of 0: against a softmax sum of at least 1, nothing.
float flash_exp2_scalar(float x);
void flash_exp2_avx512(const float* x, int n, float* y);

// The online-softmax step of one key block for the AMX kernel, in AVX-512F:
// s [rows][64] f32 scores of the block (keys >= valid are padding), m and l
// the rows' running max (base-2 exponent units) and sum, o [rows][64] the
// rows' running output, rescaled here; p [rows][64] receives bf16(2^(c s - m)).
void flash_softmax_block_avx512(const float* s, int rows, int valid, float c, float* m, float* l, float* o,
                                uint16_t* p);

// The kernel each ISA's table uses, chosen here rather than in
// the KernelTable so that the tables stay as they are.
struct KernelTable;
struct FlashKernel {
  const char* name;
  int rows;  // query rows per call
  FlashD64Fn fn;
  bool int8_k = false;  // kp packed by flash_pack_kv_int8_avx512 (else the bf16 layout)
  bool int8_v = false;  // kp and vp packed by flash_pack_kv_int8kv_avx512 (implies int8_k)
  bool f32_kv = false;  // kp and vp packed by flash_pack_kv_f32 (twice the size)
};
FlashKernel flash_kernel(const KernelTable& kt);
// The same, or with int8_scores false the fastest one that keeps Q K^T in
// bf16 (the bf16 compute type asks for bf16 arithmetic).
FlashKernel flash_kernel(const KernelTable& kt, bool int8_scores);
// Every kernel that can run on kt's ISA here (flash_kernel(kt)'s choice
// among them): the harness and the tests compare them.
std::vector<FlashKernel> flash_kernels(const KernelTable& kt);

// attention_flash_bf16's d_head 64 path (attention.cpp) with a given kernel
// of kt's ISA; attention_flash_bf16 passes flash_kernel(kt, int8_scores).
struct AttentionArgs;
template <typename KV>
void attention_flash_d64(const KernelTable& kt, const FlashKernel& fk, ThreadPool& pool, const AttentionArgs& a,
                         const KV* keys, const KV* values);

// AMX tiles (kernels_amx.cpp, which owns the tile operations), 32 rows; the
// emulated one runs the scalar model of the tiles.
void flash_d64_amx(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c, float* out,
                   size_t ld_out);
void flash_d64_amx_emulated(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                            float* out, size_t ld_out);

}  // namespace ama::cpu
