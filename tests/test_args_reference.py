"""Every flag spelling and variable of llama-server's own --help parses (../shared/reference/
llama-server-help.txt, llama.cpp 0c1e570): a compose file or Helm values written for llama-server
must start llamajit, or, for a feature llamajit lacks, stop with a message naming it, never
with "unrecognized arguments".

The spellings, the argument each takes and the variables are read from that help text, not from
our table, so a flag missing from service/args_table_*.py fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.args import parse_args
from service.args_spec import BY_NAME, FLAGS, Effect

ROOT = Path(__file__).resolve().parent.parent
HELP = ROOT.parent / "shared" / "reference" / "llama-server-help.txt"


def help_rows() -> list[tuple[list[str], str]]:
    """(spellings, argument hint) of each flag row. A row starts at column 0 with its names,
    separated by ", " (the first padded to a column: "-c,    --ctx-size N"), then the argument
    hint, then either the description after a run of spaces or, for a long head, nothing (the
    description wraps to the next lines, which are indented)."""
    rows = []
    for line in HELP.read_text().splitlines():
        if not line.startswith("-") or line.startswith("-----"):
            continue
        head = re.split(r"\s{2,}", re.sub(r"^(-[^\s,]+,)\s+", r"\1 ", line).strip(), maxsplit=1)[0]
        names, rest = [], head
        while m := re.match(r"(--?[A-Za-z][\w.-]*)(, |$| )", rest):
            names.append(m.group(1))
            rest = rest[m.end():]
            if m.group(2) != ", ":
                break
        rows.append((names, rest.strip()))
    return rows


ROWS = help_rows()
SPELLINGS = [n for names, _ in ROWS for n in names]
VARIABLES = sorted(set(re.findall(r"\(env: ([A-Z0-9_]+)\)", HELP.read_text())))
# A spelling or value that asks for a missing feature to be off is accepted.
OFF = {"--no-spec-draft-backend-sampling"}
EXITS_0 = {"-h", "--help", "--usage", "--version", "--completion-bash"}


def test_the_extractor_reads_the_whole_help():
    assert len(ROWS) == 255 and 400 <= len(SPELLINGS) <= 425, (len(ROWS), len(SPELLINGS))
    assert len(set(SPELLINGS)) == len(SPELLINGS)
    for n in ("-h", "--usage", "-nkvo", "--no-kv-offload", "-hfr", "--ui-mcp-proxy", "--no-webui-mcp-proxy",
              "--fim-qwen-1.5b-default", "-no-kvu", "--spec-draft-ncmoe", "--control-vector-layer-range"):
        assert n in SPELLINGS, n
    hints = dict((names[0], hint) for names, hint in ROWS)
    assert hints["-c"] == "N" and hints["-fa"] == "[on|off|auto]" and hints["--perf"] == ""
    assert hints["--control-vector-layer-range"] == "START END" and hints["-hf"] == "<user>/<model>[:quant]"
    assert len(VARIABLES) == 148 and sum(v.startswith("LLAMA_ARG_") for v in VARIABLES) == 145


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("flags")
    (d / "keys.txt").write_text("k1\n")
    (d / "t.jinja").write_text("{{ messages }}")
    (d / "g.gbnf").write_text('root ::= "a"')
    (d / "s.json").write_text('{"type": "object"}')
    return d


def sample(name: str, hint: str, files: Path) -> list[str]:
    """A valid argument for a flag, by its hint; the few whose hint does not say enough by name."""
    by_name = {
        "--api-key-file": files / "keys.txt", "--chat-template-file": files / "t.jinja",
        "--grammar-file": files / "g.gbnf", "-jf": files / "s.json", "--json-schema-file": files / "s.json",
        "--ui-config-file": files / "s.json", "--webui-config-file": files / "s.json",
        "--slot-save-path": files, "--media-path": files, "--path": files, "--chat-template-kwargs": "{}",
        "--numa": "isolate",
        "-ctk": "q8_0", "--cache-type-k": "q8_0", "-ctv": "q8_0", "--cache-type-v": "q8_0", "-dev": "none",
        "--device": "none", "--spec-type": "none", "--sleep-idle-seconds": "5", "--samplers": "top_k;temperature",
    }
    by_hint = {
        "N": "1", "M": "ff", "lo-hi": "0-3", "<0|1>": "1", "<0...100>": "50", "[on|off|auto]": "on",
        "[on|off]": "off", "MODE": "auto", "<dev1,dev2,..>": "CUDA0", "N0,N1,N2,...": "3,1",
        "MiB0,MiB1,MiB2,...": "512",
        "KEY=TYPE:VALUE,...": "a=int:1", "FNAME:SCALE,...": "a.gguf:0.5", "START END": ["0", "3"],
        "SEQUENCE": "kt", "TOKEN_ID(+/-)BIAS": "15043+1", "GRAMMAR": 'root ::= "a"', "SCHEMA": "{}", "SEED": "7",
        "P": "0.5", "L": "2", "P0,P1,...": "0.5", "HOST": "127.0.0.1", "PORT": "8081", "JSON": "{}",
        "TOOL1,TOOL2,...": "all", "FORMAT": "auto", "LEVEL": "high", "SIMILARITY": "0.5", "INDEX": "0",
        "<tensor name pattern>=<buffer type>,...": "exps=CPU", "TYPE": "f16",
    }
    v = by_name.get(name) or by_hint.get(hint) or ("none" if hint.startswith("{none") else
                                                     hint[1:].split(",")[0] if hint.startswith("{") else "x")
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


@pytest.mark.parametrize("names,hint", ROWS, ids=[r[0][-1] for r in ROWS])
def test_every_spelling_parses_or_names_the_missing_feature(names, hint, files, capsys):
    for name in names:
        argv = [name, *sample(name, hint, files)] if hint else [name]
        if name in EXITS_0:
            with pytest.raises(SystemExit) as e:
                parse_args(argv, {})
            assert e.value.code == 0
            continue
        row = BY_NAME[name]
        if row.effect is Effect.UNBUILT and name not in OFF:
            with pytest.raises(SystemExit) as e:
                parse_args(argv, {})
            err = capsys.readouterr().err
            assert e.value.code == 2 and f"{name}: {row.why} is not available in llamajit yet" in err, err
            assert "unrecognized" not in err
            continue
        try:
            a = parse_args(argv, {})
        except SystemExit:
            pytest.fail(f"{argv} did not parse: {capsys.readouterr().err}")
        if row.effect is not Effect.WORKS or name in OFF:  # said at startup: no effect, and why
            assert [s for s, _ in a.no_effect] == [name], (argv, a.no_effect)
        else:
            assert a.no_effect == (), argv


def test_every_variable_is_known_and_parses_or_names_the_feature(files, capsys):
    by_env = {e: f for f in FLAGS for e in (*f.env, *f.neg_env())}
    assert set(VARIABLES) <= set(by_env), sorted(set(VARIABLES) - set(by_env))
    hint_of = {n: hint for names, hint in ROWS for n in names}
    for var in VARIABLES:
        row = by_env[var]
        value = "1" if not hint_of[row.names[0]] else sample(row.names[0], hint_of[row.names[0]], files)[0]
        if row.effect is Effect.UNBUILT:
            with pytest.raises(SystemExit) as e:
                parse_args([], {var: value})
            err = capsys.readouterr().err
            assert e.value.code == 2 and f"{var}: {row.why} is not available in llamajit yet" in err, err
        else:
            a = parse_args([], {var: value})
            assert (row.effect is Effect.WORKS) == (a.no_effect == ()), (var, a.no_effect)


def test_one_variable_of_each_kind_through_the_environment():
    a = parse_args([], {"LLAMA_ARG_CTX_SIZE": "96", "LLAMA_ARG_ENDPOINT_METRICS": "on", "LLAMA_ARG_JINJA": "false",
                        "LLAMA_ARG_NO_ENDPOINT_SLOTS": "1", "LLAMA_API_KEY": "a,b", "LLAMA_ARG_FLASH_ATTN": "off",
                        "LLAMA_ARG_NO_MMPROJ_AUTO": "1", "LLAMA_ARG_SPEC_TYPE": "none"})
    assert (a.ctx_size, a.metrics, a.jinja, a.slots, a.api_keys, a.flash_attn) == (96, True, False, False, ("a", "b"),
                                                                                 "off")
    assert {s for s, _ in a.no_effect} == {"LLAMA_ARG_FLASH_ATTN"} and a.spec_type == ("none",)
    assert a.mmproj_auto is False  # LLAMA_ARG_NO_MMPROJ_AUTO works: no projector


def test_effect_counts_and_reasons():
    """Every INERT row says why; every UNBUILT row names its feature; llamajit's extras are few."""
    for f in FLAGS:
        if f.effect is not Effect.WORKS:
            assert f.why and not f.why.endswith("."), f.names
        if f.off is not None:
            assert f.effect is Effect.UNBUILT and f.off_why, f.names
    extras = set(BY_NAME) - set(SPELLINGS)
    assert extras == {"--n-probs-max", "--drain-timeout", "--max-queue", "--log-prompts", "--min-keep", "--mlock",
                      "--mmap", "--no-mmap"}


