"""gpt2-style byte-level BPE, run by the Rust `tokenizers` library.

llama.cpp pre-splits text with a list of regexes chosen by `tokenizer.ggml.pre` (each regex splits
every piece left by the previous one, keeping both matches and the text between them), byte-encodes
each piece with the GPT-2 byte->unicode table and merges by rank. `tokenizers` does the same with a
Sequence of Split(Regex, "isolated") steps, ByteLevel(use_regex=False) and a BPE model, provided
the regexes are written for its engine (Oniguruma) so that they split exactly as llama.cpp does:

* llama.cpp runs the common gpt2/llama3 patterns through hand-written splitters and the rest
  through std::regex on a text where every non-ASCII code point is replaced by a byte standing for
  its category (non-ASCII whitespace becomes '\\v'). For the patterns below Oniguruma's Unicode
  \\s, \\p{L}, \\p{N}, \\p{P} give the same splits.
* `$` in Oniguruma also matches before a newline; llama.cpp's means end of piece, so `\\z` here.
* Literal ranges that contain non-ASCII whitespace never match it in llama.cpp (that whitespace is
  turned into '\\v' before matching); such ranges are intersected with [^\\s] here.
* The gpt2 pattern in llama.cpp lacks a final `|\\s+`; adding it changes nothing (the only text
  left unmatched is a lone whitespace run, which stays one piece either way).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, models, pre_tokenizers

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SEED_CODER = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BAILING = (r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+")
_PUNCT_RUN = r"[\p{P}\$\+<=>\^~\|]+"
_CJK = r"[一-龥ࠀ-一가-퟿&&[^\s]]+"
_PORO = r" ?[^(\s|.,!?…。，、।۔،)]+"
_DEEPSEEK_LETTERS = (
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚ"
    r"Ḁ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄ"
    r"Ⰰ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
)

# Regex lists per pre-tokenizer type.
REGEXES: dict[str, list[str]] = {
    "default": [_PUNCT_RUN, GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt2": [GPT2],
    "llama3": [LLAMA3],
    "qwen2": [QWEN2],
    "starcoder": [r"\p{N}", GPT2],
    "falcon": [_PUNCT_RUN, GPT2, r"[0-9][0-9][0-9]"],
    # U+3000 is left out of the last range: llama.cpp sees it as whitespace, never as a literal.
    "deepseek-llm": ["[\r\n]", _DEEPSEEK_LETTERS, r"\s?[!-/:-~！-／：-～‘-‟、-。]+", r"\s+\z",
                     _CJK, r"\p{N}+"],
    "deepseek-coder": ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"],
    "poro": [_PORO],
    "viking": [_PORO, r"\p{N}"],
    "seed-coder": [SEED_CODER],
    "bailingmoe": [BAILING],
}


@dataclass(frozen=True)
class PreSpec:
    """A pre-tokenizer type and the vocab flags llama.cpp sets along with it."""

    name: str
    clean_spaces: bool = True
    ignore_merges: bool = False
    add_bos: bool = False
    no_bos: bool = False  # the model has no BOS token (chatglm)


def _specs() -> dict[str, PreSpec]:
    table: dict[str, PreSpec] = {}

    def add(names: str, kind: str, **flags: bool) -> None:
        for n in names.split():
            table[n] = PreSpec(kind, **flags)

    add("default", "default")
    add("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
        "llama3", ignore_merges=True, add_bos=True)
    add("dbrx smaug-bpe", "llama3")
    add("glm4 chatglm-bpe", "llama3", no_bos=True)
    add("deepseek-llm", "deepseek-llm", clean_spaces=False)
    add("deepseek-coder", "deepseek-coder", clean_spaces=False)
    add("falcon", "falcon")
    add("gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
        "mpt olmo jais exaone4", "gpt2")
    add("trillion granite-docling", "gpt2", clean_spaces=False)
    add("starcoder refact codeshell exaone minerva-7b mellum2", "starcoder")
    add("smollm command-r", "starcoder", clean_spaces=False)
    add("qwen2 deepseek-r1-qwen kormo f2llmv2 hunyuan grok-2 solar-open", "qwen2",
        clean_spaces=False)
    add("megrez stablelm2", "qwen2")
    add("poro-chat", "poro", clean_spaces=False)
    add("bloom gpt3-finnish", "poro")
    add("viking", "viking", clean_spaces=False)
    add("seed-coder", "seed-coder", clean_spaces=False)
    add("bailingmoe bailingmoe2 llada-moe", "bailingmoe", clean_spaces=False)
    return table


PRE_SPECS = _specs()


def resolve_pre(pre: str) -> PreSpec:
    spec = PRE_SPECS.get(pre)
    if spec is None:
        raise ValueError(f"unsupported pre-tokenizer {pre!r} (tokenizer.ggml.pre) for a gpt2 "
                         f"tokenizer; supported: {', '.join(sorted(PRE_SPECS))}")
    return spec


def build_pre_tokenizer(pre_type: str, byte_level: bool = True) -> pre_tokenizers.PreTokenizer:
    """The regex splits for `pre_type` (then the GPT-2 byte mapping unless byte_level=False)."""
    steps = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in REGEXES[pre_type]]
    if byte_level:
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def split_words(pre_type: str, text: str) -> list[str]:
    """The pieces llama.cpp's regex split produces for `text` (before byte encoding)."""
    pre = build_pre_tokenizer(pre_type, byte_level=False)
    return [w for w, _ in pre.pre_tokenize_str(text)]


class BPEEncoder:
    """Encodes plain text (no special tokens) into ids with a `tokenizers` BPE model."""

    def __init__(self, tokens: list[str], token_to_id: dict[str, int],
                 merges: list[tuple[str, str]], pre_type: str, ignore_merges: bool):
        # `tokenizers` refuses merges whose parts or result are not tokens; llama.cpp would apply
        # them and later fall back to single bytes. Such merges do not occur in real vocabularies.
        good = [(a, b) for a, b in merges
                if a in token_to_id and b in token_to_id and a + b in token_to_id]
        model = models.BPE(vocab=dict(token_to_id), merges=good, ignore_merges=ignore_merges)
        tk = Tokenizer(model)
        tk.pre_tokenizer = build_pre_tokenizer(pre_type)
        self._tk = tk

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return self._tk.encode(text, add_special_tokens=False).ids

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tk.encode_batch(texts, add_special_tokens=False)]
