#!/usr/bin/env bash
# cli_clip.sh: the contrastive reranker from the command line. `dalle clip
# train` on a tiny shard where each caption has its own image (the loss falls,
# the held-out accuracy rises), `dalle clip score` (a caption scores its own
# image highest), bad input; then reranking in `dalle generate` on a small
# model directory with a reranker trained on its shard: the kept images are
# the candidates that `dalle clip score` ranks first (the same draws made by
# `dalle sample`, decoded by `dalle dvae decode`), best first; without
# clip.safetensors, or with one of another model, a clear error; the
# "candidates" field of `dalle serve`'s API. Run by tests/run.
. "$(dirname "$0")/lib_cli.sh"
WANT_RC="1 2"

tiny_prior_shard 200 0 "$T/train.dshard" > /dev/null 2>&1
tiny_prior_shard 40 1000 "$T/val.dshard" > /dev/null 2>&1
TINY="--layers 1 --heads 2 --head-dim 8 --embed 16 --mlp-mult 2"
$DALLE -q clip train $TINY --batch 10 --steps 60 --warmup 5 --lr 3e-3 --log-every 10 --eval-every 60 \
    --val "$T/val.dshard" -o "$T/clip.safetensors" "$T/train.dshard" > "$T/log.txt" 2>&1 \
    && [ -f "$T/clip.safetensors" ] && ok "clip train" || bad "clip train: $(cat "$T/log.txt")"
first=$(awk '$3 == "loss" { print $4; exit }' "$T/log.txt")
last=$(awk '$3 == "loss" { l = $4 } END { print l }' "$T/log.txt")
vacc=$(awk '/held-out/ { a = $7 } END { print a }' "$T/log.txt")
echo "    train loss $first at step 10 -> $last at step 60 (batch 10: chance ln 10 = 2.30); held-out accuracy $vacc"
awk -v a="$first" -v b="$last" -v v="$vacc" 'BEGIN { exit !(b < 0.8 * a && v >= 0.4) }' \
    && ok "the loss falls, held-out accuracy >= 0.4 (chance about 0.1)" || bad "loss $first -> $last, held-out accuracy $vacc"

# Images 0..7 of the shard's rule (a caption 'a 10+a%3' goes with codes (3a + j) mod 24).
awk 'BEGIN { for (a = 0; a < 8; a++) { if (a) print ""; for (j = 0; j < 16; j++)
    printf "%d%s", (3 * a + j) % 24, j % 4 == 3 ? "\n" : " " } }' > "$T/all.codes"
$DALLE clip score --model "$T/clip.safetensors" --ids "3 10" "$T/all.codes" > "$T/score.txt" 2>&1
best=$(sort -k2,2gr "$T/score.txt" | head -1 | cut -d' ' -f1)
[ "$(wc -l < "$T/score.txt")" = 8 ] && [ "$best" = 3 ] && ok "clip score: caption 3 scores image 3 highest" \
    || bad "clip score: $(tr '\n' ' ' < "$T/score.txt")"

expect_fail "a missing shard" "no-such.dshard" "$T/o1.safetensors" \
    $DALLE clip train -o "$T/o1.safetensors" "$T/no-such.dshard"
WANT_RC=2 expect_fail "an unknown option" "--bogus" "$T/o2.safetensors" \
    $DALLE clip train --bogus 1 -o "$T/o2.safetensors" "$T/train.dshard"
expect_fail "a batch of 1" "batch of at least 2" "$T/o3.safetensors" \
    $DALLE clip train --batch 1 -o "$T/o3.safetensors" "$T/train.dshard"
expect_fail "score: a text id out of range" "not a text id" "$T/none" \
    $DALLE clip score --model "$T/clip.safetensors" --ids "3 99" "$T/all.codes"
printf '1 2 3\n' > "$T/short.codes"
expect_fail "score: a grid of another size" "expected 4" "$T/none" \
    $DALLE clip score --model "$T/clip.safetensors" --ids "3" "$T/short.codes"

