"""The server-wide sampling flags: parsed and checked as llama.cpp does, and turned into the
SamplingParams (and structured output) every request starts from; a request's own fields
override them (through a real server: test_cli.py)."""

from __future__ import annotations

import math

import pytest

from service.args import ServerArgs, parse_args
from service.sampling import DEFAULT_DRY_SEQUENCE_BREAKERS, DEFAULT_SAMPLERS, SamplingParams


def defaults(*argv: str) -> SamplingParams:
    return parse_args(list(argv), {}).sampling_defaults()


# flag arguments, SamplingParams field (llama-server's JSON name), value
FLAGS = [
    (["--temp", "0.3"], "temperature", 0.3), (["--temperature", "-2"], "temperature", 0.0),
    (["--top-k", "3"], "top_k", 3), (["--top-p", "0.5"], "top_p", 0.5), (["--min-p", "0.1"], "min_p", 0.1),
    (["-s", "5"], "seed", 5), (["--seed", "-1"], "seed", 0xFFFFFFFF),
    (["--repeat-penalty", "1.3"], "repeat_penalty", 1.3), (["--repeat-last-n", "32"], "repeat_last_n", 32),
    (["--presence-penalty", "0.5"], "presence_penalty", 0.5),
    (["--frequency-penalty", "-0.5"], "frequency_penalty", -0.5),
    (["--dry-multiplier", "0.8"], "dry_multiplier", 0.8), (["--dry-base", "2"], "dry_base", 2.0),
    (["--dry-base", "0.5"], "dry_base", 1.75),  # below 1: llama.cpp keeps its default
    (["--dry-allowed-length", "3"], "dry_allowed_length", 3),
    (["--dry-penalty-last-n", "16"], "dry_penalty_last_n", 16),
    (["--mirostat", "2"], "mirostat", 2), (["--mirostat-lr", "0.2"], "mirostat_eta", 0.2),
    (["--mirostat-ent", "3"], "mirostat_tau", 3.0), (["--typical", "0.7"], "typical_p", 0.7),
    (["--typical-p", "0.6"], "typical_p", 0.6), (["--top-nsigma", "1.5"], "top_n_sigma", 1.5),
    (["--top-n-sigma", "2"], "top_n_sigma", 2.0), (["--xtc-probability", "0.3"], "xtc_probability", 0.3),
    (["--xtc-threshold", "0.2"], "xtc_threshold", 0.2), (["--dynatemp-range", "0.5"], "dynatemp_range", 0.5),
    (["--dynatemp-exp", "2"], "dynatemp_exponent", 2.0), (["--min-keep", "2"], "min_keep", 2),
    (["--ignore-eos"], "ignore_eos", True), (["-l", "15043+1"], "logit_bias", ((15043, 1.0),)),
    (["--samplers", "top_k;temperature"], "samplers", ("top_k", "temperature")),
    (["--samplers", "topk;min-p;nucleus;temp"], "samplers", ("top_k", "min_p", "top_p", "temperature")),
    (["--sampling-seq", "kt"], "samplers", ("top_k", "temperature")),
    (["--sampler-seq", "edskypmxt"], "samplers", DEFAULT_SAMPLERS),
]


def test_defaults_are_llama_servers():
    assert defaults() == SamplingParams()
    a = ServerArgs()
    assert (a.samplers, a.dry_sequence_breakers) == (DEFAULT_SAMPLERS, DEFAULT_DRY_SEQUENCE_BREAKERS)


@pytest.mark.parametrize("argv,field,want", FLAGS, ids=[" ".join(f[0]) for f in FLAGS])
def test_flag_sets_the_request_default(argv, field, want):
    got = getattr(defaults(*argv), field)
    assert got == pytest.approx(want) if isinstance(want, float) else got == want


def test_environment_variables_of_sampling_flags():
    a = parse_args([], {"LLAMA_ARG_REPEAT_PENALTY": "1.1", "LLAMA_ARG_PRESENCE_PENALTY": "0.25",
                        "LLAMA_ARG_FREQUENCY_PENALTY": "0.5", "LLAMA_ARG_TOP_K": "7"}).sampling_defaults()
    assert (a.repeat_penalty, a.presence_penalty, a.frequency_penalty, a.top_k) == (1.1, 0.25, 0.5, 7)


