#!/usr/bin/env bash
# cli_generate.sh: `dalle generate` on a small model directory assembled here
# (a tokenizer and a 2-layer prior trained for a few steps on the shipped
# dVAE's codes of the test images): the grid's size, --each, --prompts, and
# bad input (empty, 10,000-character and invalid UTF-8 captions are defined
# behaviour; n = 0 or 10,000, a missing or inconsistent model directory and an
# unwritable output are errors with no output file); the guidance scale that
# config.json recommends; then the shipped default
# model (models/default) draws a shapes caption that shapes-check reads back.
# Run by tests/run.
. "$(dirname "$0")/lib_cli.sh"
WANT_RC="1 2"
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", $3 * 256 + $4, $7 * 256 + $8 }'; }

make_tiny_model "$T/model"

$DALLE generate --model "$T/model" -n 3 --seed 1 -o "$T/grid.png" "a small picture" "png rgb" 2> "$T/log.txt" \
    && ok "generate" || bad "generate: $(cat "$T/log.txt")"
[ "$(png_size "$T/grid.png")" = "196x130" ] && ok "grid: 2 captions x 3 images of 64x64, 2-pixel gaps" || bad "grid size $(png_size "$T/grid.png")"
printf 'first caption\nsecond one\n' > "$T/prompts.txt"
$DALLE generate --model "$T/model" -n 2 --prompts "$T/prompts.txt" --each "$T/each" 2> /dev/null \
    && [ -f "$T/each/1-1.png" ] && [ "$(png_size "$T/each/0-0.png")" = "64x64" ] && ok "--prompts and --each DIR/P-C.png" \
    || bad "--each"
$DALLE generate --model "$T/model" -n 2 --seed 5 -o "$T/a.png" "x" 2> /dev/null
$DALLE generate --model "$T/model" -n 2 --seed 5 -o "$T/b.png" "x" 2> /dev/null
cmp -s "$T/a.png" "$T/b.png" && ok "reproducible from the seed" || bad "seed"
$DALLE generate --model "$T/model" -n 1 -o "$T/e.png" "" 2> "$T/e.txt" && ok "an empty caption (all padding)" || bad "empty caption: $(cat "$T/e.txt")"
$DALLE generate --model "$T/model" -n 1 -o "$T/u.png" "$(printf 'bad \xff\xfe utf-8')" 2> /dev/null && ok "invalid UTF-8" || bad "invalid UTF-8"
long=$(head -c 10000 /dev/zero | tr '\0' 'a' | sed 's/a\{10\}/& /g')
$DALLE generate --model "$T/model" -n 1 -o "$T/l.png" "$long" 2> "$T/l.txt" && grep -q "reads the first 8" "$T/l.txt" \
    && ok "a 10,000-character caption is cut, with a note" || bad "long caption"

expect_fail "n = 0" "outside" "$T/o1.png" $DALLE generate --model "$T/model" -n 0 -o "$T/o1.png" "x"
expect_fail "n = 10000" "outside" "$T/o2.png" $DALLE generate --model "$T/model" -n 10000 -o "$T/o2.png" "x"
expect_fail "missing model directory" "config.json" "$T/o3.png" $DALLE generate --model "$T/nomodel" -o "$T/o3.png" "x"
mkdir -p "$T/bad" && cp "$T/model"/* "$T/bad/" && $DALLE -q bpe train --vocab 280 -o "$T/bad/tokenizer.json" "$T/tiny-model-work/text.txt"
expect_fail "a tokenizer of another vocabulary" "text vocabulary" "$T/o4.png" $DALLE generate --model "$T/bad" -o "$T/o4.png" "x"
expect_fail "an unwritable output" "cannot" "/nonexistent-dir/o5.png" \
    $DALLE generate --model "$T/model" -n 1 -o /nonexistent-dir/o5.png "x"
expect_fail "guidance -1" "outside" "$T/o6.png" $DALLE generate --model "$T/model" --guidance -1 -o "$T/o6.png" "x"

# classifier-free guidance: the model's config.json may recommend a scale, which --guidance overrides
# (this model's draws barely depend on the caption, so the log says which scale sampled)
mkdir -p "$T/guided" && cp "$T/model"/* "$T/guided/"
echo '{"format": "dalle.c model", "version": 1, "sampling": {"guidance": 2.5}}' > "$T/guided/config.json"
$DALLE -v generate --model "$T/guided" -n 1 -o "$T/gm.png" "x" 2>&1 | grep -q "guidance 2.5," \
    && $DALLE -v generate --model "$T/guided" -n 1 --guidance 1 -o "$T/g1.png" "x" 2>&1 | grep -q "guidance 1," \
    && $DALLE -v generate --model "$T/model" -n 1 -o "$T/g0.png" "x" 2>&1 | grep -q "guidance 1," \
    && ok "guidance: config.json's \"sampling\" is the default, --guidance overrides it, else 1" || bad "guidance default"
echo '{"format": "dalle.c model", "version": 1, "sampling": {"guidance": "lots"}}' > "$T/guided/config.json"
expect_fail "a bad \"sampling\" in config.json" "guidance" "$T/o7.png" $DALLE generate --model "$T/guided" -o "$T/o7.png" "x"

# The shipped model, drawn the product's way (the best 4 of 16 by its
# reranker): the checker must read back the colour, size and place of at
# least 3 of the 4 (the shapes of its objects are not reliable yet, see
# models/README.md, so the shape itself is not required).
root=$(cd "$(dirname "$0")/.." && pwd)
cap="a large blue square in the center"
if $DALLE -q generate --model "$root/models/default" -n 4 --candidates 16 --seed 1 --each "$T/shipped" -o "$T/shipped.png" "$cap" 2> /dev/null; then
    for c in 0 1 2 3; do printf '0-%d.png\t%s\n' $c "$cap"; done > "$T/shipped/captions.tsv"
    $DALLE data shapes-check --dir "$T/shipped" > "$T/shipped.txt" \
        && awk '/^ *(colour|size|position)/ { sub(/%/, "", $(NF-1)); if ($(NF-1) + 0 < 75) bad = 1 } END { exit bad }' "$T/shipped.txt" \
        && ok "models/default: '$cap': colour, size and place read back" \
        || bad "models/default: $(tr -s ' ' < "$T/shipped.txt" | tr '\n' ' ')"
else
    bad "models/default: generate failed"
fi

[ $fails -eq 0 ]
