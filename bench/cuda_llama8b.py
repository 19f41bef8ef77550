"""bench/cuda_llama8b.py: the Llama-3-8B-shape check of the CUDA backend, run on the GPU machine.
  save DIR      only the model (no prompts, no references): for the serving run
  make DIR      random-weight model (hidden 4096, inter 14336, 32 layers, 32 heads, 8 KV heads, vocab 128256,
                rope_theta 500000, std 0.02 init, seed 0) saved in bf16 with save_pretrained; random prompt ids
                for L in LENS (+256 teacher-forced decode ids); transformers' logits at the checked positions
                in float32 (bf16 weights upcast) and in bf16 -> DIR/ref_{f32,bf16}_L.npy
  compare DIR   our logits (DIR/ours_L.bin from bench/cuda_llama logits) vs the float32 reference: relative L2
                error per position, passing when <= 1.5x transformers' own bf16 error at every position."""
import json, os, sys, time
import numpy as np

LENS = [16, 128, 1024, 4096]
DECODE = 256


def positions(L):
    return [0, L // 2, L - 1, L, L + 31, L + 127, L + 255]


def make(d, refs=True):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    os.makedirs(d, exist_ok=True)
    import inspect
    kw = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
              num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rms_norm_eps=1e-5,
              initializer_range=0.02, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001,
              attention_bias=False, mlp_bias=False)
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 500000.0}
    else:
        kw["rope_theta"] = 500000.0
    cfg = LlamaConfig(**kw)
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    # .to(dtype) would also round the rotary inv_freq buffer; transformers' from_pretrained keeps it float32,
    # so keep the float32 one (a bf16-rounded inv_freq moves every rotated position by up to 2^-9 relative)
    inv = model.model.rotary_emb.inv_freq.detach().clone()

    def keep_inv(m):
        m.model.rotary_emb.inv_freq = inv.clone()
        m.model.rotary_emb.original_inv_freq = inv.clone()
        return m
    model = keep_inv(model.to(torch.bfloat16).eval())
    w = model.model.layers[0].self_attn.q_proj.weight
    f = model.model.rotary_emb.inv_freq
    print(f"inv_freq[1] {f[1].item():.6e} (500000^(-2/128) = {500000.0 ** (-2 / 128):.6e})", flush=True)
    print(f"made model in {time.time()-t0:.1f}s; q_proj[0] std {w.float().std().item():.4f}", flush=True)
    t0 = time.time()
    model.save_pretrained(d)
    print(f"saved in {time.time()-t0:.1f}s: {sorted(os.listdir(d))}", flush=True)
    if not refs:
        return
    rng = np.random.default_rng(1)
    seqs = {}
    for L in LENS:
        ids = rng.integers(0, cfg.vocab_size, size=L + DECODE).astype(np.int32)
        ids[0] = 128000
        ids.tofile(f"{d}/ids_{L}.bin")
        seqs[L] = ids
    for tag, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        model = keep_inv(model.to(dt))
        assert model.model.rotary_emb.inv_freq.dtype == torch.float32
        t0 = time.time()
        save_refs(d, model, tag, seqs)
        print(f"reference {tag} in {time.time()-t0:.1f}s", flush=True)
    del model
    torch.cuda.empty_cache()


def save_refs(d, m, tag, seqs, post=None):
    """m's logits at the checked positions of each seqs[L] (post(logits) applied first when given, in m's dtype)
    -> d/ref_{tag}_L.npy"""
    import torch
    with torch.no_grad():
        for L in LENS:
            x = torch.from_numpy(seqs[L].astype(np.int64)).cuda()[None]
            h = m.model(input_ids=x).last_hidden_state[0]
            lg = m.lm_head(h[positions(L)])
            if post is not None:
                lg = post(lg)
            np.save(f"{d}/ref_{tag}_{L}.npy", lg.float().cpu().numpy())


def references(d, cls, seqs):
    """transformers' float32 and bf16 logits at the checked positions of each seqs[L], from the checkpoint in d loaded
    with cls.from_pretrained as a user loads it (rotary buffers recomputed in float32) -> d/ref_{f32,bf16}_L.npy"""
    import torch
    for tag, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        m = cls.from_pretrained(d, dtype=dt).cuda().eval()
        save_refs(d, m, tag, seqs)
        print(f"reference {tag} done", flush=True)
        del m
        torch.cuda.empty_cache()


def compare(d, tag="ours"):
    ok = True
    rows = []
    for L in LENS:
        f32 = np.load(f"{d}/ref_f32_{L}.npy").astype(np.float64)
        bf = np.load(f"{d}/ref_bf16_{L}.npy").astype(np.float64)
        ours = np.fromfile(f"{d}/{tag}_{L}.bin", dtype=np.float32).reshape(-1, f32.shape[1]).astype(np.float64)
        if ours.shape != f32.shape:
            print(f"L={L}: shape {ours.shape} != {f32.shape}")
            ok = False
            continue
        for i, p in enumerate(positions(L)):
            den = np.linalg.norm(f32[i])
            eo = np.linalg.norm(ours[i] - f32[i]) / den
            eb = np.linalg.norm(bf[i] - f32[i]) / den
            agree = int(np.argmax(ours[i]) == np.argmax(f32[i]))
            good = bool(np.isfinite(eo)) and eo <= 1.5 * eb
            ok &= good
            rows.append((L, p, eo, eb, eo / eb, agree, good))
    print(f"{'L':>5} {'pos':>5} {'ours_relL2':>11} {'hf_bf16_relL2':>13} {'ratio':>6} {'argmax=f32':>10} pass")
    for L, p, eo, eb, r, a, g in rows:
        print(f"{L:5d} {p:5d} {eo:11.3e} {eb:13.3e} {r:6.2f} {a:10d} {'yes' if g else 'NO'}")
    print("l8b_check", "PASS" if ok else "FAIL", f"max ratio {max(r[4] for r in rows):.2f}" if rows else "")
    return ok


if __name__ == "__main__":
    if sys.argv[1] in ("make", "save"):
        make(sys.argv[2], refs=sys.argv[1] == "make")
    else:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "ours") else 1)
