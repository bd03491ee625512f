#!/usr/bin/env bash
# Firmware checks (issue 13): build the Cortex-M4 images of tests/firmware and the C firmware, run
# each under qemu-system-arm (mps2-an386, semihosting), and check them:
#   - every image exits 0 (the scenarios also fail themselves when a check below fails);
#   - training losses fall by at least half (first vs last 10-step mean; C: first vs last step);
#   - cached and uncached generation agree within 1e-5 (f32 cache);
#   - the firmware's result lines equal the host's in every bit (the same scenario code, or the
#     same C file, run on x86_64 on the portable gemm kernel), `#` measurement lines aside;
#   - the inference image embeds the parameters the MLP training image ends with;
#   - footprints: a markdown table, and the budgets below.
# Assumes the tools .ci/run installs (rustup target thumbv7em-none-eabihf, arm-none-eabi-gcc with
# newlib, qemu-system-arm, gcc). Run from anywhere: bash .ci/firmware.sh
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s ==\n' "$*"; }

# Budgets not met yet are reported but do not fail the run until switched on (1). What each
# needs from core is in tests/firmware/README.md.
# Met and enforced: (d)'s flash and RAM, (a)'s and (b)'s RAM.
ENFORCE_MLP_TRAIN_RAM="${ENFORCE_MLP_TRAIN_RAM:-1}"     # (a) MLP training: RAM < 24 KiB
ENFORCE_SEQSUM_RAM="${ENFORCE_SEQSUM_RAM:-1}"           # (b) transformer training: RAM < 64 KiB
ENFORCE_INFER_FLASH="${ENFORCE_INFER_FLASH:-1}"         # (d) inference: flash <= 16 KiB
ENFORCE_INFER_RAM="${ENFORCE_INFER_RAM:-1}"             # (d) inference: RAM <= 4 KiB

FW=tests/firmware
HOST_TARGET="$(rustc -vV | sed -n 's/^host: //p')"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
FAILED=()
fail() { echo "FAIL: $*"; FAILED+=("$*"); }

step "firmware: build (thumbv7em-none-eabihf, release) and the host binary ($HOST_TARGET)"
FW_BIN="$FW/target/thumbv7em-none-eabihf/release"
# One image per build: built together, cargo would unify their features and every image would
# link every architecture any of them uses.
for img in fw-mlp-train fw-seqsum-train fw-sine-generate fw-mlp-infer; do
  (cd "$FW" && cargo build --release --locked -p "$img")
  cp "$FW_BIN/$img" "$OUT/$img"
done
for variant in safetensors layers; do
  (cd "$FW" && cargo build --release --locked -p fw-mlp-infer --features "$variant")
  cp "$FW_BIN/fw-mlp-infer" "$OUT/fw-mlp-infer-$variant"
done
(cd "$FW" && cargo build --release --locked -p regkern-fw-host --target "$HOST_TARGET")
HOST="$FW/target/$HOST_TARGET/release/fw-host"

step "firmware: format, clippy, the scenarios' unit tests (host)"
(cd "$FW" && cargo fmt --all -- --check)
(cd "$FW" && cargo clippy --release --locked --workspace --exclude regkern-fw-host -- -D warnings)
(cd "$FW" && cargo clippy --release --locked --all-targets --target "$HOST_TARGET" -p regkern-fw-host \
  -p regkern-scenarios -- -D warnings)
(cd "$FW" && cargo test --release --locked -p regkern-scenarios --features mlp,kv-cache --target "$HOST_TARGET")

step "firmware: the C firmware against libregkern.a (Cortex-M4F) and the same C file on the host"
cargo build -p regkern-ffi --target thumbv7em-none-eabihf --release
cargo build -p regkern-ffi --release
C="$FW/c"
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -ffp-contract=off -I include -I "$C")
arm-none-eabi-gcc "${cflags[@]}" -Os -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 \
  -ffunction-sections -fdata-sections -nostartfiles --specs=nano.specs --specs=nosys.specs \
  -Wl,--gc-sections -Wl,-z,noexecstack -T "$C/link.ld" -o "$OUT/fw-c-mlp" \
  "$C/startup.c" "$C/platform_fw.c" "$C/main.c" target/thumbv7em-none-eabihf/release/libregkern.a -lm
gcc "${cflags[@]}" -O2 -o "$OUT/host-c-mlp" "$C/platform_host.c" "$C/main.c" target/release/libregkern.a -lm

