#!/usr/bin/env python3
"""Check that TensorBoard's own reader accepts a regkern log dir.

Usage:
    python3 .ci/check_tensorboard.py LOGDIR --scalars loss/train,loss/val --images pred --min-steps 5

Loads LOGDIR with TensorBoard's EventAccumulator and checks that
  * every tag in --scalars has at least --min-steps events, with strictly increasing steps;
  * every tag in --images has at least one image with positive width and height whose bytes
    start with the PNG signature;
  * the reader reported no data loss: a record that fails its CRC check is logged by TensorBoard
    only at DEBUG level ("Truncated record in ...") before it silently stops reading that file,
    so those log records are captured here and count as failures.
Prints a short report; exits 1 with the reasons on any failure, 2 on bad usage (argparse).
Needs the `tensorboard` package (pip install tensorboard).
"""

import argparse
import logging
import os
import sys

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Captured(logging.Handler):
    """Keeps every log record from TensorBoard's loggers while the log dir is read."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def split_tags(text):
    return [t for t in (text or "").split(",") if t]


def reader_problems(records):
    """Log records that mean the reader lost data or failed: data loss at any level, or WARNING+."""
    out = []
    for r in records:
        msg = r.getMessage()
        # The phrases TensorBoard's loaders use (event_file_loader.py, the stub record reader).
        lost = any(k in msg.lower() for k in ("truncated record", "crc32 check", "dataloss", "data loss"))
        if lost or r.levelno >= logging.WARNING:
            out.append(f"{r.levelname} {r.name}: {msg}")
    return out


def check_scalars(acc, tags, min_steps, available):
    failures = []
    for tag in tags:
        if tag not in available:
            failures.append(f"scalar tag {tag!r} missing (scalar tags present: {sorted(available)})")
            continue
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        bad = [(a, b) for a, b in zip(steps, steps[1:]) if b <= a]
        first, last = (steps[0], steps[-1]) if steps else ("-", "-")
        print(f"  scalar {tag}: {len(events)} events, steps {first}..{last}, last value "
              f"{events[-1].value if events else '-'}")
        if len(events) < min_steps:
            failures.append(f"scalar tag {tag!r} has {len(events)} events, expected at least {min_steps}")
        if bad:
            failures.append(f"scalar tag {tag!r} steps not strictly increasing: {bad[0][0]} then {bad[0][1]}")
    return failures


def check_images(acc, tags, available):
    failures = []
    for tag in tags:
        if tag not in available:
            failures.append(f"image tag {tag!r} missing (image tags present: {sorted(available)})")
            continue
        images = acc.Images(tag)
        print(f"  image {tag}: {len(images)} images, steps {[i.step for i in images]}, sizes "
              f"{sorted({(i.width, i.height) for i in images})}")
        if not images:
            failures.append(f"image tag {tag!r} has no images")
        for im in images:
            if im.width <= 0 or im.height <= 0:
                failures.append(f"image tag {tag!r} step {im.step}: size {im.width}x{im.height}")
            if not im.encoded_image_string.startswith(PNG_SIGNATURE):
                head = im.encoded_image_string[:8]
                failures.append(f"image tag {tag!r} step {im.step}: not a PNG (starts with {head!r})")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logdir", help="directory holding events.out.tfevents.* files")
    ap.add_argument("--scalars", default="", help="comma-separated scalar tags that must be present")
    ap.add_argument("--images", default="", help="comma-separated image tags that must be present")
    ap.add_argument("--min-steps", type=int, default=1, help="minimum events per scalar tag (default 1)")
    args = ap.parse_args()

    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError as e:
        print(f"check_tensorboard: cannot import tensorboard ({e}); pip install tensorboard", file=sys.stderr)
        return 1

    if not os.path.isdir(args.logdir):
        print(f"check_tensorboard: FAIL: {args.logdir} is not a directory", file=sys.stderr)
        return 1
    files = sorted(f for f in os.listdir(args.logdir) if "tfevents" in f)
    if not files:
        print(f"check_tensorboard: FAIL: no events.out.tfevents.* file in {args.logdir}", file=sys.stderr)
        return 1

    tb_log = logging.getLogger("tensorboard")
    handler, old_level = Captured(), tb_log.level
    tb_log.addHandler(handler)
    tb_log.setLevel(logging.DEBUG)
    try:
        acc = event_accumulator.EventAccumulator(args.logdir, size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
    finally:
        tb_log.removeHandler(handler)
        tb_log.setLevel(old_level)

    tags = acc.Tags()
    print(f"check_tensorboard: {args.logdir}: {len(files)} event file(s) {files}")
    failures = reader_problems(handler.records)
    failures += check_scalars(acc, split_tags(args.scalars), args.min_steps, set(tags.get("scalars", [])))
    failures += check_images(acc, split_tags(args.images), set(tags.get("images", [])))

    if failures:
        print(f"check_tensorboard: FAIL ({len(failures)} problem(s)):", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print("check_tensorboard: ok (no reader warnings, no data loss)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
