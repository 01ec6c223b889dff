"""The peak memory of a LoRA training step, term by term, from the model's shape alone.

A compiled step evaluates forward, backward and the Adam update in one graph. What is
alive at its peak:

- resident: the weights in their format; the LoRA matrices (float32, as mlx-lm makes them)
  and Adam's two moments; a gradient accumulator when accumulating.
- saved for the backward, per token of every adapted block: the block input, q and k after
  RoPE, v, the attention output, the residual, the MLP gate and up projections (the
  activations' dtype), and one float32 copy of each input an adapter reads (`x @ lora_a`
  promotes to float32; mx.compile merges the identical casts of q/k/v and gate/up).
  Attention adds one float32 per head (fused backward) or the T x T probabilities of every
  head (when this device's MLX falls back to plain ops). Under --grad-checkpoint only each
  block's input is kept, and one block at a time is recomputed during the backward.
- the loss: the logits over the vocabulary are kept for the backward of the
  cross-entropy. MLX's fused kernel (GPU) writes their gradient as one more logits-sized
  array; the unfused loss (CPU) builds it from three: exp(x - logsumexp) times the
  cotangent, the scatter of the targets' gradient into zeros, and their sum.
- transients: the backward of one block (gradients of its MLP and of the adapters'
  float32 products) while the saved activations of the blocks below are still alive.

The peak is resident + the largest of (everything saved + the loss's backward) and
(everything saved + one block's backward). Each term is returned, so a miss can be named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lora_harness.plan.shape import ModelShape

F32 = 4


@dataclass
class TrainingShape:
    """The run's knobs that change memory."""

    batch_size: int = 4
    seq_length: int = 2048
    grad_checkpoint: bool = False
    grad_accumulation_steps: int = 1
    ranks: int = 1  # data-parallel: each rank holds the whole model and batch_size / ranks rows

    @property
    def rows_per_rank(self) -> int:
        return max(1, self.batch_size // self.ranks)

    def describe(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "seq_length": self.seq_length,
            "grad_checkpoint": self.grad_checkpoint,
            "grad_accumulation_steps": self.grad_accumulation_steps,
            "ranks": self.ranks,
            "rows_per_rank": self.rows_per_rank,
        }


@dataclass
class Device:
    """How this device's MLX runs the two operations whose memory differs by backend."""

    name: str
    attention_keeps_scores: bool
    fused_cross_entropy: bool

    @property
    def allocation_granularity(self) -> int:
        """Metal hands out whole 16 KiB pages and counts them; malloc and CUDA's pools the
        bytes asked for, which is what mx.get_peak_memory reports there."""
        return 16384 if self.name == "metal" else 0

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "attention_backward": "materialises T x T scores"
            if self.attention_keeps_scores
            else "fused (q, k, v, output and one float per row kept)",
            "cross_entropy": "fused kernel" if self.fused_cross_entropy else "unfused ops",
        }


@dataclass
class Prediction:
    terms: dict = field(default_factory=dict)  # name -> bytes
    phases: dict = field(default_factory=dict)  # name -> bytes above the resident state
    peak_bytes: int = 0
    dominant_phase: str = ""

    def describe(self) -> dict:
        return {
            "peak_bytes": self.peak_bytes,
            "peak_gb": self.peak_bytes / 1e9,
            "terms": dict(self.terms),
            "phases": dict(self.phases),
            "peak_phase": self.dominant_phase,
        }


def block_saved_per_token(shape: ModelShape, device: Device, seq_length: int) -> dict:
    """Bytes one adapted block keeps for the backward, per token, by kind."""
    a = shape.act_bytes
    q_width, kv_width = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    activations = a * (2 * shape.hidden + 2 * q_width + 2 * kv_width + 2 * shape.intermediate)
    casts = F32 * sum(width for _, width in shape.lora_inputs)
    adapter_products = F32 * shape.rank * shape.lora_modules_per_layer
    if device.attention_keeps_scores:
        attention = a * shape.heads * seq_length
    else:
        attention = F32 * shape.heads
    return {
        "activations": activations,
        "adapter_input_casts": casts,
        "adapter_products": adapter_products,
        "attention": attention,
    }


