#!/usr/bin/env bash
# cli_mpi.sh: data-parallel training under mpirun (docs/training.md), 2 ranks
# of one OpenMP thread each, on the tiny presets:
#  - 2 ranks x B/2 give, bit for bit, the checkpoint of 1 rank that computes
#    each batch of B in 2 pieces of B/2 (--micro-batch: the same arithmetic),
#    in both --dp modes, for the prior and for the dVAE (with 33 codes, so an
#    odd parameter count and a padded last shard);
#  - against 1 rank computing B at once they agree to rounding: the losses,
#    and the parameters within 1e-3 of each tensor's scale (Adam turns the
#    rounding noise of near-zero gradients, e.g. the attention key biases'
#    whose true value is 0, into steps of up to lr);
#  - checkpoints: 2 ranks stopped after 5 steps and resumed on 1 (and 1 -> 2)
#    give the uninterrupted run;
#  - failure: a batch the ranks do not divide, a rank with a bad shard, a rank
#    killed: the job ends (no rank waits forever) with a message and the last
#    checkpoint intact; a diverging run skips its updates, then stops.
# Skipped when mpirun is absent. Run by tests/run with $DALLE set.
. "$(dirname "$0")/lib_cli.sh"

if ! command -v mpirun > /dev/null; then
    echo "  skip: mpirun not found (scripts/setup installs openmpi-bin and libopenmpi-dev)"
    exit 0
fi
# root in a container needs the first two; 2 cores, one thread per rank
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# Under ASan, what OpenMPI keeps allocated at exit reads as leaks. The first
# 2-rank run checks leaks with those suppressed (tests/lsan-mpi.supp, which
# needs full stacks: 3 s a run); the other MPI runs leave leaks unchecked.
SUPP="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan-mpi.supp:print_suppressions=0:fast_unwind_on_malloc=0"
MPI_ASAN=detect_leaks=0
mpirun_() { ASAN_OPTIONS=$MPI_ASAN LSAN_OPTIONS=$SUPP timeout 120 mpirun --oversubscribe "$@"; }
mpi() { mpirun_ -np 2 "$@"; }
same() { # NAME A B [diff options]: the checkpoints agree as dalle diff says
    local name=$1 a=$2 b=$3 out
    shift 3
    if out=$($DALLE diff "$@" "$a" "$b" 2>&1); then ok "$name: $(echo "$out" | tail -1)"; else bad "$name: $out"; fi
}

# ---- the prior
tiny_prior_shard 64 0 "$T/p.dshard" > /dev/null 2>&1
P=(--config tiny --batch 8 --lr 3e-3 --warmup 5 --seed 5 --steps 10 --log-every 5 --ema-every 2)
$DALLE -q train "${P[@]}" --micro-batch 4 -o "$T/p1.st" "$T/p.dshard" > /dev/null || bad "prior: 1 rank"
MPI_ASAN=fast_unwind_on_malloc=0 mpi $DALLE -q train "${P[@]}" -o "$T/p2.st" "$T/p.dshard" > "$T/p2.log" || bad "prior: 2 ranks"
same "prior, --dp shard: 2 ranks x 4 == 1 rank x 2 pieces of 4" "$T/p1.st" "$T/p2.st" --tol 0
mpi $DALLE -q train "${P[@]}" --dp allreduce -o "$T/p2a.st" "$T/p.dshard" > /dev/null || bad "prior: allreduce"
same "prior, --dp allreduce: the same" "$T/p1.st" "$T/p2a.st" --tol 0
$DALLE -q train "${P[@]}" -o "$T/p1b.st" "$T/p.dshard" > "$T/p1b.log" || bad "prior: 1 rank x 8"
same "prior: 2 ranks x 4 ~ 1 rank x 8 (rounding)" "$T/p1b.st" "$T/p2.st" --tol 1e-3 --skip adam.
paste "$T/p1b.log" "$T/p2.log" | awk '{ d = $4 - $14; if (d < 0) d = -d; if (d > 1e-5 * $4) exit 1 }' \
    && ok "prior: the logged losses agree ($(tail -1 "$T/p2.log" | cut -d' ' -f1-4))" || bad "prior losses: $(paste "$T/p1b.log" "$T/p2.log")"

# resume across rank counts: 2 -> 1 and 1 -> 2 give the uninterrupted run
mpi $DALLE -q train "${P[@]}" --stop-after 5 -o "$T/r21.st" "$T/p.dshard" > /dev/null &&
    $DALLE -q train --steps 10 --micro-batch 4 --resume "$T/r21.st" -o "$T/r21.st" "$T/p.dshard" > /dev/null || bad "resume 2 -> 1"
