#!/usr/bin/env bash
# cli_shapes.sh: smoke tests of `dalle data shapes` and `dalle data
# shapes-check`: help texts with defaults; the --png layout (NNNNN.png,
# captions.tsv, splits.tsv) and the .dset file; the same seed giving the same
# files; held-out pairs only in test rows; shapes-check exit status 0 on a
# matching caption and 1 on a wrong one; --dir scoring a fresh folder at 100%;
# bad input refused with a clear message and exit status 2 (1 for a bad
# output path). Run by tests/run with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"
# expect_rc NAME RC WANTED_TEXT CMD...: exit status RC and WANTED_TEXT in stderr
expect_rc() {
    local name=$1 want_rc=$2 want=$3
    shift 3
    local msg rc
    msg=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -eq "$want_rc" ] && [[ "$msg" == *"$want"* ]]; then ok "$name: ${msg:-exit $rc}"; else bad "$name (rc $rc, message '$msg')"; fi
}

$DALLE data --help | grep -q "shapes-check" && ok "dalle data --help lists shapes-check" || bad "data --help"
$DALLE data shapes --help | grep -q -- "--holdout S.*(default red triangle,blue circle,green square,yellow diamond,purple circle)" \
    && ok "shapes --help shows the held-out pairs" || bad "shapes --help"
$DALLE data shapes --help | grep -q -- "--size N.*(default 64)" && ok "shapes --help shows defaults" || bad "shapes --help defaults"
$DALLE data shapes-check --help | grep -q "exit status" && ok "shapes-check --help" || bad "shapes-check --help"

# --png and --out together
$DALLE -q data shapes --count 300 --size 32 --seed 5 --png "$T/p" --out "$T/s.dset" && ok "shapes --png --out" || bad "shapes write"
[ -f "$T/p/00000.png" ] && [ -f "$T/p/00299.png" ] && [ ! -e "$T/p/00300.png" ] && ok "300 PNGs NNNNN.png" || bad "png files"
awk -F'\t' 'NF != 2 || $1 !~ /^[0-9][0-9][0-9][0-9][0-9]\.png$/ { exit 1 }' "$T/p/captions.tsv" && [ "$(cut -f1 "$T/p/captions.tsv" | sort -u | wc -l)" = 300 ] \
    && ok "captions.tsv: file<TAB>caption, several rows per image" || bad "captions.tsv layout"
[ "$(wc -l < "$T/p/splits.tsv")" = 300 ] && awk -F'\t' 'NF != 2 || $2 !~ /^(train|val|test)$/ { exit 1 }' "$T/p/splits.tsv" \
    && ok "splits.tsv: file<TAB>train|val|test" || bad "splits.tsv layout"
grep -q "	test$" "$T/p/splits.tsv" && grep -q "	val$" "$T/p/splits.tsv" && ok "splits: some val, some test" || bad "splits shares"
[ "$(head -c 8 "$T/s.dset")" = DALLEDST ] && ok "dset starts with DALLEDST" || bad "dset magic"
# 64-byte header + 300 images of 32x32x3 at least
[ "$(stat -c %s "$T/s.dset")" -gt $((64 + 300 * 32 * 32 * 3)) ] && ok "dset holds the images" || bad "dset size"

# held-out pairs appear only in the captions of test images
join -t $'\t' <(sort "$T/p/splits.tsv") <(sort "$T/p/captions.tsv") > "$T/joined.tsv"
held='red triangle|blue circle|green square|yellow diamond|purple circle'
! awk -F'\t' '$2 != "test"' "$T/joined.tsv" | grep -Eq "$held" && awk -F'\t' '$2 == "test"' "$T/joined.tsv" | grep -Eq "$held" \
    && ok "held-out pairs only in test" || bad "held-out pairs in train/val"
$DALLE -q data shapes --count 300 --size 32 --seed 5 --holdout "" --png "$T/nohold" && ! grep -q "test" "$T/nohold/splits.tsv" \
    && ok "--holdout \"\": no test split" || bad "--holdout empty"

# reproducible from the seed
$DALLE -q data shapes --count 50 --size 32 --seed 5 --png "$T/p2"
cmp -s "$T/p/00049.png" "$T/p2/00049.png" && head -200 "$T/p/captions.tsv" | cmp -s - "$T/p2/captions.tsv" \
    && ok "same seed, same scenes" || bad "seed reproducibility"
