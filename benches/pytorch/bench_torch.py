#!/usr/bin/env python3
"""PyTorch reference timings for regkern's standard workloads (shared bench/WORKLOADS.md).

    bench_torch.py p2 [--steps 100] [--warmup 20] [--threads 1]
    bench_torch.py e3 [--seed 0] [--epochs 20] [--threads 1]

Each prints one JSON line. The model is tests/fixtures/reference_transformer.py (SPEC §3.3-3.4),
in f32 on the CPU, one thread unless --threads says otherwise.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from reference_transformer import Transformer  # noqa: E402

# CLI defaults of `regkern train --type transformer` (SPEC §3.3), shared by P2 and E3.
TFM = dict(input_dim=1, output_dim=1, embed_dim=64, ffn_dim=128, num_layers=2, num_heads=8, num_groups=4,
           max_seq_len=128, attention_type="gqa")


def train_step(model, opt, x, y):
    """One training step as WORKLOADS.md defines it: zero grad, forward, MSE, backward, Adam."""
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss


def p2(args):
    """P2 tfm-reg-train: seq 32, input_dim 1, E 64, F 128, 2 layers, H 8, G 4 (GQA), batch 32."""
    torch.manual_seed(0)
    model = Transformer(**TFM)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(32, 32, 1) * 2 - 1
    y = x.sum(dim=1) / math.sqrt(32)
    for _ in range(args.warmup):
        train_step(model, opt, x, y)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = train_step(model, opt, x, y)
        times.append((time.perf_counter() - t0) * 1e3)
    if not math.isfinite(loss.item()):
        raise SystemExit("P2: non-finite loss")
    return {
        "workload": "P2", "median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4), "mean_ms": round(statistics.fmean(times), 4), "steps": args.steps,
        "warmup": args.warmup,
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
    batch = 32
    train_losses, val_losses = [], []
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = train_step(model, opt, x_train[idx], y_train[idx])
            if not math.isfinite(loss.item()):
                raise SystemExit(f"E3: non-finite loss at epoch {len(val_losses) + 1}, step {i // batch}")
            total += loss.item() * len(idx)
        train_losses.append(total / len(x_train))
        model.eval()
        with torch.no_grad():  # one pass over all 512: the same mean as over batches of 32
            val_losses.append(nn.functional.mse_loss(model(x_val), y_val).item())
    wall = time.perf_counter() - t0
    return {
        "experiment": "E3", "seed": args.seed, "epochs": args.epochs, "lr": args.lr, "wall_s": round(wall, 3),
        "final_val_mse": val_losses[-1], "best_val_mse": min(val_losses), "final_train_mse": train_losses[-1],
        "val_mse": val_losses, "train_mse": train_losses,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("p2", parents=[common], help="P2 training-step time, ms/step")
    a.add_argument("--steps", type=int, default=100, help="timed steps (>= 50)")
    a.add_argument("--warmup", type=int, default=20)
    b = sub.add_parser("e3", parents=[common], help="E3 full run: wall time and final validation MSE")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--epochs", type=int, default=20)
    b.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"p2": p2, "e3": e3}[args.cmd](args)
    result.update(torch=torch.__version__, threads=torch.get_num_threads())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
