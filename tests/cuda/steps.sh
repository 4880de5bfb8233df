#!/usr/bin/env bash
# steps.sh [BUILD]: the CLI on the GPU against the CPU, on tiny configs (run by
# `make test-cuda` and scripts/device-check; BUILD holds dalle and
# libdalle-cuda.so, default build). Each pair of runs has the same seed, data
# and settings and differs only in --device:
#   1. two dVAE training steps from the initialisation at step size 0, and
#      two prior training steps (fp32) resuming a checkpoint of 10 CPU steps:
#      the checkpoints (parameters, EMA, and Adam's moments, which hold the
#      steps' gradients) agree within `dalle diff --tol 1e-4` (each tensor's
#      difference relative to its largest |value|), the logged losses within
#      1e-5 relative. (The dVAE at step size 0 because Adam's first update,
#      g/(|g| + 1e-8), turns a gradient that is rounding noise on both sides
#      into a step of +-lr; the prior leaves out the one tensor whose
#      gradient is such noise, see below.)
#   2. six prior training steps from the initialisation at step size 3e-3:
#      the logged losses agree within 1e-3 relative.
#   3. `dalle sample` from a prior trained here on the CPU: the same seed gives
#      the same tokens (fp32), with temperature 1 and with top-k 1.
#   4. `dalle dvae recon`: the same PSNR (two decimals); three steps of `dalle
#      train --precision bf16` log the CPU's losses within 2e-3 relative (bf16
#      products on the tensor cores: a different sum order can flip a 16-bit
#      rounding), and so do two steps of `dalle dvae train --precision bf16`
#      at step size 0; `dalle generate` with the shipped model writes its grid
#      (smoke).
# Without a usable GPU it prints "no GPU: skipped (why)" and exits 0.
# STEPS_GPU_DEVICE=cpu runs the "GPU" side on the CPU too: a check of this
# script itself on a machine without a GPU (every comparison then holds
# exactly).
set -u
BUILD=${1:-build}
DALLE="$BUILD/dalle"
. "$(dirname "$0")/../lib_cli.sh" # $T, ok, bad, tiny_prior_shard
n_ok=0
ok() { echo "  ok   $1"; n_ok=$((n_ok + 1)); }

GDEV=${STEPS_GPU_DEVICE:-cuda}
dev=$($DALLE info --device "$GDEV" 2> "$T/why.txt")
if [[ "$dev" != "device $GDEV"* ]]; then
    echo "no GPU: skipped ($(tail -1 "$T/why.txt" | sed 's/^dalle: --device cuda: //; s/; running on the CPU$//'))"
    echo "0 passed, 0 failed"
    exit 0
fi
echo "$dev"
CPU=($DALLE --device cpu)
GPU=($DALLE --device "$GDEV")
# logged DEVICE_LOG WHAT: the trainer named the GPU in its log (not on the CPU: verbose only)
logged() {
    [ "$GDEV" = cpu ] && return
    grep -q "^device cuda" "$1" && ok "$2 logs the device: $(grep "^device" "$1")" || bad "$2 did not log the GPU: $(cat "$1")"
}

