"""bench/cuda_gemma2.py: the Gemma2 check of the CUDA backend, run on the GPU machine, as bench/cuda_gemma3.py.
  make DIR      random-weight Gemma2ForCausalLM in gemma-2-2b's layer shape (hidden 2304, intermediate 9216, 8 heads /
                4 KV heads of head_dim 256, query_pre_attn_scalar 256), 4 layers alternating sliding (window 512, so the
                1,024-token prompt passes it) and full, one rope (theta 1e4), tied embeddings, vocab 32000, std 0.02,
                norm weights N(0, 0.1) so that (1 + w) shows, attn_logit_softcapping 5 and final_logit_softcapping 3
                (gemma-2's 50 and 30 would leave this random model's scores and logits where tanh is linear; seed 0),
                saved in bf16; transformers' float32 and bf16 logits (eager attention, which does the softcapping; the
                final softcap applied after lm_head as Gemma2ForCausalLM does, in the model's dtype) at the checked
                positions of random prompts (+256 teacher-forced decode ids)
  compare DIR   our logits (DIR/ours_L.bin from `cuda_device logits --model`) vs the float32 reference (<= 1.5x
                transformers' own bf16 error at every position)."""
import os, sys
import numpy as np
import cuda_llama8b as l8
import cuda_gemma3 as g3  # its prompts and build (LENS 128 and 1,024)

LENS = g3.LENS


def references(d, cls, seqs):
    """transformers' float32 and bf16 logits at the checked positions, softcapped -> d/ref_{f32,bf16}_L.npy"""
    import torch
    for tag, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        m = cls.from_pretrained(d, dtype=dt, attn_implementation="eager").cuda().eval()
        cap = m.config.final_logit_softcapping
        l8.save_refs(d, m, tag, seqs, post=lambda lg: torch.tanh(lg / cap) * cap)
        print(f"reference {tag} done", flush=True)
        del m
        torch.cuda.empty_cache()


def make(d):
    from transformers import Gemma2Config, Gemma2ForCausalLM
    os.makedirs(d, exist_ok=True)
    cfg = Gemma2Config(vocab_size=32000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=4,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                       sliding_window=512, max_position_embeddings=8192, rms_norm_eps=1e-6, initializer_range=0.02,
                       tie_word_embeddings=True, pad_token_id=0, bos_token_id=2, eos_token_id=1,
                       attn_logit_softcapping=5.0, final_logit_softcapping=3.0)
    g3.build(d, cfg, Gemma2ForCausalLM, references)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(0 if l8.compare(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "ours") else 1)
