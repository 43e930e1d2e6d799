"""A BERT checkpoint in Hugging Face form (config.json, model.safetensors, vocab.txt,
tokenizer.json, tokenizer_config.json) -> GGUF, F16,
with the tensors and the architecture/tokenizer metadata that llama.cpp's convert_hf_to_gguf.py
writes for `bert` (tests/test_convert_bert.py checks the tensors bit for bit, and those keys,
against the converter's own output recorded in tests/fixtures/minilm_convert_llamacpp.json).

Why our own: the converter needs torch and transformers, which `make models` cannot install in
CI; this needs NumPy and the gguf package only. It reads safetensors files itself (a JSON header,
then raw little-endian arrays). Descriptive `general.*` keys the converter takes from the model
card (datasets, tags, license) are left out: nothing in llama.cpp or llamajit reads them.

    .venv/bin/python scripts/convert_bert.py MODEL_DIR OUT.gguf [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64}

# Hugging Face name (after "bert."/"embeddings." handling below) -> GGUF name; {i}: the layer
_LAYER = {
    "attention.self.query": "attn_q", "attention.self.key": "attn_k", "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output", "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up", "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm",
}
_TOP = {
    "embeddings.word_embeddings": "token_embd", "embeddings.position_embeddings": "position_embd",
    "embeddings.token_type_embeddings": "token_types", "embeddings.LayerNorm": "token_embd_norm",
}
# kept in float32 by the converter whatever --outtype says (besides every 1-D tensor)
_F32 = ("position_embd.weight", "token_types.weight")


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw, _DTYPES[info["dtype"]], (b - a) // np.dtype(_DTYPES[info["dtype"]]).itemsize,
                            8 + n + a).reshape(info["shape"])
        if info["dtype"] == "BF16":  # the upper half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    return out


def gguf_name(hf: str) -> str | None:
    """The GGUF tensor name of a checkpoint tensor; None for the ones the converter drops."""
    name = hf.removeprefix("bert.")
    if name.startswith("pooler.") or name.endswith("position_ids") or name.startswith("cls."):
        return None  # the pooler and MLM head are not part of llama.cpp's bert graph
    stem, _, kind = name.rpartition(".")
    if stem.startswith("encoder.layer."):
        i, _, rest = stem.removeprefix("encoder.layer.").partition(".")
        return f"blk.{int(i)}.{_LAYER[rest]}.{kind}"
    return f"{_TOP[stem]}.{kind}"


def phantom(tok: str, control: bool) -> str:
    """The converter's WordPiece form: word starts get '▁', '##' continuations lose their mark;
    control tokens stay as they are."""
    if control:
        return tok
    return tok[2:] if tok.startswith("##") else "\u2581" + tok


def convert(model_dir: Path, out: Path, name: str | None = None) -> None:
    import gguf

    cfg = json.loads((model_dir / "config.json").read_text())
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    if cfg.get("architectures") != ["BertModel"] or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise SystemExit(f"{model_dir}: not a plain BertModel with absolute positions")
    ids = {t: i for i, t in enumerate(vocab)}
    w = gguf.GGUFWriter(str(out), "bert")
    w.add_type("model")
    w.add_name(name or Path(cfg.get("_name_or_path", model_dir.name)).name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_causal_attention(False)
    pool = json.loads((model_dir / "1_Pooling" / "config.json").read_text()) if (
        model_dir / "1_Pooling" / "config.json").exists() else {}
    w.add_pooling_type(gguf.PoolingType.CLS if pool.get("pooling_mode_cls_token") else gguf.PoolingType.MEAN)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_token_type_count(cfg["type_vocab_size"])
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("jina-v2-en")  # what the converter's hash of this WordPiece pre-tokenizer names
    # the tokenizer's special added tokens are control tokens ([UNK] too), every other one normal
    added = json.loads((model_dir / "tokenizer.json").read_text())["added_tokens"]
    control = {a["id"] for a in added if a["special"]}
    w.add_token_list([phantom(t, i in control) for i, t in enumerate(vocab)])
    w.add_token_types([gguf.TokenType.CONTROL if i in control else gguf.TokenType.NORMAL for i in range(len(vocab))])
    w.add_bos_token_id(ids[tok_cfg["cls_token"]])
    w.add_eos_token_id(ids[tok_cfg["sep_token"]])
    w.add_unk_token_id(ids[tok_cfg["unk_token"]])
    w.add_sep_token_id(ids[tok_cfg["sep_token"]])
    w.add_pad_token_id(ids[tok_cfg["pad_token"]])
    w.add_mask_token_id(ids[tok_cfg["mask_token"]])
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)
    w.add_add_sep_token(False)
    w.add_bool("tokenizer.ggml.normalizer.lowercase", bool(tok_cfg.get("do_lower_case", False)))
    for hf, arr in read_safetensors(model_dir / "model.safetensors").items():
        g = gguf_name(hf)
        if g is None:
            continue
        arr = np.ascontiguousarray(arr, np.float32)
        keep32 = arr.ndim <= 1 or g in _F32
        w.add_tensor(g, arr if keep32 else arr.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--name")
    a = ap.parse_args(argv)
    convert(a.model_dir, a.out, a.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