def test_dry_sequence_breakers_replace_clear_and_unescape():
    assert defaults("--dry-sequence-breaker", "x").dry_sequence_breakers == ("x",)  # the defaults go
    assert defaults("--dry-sequence-breaker", "a", "--dry-sequence-breaker", "b").dry_sequence_breakers == ("a", "b")
    assert defaults("--dry-sequence-breaker", "none").dry_sequence_breakers == ()
    assert defaults("--dry-sequence-breaker", "a", "--dry-sequence-breaker", "none",
                    "--dry-sequence-breaker", "b").dry_sequence_breakers == ("b",)
    assert defaults("--dry-sequence-breaker", r"\n\t\x41\q").dry_sequence_breakers == ("\n\tA\\q",)  # -e is on
    assert defaults("--no-escape", "--dry-sequence-breaker", r"\n").dry_sequence_breakers == ("\\n",)


def test_logit_bias_forms_and_vocabulary():
    a = parse_args(["-l", "5-inf", "--logit-bias", "7 + 2.5", "-l", "90000+1"], {})
    assert a.logit_bias == ((5, -math.inf), (7, 2.5), (90000, 1.0))
    assert a.sampling_defaults(n_vocab=1000).logit_bias == ((5, -math.inf), (7, 2.5))  # as requests drop them


def test_windows_are_capped_at_the_context():
    s = parse_args(["--repeat-last-n", "5000", "--dry-penalty-last-n", "9000"], {}).sampling_defaults(n_ctx=256)
    assert (s.repeat_last_n, s.dry_penalty_last_n) == (256, 256)


def test_grammar_and_schema_the_later_one_wins(tmp_path):
    g, j = tmp_path / "g.gbnf", tmp_path / "s.json"
    g.write_text('root ::= "yes" | "no"')
    j.write_text('{"type": "object"}')
    a = parse_args(["--grammar", 'root ::= "a"'], {})
    assert (a.grammar, a.json_schema) == ('root ::= "a"', None)
    s = a.default_structured()
    assert (s.grammar, s.schema, s.field) == ('root ::= "a"', None, "--grammar")
    a = parse_args(["--grammar-file", str(g), "-jf", str(j)], {})
    assert (a.grammar, a.json_schema) == (None, {"type": "object"})
    assert a.default_structured().field == "--json-schema"
    a = parse_args(["-j", "{}", "--grammar-file", str(g)], {})
    assert (a.grammar, a.json_schema) == ('root ::= "yes" | "no"', None)
    assert ServerArgs().default_structured() is None


BAD = [
    (["--repeat-penalty", "0"], "--repeat-penalty"), (["--repeat-last-n", "-1"], "--repeat-last-n"),
    (["--dry-penalty-last-n", "-1"], "--dry-penalty-last-n"), (["--mirostat", "3"], "--mirostat"),
    (["--top-k", "-2"], "--top-k"), (["--xtc-threshold", "1.5"], "--xtc-threshold"),
    (["--typical", "2"], "--typical"), (["--presence-penalty", "inf"], "--presence-penalty"),
    (["-l", "abc"], "--logit-bias"), (["-l", "5+inf"], "--logit-bias"), (["-l", "5*2"], "--logit-bias"),
    (["--samplers", "top_k;bogus"], "--samplers"), (["--samplers", "adaptive_p"], "--samplers"),
    (["--sampling-seq", "kz"], "--sampling-seq"), (["--sampling-seq", "k;t"], "--sampling-seq"),
    (["-j", "[1]"], "--json-schema"), (["-j", "{bad"], "--json-schema"), (["--grammar-file", "/nonexistent.gbnf"],
                                                                            "--grammar-file"),
    (["-jf", "/nonexistent.json"], "--json-schema-file"), (["--dynatemp-range", "-1"], "--dynatemp-range"),
]


@pytest.mark.parametrize("argv,naming", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_sampling_values_exit_2_naming_the_flag(argv, naming, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv, {})
    err = capsys.readouterr().err
    assert e.value.code == 2 and naming in err and "unrecognized" not in err, err