same "prior: 5 steps on 2 ranks + 5 resumed on 1 == 10 straight" "$T/p1.st" "$T/r21.st" --tol 0
$DALLE -q train "${P[@]}" --micro-batch 4 --stop-after 5 -o "$T/r12.st" "$T/p.dshard" > /dev/null &&
    mpi $DALLE -q train --steps 10 --resume "$T/r12.st" -o "$T/r12.st" "$T/p.dshard" > /dev/null || bad "resume 1 -> 2"
same "prior: 5 steps on 1 rank + 5 resumed on 2 == 10 straight" "$T/p1.st" "$T/r12.st" --tol 0

# ---- the dVAE
mkdir -p "$T/imgs"
cp tests/data/img/png_rgb.png tests/data/img/png_rgba.png tests/data/img/jpg_baseline.jpg tests/data/img/png_gray.png "$T/imgs/"
D=(--data "$T/imgs" --preset tiny --vocab 33 --batch 4 --steps 10 --seed 3 --log-every 5 --lr 1e-3)
$DALLE -q dvae train "${D[@]}" --micro-batch 2 -o "$T/d1.st" > /dev/null || bad "dvae: 1 rank"
mpi $DALLE -q dvae train "${D[@]}" -o "$T/d2.st" > /dev/null || bad "dvae: 2 ranks"
same "dvae, --dp shard: 2 ranks x 2 == 1 rank x 2 pieces of 2" "$T/d1.st" "$T/d2.st" --tol 0
mpi $DALLE -q dvae train "${D[@]}" --dp allreduce -o "$T/d2a.st" > /dev/null || bad "dvae: allreduce"
same "dvae, --dp allreduce: the same" "$T/d1.st" "$T/d2a.st" --tol 0
$DALLE -q dvae train "${D[@]}" -o "$T/d1b.st" > /dev/null || bad "dvae: 1 rank x 4"
same "dvae: 2 ranks x 2 ~ 1 rank x 4 (rounding)" "$T/d1b.st" "$T/d2.st" --tol 1e-3 --skip adam.
mpi $DALLE -q dvae train "${D[@]}" --stop-after 5 -o "$T/dr.st" > /dev/null &&
    $DALLE -q dvae train --data "$T/imgs" --steps 10 --micro-batch 2 --resume "$T/dr.st" -o "$T/dr.st" > /dev/null || bad "dvae resume"
same "dvae: 5 steps on 2 ranks + 5 resumed on 1 == 10 straight" "$T/d1.st" "$T/dr.st" --tol 0

# ---- failures end the whole job, with a message
$DALLE -q train --config tiny --batch 3 --steps 2 -o "$T/b3.st" "$T/p.dshard" > /dev/null
WANT_RC="1 134" expect_fail "resume on ranks that do not divide the batch" "not divisible by 2 ranks" "$T/o1.st" \
    mpi $DALLE -q train --steps 4 --resume "$T/b3.st" -o "$T/o1.st" "$T/p.dshard"
head -c 100 "$T/p.dshard" > "$T/trunc.dshard"
WANT_RC="1 134" expect_fail "rank 1 alone has a bad shard" "rank 1 of 2: $T/trunc.dshard: truncated" "$T/o2.st" \
    mpirun_ -np 1 $DALLE -q train --config tiny --batch 4 --steps 50 -o "$T/o2.st" "$T/p.dshard" : \
    -np 1 $DALLE -q train --config tiny --batch 4 --steps 50 -o "$T/o2.st" "$T/trunc.dshard"
K=(--config tiny --batch 4 --steps 1000000 --save-every 10 -o "$T/k.st" "$T/p.dshard")
# rank 1 is killed once rank 0 has written a checkpoint
mpirun_ -np 1 $DALLE -q train "${K[@]}" : -np 1 sh -c \
    "$DALLE -q train ${K[*]} & while [ ! -e $T/k.st ]; do sleep 0.1; done; kill -9 \$!; wait \$!" > "$T/k.log" 2>&1
rc=$?
if [ $rc != 0 ] && [ $rc != 124 ] && $DALLE diff "$T/k.st" "$T/k.st" > /dev/null 2>&1; then
    ok "rank 1 killed: the job ends (status $rc), the last checkpoint ($(grep -ao '"train.step": *"[0-9]*"' "$T/k.st" | tr -d '"')) is intact"
else
    bad "rank 1 killed: status $rc; $(tail -3 "$T/k.log")"
fi
WANT_RC="1 134" expect_fail "dvae: a diverging run skips non-finite updates on every rank, then stops" \
    "100 updates in a row skipped" "$T/o3.st" mpi $DALLE -q dvae train "${D[@]}" --lr 1e30 --steps 300 -o "$T/o3.st"
WANT_RC="1 134" expect_fail "prior: the same" "100 updates in a row skipped" "$T/o4.st" \
    mpi $DALLE -q train --config tiny --batch 4 --lr 1e30 --warmup 1 --steps 300 -o "$T/o4.st" "$T/p.dshard"

[ $fails -eq 0 ]
