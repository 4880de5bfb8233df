#!/usr/bin/env bash
# cli_sources.sh: smoke tests of `dalle data emoji` and `dalle data clipart`
# (the built-in datasets, from Debian packages): --help; small builds into a
# PNG folder and a .dset at once; the .dset's header, no blank image, several
# captions per item; captions.tsv well-formed; ZWJ sequences, flags and
# keycaps drawn as one glyph, an unsupported sequence skipped and counted;
# a rebuild gives the same bytes; bad options and inputs refused. Run by
# tests/run with $DALLE set; about 2 s (4 s under ASan).
. "$(dirname "$0")/lib_cli.sh"
# No LSan suppressions: the clip art used here has no <text>. Drawings with
# text make librsvg -> pango -> fontconfig leak some 50 KB each (not a
# one-time cache, so not ours to hide; see docs/data.md, "Clip art").

# Little-endian unsigned integers of a file: u FILE OFFSET BYTES
u() { od -An -t "u$3" -j "$2" -N "$3" "$1" | tr -d ' '; }

# check_dset NAME FILE N: magic, N items, every image not all white, every item >= 2 captions
check_dset() {
    local name=$1 f=$2 want=$3
    [ "$(head -c 8 "$f")" = DALLEDST ] || { bad "$name: no DALLEDST magic"; return; }
    local S n idx blank=0 few=0
    S=$(u "$f" 12 4); n=$(u "$f" 16 8); idx=$(u "$f" 24 8)
    [ "$n" = "$want" ] || { bad "$name: $n items, wanted $want"; return; }
    for ((i = 0; i < n; i++)); do
        # non-white bytes of item i's pixels
        [ "$(tail -c +$((65 + i * S * S * 3)) "$f" | head -c $((S * S * 3)) | tr -d '\377' | wc -c)" -gt 0 ] || blank=$((blank + 1))
        [ "$(u "$f" $((idx + 32 * i + 12)) 2)" -ge 2 ] || few=$((few + 1))
    done
    [ $blank -eq 0 ] && [ $few -eq 0 ] && ok "$name: DALLEDST, $n images of ${S}x$S, none blank, >= 2 captions each" \
        || bad "$name: $blank blank images, $few items with < 2 captions"
}

# check_tsv NAME DIR N: N PNGs, each with >= 2 rows "NNNNN.png<TAB>caption" in captions.tsv
check_tsv() {
    local name=$1 d=$2 want=$3 pngs
    pngs=$(ls "$d" | grep -c '\.png$')
    if [ "$pngs" = "$want" ] && [ -s "$d/captions.tsv" ] &&
        ! grep -qvP '^[0-9]{5}\.png\t[^\t]*[^\t ]$' "$d/captions.tsv" &&
        [ "$(cut -f1 "$d/captions.tsv" | uniq | wc -l)" = "$want" ] &&
        [ "$(cut -f1 "$d/captions.tsv" | uniq -c | awk '$1 < 2' | wc -l)" = 0 ] &&
        [ -z "$(find "$d" -name '*.png' -size -300c)" ]; then
        ok "$name: $want PNGs, captions.tsv well-formed, $(wc -l < "$d/captions.tsv") captions"
    else
        bad "$name: $pngs PNGs (wanted $want) or a bad captions.tsv"
    fi
}

for sub in emoji clipart; do
    $DALLE data $sub --help | grep -q -- "captions.tsv" && ok "data $sub --help" || bad "data $sub --help"
done

# ---- emoji
out=$($DALLE data emoji --limit 40 --png "$T/e1" --out "$T/e1.dset" 2>&1) && ok "emoji --limit 40" || bad "emoji --limit 40: $out"
[[ "$out" == *"emoji: 40 items"*"skipped 0"* ]] && ok "emoji report: $(echo "$out" | grep -m1 'items (')" || bad "emoji report: $out"
check_dset "emoji .dset" "$T/e1.dset" 40
check_tsv "emoji --png" "$T/e1" 40
grep -qP '^00000\.png\tgrinning face$' "$T/e1/captions.tsv" && grep -qP '^00000\.png\ta grinning face$' "$T/e1/captions.tsv" \
    && ok "emoji captions: $(grep '^00000' "$T/e1/captions.tsv" | cut -f2 | paste -sd '|')" || bad "emoji captions"
$DALLE -q data emoji --limit 40 --png "$T/e2" --out "$T/e2.dset" && cmp -s "$T/e1.dset" "$T/e2.dset" && diff -r -q "$T/e1" "$T/e2" >/dev/null \
    && ok "emoji rebuild: identical bytes" || bad "emoji rebuild differs"

