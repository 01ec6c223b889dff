"""Training data in mlx-lm's formats, and the batches the check run trains on.

`--data DIR` reads `train.jsonl` (rows of `{"text"}`, `{"messages"}` or
`{"prompt","completion"}`) through mlx-lm's own dataset classes, so tokenisation and
masking are exactly what `mlx_lm.lora` would do. Without `--data` the synthetic corpus
in the target voice is used, which any tokenizer can encode offline.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from lora_harness.core.errors import InputError
from lora_harness.core.validation import read_text
from lora_harness.text import corpus

DEFAULT_VOICE = "folksy"


def default_rows(count: int = 64, seed: int = 0) -> list[dict]:
    return [{"text": text} for text in corpus.corpus(DEFAULT_VOICE, count, seed=seed)]


def default_prompts() -> list[str]:
    """Neutral topic openings: they do not give the voice away, so the model picks it."""
    return [corpus.prompt_for(topic) for topic in corpus.TOPICS[:8]]


def default_references(count: int = 64) -> list[str]:
    """Target-voice texts the training rows were not drawn from (another seed), sans topic."""
    texts = corpus.corpus(DEFAULT_VOICE, count, seed=1000)
    return [text.split(":", 1)[1].strip() for text in texts]


def read_texts(path: str, what: str) -> list[str]:
    """Lines of a text file, or the text/prompt field of each row of a .jsonl file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"{what} {path} is not a file; pass a .txt (one per line) or .jsonl file")
    if file.suffix == ".jsonl":
        rows = read_jsonl(file)
        texts = [row.get("text") or row.get("prompt") or "" for row in rows]
        texts = [t if isinstance(t, str) else "" for t in texts]
    else:
        texts = read_text(file, what, "pass a .txt file, one text per line").splitlines()
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise InputError(f"{what} {path} holds no text; one non-empty text per line (or row)")
    return texts


def data_fingerprint(rows: list[dict]) -> str:
    import hashlib

    blob = json.dumps(rows, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


JSONL_REMEDY = "each line must be one JSON object in mlx-lm's format"
CHAT_ROLES = ("system", "user", "assistant", "tool")


def read_jsonl(path: Path, kind: str | None = None) -> list[dict]:
    """The rows of a .jsonl file; with `kind` ("sft" or "dpo") every row is checked for it."""
    text = read_text(path, "training data", f"--data must be a folder with {Path(path).name}")
    rows, check_row = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise InputError(f"{path}:{number} is not valid JSON; {JSONL_REMEDY}")
        if not isinstance(row, dict):
            raise InputError(f'{path}:{number} must be a JSON object such as {{"text": ...}}')
        if kind is not None:
            check_row = check_row or row_checker(row, kind, f"{path}:{number}")
            problem = check_row(row)
            if problem:
                raise InputError(f"{path}:{number}: {problem}")
        rows.append(row)
    if not rows:
        raise InputError(f"{path} has no rows; add training examples")
    return rows


def row_checker(first: dict, kind: str, where: str):
    """What every row must hold, decided by the first row as mlx-lm decides its format."""
    if kind == "dpo":
        keys = ("prompt", "chosen", "rejected")
        return lambda row: _strings(row, keys, "a DPO row (prompt, chosen and rejected)")
    if "prompt" in first and "completion" in first:
        return lambda row: _strings(row, ("prompt", "completion"), "a completions row")
    if "messages" in first:
        return _chat_problem
    if "text" in first:
        return lambda row: _strings(row, ("text",), "a text row")
    raise InputError(
        f"{where}: no mlx-lm format (keys {sorted(first)[:5]}); rows need "
        '"text", "messages" or "prompt" and "completion"'
    )


def _strings(row: dict, keys: tuple, what: str) -> str | None:
    for key in keys:
        value = row.get(key)
        if not isinstance(value, str):
            got = "it is missing" if key not in row else f"got {type(value).__name__}"
            return f'{what} needs a string "{key}" ({got}); every row must have the first row\'s format'
        if not value.strip():
            return f'"{key}" is empty; remove the row or give it text'
    return None


def _chat_problem(row: dict) -> str | None:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return 'a chat row needs a non-empty "messages" list like the first row'
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{index}] must be an object with role and content"
        if message.get("role") not in CHAT_ROLES:
            return f"messages[{index}] has role {message.get('role')!r}; use one of {', '.join(CHAT_ROLES)}"
        if not isinstance(message.get("content"), str):
            return f'messages[{index}] needs a string "content"'
    return None


def load_rows(data_dir: str | None, split: str = "train", kind: str = "sft") -> list[dict]:
    if data_dir is None:
        return default_rows()
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise InputError(f"--data {data_dir} is not a folder; pass a folder holding {split}.jsonl")
    return read_jsonl(folder / f"{split}.jsonl", kind)


def tokenized_dataset(rows: list[dict], tokenizer, mask_prompt: bool = False):
    """mlx-lm's dataset for `rows` (it picks text/chat/completions from the first row)."""
    from mlx_lm.tuner.datasets import CacheDataset, create_dataset

    if mask_prompt and rows and not _has_prompt(rows[0]):
        raise InputError(
            "--mask-prompt needs prompt/completion or messages rows (text rows have no prompt); "
            "pass --data with such rows or drop --mask-prompt"
        )
    try:
        dataset = create_dataset(rows, tokenizer, SimpleNamespace(mask_prompt=mask_prompt))
    except ValueError as exc:
        raise InputError(
            f"training rows are in no mlx-lm format ({exc}); use text, messages or prompt/completion"
        )
    return CacheDataset(dataset)


def _has_prompt(row: dict) -> bool:
    """mlx-lm masks a prompt only in prompt/completion and chat rows."""
    return {"prompt", "completion"} <= row.keys() or "messages" in row


def first_batch(dataset, batch_size: int, max_seq_length: int, seed: int):
    """One (tokens, lengths) batch, made by mlx-lm's own batcher."""
    return first_batch_and_examples(dataset, batch_size, max_seq_length, seed)[0]


def first_batch_and_examples(dataset, batch_size: int, max_seq_length: int, seed: int):
    """((tokens, lengths), the dataset index of each row): the batch and where it came from."""
    from mlx_lm.tuner.trainer import iterate_batches

    from lora_harness.text.batches import fetch_log

    if len(dataset) < batch_size:
        raise InputError(
            f"the data has {len(dataset)} examples but --batch-size is {batch_size}; "
            "lower --batch-size or add examples"
        )
    log = fetch_log(dataset)
    # mlx-lm prints its truncation warning on stdout, which `--json -` keeps for the report.
    with contextlib.redirect_stdout(sys.stderr):
        batches = iterate_batches(log, batch_size, max_seq_length, loop=False, seed=seed)
        batch = next(iter(batches))
    return batch, log.last(batch[0].shape[0])