# Reranking in generate: a reranker for the small model directory's prior.
make_tiny_model "$T/model"
$DALLE -q clip train $TINY --batch 6 --steps 20 --warmup 2 --lr 3e-3 -o "$T/model/clip.safetensors" \
    "$T/tiny-model-work/s.dshard" > /dev/null 2>&1 && ok "clip train on the model's shard" || bad "clip train (model)"
S="$T/tiny-model-work/s.dshard"
# Hard negatives: --swap words of the model's tokenizer. Its captions are "a small picture of
# png_rgb", ... jpg_gray: only png_gray and jpg_gray become another caption of the data by a swap.
$DALLE clip train $TINY --batch 6 --steps 10 --warmup 2 --log-every 5 -t "$T/model/tokenizer.json" \
    --swap "png,jpg" -o "$T/neg.safetensors" "$S" > "$T/neg.txt" 2>&1
grep -q "hard negatives from 2 swappable words" "$T/neg.txt" && grep -q "hard negatives 2.0" "$T/neg.txt" \
    && ok "clip train --swap png,jpg: hard negatives for the 2 of 6 captions whose swap is a caption of the data" \
    || bad "--swap: $(cat "$T/neg.txt")"
$DALLE clip train $TINY --batch 6 --steps 10 --warmup 2 --log-every 5 -t "$T/model/tokenizer.json" \
    --drop-words "small,png" --drop-p 1 -o "$T/drop.safetensors" "$S" > "$T/drop.txt" 2>&1
grep -q "words dropped 6.0" "$T/drop.txt" \
    && ok "clip train --drop-words small,png --drop-p 1: every caption loses a word" \
    || bad "--drop-words: $(cat "$T/drop.txt")"
expect_fail "--drop-p without drop words" "word dropout needs" "$T/o9.safetensors" \
    $DALLE clip train --drop-p 0.5 -o "$T/o9.safetensors" "$S"
WANT_RC=2 expect_fail "--drop-words without --drop-p" "needs --drop-p" "$T/o10.safetensors" \
    $DALLE clip train -t "$T/model/tokenizer.json" --drop-words "small" -o "$T/o10.safetensors" "$S"
WANT_RC=2 expect_fail "--swap without a tokenizer" "need --tokenizer" "$T/o5.safetensors" \
    $DALLE clip train --swap "small,picture" -o "$T/o5.safetensors" "$T/tiny-model-work/s.dshard"
expect_fail "--swap: a word of two tokens" "'zebra' is not one token" "$T/o6.safetensors" \
    $DALLE clip train -t "$T/model/tokenizer.json" --swap "small,zebra" -o "$T/o6.safetensors" "$S"
expect_fail "--swap: a word alone in its group" "'small' is alone in its group" "$T/o7.safetensors" \
    $DALLE clip train -t "$T/model/tokenizer.json" --swap "small picture" -o "$T/o7.safetensors" "$S"
expect_fail "--swap: a word twice" "'small' appears twice" "$T/o8.safetensors" \
    $DALLE clip train -t "$T/model/tokenizer.json" --swap "small,picture,small" -o "$T/o8.safetensors" "$S"

cap="a small picture"
$DALLE -v generate --model "$T/model" -n 2 --candidates 5 --seed 3 --each "$T/each" "$cap" 2> "$T/gen.txt" \
    && ok "generate -n 2 --candidates 5: $(grep -o 'rerank: .*' "$T/gen.txt")" || bad "generate: $(cat "$T/gen.txt")"
kept=$(grep -o 'rerank: kept.*' "$T/gen.txt" | grep -o ' [0-9]* (' | tr -d ' (' | tr '\n' ' ')
$DALLE sample --model "$T/model/prior.safetensors" -t "$T/model/tokenizer.json" -c "$cap" -n 5 --seed 3 \
    -o "$T/cand.codes" 2> /dev/null
