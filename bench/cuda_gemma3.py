"""bench/cuda_gemma3.py: the Gemma3 (text) check of the CUDA backend, run on the GPU machine, as bench/cuda_phi3.py.
  make DIR      random-weight Gemma3ForCausalLM (hidden 1152, intermediate 6912, 6 layers: 5 sliding (window 512)
                and 1 full, 4 heads / 1 KV head of head_dim 256, query_pre_attn_scalar 256, rope theta 1e4 on the
                sliding layers and 1e6 with linear factor 8 on the full one, tied embeddings, vocab 32000, std 0.02,
                norm weights N(0, 0.1) so that (1 + w) shows; seed 0) saved in bf16; transformers' float32 and bf16
                logits at the checked positions of random prompts (+256 teacher-forced decode ids)
  compare DIR   our logits (DIR/ours_L.bin from `cuda_device logits --model`) vs the float32 reference (<= 1.5x
                transformers' own bf16 error at every position)."""
import os, sys
import numpy as np
import cuda_llama8b as l8

LENS = [128, 1024]
l8.LENS = LENS


def make(d):
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM
    os.makedirs(d, exist_ok=True)
    lt = ["sliding_attention"] * 5 + ["full_attention"]
    cfg = Gemma3TextConfig(vocab_size=32000, hidden_size=1152, intermediate_size=6912, num_hidden_layers=6,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                           sliding_window=512, layer_types=lt, max_position_embeddings=32768, rms_norm_eps=1e-6,
                           initializer_range=0.02, tie_word_embeddings=True, pad_token_id=0, bos_token_id=2,
                           eos_token_id=1,
                           rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                            "full_attention": {"rope_type": "linear", "factor": 8.0,
                                                               "rope_theta": 1000000.0}})
    build(d, cfg, Gemma3ForCausalLM)


def build(d, cfg, cls, references=l8.references):
    """A random cls(cfg) (seed 0; norm weights N(0, 0.1)) saved in bf16 to d, random prompts of LENS (+ decode ids,
    token 0 = bos 2) and transformers' references at their checked positions (also bench/cuda_gemma2.py's)."""
    import torch
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = cls(cfg)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(0.1 * torch.randn_like(p))
    model = model.to(torch.bfloat16).eval()
    model.save_pretrained(d)
    rng = np.random.default_rng(3)
    seqs = {}
    for L in LENS:
        ids = rng.integers(3, 32000, size=L + l8.DECODE).astype(np.int32)
        ids[0] = 2
        ids.tofile(f"{d}/ids_{L}.bin")
        seqs[L] = ids
    references(d, cls, seqs)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(0 if l8.compare(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "ours") else 1)
