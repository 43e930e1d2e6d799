"""service.engine.budget: the thinking budget's phases, token by token."""

from __future__ import annotations

from service.engine.budget import BudgetTracker, Phase
from service.engine.task import ThinkingBudget

END = (7, 8, 9)  # message + "</think>" as tokens


def run(b: ThinkingBudget, pieces: list[str]) -> tuple[list, Phase]:
    """Feed the output piece by piece as the engine does; record where an end token was forced."""
    t, text, out = BudgetTracker(b), "", []
    for piece in pieces:
        f = t.forced()
        if f is not None:
            out.append(f)
            piece = "<forced>"
        text += piece
        t.seen(text)
        out.append(piece)
    return out, t.phase


def test_forced_open_block_is_cut_after_n_tokens():
    out, phase = run(ThinkingBudget(2, "<think>", "</think>", True, END), ["a", "b", "c", "d", "e", "f"])
    assert out[:3] == ["a", "b", 7] and out.count("<forced>") == 3 and phase is Phase.DONE


def test_zero_budget_closes_before_the_first_token():
    out, _ = run(ThinkingBudget(0, "<think>", "</think>", True, END), ["a", "b", "c", "d"])
    assert out[0] == 7


def test_a_block_the_model_opens_and_one_it_closes_in_time():
    out, _ = run(ThinkingBudget(1, "<think>", "</think>", False, END), ["<think>", "x", "y", "z", "w"])
    assert out[:3] == ["<think>", "x", 7]
    out, phase = run(ThinkingBudget(5, "<think>", "</think>", False, END), ["<think>", "x", "</think>", "a", "b",
                                                                            "c", "d", "e", "f"])
    assert 7 not in out and phase is Phase.DONE


def test_no_block_no_forcing():
    out, phase = run(ThinkingBudget(0, "<think>", "</think>", False, END), ["Hello", "a", "b"])
    assert 7 not in out and phase is Phase.DONE
    # a prefix of the opening tag waits
    t = BudgetTracker(ThinkingBudget(0, "<think>", "</think>", False, END))
    t.seen("<th")
    assert t.phase is Phase.BEFORE
