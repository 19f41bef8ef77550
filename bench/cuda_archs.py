"""bench/cuda_archs.py: GPU checks of the architectures added without kernels of their own (Granite's multipliers,
Mistral3's multimodal checkpoint layout), run on the GPU machine like bench/cuda_phi3.py.
  make NAME DIR   NAME granite (GraniteForCausalLM: hidden 1024, 8 layers, 16/4 heads, granite-3's multipliers
                  12 / 0.22 / 0.015625 / 8, tied) or mistral3 (Mistral3ForConditionalGeneration: a Mistral text model
                  of hidden 1024, 8 layers, 8/2 heads of head_dim 128, beside a 1-layer Pixtral tower); random weights
                  (std 0.02, seed 0) saved in bf16; transformers' float32 and bf16 logits (the whole model's forward,
                  so Granite's logits scaling included) at the checked positions -> DIR/ref_{f32,bf16}_L.npy
  compare DIR     our logits (DIR/ours_L.bin from `cuda_device logits --model`) against them: <= 1.5x transformers'
                  own bf16 error at every position."""
import os, sys
import numpy as np
import cuda_llama8b as l8

LENS = [128, 1024]
l8.LENS = LENS


def make(name, d):
    import torch
    import transformers as tf
    os.makedirs(d, exist_ok=True)
    if name == "granite":
        cfg = tf.GraniteConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                               num_attention_heads=16, num_key_value_heads=4, embedding_multiplier=12.0,
                               residual_multiplier=0.22, attention_multiplier=0.015625, logits_scaling=8.0,
                               tie_word_embeddings=True, max_position_embeddings=4096, initializer_range=0.02)
        cls = tf.GraniteForCausalLM
    else:
        text = tf.MistralConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                                num_attention_heads=8, num_key_value_heads=2, head_dim=128,
                                max_position_embeddings=4096, initializer_range=0.02, sliding_window=None)
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                      patch_size=14, head_dim=32)
        cfg = tf.Mistral3Config(text_config=text, vision_config=vision, tie_word_embeddings=False)
        cls = tf.Mistral3ForConditionalGeneration
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = cls(cfg)
    model.to(torch.bfloat16).save_pretrained(d)
    del model
    rng = np.random.default_rng(4)
    seqs = {}
    for L in LENS:
        ids = rng.integers(3, 32000, size=L + l8.DECODE).astype(np.int32)
        ids.tofile(f"{d}/ids_{L}.bin")
        seqs[L] = ids
    for tag, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        m = cls.from_pretrained(d, dtype=dt).cuda().eval()
        with torch.no_grad():
            for L in LENS:
                x = torch.from_numpy(seqs[L].astype(np.int64)).cuda()[None]
                lg = m(input_ids=x).logits[0][l8.positions(L)].float().cpu().numpy()
                np.save(f"{d}/ref_{tag}_{L}.npy", lg)
        print(f"reference {tag} done", flush=True)
        del m
        torch.cuda.empty_cache()


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    else:
        sys.exit(0 if l8.compare(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "ours") else 1)
