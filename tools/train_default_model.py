#!/usr/bin/env python3
"""tools/train_default_model.py: trains kjv-llama, the small model that ignis ships and serves by default (issue 8).

Two steps, on two machines:
  1. extract (a Debian machine with the package bible-kjv, which reads bible-kjv-text's data; no torch needed):
       python3 tools/train_default_model.py extract --out .kjv/kjv.tsv
  2. train (a machine whose python3 has torch, transformers and tokenizers; a GPU makes it minutes):
       python3 tools/train_default_model.py train --data .kjv/kjv.tsv --out OUTDIR
     writes OUTDIR/models/kjv-llama/ (save_pretrained, bf16, tokenizer, README.md model card) and
     OUTDIR/tests/fixtures/default_model/expected.json (transformers' greedy continuations in float32).
Deterministic given --seed: two runs on the same machine and software write bit-identical files
(tools/train_check_determinism.sh checks it). What makes it so: torch's deterministic algorithms in strict mode
(an op without a deterministic implementation stops the run instead of warning), cuBLAS's fixed workspace
(CUBLAS_WORKSPACE_CONFIG, set below before torch can start CUDA), eager attention (plain matmul and softmax: the
fused SDPA kernels' backward, cuDNN's above all, accumulates in a run-dependent order), cuDNN deterministic
without autotuning, every random number from generators seeded by --seed, a fixed CPU thread count, and nothing
that depends on the wall clock (--max-train-seconds, off by default, is the one exception, and the model card
says when it cut a run). The tokenizer trainer (Rust, multithreaded) is deterministic: it breaks ties between
equally frequent pairs by their ids, and ids come from a sorted alphabet.
"""
import os

# cuBLAS picks reduction splits by workspace unless this is set before the CUDA context exists (torch's strict
# deterministic mode refuses cuBLAS calls without it). ":16:8" is the other deterministic setting; keep either.
if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"

import argparse  # noqa: E402 (after the environment above, on purpose)
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"), ("Deu", "Deuteronomy"),
    ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"), ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"),
    ("1Ki", "1 Kings"), ("2Ki", "2 Kings"), ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"),
    ("Neh", "Nehemiah"), ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"), ("Prv", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"), ("Isa", "Isaiah"), ("Jer", "Jeremiah"),
    ("Lam", "Lamentations"), ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"), ("Joel", "Joel"),
    ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"), ("Mic", "Micah"), ("Nahum", "Nahum"),
    ("Hab", "Habakkuk"), ("Zep", "Zephaniah"), ("Hag", "Haggai"), ("Zec", "Zechariah"), ("Mal", "Malachi"),
    ("Mat", "Matthew"), ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"), ("Rom", "Romans"),
    ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"), ("Eph", "Ephesians"),
    ("Phi", "Philippians"), ("Col", "Colossians"), ("1Th", "1 Thessalonians"), ("2Th", "2 Thessalonians"),
    ("1Tim", "1 Timothy"), ("2Tim", "2 Timothy"), ("Titus", "Titus"), ("Phmn", "Philemon"), ("Heb", "Hebrews"),
    ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"), ("1Jn", "1 John"), ("2Jn", "2 John"),
    ("3Jn", "3 John"), ("Jude", "Jude"), ("Rev", "Revelation"),
]

CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SPECIALS = ["<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
MODEL_NAME = "kjv-llama"
PROMPTS = ["In the beginning", "And Jesus answered and said unto them,", "The LORD is my shepherd"]
CHAT_MESSAGES = [{"role": "user", "content": "John 3:16"}]
ATTN = "eager"
CPU_THREADS = 4  # fixed: a CPU matmul's summation order can depend on the thread count


def log(*a):
    print(*a, flush=True)


def render_chat(messages, add_generation_prompt=False):
    """CHAT_TEMPLATE, written out in Python (checked against transformers' rendering)."""
    s = "<s>" + "".join(f"<|{m['role']}|>\n{m['content']}</s>\n" for m in messages)
    return s + ("<|assistant|>\n" if add_generation_prompt else "")


# ---------------------------------------------------------------------------------------------------- extract
def cmd_extract(a):
    raw = subprocess.run(["bible", "-m", "20000", "-f", "-l100000", "Ge1:1-Re22:21"], check=True,
                         capture_output=True, text=True).stdout
    names = dict(BOOKS)
    rx = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    rows = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        m = rx.match(line)
        if not m:
            sys.exit(f"extract: unexpected line from bible: {line[:80]!r}")
        abbr, c, v, text = m.groups()
        if abbr not in names:
            sys.exit(f"extract: unknown book abbreviation {abbr!r}")
        rows.append((names[abbr], int(c), int(v), " ".join(text.split())))
    books = {r[0] for r in rows}
    chapters = {(r[0], r[1]) for r in rows}
    if len(rows) != 31102 or len(books) != 66 or len(chapters) != 1189:
        sys.exit(f"extract: got {len(rows)} verses, {len(books)} books, {len(chapters)} chapters "
                 "(the KJV has 31102, 66, 1189)")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\n")
    ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "bible-kjv-text"], capture_output=True,
                         text=True).stdout.strip() or "unknown"
    src = {"package": "bible-kjv-text", "version": ver, "reader": "bible (package bible-kjv)",
           "command": "bible -m 20000 -f -l100000 Ge1:1-Re22:21", "verses": len(rows),
           "chapters": len(chapters), "books": len(books), "chars": sum(len(r[3]) for r in rows)}
    with open(os.path.join(os.path.dirname(os.path.abspath(a.out)), "source.json"), "w") as f:
        json.dump(src, f, indent=1)
    log(f"extract: {len(rows)} verses, {len(chapters)} chapters, {len(books)} books -> {a.out} "
        f"({os.path.getsize(a.out)} bytes); bible-kjv-text {ver}")