step "firmware: run under qemu-system-arm -machine mps2-an386 (-icount shift=0: 1 ns per instruction)"
# image → the host command printing the same result lines
declare -A HOST_CMD=(
  [fw-mlp-train]="$HOST mlp-train"
  [fw-seqsum-train]="$HOST seqsum-train"
  [fw-sine-generate]="$HOST sine-generate"
  [fw-mlp-infer]="$HOST mlp-infer"
  [fw-mlp-infer-safetensors]="$HOST mlp-infer-safetensors"
  [fw-mlp-infer-layers]="$HOST mlp-infer-layers"
  [fw-c-mlp]="$OUT/host-c-mlp"
)
IMAGES=(fw-mlp-train fw-seqsum-train fw-sine-generate fw-mlp-infer fw-mlp-infer-safetensors fw-mlp-infer-layers fw-c-mlp)
for img in "${IMAGES[@]}"; do
  start=$SECONDS
  rc=0
  timeout 180 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native -kernel "$OUT/$img" >"$OUT/$img.fw" 2>"$OUT/$img.err" || rc=$?
  hrc=0
  ${HOST_CMD[$img]} >"$OUT/$img.host" 2>>"$OUT/$img.err" || hrc=$?
  echo "$img: firmware exit $rc, host exit $hrc, $(tail -n 1 "$OUT/$img.fw" | head -c 120) ($((SECONDS - start)) s)"
  [ "$rc" -eq 0 ] || { fail "$img exited $rc"; tail -n 5 "$OUT/$img.fw" "$OUT/$img.err"; }
  [ "$hrc" -eq 0 ] || fail "$img: host run exited $hrc"
  if ! diff <(grep -v '^#' "$OUT/$img.fw") "$OUT/$img.host" >"$OUT/$img.diff"; then
    fail "$img: firmware and host results differ ($(grep -c '^[<>]' "$OUT/$img.diff") lines)"
    head -n 10 "$OUT/$img.diff"
  fi
done

step "firmware: losses, generation, weights"
f32() { python3 -c 'import struct, sys; print(struct.unpack(">f", bytes.fromhex(sys.argv[1]))[0])' "$1"; }
# Field $3 of the lines of file $1 whose first field is $2.
field() { awk -v k="$2" -v n="$3" '$1 == k {print $n}' "$1"; }
less_eq() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$1" "$2"; }
check_halved() { # image, key of the loss lines
  local vals first last
  vals="$(field "$OUT/$1.fw" "$2" 3)"
  [ -n "$vals" ] || { fail "$1: no $2 lines"; return; }
  first="$(f32 "$(head -n 1 <<<"$vals")")"; last="$(f32 "$(tail -n 1 <<<"$vals")")"
  if less_eq "$last" "$(python3 -c "print(0.5 * $first)")"; then echo "$1: $2 $first -> $last"
  else fail "$1: $2 $first -> $last did not fall by half"; fi
}
check_halved fw-mlp-train loss10
check_halved fw-seqsum-train loss10
check_halved fw-sine-generate loss10
check_halved fw-c-mlp loss
gen_diff() { f32 "$(awk -v k="$1" '$1 == "gen_maxdiff" && $2 == k {print $3}' "$OUT/fw-sine-generate.fw")"; }
d32="$(gen_diff f32)"; d16="$(gen_diff f16)"
if less_eq "$d32" 1e-5; then echo "generation: |cached f32 - uncached| <= $d32; |cached f16 - uncached| <= $d16"
else fail "generation: cached (f32) and uncached differ by $d32 > 1e-5"; fi
trained="$(field "$OUT/fw-mlp-train.fw" checksum 2)"
for img in fw-mlp-infer fw-mlp-infer-safetensors fw-mlp-infer-layers; do
  embedded="$(field "$OUT/$img.fw" weights_checksum 2)"
  [ "$embedded" = "$trained" ] || fail "$img embeds weights $embedded, fw-mlp-train ends with $trained"
done
echo "weights: fw-mlp-train ends with parameters $trained; the inference images embed the same"
"$HOST" export-weights "$OUT" >/dev/null
for f in weights.rs mlp.safetensors; do
  cmp -s "$OUT/$f" "$FW/scenarios/src/$f" || fail "$FW/scenarios/src/$f differs from what fw-host export-weights writes"
