#!/usr/bin/env python3
"""PyTorch reference timings for regkern's standard workloads (shared bench/WORKLOADS.md).

    bench_torch.py k1 [--steps 100] [--warmup 20] [--min-time 0.5] [--threads 1]
    bench_torch.py p1 [--steps 100] [--warmup 20] [--threads 1]
    bench_torch.py p2 [--steps 100] [--warmup 20] [--threads 1]
    bench_torch.py p3 [--steps 100] [--warmup 20] [--threads 1]
    bench_torch.py p4 [--repeats 20] [--warmup 3] [--step-repeats 200] [--threads 1]
    bench_torch.py p5 [--steps 100] [--warmup 20] [--threads 1]
    bench_torch.py p6 [--steps 50] [--warmup 5] [--threads 1]
    bench_torch.py baseline [--workload K1,P1,P2,P3,P4,P5,P6] [--steps 100] [--warmup 20] [--threads 1] [--out FILE]
    bench_torch.py e1 [--seed 0] [--epochs 100] [--lr 0.01] [--threads 1]
    bench_torch.py e2 [--seed 0] [--epochs 100] [--lr 0.001] [--threads 1]
    bench_torch.py e3 [--seed 0] [--epochs 20] [--threads 1]
    bench_torch.py e4 [--seed 0] [--epochs 20] [--threads 1]
    bench_torch.py e5 [--seed 0] [--epochs 60] [--threads 1]
    bench_torch.py e6 [--seed 0] [--epochs 20] [--threads 1]

Each prints one JSON line. The transformer is tests/fixtures/reference_transformer.py (SPEC §3.3-3.6),
E1/E2 and P1 use nn.Linear and an nn.Sequential MLP (SPEC §3.1-3.2), K1 torch.mm; all in f32 on the
CPU, one thread unless --threads says otherwise. WORKLOADS.md asks for >= 50 timed steps: fewer are
allowed (for a quick check) but draw a warning on stderr.

`baseline` runs the selected workloads (default all, in the order given) through the same functions
and prints one JSON object, {"source": "pytorch", "torch", "threads", "cpu", "date", "workloads":
{"K1/64", "K1/256", "K1/1024", "P1".."P6": {"median_ms", "min_ms", "max_ms"[, "gflops" for K1]
[, "kept_fraction" for P3: the share of routed assignments its experts kept]}}},
all times in ms; --out FILE writes it to FILE as well, for `regkern bench --baseline FILE`. P4's
entry is one cached decode step at context 128. --steps / --warmup apply to the training workloads
P1, P2, P3, P5 and P6 (P6: at most 50 steps and 5 warm-up steps); K1 and P4 run with their own
defaults. Progress goes to stderr.
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from reference_transformer import EncoderDecoder, KVCache, Transformer, generate, greedy_decode  # noqa: E402

# CLI defaults of `regkern train --type transformer` (SPEC §3.3), shared by P2, P4, E3 and E4.
TFM = dict(input_dim=1, output_dim=1, embed_dim=64, ffn_dim=128, num_layers=2, num_heads=8, num_groups=4,
           max_seq_len=128, attention_type="gqa")
# P6 tfm-mid-train (WORKLOADS.md): seq 128, E 256, F 1024, 4 layers, H 8, G 2 (GQA).
TFM_MID = dict(input_dim=1, output_dim=1, embed_dim=256, ffn_dim=1024, num_layers=4, num_heads=8, num_groups=2,
               max_seq_len=128, attention_type="gqa")
# `regkern train --type transformer --encoderdecoder` (SPEC §3.6) with the same CLI defaults: num_layers
# encoder and num_layers decoder layers (P5, E5).
ENCDEC = dict(input_dim=1, output_dim=1, embed_dim=64, ffn_dim=128, num_encoder_layers=2, num_decoder_layers=2,
              num_heads=8, num_groups=4, max_seq_len=128, attention_type="gqa")
# MoE defaults of `regkern train --type transformer --moe` (SPEC §3.3, §3.5): 8 experts, top-2,
# capacity factor 1.25 unless an absolute capacity is given, alpha 0.01.
MOE = dict(use_moe=True, num_experts=8, topk=2, capacity=None, capacity_factor=1.25, alpha=0.01)


def train_step(model, opt, x, y):
    """One training step as WORKLOADS.md defines it: zero grad, forward, MSE (+ the MoE layers'
    load-balancing loss, SPEC §3.5), backward, Adam. Returns the MSE alone."""
    opt.zero_grad()
    mse = nn.functional.mse_loss(model(x), y)
    loss = mse + model.aux_loss() if getattr(model, "use_moe", False) else mse
    loss.backward()
    opt.step()
    return mse


def encdec_train_step(model, opt, src, tgt):
    """An encoder-decoder training step (SPEC §3.6, teacher forcing: the decoder reads tgt shifted
    right, 0.0 first): zero grad, forward, MSE over all [B, T, output_dim] (+ aux with MoE),
    backward, Adam. Returns the MSE alone."""
    opt.zero_grad()
    mse = nn.functional.mse_loss(model(src, tgt), tgt)
    loss = mse + model.aux_loss() if getattr(model, "use_moe", False) else mse
    loss.backward()
    opt.step()
    return mse


def train_epoch(name, model, opt, step, x_train, y_train, gen, epoch, after_step=None, batch=32):
    """One epoch of `step` (train_step or encdec_train_step) over the training set in a random
    order drawn from `gen`, in batches of `batch`; `after_step()` runs after each step. Returns the
    epoch's mean training MSE; a non-finite loss stops the run naming epoch (1-based) and step."""
    model.train()
    perm = torch.randperm(len(x_train), generator=gen)
    total = 0.0
    for i in range(0, len(perm), batch):
        idx = perm[i:i + batch]
        loss = step(model, opt, x_train[idx], y_train[idx])
        if not math.isfinite(loss.item()):
            raise SystemExit(f"{name}: non-finite loss at epoch {epoch}, step {i // batch}")
        total += loss.item() * len(idx)
        if after_step is not None:
            after_step()
    return total / len(x_train)


