"""LoRA itself: the recipe (one replaceable step per field), the SFT and DPO trainers, known faults, expectations derived from the config, mlx-lm adapter files."""
