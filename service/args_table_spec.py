"""The speculative decoding flags that llamajit has (issue 19, part 4): --spec-type with the types
`none`, `ngram-simple` and `draft-simple` (a draft model, -md: service/engine/draft.py), the
ngram-simple sizes, and the draft model's limits and layers on the GPU (-ngld).

Checks and ranges are llama.cpp's (common/arg.cpp). --spec-type takes a comma-separated list;
any `none` in it means none, as in llama.cpp. A type llamajit has not built (the other draft
types, the ngram maps, ngram-mod, the ngram cache) exits 2 naming it, as the UNBUILT rows do. As in
llama-server, -md alone drafts nothing: it takes --spec-type draft-simple. Rows that llama-server's
ngram-simple does not read either are INERT, with why: --spec-ngram-simple-min-hits (only the
ngram-map types count hits).
"""

from __future__ import annotations

from dataclasses import replace

from service.args_conv import float_in, gpu_layers, int_in, text
from service.args_spec import SERVER, Effect, Flag, value
from service.args_table_cache import cache_type

ALL_TYPES = ("none", "draft-simple", "draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark", "ngram-simple",
             "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")
BUILT = ("none", "ngram-simple", "draft-simple")

def spec_types(s: str) -> tuple[str, ...]:
    """--spec-type: comma-separated types; any 'none' means none (llama.cpp's rule). A known type
    that llamajit has not built is refused, naming it."""
    names = tuple(x for x in s.split(",") if x)
    for n in names:
        if n not in ALL_TYPES:
            raise ValueError(f"unknown speculative type {n!r} (choose from {', '.join(ALL_TYPES)})")
    if "none" in names or not names:
        return ("none",)
    missing = [n for n in names if n not in BUILT]
    if missing:
        raise ValueError(f"speculative decoding type {', '.join(missing)} is not available in llamajit yet "
                         f"(built: {', '.join(BUILT)})")
    return tuple(dict.fromkeys(names))


_SIZE = int_in(1, 1024, "an ngram size from 1 to 1024")


def _inert(row: Flag, why: str) -> Flag:
    return replace(row, effect=Effect.INERT, why=why)


SPEC_FLAGS: tuple[Flag, ...] = (
    value("spec_type", "--spec-type", "LLAMA_ARG_SPEC_TYPE", "comma-separated list of types of speculative decoding "
          "to use: none, ngram-simple or draft-simple (with -md) (the other types, "
          + ", ".join(t for t in ALL_TYPES if t not in BUILT) + ", are not available in llamajit yet) (default: none)", spec_types, "none,draft-simple,...", group=SERVER),
    value("spec_ngram_simple_size_n", "--spec-ngram-simple-size-n", "", "ngram size N for ngram-simple speculative "
          "decoding, length of lookup n-gram", _SIZE, group=SERVER),
    value("spec_ngram_simple_size_m", "--spec-ngram-simple-size-m", "", "ngram size M for ngram-simple speculative "
          "decoding, length of draft m-gram", _SIZE, group=SERVER),
    _inert(value("spec_ngram_simple_min_hits", "--spec-ngram-simple-min-hits", "", "minimum hits for ngram-simple "
                 "speculative decoding", int_in(1)),
           "llama-server's ngram-simple does not read it either (only the ngram-map types count hits)"),
    value("spec_draft_model", "--spec-draft-model -md --model-draft", "LLAMA_ARG_SPEC_DRAFT_MODEL", "draft model "
          "for speculative decoding (default: unused); drafts with --spec-type draft-simple", text, "FNAME",
          group=SERVER),
    value("spec_draft_ngl", "--spec-draft-ngl -ngld --gpu-layers-draft --n-gpu-layers-draft",
          "LLAMA_ARG_N_GPU_LAYERS_DRAFT", "max. number of draft model layers to store in VRAM, either an exact "
          "number, 'auto', or 'all' (default: auto)", gpu_layers, group=SERVER),
    value("spec_draft_type_k", "--spec-draft-type-k -ctkd --cache-type-k-draft", "LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_K",
          "KV cache data type for K of the draft model (default: f16; the types of -ctk)", cache_type, "TYPE",
          group=SERVER),
    value("spec_draft_type_v", "--spec-draft-type-v -ctvd --cache-type-v-draft", "LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_V",
          "KV cache data type for V of the draft model (default: f16; the types of -ctv)", cache_type, "TYPE",
          group=SERVER),
    value("spec_draft_n_max", "--spec-draft-n-max", "LLAMA_ARG_SPEC_DRAFT_N_MAX", "number of tokens to draft for "
          "speculative decoding with a draft model (default: 3)", int_in(0), group=SERVER),
    value("spec_draft_n_min", "--spec-draft-n-min", "LLAMA_ARG_SPEC_DRAFT_N_MIN", "minimum number of draft tokens "
          "to use for speculative decoding with a draft model (default: 0)", int_in(), group=SERVER),
    value("spec_draft_p_min", "--spec-draft-p-min --draft-p-min", "LLAMA_ARG_SPEC_DRAFT_P_MIN", "minimum "
          "speculative decoding probability (greedy) of a draft model's token (default: 0.00)", float_in(), "P",
          group=SERVER),
)
