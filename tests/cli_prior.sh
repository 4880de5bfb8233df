#!/usr/bin/env bash
# cli_prior.sh: smoke tests of `dalle info` and `dalle masks`: help texts with
# defaults; the paper's 12.29 billion parameters; the row, column and conv
# masks of a 4x4 grid (paper Fig. 11) letter for letter; a PNG of the right
# size; a config JSON file round trip; bad input refused with a message, exit
# status 1 or 2 and no output file. Run by tests/run with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"
WANT_RC="1 2"
# same_text NAME WANT GOT
same_text() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got"$'\n'"$3"; fi
}

# help texts list the options with their defaults
$DALLE info --help | grep -q -- "--batch N.*(default 1)" && $DALLE info --help | grep -q -- "--candidates N.*(default 512)" \
    && ok "info --help shows defaults" || bad "info --help defaults"
$DALLE masks --help | grep -q -- "--format S.*(default txt)" && $DALLE masks --help | grep -q -- "--grid N.*clamped.*(default 0)" \
    && ok "masks --help shows defaults and the clamp" || bad "masks --help"
$DALLE --help | grep -q "info" && $DALLE --help | grep -q "masks" && ok "dalle --help lists info and masks" || bad "dalle --help"

# info
out=$($DALLE info --config paper)
[[ "$out" == *"parameters 12,293,828,224 (12.29 billion)"* ]] && ok "paper: 12.29 billion parameters" || bad "paper params: $out"
[[ "$out" == *"47 row, 16 column, 1 conv"* && "$out" == *"training step"*"GFLOP"* && "$out" == *"Adam moments 16-bit"*"GB"* \
   && "$out" == *"KV cache"*"512 candidates"* ]] && ok "paper: layers, FLOPs and memory tables" || bad "paper tables: $out"
out=$($DALLE info --config tiny --batch 3 --candidates 512)
[[ "$out" == *"parameters 15,632 "* && "$out" == *"training batch of 3"*"368.38 kB"* && "$out" == *"KV cache"*"2.10 MB"* ]] \
    && ok "tiny: params, activations of batch 3, KV cache" || bad "tiny: $out"
$DALLE info -c small >/dev/null && ok "info small" || bad "info small"

# masks of the paper's 4x4 example: row attends j in [i-4, i]
want_row='1000000000000000
1100000000000000
1110000000000000
1111000000000000
1111100000000000
0111110000000000
0011111000000000
0001111100000000
0000111110000000
0000011111000000
0000001111100000
0000000111110000
0000000011111000
0000000001111100
0000000000111110
0000000000011111'
same_text "row mask, grid 4 (16 lines)" "$want_row" "$($DALLE masks --config paper --grid 4 --layer-type row)"
# column: (i - j) mod 4 == 0
want_col='1000000000000000
0100000000000000
0010000000000000
0001000000000000
1000100000000000
0100010000000000
0010001000000000
0001000100000000
1000100010000000
0100010001000000
0010001000100000
0001000100010000
1000100010001000
0100010001000100
0010001000100010
0001000100010001'
same_text "column mask, grid 4" "$want_col" "$($DALLE masks --config paper --grid 4 --layer-type column)"
# conv, paper kernel 11 clamped to 7 (r = 3): offsets dr*4 + dc, 0 <= dr <= 3, |dc| <= 3 cover 0..15: all of the past
want_conv7=$(for i in $(seq 0 15); do printf '%*s' $((i + 1)) '' | tr ' ' 1; printf '%*s\n' $((15 - i)) '' | tr ' ' 0; done)
same_text "conv mask, grid 4, kernel clamped to 7" "$want_conv7" "$($DALLE -q masks --config paper --grid 4 --layer-type conv)"
msg=$($DALLE masks --config paper --grid 4 --layer-type conv 2>&1 >/dev/null)
[[ "$msg" == *"clamped to 7"* ]] && ok "conv clamp noted: $msg" || bad "conv clamp note: '$msg'"
# conv, kernel 3 (r = 1): offsets 0, 1 (this row) and 3, 4, 5 (the row above, wrapping)
want_conv3='1000000000000000
1100000000000000
0110000000000000
1011000000000000
1101100000000000
1110110000000000
0111011000000000
0011101100000000
0001110110000000
0000111011000000
0000011101100000
0000001110110000
0000000111011000
0000000011101100
0000000001110110
0000000000111011'
same_text "conv mask, tiny (grid 4, kernel 3)" "$want_conv3" "$($DALLE masks --config tiny --layer-type conv)"
same_text "--conv-kernel 3 on the paper config" "$want_conv3" \
    "$($DALLE masks --config paper --grid 4 --conv-kernel 3 --layer-type conv)"
