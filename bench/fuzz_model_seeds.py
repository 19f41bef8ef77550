"""bench/fuzz_model_seeds.py OUTDIR: seeds for fuzz/fuzz_model_load (the tiny Llama its config.json describes:
hidden 8, 1 layer, 2/1 heads of 4, intermediate 8, vocab 16, tied embeddings), each file a selector byte (the
quantization_config: 0 none, 1 compressed-tensors, 2 fp8 with 2 x 2 blocks, 3 fp8 without a block size) and a
safetensors file: F32 and BF16 weights; F8_E4M3 projections with per-tensor, per-row and 2 x 2 block scales."""
import json, os, random, struct, sys

H, I, V, HD, NH, NKV = 8, 8, 16, 4, 2, 1
SHAPES = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H],
          "model.layers.0.input_layernorm.weight": [H], "model.layers.0.post_attention_layernorm.weight": [H],
          "model.layers.0.self_attn.q_proj.weight": [NH * HD, H], "model.layers.0.self_attn.k_proj.weight": [NKV * HD, H],
          "model.layers.0.self_attn.v_proj.weight": [NKV * HD, H], "model.layers.0.self_attn.o_proj.weight": [H, NH * HD],
          "model.layers.0.mlp.gate_proj.weight": [I, H], "model.layers.0.mlp.up_proj.weight": [I, H],
          "model.layers.0.mlp.down_proj.weight": [H, I]}


def st(tensors):  # [(name, dtype, shape, bytes)] -> safetensors bytes, largest elements first, header padded to 8
    size = {"F32": 4, "BF16": 2, "F8_E4M3": 1}
    tensors = sorted(tensors, key=lambda t: (-size[t[1]], t[0]))
    h, off = {}, 0
    for n, dt, sh, b in tensors:
        h[n] = {"dtype": dt, "shape": sh, "data_offsets": [off, off + len(b)]}
        off += len(b)
    hj = json.dumps(h, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    return struct.pack("<Q", len(hj)) + hj + b"".join(t[3] for t in tensors)


def f32(n, rnd):
    return struct.pack("<%df" % n, *[rnd.uniform(-1, 1) for _ in range(n)])


def bf16(n, rnd):
    return b"".join(struct.pack("<f", rnd.uniform(-1, 1))[2:] for _ in range(n))


def main(out):
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(0)
    for sel, name, wdt in ((0, "f32", "F32"), (0, "bf16", "BF16")):
        ts = []
        for n, sh in SHAPES.items():
            k = sh[0] * (sh[1] if len(sh) > 1 else 1)
            ts.append((n, wdt, sh, (f32 if wdt == "F32" else bf16)(k, rnd)))
        open(os.path.join(out, name), "wb").write(bytes([sel]) + st(ts))
    for sel, name, how in ((1, "fp8-tensor", "tensor"), (1, "fp8-row", "row"), (2, "fp8-block", "block"),
                           (3, "fp8-block-inferred", "block")):
        ts = []
        for n, sh in SHAPES.items():
            k = sh[0] * (sh[1] if len(sh) > 1 else 1)
            if not n.endswith("_proj.weight"):
                ts.append((n, "F32", sh, f32(k, rnd)))
                continue
            ts.append((n, "F8_E4M3", sh, bytes(rnd.choice([0x00, 0x38, 0xb8, 0x40, 0x7e, 0x01, 0x3c]) for _ in range(k))))
            base = n[:-len(".weight")]
            if how == "tensor":
                ts.append((base + ".weight_scale", "F32", [], f32(1, rnd)))
            elif how == "row":
                ts.append((base + ".weight_scale", "F32", [sh[0], 1], f32(sh[0], rnd)))
            else:
                sr, sc = (sh[0] + 1) // 2, (sh[1] + 1) // 2
                ts.append((base + ".weight_scale_inv", "F32", [sr, sc], f32(sr * sc, rnd)))
        open(os.path.join(out, name), "wb").write(bytes([sel]) + st(ts))
    # broken ones the loader must refuse in one line: a block scale with a zero dimension (no block shape to infer),
    # a tensor name with a newline in it; and the host's dequantization (selector bit 4)
    ts = [(n, "F32", sh, f32(sh[0] * (sh[1] if len(sh) > 1 else 1), rnd)) for n, sh in SHAPES.items()]
    q = "model.layers.0.self_attn.q_proj.weight"
    ts = [t for t in ts if t[0] != q] + [(q, "F8_E4M3", SHAPES[q], bytes(64)), (q + "_scale_inv", "F32", [0, 4], b"")]
    open(os.path.join(out, "fp8-scale-zero-dim"), "wb").write(bytes([3]) + st(ts))
    ts = [(n, "F32", sh, f32(sh[0] * (sh[1] if len(sh) > 1 else 1), rnd)) for n, sh in SHAPES.items()]
    ts.append(("model.layers.0.self_attn.q_proj\nweight", "F32", [0, 2], b""))
    ts.append(("model.layers.0.self_attn.q_proj\nbad", "F32", [1, 2], b""))  # 8 bytes short: an error naming it
    open(os.path.join(out, "name-newline"), "wb").write(bytes([0]) + st(ts))
    src = open(os.path.join(out, "fp8-row"), "rb").read()
    open(os.path.join(out, "fp8-row-host"), "wb").write(bytes([src[0] | 4]) + src[1:])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/model_load")
