#!/usr/bin/env bash
# cli_shard.sh: smoke tests of `dalle shard ...`: help texts; captions through
# `dalle bpe encode --layout` and images through `dalle dvae encode` (tiny
# preset) packed into a shard, then info and dump giving the ids back; the
# one-line-per-record code format giving the same bytes; 4-byte ids; bad
# input (a line with the wrong count, an id out of range, a missing file,
# record counts that differ, a damaged shard) refused with exit status 1, a
# message naming the file and line, and no output file. Run by tests/run
# with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"
IMG=tests/data/img

$DALLE shard --help | grep -q "pack" && ok "dalle shard --help" || bad "dalle shard --help"
for sub in pack info dump; do
    $DALLE shard $sub --help | grep -q "usage: dalle shard $sub" && ok "dalle shard $sub --help" \
        || bad "dalle shard $sub --help"
done

# text ids: a tiny tokenizer (V 270), captions in an 8-position layout
printf 'a red circle\na blue square\n\n' > "$T/caps.txt"
for i in $(seq 1 30); do cat "$T/caps.txt"; done > "$T/corpus.txt"
$DALLE -q bpe train --vocab 270 -o "$T/tok.json" "$T/corpus.txt" || bad "bpe train"
$DALLE bpe encode -t "$T/tok.json" --layout 8 "$T/caps.txt" > "$T/ids.txt" || bad "bpe encode"
# image codes: an untrained tiny dVAE (16x16 images -> 4x4 grids of 32 codes)
$DALLE -q dvae init --preset tiny -o "$T/dvae.st" || bad "dvae init"
$DALLE -q dvae encode --model "$T/dvae.st" $IMG/png_rgb.png $IMG/jpg_baseline.jpg $IMG/png_gray.png \
    -o "$T/codes.txt" 2>/dev/null || bad "dvae encode"

pack=(--text-len 8 --grid 4 --text-vocab 270 --image-vocab 32)
$DALLE -q shard pack "${pack[@]}" --text "$T/ids.txt" --image "$T/codes.txt" -o "$T/a.dshard" \
    && ok "pack bpe + dvae output" || bad "pack"
[ "$(stat -c %s "$T/a.dshard")" = $((64 + 3 * (8 + 16) * 2)) ] && ok "size 64 + 3 * 24 * 2" || bad "size"
$DALLE shard info "$T/a.dshard" > "$T/info.txt"
grep -q "records      3" "$T/info.txt" && grep -q "grid         4 (n_image 16)" "$T/info.txt" \
    && grep -q "id_bytes     2" "$T/info.txt" && ok "info" || bad "info: $(cat "$T/info.txt")"

# dump: a line of text ids, a line of codes (the grid flattened in raster order)
$DALLE shard dump "$T/a.dshard" > "$T/dump.txt"
awk 'NR % 2 == 1' "$T/dump.txt" | cmp -s - "$T/ids.txt" && ok "dump: the text ids back" || bad "dump text"
awk 'BEGIN { RS = ""; } { $1 = $1; print }' "$T/codes.txt" > "$T/flat.txt" # one line per grid
awk 'NR % 2 == 0' "$T/dump.txt" | cmp -s - "$T/flat.txt" && ok "dump: the codes back" || bad "dump codes"
$DALLE shard dump "$T/a.dshard" --record 1 | cmp -s - <(sed -n 3,4p "$T/dump.txt") && ok "dump --record 1" \
    || bad "dump --record"

# the same codes, one line per record: the same shard
$DALLE -q shard pack "${pack[@]}" --text "$T/ids.txt" --image "$T/flat.txt" -o "$T/b.dshard"
cmp -s "$T/a.dshard" "$T/b.dshard" && ok "one line of N codes per record: same bytes" || bad "flat codes"

# a codebook past 16 bits: 4-byte ids, same records
$DALLE -q shard pack --text-len 8 --grid 4 --text-vocab 270 --image-vocab 70000 --text "$T/ids.txt" \
    --image "$T/codes.txt" -o "$T/c.dshard"
