#!/usr/bin/env bash
# cli_data.sh: the data pipeline from the CLI: `dalle data build` on a folder
# with good images, a truncated one, an empty file, a decompression bomb,
# duplicates, rows naming missing files, captions in French, bare dates and
# bad UTF-8 (skipped and counted); a malformed caption file (an error, no
# output); `data info`; `data tokenize` into shards that `dalle train` then
# trains on; `dalle dvae train` on the dataset file. Run by tests/run.
. "$(dirname "$0")/lib_cli.sh"

mkdir -p "$T/img"
for f in png_rgb png_rgba png_gray png_pal4 png_rgb16 png_tall png_rgba_interlaced; do cp "tests/data/img/$f.png" "$T/img/"; done
for f in jpg_baseline jpg_progressive jpg_exif6 jpg_gray jpg_cmyk; do cp "tests/data/img/$f.jpg" "$T/img/"; done
cp tests/data/img/png_rgb.png "$T/img/copy_of_rgb.png"       # an exact duplicate
head -c 300 tests/data/img/png_rgb.png > "$T/img/truncated.png"
: > "$T/img/empty.png"
# a PNG header claiming 100000 x 100000 pixels
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00\x00\x00\x00\x00' > "$T/img/bomb.png"
{
    for f in "$T"/img/*; do b=$(basename "$f"); printf '%s\ta small picture of %s\n%s\tphotographed on 2012-05-03\n' "$b" "${b%.*}" "$b"; done
    printf 'png_rgb.png\tune photo d un chat sur la table\n'
    printf 'png_gray.png\tbad \xff\xfe utf-8 in a caption here\n'
    printf 'nowhere.png\ta picture of nothing at all\n'
} > "$T/caps.tsv"
$DALLE data build --images "$T/img" --captions "$T/caps.tsv" --size 32 --min-side 0 -o "$T/d.dset" > "$T/report.txt" 2>&1 \
    && ok "data build" || bad "data build: $(cat "$T/report.txt")"
sed 's/^/    /' "$T/report.txt" | grep -v "data build step"
grep -q "missing 1, unreadable 3" "$T/report.txt" && ok "missing and unreadable images counted" || bad "report counts"
grep -q "duplicate 2" "$T/report.txt" && ok "the duplicates counted (a copy, and an interlaced twin)" || bad "duplicate"
grep -q "date boilerplate 13" "$T/report.txt" && grep -q "not English 1" "$T/report.txt" && grep -q "bad UTF-8 1" "$T/report.txt" \
    && ok "caption filters counted" || bad "caption filters"
$DALLE data info "$T/d.dset" | grep -q "11 images of 32x32" && ok "data info" || bad "data info: $($DALLE data info "$T/d.dset" 2>&1 | head -2)"
expect_fail "the default --min-side (the size) drops small images" "13 too small" "$T/d2.dset" \
    $DALLE data build --images "$T/img" --captions "$T/caps.tsv" --size 64 -o "$T/d2.dset"

# a malformed caption file: an error, and no dataset
printf 'png_rgb.png no tab here\n' > "$T/bad.tsv"
expect_fail "malformed caption file" "bad.tsv: line 1" "$T/bad.dset" \
    $DALLE data build --images "$T/img" --captions "$T/bad.tsv" --size 32 -o "$T/bad.dset"
expect_fail "nothing left" "no image left" "$T/none.dset" \
    $DALLE data build --images "$T/img" --captions "$T/caps.tsv" --size 32 --min-side 5000 -o "$T/none.dset"

# tokenize with the shipped dVAE (16x16 codes of 512) and a small tokenizer, then train a prior on it
cut -f2 "$T/caps.tsv" > "$T/text.txt"
$DALLE -q bpe train --vocab 300 -o "$T/tok.json" "$T/text.txt"
$DALLE data build --images "$T/img" --captions "$T/caps.tsv" --size 64 --min-side 0 -o "$T/d64.dset" > /dev/null 2>&1
$DALLE -q data tokenize --dvae models/dvae-icons.safetensors -t "$T/tok.json" --text-len 16 --split all "$T/d64.dset" \
    -o "$T/s.dshard" > /dev/null && $DALLE shard info "$T/s.dshard" | grep -q "records      11" \
    && ok "tokenize: 11 records" || bad "tokenize"
$DALLE -q data tokenize --dvae models/dvae-icons.safetensors -t "$T/tok.json" --text-len 16 --split all --augment \
    --seed 3 --records-per-shard 4 "$T/d64.dset" -o "$T/a.dshard" > /dev/null && [ -f "$T/a-00002.dshard" ] \
    && ok "tokenize --augment into 3 shards" || bad "tokenize shards"
V=$($DALLE bpe info -t "$T/tok.json" | awk '/^vocab/ {print $2}')
echo '{"n_layer":2,"n_head":2,"d_head":8,"text_len":16,"text_vocab":'"$V"',"grid":16,"image_vocab":512,"conv_kernel":3,"mlp_mult":2}' > "$T/cfg.json"
$DALLE -q train --config "$T/cfg.json" --batch 2 --steps 3 --log-every 1 -o "$T/p.ckpt" "$T/s.dshard" > "$T/tlog.txt" 2>&1 \
    && grep -q "step 3 loss" "$T/tlog.txt" && ok "train a prior on the tokenized shard" || bad "train on shard: $(cat "$T/tlog.txt")"
$DALLE -q dvae train --data "$T/d64.dset" --preset small --batch 2 --steps 2 --log-every 1 -o "$T/dv.ckpt" > "$T/dlog.txt" 2>&1 \
    && grep -q "step 2 loss" "$T/dlog.txt" && ok "dvae train on the dataset file" || bad "dvae on dset: $(tail -2 "$T/dlog.txt")"
ls "$T"/*.tmp.* > /dev/null 2>&1 && bad "temporary files left behind" || ok "no temporary files left"

[ $fails -eq 0 ]