def check_steps(name, args):
    """WORKLOADS.md reports the median over >= 50 timed steps; fewer run (a quick check) but warn
    (unless args.checked: baseline checks before its progress line)."""
    steps = args.steps
    if steps < 1:
        raise SystemExit(f"{name}: --steps must be at least 1")
    if steps < 50 and not getattr(args, "checked", False):
        print(f"{name}: warning: {steps} timed steps, fewer than the 50 WORKLOADS.md asks for", file=sys.stderr)


def timed_steps(name, step, args):
    """`step()` (one training step, returning the loss) --warmup times untimed, then --steps times,
    each timed alone; the result dict of p1, p2, p5 and p6. A non-finite last loss stops the run."""
    check_steps(name, args)
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1e3)
    if not math.isfinite(loss.item()):
        raise SystemExit(f"{name}: non-finite loss")
    return {
        "workload": name, "median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4), "mean_ms": round(statistics.fmean(times), 4), "steps": args.steps,
        "warmup": args.warmup,
    }


def k1(args):
    """K1 sgemm: c = a·b by torch.mm(a, b, out=c), square f32 matrices n = 64, 256, 1024, operands
    ~ U(-1,1), c preallocated. Per n: --warmup untimed products, then max(--steps, as many as fill
    --min-time seconds at the warm-up's median speed), each product timed alone; median / min /
    max ms per product and GFLOP/s = 2·n³ / median."""
    check_steps("K1", args)
    torch.manual_seed(0)
    sizes = {}
    for n in (64, 256, 1024):
        a = torch.rand(n, n) * 2 - 1
        b = torch.rand(n, n) * 2 - 1
        c = torch.empty(n, n)
        warm = []
        for _ in range(max(args.warmup, 1)):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            warm.append(time.perf_counter() - t0)
        repeats = max(args.steps, math.ceil(args.min_time / max(statistics.median(warm), 1e-9)))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            times.append((time.perf_counter() - t0) * 1e3)
        med = statistics.median(times)
        sizes[str(n)] = {"median_ms": round(med, 6), "min_ms": round(min(times), 6), "max_ms": round(max(times), 6),
                         "gflops": round(2 * n ** 3 / (med * 1e6), 2), "repeats": repeats}
    return {"workload": "K1", "sizes": sizes, "steps": args.steps, "warmup": args.warmup, "min_time_s": args.min_time}


def p1(args):
    """P1 mlp-train: the E2 MLP (SPEC §3.2, nn.Sequential 8 → 128 → 64 → 32 → 1, ReLU between, none
    after the last), Adam lr 1e-3, on a fixed batch of 64: the first 64 training samples of the
    nlinear task drawn with seed 0 (as E2 draws them)."""
    gen = torch.Generator().manual_seed(0)
    x_train, y_train, *_ = nlinear_task(2048, 512, gen)
    x, y = x_train[:64], y_train[:64]
    torch.manual_seed(0)
    model = mlp([128, 64, 32])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return timed_steps("P1", lambda: train_step(model, opt, x, y), args)