# ---- what given INERT and UNBUILT flags do


def exits_2(capsys, argv, env=None) -> str:
    with pytest.raises(SystemExit) as e:
        parse_args(argv, env or {})
    assert e.value.code == 2
    return capsys.readouterr().err


def test_unbuilt_feature_exits_2_naming_it(capsys):
    err = exits_2(capsys, ["-m", "m.gguf", "--mmproj-url", "http://h/p.gguf"])
    assert "llama-server: error: --mmproj-url: this multimodal option (--mmproj itself works" in err
    err = exits_2(capsys, ["--control-vector", "a.gguf"])
    assert "--control-vector: control vectors (--control-vector) is not available in llamajit yet" in err
    err = exits_2(capsys, ["-td", "2"])
    assert "-td: this speculative decoding option (only --spec-type ngram-simple and draft-simple, their sizes, " \
           "-md, -ngld, -ctkd and -ctvd work) is not available in llamajit yet" in err
    err = exits_2(capsys, ["--draft", "8"])  # llama-server removed it; the message says what replaced it
    assert "use --spec-draft-n-max or --spec-ngram-mod-n-max" in err
    err = exits_2(capsys, ["--control-vector-layer-range", "1", "4"])
    assert "control vectors" in err
    err = exits_2(capsys, [], {"LLAMA_ARG_MCP_SERVERS_JSON": "{}"})
    assert "LLAMA_ARG_MCP_SERVERS_JSON: " in err and "is not available in llamajit yet" in err
    err = exits_2(capsys, ["--spec-type", "ngram-simple,ngram-mod"])  # a type not built, beside one that is
    assert "--spec-type: speculative decoding type ngram-mod is not available in llamajit yet" in err
    err = exits_2(capsys, [], {"LLAMA_ARG_SPEC_TYPE": "draft-mtp"})
    assert "LLAMA_ARG_SPEC_TYPE='draft-mtp': speculative decoding type draft-mtp is not available" in err
    err = exits_2(capsys, ["--spec-type", "warp"])  # a bad value is a bad value, feature or not
    assert "unknown speculative type 'warp'" in err


