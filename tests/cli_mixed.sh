#!/usr/bin/env bash
# cli_mixed.sh: mixed-precision training of the prior (docs/training.md,
# "Mixed precision") on the tiny preset, one thread:
#  - bf16 and fp16 track the fp32 loss curve: at each of the 6 log points of
#    300 steps the mean loss is within 1% of fp32's plus 0.002 (measured:
#    bf16 within 0.05%, fp16 within 0.01%);
#  - activation checkpointing gives the checkpoint of the run without it,
#    byte for byte, in fp32 and in fp16;
#  - a 16-bit run stopped and resumed gives the uninterrupted run byte for
#    byte (fp16 with per-resblock scales, bf16 with dynamic loss scaling);
#  - a forced overflow: resblock 3's scale set to 2^24 in fp16 overflows;
#    that step is skipped, that scale alone backs off by sqrt(2) once (the
#    later overflows inside the 125-step window skip without shrinking), the
#    other scales grow by 2^(1/1000) a step, the checkpoint counts the skips;
#  - under mpirun: 2 ranks in fp16 with sharding and checkpointing give the
#    1-rank run in 2 pieces bit for bit (skipped when mpirun is absent);
#  - dalle info prints the activations of each storage mode and, with
#    --ranks and --precision, each rank's memory and traffic;
#  - bad options are refused with a message.
# Run by tests/run with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"

tiny_prior_shard 200 0 "$T/train.dshard" > /dev/null 2>&1 || bad "shard pack"
C=(--config tiny --batch 8 --lr 3e-3 --warmup 20 --lr-end 3e-4 --seed 5)
train() { $DALLE -q --threads 1 train "${C[@]}" "$@" "$T/train.dshard"; }

# the loss curves
for p in fp32 bf16 fp16; do
    train --steps 300 --log-every 50 --precision $p -o "$T/$p.st" > "$T/$p.log" || bad "train $p: $(tail -2 "$T/$p.log")"
done
for p in bf16 fp16; do
    if paste "$T/fp32.log" "$T/$p.log" | awk -v n="$(wc -l < "$T/fp32.log")" '
        { a = $4; b = $14; d = a - b; if (d < 0) d = -d; if (d > 0.01 * a + 0.002) exit 1;
          if (d / a > w) w = d / a; k++ } END { if (k != 6 || n != 6) exit 1; printf "%.2g\n", w }' > "$T/w"; then
        ok "$p tracks fp32 over 300 steps (worst $(cat "$T/w") of the loss; $(tail -1 "$T/$p.log" | cut -d' ' -f3-4) vs $(tail -1 "$T/fp32.log" | cut -d' ' -f4))"
    else
        bad "$p vs fp32: $(paste "$T/fp32.log" "$T/$p.log")"
    fi
done

# activation checkpointing: the same bytes
for p in fp32 fp16; do
    train --steps 40 --precision $p -o "$T/a-$p.st" > /dev/null && train --steps 40 --precision $p --checkpoint-acts \
        -o "$T/c-$p.st" > /dev/null && cmp -s "$T/a-$p.st" "$T/c-$p.st" \
        && ok "$p: --checkpoint-acts gives the same checkpoint, byte for byte" || bad "$p: checkpointing differs"
done

# resume of a 16-bit run
for v in "fp16 resblock" "bf16 dynamic"; do
    set -- $v
    S=(--steps 40 --precision $1 --loss-scale $2 --loss-scale-window 7)
    train "${S[@]}" -o "$T/r1.st" > /dev/null && train "${S[@]}" --stop-after 17 -o "$T/r2.st" > /dev/null &&
        $DALLE -q --threads 1 train --steps 40 --resume "$T/r2.st" -o "$T/r2.st" "$T/train.dshard" > /dev/null &&
        cmp -s "$T/r1.st" "$T/r2.st" && ok "$1, $2 scaling: 17 + resume 23 == 40 steps, byte for byte" || bad "$1 resume differs"
done

