"""`lora-harness plan`: will a LoRA training run fit this machine's memory, and what to change if not."""