def test_asking_for_a_missing_feature_off_is_accepted():
    a = parse_args(["--no-spec-draft-backend-sampling", "--adaptive-target", "-1"], {})
    assert [s for s, _ in a.no_effect] == ["--no-spec-draft-backend-sampling", "--adaptive-target"]


def test_spec_flags_work_and_the_one_ngram_simple_ignores_says_so(capsys):
    a = parse_args(["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "4",
                    "--spec-ngram-simple-size-m", "16"], {})
    assert (a.spec_type, a.spec_ngram_simple_size_n, a.spec_ngram_simple_size_m, a.no_effect) == (
        ("ngram-simple",), 4, 16, ())
    assert parse_args(["--spec-type", "ngram-mod,none"], {}).spec_type == ("none",)  # any none: none (llama.cpp)
    a = parse_args(["--spec-draft-n-max", "16", "--spec-ngram-simple-min-hits", "2", "--spec-draft-n-min", "2"],
                   {"LLAMA_ARG_SPEC_DRAFT_P_MIN": "0.5"})
    assert (a.spec_draft_n_max, a.spec_ngram_simple_min_hits, a.spec_draft_p_min, a.spec_draft_n_min) == (16, 2, 0.5, 2)
    assert [s for s, _ in a.no_effect] == ["--spec-ngram-simple-min-hits"]
    a = parse_args(["--model-draft", "d.gguf", "--spec-type", "draft-simple", "-ngld", "-2", "--draft-p-min", "0.75"], {})
    assert (a.spec_draft_model, a.spec_type, a.spec_draft_ngl, a.spec_draft_p_min) == (
        "d.gguf", ("draft-simple",), "all", 0.75)
    a = parse_args([], {"LLAMA_ARG_SPEC_DRAFT_MODEL": "e.gguf", "LLAMA_ARG_N_GPU_LAYERS_DRAFT": "3"})
    assert (a.spec_draft_model, a.spec_draft_ngl, a.spec_type) == ("e.gguf", "3", ("none",))
    for argv in (["--spec-ngram-simple-size-n", "0"], ["--spec-ngram-simple-size-m", "1025"],
                 ["--spec-ngram-simple-min-hits", "0"], ["--spec-draft-n-max", "-1"]):  # llama.cpp's ranges
        assert f"argument {argv[0]}: invalid value" in exits_2(capsys, argv), argv


