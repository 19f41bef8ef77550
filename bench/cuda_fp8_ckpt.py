"""bench/cuda_fp8_ckpt.py: an FP8 checkpoint from a bf16 one, for the GPU check of ignis's FP8 loading.
  make SRC FP8 DEQ [STRATEGY]  every *_proj.weight of SRC (a bf16 safetensors model dir) quantized with torch to
                               float8_e4m3fn: STRATEGY "channel" (default; scales [rows, 1], compressed-tensors'
                               layout and quantization_config) or "block" (128 x 128 blocks, weight_scale_inv, the
                               "fp8" quant_method with weight_block_size); FP8 gets the codes and scales, DEQ the
                               dequantized weights (code * scale in float32, then bfloat16: what ignis must load from
                               FP8) as plain bf16. The same ids from both directories mean the loader's dequantization
                               gives those weights bit for bit."""
import json, os, shutil, sys


def make(src, fp8, deq, strategy="channel"):
    import torch
    from safetensors.torch import load_file, save_file
    for d in (fp8, deq):
        os.makedirs(d, exist_ok=True)
        for f in ("config.json", "generation_config.json"):
            if os.path.exists(os.path.join(src, f)):
                shutil.copy(os.path.join(src, f), os.path.join(d, f))
    cfg = json.load(open(os.path.join(src, "config.json")))
    if strategy == "block":
        cfg["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic",
                                      "weight_block_size": [128, 128]}
    else:
        cfg["quantization_config"] = {
            "quant_method": "compressed-tensors", "format": "float-quantized",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                "num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True, "dynamic": False}}},
            "ignore": ["lm_head"]}
    json.dump(cfg, open(os.path.join(fp8, "config.json"), "w"), indent=1)
    files = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
    for f in files:
        t = load_file(os.path.join(src, f), device="cuda")
        q, dq = {}, {}
        for name, w in t.items():
            if not name.endswith("_proj.weight"):
                q[name] = w
                dq[name] = w
                continue
            wf = w.float()
            if strategy == "block":
                R, C = wf.shape
                b = 128
                pr, pc = (-R) % b, (-C) % b
                wp = torch.nn.functional.pad(wf, (0, pc, 0, pr))
                blocks = wp.reshape((R + pr) // b, b, (C + pc) // b, b)
                s = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0  # [R/b, C/b]
                sfull = s.repeat_interleave(b, 0).repeat_interleave(b, 1)[:R, :C]
                code = (wf / sfull).to(torch.float8_e4m3fn)
                q[name] = code
                q[name[:-len(".weight")] + ".weight_scale_inv"] = s.contiguous()
                dq[name] = (code.float() * sfull).to(torch.bfloat16)
            else:
                s = wf.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448.0  # [R, 1]
                code = (wf / s).to(torch.float8_e4m3fn)
                q[name] = code
                q[name[:-len(".weight")] + ".weight_scale"] = s.contiguous()
                dq[name] = (code.float() * s).to(torch.bfloat16)
        save_file({k: v.contiguous().cpu() for k, v in q.items()}, os.path.join(fp8, f), metadata={"format": "pt"})
        save_file({k: v.contiguous().cpu() for k, v in dq.items()}, os.path.join(deq, f), metadata={"format": "pt"})
        del t, q, dq
    idx = os.path.join(src, "model.safetensors.index.json")
    if os.path.exists(idx):  # the index names every tensor's file: the scales go beside their weights
        j = json.load(open(idx))
        shutil.copy(idx, os.path.join(deq, "model.safetensors.index.json"))
        wm = dict(j["weight_map"])
        for k, v in j["weight_map"].items():
            if k.endswith("_proj.weight"):
                wm[k[:-len(".weight")] + (".weight_scale_inv" if strategy == "block" else ".weight_scale")] = v
        j["weight_map"] = wm
        json.dump(j, open(os.path.join(fp8, "model.safetensors.index.json"), "w"), indent=1)
    print(f"made {fp8} ({strategy}) and {deq} from {src}: {len(files)} files")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "make":
        make(*sys.argv[2:6])
    else:
        print(__doc__)
        sys.exit(2)