def seqsum_steps(name, cfg, batch, seq, args):
    """Training steps of a regression Transformer(**cfg) with Adam lr 1e-3 on one seqsum batch:
    x ~ U(-1,1)^[batch, seq, 1], y = Σx/√seq (P2, P6)."""
    torch.manual_seed(0)
    model = Transformer(**cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, seq, 1) * 2 - 1
    y = x.sum(dim=1) / math.sqrt(seq)
    return timed_steps(name, lambda: train_step(model, opt, x, y), args)


def p2(args):
    """P2 tfm-reg-train: seq 32, input_dim 1, E 64, F 128, 2 layers, H 8, G 4 (GQA), batch 32."""
    return seqsum_steps("P2", TFM, 32, 32, args)


def p3(args):
    """P3 tfm-moe-train: P2 with MoE FFNs (SPEC §3.5): 8 experts, top-2, capacity 320 (absolute;
    = 1.25 · B·T · k / experts for B·T = 1024 tokens), alpha 0.01. A step = zero grad, forward,
    MSE + aux, backward, Adam. Each expert runs only on its routed tokens (gather, two matmuls,
    gate-weighted scatter-add)."""
    torch.manual_seed(0)
    model = Transformer(**TFM, **dict(MOE, capacity=320))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(32, 32, 1) * 2 - 1
    y = x.sum(dim=1) / math.sqrt(32)
    check_steps("P3", args)
    for _ in range(args.warmup):
        train_step(model, opt, x, y)
    times, dropped = [], 0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = train_step(model, opt, x, y)
        times.append((time.perf_counter() - t0) * 1e3)
        dropped += sum(int(st["dropped"]) for st in model.moe_stats())
    if not math.isfinite(loss.item()):
        raise SystemExit("P3: non-finite loss")
    assignments = args.steps * sum(st["tokens"] * model.layers[0].ffn.topk for st in model.moe_stats())
    return {
        "workload": "P3", "median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4), "mean_ms": round(statistics.fmean(times), 4), "steps": args.steps,
        "warmup": args.warmup, "drop_rate": dropped / assignments,
    }


def p4(args):
    """P4 tfm-ar-decode: autoregressive TFM defaults, batch 1, prompt 16, generate 112 (16 + 112 =
    max_seq_len 128), ms per generated token with and without a KV cache.

    Cached: one prefill of the prompt (which yields the first generated value), then 111 decode
    steps of one position each, attending over the per-layer K/V cache (reference_transformer's
    KVCache / forward_cached, explicit attention). Uncached: 112 full forward passes over the
    growing prefix (contexts 16..127). The single cached decode step "at context L" is the new
    position L-1 attending over L keys (L-1 cached + itself)."""
    prompt_len, steps = 16, 112
    torch.manual_seed(0)
    model = Transformer(**TFM, autoregressive=True).eval()
    prompt = torch.rand(1, prompt_len, 1) * 2 - 1

    def cached():
        cache = KVCache(model, 1)
        y = model.forward_cached(prompt, cache)[:, -1:]
        outs = [y]
        for _ in range(steps - 1):
            y = model.forward_cached(y, cache)
            outs.append(y)
        return torch.cat(outs, dim=1)

    def uncached():
        seq = torch.empty(1, prompt_len + steps, 1)
        seq[:, :prompt_len] = prompt
        for i in range(steps):
            seq[:, prompt_len + i:prompt_len + i + 1] = model(seq[:, :prompt_len + i])[:, -1:]
        return seq[:, prompt_len:].clone()

    def timed(fn, repeats):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return times

    with torch.no_grad():
        diff = (cached() - uncached()).abs().max().item()
        if not diff <= 1e-5:
            raise SystemExit(f"P4: cached and uncached generation differ by {diff}")
        for _ in range(args.warmup):
            cached()
            uncached()
        # Interleave cached and uncached repeats, so that machine noise hits both alike.
        t_cached, t_uncached = [], []
        for _ in range(args.repeats):
            t_cached += timed(cached, 1)
            t_uncached += timed(uncached, 1)
        step = {}
        seq = torch.rand(1, TFM["max_seq_len"], 1) * 2 - 1
        for ctx in (16, 64, 128):
            cache = KVCache(model, 1)
            model.forward_cached(seq[:, :ctx - 1], cache)
            x_new = seq[:, ctx - 1:ctx]

            def one_step():
                cache.len = ctx - 1  # overwrite position ctx-1 every time
                model.forward_cached(x_new, cache)

            timed(one_step, 20)
            t = timed(one_step, args.step_repeats)
            step[str(ctx)] = {"median_ms": round(statistics.median(t), 4), "min_ms": round(min(t), 4),
                              "max_ms": round(max(t), 4)}

    def per_token(times):
        return {"median_ms": round(statistics.median(times) / steps, 4), "min_ms": round(min(times) / steps, 4),
                "max_ms": round(max(times) / steps, 4)}

    return {
        "workload": "P4", "prompt": prompt_len, "generate": steps,
        "kv_cache_per_token": per_token(t_cached), "kv_cache_step_at_context": step,
        "no_cache_per_token": per_token(t_uncached), "cached_vs_uncached_max_abs_diff": diff,
        "repeats": args.repeats, "step_repeats": args.step_repeats, "warmup": args.warmup,
    }


