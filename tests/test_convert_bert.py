"""scripts/convert_bert.py (what `make models` runs on all-MiniLM-L6-v2's checkpoint) writes what
llama.cpp's own convert_hf_to_gguf.py writes: every tensor's type, shape and bytes, and every
metadata value outside the descriptive `general.*` keys, against the converter's output recorded
in tests/fixtures/minilm_llamacpp.json (sha256s). The file's own sha256 is checked at fetch time."""

from __future__ import annotations

from tests.minilm import describe, fixture, model_path


def test_tensors_and_metadata_equal_llamacpp_converter():
    assert describe(model_path()) == fixture()["converter"]


def test_names_and_phantom_space():
    import sys

    from tests.minilm import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    from convert_bert import gguf_name, phantom

    assert gguf_name("bert.encoder.layer.3.attention.self.query.weight") == "blk.3.attn_q.weight"
    assert gguf_name("encoder.layer.0.output.LayerNorm.bias") == "blk.0.layer_output_norm.bias"
    assert gguf_name("pooler.dense.weight") is None
    assert [phantom("play", False), phantom("##ing", False), phantom("[CLS]", True)] == ["▁play", "ing", "[CLS]"]
