#!/usr/bin/env bash
# cli_bpe.sh: smoke tests of `dalle bpe ...`: help texts; train -> encode ->
# decode giving the normalised text back; the DALL-E layout; CLIP's vocabulary
# with and without special tokens; dropout reproducible from its seed; a
# 16 MB line without spaces; bad input refused with a clear message, exit
# status 1 and no output file. Run by tests/run with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"
CLIP=ext/bpe_simple_vocab_16e6.txt.gz

$DALLE bpe --help | grep -q "encode" && ok "dalle bpe --help" || bad "dalle bpe --help"
for sub in train encode decode info; do
    $DALLE bpe $sub --help | grep -q "options:" && ok "dalle bpe $sub --help" || bad "dalle bpe $sub --help"
done
$DALLE bpe train --help | grep -q -- "--vocab N.*(default 16384)" && ok "train --help shows defaults" || bad "train --help defaults"

# train on a small corpus, then round trip
printf 'A small RED circle in the top left\nA big blue square, bottom right.\n  two   green   triangles  \n' > "$T/c.txt"
for i in $(seq 1 40); do cat "$T/c.txt"; done > "$T/corpus.txt"
$DALLE -q bpe train --vocab 300 -o "$T/tok.json" "$T/corpus.txt" && ok "bpe train" || bad "bpe train"
$DALLE bpe info -t "$T/tok.json" | grep -q "vocab      300" && ok "bpe info" || bad "bpe info"
$DALLE bpe encode -t "$T/tok.json" < "$T/c.txt" > "$T/ids.txt" && [ "$(wc -l < "$T/ids.txt")" = 3 ] \
    && ok "encode: one line of ids per line" || bad "encode lines"
$DALLE bpe decode -t "$T/tok.json" "$T/ids.txt" > "$T/back.txt"
printf 'a small red circle in the top left\na big blue square, bottom right.\ntwo green triangles\n' > "$T/want.txt"
cmp -s "$T/back.txt" "$T/want.txt" && ok "decode(encode(x)) is the normalised x" || bad "round trip: $(cat "$T/back.txt")"

# layout: exactly L ids, the padding V+i, and decode drops it
$DALLE bpe encode -t "$T/tok.json" --layout 256 < "$T/c.txt" > "$T/lay.txt"
awk '{ if (NF != 256) exit 1; if ($256 != 300 + 255) exit 1 }' "$T/lay.txt" && ok "layout: 256 ids, padding V+i" || bad "layout"
$DALLE bpe decode -t "$T/tok.json" "$T/lay.txt" | cmp -s - "$T/want.txt" && ok "decode drops padding" || bad "decode padding"

# dropout: the same seed, the same split; a different seed, another one
$DALLE bpe encode -t "$T/tok.json" --dropout 0.5 --seed 1 "$T/corpus.txt" > "$T/d1.txt"
$DALLE bpe encode -t "$T/tok.json" --dropout 0.5 --seed 1 "$T/corpus.txt" > "$T/d2.txt"
$DALLE bpe encode -t "$T/tok.json" --dropout 0.5 --seed 2 "$T/corpus.txt" > "$T/d3.txt"
cmp -s "$T/d1.txt" "$T/d2.txt" && ! cmp -s "$T/d1.txt" "$T/d3.txt" && ok "dropout reproducible from its seed" || bad "dropout seed"
$DALLE bpe decode -t "$T/tok.json" "$T/d3.txt" | head -3 | cmp -s - "$T/want.txt" && ok "dropout decodes exactly" || bad "dropout decode"

# CLIP's vocabulary: CLIP's ids, with --special its start and end tokens
if [ -f "$CLIP" ]; then
    echo "A photo of a CAT" | $DALLE bpe encode -t "$CLIP" | grep -qx "320 1125 539 320 2368" && ok "clip ids" || bad "clip ids"
    echo "A photo of a CAT" | $DALLE bpe encode -t "$CLIP" --special | grep -qx "49406 320 1125 539 320 2368 49407" \
        && ok "clip --special" || bad "clip --special"
else
    bad "$CLIP missing: run scripts/setup"
fi

# a 16 MB line without spaces
head -c 16000000 /dev/zero | tr '\0' 'a' > "$T/long.txt"
$DALLE bpe encode -t "$T/tok.json" "$T/long.txt" > "$T/long.ids" && $DALLE bpe decode -t "$T/tok.json" "$T/long.ids" \
    | cmp -s - <(cat "$T/long.txt"; echo) && ok "16 MB line without spaces" || bad "long line"

# bad input
printf '{"model": {"type": "BPE", "vocab": {"a": "x"}}}' > "$T/bad.json"
expect_fail "hostile tokenizer.json" "$T/bad.json" "$T/o1" $DALLE bpe encode -t "$T/bad.json" -o "$T/o1" "$T/c.txt"
expect_fail "missing tokenizer" "cannot open" "$T/o2" $DALLE bpe encode -t "$T/none.json" -o "$T/o2" "$T/c.txt"
printf '1 2 x\n' > "$T/badids.txt"
expect_fail "bad id text" "line 1" "$T/o3" $DALLE bpe decode -t "$T/tok.json" -o "$T/o3" "$T/badids.txt"
printf '99999\n' > "$T/badids.txt"
expect_fail "id out of range" "not an id" "$T/o4" $DALLE bpe decode -t "$T/tok.json" -o "$T/o4" "$T/badids.txt"
expect_fail "missing corpus" "cannot open" "$T/o5.json" $DALLE bpe train --vocab 300 -o "$T/o5.json" "$T/none.txt"
expect_fail "vocab too small" "outside" "$T/o6.json" $DALLE bpe train --vocab 100 -o "$T/o6.json" "$T/c.txt"

[ $fails -eq 0 ]
