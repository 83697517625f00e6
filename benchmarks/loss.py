"""Loss cost: forward+backward time and peak memory of plain InfoNCE, the full structure (hard negatives,
graph, six ordered pairs) with identity targets, and the same with the t+c+g soft-label streams.

    python benchmarks/loss.py [--sizes 256 1024 4096] [--dim 512] [--repeats 5] [--device cpu]

Each (case, B) runs in a fresh subprocess so memory numbers do not leak between cases.
Memory: on CPU the increase of the peak resident set size (VmHWM, reset through /proc/self/clear_refs
just before the measured forward+backward) over the RSS with inputs allocated; on CUDA
torch.cuda.max_memory_allocated over the allocated memory with inputs in place.
Reference cost: the number of B x D x 2B-sized matrix products each case needs (forward + backward + soft
labels; a 2B x D x 2B product counts as 2, a B x D x B one as 0.5) and the time of one such product, so the
loss can be compared with the matrix products it cannot avoid.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CASES = {
    # name: (hard negatives + graph?, weights, exact KL?)
    "infonce": (False, {"i": 1.0}, True),
    "full-identity": (True, {"i": 1.0}, True),
    "full-soft-tcg": (True, {"t": 1.0, "c": 1.0, "g": 1.0}, True),
    "full-soft-tcg-ce": (True, {"t": 1.0, "c": 1.0, "g": 1.0}, False),
}
# B x D x 2B-sized products. InfoNCE: v T1ᵀ is B x D x B = 0.5 unit, x3 with backward.
# Full structure: v Tᵀ (1) + v Gᵀ (1) + T Gᵀ (2) forward = 4, backward 2 x 4 = 8 -> 12.
# Soft labels add T Tᵀ and G Gᵀ, symmetric: 3 of their 4 B x D x B blocks are multiplied, 1.5 each
# (C Cᵀ has 14 columns: negligible) -> 15. The floor for the soft/identity time ratio is thus 15/12 = 1.25.
MATMUL_UNITS = {"infonce": 1.5, "full-identity": 12.0, "full-soft-tcg": 15.0, "full-soft-tcg-ce": 15.0}


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _make_step(case: str, batch: int, dim: int, device):
    import torch

    from clinclip.losses import loss_terms

    torch.manual_seed(0)
    full, weights, exact_kl = CASES[case]

    def make():
        return torch.randn(batch, dim, device=device, requires_grad=True)

    v, t1 = make(), make()
    t2, g1, g2 = (make(), make(), make()) if full else (None, None, None)
    c1 = (torch.rand(batch, 14, device=device) < 0.3).float() if full else None
    c2 = (torch.rand(batch, 14, device=device) < 0.3).float() if full else None
    scale = torch.tensor(1 / 0.07, device=device)
    taus = {"t": 0.8, "c": 0.5, "g": 0.8}
    leaves = [x for x in (v, t1, t2, g1, g2) if x is not None]

    def step():
        for x in leaves:
            x.grad = None
        loss = loss_terms(v, t1, t2, g1, g2, c1, c2, scale, weights, taus, components=False, exact_kl=exact_kl)
        loss["loss"].backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def measure_memory(case: str, batch: int, dim: int, device: str) -> dict:
    """Peak memory of one forward+backward in this (fresh) process."""
    import torch

    dev = torch.device(device)
    step = _make_step(case, batch, dim, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base, "memory_method": "cuda max_memory_allocated"}
    base = _rss_bytes("VmRSS")
    ok = _reset_peak_rss()
    step()
    method = "peak RSS (VmHWM) increase over the RSS with inputs allocated" + ("" if ok else " (peak not reset)")
    return {"peak_bytes": _rss_bytes("VmHWM") - base, "memory_method": method}


def measure_times(cases: list[str], batch: int, dim: int, repeats: int, device: str, threads: int) -> dict:
    """Best-of-``repeats`` forward+backward time of each case, the cases interleaved round by round so
    that load from other processes hits them alike; plus one B x D x 2B product."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    steps = {case: _make_step(case, batch, dim, dev) for case in cases}
    a = torch.randn(batch, dim, device=dev)
    b = torch.randn(dim, 2 * batch, device=dev)

    def matmul():
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()

    steps["matmul"] = matmul
    for fn in steps.values():  # warm-up
        fn()
    best = {name: float("inf") for name in steps}
    best_cpu = {name: float("inf") for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            best_cpu[name] = min(best_cpu[name], time.process_time() - c0)
    return {"seconds": best, "cpu_seconds": best_cpu, "threads": torch.get_num_threads()}


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the timing run (0: default)")
    parser.add_argument("--skip-after", type=float, default=60.0,
                        help="at the next size, skip a case whose estimated timing run would exceed this (s)")
    parser.add_argument("--_memory", nargs=2, metavar=("CASE", "B"), help=argparse.SUPPRESS)
    parser.add_argument("--_times", nargs="+", metavar="B CASES", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._memory:
        print(json.dumps(measure_memory(args._memory[0], int(args._memory[1]), args.dim, args.device)))
        return
    if args._times:
        batch, cases = int(args._times[0]), args._times[1:]
        print(json.dumps(measure_times(cases, batch, args.dim, args.repeats, args.device, args.threads)))
        return

    common = ["--dim", str(args.dim), "--device", args.device, "--repeats", str(args.repeats),
              "--threads", str(args.threads)]
    results: dict[tuple[str, int], dict] = {}
    matmul_s: dict[int, float] = {}
    skipped: list[tuple[str, int, str]] = []
    last_time: dict[str, tuple[int, float]] = {}
    threads = "?"
    memory_method = ""
    for batch in args.sizes:
        cases = []
        for case in CASES:
            if case in last_time:  # quadratic in B: estimate this size's timing run from the last one
                prev_b, prev_s = last_time[case]
                estimate = prev_s * (batch / prev_b) ** 2 * (args.repeats + 2)
                if estimate > args.skip_after:
                    skipped.append((case, batch, f"estimated {estimate:.0f} s > {args.skip_after:.0f} s"))
                    continue
            cases.append(case)
        if not cases:
            continue
        t0 = time.perf_counter()
        timing = _child(["--_times", str(batch), *cases, *common])
        threads = timing["threads"]
        matmul_s[batch] = (timing["seconds"]["matmul"], timing["cpu_seconds"]["matmul"])
        for case in cases:
            mem = _child(["--_memory", case, str(batch), *common])
            memory_method = mem["memory_method"]
            results[(case, batch)] = {"seconds": timing["seconds"][case], "cpu": timing["cpu_seconds"][case],
                                      "peak_bytes": mem["peak_bytes"]}
            last_time[case] = (batch, timing["seconds"][case])
        print(f"  B={batch}: {len(cases)} cases measured in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    print(f"\nloss forward+backward, D={args.dim}, float32, device={args.device}, torch threads={threads}, "
          f"best of {args.repeats} interleaved rounds (wall clock and process CPU time)")
    print(f"memory: {memory_method}")
    header = (f"{'case':17s} {'B':>5s} {'wall s':>8s} {'cpu s':>8s} {'peak MiB':>9s} {'matmuls':>8s} "
              f"{'1 mm wall':>10s} {'1 mm cpu':>9s} {'cpu/matmuls':>12s} {'cpu vs id':>10s} {'wall vs id':>10s}")
    print(header)
    print("-" * len(header))
    for (case, batch), r in sorted(results.items(), key=lambda kv: (kv[0][1], list(CASES).index(kv[0][0]))):
        units = MATMUL_UNITS[case]
        mm_wall, mm_cpu = matmul_s[batch]
        ident = results.get(("full-identity", batch))
        vs_cpu = vs_wall = ""
        if ident and case.startswith("full-soft"):
            vs_cpu = f"{r['cpu'] / ident['cpu']:.2f}x"
            vs_wall = f"{r['seconds'] / ident['seconds']:.2f}x"
        print(f"{case:17s} {batch:5d} {r['seconds']:8.4f} {r['cpu']:8.4f} {r['peak_bytes'] / 2**20:9.1f} {units:8.1f} "
              f"{mm_wall:10.5f} {mm_cpu:9.5f} {r['cpu'] / (units * mm_cpu):11.2f}x {vs_cpu:>10s} {vs_wall:>10s}")
    for case, batch, why in skipped:
        print(f"{case:17s} {batch:5d}  skipped: {why}")
    print("\n'matmuls': B x D x 2B-sized products the case needs (forward, backward, soft labels; 2B x D x 2B = 2;"
          "\n  identity structure 4 forward + 8 backward = 12; soft labels T Tᵀ, G Gᵀ from 3 of 4 blocks = 1.5 each)."
          "\n'cpu/matmuls': loss CPU time over that many single products = overhead beyond the unavoidable products."
          "\nCPU time is the steadier measure on a shared machine: time spent waiting for a core does not count."
          "\nfull-soft-tcg-ce: the same loss without the targets' entropy constant (exact_kl=False; same gradient).")


if __name__ == "__main__":
    main()
