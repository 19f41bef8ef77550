"""bench/cuda_phi3.py: the Phi3 check of the CUDA backend (Phi-4-mini's features at a smaller size), run on the GPU
machine, as bench/cuda_llama8b.py does for the Llama-3-8B shape.
  make DIR      random-weight Phi3ForCausalLM (hidden 1536, intermediate 4096, 4 layers, 12 heads, 4 KV heads, head_dim
                128, partial_rotary_factor 0.75 (96 rotary dims), longrope with original_max_position_embeddings 64
                of 4096, tied embeddings, vocab 32064, std 0.02, seed 0) saved in bf16 with save_pretrained; random
                ids for L in LENS (+256 teacher-forced decode ids); transformers' logits at the checked positions in
                float32 (bf16 weights upcast) and in bf16 -> DIR/ref_{f32,bf16}_L.npy
  compare DIR   our logits (DIR/ours_L.bin from `cuda_device logits --model`) vs the float32 reference, passing when
                the relative L2 error is <= 1.5x transformers' own bf16 error at every position.
Every checked length is past the original 64 positions, so transformers' one forward takes the long factors at every
position, as the engine's steps do there (the prompt's chunks by its whole length, decode steps past 64)."""
import os, sys, time
import numpy as np
import cuda_llama8b as l8

LENS = [128, 1024]
l8.LENS = LENS


def make(d):
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(2)
    half = 96 // 2
    short = [float(x) for x in np.round(1 + rng.random(half) * 0.5, 4)]
    long_ = [float(x) for x in np.round(1 + np.linspace(0, 1, half) ** 2 * 40, 4)]
    rope = {"rope_type": "longrope", "short_factor": short, "long_factor": long_, "original_max_position_embeddings": 64,
            "rope_theta": 10000.0, "partial_rotary_factor": 0.75}
    kw = dict(hidden_size=1536, intermediate_size=4096, num_hidden_layers=4, num_attention_heads=12,
              num_key_value_heads=4, vocab_size=32064, max_position_embeddings=4096,
              original_max_position_embeddings=64, rms_norm_eps=1e-5, initializer_range=0.02,
              tie_word_embeddings=True, bos_token_id=1, eos_token_id=32000, pad_token_id=32000,
              partial_rotary_factor=0.75)
    import inspect
    if "rope_parameters" in inspect.signature(Phi3Config.__init__).parameters:
        kw["rope_parameters"] = rope
    else:
        kw["rope_theta"] = 10000.0
        kw["rope_scaling"] = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
    cfg = Phi3Config(**kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Phi3ForCausalLM(cfg)
    inv = model.model.rotary_emb.inv_freq.detach().clone()
    model = model.to(torch.bfloat16).eval()
    model.save_pretrained(d)
    print(f"saved: {sorted(os.listdir(d))}; rotary inv_freq {tuple(inv.shape)}", flush=True)
    seqs = {}
    for L in LENS:
        ids = rng.integers(0, 32000, size=L + l8.DECODE).astype(np.int32)
        ids.tofile(f"{d}/ids_{L}.bin")
        seqs[L] = ids
    l8.references(d, Phi3ForCausalLM, seqs)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(0 if l8.compare(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "ours") else 1)