$DALLE masks --config paper --layer-type row -o "$T/row32.txt" && [ "$(wc -l < "$T/row32.txt")" = 1024 ] \
    && [ "$(head -1 "$T/row32.txt" | tr -d '\n' | wc -c)" = 1024 ] \
    && [ "$(sed -n 1024p "$T/row32.txt" | tr -cd 1 | wc -c)" = 33 ] && ok "paper row mask to a file: 1024 x 1024, 33 keys" \
    || bad "paper row mask file"

# png: N x N cells of s pixels, s = ceil(512 / N): grid 4 -> 512 x 512, grid 32 -> 1024 x 1024
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216 + $2*65536 + $3*256 + $4 "x" $5*16777216 + $6*65536 + $7*256 + $8 }'; }
png_sig() { od -An -tx1 -N8 "$1" | tr -d ' \n'; }
$DALLE masks --config paper --grid 4 --layer-type column --format png -o "$T/col.png" \
    && [ "$(png_sig "$T/col.png")" = 89504e470d0a1a0a ] && [ "$(png_size "$T/col.png")" = 512x512 ] \
    && ok "png, grid 4: 512 x 512" || bad "png grid 4 ($(png_size "$T/col.png" 2>/dev/null))"
$DALLE masks --config paper --layer-type conv --format png -o "$T/conv.png" && [ "$(png_size "$T/conv.png")" = 1024x1024 ] \
    && ok "png, paper grid 32: 1024 x 1024" || bad "png grid 32"

# a config file round trip
printf '{"n_layer": 4, "n_head": 2, "d_head": 8, "text_len": 6, "text_vocab": 40,\n "grid": 4, "image_vocab": 24, "conv_kernel": 3, "mlp_mult": 4}\n' > "$T/tiny.json"
a=$($DALLE info --config tiny | tail -n +2); b=$($DALLE info --config "$T/tiny.json" | tail -n +2)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "info --config tiny.json equals the preset" || bad "json config: $b"
$DALLE info --config tiny | sed -n 2p | tr -d ' ' > "$T/back.json"
$DALLE info --config "$T/back.json" > /dev/null && ok "the printed JSON reads back" || bad "printed JSON"
same_text "masks from a JSON config" "$want_conv3" "$($DALLE masks --config "$T/tiny.json" --layer-type conv)"

# bad input
expect_fail "unknown preset" "'huge' is not a preset" "$T/o1.txt" $DALLE masks --config huge --layer-type row -o "$T/o1.txt"
printf '{"n_layer": 4, "n_head": 2,' > "$T/broken.json"
expect_fail "malformed JSON" "broken.json: prior config: not valid JSON" "$T/o2.txt" \
    $DALLE masks --config "$T/broken.json" --layer-type row -o "$T/o2.txt"
sed 's/"mlp_mult": 4//; s/, *}/}/' "$T/tiny.json" > "$T/missing.json"
expect_fail "missing field" "missing.json: prior config: field 'mlp_mult' missing" "$T/o3.txt" \
    $DALLE masks --config "$T/missing.json" --layer-type row -o "$T/o3.txt"
sed 's/"grid": 4/"grid": "4"/' "$T/tiny.json" > "$T/string.json"
expect_fail "string for an int" "string.json: prior config: field 'grid' is not an integer" "$T/o4.txt" \
    $DALLE masks --config "$T/string.json" --layer-type row -o "$T/o4.txt"
expect_fail "info, missing field" "field 'mlp_mult' missing" "$T/none" $DALLE info --config "$T/missing.json"
expect_fail "--layer-type bogus" "'bogus' is not row, column or conv" "$T/o5.txt" \
    $DALLE masks --config tiny --layer-type bogus -o "$T/o5.txt"
expect_fail "--format bogus" "'bmp' is not txt or png" "$T/o6.png" \
    $DALLE masks --config tiny --layer-type row --format bmp -o "$T/o6.png"
expect_fail "even --conv-kernel" "conv_kernel = 4" "$T/o7.txt" \
    $DALLE masks --config tiny --conv-kernel 4 --layer-type conv -o "$T/o7.txt"
expect_fail "grid too large for a png" "more than the 2048" "$T/o8.png" \
    $DALLE masks --config tiny --grid 64 --layer-type row --format png -o "$T/o8.png"
expect_fail "info --batch 0" "batch = 0" "$T/none" $DALLE info --config tiny --batch 0
expect_fail "info without --config" "needs --config" "$T/none" $DALLE info

[ $fails -eq 0 ]
