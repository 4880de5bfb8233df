#!/usr/bin/env bash
# cli_device.sh: the global --device option on a machine without a usable
# GPU (where there is one, the parts that need its absence are skipped):
# --device cuda (or DALLE_DEVICE=cuda) says in one line why it cannot, then
# runs on the CPU with the very results of --device cpu (training steps of
# both stages, sampling); --device auto falls back quietly; an unknown device
# is a usage error; `dalle info --device D` reports the device; DALLE_PROFILE=1
# prints the time per op and changes no result. Run by
# tests/run with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"

$DALLE --help | grep -q -- "--device D" && ok "dalle --help lists --device" || bad "dalle --help: no --device"
out=$($DALLE info --device cpu) && [[ "$out" == "device cpu ("*"CPU"* ]] && ok "info --device cpu: $out" \
    || bad "info --device cpu: $out"
WANT_RC=2 expect_fail "an unknown device" "unknown device 'tpu' (cpu, cuda or auto)" "$T/none" $DALLE --device tpu info
WANT_RC=2 expect_fail "--device without a value" "--device needs cpu, cuda or auto" "$T/none" $DALLE info --device

# No library where DALLE_CUDA_LIB points: one line, then the CPU.
msg=$(DALLE_CUDA_LIB=$T/nowhere.so $DALLE --device cuda info -c tiny 2>&1 >"$T/info.txt"); rc=$?
[ $rc -eq 0 ] && [ "$(echo "$msg" | wc -l)" = 1 ] && [[ "$msg" == "dalle: --device cuda: no CUDA backend: $T/nowhere.so not found"*"; running on the CPU" ]] \
    && grep -q "^device cpu" "$T/info.txt" && grep -q "^parameters 15,632" "$T/info.txt" \
    && ok "--device cuda without the library: $msg" || bad "--device cuda without the library (rc $rc): $msg"
msg=$(DALLE_CUDA_LIB=$T/nowhere.so DALLE_DEVICE=cuda $DALLE info --device cpu 2>&1 >/dev/null)
[ -z "$msg" ] && ok "--device overrides DALLE_DEVICE" || bad "--device cpu over DALLE_DEVICE=cuda: $msg"
msg=$(DALLE_CUDA_LIB=$T/nowhere.so $DALLE --device auto info 2>&1 >"$T/auto.txt")
[ -z "$msg" ] && grep -q "^device cpu" "$T/auto.txt" && ok "--device auto falls back quietly" || bad "--device auto: $msg"

# This build's own library, or none: without a GPU, the same fallback.
gpu=$($DALLE info --device cuda 2>"$T/why.txt")
if [[ "$gpu" == "device cuda"* ]]; then
    ok "a GPU is usable here ($gpu): its fallback not tested"
    FALLBACK=(env DALLE_CUDA_LIB="$T/nowhere.so")
else
    ok "no GPU here: $(cat "$T/why.txt")"
    FALLBACK=(env)
fi

# Training and sampling with --device cuda falling back: exit 0, results of --device cpu, bit for bit.
mkdir -p "$T/imgs"
cp tests/data/img/png_rgb.png tests/data/img/png_rgba.png tests/data/img/jpg_baseline.jpg "$T/imgs/"
dv=(dvae train --data "$T/imgs" --preset tiny --batch 2 --steps 2 --seed 3 --log-every 1 --lr 1e-3)
$DALLE -q --device cpu "${dv[@]}" -o "$T/dv_cpu.st" > "$T/dv_cpu.log"
"${FALLBACK[@]}" DALLE_DEVICE=cuda $DALLE -q "${dv[@]}" -o "$T/dv_cuda.st" > "$T/dv_cuda.log" 2> "$T/dv.err" \
    && grep -q "running on the CPU" "$T/dv.err" && cmp -s "$T/dv_cpu.st" "$T/dv_cuda.st" \
    && cmp -s "$T/dv_cpu.log" "$T/dv_cuda.log" && ok "dvae train with DALLE_DEVICE=cuda: on the CPU, the same checkpoint" \
    || bad "dvae train with DALLE_DEVICE=cuda: $(cat "$T/dv.err")"
tiny_prior_shard 40 0 "$T/train.dshard" > /dev/null
pr=(train --config tiny --batch 4 --steps 3 --lr 3e-3 --warmup 1 --seed 5 --log-every 1 "$T/train.dshard")
$DALLE -q --device cpu "${pr[@]}" -o "$T/pr_cpu.st" > "$T/pr_cpu.log"
"${FALLBACK[@]}" $DALLE -q --device cuda "${pr[@]}" -o "$T/pr_cuda.st" > "$T/pr_cuda.log" 2> "$T/pr.err" \
    && grep -q "running on the CPU" "$T/pr.err" && cmp -s "$T/pr_cpu.st" "$T/pr_cuda.st" \
    && cmp -s "$T/pr_cpu.log" "$T/pr_cuda.log" && ok "prior train --device cuda: on the CPU, the same checkpoint" \
    || bad "prior train --device cuda: $(cat "$T/pr.err")"
$DALLE -q --device cpu sample --model "$T/pr_cpu.st" --ids "7 11" -n 2 --seed 3 -o "$T/c_cpu.txt"
"${FALLBACK[@]}" $DALLE -q --device cuda sample --model "$T/pr_cpu.st" --ids "7 11" -n 2 --seed 3 -o "$T/c_cuda.txt" \
    2> "$T/s.err" && cmp -s "$T/c_cpu.txt" "$T/c_cuda.txt" && ok "sample --device cuda: on the CPU, the same codes" \
    || bad "sample --device cuda: $(cat "$T/s.err")"

# DALLE_PROFILE=1: the same results, and a table of the time per op on stderr at exit.
DALLE_PROFILE=1 $DALLE -q --device cpu sample --model "$T/pr_cpu.st" --ids "7 11" -n 2 --seed 3 -o "$T/c_prof.txt" \
    2> "$T/prof.err" && cmp -s "$T/c_cpu.txt" "$T/c_prof.txt" && grep -q "^profile (DALLE_PROFILE=1, cpu): .* s wall, .* ops" "$T/prof.err" \
    && grep -Eq "^  linear_forward +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+%$" "$T/prof.err" \
    && ok "DALLE_PROFILE=1: the same codes, and $(grep -Ec '^  [a-z_0-9]+ +[0-9]' "$T/prof.err") ops timed" \
    || bad "DALLE_PROFILE=1: $(cat "$T/prof.err")"

[ $fails -eq 0 ]
