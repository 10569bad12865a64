"""Write CLIP BPE tokenizer files (vocab.json, merges.txt) offline, for a known word list.

The vocabulary is CLIP's: every byte-level character alone and with the end-of-word marker
``</w>`` (so any text tokenizes, if only letter by letter), then one merge chain per corpus
word, then the two special tokens. ``CLIPTokenizer.from_pretrained(folder)`` reads the result
exactly as it reads a real Stable Diffusion tokenizer folder.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

START, END = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77


@cache
def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's (and GPT-2's) reversible byte → printable-unicode table.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def build_vocab(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return (vocab, merges) in which each word of ``words`` is one token."""
    base = list(_bytes_to_unicode().values())
    tokens = base + [ch + "</w>" for ch in base]
    merges: list[tuple[str, str]] = []
    seen = set(tokens)
    for word in sorted({w.lower() for w in words}):
        symbols = [*word[:-1], word[-1] + "</w>"]
        merged = symbols[0]
        for symbol in symbols[1:]:
            pair = (merged, symbol)
            merged = merged + symbol
            if merged not in seen:
                merges.append(pair)
                tokens.append(merged)
                seen.add(merged)
    tokens += [START, END]
    return {token: index for index, token in enumerate(tokens)}, merges


def write_tokenizer(folder: Path, words: list[str]) -> dict[str, int]:
    """Write a CLIPTokenizer folder for ``words``; return the vocabulary."""
    vocab, merges = build_vocab(words)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, sort_keys=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": START,
        "eos_token": END,
        "unk_token": END,
        "pad_token": END,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    special = {"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": END}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True))
    return vocab
