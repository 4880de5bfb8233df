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
        ok "$name: $(echo "$msg" | tail -1)"
    else
        bad "$name (rc $rc, message '$msg', output ${out} $( [ -e "$out" ] && echo exists || echo absent))"
    fi
}
