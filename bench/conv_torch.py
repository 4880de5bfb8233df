# conv_torch.py: the PyTorch side of bench/bench_conv.c. Times
# torch.nn.functional.conv2d and its backward (grads of input, weight and
# bias) on the CPU for the shapes given, with the given thread count.
#   python3 bench/conv_torch.py THREADS REPEATS Ci,Co,H,k ...
# prints one line per shape: "Ci,Co,H,k FWD_SECONDS BWD_SECONDS" (best of REPEATS).
import sys
import time

import torch


def best_of(repeats, fn):
    fn()  # warm-up: oneDNN picks and caches its kernel on the first call
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    threads, repeats = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with torch.no_grad():
        for spec in sys.argv[3:]:
            ci, co, h, k = (int(v) for v in spec.split(","))
            x = torch.randn(1, ci, h, h)
            w = torch.randn(co, ci, k, k) / (ci * k * k) ** 0.5
            b = torch.randn(co)
            pad = (k - 1) // 2
            fwd = best_of(repeats, lambda: torch.nn.functional.conv2d(x, w, b, padding=pad))
            g = torch.randn(1, co, h, h)
            bwd = best_of(repeats, lambda: torch.ops.aten.convolution_backward(
                g, x, w, [co], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, [True, True, True]))
            print(f"{spec} {fwd:.6f} {bwd:.6f}", flush=True)


if __name__ == "__main__":
    main()
