"""Issue 28.8: textual-inversion releases (diffusers learned_embeds, A1111 / kohya emb_params)
given as --lora are applied with diffusers' load_textual_inversion, verified in the text encoder,
named in the record, and change the conditioning (so the scores) of prompts holding the token."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from s2l_scan.conditioning import TextEncoders
from s2l_scan.errors import ModelLoadError, UsageError
from s2l_scan.io.model import LoadedModel, load_pipeline, sha256_file
from tests import model_factory as factory


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.sd1_folder(tmp_path_factory.mktemp("embeddings") / "sd1")


@pytest.fixture(scope="module")
def base_model(base: Path) -> LoadedModel:
    return load_pipeline(base)


def _encode(model: LoadedModel, prompt: str) -> torch.Tensor:
    return TextEncoders.of(model.pipeline).encode([prompt], (32, 32)).hidden


@pytest.mark.parametrize(("layout", "tokens"), [
    ("diffusers", ["<cat-toy>"]), ("kohya", ["mystyle", "mystyle_1", "mystyle_2"])])
def test_an_embedding_release_is_applied_verified_and_named(
        base: Path, base_model: LoadedModel, tmp_path: Path, layout: str,
        tokens: list[str]) -> None:
    file = (factory.diffusers_embedding(base, tmp_path / "ti") if layout == "diffusers"
            else factory.kohya_embedding(base, tmp_path / "mystyle.safetensors"))
    tuned = load_pipeline(base, lora=file)
    assert tuned.adapters == [{"path": str(file), "format": "textual-inversion", "weight": 1.0,
                               "sha256": sha256_file(file), "file": file.name,
                               "layers_changed": len(tokens), "tokens": tokens}]
    vectors = next(iter(load_file(file).values())).reshape(len(tokens), -1)
    table = tuned.pipeline.text_encoder.get_input_embeddings().weight
    ids = tuned.pipeline.tokenizer.convert_tokens_to_ids(tokens)
    torch.testing.assert_close(table[ids], vectors)
    prompt = f"a photo of {tokens[0]}"
    assert not torch.equal(_encode(tuned, prompt), _encode(base_model, prompt))
    torch.testing.assert_close(_encode(tuned, "a photo"), _encode(base_model, "a photo"))
    assert tuned.model_hash != base_model.model_hash


def test_a_multi_vector_token_is_spelled_out_in_prompts(base: Path, tmp_path: Path) -> None:
    tuned = load_pipeline(base, lora=factory.kohya_embedding(base, tmp_path / "zt.safetensors"))
    (ids,) = TextEncoders.of(tuned.pipeline).tokenize(["a zt b"], "cpu")
    expected = tuned.pipeline.tokenizer.convert_tokens_to_ids(["zt", "zt_1", "zt_2"])
    assert [int(i) for i in ids[0] if int(i) in expected] == expected


def test_an_embedding_for_another_text_encoder_or_with_a_weight_is_refused(
        base: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wide.safetensors"
    from safetensors.torch import save_file

    save_file({"emb_params": torch.randn(2, 768)}, wrong)
    with pytest.raises(ModelLoadError, match=r"wide\.safetensors: its text_encoder vectors have "
                       "768 values"):
        load_pipeline(base, lora=wrong)
    with pytest.raises(UsageError, match="has no weight"):
        load_pipeline(base, lora=f"{factory.kohya_embedding(base, tmp_path / 'k.safetensors')}"
                                 ":0.5")