def test_mmproj_flags_work():
    a = parse_args(["-m", "m.gguf", "-mm", "p.gguf", "--no-mmproj-offload"], {})
    assert (a.mmproj, a.mmproj_auto, a.mmproj_offload, a.no_effect) == ("p.gguf", True, False, ())
    assert parse_args([], {"LLAMA_ARG_MMPROJ": "q.gguf"}).mmproj == "q.gguf"
    a = parse_args(["--mmproj", "p.gguf", "--no-mmproj"], {"LLAMA_ARG_MMPROJ_AUTO": "on"})
    assert (a.mmproj, a.mmproj_auto) == ("p.gguf", False)  # --no-mmproj: no projector is loaded


def test_inert_flags_given_are_listed_once_with_why_and_defaults_never():
    assert parse_args([], {}).no_effect == ()
    a = parse_args(["--mlock", "-fa", "on", "--mlock", "-C", "ff", "-sp", "-c", "8"],
                   {"LLAMA_ARG_NUMA": "isolate", "LLAMA_ARG_CTX_SIZE": "16"})
    assert a.no_effect == (
        ("--mlock", "llamajit always memory-maps the GGUF file and prepares its weights at load"),
        ("-fa", "attention is always llamajit's own fused kernel"),
        ("-C", "llamajit's kernels run on Numba's thread pool, which it does not pin, prioritize or poll"),
        ("-sp", "not implemented yet"),
        ("LLAMA_ARG_NUMA", "llamajit does no NUMA-specific thread or memory placement"))
    assert (a.mlock, a.flash_attn, a.cpu_mask, a.numa, a.ctx_size) == (True, "on", "ff", "isolate", 8)


def test_optional_values_and_pairs():
    assert parse_args(["-fa"], {}).flash_attn == "on" and parse_args(["--log-colors"], {}).log_colors == "on"
    assert parse_args(["-fit"], {}).fit == "on" and parse_args(["-fit", "0"], {}).fit == "off"
    assert parse_args(["-rea", "-c", "8"], {}).reasoning == "on"
    assert parse_args(["-rea", "auto"], {}).reasoning == "auto"
    a = parse_args(["-r", "User:", "-r", "###", "--tools", "read_file,grep_search", "-ts", "3/1"], {})
    assert (a.reverse_prompt, a.tools, a.tensor_split) == (("User:", "###"), ("read_file", "grep_search"), (3.0, 1.0))


def test_presets_set_their_fields_where_they_stand():
    a = parse_args(["-c", "64", "--fim-qwen-7b-default", "--port", "9000"], {"LLAMA_ARG_BATCH": "16"})
    assert (a.hf_repo, a.hf_file) == ("ggml-org/Qwen2.5-Coder-7B-Q8_0-GGUF", "qwen2.5-coder-7b-q8_0.gguf")
    assert (a.ctx_size, a.port, a.batch_size, a.ubatch_size, a.cache_reuse) == (0, 9000, 1024, 1024, 256)


def test_completion_script_lists_every_spelling(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--completion-bash"], {})
    out = capsys.readouterr().out
    assert e.value.code == 0 and "complete -F _llama_server llama-server" in out
    assert all(f" {n} " in out for n in ("--ctx-size", "-nkvo", "--fim-qwen-1.5b-default", "--no-mmproj"))
