#!/usr/bin/env bash
# Regenerates the committed seed corpora from a release build of the CLI (run from fuzz/seeds):
#   checkpoint/  parameters-only and training-state files of every model type, each also without
#                its regkern.crc32c entry (as a tool that rewrote the metadata leaves it), so that
#                mutations reach the checks behind the checksum;
#   csv/         two selector bytes (header rule and layout, width) and then a small file: every
#                layout and header rule, and the mistakes users make.
# plan/ and c_abi/ (byte strings the harnesses decode with Unstructured), and the csv/ files
# named by hash, are set-cover minimised corpora of 16-minute runs (libFuzzer
# -set_cover_merge=1): they give CI's 60-second runs a start in every model type and call.
set -euo pipefail
cd "$(dirname "$0")"
R="${1:-../../target/release/regkern}"
runs="$(mktemp -d)"
trap 'rm -rf "$runs"' EXIT
small=(--epochs 2 --train_size 16 --val_size 8 --batch_size 8 --quiet)
tiny=(--embed_dim 4 --num_heads 2 --num_groups 1 --ffn_dim 4 --num_layers 1 --seq_len 4 --max_seq_len 4)
"$R" train --type linear "${small[@]}" --logdir "$runs/linear" >/dev/null
"$R" train --type nlinear --latent_dims 4,3 "${small[@]}" --logdir "$runs/nlinear" >/dev/null
"$R" train --type transformer "${small[@]}" "${tiny[@]}" --logdir "$runs/transformer" >/dev/null
"$R" train --type transformer --autoregressive "${small[@]}" "${tiny[@]}" --attention_type mqa \
  --logdir "$runs/autoregressive" >/dev/null
"$R" train --type transformer --moe --num_experts 2 "${small[@]}" "${tiny[@]}" --logdir "$runs/moe" >/dev/null
"$R" train --type transformer --encoderdecoder "${small[@]}" "${tiny[@]}" --attention_type mha \
  --logdir "$runs/encdec" >/dev/null
mkdir -p checkpoint
for run in linear nlinear transformer autoregressive moe encdec; do
  cp "$runs/$run/model.safetensors" "checkpoint/$run.safetensors"
  cp "$runs/$run/checkpoint.safetensors" "checkpoint/$run-training.safetensors"
done
python3 - checkpoint/*.safetensors <<'PY'
import json, struct, sys
for path in sys.argv[1:]:
    if path.endswith("-nocrc.safetensors"):
        continue
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"].pop("regkern.crc32c")
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    open(path.replace(".safetensors", "-nocrc.safetensors"), "wb").write(
        struct.pack("<Q", len(text)) + text + data[8 + n:])
PY
mkdir -p csv
csv() { { printf "$2"; printf "$3"; } >"csv/$1.csv"; }
csv header '\x00\x02' 'a,b,c\n1,2,3\n4,5,6\n7,8,9\n'
csv bom '\x01\x01' '\xef\xbb\xbf1,2,3\n4,5,6\n7,8,9\n'
csv typo '\x02\x03' '1,2,3.O,4\n1,2,3,4\n'
csv nonfinite '\x03\x02' '# comment\n\n1.5e3,-2,nan\ninf,2,3\n'
csv ragged '\x04\x01' '1,2\n3\n4,5\n'
csv series '\x06\x03' '0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9\n0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1\n1,2,3,4,5,6,7,8,9\n'
csv seq2seq '\x09\x01' '1,2,3,4\n5,6,7,8\n9,10,11,12\n'
csv target_len '\x0c\x02' '1,2,3,4,5\n5,6,7,8,9\n'
csv crlf '\x10\x01' '"x",y\r\n1,2\r\n3,4\r\n'
