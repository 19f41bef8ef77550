"""bench/tiny_bf16_ref.py: how far transformers' own bf16 run of a tiny checkpoint is from its float32 run (per-row
relative L2 of the logits, worst and median over random prompts of 60 and 15 tokens), to set next to
bench/cuda_tiny_check's bf16-vs-CPU numbers for the same models (is a 3e-2 gap bf16 rounding at these widths?).
    python3 bench/tiny_bf16_ref.py MODEL_DIR...   (GPU machine; transformers + torch)"""
import sys

import torch
from transformers import AutoModelForCausalLM

for d in sys.argv[1:]:
    torch.manual_seed(0)
    m32 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).cuda().eval()
    m16 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).cuda().eval()
    V = m32.config.vocab_size
    worst, meds = 0.0, []
    for L in (60, 15, 60, 15):
        ids = torch.randint(0, V, (1, L), device="cuda")
        with torch.no_grad():
            a = m32(ids).logits[0].float()
            b = m16(ids).logits[0].float()
        e = (b - a).norm(dim=-1) / a.norm(dim=-1)
        worst = max(worst, e.max().item())
        meds.append(e.median().item())
    print(f"tiny_bf16_ref {d.rstrip('/').split('/')[-1]}: transformers bf16 vs float32, per-row rel L2 worst "
          f"{worst:.3e}, medians {' '.join(f'{x:.2e}' for x in meds)}")