$DALLE -q data shapes --count 50 --size 32 --seed 6 --png "$T/p3"
! cmp -s "$T/p2/captions.tsv" "$T/p3/captions.tsv" && ok "another seed, other scenes" || bad "seed"

# shapes-check on one image: 0 on its caption, 1 on a wrong one
img="$T/p/00007.png"
cap=$(awk -F'\t' '$1 == "00007.png" { print $2; exit }' "$T/p/captions.tsv")
$DALLE data shapes-check --image "$img" --caption "$cap" > "$T/out.txt"; rc=$?
[ $rc -eq 0 ] && grep -q "^match" "$T/out.txt" && ok "shapes-check '$cap': match, exit 0" || bad "shapes-check match (rc $rc)"
wrong=$(echo "$cap" | sed -E 's/red|green|blue|yellow|purple|orange|black/COLOUR/; s/COLOUR/'"$(echo "$cap" | grep -q black && echo red || echo black)"'/')
$DALLE data shapes-check --image "$img" --caption "$wrong" > "$T/out.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "^no match" "$T/out.txt" && ok "shapes-check '$wrong': no match, exit 1" || bad "shapes-check mismatch (rc $rc)"

# --dir on a fresh folder scores 100%
$DALLE data shapes-check --dir "$T/p" > "$T/score.txt"; rc=$?
grep -q "exact match *100.00%" "$T/score.txt" && [ $rc -eq 0 ] && ok "--dir: $(grep exact "$T/score.txt" | tr -s ' ')" \
    || bad "--dir score: $(cat "$T/score.txt")"
grep -q "1200 captions of 300 images" "$T/score.txt" && ok "--dir counts rows and images" || bad "--dir counts"
# a folder whose captions are shuffled against the images scores low; --min turns that into exit 1
paste <(cut -f1 "$T/p/captions.tsv") <(cut -f2 "$T/p/captions.tsv" | tail -n +5; cut -f2 "$T/p/captions.tsv" | head -4) \
    > "$T/shuf.tsv"
mkdir "$T/q" && cp "$T"/p/*.png "$T/q/" && mv "$T/shuf.tsv" "$T/q/captions.tsv"
$DALLE data shapes-check --dir "$T/q" --min 99 > "$T/score2.txt"; rc=$?
[ $rc -eq 1 ] && ! grep -q "exact match *100.00%" "$T/score2.txt" && ok "--dir --min 99 on wrong captions: exit 1" || bad "--min (rc $rc)"

# bad input: exit 2 with a message naming the problem
expect_rc "missing image" 2 "$T/none.png" $DALLE data shapes-check --image "$T/none.png" --caption "a red circle"
expect_rc "unparsable caption" 2 "unknown word 'dog'" $DALLE data shapes-check --image "$img" --caption "a dog in a park"
expect_rc "caption without a shape" 2 "not followed by a shape" $DALLE data shapes-check --image "$img" --caption "a red"
printf 'not an image' > "$T/q/00000.png"
expect_rc "--dir with a broken image" 2 "00000.png" $DALLE data shapes-check --dir "$T/q"
expect_rc "--dir without captions.tsv" 2 "captions.tsv" $DALLE data shapes-check --dir "$T/none"
printf '00001.png a red circle\n' > "$T/q/captions.tsv"
expect_rc "--dir row without a tab" 2 "line 1" $DALLE data shapes-check --dir "$T/q"
expect_rc "no --caption" 2 "needs either" $DALLE data shapes-check --image "$img"
expect_rc "bad holdout" 2 "'red dog' is not" $DALLE data shapes --count 5 --png "$T/x" --holdout "red dog"
expect_rc "bad size" 1 "size 8" $DALLE data shapes --count 5 --size 8 --png "$T/x2"
expect_rc "no output" 2 "needs --out" $DALLE data shapes --count 5
expect_rc "unwritable .dset" 1 "$T/none/s.dset" $DALLE data shapes --count 5 --out "$T/none/s.dset"
[ ! -e "$T/x" ] && [ ! -e "$T/x2" ] && ok "nothing written on bad options" || bad "output left behind"

[ $fails -eq 0 ]