def p5(args):
    """P5 encdec-train: src 32, tgt 32, input_dim = output_dim = 1, E 64, F 128, 2 encoder + 2
    decoder layers, H 8, G 4 (GQA), batch 32, on a batch of the reverse task (tgt = src reversed).
    A step = zero grad, teacher-forced forward, MSE, backward, Adam."""
    torch.manual_seed(0)
    model = EncoderDecoder(**ENCDEC)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    src = torch.rand(32, 32, 1) * 2 - 1
    tgt = src.flip(1)
    return timed_steps("P5", lambda: encdec_train_step(model, opt, src, tgt), args)


def p6(args):
    """P6 tfm-mid-train: seq 128, input_dim 1, E 256, F 1024, 4 layers, H 8, G 2 (GQA), max_seq_len
    128, batch 8; x ~ U(-1,1)^[8,128,1], y = Σx/√128 (P2's seqsum target at length 128), Adam lr 1e-3."""
    return seqsum_steps("P6", TFM_MID, 8, 128, args)


BASELINE_IDS = ("K1", "P1", "P2", "P3", "P4", "P5", "P6")
K1_DEFAULTS = dict(steps=100, warmup=20, min_time=0.5)
P4_DEFAULTS = dict(repeats=20, warmup=3, step_repeats=200)


