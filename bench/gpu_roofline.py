#!/usr/bin/env python3
"""The device's ceilings, measured in the same run as the benchmarks they judge (METHOD.md):
HBM bandwidth (a large device-to-device copy, bytes read + written; and a read-only sum) and the
dense bf16 GEMM
rate (cuBLAS through PyTorch at the shapes a 4K-token prefill of Llama-3.1-8B runs, and at
8192^3). Prints a table and writes JSON.

    python3 bench/gpu_roofline.py --json roofline.json
"""
import argparse
import json

import torch


def time_ms(fn, warmup=3, reps=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    dev = torch.cuda.get_device_properties(0)
    out = {"device": dev.name, "sms": dev.multi_processor_count}

    n = 2 << 30  # 2 GiB
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    out["copy_bandwidth_gbs"] = 2 * n / ms / 1e6
    del src, dst
    # Reading alone (what a decode step does with the weights): a sum over 4 GiB of random bf16.
    x = torch.randn(n, dtype=torch.bfloat16, device="cuda")
    ms = time_ms(lambda: x.sum(dtype=torch.float32))
    out["read_bandwidth_gbs"] = 2 * n / ms / 1e6
    del x

    gemms = {}
    shapes = {"8192^3": (8192, 8192, 8192), "prefill 4K qkv": (4096, 6144, 4096),
              "prefill 4K o": (4096, 4096, 4096), "prefill 4K gate_up": (4096, 28672, 4096),
              "prefill 4K down": (4096, 4096, 14336)}
    for name, (m, nn, k) in shapes.items():
        a = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
        b = torch.randn(nn, k, dtype=torch.bfloat16, device="cuda")
        ms = time_ms(lambda: a @ b.t())
        gemms[name] = 2 * m * nn * k / ms / 1e9
    out["bf16_gemm_tflops"] = gemms
    # Llama-3.1-8B prefill of 4,096 tokens: the four GEMMs per layer weighted by their FLOPs.
    flops = {k: 2 * m * nn * kk for k, (m, nn, kk) in shapes.items() if k.startswith("prefill")}
    total = sum(flops.values())
    out["prefill_4k_gemm_tflops"] = total / sum(f / gemms[k] for k, f in flops.items())

    print(f"device: {out['device']} ({out['sms']} SMs)")
    print(f"{'ceiling':34s} {'value':>10s}")
    print(f"{'HBM copy bandwidth (GB/s)':34s} {out['copy_bandwidth_gbs']:10.0f}")
    print(f"{'HBM read bandwidth, sum (GB/s)':34s} {out['read_bandwidth_gbs']:10.0f}")
    for k, v in gemms.items():
        print(f"{'bf16 GEMM ' + k + ' (TFLOP/s)':34s} {v:10.1f}")
    print(f"{'bf16 GEMM, 8B 4K-prefill mix':34s} {out['prefill_4k_gemm_tflops']:10.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
