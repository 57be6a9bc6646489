#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (fuzz/corpus/<target>/).

Small hand-built inputs, a few hundred bytes to a few KB each, that reach
every branch a mutation should start from: for ggml every tensor type id the
reader knows (f32, f16 and the quantized block types, one row of blocks
each); for safetensors every dtype family, metadata, scalars and empty
tensors; for wav every sample format and header variant the reader accepts;
for the tokenizer each of its five modes. The files are committed; run this
again only to change them:   python3 fuzz/make_seeds.py [--amanuensis build/amanuensis]
(with --amanuensis, also model_<type>: quantized rows written by
make-test-model --quant TYPE).
"""
import math
import os
import random
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = random.Random(1)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- ggml
# type id -> (block elements, block bytes), from ggml-common.h's block structs.
GGML_TYPES = {
    0: (1, 4), 1: (1, 2),                        # f32, f16
    2: (32, 18), 3: (32, 20),                    # q4_0, q4_1
    6: (32, 22), 7: (32, 24), 8: (32, 34),       # q5_0, q5_1, q8_0
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),  # q2_K..q6_K
}


# Tensor type id -> the file's ftype (ggml.h's enum ggml_ftype, which
# numbers q5_0, q5_1 and q8_0 differently from the tensor types).
FTYPE_OF_TYPE = {2: 2, 3: 3, 6: 8, 7: 9, 8: 7, 10: 10, 11: 11, 12: 12, 13: 13, 14: 14}


def f16(x):
    return struct.pack("<e", x)


def block_bytes(type_id, n_blocks):
    """Plausible blocks: small f16 scales where the layout starts with one."""
    block, size = GGML_TYPES[type_id]
    if type_id == 0:
        return b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(n_blocks))
    if type_id == 1:
        return b"".join(f16(rng.uniform(-1, 1)) for _ in range(n_blocks))
    out = b""
    for _ in range(n_blocks):
        body = bytes(rng.randrange(256) for _ in range(size))
        if block == 32:  # d (and m) first
            n_scales = 2 if type_id in (3, 7) else 1
            body = b"".join(f16(0.01 * (k + 1)) for k in range(n_scales)) + body[2 * n_scales:]
        else:  # k-quants: d (and dmin) last for q2_K, q3_K, q6_K; first for q4_K, q5_K
            if type_id in (12, 13):
                body = f16(0.01) + f16(0.002) + body[4:]
            else:
                body = body[:-2] + f16(0.01)
        out += body
    return out


def ggml_tensor(name, ne, type_id):
    """ne innermost first, as stored."""
    block, size = GGML_TYPES[type_id]
    n = 1
    for d in ne:
        n *= d
    rec = struct.pack("<iii", len(ne), len(name), type_id) + struct.pack("<%di" % len(ne), *ne) + name.encode()
    return rec + block_bytes(type_id, n // block)


def ggml_header(ftype, vocab):
    hp = [51865, 1500, 4, 1, 1, 4, 4, 1, 1, 1, ftype]
    h = struct.pack("<I", 0x67676D6C) + struct.pack("<11i", *hp)
    h += struct.pack("<ii", 1, 201) + struct.pack("<201f", *[0.01] * 201)
    h += struct.pack("<i", len(vocab)) + b"".join(struct.pack("<I", len(t)) + t for t in vocab)
    return h


def ggml_seeds():
    names = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0",
             10: "q2_k", 11: "q3_k", 12: "q4_k", 13: "q5_k", 14: "q6_k"}
    # Mode byte 0: the whole file.
    full = ggml_header(1, [b"!", b"hello", b"\xe2\x96"])
    full += ggml_tensor("encoder.conv1.bias", [4], 0)
    full += ggml_tensor("encoder.conv1.weight", [3, 1, 4], 1)
    write("ggml", "raw_f16_f32", b"\x00" + full)
    write("ggml", "raw_header_only", b"\x00" + ggml_header(0, []))
    # Mode byte 1: a fixed header, then tensor records; second byte = ftype (version << 5 | type).
    for t, name in names.items():
        block = GGML_TYPES[t][0]
        row = block if block > 1 else 8
        ftype_byte = t if t <= 1 else (2 << 5) | FTYPE_OF_TYPE[t]  # quantize's version 2
        recs = ggml_tensor("decoder.blocks.0.mlp.0.weight", [row, 2], t)
        recs += ggml_tensor("decoder.blocks.0.mlp.0.bias", [2], 0)
        write("ggml", "records_" + name, bytes([1, ftype_byte]) + recs)


def read_ggml_records(path):
    """(ftype, [(name, type, ne, record bytes, data offset)]) of a ggml file."""
    b = open(path, "rb").read()
    ftype = struct.unpack_from("<i", b, 44)[0]
    n_mels, n_bins = struct.unpack_from("<ii", b, 48)
    pos = 56 + 4 * n_mels * n_bins
    (n_tokens,) = struct.unpack_from("<i", b, pos)
    pos += 4
    for _ in range(n_tokens):
        (length,) = struct.unpack_from("<I", b, pos)
        pos += 4 + length
    records = []
    while pos < len(b):
        n_dims, name_len, type_id = struct.unpack_from("<iii", b, pos)
        ne = list(struct.unpack_from("<%di" % n_dims, b, pos + 12))
        name = b[pos + 12 + 4 * n_dims:pos + 12 + 4 * n_dims + name_len].decode()
        data = pos + 12 + 4 * n_dims + name_len
        block, size = GGML_TYPES[type_id]
        n = 1
        for d in ne:
            n *= d
        records.append((name, type_id, ne, b[data:data + n // block * size]))
        pos = data + n // block * size
    return ftype, records


def ggml_model_seeds(amanuensis):
    """Records written by make-test-model --quant TYPE (our quantizers, the
    real block layouts), cut to 2 rows so that each seed stays a few KB."""
    import subprocess
    import tempfile
    names = {2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0",
             10: "q2_k", 11: "q3_k", 12: "q4_k", 13: "q5_k", 14: "q6_k"}
    with tempfile.TemporaryDirectory() as tmp:
        for t, name in names.items():
            path = os.path.join(tmp, name + ".bin")
            # n_state 256: k-quant rows are 256 long; 1 head, 1 + 1 layers, 80 mels.
            subprocess.run([amanuensis, "make-test-model", "--dims", "256,1,1,1,80", "--seed", "1",
                            "--quant", name, "-o", path], check=True, stdout=subprocess.DEVNULL)
            ftype, records = read_ggml_records(path)
            rec = next(r for r in records if r[1] == t and len(r[2]) == 2)
            rname, _, ne, raw = rec
            block, size = GGML_TYPES[t]
            row_bytes = ne[0] // block * size
            cut = struct.pack("<iii", 2, len(rname), t) + struct.pack("<ii", ne[0], 2) + rname.encode()
            cut += raw[:2 * row_bytes]
            bias = next(r for r in records if r[1] == 0 and len(r[2]) == 1 and r[2][0] <= 256)
            cut += struct.pack("<iii", 1, len(bias[0]), 0) + struct.pack("<i", bias[2][0]) + bias[0].encode() + bias[3]
            version, base = divmod(ftype, 1000)
            write("ggml", "model_" + name, bytes([1, (version << 5) | base]) + cut)


# ---------------------------------------------------------------- safetensors
def safetensors(tensors, metadata=None, pad=0):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header = {}
    off = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    import json
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def safetensors_seeds():
    f32 = struct.pack("<6f", *[0.5 * i for i in range(6)])
    f16s = b"".join(f16(0.25 * i) for i in range(4))
    bf16 = b"".join(struct.pack("<f", 1.5 * i)[2:] for i in range(4))
    f64 = struct.pack("<2d", math.pi, -1e300)
    write("safetensors", "f32_f16", safetensors([("a.weight", "F32", [2, 3], f32), ("b", "F16", [4], f16s)],
                                               {"format": "pt"}))
    write("safetensors", "bf16_f64_scalar", safetensors([("x", "BF16", [2, 2], bf16), ("s", "F64", [], f64[:8]),
                                                         ("t", "F64", [1], f64[8:])], pad=7))
    write("safetensors", "ints_bool_empty", safetensors([("i8", "I8", [3], b"\x01\xff\x7f"), ("b", "BOOL", [1], b"\x01"),
                                                         ("e", "F32", [0, 5], b""), ("u", "U64", [1], b"\x00" * 8)]))
    write("safetensors", "f4_f6", safetensors([("q", "F4", [4], b"\x12\x34"), ("r", "F6_E2M3", [4], b"\x01\x02\x03")]))
    write("safetensors", "empty", safetensors([]))


# ---------------------------------------------------------------- wav
def chunk(cid, body):
    return cid + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def fmt_chunk(tag, channels, rate, bits, ext_sub=None):
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if tag == 0xFFFE:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        body += struct.pack("<HHI", 22, bits, (1 << channels) - 1) + struct.pack("<H", ext_sub) + guid_tail
    return chunk(b"fmt ", body)


def riff(chunks, form=b"RIFF"):
    body = b"WAVE" + b"".join(chunks)
    return form + struct.pack("<I", len(body)) + body


def tone(n, scale):
    return [scale * math.sin(2 * math.pi * 440 * i / 16000) for i in range(n)]


def wav_seeds():
    s16 = struct.pack("<64h", *[int(v) for v in tone(64, 30000)])
    write("wav", "pcm16_mono", riff([fmt_chunk(1, 1, 16000, 16), chunk(b"data", s16)]))
    u8 = bytes(int(128 + v) for v in tone(64, 100))
    write("wav", "pcm8_list", riff([chunk(b"LIST", b"INFOISFT\x04\x00\x00\x00ama\x00"), fmt_chunk(1, 1, 8000, 8),
                                    chunk(b"data", u8)]))
    s24 = b"".join(struct.pack("<i", int(v))[:3] for v in tone(48, 8000000))
    write("wav", "pcm24_ext_stereo", riff([fmt_chunk(0xFFFE, 2, 44100, 24, ext_sub=1), chunk(b"data", s24)]))
    f32 = struct.pack("<32f", *tone(32, 0.9))
    write("wav", "float32", riff([fmt_chunk(3, 1, 16000, 32), chunk(b"data", f32)]))
    f64 = struct.pack("<16d", *tone(16, 0.9))
    write("wav", "float64_ext", riff([fmt_chunk(0xFFFE, 1, 22050, 64, ext_sub=3), chunk(b"data", f64)]))
    s32 = struct.pack("<18i", *[int(v) for v in tone(18, 2e9)])
    write("wav", "pcm32_3ch", riff([fmt_chunk(0xFFFE, 3, 48000, 32, ext_sub=1), chunk(b"data", s32)]))
    # Streaming writer: data size 0xFFFFFFFF.
    write("wav", "unknown_size", riff([fmt_chunk(1, 1, 16000, 16)]) + b"data" + b"\xff\xff\xff\xff" + s16)
    # RF64 with a ds64 chunk.
    ds64 = chunk(b"ds64", struct.pack("<QQQI", 0, len(s16), 32, 0))
    write("wav", "rf64", riff([ds64, fmt_chunk(1, 1, 16000, 16)], form=b"RF64") + b"data" + b"\xff\xff\xff\xff" + s16)
    # Truncated: the data chunk promises more than is there.
    write("wav", "truncated", riff([fmt_chunk(1, 2, 16000, 16)]) + b"data" + struct.pack("<I", 1000) + s16[:37])


# ---------------------------------------------------------------- tokenizer
def tokenizer_seeds():
    texts = {
        "en": " And so, my fellow Americans: ask not what your country can do for you. It's 2024!",
        "mixed": "Grüße, 世界! Ça va?  — \t\n\n  émoji 🎉🎉 don't we'll I'd 12345 ½ ٣",
        "spaces": "a  b   c    \n\n\n   x\r\n",
        "special_text": "<|endoftext|><|startoftranscript|> <|0.00|>",
    }
    for name, t in texts.items():
        write("tokenizer", "encode_" + name, b"\x00" + t.encode())
    write("tokenizer", "encode_invalid_utf8", b"\x00abc\xff\xfe\xc3(\xe2\x82 \xf0\x9f\x8e xyz\xed\xa0\x80")
    write("tokenizer", "piece_long", b"\x01" + ("aaaaab" * 40).encode())
    write("tokenizer", "piece_bytes", b"\x01" + bytes(range(256)))
    ids = [0, 1, 50256, 50257, 50258, 50259, 50358, 50359, 50363, 50364, 51864, 51865, 70000 - 1000, 1000 - 1000]
    ids += [1002, 3 + 1000, 220 + 1000, 50257 + 999]
    write("tokenizer", "decode_ids", b"\x02" + b"".join(struct.pack("<H", (i + 1000) & 0xFFFF) for i in ids))
    # Partial UTF-8 tokens next to each other (bytes 0xe2 0x96: ids from the byte table).
    write("tokenizer", "decode_bytes", b"\x02" + b"".join(struct.pack("<H", i + 1000) for i in range(150, 200)))
    write("tokenizer", "tiktoken_lines", b"\x03IQ== 0\nIg== 1\r\n\nIw== 2\n= 3\naGVsbG8= 4\n")
    write("tokenizer", "tiktoken_bad", b"\x03IQ== 0\nIQ== 1\nI 2\nIw== x\n")
    write("tokenizer", "own_bytes", b"\x04" + b"".join(struct.pack("<H", i + 1000) for i in
                                                        (0, 220, 1002, 50255, 50256, 40000, 12345)))


# ---------------------------------------------------------------- hf_config
def hf_config_seeds():
    import json
    base = {"model_type": "whisper", "d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8,
            "decoder_layers": 6, "decoder_attention_heads": 8, "num_mel_bins": 80, "vocab_size": 51865,
            "max_source_positions": 1500, "max_target_positions": 448, "encoder_ffn_dim": 2048,
            "decoder_ffn_dim": 2048, "activation_function": "gelu", "scale_embedding": False,
            "torch_dtype": "float32", "architectures": ["WhisperForConditionalGeneration"],
            "begin_suppress_tokens": [220, 50257], "forced_decoder_ids": [[1, None], [2, 50359]]}
    write("hf_config", "config_base", b"\x00" + json.dumps(base, indent=2).encode())
    v3 = dict(base, d_model=1280, encoder_layers=32, decoder_layers=4, encoder_attention_heads=20,
              decoder_attention_heads=20, num_mel_bins=128, vocab_size=51866, encoder_ffn_dim=5120,
              decoder_ffn_dim=5120, torch_dtype="float16")
    write("hf_config", "config_turbo", b"\x00" + json.dumps(v3).encode())
    write("hf_config", "config_bad", b"\x00" + b'{"d_model": 3.5, "encoder_layers": -1, "x": [[[[]]]]}')
    # Mode 3 (a config built from choice bytes, see fuzz_hf_config.cpp): base's
    # config, key by key: (3, edge index) or (1, small value); then the extras.
    write("hf_config", "structured_base", bytes([3, 3, 7, 1, 6, 1, 8, 1, 6, 1, 8, 3, 4, 3, 11, 3, 8, 3, 6, 3, 9, 3, 9, 63]))
    gen = {"alignment_heads": [[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4], [5, 6]],
           "no_timestamps_token_id": 50363, "is_multilingual": True}
    write("hf_config", "generation_config", b"\x01" + json.dumps(gen).encode())
    write("hf_config", "generation_null", b"\x01" + b'{"alignment_heads": null}')
    for i, name in enumerate(["model.encoder.layers.3.self_attn.q_proj.weight", "model.decoder.embed_tokens.weight",
                              "model.decoder.layers.0.encoder_attn_layer_norm.bias", "proj_out.weight",
                              "encoder.blocks.1.mlp.0.weight"]):
        write("hf_config", "name_%d" % i, b"\x02" + name.encode())


if __name__ == "__main__":
    import sys
    ggml_seeds()
    # --amanuensis BIN: also seeds from BIN make-test-model --quant TYPE.
    if len(sys.argv) == 3 and sys.argv[1] == "--amanuensis":
        ggml_model_seeds(sys.argv[2])
    safetensors_seeds()
    wav_seeds()
    tokenizer_seeds()
    hf_config_seeds()
