#!/usr/bin/env python3
"""Check that a regkern run's model.safetensors loads in Python with the names and shapes of
SPEC section 3, in PyTorch state_dict order.

Usage: python3 .ci/check_checkpoint.py RUNDIR [RUNDIR ...]

For each run directory, reads config.json (the resolved config regkern wrote), derives the
expected parameter table from SPEC section 3 independently of regkern's code, and compares it
with model.safetensors loaded by `safetensors.numpy` (names, shapes, dtype float32, finite
values) and with the order of the file's header (state_dict order). With torch installed, also
loads the file with safetensors.torch. Needs `safetensors` and `numpy`.
"""
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import load_file


def block(prefix, e, g_width, f, moe, cross=False):
    """One pre-norm block: norms, attention (and cross-attention), FFN or MoE FFN."""
    out = [(f"{prefix}norm1.weight", [e]), (f"{prefix}norm1.bias", [e])]
    attns = ["self_attn", "cross_attn"] if cross else ["attn"]
    for i, attn in enumerate(attns):
        if i == 1:
            out += [(f"{prefix}norm2.weight", [e]), (f"{prefix}norm2.bias", [e])]
        out += [
            (f"{prefix}{attn}.q_proj.weight", [e, e]), (f"{prefix}{attn}.q_proj.bias", [e]),
            (f"{prefix}{attn}.k_proj.weight", [g_width, e]), (f"{prefix}{attn}.k_proj.bias", [g_width]),
            (f"{prefix}{attn}.v_proj.weight", [g_width, e]), (f"{prefix}{attn}.v_proj.bias", [g_width]),
            (f"{prefix}{attn}.o_proj.weight", [e, e]), (f"{prefix}{attn}.o_proj.bias", [e]),
        ]
    last = "norm3" if cross else "norm2"
    out += [(f"{prefix}{last}.weight", [e]), (f"{prefix}{last}.bias", [e])]
    if moe:
        out.append((f"{prefix}ffn.router.weight", [moe["num_experts"], e]))
        for j in range(moe["num_experts"]):
            p = f"{prefix}ffn.experts.{j}."
            out += [(p + "fc1.weight", [f, e]), (p + "fc1.bias", [f]), (p + "fc2.weight", [e, f]), (p + "fc2.bias", [e])]
    else:
        out += [(f"{prefix}ffn.fc1.weight", [f, e]), (f"{prefix}ffn.fc1.bias", [f]),
                (f"{prefix}ffn.fc2.weight", [e, f]), (f"{prefix}ffn.fc2.bias", [e])]
    return out


def stack(prefix, t, input_dim, layers, cross):
    e, f = t["embed_dim"], t["ffn_dim"]
    g_width = t["num_groups"] * (e // t["num_heads"])
    out = [(f"{prefix}input_proj.weight", [e, input_dim]), (f"{prefix}input_proj.bias", [e]),
           (f"{prefix}pos_embed.weight", [t["max_seq_len"], e])]
    for i in range(layers):
        out += block(f"{prefix}layers.{i}.", e, g_width, f, t["moe"], cross)
    return out + [(f"{prefix}final_norm.weight", [e]), (f"{prefix}final_norm.bias", [e])]


def expected(cfg, n_in, n_out):
    """SPEC section 3's parameter table for the config in config.json."""
    kind = cfg["type"]
    if kind == "linear":
        return [("linear.weight", [n_out, n_in]), ("linear.bias", [n_out])]
    if kind == "nlinear":
        dims = [n_in] + cfg["latent_dims"] + [n_out]
        return [t for i in range(len(dims) - 1)
                for t in ((f"layers.{i}.weight", [dims[i + 1], dims[i]]), (f"layers.{i}.bias", [dims[i + 1]]))]
    if cfg["encoder_decoder"]:
        t = cfg["encoder_decoder"]
        e = t["embed_dim"]
        return (stack("encoder.", t, t["input_dim"], t["num_encoder_layers"], False)
                + stack("decoder.", t, t["output_dim"], t["num_decoder_layers"], True)
                + [("head.weight", [t["output_dim"], e]), ("head.bias", [t["output_dim"]])])
    t = cfg["transformer"]
    return stack("", t, t["input_dim"], t["num_layers"], False) + [
        ("head.weight", [t["output_dim"], t["embed_dim"]]), ("head.bias", [t["output_dim"]])]


def check(run):
    cfg = json.load(open(os.path.join(run, "config.json")))
    path = os.path.join(run, "model.safetensors")
    tensors = load_file(path)
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    meta = header.pop("__metadata__")
    assert meta.get("format") == "pt", f"{path}: metadata format {meta.get('format')!r}"
    # linear/nlinear widths come from the file's first and last layers (the task fixes them).
    names = list(header)
    if cfg["type"] in ("linear", "nlinear"):
        n_in, n_out = header[names[0]]["shape"][1], header[names[-1]]["shape"][0]
    else:
        n_in = n_out = None
    want = expected(cfg, n_in, n_out)
    assert names == [name for name, _ in want], (
        f"{path}: tensor names/order differ from SPEC §3:\n  got  {names[:8]}...\n  want {[w for w, _ in want][:8]}...")
    for name, shape in want:
        a = tensors[name]
        assert list(a.shape) == shape, f"{path}: {name} has shape {list(a.shape)}, SPEC says {shape}"
        assert a.dtype == np.float32, f"{path}: {name} is {a.dtype}"
        assert np.isfinite(a).all(), f"{path}: {name} holds non-finite values"
    try:
        import torch  # noqa: F401
        from safetensors.torch import load_file as load_torch
        assert set(load_torch(path)) == set(names)
        via = "safetensors.numpy and safetensors.torch"
    except ImportError:
        via = "safetensors.numpy"
    print(f"{run}: {len(names)} tensors, names, shapes and order as SPEC §3 ({cfg['type']}"
          f"{', encoder-decoder' if cfg.get('encoder_decoder') else ''}), read with {via}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    failed = False
    for run in sys.argv[1:]:
        try:
            check(run)
        except (AssertionError, OSError, KeyError, ValueError) as e:
            print(f"FAIL {run}: {e}")
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