def cpu_model():
    """The first "model name" of /proc/cpuinfo, else platform.processor() (else the machine type)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def baseline(args):
    """The selected workloads (--workload, comma-separated, default all, run in the order given)
    through k1 .. p6, as one object for `regkern bench --baseline FILE`: workloads."K1/64",
    "K1/256", "K1/1024" (median / min / max ms per product, GFLOP/s), "P1", "P2", "P3", "P5", "P6"
    (median / min / max ms per training step; --steps / --warmup, P6 at most 50 / 5) and "P4" (one
    cached decode step at context 128, p4's kv_cache_step_at_context["128"]). K1 and P4 run with
    their subcommands' defaults."""
    ids = []
    for w in args.workload.split(","):
        w = w.strip().upper()
        if not w:
            continue
        if w not in BASELINE_IDS:
            raise SystemExit(f"baseline: unknown workload {w!r} (known: {','.join(BASELINE_IDS)})")
        if w not in ids:
            ids.append(w)
    if not ids:
        raise SystemExit("baseline: no workload selected")
    keys = ("median_ms", "min_ms", "max_ms")
    workloads = {}
    for w in ids:
        steps, warmup = (min(args.steps, 50), min(args.warmup, 5)) if w == "P6" else (args.steps, args.warmup)
        if w not in ("K1", "P4"):
            check_steps(w, argparse.Namespace(steps=steps))
        print(f"{w} ...", end=" ", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if w == "K1":
            r = k1(argparse.Namespace(**K1_DEFAULTS))
            for n, v in r["sizes"].items():
                workloads[f"K1/{n}"] = {k: v[k] for k in (*keys, "gflops")}
            done = ", ".join(f"{n}: {v['median_ms']:.4g} ms = {v['gflops']} GFLOP/s" for n, v in r["sizes"].items())
        elif w == "P4":
            r = p4(argparse.Namespace(**P4_DEFAULTS))
            workloads["P4"] = {k: r["kv_cache_step_at_context"]["128"][k] for k in keys}
            done = f"{workloads['P4']['median_ms']} ms per cached decode step at context 128"
        else:
            r = {"P1": p1, "P2": p2, "P3": p3, "P5": p5, "P6": p6}[w](
                argparse.Namespace(steps=steps, warmup=warmup, checked=True))
            workloads[w] = {k: r[k] for k in keys}
            if "drop_rate" in r:  # P3: how much of the routed work its experts did
                workloads[w]["kept_fraction"] = 1 - r["drop_rate"]
            done = f"{workloads[w]['median_ms']} ms per step ({steps} steps after {warmup} warm-up)"
        print(f"{done} [{time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)
    return {"source": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "date": datetime.date.today().isoformat(), "workloads": workloads}


def linear_task(n_train, n_val, gen, features=8):
    """SPEC §5 linear: x ~ U(-1,1)^8, y = x·w* + b* + N(0, 0.1²), w*, b* ~ N(0,1)."""
    w, b = torch.randn(features, 1, generator=gen), torch.randn(1, generator=gen)
    x = torch.rand(n_train + n_val, features, generator=gen) * 2 - 1
    return noisy_split(x, x @ w + b, 0.1, n_train, gen)


def nlinear_task(n_train, n_val, gen, features=8):
    """SPEC §5 nlinear: y = sin(3·x·a) + 0.5·(x·b)² + N(0, 0.05²), a, b ~ N(0,1)/√8, x ~ U(-1,1)^8."""
    a = torch.randn(features, 1, generator=gen) / math.sqrt(features)
    b = torch.randn(features, 1, generator=gen) / math.sqrt(features)
    x = torch.rand(n_train + n_val, features, generator=gen) * 2 - 1
    return noisy_split(x, torch.sin(3 * (x @ a)) + 0.5 * (x @ b) ** 2, 0.05, n_train, gen)


def noisy_split(x, clean, std, n_train, gen):
    """y = clean + N(0, std²); the train and validation splits, and the validation MSE of the true
    function (the noise on that draw, which no model removes)."""
    y = clean + std * torch.randn(clean.shape, generator=gen)
    oracle = nn.functional.mse_loss(clean[n_train:], y[n_train:]).item()
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], oracle


def mlp(latent_dims, features=8):
    """SPEC §3.2: Linear layers through latent_dims with ReLU between them, none after the last."""
    dims = [features, *latent_dims, 1]
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def e1_e2(args):
    """E1 `regkern train --type linear --epochs 100 --lr 0.01` / E2 `... --type nlinear --epochs 100
    --lr 0.001 --latent_dims 128,64,32`, seeded: 2048 train / 512 validation samples, batch 64, Adam.
    oracle_val_mse is the true function's MSE on the validation split: no model is expected below it."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)  # data and shuffling
    task = linear_task if args.cmd == "e1" else nlinear_task
    x_train, y_train, x_val, y_val, oracle = task(2048, 512, gen)
    torch.manual_seed(args.seed)  # model initialisation
    model = nn.Linear(8, 1) if args.cmd == "e1" else mlp([128, 64, 32])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_losses, val_losses = [], []
    for _ in range(args.epochs):
        epoch = len(val_losses) + 1
        train_losses.append(train_epoch(args.cmd.upper(), model, opt, train_step, x_train, y_train, gen, epoch,
                                        batch=64))
        model.eval()
        with torch.no_grad():
            val_losses.append(nn.functional.mse_loss(model(x_val), y_val).item())
    wall = time.perf_counter() - t0
    return {
        "experiment": args.cmd.upper(), "seed": args.seed, "epochs": args.epochs, "lr": args.lr,
        "wall_s": round(wall, 3), "final_val_mse": val_losses[-1], "best_val_mse": min(val_losses),
        "final_train_mse": train_losses[-1], "oracle_val_mse": oracle, "val_mse": val_losses,
        "train_mse": train_losses,
    }


def seqsum(n, gen, seq_len=32):
    """SPEC §5 seqsum: x ~ U(-1,1)^[seq_len, 1], y = sum(x) / sqrt(seq_len)."""
    x = torch.rand(n, seq_len, 1, generator=gen) * 2 - 1
    return x, x.sum(dim=1) / math.sqrt(seq_len)


def e3(args):
    """E3: `regkern train --type transformer --epochs 20 --lr 0.001` on seqsum, seeded."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)  # data and shuffling
    x_train, y_train = seqsum(2048, gen)
    x_val, y_val = seqsum(512, gen)
    torch.manual_seed(args.seed)  # model initialisation
    model = Transformer(**TFM)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_losses, val_losses = [], []
    for _ in range(args.epochs):
        epoch = len(val_losses) + 1
        train_losses.append(train_epoch("E3", model, opt, train_step, x_train, y_train, gen, epoch))
        model.eval()
        with torch.no_grad():  # one pass over all 512: the same mean as over batches of 32
            val_losses.append(nn.functional.mse_loss(model(x_val), y_val).item())
    wall = time.perf_counter() - t0
    return {
        "experiment": "E3", "seed": args.seed, "epochs": args.epochs, "lr": args.lr, "wall_s": round(wall, 3),
        "final_val_mse": val_losses[-1], "best_val_mse": min(val_losses), "final_train_mse": train_losses[-1],
        "val_mse": val_losses, "train_mse": train_losses,
    }


def e6(args):
    """E6: `regkern train --type transformer --moe --epochs 20 --lr 0.001` on seqsum, seeded: E3 with
    MoE FFNs (8 experts, top-2, capacity factor 1.25, alpha 0.01). Training loss = MSE + aux;
    validation loss = MSE only (no aux), in batches of 32 as regkern's evaluate() does (the capacity
    depends on the tokens of each call: C = ceil(1.25 · 32·32 · 2 / 8) = 320 per batch of 32).
    drop_rate = dropped / (tokens · k) summed over the steps and both layers of an epoch.
    val_mse_one_pass: the same model on all 512 validation samples in one call (C = 5120), timed
    separately from wall_s."""
    t0 = time.perf_counter()
    extra = 0.0
    gen = torch.Generator().manual_seed(args.seed)  # data and shuffling
    x_train, y_train = seqsum(2048, gen)
    x_val, y_val = seqsum(512, gen)
    torch.manual_seed(args.seed)  # model initialisation
    model = Transformer(**TFM, **MOE)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    batch = 32
    train_losses, val_losses, val_one_pass, drop_rates, val_drop_rates = [], [], [], [], []
    for _ in range(args.epochs):
        routed = [0, 0]  # dropped, assignments

        def count_routing():
            for st in model.moe_stats():
                routed[0] += int(st["dropped"])
                routed[1] += st["tokens"] * model.layers[0].ffn.topk

        epoch = len(val_losses) + 1
        train_losses.append(train_epoch("E6", model, opt, train_step, x_train, y_train, gen, epoch, count_routing))
        drop_rates.append(routed[0] / routed[1])
        model.eval()
        with torch.no_grad():
            total, dropped, assignments = 0.0, 0, 0
            for i in range(0, len(x_val), batch):
                out = model(x_val[i:i + batch])
                total += nn.functional.mse_loss(out, y_val[i:i + batch]).item() * len(out)
                for st in model.moe_stats():
                    dropped += int(st["dropped"])
                    assignments += st["tokens"] * model.layers[0].ffn.topk
            val_losses.append(total / len(x_val))
            val_drop_rates.append(dropped / assignments)
            t1 = time.perf_counter()
            val_one_pass.append(nn.functional.mse_loss(model(x_val), y_val).item())
            extra += time.perf_counter() - t1
    wall = time.perf_counter() - t0 - extra
    return {
        "experiment": "E6", "seed": args.seed, "epochs": args.epochs, "lr": args.lr, "wall_s": round(wall, 3),
        "final_val_mse": val_losses[-1], "best_val_mse": min(val_losses), "final_train_mse": train_losses[-1],
        "last_epoch_drop_rate": drop_rates[-1], "last_epoch_val_drop_rate": val_drop_rates[-1],
        "final_val_mse_one_pass": val_one_pass[-1], "best_val_mse_one_pass": min(val_one_pass),
        "val_mse": val_losses, "train_mse": train_losses, "drop_rate": drop_rates, "val_drop_rate": val_drop_rates,
        "val_mse_one_pass": val_one_pass,
    }


def sine(n, gen, length=33):
    """SPEC §5 sine: x_t = A sin(w t + phi) + N(0, 0.01^2), t = 0..length-1, A ~ U(0.5, 1.5),
    w ~ U(0.1, 0.5), phi ~ U(0, 2 pi). Returns the whole sequences, [n, length, 1]."""
    amp = torch.rand(n, 1, generator=gen) + 0.5
    omega = torch.rand(n, 1, generator=gen) * 0.4 + 0.1
    phi = torch.rand(n, 1, generator=gen) * (2 * math.pi)
    t = torch.arange(length, dtype=torch.float32)
    x = amp * torch.sin(omega * t + phi) + 0.01 * torch.randn(n, length, generator=gen)
    return x.unsqueeze(-1)


def e4(args):
    """E4: `regkern train --type transformer --autoregressive --epochs 20 --lr 0.001` on sine, seeded.

    Teacher forcing: input x[0..32], target x[1..33] (position t predicts x[t+1]); validation is
    teacher-forced too. Then free-running: for each validation sequence, prompt = x[0..16],
    generate 17 values greedily (expanding context), MSE against x[16..33]. wall_s covers data
    generation, training and the per-epoch validation; free-running is timed separately."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)  # data and shuffling
    train_seq = sine(2048, gen)
    val_seq = sine(512, gen)
    x_train, y_train = train_seq[:, :-1], train_seq[:, 1:]
    x_val, y_val = val_seq[:, :-1], val_seq[:, 1:]
    torch.manual_seed(args.seed)  # model initialisation
    model = Transformer(**TFM, autoregressive=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_losses, val_losses = [], []
    for _ in range(args.epochs):
        epoch = len(val_losses) + 1
        train_losses.append(train_epoch("E4", model, opt, train_step, x_train, y_train, gen, epoch))
        model.eval()
        with torch.no_grad():  # one pass over all 512: the same mean as over batches of 32
            val_losses.append(nn.functional.mse_loss(model(x_val), y_val).item())
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    prompt_len = 16
    gen_vals = generate(model, val_seq[:, :prompt_len], val_seq.shape[1] - prompt_len)
    free_mse = nn.functional.mse_loss(gen_vals, val_seq[:, prompt_len:]).item()
    free_s = time.perf_counter() - t1
    return {
        "experiment": "E4", "seed": args.seed, "epochs": args.epochs, "lr": args.lr, "wall_s": round(wall, 3),
        "final_val_mse": val_losses[-1], "best_val_mse": min(val_losses), "final_train_mse": train_losses[-1],
        "free_running_mse": free_mse, "free_running_prompt": prompt_len,
        "free_running_generate": val_seq.shape[1] - prompt_len, "free_running_s": round(free_s, 3),
        "val_mse": val_losses, "train_mse": train_losses,
    }


def reverse(n, gen, seq_len=32):
    """SPEC §5 reverse: x ~ U(-1,1)^[seq_len, 1], target = x reversed along the sequence."""
    x = torch.rand(n, seq_len, 1, generator=gen) * 2 - 1
    return x, x.flip(1)


def e5(args):
    """E5: `regkern train --type transformer --encoderdecoder --epochs 60 --lr 0.001` on reverse, seeded.

    Teacher forcing (decoder input = target shifted right, 0.0 first); validation is teacher-forced
    too, after every epoch. Then greedy decoding of the whole validation set (encoder once, decoder
    re-run on the growing prefix, 32 steps), MSE against the targets, timed separately from wall_s
    (which covers data generation, training and the per-epoch validation). plateau_end_epoch: the
    first epoch whose validation MSE is below half of epoch 1's (the loss sits near 0.28 before).

    With --export FILE it trains nothing: it writes this run's initial weights (`param.<name>`), data
    (`x_train`, `y_train`, `x_val`, `y_val`) and the shuffles of its first --epochs epochs (`perms`,
    [epochs, 2048] as f32) to a safetensors file, for `cargo run --release -p regkern-tests --example
    e5_replay` to train regkern from exactly the same start."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)  # data and shuffling
    x_train, y_train = reverse(2048, gen)
    x_val, y_val = reverse(512, gen)
    torch.manual_seed(args.seed)  # model initialisation
    model = EncoderDecoder(**ENCDEC)
    if args.export:
        from safetensors.torch import save_file
        # train_epoch draws one randperm per epoch from gen, and nothing else draws from it.
        perms = torch.stack([torch.randperm(len(x_train), generator=gen) for _ in range(args.epochs)])
        tensors = {f"param.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        tensors.update(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, perms=perms.float())
        save_file({k: v.contiguous() for k, v in tensors.items()}, args.export)
        return {"experiment": "E5", "seed": args.seed, "epochs": args.epochs, "export": args.export}
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_losses, val_losses, epoch_s = [], [], []
    for _ in range(args.epochs):
        epoch = len(val_losses) + 1
        train_losses.append(train_epoch("E5", model, opt, encdec_train_step, x_train, y_train, gen, epoch))
        model.eval()
        with torch.no_grad():  # one pass over all 512: the same mean as over batches of 32
            val_losses.append(nn.functional.mse_loss(model(x_val, y_val), y_val).item())
        epoch_s.append(round(time.perf_counter() - t0, 3))
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    greedy = greedy_decode(model, x_val, y_val.shape[1])
    greedy_mse = nn.functional.mse_loss(greedy, y_val).item()
    greedy_s = time.perf_counter() - t1
    plateau_end = next((i + 1 for i, v in enumerate(val_losses) if v < 0.5 * val_losses[0]), None)
    return {
        "experiment": "E5", "seed": args.seed, "epochs": args.epochs, "lr": args.lr, "wall_s": round(wall, 3),
        "final_val_mse": val_losses[-1], "best_val_mse": min(val_losses), "final_train_mse": train_losses[-1],
        "greedy_mse": greedy_mse, "greedy_steps": y_val.shape[1], "greedy_s": round(greedy_s, 3),
        "plateau_end_epoch": plateau_end, "val_mse": val_losses, "train_mse": train_losses,
        "elapsed_s_after_epoch": epoch_s,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("k1", parents=[common], help="K1 sgemm (torch.mm, n = 64, 256, 1024): ms per product, GFLOP/s")
    k.add_argument("--steps", type=int, default=K1_DEFAULTS["steps"],
                   help="at least this many timed products per n (>= 50)")
    k.add_argument("--warmup", type=int, default=K1_DEFAULTS["warmup"], help="untimed products per n")
    k.add_argument("--min-time", type=float, default=K1_DEFAULTS["min_time"],
                   help="and at least this many seconds of timed products per n (default 0.5)")
    for name, steps, warmup in (("p1", 100, 20), ("p2", 100, 20), ("p3", 100, 20), ("p4", None, None),
                                ("p5", 100, 20), ("p6", 50, 5)):
        if name == "p4":
            d = sub.add_parser("p4", parents=[common], help="P4 autoregressive decode, ms per generated token")
            d.add_argument("--repeats", type=int, default=P4_DEFAULTS["repeats"],
                           help="timed whole generations, each way")
            d.add_argument("--warmup", type=int, default=P4_DEFAULTS["warmup"])
            d.add_argument("--step-repeats", type=int, default=P4_DEFAULTS["step_repeats"],
                           help="timed single decode steps per context")
            continue
        a = sub.add_parser(name, parents=[common], help=f"{name.upper()} training-step time, ms/step")
        a.add_argument("--steps", type=int, default=steps, help=f"timed steps (>= 50; default {steps})")
        a.add_argument("--warmup", type=int, default=warmup, help=f"untimed steps first (default {warmup})")
    bl = sub.add_parser("baseline", parents=[common],
                        help="K1..P6 into one JSON object (for `regkern bench --baseline FILE`)")
    bl.add_argument("--workload", default=",".join(BASELINE_IDS),
                    help=f"comma-separated ids, run in this order (default {','.join(BASELINE_IDS)})")
    bl.add_argument("--steps", type=int, default=100,
                    help="timed steps of P1, P2, P3, P5 (default 100; P6 takes at most 50)")
    bl.add_argument("--warmup", type=int, default=20, help="warm-up steps of P1, P2, P3, P5 (default 20; P6 at most 5)")
    bl.add_argument("--out", metavar="FILE", help="also write the object to FILE")
    for name, lr, help_ in (("e1", 0.01, "E1 full run (linear): wall time, validation MSE, the noise on that draw"),
                            ("e2", 1e-3, "E2 full run (MLP): wall time, validation MSE, the noise on that draw")):
        b = sub.add_parser(name, parents=[common], help=help_)
        b.add_argument("--seed", type=int, default=0)
        b.add_argument("--epochs", type=int, default=100)
        b.add_argument("--lr", type=float, default=lr)
    for name, help_ in (("e3", "E3 full run: wall time and final validation MSE"),
                        ("e4", "E4 full run: wall time, validation MSE and free-running MSE"),
                        ("e5", "E5 full run (encoder-decoder): wall time, validation MSE and greedy MSE"),
                        ("e6", "E6 full run (MoE): wall time, validation MSE and drop rate")):
        b = sub.add_parser(name, parents=[common], help=help_)
        b.add_argument("--seed", type=int, default=0)
        b.add_argument("--epochs", type=int, default=60 if name == "e5" else 20)
        b.add_argument("--lr", type=float, default=1e-3)
        if name == "e5":
            b.add_argument("--export", metavar="FILE", help="write the initial weights, data and shuffles; no training")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cmd == "baseline":
        result = baseline(args)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
                f.write("\n")
        print(json.dumps(result))
        return
    result = {"e1": e1_e2, "e2": e1_e2, "k1": k1, "p1": p1, "p2": p2, "p3": p3, "p4": p4, "p5": p5, "p6": p6,
              "e3": e3, "e4": e4, "e5": e5, "e6": e6}[args.cmd](args)
    result.update(torch=torch.__version__, threads=torch.get_num_threads())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
