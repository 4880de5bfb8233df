#!/usr/bin/env python3
"""report.py: the GPU benchmarks side by side (docs/cuda.md "Benchmarks").

    python3 bench/gpu/report.py LOG...

Reads the "BENCH {json}" lines that bench/gpu/bench_gpu_prior, bench_gpu_dvae (dalle.c) and
prior_torch_gpu.py, dvae_torch_gpu.py (PyTorch) print, from the given log files, and prints one
table per benchmark: each implementation and mode, its figure, and the ratio dalle.c / that row
(dalle.c's best mode against each PyTorch mode), then the issue's goal against the best of each
side. Prior MFU = tokens/s x the sparse model's training FLOPs per token (bench_gpu_prior's
"prior_costs" line, from prior_costs_compute) / the peak on that line (989.4 TFLOP/s: the H100
SXM's dense bf16); PyTorch's dense masks do more attention work than that, which MFU does not
count. Standard library only.
"""
import json
import sys

BENCHES = (  # name, title, figure key, unit, goal ratio (dalle.c best / PyTorch best)
    ("prior_train", "Prior training", "tokens_per_s", "tok/s", 1.0),
    ("prior_sample", "Prior sampling (KV cache)", "image_tokens_per_s", "image tok/s", 2.0),
    ("dvae_train", "dVAE training", "images_per_s", "images/s", 1.5),
)
MFU_GOAL = 0.45


def read(paths: list) -> list:
    recs = []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                for line in f:
                    at = line.find("BENCH {")
                    if at < 0:
                        continue
                    try:
                        recs.append(json.loads(line[at + 6:]))
                    except json.JSONDecodeError:
                        pass
        except OSError as e:
            print(f"(cannot read {p}: {e.strerror})")
    return recs


def describe(name: str, rows: list, costs: dict) -> str:
    r = next((x for x in rows if "error" not in x and "skipped" not in x), {})
    if name == "prior_train":
        s = f"batch {r.get('batch', '?')} x T {r.get('T', '?')}"
        if costs:
            s += (f"; {costs['params'] / 1e6:.1f}M parameters ({costs.get('config', '?')}); "
                  f"{costs['flops_train_per_token'] / 1e9:.3f} GFLOP/token (sparse model; dense masks "
                  f"{costs['flops_train_dense_per_token'] / 1e9:.3f})")
        return s
    if name == "prior_sample":
        return f"{r.get('candidates', '?')} candidates x {r.get('N', '?')} image tokens of one caption"
    side = r.get("image_size", "?")
    return f"{r.get('preset', '?')} preset, {side}x{side}, batch {r.get('batch', '?')}"


def main(paths: list) -> int:
    recs = read(paths)
    costs = next((r for r in recs if r.get("bench") == "prior_costs"), {})
    peak = costs.get("peak_flops", 989.4e12)
    dev = next((r["device"] for r in recs if r.get("device")), "the GPU")
    print(f"GPU benchmarks on {dev}; MFU against {peak / 1e12:.1f} TFLOP/s (H100 SXM dense bf16 peak)")
    for name, title, key, unit, goal in BENCHES:
        rows = [r for r in recs if r.get("bench") == name]
        print(f"\n{title}: {describe(name, rows, costs)}")
        if not rows:
            print("  (no result: the benchmark did not run or was cut off; see its log)")
            continue
        ok = [r for r in rows if key in r]
        ours = max((r[key] for r in ok if r["impl"] == "dalle.c"), default=None)
        head = f"  {'impl':8} {'mode':22} {unit:>12} {'ms/step':>9}"
        if name == "prior_train":
            head += f" {'MFU':>7}"
        print(head + f" {'dalle.c/this':>13}")
        for r in rows:
            label = f"  {r.get('impl', '?'):8} {r.get('mode', '-'):22}"
            if key not in r:
                print(label + " " + (f"skipped: {r['skipped']}" if "skipped" in r else f"error: {r.get('error', '?')}"))
                continue
            line = label + f" {r[key]:12.1f}"
            line += f" {1e3 * r['s_per_step']:9.1f}" if "s_per_step" in r else f" {'':9}"
            if name == "prior_train":
                mfu = r[key] * costs.get("flops_train_per_token", 0) / peak
                line += f" {100 * mfu:6.1f}%" if costs else f" {'?':>7}"
            if r["impl"] != "dalle.c" and ours:
                line += f" {ours / r[key]:12.2f}x"
            print(line)
        theirs = max((r[key] for r in ok if r["impl"] == "pytorch"), default=None)
        if ours and theirs:
            verdict = "met" if ours / theirs >= goal else "not met"
            print(f"  goal dalle.c >= {goal:g}x PyTorch's best: {ours / theirs:.2f}x ({verdict})")
        if name == "prior_train" and ours and costs:
            mfu = ours * costs["flops_train_per_token"] / peak
            print(f"  goal MFU >= {100 * MFU_GOAL:.0f}% (bf16): dalle.c {100 * mfu:.1f}% "
                  f"({'met' if mfu >= MFU_GOAL else 'not met'}; dalle.c's mode: "
                  f"{max((r for r in ok if r['impl'] == 'dalle.c'), key=lambda r: r[key])['mode']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