# sequences: one ZWJ family, flags and keycaps, each one glyph (else "skipped: more than one glyph")
out=$($DALLE data emoji --match "family: man, woman, girl, boy" --out "$T/fam.dset" 2>&1)
[[ "$out" == *"emoji: 1 items"*"skipped 0"* ]] && check_dset "ZWJ family: one glyph" "$T/fam.dset" 1 || bad "ZWJ family: $out"
out=$($DALLE data emoji --match "flag: " --limit 12 --png "$T/flags" 2>&1)
[[ "$out" == *"emoji: 12 items"*"skipped 0"* ]] && check_tsv "flags: one glyph each" "$T/flags" 12 || bad "flags: $out"
out=$($DALLE data emoji --match "keycap" --limit 3 --png "$T/keys" 2>&1)
[[ "$out" == *"emoji: 3 items"*"skipped 0"* ]] && grep -qP '\tkeycap: #$' "$T/keys/captions.tsv" && ok "keycaps: one glyph each" || bad "keycaps: $out"
out=$($DALLE data emoji --match "waving hand: medium skin" --png "$T/wave" 2>&1)
grep -qP '\twaving hand: medium skin tone$' "$T/wave/captions.tsv" && grep -q 'wave' <(cut -f2 "$T/wave/captions.tsv" | sed -n 3,9p) \
    && ok "skin tone: CLDR derived captions ($(cut -f2 "$T/wave/captions.tsv" | tail -1))" || bad "skin tone captions: $out"
# a ZWJ sequence the font has no ligature for (dog + ZWJ + cat) is skipped and counted
printf '# group: test\n1F600 ; fully-qualified # 😀 E1.0 grinning face\n1F436 200D 1F431 ; fully-qualified # 🐶‍🐱 E0.0 dog cat\n' > "$T/test.txt"
out=$($DALLE -v data emoji --emoji-test "$T/test.txt" --out "$T/dc.dset" 2>&1)
[[ "$out" == *"skipped 1F436 200D 1F431 (dog cat): more than one glyph (2 glyphs)"*"emoji: 1 items"*"more than one glyph 1"* ]] \
    && ok "unsupported sequence skipped and counted" || bad "unsupported sequence: $out"

# ---- clip art
out=$($DALLE data clipart --limit 20 --png "$T/c1" --out "$T/c1.dset" 2>&1) && ok "clipart --limit 20" || bad "clipart --limit 20: $out"
n=$(echo "$out" | grep -oP 'clipart: \K[0-9]+(?= items)')
[[ "$out" == *"from 20 inputs"*"skipped"* ]] && [ "${n:-0}" -ge 15 ] && ok "clipart report: $(echo "$out" | grep -m1 'items ('); $(echo "$out" | tail -1)" \
    || bad "clipart report: $out"
check_dset "clipart .dset" "$T/c1.dset" "${n:-0}"
check_tsv "clipart --png" "$T/c1" "${n:-0}"
grep -qP '^00002\.png\tclip art of armadillo$' "$T/c1/captions.tsv" && ok "clipart captions: $(grep '^00002' "$T/c1/captions.tsv" | cut -f2 | paste -sd '|')" \
    || bad "clipart captions: $(head -5 "$T/c1/captions.tsv")"
$DALLE -q data clipart --limit 20 --png "$T/c2" --out "$T/c2.dset" && cmp -s "$T/c1.dset" "$T/c2.dset" && diff -r -q "$T/c1" "$T/c2" >/dev/null \
    && ok "clipart rebuild: identical bytes" || bad "clipart rebuild differs"
# a broken file, an empty drawing and a good one: the first two skipped and counted
mkdir -p "$T/svg/things"
echo '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect' > "$T/svg/things/broken.svg"
echo '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>' > "$T/svg/things/empty.svg"
echo '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 20 10"><title>A Red_Box</title><rect x="5" y="2" width="10" height="6" fill="red"/></svg>' > "$T/svg/things/box.svg"
out=$($DALLE data clipart --root "$T/svg" --png "$T/c3" 2>&1)
[[ "$out" == *"clipart: 1 items"*"unreadable 1, blank 1"* ]] && grep -qP '^00000\.png\ta red box, things$' "$T/c3/captions.tsv" \
    && ok "clipart: broken and empty files skipped and counted; title from <title>" || bad "clipart skips: $out"

# ---- bad options and inputs
$DALLE data emoji --limit 1 >/dev/null 2>&1; [ $? -eq 2 ] && ok "no output: usage error" || bad "no output"
msg=$($DALLE data clipart --root "$T/none" --out "$T/o1.dset" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$msg" == *"$T/none"* ]] && [ ! -e "$T/o1.dset" ] && ! ls "$T"/o1.dset.tmp.* >/dev/null 2>&1 \
    && ok "missing root: $msg" || bad "missing root (rc $rc: $msg)"
msg=$($DALLE data emoji --font "$T/test.txt" --out "$T/o2.dset" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$msg" == *"test.txt"* ]] && [ ! -e "$T/o2.dset" ] && ok "not a font: $msg" || bad "not a font (rc $rc: $msg)"
msg=$($DALLE data emoji --match "no such emoji" --out "$T/o3.dset" 2>&1); rc=$?
[ $rc -eq 1 ] && [ ! -e "$T/o3.dset" ] && ok "nothing matches: $msg" || bad "nothing matches (rc $rc: $msg)"

[ $fails -eq 0 ]
