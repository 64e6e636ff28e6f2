"""What the training stages are made of, below ``pipelines.stages.train``.

- :mod:`~pipelines.training.job`: one training job (sft, psft, dpo, reward_model, grpo,
  rloo) described as JSON and run on TRL, in this process or on each rank.
- :mod:`~pipelines.training.launch`: several processes (``torchrun`` on CPU,
  ``accelerate launch`` with DDP, DeepSpeed or FSDP on GPUs).
- :mod:`~pipelines.training.losses`: proximal SFT, an ``SFTTrainer`` with a clipped objective.
- :mod:`~pipelines.training.checkpoints`: score every checkpoint by task accuracy, keep the best
  as a plain model folder.
"""
