"""bench/cuda_models.py: random-weight checkpoints of real model shapes (save_pretrained, bf16) for speed runs on the
GPU machine, where no hub access exists. Weights are N(0, 0.02), so only the timings mean something.
  save NAME DIR     NAME: phi4mini (Phi-4-mini-instruct's shape, Phi3ForCausalLM: hidden 3072, 32 layers, 24/8 heads,
                    partial rotary 0.75, longrope, vocab 200064, tied) or gemma3_1b (gemma-3-1b's shape,
                    Gemma3ForCausalLM: hidden 1152, 26 layers, 4/1 heads of 256, sliding 512 on 5 of 6 layers,
                    vocab 262144, tied) or gemma2_2b (gemma-2-2b's shape, Gemma2ForCausalLM: hidden 2304, 26 layers,
                    8/4 heads of 256, sliding 4096 on the even layers, softcaps 50 and 30; vocab 262144 rather than
                    256000, so that Gemma 3's tokenizer, the one carried to the GPU machine, fits it; tied) or
                    qwen3_1p7b (Qwen3-1.7B's shape: hidden 2048, 28 layers, 16/8 heads of 128 with q/k norms, vocab
                    151936, tied)"""
import sys, time


def phi4mini():
    from transformers import Phi3Config, Phi3ForCausalLM
    half = 48
    rope = {"rope_type": "longrope", "short_factor": [1.0] * half, "long_factor": [1.0 + i for i in range(half)],
            "original_max_position_embeddings": 4096, "rope_theta": 10000.0, "partial_rotary_factor": 0.75}
    cfg = Phi3Config(vocab_size=200064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                     num_attention_heads=24, num_key_value_heads=8, max_position_embeddings=131072,
                     original_max_position_embeddings=4096, partial_rotary_factor=0.75, rope_parameters=rope,
                     tie_word_embeddings=True, rms_norm_eps=1e-5, pad_token_id=199999, bos_token_id=199999,
                     eos_token_id=199999, initializer_range=0.02)
    return Phi3ForCausalLM, cfg


def gemma3_1b():
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM
    lt = [("full_attention" if (i + 1) % 6 == 0 else "sliding_attention") for i in range(26)]
    cfg = Gemma3TextConfig(vocab_size=262144, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                           sliding_window=512, layer_types=lt, max_position_embeddings=32768, rms_norm_eps=1e-6,
                           tie_word_embeddings=True, initializer_range=0.02,
                           rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}})
    return Gemma3ForCausalLM, cfg


def qwen3_1p7b():
    from transformers import Qwen3Config, Qwen3ForCausalLM
    cfg = Qwen3Config(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                      num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                      rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, initializer_range=0.02)
    return Qwen3ForCausalLM, cfg


def gemma2_2b():
    from transformers import Gemma2Config, Gemma2ForCausalLM
    lt = [("sliding_attention" if i % 2 == 0 else "full_attention") for i in range(26)]
    cfg = Gemma2Config(vocab_size=262144, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                       sliding_window=4096, layer_types=lt, max_position_embeddings=8192, rms_norm_eps=1e-6,
                       attn_logit_softcapping=50.0, final_logit_softcapping=30.0, tie_word_embeddings=True,
                       initializer_range=0.02, rope_theta=10000.0)
    return Gemma2ForCausalLM, cfg


if __name__ == "__main__":
    import torch
    cls, cfg = {"phi4mini": phi4mini, "gemma3_1b": gemma3_1b, "gemma2_2b": gemma2_2b, "qwen3_1p7b": qwen3_1p7b}[sys.argv[2]]()
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):
        m = cls(cfg).to(torch.bfloat16)
    m.save_pretrained(sys.argv[3])
    n = sum(p.numel() for p in m.parameters())
    print(f"{sys.argv[2]}: {n / 1e9:.2f}B parameters, saved in {time.time() - t0:.1f} s", flush=True)