# a forced overflow in resblock 3 (layer 1's MLP)
train --steps 12 --log-every 4 --precision fp16 --grad-scale-init 3=16777216 -o "$T/o.st" > "$T/o.log" || bad "overflow run"
skips=$(grep -c "skipped:" "$T/o.log")
first=$(grep -m1 "skipped:" "$T/o.log")
scales=$(grep -ao 'train.grad_scale":"[^]]*' "$T/o.st" | sed 's/.*\[//')
saved=$(grep -ao '"train.skipped":"[0-9]*"' "$T/o.st" | tr -dc '0-9')
if [[ "$first" == *"overflow in resblock 3 (layer 1 MLP, scale 2^24.00 -> 2^23.50)"* ]] && [ "$skips" -ge 1 ] &&
    [ "$skips" -lt 12 ] && [ "$saved" = "$skips" ] && ! grep "skipped:" "$T/o.log" | grep -v "in resblock 3 (" > /dev/null &&
    grep "skipped:" "$T/o.log" | tail -n +2 | awk '{ if ($(NF-4) != $(NF-6) ")") exit 1 }' &&
    echo "$scales" | awk -F', ' '{ g = 8192 * 2 ^ (12 / 1000); for (r = 1; r <= 8; r++) { d = $r / g - 1; if (d < 0) d = -d;
        if (r == 4 ? ($r < 2 ^ 23.5 || $r >= 2 ^ 24) : d > 1e-12) exit 1 } }'; then
    ok "forced overflow: $skips of 12 steps skipped, resblock 3 backed off once ($first)"
    ok "  other scales grew by 2^(1/1000) a step: $(echo "$scales" | cut -d, -f1), resblock 3: $(echo "$scales" | cut -d, -f4)"
else
    bad "forced overflow: skips $skips (saved $saved), scales $scales, log: $(cat "$T/o.log")"
fi

# data parallel
if command -v mpirun > /dev/null; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    M=(--steps 20 --precision fp16 --checkpoint-acts)
    train "${M[@]}" --micro-batch 4 -o "$T/m1.st" > /dev/null
    ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1 timeout 120 mpirun --oversubscribe -np 2 $DALLE -q train "${C[@]}" \
        "${M[@]}" -o "$T/m2.st" "$T/train.dshard" > /dev/null 2>&1
    cmp -s "$T/m1.st" "$T/m2.st" && ok "fp16 on 2 ranks (sharded) == 1 rank in 2 pieces, byte for byte" \
        || bad "fp16 on 2 ranks differs"
else
    echo "  skip: mpirun not found"
fi

# dalle info
out=$($DALLE info --config paper --ranks 1024 --precision fp16)
[[ "$out" == *"16-bit storage and checkpointing"*"per rank: 1024 ranks"*"Adam moments e6m9/ue6m10, the shard"*"48.02 MB"* &&
   "$out" == *"reduce-scatter + all-gather"*"with PowerSGD"* ]] && ok "info --ranks 1024 --precision fp16: per-rank memory and traffic" \
    || bad "info per rank: $out"
out=$($DALLE info --config tiny --batch 3)
[[ "$out" == *"training batch of 3"*"368.38 kB"*"checkpointing"*"175.23 kB"*"16-bit storage (bf16, fp16)"*"279.87 kB"* ]] \
    && ok "info: activations fp32, checkpointed, 16-bit (test_mixed checks them against the arenas)" || bad "info activations: $out"

# bad options
expect_fail "--precision fp8" "expected fp32, bf16 or fp16" "$T/x1.st" train --steps 1 --precision fp8 -o "$T/x1.st"
expect_fail "--loss-scale static" "expected resblock or dynamic" "$T/x2.st" train --steps 1 --loss-scale static -o "$T/x2.st"
expect_fail "--grad-scale-init 9=1" "resblocks r in [0, 8)" "$T/x3.st" \
    train --steps 1 --precision bf16 --grad-scale-init 9=1 -o "$T/x3.st"
expect_fail "info --precision fp12" "expected fp32, bf16 or fp16" "$T/none" $DALLE info --config tiny --precision fp12

[ $fails -eq 0 ]