$DALLE clip score --model "$T/model/clip.safetensors" -t "$T/model/tokenizer.json" -c "$cap" "$T/cand.codes" \
    > "$T/cand.txt"
want=$(sort -s -k2,2gr "$T/cand.txt" | head -2 | cut -d' ' -f1 | tr '\n' ' ')
[ -n "$kept" ] && [ "$kept" = "$want" ] && ok "the kept candidates are clip score's best two, best first ($want)" \
    || bad "kept '$kept', clip score's best '$want': $(tr '\n' ' ' < "$T/cand.txt")"
awk -v RS= -v w="$want" 'BEGIN { split(w, k, " ") } NR - 1 == k[1] || NR - 1 == k[2] { g[NR - 1] = $0 "\n" }
    END { printf "%s\n%s", g[k[1]], g[k[2]] }' "$T/cand.codes" > "$T/kept.codes"
$DALLE -q dvae decode --model "$T/model/dvae.safetensors" -o "$T/kept.png" "$T/kept.codes" \
    && cmp -s "$T/kept-1.png" "$T/each/0-0.png" && cmp -s "$T/kept-2.png" "$T/each/0-1.png" \
    && ok "--each 0-0.png, 0-1.png are those two candidates decoded, in rank order" || bad "the kept images"
$DALLE generate --model "$T/model" -n 2 --candidates 2 --seed 3 -o "$T/same.png" "$cap" 2> /dev/null \
    && ok "--candidates <= n: no reranking" || bad "--candidates 2 -n 2"

mkdir -p "$T/norr" && cp "$T/model"/{config.json,tokenizer.json,dvae.safetensors,prior.safetensors} "$T/norr/"
expect_fail "--candidates > n without clip.safetensors" "no reranker" "$T/o4.png" \
    $DALLE generate --model "$T/norr" -n 2 --candidates 4 -o "$T/o4.png" "$cap"
# dalle serve: the API's "candidates" (bounded like n; > n needs the reranker), /health's "reranker"
post() { # MODEL_DIR BODY...: the status of each request, space-separated
    local dir=$1 port=$((20000 + ($$ + RANDOM) % 20000)) pid code
    shift
    $DALLE serve --model "$dir" --port $port --web web 2> /dev/null & pid=$!
    for i in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
    echo -n "$(curl -s "http://127.0.0.1:$port/health" | grep -o '"reranker":[a-z]*') "
    for b in "$@"; do
        code=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$b" \
            "http://127.0.0.1:$port/v1/images/generations")
        echo -n "$code:$(grep -o '"b64_json"' "$T/body" | wc -l)$(grep -o "'candidates'[^\"]*" "$T/body" | head -1) "
    done
    kill $pid; wait $pid 2> /dev/null
}
got=$(post "$T/model" '{"prompt": "x", "n": 1, "candidates": 3}' '{"prompt": "x", "candidates": 1.5}' \
    '{"prompt": "x", "candidates": 17}')
[[ "$got" == '"reranker":true '"200:1 400:0'candidates' must be an integer in [0, 16] 400:0'candidates' must be"* ]] \
    && ok "serve: /health says reranker true; candidates 3 -> 1 image; 1.5 and 17 (over --max-n) -> 400" || bad "serve: $got"
got=$(post "$T/norr" '{"prompt": "x", "n": 1, "candidates": 2}' '{"prompt": "x", "n": 2, "candidates": 2}')
[[ "$got" == '"reranker":false '"400:0'candidates' > 'n' needs a reranker"*"200:2 " ]] \
    && ok "serve without a reranker: /health false; candidates > n -> 400, <= n -> 200" || bad "serve (no reranker): $got"

cp "$T/clip.safetensors" "$T/norr/clip.safetensors"
expect_fail "a reranker of another model" "clip.safetensors: the reranker reads 6 text ids" "$T/o5.png" \
    $DALLE generate --model "$T/norr" -n 2 -o "$T/o5.png" "$cap"

[ $fails -eq 0 ]