def load_chapters(path):
    chapters, cur = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            book, c, v, text = line.rstrip("\n").split("\t")
            key = (book, int(c))
            if cur is None or cur[0] != key:
                cur = (key, [])
                chapters.append(cur)
            cur[1].append((int(v), text))
    return [(k[0], k[1], vs) for k, vs in chapters]


def chapter_text(book, c, verses):
    return f"{book} {c}\n" + "\n".join(t for _, t in verses)


# ------------------------------------------------------------------------------------------------------ train
def params_digest(model):
    """sha256 (first 16 hex digits) of every parameter's bytes, in order: where two runs part, for the log."""
    import torch
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def cmd_train(a):
    import torch
    import torch.nn.functional as F
    import transformers
    import tokenizers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    t_start = time.time()
    random.seed(a.seed)
    try:
        import numpy
        numpy.random.seed(a.seed)
    except ImportError:
        pass
    torch.manual_seed(a.seed)  # the CPU generator and every CUDA device's
    torch.use_deterministic_algorithms(True)  # strict: an op with no deterministic implementation raises
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(CPU_THREADS)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
        f"device {dev}" + (f" ({torch.cuda.get_device_name(0)})" if dev == "cuda" else "")
        + f"; CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}")
    src_path = os.path.join(os.path.dirname(os.path.abspath(a.data)), "source.json")
    source = json.load(open(src_path)) if os.path.exists(src_path) else {}

    # ---- data split: every 20th chapter (index % 20 == 7) is held out; those alternate between val and test.
    chapters = load_chapters(a.data)
    n = len(chapters)
    held = [i for i in range(n) if i % 20 == 7]
    val_set, test_set = set(held[0::2]), set(held[1::2])
    train_ids = [i for i in range(n) if i % 20 != 7]
    docs = [chapter_text(*ch) for ch in chapters]
    chars_all = sum(len(d) for d in docs)
    chars_held = sum(len(docs[i]) for i in held)
    log(f"{n} chapters: {len(train_ids)} train, {len(val_set)} val, {len(test_set)} test; held-out text "
        f"{100.0 * chars_held / chars_all:.2f}% of {chars_all} chars")

    # ---- tokenizer: byte-level BPE on the training chapters only.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([docs[i] for i in train_ids], trainer=trainer)
    BOS, EOS = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    assert (BOS, EOS) == (0, 1), (BOS, EOS)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", BOS)])
    V = tok.get_vocab_size()
    log(f"tokenizer: byte-level BPE, vocab {V} ({time.time() - t_start:.1f} s)")

    def enc(texts):
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]

    def stream_of(idx_list):
        ids = enc([docs[i] for i in idx_list])
        out = []
        for x in ids:
            out += [BOS] + x + [EOS]
        return torch.tensor(out, dtype=torch.long)

    rng = random.Random(a.seed)
    order = list(train_ids)
    rng.shuffle(order)
    plain = stream_of(order)
    val_stream = stream_of(sorted(val_set))
    test_stream = stream_of(sorted(test_set))
    # Chat exchanges made from training verses only: "Book c:v" -> the verse, "Continue: first words" -> the rest.
    chats = []
    for i in train_ids:
        book, c, verses = chapters[i]
        for v, text in verses:
            w = text.split()
            if len(w) >= 8 and rng.random() < 0.4:
                k = rng.randint(3, min(6, len(w) - 3))
                q, ans = "Continue: " + " ".join(w[:k]), " ".join(w[k:])
            else:
                q, ans = f"{book} {c}:{v}", text
            chats.append(render_chat([{"role": "user", "content": q}, {"role": "assistant", "content": ans}]))
    rng.shuffle(chats)
    chat = torch.tensor([t for x in enc(chats) for t in x], dtype=torch.long)
    log(f"tokens: train plain {plain.numel()}, train chat {chat.numel()}, val {val_stream.numel()}, "
        f"test {test_stream.numel()}; chars/token {sum(len(docs[i]) for i in train_ids) / plain.numel():.2f}")

    # ---- model
    T, B = a.ctx, a.batch
    cfg_kw = dict(vocab_size=V, hidden_size=a.hidden, intermediate_size=a.inter, num_hidden_layers=a.layers,
                  num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=T,
                  rms_norm_eps=1e-5, initializer_range=0.02, tie_word_embeddings=True, bos_token_id=BOS,
                  eos_token_id=EOS, hidden_act="silu")
    if hasattr(transformers.LlamaConfig(), "rope_parameters"):
        cfg_kw["rope_parameters"] = {"rope_type": "default", "rope_theta": a.rope_theta}
    else:
        cfg_kw["rope_theta"] = a.rope_theta
    cfg = transformers.LlamaConfig(**cfg_kw)
    torch.manual_seed(a.seed)
    # Eager attention: deterministic in backward (matmuls and a softmax). SDPA's fused kernels are not all so:
    # cuDNN's backward has no deterministic mode, and which kernel SDPA picks depends on the torch version.
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation=ATTN).float().to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: Llama, {n_params / 1e6:.2f} M parameters (tied embeddings), hidden {a.hidden}, layers {a.layers}, "
        f"heads {a.heads}/{a.kv_heads}, intermediate {a.inter}, context {T}, attention {ATTN}; "
        f"initial parameters {params_digest(model)}")

    drop = a.dropout

    def drop_hook(mod, inp, out):
        if not mod.training or drop <= 0:
            return None
        if isinstance(out, tuple):
            return (F.dropout(out[0], drop, True),) + tuple(out[1:])
        return F.dropout(out, drop, True)

    hooks = []
    for layer in model.model.layers:
        hooks.append(layer.self_attn.register_forward_hook(drop_hook))
        hooks.append(layer.mlp.register_forward_hook(drop_hook))

    def nll_sum(m, stream, max_windows=None, autocast=True):
        """Sum of -log p over every target of `stream` (windows of T tokens, no overlap), and the count."""
        s = stream.to(dev)
        N = s.numel() - 1
        full = N // T
        if max_windows is not None:
            full = min(full, max_windows)
        spans = [(w * T, T) for w in range(full)]
        if max_windows is None and N - full * T > 0:
            spans.append((full * T, N - full * T))
        tot, cnt = 0.0, 0
        m.eval()
        with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast and dev == "cuda"):
            for j in range(0, len(spans), 16):
                group = spans[j:j + 16]
                by_len = {}
                for st, ln in group:
                    by_len.setdefault(ln, []).append(st)
                for ln, starts in by_len.items():
                    idx = torch.tensor(starts, device=dev)[:, None] + torch.arange(ln, device=dev)[None]
                    logits = m(input_ids=s[idx], use_cache=False).logits.float()
                    tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), s[idx + 1].reshape(-1),
                                           reduction="sum").item()
                    cnt += idx.numel()
        return tot, cnt

    counts = torch.bincount(plain, minlength=V).double()
    uni_logp = torch.log((counts + 1) / (counts.sum() + V))

    def unigram(stream):
        return -uni_logp[stream[1:]].sum().item(), stream.numel() - 1

    def finalize(m, root, quick, info):
        return write_outputs(a, m, tok, root, quick, info, dict(
            torch=torch, F=F, transformers=transformers, dev=dev, nll_sum=nll_sum, unigram=unigram,
            val_stream=val_stream, test_stream=test_stream, BOS=BOS, EOS=EOS, V=V, source=source,
            tokenizers_version=tokenizers.__version__,
            docs=docs, test_set=test_set, val_set=val_set, n_params=n_params, counts=dict(
                plain=plain.numel(), chat=chat.numel(), val=val_stream.numel(), test=test_stream.numel(),
                chapters=n, train_chapters=len(train_ids), held_pct=100.0 * chars_held / chars_all)))

    # ---- smoke test of everything after training, on the untrained model, before spending GPU minutes
    if not a.no_smoke:
        t0 = time.time()
        smoke_dir = tempfile.mkdtemp(prefix="kjv_smoke_")  # its own: two runs at once must not share it
        try:
            with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if dev == "cuda" else []):
                finalize(model, smoke_dir, True, {})  # leaves the random state as it found it
        finally:
            shutil.rmtree(smoke_dir, ignore_errors=True)
        log(f"smoke test of the output stage passed ({time.time() - t0:.1f} s); parameters {params_digest(model)}")

    # ---- training
    data = torch.cat([plain, chat]).to(dev)
    Lp, Lc = plain.numel(), chat.numel()
    g = torch.Generator().manual_seed(a.seed + 1)
    decay = [p for _, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=(dev == "cuda"))

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        p = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    ar = torch.arange(T + 1, device=dev)[None]
    best = (float("inf"), -1, None)
    curve = []
    t_train = time.time()
    loss_acc = torch.zeros((), device=dev)
    stopped_early = None
    step = 0
    for step in range(a.steps):
        is_chat = torch.rand(B, generator=g) < a.chat_frac
        off_p = torch.randint(0, Lp - T - 1, (B,), generator=g)
        off_c = torch.randint(0, Lc - T - 1, (B,), generator=g) + Lp
        off = torch.where(is_chat, off_c, off_p).to(dev)
        w = data[off[:, None] + ar]
        x, y = w[:, :-1], w[:, 1:]
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step)
        model.train()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_acc += loss.detach()
        if step < 2:  # the first steps, bit-exact: a forward or backward that differs between runs shows here
            log(f"trace step {step + 1}: loss {loss.item().hex()} parameters {params_digest(model)}")
        if (step + 1) % a.log_every == 0:
            el = time.time() - t_train
            la = loss_acc.item() / a.log_every
            log(f"step {step + 1}/{a.steps} loss {la:.4f} ({la.hex()}) lr {lr_at(step):.2e} "
                f"{1000 * el / (step + 1):.1f} ms/step {el:.0f} s")
            loss_acc.zero_()
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            s_, c_ = nll_sum(model, val_stream)
            vl = s_ / c_
            curve.append((step + 1, vl))
            mark = ""
            if vl < best[0]:
                best = (vl, step + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
                mark = " (best)"
            log(f"  eval step {step + 1}: val loss {vl:.4f} ({vl.hex()}) ppl {math.exp(vl):.2f}{mark}; parameters "
                f"{params_digest(model)}")
        if a.max_train_seconds > 0 and time.time() - t_train > a.max_train_seconds:
            stopped_early = step + 1
            log(f"time guard: stopping after step {step + 1} ({a.max_train_seconds} s); this run is not "
                "reproducible (the step it stopped at depends on the machine's speed)")
            if not curve or curve[-1][0] != step + 1:
                s_, c_ = nll_sum(model, val_stream)
                curve.append((step + 1, s_ / c_))
                if s_ / c_ < best[0]:
                    best = (s_ / c_, step + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
            break
    train_s = time.time() - t_train
    for h in hooks:
        h.remove()
    model.load_state_dict(best[2])
    log(f"training: {train_s:.0f} s, best val loss {best[0]:.4f} at step {best[1]}")
    info = dict(train_s=train_s, best_step=best[1], best_val=best[0], curve=curve, stopped_early=stopped_early,
                steps_run=(stopped_early or a.steps), total_s=None, t_start=t_start)
    finalize(model, a.out, False, info)
    log(f"done in {time.time() - t_start:.0f} s")


def write_outputs(a, model, tok, root, quick, info, k):
    torch, transformers, dev = k["torch"], k["transformers"], k["dev"]
    BOS, EOS = k["BOS"], k["EOS"]
    mdir = os.path.join(root, "models", MODEL_NAME)
    fdir = os.path.join(root, "tests", "fixtures", "default_model")
    os.makedirs(mdir, exist_ok=True)
    os.makedirs(fdir, exist_ok=True)

    # ---- weights (bf16) and config
    m16 = copy.deepcopy(model).to(torch.bfloat16)
    m16.generation_config.bos_token_id = BOS
    m16.generation_config.eos_token_id = EOS
    m16.save_pretrained(mdir)  # safetensors (the only format in v5; the default in v4)
    del m16
    # ---- tokenizer
    fast_cls = getattr(transformers, "PreTrainedTokenizerFast", None) or getattr(transformers, "TokenizersBackend")
    hf = fast_cls(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", model_max_length=a.ctx,
                  clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(mdir)
    tok.save(os.path.join(mdir, "tokenizer.json"))  # exactly the trained tokenizer, whatever transformers did to it
    tcp = os.path.join(mdir, "tokenizer_config.json")
    tc = json.load(open(tcp))
    saved_cls = tc.get("tokenizer_class")
    tc.update({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
               "model_max_length": a.ctx, "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE})

    def write_tc():
        with open(tcp, "w") as f:
            json.dump(tc, f, indent=2, ensure_ascii=False)
            f.write("\n")
    write_tc()
    jinja = os.path.join(mdir, "chat_template.jinja")
    if os.path.exists(jinja):
        os.remove(jinja)  # the template lives in tokenizer_config.json (one place for every reader)

    # ---- reload the tokenizer as a user would and check it
    tk_notes = []  # where transformers' reading of the saved tokenizer differs from tokenizer.json's own

    def warn(msg):
        log("WARNING: " + msg)
        tk_notes.append(msg)

    def load_rt():
        try:
            return transformers.AutoTokenizer.from_pretrained(mdir)
        except Exception as ex:
            log(f"AutoTokenizer failed with tokenizer_class {tc['tokenizer_class']}: {ex}")
            return None
    rt = load_rt()
    if rt is None and saved_cls and saved_cls != tc["tokenizer_class"]:  # keep the class name this version wrote
        tc["tokenizer_class"] = saved_cls
        write_tc()
        rt = load_rt()
    if rt is None:
        warn(f"transformers {transformers.__version__} could not load the saved tokenizer")
    elif rt.chat_template != CHAT_TEMPLATE:  # this transformers reads templates only from chat_template.jinja
        log("chat_template in tokenizer_config.json not read back by transformers; writing chat_template.jinja too")
        with open(jinja, "w") as f:
            f.write(CHAT_TEMPLATE)
        rt = load_rt()
        if rt is None or rt.chat_template != CHAT_TEMPLATE:
            warn("transformers did not read the chat template back unchanged")
    # The golden ids come from tokenizer.json itself (what every other reader, ignis included, implements),
    # read back with the `tokenizers` library; transformers' tokenizer is compared with it.
    from tokenizers import Tokenizer as _Tk
    tk = _Tk.from_file(os.path.join(mdir, "tokenizer.json"))

    def encode(text, special=True):
        ids = tk.encode(text, add_special_tokens=special).ids
        assert ids == tok.encode(text, add_special_tokens=special).ids, "saved tokenizer.json encodes differently"
        return ids

    def decode(ids):
        return tk.decode(ids, skip_special_tokens=False)
    for p in PROMPTS:
        ids = encode(p)
        assert ids[0] == BOS and ids.count(BOS) == 1, (p, ids)
        assert tk.decode(ids, skip_special_tokens=True) == p, tk.decode(ids, skip_special_tokens=True)
        try:
            r_ids = rt(p)["input_ids"] if rt is not None else "no tokenizer"
        except Exception as ex:
            r_ids = f"error {ex}"
        if r_ids != ids:
            warn(f"transformers encodes {p!r} as {r_ids}, tokenizer.json as {ids}")
    rendered = render_chat(CHAT_MESSAGES, True)
    conv = CHAT_MESSAGES + [{"role": "assistant", "content": "For God so loved the world."}]
    try:
        r1 = rt.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
        r2 = rt.apply_chat_template(conv, tokenize=False)
    except Exception as ex:
        r1 = r2 = f"error {ex}"
    if r1 != rendered or r2 != render_chat(conv):
        warn(f"transformers renders the chat template as {r1!r} / {r2!r}")
    chat_ids = encode(rendered, special=False)
    assert chat_ids[0] == BOS and chat_ids.count(BOS) == 1, chat_ids
    assert tok.token_to_id("<|user|>") in chat_ids and tok.token_to_id("<|assistant|>") in chat_ids

    def load_f32(device, attn):
        try:
            m = transformers.AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation=attn)
        except TypeError:
            m = transformers.AutoModelForCausalLM.from_pretrained(mdir, torch_dtype=torch.float32,
                                                                  attn_implementation=attn)
        assert next(m.parameters()).dtype == torch.float32
        return m.to(device).eval()

    # ---- held-out perplexity of the saved bf16 weights, computed in f32
    mg = load_f32(dev, ATTN)
    ev = {}
    for name in ("val", "test"):
        s, c = k["nll_sum"](mg, k[f"{name}_stream"], max_windows=(1 if quick else None), autocast=False)
        us, uc = k["unigram"](k[f"{name}_stream"])
        chars = sum(len(k["docs"][i]) for i in k[f"{name}_set"])
        ev[name] = dict(loss=s / c, ppl=math.exp(s / c), tokens=c, uni_ppl=math.exp(us / uc),
                        bpc=s / math.log(2) / chars, uni_bpc=us / math.log(2) / chars, chars=chars)
        log(f"{name}: tokens {c}, ppl {ev[name]['ppl']:.2f} (unigram {ev[name]['uni_ppl']:.1f}), bits/char "
            f"{ev[name]['bpc']:.3f} (unigram {ev[name]['uni_bpc']:.3f})" + (" [smoke: 1 window]" if quick else ""))

    # ---- the engine's golden data: greedy, float32, CPU, eager attention, EOS stopping off
    mc = load_f32("cpu", "eager")
    mc.generation_config.eos_token_id = None
    try:
        mc.config.eos_token_id = None
    except Exception:
        pass
    n_new = 4 if quick else 32

    def greedy(ids):
        x = torch.tensor([ids])
        with torch.no_grad():
            out = mc.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n_new,
                              pad_token_id=EOS, output_logits=True, return_dict_in_generate=True)
        new = out.sequences[0].tolist()[len(ids):]
        lg = torch.stack([l[0] for l in out.logits]).float()
        if len(new) != n_new:  # EOS could not be disabled in generate: the same greedy decode, by hand
            log(f"WARNING: generate stopped after {len(new)} tokens; greedy decoding by hand with the KV cache")
            new, lg = manual_greedy(torch, mc, ids, n_new)
        assert lg.argmax(-1).tolist() == new
        t2 = lg.topk(2, dim=-1).values
        eos_at = new.index(EOS) if EOS in new else None
        return dict(greedy=new, greedy_text=decode(new), eos_at=eos_at,
                    min_top2_margin=round((t2[:, 0] - t2[:, 1]).min().item(), 6))

    prompts = []
    for p in PROMPTS:
        ids = encode(p)
        prompts.append(dict(text=p, ids=ids, **greedy(ids)))
        log(f"greedy {p!r} -> {prompts[-1]['greedy_text']!r}")
    chat_res = dict(messages=CHAT_MESSAGES, add_generation_prompt=True, rendered=rendered, ids=chat_ids,
                    **greedy(chat_ids))
    log(f"chat {CHAT_MESSAGES[0]['content']!r} -> {chat_res['greedy_text']!r}")
    expected = dict(
        model=f"models/{MODEL_NAME}",
        reference=(f"transformers {transformers.__version__}, torch {torch.__version__}; the saved bf16 weights "
                   "loaded with dtype float32 (exact upcast), CPU, attn_implementation=eager, model.generate("
                   f"do_sample=False, max_new_tokens={n_new}) with EOS stopping disabled"),
        max_new_tokens=n_new, bos_token_id=BOS, eos_token_id=EOS, prompts=prompts, chat=chat_res,
        notes=("prompts[i].ids = the tokenizer's encoding of text with its default add_special_tokens (a leading "
               "<s>, id 0, from the post-processor). chat.ids = the chat template rendered with "
               "add_generation_prompt (which writes <s> itself) and encoded with add_special_tokens=False. greedy = "
               f"the {n_new} new ids; EOS (</s>, id {EOS}) was not a stop during generation, so an engine reproduces "
               "them with EOS stopping off, or, with it on, the ids up to and including index eos_at (null: no EOS). "
               "greedy_text = tokenizer.decode(greedy) keeping special tokens. min_top2_margin = the smallest gap "
               "between the best and second-best logit over the generated steps (how close a tie came). ids come from "
               "tokenizer.json read by the tokenizers library"
               + (". Differences seen in transformers' own tokenizer: " + " | ".join(tk_notes) if tk_notes else
                  ", and transformers' AutoTokenizer gave the same ids and the same chat rendering.")))
    with open(os.path.join(fdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # ---- samples for the model card: sampled on the CPU from the seed (the golden model, EOS a stop again)
    samples = []
    mc.generation_config.eos_token_id = EOS
    torch.manual_seed(a.seed)
    for p in (["And it came to pass", "Blessed are"] if not quick else ["And"]):
        x = torch.tensor([encode(p)])
        with torch.no_grad():
            o = mc.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True, temperature=0.8, top_k=50,
                            top_p=0.95, max_new_tokens=(8 if quick else 60), pad_token_id=EOS, eos_token_id=EOS)
        samples.append((p, tk.decode(o[0].tolist()[x.shape[1]:], skip_special_tokens=True)))
    for p, s in samples:
        log(f"sample {p!r} -> {s!r}")

    # ---- model card
    files = sorted(os.listdir(mdir))
    sizes = {f: os.path.getsize(os.path.join(mdir, f)) for f in files}
    write_card(a, mdir, info, k, ev, prompts, chat_res, samples, sizes, tk)
    total = sum(os.path.getsize(os.path.join(mdir, f)) for f in os.listdir(mdir))
    log(f"{mdir}: {', '.join(f'{f} {sizes[f]}' for f in files)}; total with README {total / 1e6:.2f} MB")
    assert total <= 25e6, "model directory over 25 MB"
    del mg, mc


def manual_greedy(torch, model, ids, n_new):
    """Greedy decoding with transformers' forward and KV cache, without generate (no EOS handling at all)."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        past, logits, new = out.past_key_values, [out.logits[0, -1].float()], []
        for _ in range(n_new):
            nxt = int(logits[-1].argmax())
            new.append(nxt)
            if len(new) == n_new:
                break
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits.append(out.logits[0, -1].float())
    return new, torch.stack(logits)


def train_command(a):
    """The training command as the card shows it: the settings that differ from the defaults, no local paths."""
    skip = {"cmd", "data", "out", "no_smoke", "defaults"}
    opts = [f"--{key.replace('_', '-')} {val:g}" if isinstance(val, float) else f"--{key.replace('_', '-')} {val}"
            for key, val in vars(a).items() if key not in skip and val != a.defaults.get(key)]
    return " ".join(["python3 tools/train_default_model.py train --data .kjv/kjv.tsv --out OUTDIR"] + opts)


def write_card(a, mdir, info, k, ev, prompts, chat_res, samples, sizes, rt):
    transformers, torch = k["transformers"], k["torch"]
    src = k["source"]
    c = k["counts"]
    curve = ", ".join(f"{s}: {math.exp(v):.2f}" for s, v in info.get("curve", []))
    cut = info.get("stopped_early")
    lines = [
        f"# {MODEL_NAME}",
        "",
        "The built-in default model of ignis: a small Llama-architecture language model trained from scratch on the "
        "King James Version of the Bible, so that `ignis serve` runs something real on a fresh machine with nothing "
        "downloaded. It writes text in the style of the KJV; it knows nothing else, and it is not an assistant.",
        "",
        "## Data and licence",
        "",
        f"- Text: the KJV as shipped by Debian's package `{src.get('package', 'bible-kjv-text')}` (version "
        f"{src.get('version', '?')}), read through the `bible` program of package `bible-kjv` with "
        f"`{src.get('command', 'bible -f -l100000 Ge1:1-Re22:21')}`: {src.get('verses', 31102)} verses, "
        f"{src.get('chapters', 1189)} chapters, 66 books, {src.get('chars', 0)} characters of verse text.",
        "- Licence: the King James Version (1611) is in the public domain (Debian's copyright file for the package: "
        "\"The copyright for the King James Version text of the Bible is expired\"); in the United Kingdom the "
        "Crown's letters patent still govern printing of the KJV. The retrieval program and its data format are "
        "by Chip Chapin (Hewlett Packard, 1989, \"provided for unrestricted use\"), the Debian packaging is GPL-2+; "
        "neither is part of this model. The weights were made by this project's script and are distributed with "
        "the project under its licence.",
        "- Documents: one per chapter, `Book N` on the first line and one verse per line (no verse numbers), each "
        "wrapped in `<s>` ... `</s>`. Held out: every 20th chapter (chapter index % 20 == 7, in canonical order), "
        f"{c['chapters'] - c['train_chapters']} chapters = {c['held_pct']:.2f}% of the text, alternately used "
        "for validation (checkpoint choice) and test (the perplexity reported below); nothing held out is ever "
        "trained on, not even by the tokenizer.",
        "- Chat data: every training verse also appears once as a chat exchange in the template's format: the user "
        "names a verse (`John 3:16`) and the assistant answers with its text, or the user writes `Continue: ` and "
        "the first words and the assistant answers with the rest of the verse; a quarter of the training windows "
        "come from these.",
        "",
        "## Tokenizer",
        "",
        f"Byte-level BPE trained with Hugging Face `tokenizers` on the training chapters: vocabulary {k['V']} "
        "(256 byte symbols, merges, and the special tokens `<s>` (0, BOS), `</s>` (1, EOS), `<|system|>`, "
        "`<|user|>`, `<|assistant|>`). GPT-2's pre-tokenization regex, no normalizer, no prefix space; the "
        "post-processor adds `<s>` in front of every encoded text. Chat template (in tokenizer_config.json):",
        "",
        "```jinja",
        CHAT_TEMPLATE,
        "```",
        "",
        "## Architecture",
        "",
        f"`LlamaForCausalLM`: {k['n_params'] / 1e6:.2f} M parameters, hidden {a.hidden}, {a.layers} layers, "
        f"{a.heads} attention heads of dimension {a.hidden // a.heads}, {a.kv_heads} key/value heads (GQA), SwiGLU "
        f"MLP of {a.inter}, RMSNorm (eps 1e-5), rope theta {a.rope_theta:g}, context {a.ctx} tokens, input and "
        f"output embeddings tied. Stored in bf16 with `save_pretrained`: "
        + ", ".join(f"`{f}` {s} bytes" for f, s in sizes.items()) + ".",
        "",
        "## Training",
        "",
        f"`{train_command(a)}` (seed {a.seed}; every other setting as the script's defaults say), on one "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, tokenizers {k['tokenizers_version']}: "
        f"{info.get('steps_run', 0)} steps of {a.batch} windows x {a.ctx} tokens, random windows of the training "
        f"stream ({c['plain']} tokens of chapters, {c['chat']} tokens of chat exchanges, chat fraction "
        f"{a.chat_frac}), AdamW (betas 0.9/0.95, weight decay {a.wd} on matrices), peak learning rate {a.lr:g}, "
        f"{a.warmup} warm-up steps then cosine to {a.min_lr_frac:g} of the peak, gradient clipping 1.0, bf16 "
        f"autocast, {ATTN} attention, dropout {a.dropout} on the attention and MLP outputs during training only"
        + (f"; stopped early by the wall-clock time guard (--max-train-seconds {a.max_train_seconds:g}) after step "
           f"{cut}, so this run is NOT reproducible" if cut else "")
        + f". Validation perplexity every {a.eval_every} steps: {curve}; the weights kept are those of step "
        f"{info.get('best_step', 0)}. (The schedule is short on purpose: a 3000-step run of the same recipe "
        "overfit, its validation perplexity best near step 600 and rising after.)",
        "",
        "## Reproducibility",
        "",
        "The script is deterministic given its seed: run again on the same GPU model with the same torch, "
        "transformers and tokenizers versions, it writes these files bit for bit (another GPU or library version "
        "can round differently). It asks torch for deterministic algorithms in strict mode (an operation without a "
        "deterministic implementation would stop it), sets `CUBLAS_WORKSPACE_CONFIG=:4096:8` before CUDA starts, "
        f"uses {ATTN} attention (the fused SDPA kernels' backward, cuDNN's above all, is not deterministic), "
        "cuDNN deterministic without autotuning, generators seeded from the seed for every random choice (data "
        f"order, chat exchanges, windows, initialization, dropout, the samples below), {CPU_THREADS} CPU threads, "
        "and no wall-clock limit. `tools/train_check_determinism.sh` checks it: it trains twice at once into two "
        "directories and compares the sha256 of every file written, these included; the files here were taken "
        "from such a check that found both runs identical.",
        "",
        "## Evaluation",
        "",
        "Perplexity per token of the saved bf16 weights (computed in float32) on held-out chapters, windows of "
        f"{a.ctx} tokens without overlap, every token a target; the unigram baseline is the training stream's token "
        "frequencies (add-one smoothed) on the same targets. Bits per character divide the same total by the "
        "characters of the held-out chapters.",
        "",
        "| held-out set | tokens | perplexity | unigram perplexity | bits/char | unigram bits/char |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("test", "val"):
        e = ev[name]
        lines.append(f"| {name}{' (reported)' if name == 'test' else ' (checkpoint choice)'} | {e['tokens']} | "
                     f"{e['ppl']:.2f} | {e['uni_ppl']:.1f} | {e['bpc']:.3f} | {e['uni_bpc']:.3f} |")
    lines += ["", "## Samples", "",
              "Greedy, float32, transformers (these are the golden continuations of "
              "`tests/fixtures/default_model/expected.json`, 32 new tokens, EOS not stopping):", ""]
    for p in prompts:
        lines.append(f"- `{p['text']}` → `{p['greedy_text']}`".replace("\n", "⏎"))
    ans = chat_res["greedy"][:chat_res["eos_at"]] if chat_res["eos_at"] is not None else chat_res["greedy"]
    lines += ["", f"Chat (greedy, stops at `</s>`): user `{CHAT_MESSAGES[0]['content']}` → assistant "
              f"`{rt.decode(ans, skip_special_tokens=True)}`".replace("\n", "⏎"), "",
              f"Sampled (float32 on the CPU, temperature 0.8, top-k 50, top-p 0.95, torch seeded with {a.seed}, "
              "stops at `</s>`):", ""]
    for p, s in samples:
        lines.append(f"- `{p}` → `{s}`".replace("\n", "⏎"))
    lines += ["", "(⏎ marks a newline.)", "",
              "## Reproduce", "",
              "```",
              "apt-get install bible-kjv            # Debian: the reader; it pulls bible-kjv-text",
              "python3 tools/train_default_model.py extract --out .kjv/kjv.tsv",
              "python3 tools/train_default_model.py train --data .kjv/kjv.tsv --out OUTDIR   # GPU: minutes",
              "bash tools/train_check_determinism.sh   # or: train twice at once and compare every file's sha256",
              "```", ""]
    with open(os.path.join(mdir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="write the KJV as TSV (book, chapter, verse, text) with the bible program")
    e.add_argument("--out", default=".kjv/kjv.tsv")
    t = sub.add_parser("train", help="train the tokenizer and the model, write the model dir and golden data")
    t.add_argument("--data", default=".kjv/kjv.tsv")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=1611)
    t.add_argument("--vocab", type=int, default=8192)
    t.add_argument("--hidden", type=int, default=256)
    t.add_argument("--inter", type=int, default=704)
    t.add_argument("--layers", type=int, default=8)
    t.add_argument("--heads", type=int, default=8)
    t.add_argument("--kv-heads", type=int, default=4)
    t.add_argument("--ctx", type=int, default=1024)
    t.add_argument("--rope-theta", type=float, default=10000.0)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--steps", type=int, default=900)  # 3000 overfit: val ppl best at step 600, then rose
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--min-lr-frac", type=float, default=0.1)
    t.add_argument("--warmup", type=int, default=150)
    t.add_argument("--wd", type=float, default=0.1)
    t.add_argument("--dropout", type=float, default=0.1)
    t.add_argument("--chat-frac", type=float, default=0.25)
    t.add_argument("--eval-every", type=int, default=100)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--max-train-seconds", type=float, default=0.0,
                   help="stop training after this many seconds (0: never, the default); a wall-clock cut makes the "
                        "run irreproducible, and the model card says so")
    t.add_argument("--no-smoke", action="store_true", help="skip the smoke test of the output stage")
    a = ap.parse_args()
    a.defaults = {act.dest: act.default for act in t._actions}
    if a.cmd == "extract":
        cmd_extract(a)
    else:
        cmd_train(a)


if __name__ == "__main__":
    main()