done

step "firmware: footprints"
# Section sizes (bytes) of an ELF: flash = vector table + .text + .rodata (+ .ARM.exidx, and
# .data's initial values, which are stored in flash); static RAM = .data + .bss.
sections() { arm-none-eabi-size -A "$1" | awk -v want="$2" '$1 == want {print $2; f=1} END {if (!f) print 0}'; }
flash() { echo $(($(sections "$1" .vector_table) + $(sections "$1" .text) + $(sections "$1" .rodata) + $(sections "$1" .ARM.exidx) + $(sections "$1" .data))); }
static_ram() { echo $(($(sections "$1" .data) + $(sections "$1" .bss))); }
stack() { awk '$2 == "stack_high_water" {print $3}' "$1"; }
per_step() { awk '$2 == "steps" {print $7}' "$1"; }
# "label: params P, grads G, ..." per planned arena (regions of 0 bytes left out).
arenas() {
  awk '$1 == "arena" && $3 != "total" { if ($2 != last) { if (last) printf "; "; printf "%s:", $2; last = $2; sep = " " }
         if ($4 > 0) { printf "%s%s %d", sep, $3, $4; sep = ", " } }' "$1"
}
fmt_count() { python3 -c "import sys; n = int(sys.argv[1]) if sys.argv[1] else 0; print(f'{n:,}' if n else '–')" "${1:-}"; }
# Inspect the images for formatting code and panic handlers.
declare -A RAM_TOTAL FLASH_TOTAL
{
  echo "| image | flash | static RAM | stack high-water | RAM total | arena bytes per region | instructions/step | core::fmt symbols |"
  echo "|---|---:|---:|---:|---:|---|---:|---:|"
  for img in "${IMAGES[@]}"; do
    elf="$OUT/$img"
    fl=$(flash "$elf"); st=$(static_ram "$elf"); sk=$(stack "$OUT/$img.fw"); sk=${sk:-0}
    total=$((st + sk))
    FLASH_TOTAL[$img]=$fl; RAM_TOTAL[$img]=$total
    nfmt=$(arm-none-eabi-nm -C "$elf" | grep -c 'core::fmt' || true)
    echo "| $img | $fl | $st | $sk | $total | $(arenas "$OUT/$img.fw") | $(fmt_count "$(per_step "$OUT/$img.fw")") | $nfmt |"
  done
} >"$OUT/footprint.md"
cat "$OUT/footprint.md"
for img in "${IMAGES[@]}"; do
  [[ "$img" == fw-c-* ]] && continue # the C image's handler is the library's (see the README)
  handlers=$(arm-none-eabi-nm "$OUT/$img" | grep -c 'rust_begin_unwind$' || true)
  [ "$handlers" -eq 1 ] || fail "$img has $handlers panic handlers"
done
cal="$(grep '^# calibration' "$OUT/fw-mlp-train.fw" | head -n 1)"
echo
echo "Instructions: QEMU -icount shift=0 (1 ns of virtual time per instruction); SysTick at the 25 MHz"
echo "core clock, calibrated on a loop of known length: ${cal#\# }."

# budget name, value, limit, enforce flag
budget() {
  if [ "$2" -le "$3" ]; then echo "budget ok: $1 = $2 <= $3"
  elif [ "$4" = 1 ]; then fail "budget: $1 = $2 > $3"
  else echo "budget NOT MET (not enforced yet): $1 = $2 > $3"; fi
}
budget "fw-mlp-infer flash" "${FLASH_TOTAL[fw-mlp-infer]}" 16384 "$ENFORCE_INFER_FLASH"
budget "fw-mlp-infer RAM" "${RAM_TOTAL[fw-mlp-infer]}" 4096 "$ENFORCE_INFER_RAM"
budget "fw-mlp-train RAM" "${RAM_TOTAL[fw-mlp-train]}" $((24 * 1024 - 1)) "$ENFORCE_MLP_TRAIN_RAM"
budget "fw-seqsum-train RAM" "${RAM_TOTAL[fw-seqsum-train]}" $((64 * 1024 - 1)) "$ENFORCE_SEQSUM_RAM"

if [ "${#FAILED[@]}" -gt 0 ]; then
  step "firmware: FAILED"
  printf ' - %s\n' "${FAILED[@]}"
  exit 1
fi
step "firmware: ok"
