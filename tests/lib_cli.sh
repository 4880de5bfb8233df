# lib_cli.sh: what every tests/cli_*.sh shares (it sources this file): the
# program under test ($DALLE), a scratch folder $T removed at exit, the ok/bad
# counters, and expect_fail.
set -u
DALLE=${DALLE:-build/dalle}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "  ok   $1"; }
bad() { echo "  FAIL $1"; fails=$((fails + 1)); }
# expect_fail NAME WANTED_TEXT OUTFILE CMD...: CMD must exit with a status in
# $WANT_RC (default 1), print a message containing WANTED_TEXT, and leave
# neither OUTFILE nor OUTFILE.tmp.* behind.
expect_fail() {
    local name=$1 want=$2 out=$3
    shift 3
    local msg rc
    msg=$("$@" 2>&1 >/dev/null); rc=$?
    if [[ " ${WANT_RC:-1} " == *" $rc "* ]] && [[ "$msg" == *"$want"* ]] && [ ! -e "$out" ] \
        && ! ls "$out".tmp.* >/dev/null 2>&1; then
        ok "$name: $(echo "$msg" | grep -F -- "$want" | tail -1)"
    else
        bad "$name (rc $rc, message '$msg', output ${out} $( [ -e "$out" ] && echo exists || echo absent))"
    fi
}

# tiny_prior_shard RECORDS OFFSET PATH: a shard for the `tiny` prior (L 6,
# Vt 40 with padding ids 40 + i, G 4 so N 16, Vi 24) where the image is a
# function of the caption: record r (from OFFSET) has text ids a, 10 + a%3,
# then padding, and image codes j -> (3a + j) mod 24, a = r mod 10.
tiny_prior_shard() {
    awk -v n="$1" -v off="$2" 'BEGIN { for (r = off; r < off + n; r++) { a = r % 10;
        printf "%d %d 42 43 44 45\n", a, 10 + a % 3 } }' > "$3.txt"
    awk -v n="$1" -v off="$2" 'BEGIN { for (r = off; r < off + n; r++) { a = r % 10;
        for (j = 0; j < 16; j++) printf "%d%s", (3 * a + j) % 24, j == 15 ? "\n" : " " } }' > "$3.codes"
    $DALLE shard pack --text-len 6 --grid 4 --text-vocab 40 --image-vocab 24 --text "$3.txt" --image "$3.codes" -o "$3"
}

# make_tiny_model DIR: a small model directory for the generation tests: a
# tokenizer and a 2-layer prior trained for a few steps on the shipped dVAE's
# codes of some test images (text_len 8).
make_tiny_model() {
    local M=$1 W="$T/tiny-model-work"
    mkdir -p "$M" "$W/img"
    for f in png_rgb png_rgba png_gray png_pal4 jpg_baseline jpg_gray; do cp tests/data/img/$f.* "$W/img/"; done
    for f in "$W"/img/*; do b=$(basename "$f"); printf '%s\ta small picture of %s\n' "$b" "${b%.*}"; done > "$W/caps.tsv"
    cut -f2 "$W/caps.tsv" > "$W/text.txt"
    $DALLE -q bpe train --vocab 300 -o "$M/tokenizer.json" "$W/text.txt"
    local V
    V=$($DALLE bpe info -t "$M/tokenizer.json" | awk '/^vocab/ {print $2}')
    $DALLE -q data build --images "$W/img" --captions "$W/caps.tsv" --size 64 --min-side 0 -o "$W/d.dset" > /dev/null 2>&1
    $DALLE -q data tokenize --dvae models/dvae-icons.safetensors -t "$M/tokenizer.json" --text-len 8 --split all \
        "$W/d.dset" -o "$W/s.dshard" > /dev/null
    echo '{"n_layer":2,"n_head":2,"d_head":8,"text_len":8,"text_vocab":'"$V"',"grid":16,"image_vocab":512,"conv_kernel":3,"mlp_mult":2}' > "$W/cfg.json"
    $DALLE -q train --config "$W/cfg.json" --batch 2 --steps 4 -o "$M/prior.safetensors" "$W/s.dshard" > /dev/null 2>&1
    cp models/dvae-icons.safetensors "$M/dvae.safetensors"
    echo '{"format": "dalle.c model", "version": 1, "name": "test"}' > "$M/config.json"
}
