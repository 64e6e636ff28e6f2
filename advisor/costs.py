"""The cost model under ``advisor estimate``: the machines, and what generating and training cost.

Time is a sum of what a stage does, each at a measured rate: loading models, decoding
steps (a fixed overhead plus the weight reads or the FLOPs, whichever is slower), optimizer
steps (an overhead plus 6·N FLOPs per trained token, 4·N under LoRA, plus 2·N for a
reference model's forward pass), and checkpoint writes. Memory is weights, gradients and
AdamW's moments (16 bytes per trained parameter), activations, and the KV cache.

The CPU constants were fitted by ``benchmarks/estimate_calibration.py`` on calibration runs
on this 2-core machine and checked on other runs (``benchmarks/estimate.md``); the GPU
figures are datasheet peaks at a stated utilisation, not measured here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from advisor.model_size import ModelShape

# ---- the machine: this CPU (measured) and a table of GPUs ----

#: CPU, one torch thread, fp32 (fitted by benchmarks/estimate_calibration.py on calibration runs).
CPU_FLOPS_PER_THREAD = 3.23e10  # sustained matmul FLOP/s of one thread (training and prefill)
CPU_DECODE_FLOPS_PER_THREAD = 1.31e10  # the same while decoding, one token per sequence a step
CPU_BANDWIDTH = 8.0e9  # bytes/s: a decoding step reads every weight once
CPU_DECODE_OVERHEAD = 0.0  # s per decoding step of a 4-layer model (python, sampling), scaled by layers
#: s per optimizer step (TRL's bookkeeping, data collation, the optimizer, logging), by trainer
CPU_STEP_OVERHEAD = {"sft": 0.0, "psft": 0.0, "dpo": 0.005, "grpo": 0.026, "rloo": 0.0234, "reward_model": 0.004}
CPU_LOAD_SECONDS = 0.168  # s to load a model and build a generator or trainer
CPU_SAMPLE_SECONDS = 0.0  # s per generated sequence beyond decoding: verifying it, writing it
CPU_START_SECONDS = 4.57  # once per process: imports (torch, transformers, TRL: 3 to 7 s measured) and first use
CPU_SAVE_BYTES_PER_S = 5.0e8  # checkpoint writes (weights + optimizer state)
#: Threads scale sublinearly on a shared machine.
THREAD_EFFICIENCY = 0.8


@dataclass(frozen=True)
class Gpu:
    name: str
    flops: float  # dense bf16 peak FLOP/s
    bandwidth: float  # bytes/s
    memory: int  # bytes


GPUS = {
    g.name: g
    for g in (
        Gpu("h200", 989e12, 4.8e12, 141 * 2**30),
        Gpu("h100", 989e12, 3.35e12, 80 * 2**30),
        Gpu("a100-80gb", 312e12, 2.0e12, 80 * 2**30),
        Gpu("a100-40gb", 312e12, 1.55e12, 40 * 2**30),
        Gpu("l40s", 362e12, 0.86e12, 48 * 2**30),
        Gpu("a10g", 125e12, 0.6e12, 24 * 2**30),
        Gpu("l4", 121e12, 0.3e12, 24 * 2**30),
        Gpu("rtx4090", 165e12, 1.0e12, 24 * 2**30),
        Gpu("t4", 65e12, 0.32e12, 16 * 2**30),
    )
}
DEFAULT_GPU = "a100-80gb"
#: Stated utilisation on GPUs: training reaches about a third of peak (model FLOPs
#: utilisation); decoding reads the weights at about 60% of peak bandwidth, and each
#: decoding step has a fixed overhead (the hf backend's python loop; vLLM's is smaller).
GPU_TRAIN_UTILISATION = 0.35
GPU_BANDWIDTH_UTILISATION = 0.6
GPU_DECODE_OVERHEAD = {"hf": 0.02, "vllm": 0.004, "openai": 0.004}
GPU_STEP_OVERHEAD = 0.1
GPU_LOAD_SECONDS = 20.0


@dataclass
class StageEstimate:
    stage: str  # run folder name, e.g. 04-sft
    kind: str
    model: str
    parameters: int | None
    generated_tokens: int = 0
    prompt_tokens: int = 0  # read (prefill) while generating
    trained_tokens: int = 0
    steps: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    assumptions: list[str] = field(default_factory=list)
    # what the time is made of (for calibration): loads, decode steps, optimizer steps, bytes saved
    work: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flops"] = float(f"{self.flops:.4g}")
        data["seconds"] = round(self.seconds, 1)
        return data


# ---- the cost model ----


@dataclass
class Machine:
    gpu: Gpu | None
    gpus: int
    threads: int
    backend: str

    def decode_step(self, shape: ModelShape, batch: int, context: int) -> float:
        """Seconds for one decoding step of ``batch`` sequences (weights read once, 2N FLOPs a token)."""
        flops = 2 * shape.parameters * batch + 4 * shape.layers * shape.hidden * context * batch
        weight_bytes = shape.parameters * self.dtype_bytes
        if self.gpu is None:
            compute = flops / (CPU_DECODE_FLOPS_PER_THREAD * self.thread_scale)
            return CPU_DECODE_OVERHEAD * max(1.0, shape.layers / 4) + max(weight_bytes / CPU_BANDWIDTH, compute)
        compute = flops / (self.gpu.flops * GPU_TRAIN_UTILISATION)
        read = weight_bytes / (self.gpu.bandwidth * GPU_BANDWIDTH_UTILISATION)
        return GPU_DECODE_OVERHEAD.get(self.backend, 0.02) + max(read, compute)

    def flop_seconds(self, flops: float) -> float:
        if self.gpu is None:
            return flops / (CPU_FLOPS_PER_THREAD * self.thread_scale)
        return flops / (self.gpu.flops * GPU_TRAIN_UTILISATION * max(1, self.gpus) * 0.9 ** (self.gpus > 1))

    @property
    def thread_scale(self) -> float:
        return 1.0 if self.threads <= 1 else self.threads * THREAD_EFFICIENCY

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.gpu is None else 2  # fp32 on CPU, bf16 on GPUs

    def step_overhead(self, kind: str) -> float:
        return CPU_STEP_OVERHEAD.get(kind, 0.05) if self.gpu is None else GPU_STEP_OVERHEAD

    @property
    def load_seconds(self) -> float:
        return CPU_LOAD_SECONDS if self.gpu is None else GPU_LOAD_SECONDS


def load(est: StageEstimate, m: Machine, n: int = 1) -> None:
    """Add ``n`` model loads (a generator, a trainer and its datasets)."""
    est.seconds += n * m.load_seconds
    est.work["loads"] = est.work.get("loads", 0) + n


def generation(
    est: StageEstimate, m: Machine, shape: ModelShape, sequences: int, prompt: float, new: int, batch: int
) -> None:
    """Add sampling ``sequences`` completions of ``new`` tokens after ``prompt``-token prompts."""
    steps = math.ceil(sequences / max(1, batch)) * new
    est.generated_tokens += sequences * new
    est.prompt_tokens += round(sequences * prompt)
    est.flops += 2 * shape.parameters * (sequences * (new + prompt))
    # prefill at matmul speed, then one decoding step per new token of each batch
    est.seconds += m.flop_seconds(2 * shape.parameters * sequences * prompt)
    est.seconds += steps * m.decode_step(shape, min(batch, sequences), round(prompt + new / 2))
    est.work["decode_steps"] = est.work.get("decode_steps", 0) + steps * max(1.0, shape.layers / 4)
    est.work["samples"] = est.work.get("samples", 0) + sequences
    # decoding on a CPU is compute-bound from a batch of about 10 (2N FLOPs a token against 4N bytes
    # read), at a lower rate than training's large matmuls (small matrices, sampling over the vocabulary)
    est.work["decode_flops"] = est.work.get("decode_flops", 0) + 2 * shape.parameters * sequences * new
    est.seconds += sequences * (CPU_SAMPLE_SECONDS if m.gpu is None else CPU_SAMPLE_SECONDS / 4)
    est.work["flops"] = est.work.get("flops", 0) + 2 * shape.parameters * sequences * prompt
    memory = shape.parameters * m.dtype_bytes + shape.kv_bytes(
        min(batch, sequences), round(prompt + new), m.dtype_bytes
    )
    memory += min(batch, sequences) * shape.vocab * 4 * 2  # logits and sampling probabilities
    est.peak_memory_bytes = max(est.peak_memory_bytes, memory)


def training(
    est: StageEstimate,
    m: Machine,
    shape: ModelShape,
    steps: int,
    sequences_per_step: int,
    length: float,
    lora: bool,
    reference: bool,
    checkpoints: int = 4,
) -> None:
    """Add ``steps`` optimizer steps over ``sequences_per_step`` sequences of ``length`` tokens."""
    tokens = steps * sequences_per_step * length
    est.trained_tokens += round(tokens)
    est.steps += steps
    # LoRA still back-propagates through the frozen weights (activations' gradients): about 4N, not 6N
    flops = (4 if lora else 6) * shape.parameters * tokens + (2 * shape.parameters * tokens if reference else 0)
    est.flops += flops
    est.seconds += m.flop_seconds(flops) + steps * m.step_overhead(est.kind)
    trained = shape.lora_parameters() if lora else shape.parameters
    state = trained * 16 + (shape.parameters * m.dtype_bytes if lora else 0)  # + frozen weights
    est.seconds += checkpoints * trained * 12 / CPU_SAVE_BYTES_PER_S  # weights + two moments per save
    est.work[f"steps_{est.kind}"] = est.work.get(f"steps_{est.kind}", 0) + steps
    est.work["flops"] = est.work.get("flops", 0) + flops
    per_device = max(1, sequences_per_step // max(1, m.gpus or 1))
    activations = shape.activation_bytes(per_device, round(length), m.dtype_bytes, checkpointing=m.gpu is not None)
    memory = state + activations + (shape.parameters * m.dtype_bytes if reference else 0)
    est.work["activation_bytes"] = max(est.work.get("activation_bytes", 0), activations)
    est.work["lora"] = float(lora)
    est.peak_memory_bytes = max(est.peak_memory_bytes, memory)