# close NAME A B TOL: the numbers A and B (logged losses) agree within TOL relative
close() {
    if awk -v a="$2" -v b="$3" -v t="$4" 'BEGIN { d = a - b; if (d < 0) d = -d; s = b < 0 ? -b : b;
                                              exit !(d <= t * (s > 1e-30 ? s : 1e-30)) }'; then
        ok "$1: $2 (cuda) vs $3 (cpu)"
    else
        bad "$1: $2 (cuda) vs $3 (cpu), tolerance $4 relative"
    fi
}
# losses FILE: the loss of each logged step, one per line
losses() { awk '/^step [0-9]+ loss/ {print $4}' "$1"; }
# same_losses NAME GPU_LOG CPU_LOG TOL
same_losses() {
    local g c i=0
    mapfile -t g < <(losses "$2")
    mapfile -t c < <(losses "$3")
    if [ ${#g[@]} -eq 0 ] || [ ${#g[@]} -ne ${#c[@]} ]; then
        bad "$1: ${#g[@]} logged losses on the GPU, ${#c[@]} on the CPU"
        return
    fi
    for ((i = 0; i < ${#g[@]}; i++)); do close "$1 step $((i + 1)) loss" "${g[i]}" "${c[i]}" "$4"; done
}
# same_file NAME GPU_FILE CPU_FILE [DIFF_OPTION...]: dalle diff within 1e-4
same_file() {
    if out=$($DALLE diff --tol 1e-4 "${@:4}" "$2" "$3" 2>&1); then ok "$1: $(echo "$out" | tail -1)"
    else bad "$1: $(echo "$out" | tail -3)"; fi
}

# ---- 1. two training steps of each stage
mkdir -p "$T/imgs"
cp tests/data/img/png_rgb.png tests/data/img/png_rgba.png tests/data/img/jpg_baseline.jpg tests/data/img/png_gray.png "$T/imgs/"
dv=(dvae train --data "$T/imgs" --preset tiny --batch 2 --steps 2 --seed 3 --lr 0 --lr-end 0 --log-every 1)
"${CPU[@]}" "${dv[@]}" -o "$T/dv_cpu.st" > "$T/dv_cpu.log" 2> "$T/dv_cpu.err" || bad "dvae train on the CPU: $(tail -1 "$T/dv_cpu.err")"
if "${GPU[@]}" "${dv[@]}" -o "$T/dv_gpu.st" > "$T/dv_gpu.log" 2> "$T/dv_gpu.err"; then
    logged "$T/dv_gpu.err" "dvae train"
    same_losses "dvae (lr 0)" "$T/dv_gpu.log" "$T/dv_cpu.log" 1e-5
    same_file "dvae checkpoint after 2 steps (lr 0)" "$T/dv_gpu.st" "$T/dv_cpu.st"
else
    bad "dvae train on the GPU: $(tail -3 "$T/dv_gpu.err")"
fi

# The prior starts with zero heads (so its first gradients reach the heads
# alone): its two steps continue a checkpoint of 10 CPU steps instead, at
# the checkpoint's step size. The attention's key bias is left out of the
# comparison: its gradient is zero in exact arithmetic (softmax ignores a
# constant added to every score of a query), so both sides update it with
# rounding noise (Adam's m / sqrt(v) of noise is of order 1).
tiny_prior_shard 64 0 "$T/train.dshard" > /dev/null || bad "shard pack"
"${CPU[@]}" -q train --config tiny --batch 8 --steps 12 --stop-after 10 --seed 5 --lr 3e-3 --warmup 0 --clip 0 \
    --log-every 1 -o "$T/pr_base.st" "$T/train.dshard" > /dev/null 2>&1 || bad "prior: 10 steps on the CPU"
kbias=
for l in 0 1 2 3; do for p in "" ema. adam.m. adam.v.; do kbias+="${kbias:+,}${p}blocks.$l.attn.qkv.bias"; done; done
pr=(train --resume "$T/pr_base.st" --steps 12 --log-every 1 "$T/train.dshard")
"${CPU[@]}" "${pr[@]}" -o "$T/pr_cpu.st" > "$T/pr_cpu.log" 2> "$T/pr_cpu.err" || bad "prior train on the CPU: $(tail -1 "$T/pr_cpu.err")"
if "${GPU[@]}" "${pr[@]}" -o "$T/pr_gpu.st" > "$T/pr_gpu.log" 2> "$T/pr_gpu.err"; then
    logged "$T/pr_gpu.err" "prior train"
    same_losses "prior fp32 (steps 11, 12)" "$T/pr_gpu.log" "$T/pr_cpu.log" 1e-5
    same_file "prior checkpoint after steps 11, 12 (fp32; all but the qkv biases)" "$T/pr_gpu.st" "$T/pr_cpu.st" \
        --skip "$kbias"
else
    bad "prior train on the GPU: $(tail -3 "$T/pr_gpu.err")"
fi

# ---- 2. six steps that update the parameters
pr6=(train --config tiny --batch 8 --steps 6 --seed 5 --lr 3e-3 --warmup 0 --log-every 1 "$T/train.dshard")
"${CPU[@]}" "${pr6[@]}" -o "$T/p6_cpu.st" > "$T/p6_cpu.log" 2>&1 || bad "prior 6 steps on the CPU"
if "${GPU[@]}" "${pr6[@]}" -o "$T/p6_gpu.st" > "$T/p6_gpu.log" 2> "$T/p6_gpu.err"; then
    same_losses "prior fp32 (lr 3e-3)" "$T/p6_gpu.log" "$T/p6_cpu.log" 1e-3
else
    bad "prior 6 steps on the GPU: $(tail -3 "$T/p6_gpu.err")"
fi

# ---- 3. sampling: the same tokens from the same seed
"${CPU[@]}" -q train --config tiny --batch 8 --steps 60 --seed 5 --lr 3e-3 --warmup 10 --log-every 60 \
    -o "$T/s.st" "$T/train.dshard" > /dev/null 2>&1 || bad "training the prior to sample from (CPU)"
for opt in "--temperature 1" "--top-k 1"; do
    "${CPU[@]}" -q sample --model "$T/s.st" --ids "7 11" -n 4 --seed 3 $opt -o "$T/codes_cpu.txt" 2> "$T/s.err" \
        || bad "sample on the CPU ($opt): $(tail -1 "$T/s.err")"
    if "${GPU[@]}" -q sample --model "$T/s.st" --ids "7 11" -n 4 --seed 3 $opt -o "$T/codes_gpu.txt" 2> "$T/s.err"; then
        cmp -s "$T/codes_gpu.txt" "$T/codes_cpu.txt" && ok "sample $opt: the same $(wc -w < "$T/codes_cpu.txt") tokens" \
            || bad "sample $opt: the tokens differ"$'\n'"$(diff "$T/codes_gpu.txt" "$T/codes_cpu.txt" | head -6)"
    else
        bad "sample on the GPU ($opt): $(tail -3 "$T/s.err")"
    fi
done

# ---- 4. the other commands on the GPU
psnr() { awk '{for (i = 1; i < NF; i++) if ($i == "PSNR") printf "%s ", $(i + 1)}' "$1"; }
"${CPU[@]}" -q dvae recon --model models/dvae-icons.safetensors tests/data/img/png_rgb.png tests/data/img/jpg_baseline.jpg \
    -o "$T/rc.png" > "$T/rc_cpu.txt" 2>&1 || bad "dvae recon on the CPU"
if "${GPU[@]}" -q dvae recon --model models/dvae-icons.safetensors tests/data/img/png_rgb.png \
    tests/data/img/jpg_baseline.jpg -o "$T/rg.png" > "$T/rc_gpu.txt" 2>&1; then
    [ "$(psnr "$T/rc_gpu.txt")" = "$(psnr "$T/rc_cpu.txt")" ] && ok "dvae recon: PSNR $(psnr "$T/rc_gpu.txt")dB as on the CPU" \
        || bad "dvae recon: PSNR $(psnr "$T/rc_gpu.txt")(cuda) vs $(psnr "$T/rc_cpu.txt")(cpu)"
else
    bad "dvae recon on the GPU: $(tail -3 "$T/rc_gpu.txt")"
fi
pb=(train --config tiny --batch 8 --steps 3 --seed 5 --lr 3e-3 --warmup 0 --log-every 1 --precision bf16)
"${CPU[@]}" "${pb[@]}" -o "$T/pb_cpu.st" "$T/train.dshard" > "$T/pb_cpu.log" 2>&1 || bad "prior bf16 on the CPU"
if "${GPU[@]}" "${pb[@]}" -o "$T/pb.st" "$T/train.dshard" > "$T/pb.log" 2> "$T/pb.err"; then
    same_losses "prior bf16 (tensor-core products, 16-bit ops on the GPU)" "$T/pb.log" "$T/pb_cpu.log" 2e-3
else
    bad "prior train --precision bf16 on the GPU: $(tail -3 "$T/pb.err")"
fi
# the dVAE in bf16 (conv2d16: bf16 weights and inputs, fp32 sums, results rounded to bf16) at step size 0
dvb=("${dv[@]}" --precision bf16)
"${CPU[@]}" "${dvb[@]}" -o "$T/dvb_cpu.st" > "$T/dvb_cpu.log" 2>&1 || bad "dvae bf16 on the CPU"
if "${GPU[@]}" "${dvb[@]}" -o "$T/dvb.st" > "$T/dvb.log" 2> "$T/dvb.err"; then
    same_losses "dvae bf16 (lr 0)" "$T/dvb.log" "$T/dvb_cpu.log" 2e-3
    grep -aq '"train.precision":"bf16"' "$T/dvb.st" && ok "dvae bf16 checkpoint records its precision" \
        || bad "dvae bf16 checkpoint without train.precision bf16"
else
    bad "dvae train --precision bf16 on the GPU: $(tail -3 "$T/dvb.err")"
fi
if "${GPU[@]}" -q generate --model models/default -n 1 --seed 1 -o "$T/gen.png" "a red circle" 2> "$T/gen.err" \
    && [ -s "$T/gen.png" ]; then
    ok "generate with models/default on the GPU"
else
    bad "generate on the GPU: $(tail -3 "$T/gen.err")"
fi

echo "$n_ok passed, $fails failed"
[ $fails -eq 0 ]
