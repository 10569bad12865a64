"""Textual-inversion releases: new token embeddings added to a pipeline's text encoder(s).

The three layouts trainers write, all as one ``.safetensors`` file (diffusers'
``load_textual_inversion`` reads each):

* diffusers ``learned_embeds.safetensors`` (``textual_inversion.py``): ``{token: [dim]}``, the key
  is the token;
* A1111 / kohya-ss ``train_textual_inversion.py`` (SD-1/2): ``{"emb_params": [n, dim]}``; the
  token is the file's name (A1111 triggers an embedding by its file name);
* SDXL (kohya ``sdxl_train_textual_inversion.py``): ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``,
  one table per text encoder.

An embedding is verified applied like an adapter: each token's vectors are in its text encoder,
and a prompt holding the token encodes differently from the same prompt on the base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s2l_scan.errors import ModelLoadError

SDXL_KEYS = ("clip_l", "clip_g")  # text_encoder, text_encoder_2


def is_embedding(keys: list[str]) -> bool:
    """Whether a safetensors file's keys are a textual-inversion layout, not an adapter's."""
    if set(keys) == {"emb_params"} or (keys and set(keys) <= set(SDXL_KEYS)):
        return True
    return len(keys) == 1 and "." not in keys[0] and "lora" not in keys[0]


def _tables(state: dict[str, Any], weights: Path) -> tuple[str, list[tuple[str, Any]]]:
    """(token, [(encoder slot, vectors [n, dim])]) of one embedding file."""
    if set(state) <= set(SDXL_KEYS):
        return weights.stem, [(("text_encoder", "text_encoder_2")[SDXL_KEYS.index(k)], state[k])
                              for k in SDXL_KEYS if k in state]
    key = next(iter(state))
    token = weights.stem if key == "emb_params" else key
    return token, [("text_encoder", state[key])]


def _tokens(token: str, count: int) -> list[str]:
    """diffusers' names for an n-vector embedding: ``token``, ``token_1``, …"""
    return [token] + [f"{token}_{i}" for i in range(1, count)]


def apply_embedding(pipeline: Any, weights: Path, token: str | None = None) -> list[str]:
    """Add the file's token(s) to the pipeline with diffusers' ``load_textual_inversion``;
    verify them; return the tokens added (in prompt order)."""
    import torch
    from safetensors.torch import load_file

    from s2l_scan.conditioning import TextEncoders

    state = load_file(weights)
    name, tables = _tables(state, weights)
    name = token or name
    prompt = f"a photo of {name}"
    encoders = TextEncoders.of(pipeline)
    before = encoders.encode([prompt], (64, 64)).hidden
    for slot, vectors in tables:
        encoder = getattr(pipeline, slot, None)
        tokenizer = getattr(pipeline, slot.replace("text_encoder", "tokenizer"), None)
        if encoder is None or tokenizer is None:
            raise ModelLoadError(f"{weights}: an embedding for {slot}, which this model lacks.")
        vectors = vectors.reshape(-1, vectors.shape[-1])
        width = encoder.get_input_embeddings().weight.shape[1]
        if vectors.shape[1] != width:
            raise ModelLoadError(
                f"{weights}: its {slot} vectors have {vectors.shape[1]} values, but this "
                f"model's {slot} embeds tokens in {width}; it was trained on another base.")
        if name in tokenizer.get_vocab():
            fix = ("rename the file (its name is the token, as A1111 reads it)"
                   if name == weights.stem else "it would replace that word's meaning")
            raise ModelLoadError(f"{weights}: token {name!r} is already in this model's "
                                 f"{slot.replace('text_encoder', 'tokenizer')}; {fix}.")
        try:
            pipeline.load_textual_inversion(vectors, token=name, text_encoder=encoder,
                                            tokenizer=tokenizer)
        except (ValueError, TypeError) as error:
            raise ModelLoadError(f"{weights}: diffusers could not add the embedding "
                                 f"({error}).") from None
        table = encoder.get_input_embeddings().weight
        added = _tokens(name, len(vectors))
        ids = tokenizer.convert_tokens_to_ids(added)
        if not torch.equal(table[ids].detach().float().cpu(), vectors.to(table.dtype).float()):
            raise ModelLoadError(f"{weights}: token {name!r} was added to {slot}, but its "
                                 "vectors there are not the file's.")
    after = encoders.encode([prompt], (64, 64)).hidden
    if torch.equal(before, after):
        raise ModelLoadError(f"{weights}: adding token {name!r} left the conditioning of "
                             f"{prompt!r} unchanged; the embedding was not applied.")
    return _tokens(name, len(tables[0][1].reshape(-1, tables[0][1].shape[-1])))
