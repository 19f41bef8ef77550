"""bench/hf_generate_baseline.py: the in-run baseline of issue 6's serving benchmark. The same workload as
`ignis bench` runs against `ignis serve` (128 random prompt tokens, 256 output tokens, EOS ignored, greedy) through
Hugging Face transformers' generate on the same GPU: one static batch of C prompts per concurrency level C
(generate has no continuous batching; a batch of C is the best it can do for C clients).
  python3 bench/hf_generate_baseline.py MODEL_DIR [1,16,64,256]
Prints one line per level: hf_generate batch=C output_tok_s=X ttft_ms=Y (TTFT = the time to the first new token of
the batch, measured with max_new_tokens=1)."""
import sys, time
import torch
from transformers import AutoModelForCausalLM


def main():
    d = sys.argv[1]
    levels = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,16,64,256").split(",")]
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda").eval()
    print(f"hf_generate load {time.time() - t0:.1f} s, transformers attention {model.config._attn_implementation}",
          flush=True)
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    for c in levels:
        ids = torch.randint(1000, V - 1000, (c, 128), generator=g).cuda()
        mask = torch.ones_like(ids)
        kw = dict(attention_mask=mask, do_sample=False, eos_token_id=None, pad_token_id=0)
        try:
            with torch.inference_mode():
                model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
                torch.cuda.synchronize()
                t = time.time()
                model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
                torch.cuda.synchronize()
                ttft = time.time() - t
                t = time.time()
                out = model.generate(ids, max_new_tokens=256, min_new_tokens=256, **kw)
                torch.cuda.synchronize()
                dt = time.time() - t
            n = (out.shape[1] - 128) * c
            print(f"hf_generate batch={c} output_tok_s={n / dt:.1f} ttft_ms={ttft * 1e3:.1f} "
                  f"({n} tokens in {dt:.2f} s)", flush=True)
        except torch.OutOfMemoryError:
            print(f"hf_generate batch={c}: out of memory", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
