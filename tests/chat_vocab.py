"""SmolLM2's real vocabulary with a grammar compiler, loaded once per test session for the
tool-call grammar tests of every format module (loading it per test file would cost seconds each)."""

from __future__ import annotations

from functools import lru_cache

from service.chat.plan import marker, specials
from service.chat.toolcall_formats import ToolFormat
from service.chat.toolcall_grammar import build_grammar
from service.gguf_reader import read_gguf
from service.sampling import GrammarCompiler
from service.tokenizer import Tokenizer
from tests.server_proc import SMOLLM2


@lru_cache(maxsize=1)
def vocab() -> tuple[Tokenizer, GrammarCompiler]:
    tok = Tokenizer.from_metadata(read_gguf(str(SMOLLM2)).metadata)
    return tok, GrammarCompiler(tok)


def constraint(fmt: ToolFormat, functions: list[dict], *, required: bool = False, parallel: bool = False):
    """A fresh compiled tool-call constraint for `functions` in format `fmt`."""
    tok, gc = vocab()
    lark = build_grammar(fmt, functions, required=required, parallel=parallel, response_schema=None,
                         marker=lambda s: marker(tok, gc, s), specials=specials(gc))
    return gc.compile(grammar=lark)


def accepts(fmt: ToolFormat, functions: list[dict], text: str, **kw) -> bool:
    """Whether the constraint lets the model write all of `text` and stop there."""
    tok, _ = vocab()
    c = constraint(fmt, functions, **kw)
    for t in tok.tokenize(text, add_special=False, parse_special=True):
        if not c.allows(t):
            return False
        c.accept(t)
    return c.is_accepting