def block_backward_per_token(shape: ModelShape, device: Device, seq_length: int) -> int:
    """Bytes alive while one block's backward runs, beyond what it saved.

    The MLP's gradient w.r.t. gate, up and their product (activation dtype) and the
    float32 adapter gradients of the widest projection. Attention's unfused backward has
    five T x T arrays per head alive at once (the gradient of the probabilities, the
    softmax backward's product and result, the mask's gradient, and the recomputed
    scores; five, not the three one would count by hand, is what a CPU measured on the
    fixture with 1, 2 and 4 adapted blocks).
    """
    a = shape.act_bytes
    mlp = a * (shape.hidden + 3 * shape.intermediate) + F32 * 2 * shape.intermediate
    attention = 5 * a * shape.heads * seq_length if device.attention_keeps_scores else 0
    return max(mlp, attention)


RESIDENT = ("weights", "lora_parameters", "adam_state", "gradient_accumulator",
            "data_parallel_buffers")  # fmt: skip


def _resident_terms(shape: ModelShape, run: TrainingShape) -> dict:
    lora = shape.lora_parameters * F32
    return {
        "weights": shape.weights_total,
        "lora_parameters": lora,
        "lora_gradients": lora,
        "adam_state": 2 * lora,
        "gradient_accumulator": lora if run.grad_accumulation_steps > 1 else 0,
        "data_parallel_buffers": lora if run.ranks > 1 else 0,  # all_sum's output
    }


def _saved_terms(shape: ModelShape, run: TrainingShape, device: Device, tokens: int) -> dict:
    """What the forward leaves for the backward: per block, or checkpoints and one block."""
    saved = block_saved_per_token(shape, device, run.seq_length)
    blocks, a = shape.adapted_layers, shape.act_bytes
    if run.grad_checkpoint:
        return {
            "checkpoints": tokens * blocks * a * shape.hidden,
            "recomputed_block": tokens * sum(saved.values()),
        }
    return {f"saved_{kind}": tokens * blocks * value for kind, value in saved.items()}


def predict(shape: ModelShape, run: TrainingShape, device: Device) -> Prediction:
    """Every term, the bytes above the resident state in each phase, and the peak."""
    tokens = run.rows_per_rank * run.seq_length
    terms = _resident_terms(shape, run)
    terms.update(_saved_terms(shape, run, device, tokens))
    saved_total = sum(v for k, v in terms.items() if k.startswith("saved_") or k == "checkpoints")
    terms["final_norm_input"] = tokens * shape.act_bytes * shape.hidden
    terms["logits"] = tokens * shape.act_bytes * shape.vocab
    terms["loss_backward_transient"] = terms["logits"] * (1 if device.fused_cross_entropy else 3)
    terms["block_backward_transient"] = tokens * block_backward_per_token(
        shape, device, run.seq_length
    )
    terms["allocator_rounding"] = _rounding(shape, shape.adapted_layers, device)
    phases = {
        "loss_backward": saved_total
        + terms["final_norm_input"]
        + terms["logits"]
        + terms["loss_backward_transient"],
        "block_backward": saved_total
        + terms.get("recomputed_block", 0)
        + terms["block_backward_transient"]
        + terms["lora_gradients"],
        "adam_update": 4 * terms["lora_parameters"],  # gradients + new parameters and moments
    }
    phase = max(phases, key=phases.get)
    resident = sum(terms[k] for k in RESIDENT)
    peak = resident + phases[phase] + terms["allocator_rounding"]
    return Prediction(terms=terms, phases=phases, peak_bytes=int(peak), dominant_phase=phase)


def _rounding(shape: ModelShape, blocks: int, device: Device) -> int:
    """Half an allocation unit per live buffer: weights, adapters and saved activations."""
    buffers = shape.layers * 12 + shape.lora_modules_per_layer * blocks * 5 + blocks * 14
    return buffers * device.allocation_granularity // 2
