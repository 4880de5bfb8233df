#!/usr/bin/env bash
# cli_train.sh: the prior end to end on the `tiny` preset. A synthetic
# dataset where the image is a function of the caption (tiny_prior_shard in
# lib_cli.sh) is packed into shards; `dalle train` must learn it (the held-out loss falls far
# below chance) and `dalle sample` with top-k 1 must then draw exactly the
# image of a caption; train 2 x 40 steps with --resume gives the checkpoint of
# 80 straight steps byte for byte; so does a run with caption dropout, whose
# model --guidance samples; bad input is refused with a clear message.
# Run by tests/run with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"

tiny_prior_shard 200 0 "$T/train.dshard" && tiny_prior_shard 40 1000 "$T/val.dshard" && ok "shard pack" || bad "shard pack"

common=(--config tiny --batch 8 --lr 3e-3 --warmup 20 --lr-end 3e-4 --seed 5 --log-every 40 --eval-every 40 --val "$T/val.dshard")
$DALLE -q train "${common[@]}" --steps 300 -o "$T/ck.safetensors" "$T/train.dshard" > "$T/log.txt" 2>&1 \
    && ok "train 300 steps" || { bad "train: $(tail -3 "$T/log.txt")"; }
first=$(grep "held-out" "$T/log.txt" | head -1 | awk '{print $5}')
last=$(grep "held-out" "$T/log.txt" | tail -1 | awk '{print $5}')
echo "    held-out loss: $first at step 40 -> $last at step 300 (chance: ln 24 = 3.18 per image code)"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.3 && b < a) }' && ok "held-out loss falls below 0.3" || bad "held-out loss $first -> $last"

# greedy sampling draws the image the caption asks for
$DALLE -q sample --model "$T/ck.safetensors" --ids "7 11" -n 2 --top-k 1 --seed 3 -o "$T/codes.txt" \
    && ok "sample" || bad "sample"
want=$(awk 'BEGIN { for (j = 0; j < 16; j++) printf "%d ", (21 + j) % 24; print "" }')
got=$(head -4 "$T/codes.txt" | tr '\n' ' ' | tr -s ' ')
[ "$got" = "$want" ] && ok "caption 7 -> its image: $got" || bad "sampled '$got', wanted '$want'"
$DALLE -q sample --model "$T/ck.safetensors" --ids "2 12" -n 1 --seed 4 --temperature 0.7 --top-p 0.9 > "$T/c2.txt" \
    && [ "$(wc -l < "$T/c2.txt")" = 4 ] && ok "sample with temperature and top-p" || bad "sample top-p"

# export: a model file of the EMA weights (a quarter of the checkpoint), which samples the same
$DALLE -q export --model "$T/ck.safetensors" -o "$T/prior.safetensors" && \
    $DALLE -q sample --model "$T/prior.safetensors" --ids "7 11" -n 2 --top-k 1 --seed 3 -o "$T/codes2.txt" && \
    cmp -s "$T/codes.txt" "$T/codes2.txt" && ok "export: the model file samples as the checkpoint" || bad "export"
$DALLE -q export --model "$T/ck.safetensors" --dtype bf16 -o "$T/prior16.safetensors" && ok "export --dtype bf16" || bad "export bf16"

# --resume reproduces the uninterrupted run exactly
$DALLE -q train "${common[@]}" --steps 80 -o "$T/a.safetensors" "$T/train.dshard" > /dev/null 2>&1
$DALLE -q train "${common[@]}" --steps 80 --stop-after 40 -o "$T/b.safetensors" "$T/train.dshard" > /dev/null 2>&1
$DALLE -q train --steps 80 --resume "$T/b.safetensors" -o "$T/b.safetensors" "$T/train.dshard" > /dev/null 2>&1
cmp -s "$T/a.safetensors" "$T/b.safetensors" && ok "40 + resume 40 == 80 steps, byte for byte" || bad "resume differs"

# caption dropout (for classifier-free guidance): still learns the captions, resumes exactly,
# and guided greedy sampling draws the caption's image
$DALLE train "${common[@]}" --caption-dropout 0.2 --steps 300 -o "$T/cd.safetensors" "$T/train.dshard" \
    > "$T/cd.txt" 2>&1 && grep -q "caption dropout: 0.2" "$T/cd.txt" && ok "train --caption-dropout 0.2" || bad "caption dropout"
$DALLE -q sample --model "$T/cd.safetensors" --ids "7 11" -n 2 --top-k 1 --seed 3 --guidance 3 -o "$T/cdg.txt" \
    && [ "$(head -4 "$T/cdg.txt" | tr '\n' ' ' | tr -s ' ')" = "$want" ] && ok "sample --guidance 3: caption 7 -> its image" \
    || bad "guided sample: $(head -4 "$T/cdg.txt" | tr '\n' ' ')"
$DALLE -q train "${common[@]}" --caption-dropout 0.2 --steps 80 --stop-after 40 -o "$T/c.safetensors" "$T/train.dshard" > /dev/null 2>&1
$DALLE -q train --steps 80 --resume "$T/c.safetensors" -o "$T/c.safetensors" "$T/train.dshard" > /dev/null 2>&1
$DALLE -q train "${common[@]}" --caption-dropout 0.2 --steps 80 -o "$T/d.safetensors" "$T/train.dshard" > /dev/null 2>&1
cmp -s "$T/c.safetensors" "$T/d.safetensors" && ! cmp -s "$T/a.safetensors" "$T/d.safetensors" \
    && ok "caption dropout: 40 + resume 40 == 80 steps (and differs from no dropout)" || bad "caption dropout resume"
expect_fail "caption dropout of 1" "outside [0, 1)" "$T/o8.safetensors" \
    $DALLE train --config tiny --caption-dropout 1 --steps 1 -o "$T/o8.safetensors" "$T/train.dshard"

# bad input
expect_fail "shard of another config" "made for another model" "$T/o1.safetensors" \
    $DALLE train --config small --steps 1 -o "$T/o1.safetensors" "$T/train.dshard"
head -c 100 "$T/train.dshard" > "$T/trunc.dshard"
expect_fail "truncated shard" "trunc.dshard" "$T/o2.safetensors" \
    $DALLE train --config tiny --steps 1 -o "$T/o2.safetensors" "$T/trunc.dshard"
expect_fail "resume on other shards" "records" "$T/o3.safetensors" \
    $DALLE train --steps 90 --resume "$T/a.safetensors" -o "$T/o3.safetensors" "$T/val.dshard"
expect_fail "text id out of range" "not a text id" "$T/o4.txt" \
    $DALLE sample --model "$T/ck.safetensors" --ids "7 999" -o "$T/o4.txt"
expect_fail "not a model file" "train.dshard: header" "$T/o5.txt" \
    $DALLE sample --model "$T/train.dshard" --ids "7" -o "$T/o5.txt"
expect_fail "a dVAE is not a prior" "not a prior model" "$T/o7.txt" \
    $DALLE sample --model models/dvae-icons.safetensors --ids "7" -o "$T/o7.txt"
$DALLE sample --model "$T/ck.safetensors" --ids "1 2 3 4 5 6 7 8" -n 1 -o "$T/o6.txt" 2> "$T/note.txt" \
    && grep -q "first 6 are used" "$T/note.txt" && ok "a caption longer than L is truncated, with a note" || bad "truncation note"

[ $fails -eq 0 ]
