"""Several training processes: launch a job on N ranks and wait for it.

When the plan says ``compute.num_processes > 1``, a training stage writes its job
to ``job.json`` and starts N copies of this module, each running
:func:`pipelines.training.job.run_job` on its share of every batch::

    python -m pipelines.training.launch runs/<plan>/04-sft/job.json

How the ranks are started depends on the machine:

* **GPUs**: ``accelerate launch --config_file accelerate.yaml`` with a config
  rendered from ``templates/accelerate/`` for ``compute.distributed``:
  ``ddp`` (a full copy of the model per GPU), ``deepspeed`` (ZeRO: optimizer state
  and gradients sharded) or ``fsdp`` (parameters sharded too).
* **CPU only**: ``torchrun --standalone --nproc_per_node N`` (gloo). On CPU
  ``accelerate launch --cpu --num_processes 2`` starts a single process, while
  torchrun really starts two ranks (KNOWLEDGE.md, section 7); the tests use this
  path and assert the world size the ranks report.

Rank 0 writes the job's ``result_file``; the launching stage reads it, then
chooses the checkpoint itself, in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from advisor.errors import StageFailed
from pipelines.artifacts import read_json, write_text

#: Accelerate config templates, by ``compute.distributed``.
TEMPLATES = {
    "ddp": "accelerate/ddp.yaml.j2",
    "deepspeed": "accelerate/deepspeed.yaml.j2",
    "fsdp": "accelerate/fsdp.yaml.j2",
}


def render_accelerate_config(distributed: str, num_processes: int, mixed_precision: str = "bf16", **extra: Any) -> str:
    """The ``accelerate launch --config_file`` YAML for ``distributed`` on ``num_processes`` GPUs.

    >>> "distributed_type: MULTI_GPU" in render_accelerate_config("ddp", 2)
    True
    """
    from advisor.render import render

    if distributed not in TEMPLATES:
        raise ValueError(f"distributed must be one of {', '.join(TEMPLATES)}, got {distributed!r}")
    return render(TEMPLATES[distributed], num_processes=num_processes, mixed_precision=mixed_precision, **extra)


def launch_command(job_path: Path, num_processes: int, distributed: str, cuda: bool) -> list[str]:
    """The command that starts ``num_processes`` ranks of :func:`main` on ``job_path``."""
    module = ["-m", "pipelines.training.launch", str(job_path)]
    if cuda:
        config = job_path.with_name("accelerate.yaml")
        write_text(config, render_accelerate_config(distributed, num_processes))
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *module]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={num_processes}",
        *module,
    ]


def rank_environment(job: dict[str, Any]) -> dict[str, str]:
    """The ranks' environment: unbuffered output, and each rank's share of the cores as its threads.

    Without ``OMP_NUM_THREADS`` torchrun sets 1 and warns; torch alone would take every core in
    every rank. The job's ``threads`` (``compute.threads``) is what the machine can give each.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if job.get("threads"):
        env.update(OMP_NUM_THREADS=str(job["threads"]), MKL_NUM_THREADS=str(job["threads"]))
    return env


def launch(job_path: Path, num_processes: int, distributed: str = "ddp", console: Any = None) -> dict[str, Any]:
    """Run the job on ``num_processes`` ranks; return rank 0's result.

    Raises:
        StageFailed: a rank failed (the last lines of its output are in the message).
    """
    import torch

    job = read_json(job_path)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if 0 < gpus < num_processes:
        raise StageFailed(
            f"compute.num_processes: {num_processes} processes need as many GPUs, {gpus} visible; "
            f"set compute.num_processes to {gpus} or fewer"
        )
    cuda = gpus > 0
    if not cuda and distributed != "ddp" and console is not None:
        console.print(f"  [yellow]compute.distributed: {distributed} needs GPUs; on CPU the ranks use DDP (gloo)")
    command = launch_command(job_path, num_processes, distributed, cuda)
    log_path = job_path.with_name("launch.log")
    if console is not None:
        how = "accelerate launch" if cuda else "torchrun (CPU, gloo)"
        console.print(f"  {num_processes} processes through {how}; log: {log_path}")
    env = rank_environment(job)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:  # everything to the log; rank 0's step lines to the console too
            log.write(line)
            if console is not None and line.startswith("step "):
                console.print(f"  {line.rstrip()}", highlight=False)
        proc.wait()
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise StageFailed(
            f"{job['kind']}: training on {num_processes} processes failed (exit {proc.returncode}):\n{tail}"
        )
    return read_json(Path(job["result_file"]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of one rank: ``python -m pipelines.training.launch JOB.json``."""
    from pipelines.training.job import run_job, step_reporter

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pipelines.training.launch JOB.json", file=sys.stderr)
        return 2
    run_job(read_json(Path(args[0])), callbacks=[step_reporter()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