$DALLE shard info "$T/c.dshard" | grep -q "id_bytes     4" && $DALLE shard dump "$T/c.dshard" | cmp -s - "$T/dump.txt" \
    && ok "4-byte ids" || bad "4-byte ids"

# bad input
sed '2s/ [0-9]*$//' "$T/ids.txt" > "$T/short.txt"
expect_fail "text line with 7 ids" "short.txt: line 2: 7 ids, expected 8" "$T/o1" \
    $DALLE shard pack "${pack[@]}" --text "$T/short.txt" --image "$T/codes.txt" -o "$T/o1"
sed '3s/^[0-9]*/278/' "$T/ids.txt" > "$T/big.txt"
expect_fail "text id out of range" "big.txt: line 3: \"278\" (position 0) is not a text id in [0, 278)" "$T/o2" \
    $DALLE shard pack "${pack[@]}" --text "$T/big.txt" --image "$T/codes.txt" -o "$T/o2"
sed '7s/$/ 1/' "$T/codes.txt" > "$T/wide.txt"
expect_fail "grid row with 5 codes" "wide.txt: line 7: 5 codes, expected 16 (a record) or 4" "$T/o3" \
    $DALLE shard pack "${pack[@]}" --text "$T/ids.txt" --image "$T/wide.txt" -o "$T/o3"
sed '12s/^[0-9]*/32/' "$T/codes.txt" > "$T/code32.txt"
expect_fail "code out of range" "code32.txt: line 12: \"32\" (position 0) is not an image code in [0, 32)" "$T/o4" \
    $DALLE shard pack "${pack[@]}" --text "$T/ids.txt" --image "$T/code32.txt" -o "$T/o4"
sed '3d' "$T/codes.txt" > "$T/rows.txt"
expect_fail "grid of 3 rows" "rows.txt: line 4: blank line inside the grid of record 0 (after 3 of 4 rows)" "$T/o5" \
    $DALLE shard pack "${pack[@]}" --text "$T/ids.txt" --image "$T/rows.txt" -o "$T/o5"
expect_fail "missing text file" "$T/none.txt: cannot open" "$T/o6" \
    $DALLE shard pack "${pack[@]}" --text "$T/none.txt" --image "$T/codes.txt" -o "$T/o6"
expect_fail "missing code file" "$T/none.txt: cannot open" "$T/o7" \
    $DALLE shard pack "${pack[@]}" --text "$T/ids.txt" --image "$T/none.txt" -o "$T/o7"
head -2 "$T/ids.txt" > "$T/two.txt"
expect_fail "record counts differ" "two.txt has 2 records but $T/codes.txt has 3" "$T/o8" \
    $DALLE shard pack "${pack[@]}" --text "$T/two.txt" --image "$T/codes.txt" -o "$T/o8"
expect_fail "vocabulary too small for the ids" "is not a text id in [0, 18)" "$T/o9" \
    $DALLE shard pack --text-len 8 --grid 4 --text-vocab 10 --image-vocab 32 --text "$T/ids.txt" \
    --image "$T/codes.txt" -o "$T/o9"
head -c 100 "$T/a.dshard" > "$T/cut.dshard"
expect_fail "info on a truncated shard" "cut.dshard: truncated: the file has 100 bytes, 108 fewer than the 208" \
    "$T/o10" $DALLE shard info "$T/cut.dshard"
expect_fail "dump of a text file" "ids.txt: header: magic is not" "$T/o11" $DALLE shard dump "$T/ids.txt"
expect_fail "dump --record past the end" "--record 3 is not a record" "$T/o12" \
    $DALLE shard dump "$T/a.dshard" --record 3
$DALLE shard pack --grid 4 --text "$T/ids.txt" --image "$T/codes.txt" -o "$T/o13" 2>/dev/null
[ $? = 2 ] && [ ! -e "$T/o13" ] && ok "pack without sizes: usage error" || bad "pack without sizes"

[ $fails -eq 0 ]
