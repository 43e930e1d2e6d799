"""llama-server's command line: flags, short forms, defaults, LLAMA_ARG_* variables, errors.

The expected names, variables and defaults below are written out from llama.cpp's
common/arg.cpp and common/common.h (current llama-server), not read from our own table, so a
flag dropped or renamed in service/args_table_*.py fails here. Every spelling of llama-server's
--help is checked in test_args_reference.py; the sampling flags in test_args_sampling.py.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service import __version__
from service.args import ServerArgs, parse_args
from service.args_spec import FLAGS
from tests.test_args_reference import SPELLINGS

ROOT = Path(__file__).resolve().parent.parent

# dest, names, env vars (first = llama-server's), a raw value, the parsed value
VALUED = [
    ("model", ["-m", "--model"], ["LLAMA_ARG_MODEL"], "/m/x.gguf", "/m/x.gguf"),
    ("alias", ["-a", "--alias"], ["LLAMA_ARG_ALIAS"], "smol, tiny,,smol", ("smol", "tiny")),
    ("tags", ["--tags"], ["LLAMA_ARG_TAGS"], "chat,small", ("chat", "small")),
    ("hf_token", ["-hft", "--hf-token"], ["HF_TOKEN"], "hf_abc", "hf_abc"),
    ("verbosity", ["-lv", "--verbosity", "--log-verbosity"], ["LLAMA_ARG_LOG_VERBOSITY"], "4", 4),
    ("hf_repo", ["-hf", "-hfr", "--hf-repo"], ["LLAMA_ARG_HF_REPO"], "u/m-GGUF:Q4_K_M", "u/m-GGUF:Q4_K_M"),
    ("hf_file", ["-hff", "--hf-file"], ["LLAMA_ARG_HF_FILE"], "m.gguf", "m.gguf"),
    ("ctx_size", ["-c", "--ctx-size"], ["LLAMA_ARG_CTX_SIZE"], "256", 256),
    ("n_predict", ["-n", "--predict", "--n-predict"], ["LLAMA_ARG_N_PREDICT"], "32", 32),
    ("parallel", ["-np", "--parallel"], ["LLAMA_ARG_N_PARALLEL"], "8", 8),
    ("batch_size", ["-b", "--batch-size"], ["LLAMA_ARG_BATCH"], "64", 64),
    ("ubatch_size", ["-ub", "--ubatch-size"], ["LLAMA_ARG_UBATCH"], "32", 32),
    ("threads", ["-t", "--threads"], ["LLAMA_ARG_THREADS"], "2", 2),
    ("n_gpu_layers", ["-ngl", "--gpu-layers", "--n-gpu-layers"], ["LLAMA_ARG_N_GPU_LAYERS"], "99", "99"),
    ("cache_reuse", ["--cache-reuse"], ["LLAMA_ARG_CACHE_REUSE"], "256", 256),
    ("host", ["--host"], ["LLAMA_ARG_HOST"], "0.0.0.0", "0.0.0.0"),
    ("port", ["--port"], ["LLAMA_ARG_PORT"], "9090", 9090),
    ("timeout", ["-to", "--timeout"], ["LLAMA_ARG_TIMEOUT"], "30", 30),
    ("cors_origins", ["--cors-origins"], ["LLAMA_ARG_CORS_ORIGINS"], "https://a.example", "https://a.example"),
    ("cache_type_k", ["-ctk", "--cache-type-k"], ["LLAMA_ARG_CACHE_TYPE_K"], "q8_0", "q8_0"),
    ("pooling", ["--pooling"], ["LLAMA_ARG_POOLING"], "cls", "cls"),
    ("chat_template", ["--chat-template"], ["LLAMA_ARG_CHAT_TEMPLATE"], "chatml", "chatml"),
    ("chat_template_kwargs", ["--chat-template-kwargs"], ["LLAMA_ARG_CHAT_TEMPLATE_KWARGS", "LLAMA_CHAT_TEMPLATE_KWARGS"],
     '{"enable_thinking": false, "n": [1]}', {"enable_thinking": False, "n": [1]}),
    ("reasoning_format", ["--reasoning-format"], ["LLAMA_ARG_THINK"], "deepseek-legacy", "deepseek-legacy"),
    ("temp", ["--temp", "--temperature"], ["LLAMA_ARG_TEMPERATURE"], "0.25", 0.25),
    ("top_k", ["--top-k"], ["LLAMA_ARG_TOP_K"], "5", 5),
    ("top_p", ["--top-p"], ["LLAMA_ARG_TOP_P"], "0.5", 0.5),
    ("min_p", ["--min-p"], ["LLAMA_ARG_MIN_P"], "0.2", 0.2),
    ("seed", ["-s", "--seed"], [], "1234", 1234),
    ("n_probs_max", ["--n-probs-max"], ["LLAMA_ARG_N_PROBS_MAX"], "7", 7),
    ("drain_timeout", ["--drain-timeout"], ["LLAMA_ARG_DRAIN_TIMEOUT"], "7", 7),
    ("max_queue", ["--max-queue"], ["LLAMA_ARG_MAX_QUEUE"], "3", 3),
    ("flash_attn", ["-fa", "--flash-attn"], ["LLAMA_ARG_FLASH_ATTN"], "off", "off"),
    ("device", ["-dev", "--device"], ["LLAMA_ARG_DEVICE"], "CUDA0, CUDA1", "CUDA0,CUDA1"),
]
SWITCHES = [  # dest, names, env vars; default False
    ("embeddings", ["--embedding", "--embeddings"], ["LLAMA_ARG_EMBEDDINGS"]),
    ("reranking", ["--rerank", "--reranking"], ["LLAMA_ARG_RERANKING"]),
    ("metrics", ["--metrics"], ["LLAMA_ARG_ENDPOINT_METRICS"]),
    ("props", ["--props"], ["LLAMA_ARG_ENDPOINT_PROPS"]),
    ("verbose", ["-v", "--verbose", "--log-verbose"], []),
    ("log_prompts", ["--log-prompts"], ["LLAMA_ARG_LOG_PROMPTS"]),
    ("mlock", ["--mlock"], ["LLAMA_ARG_MLOCK"]),
    ("log_disable", ["--log-disable"], []),
    ("offline", ["--offline"], ["LLAMA_ARG_OFFLINE"]),
    ("swa_full", ["--swa-full"], ["LLAMA_ARG_SWA_FULL"]),
    ("list_devices", ["--list-devices"], []),
]
TOGGLES = [  # dest, on names, off names, env vars; default True
    ("cont_batching", ["-cb", "--cont-batching"], ["-nocb", "--no-cont-batching"], ["LLAMA_ARG_CONT_BATCHING"]),
    ("slots", ["--slots"], ["--no-slots"], ["LLAMA_ARG_ENDPOINT_SLOTS"]),
    ("jinja", ["--jinja"], ["--no-jinja"], ["LLAMA_ARG_JINJA"]),
    ("webui", ["--ui", "--webui"], ["--no-ui", "--no-webui"], ["LLAMA_ARG_UI", "LLAMA_ARG_WEBUI"]),
    ("mmap", ["--mmap"], ["--no-mmap"], ["LLAMA_ARG_MMAP"]),
    ("kv_offload", ["-kvo", "--kv-offload"], ["-nkvo", "--no-kv-offload"], ["LLAMA_ARG_KV_OFFLOAD"]),
    ("cache_prompt", ["--cache-prompt"], ["--no-cache-prompt"], ["LLAMA_ARG_CACHE_PROMPT"]),
    ("warmup", ["--warmup"], ["--no-warmup"], []),
    ("escape", ["-e", "--escape"], ["--no-escape"], []),
]
OTHER_NAMES = {"--api-key", "--api-key-file", "--slot-save-path", "--chat-template-file"}  # tested on their own


def parse(*argv, **env):
    return parse_args(list(argv), env)


def exits_2(capsys, argv, env=None, *, naming):
    with pytest.raises(SystemExit) as e:
        parse_args(argv, env or {})
    err = capsys.readouterr().err
    assert e.value.code == 2 and naming in err and "error" in err, err
    return err


def test_defaults_are_llama_servers():
    a = parse()
    assert a == ServerArgs()
    assert (a.model, a.alias, a.tags, a.ctx_size, a.n_predict, a.parallel) == (None, (), (), 0, -1, -1)
    assert (a.batch_size, a.ubatch_size, a.threads, a.host, a.port) == (2048, 512, -1, "127.0.0.1", 8080)
    assert a.timeout == 3600
    assert (a.temp, a.top_k, a.top_p, a.min_p, a.seed) == (0.8, 40, 0.95, 0.05, -1)
    assert (a.jinja, a.slots, a.cont_batching, a.metrics, a.props, a.embeddings, a.reranking) == (True, True, True, False, False, False, False)
    assert (a.n_gpu_layers, a.reasoning_format, a.pooling, a.cache_reuse, a.api_keys) == ("auto", "auto", None, 0, ())
    assert (a.n_probs_max, a.log_prompts, a.chat_template_kwargs, a.flash_attn, a.webui, a.mmap) == (100, False, {}, "auto", True, True)
    assert (a.warmup, a.offline, a.cors_origins, a.cache_type_k, a.no_effect) == (True, False, "*", "f16", ())
    assert a.resolved_parallel() == 4 and a.kv_unified()
    b = parse("-np", "2")
    assert b.resolved_parallel() == 2 and not b.kv_unified()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.port = 1


def test_table_has_exactly_the_expected_flags():
    """llama-server's --help spellings, and these of older llama-servers and llamajit's own."""
    ours = {n for f in FLAGS for n in (*f.names, *f.neg)}
    listed = {n for _, names, *_ in VALUED for n in names} | {n for _, names, _ in SWITCHES for n in names}
    listed |= {n for _, on, off, _ in TOGGLES for n in (*on, *off)} | OTHER_NAMES
    extras = {"--n-probs-max", "--drain-timeout", "--max-queue", "--log-prompts", "--min-keep", "--mlock", "--mmap", "--no-mmap"}
    assert listed <= ours and ours == set(SPELLINGS) | extras


@pytest.mark.parametrize("dest,names,envs,raw,want", VALUED, ids=[v[0] for v in VALUED])
def test_valued_flag_every_name_and_env(dest, names, envs, raw, want):
    for name in names:
        assert getattr(parse(name, raw), dest) == want, name
        assert getattr(parse(f"{name}={raw}"), dest) == want if name.startswith("--") else True
    for env in envs:
        assert getattr(parse(**{env: raw}), dest) == want, env
    if envs:  # the flag beats its variable
        default = getattr(ServerArgs(), dest)
        assert getattr(parse(names[-1], raw, **{envs[0]: raw + "x" if dest != "pooling" else "mean"}), dest) == want
        assert getattr(parse(**{envs[0]: ""}), dest) == default  # empty = unset


@pytest.mark.parametrize("dest,names,envs", SWITCHES, ids=[s[0] for s in SWITCHES])
def test_switch_every_name_and_env(dest, names, envs):
    assert getattr(parse(), dest) is False
    for name in names:
        assert getattr(parse(name), dest) is True, name
    for env in envs:
        for spelling in ("1", "true", "on", "enabled", "TRUE"):
            assert getattr(parse(**{env: spelling}), dest) is True, (env, spelling)
        for spelling in ("0", "false", "off", "disabled"):
            assert getattr(parse(**{env: spelling}), dest) is False, (env, spelling)
        assert getattr(parse(names[0], **{env: "0"}), dest) is True  # flag beats variable


@pytest.mark.parametrize("dest,on,off,envs", TOGGLES, ids=[t[0] for t in TOGGLES])
def test_toggle_every_name_and_env(dest, on, off, envs):
    assert getattr(parse(), dest) is True
    for name in off:
        assert getattr(parse(name), dest) is False, name
        for pos in on:
            assert getattr(parse(name, pos), dest) is True  # last one wins
            assert getattr(parse(pos, name), dest) is False
    for env in envs:
        assert getattr(parse(**{env: "off"}), dest) is False
        assert getattr(parse(**{env: "enabled"}), dest) is True
        neg = env.replace("LLAMA_ARG_", "LLAMA_ARG_NO_")
        assert getattr(parse(**{neg: "1"}), dest) is False  # llama.cpp's LLAMA_ARG_NO_X
        assert getattr(parse(**{neg: "true", env: "1"}), dest) is False  # ... wins over LLAMA_ARG_X
        assert getattr(parse(**{neg: "0"}), dest) is True
        assert getattr(parse(on[0], **{neg: "1"}), dest) is True  # the flag beats both


def test_api_keys_from_flag_list_env_and_file(tmp_path, capsys):
    assert parse("--api-key", "k1").api_keys == ("k1",)
    assert parse("--api-key", "k1, k2,,k3").api_keys == ("k1", "k2", "k3")
    assert parse("--api-key", '"a,b",c').api_keys == ("a,b", "c")  # quoted commas, as llama.cpp's CSV
    assert parse("--api-key", "k1", "--api-key", "k2").api_keys == ("k1", "k2")
    assert parse(LLAMA_API_KEY="e1,e2").api_keys == ("e1", "e2")
    assert parse("--api-key", "k1", LLAMA_API_KEY="secret-env-key").api_keys == ("k1",)
    assert "secret-env-key" not in capsys.readouterr().err  # the override warning never shows a key
    f = tmp_path / "keys.txt"
    f.write_text("# operators\nf1\n\n  f2  \r\nk1\n")
    assert parse("--api-key-file", str(f)).api_keys == ("f1", "f2", "k1")
    assert parse("--api-key", "k1", "--api-key-file", str(f)).api_keys == ("k1", "f1", "f2")  # both, no duplicates
    assert parse(LLAMA_ARG_API_KEY_FILE=str(f), LLAMA_API_KEY="e1").api_keys == ("e1", "f1", "f2", "k1")
    err = exits_2(capsys, ["--api-key-file", str(tmp_path / "nope")], naming="--api-key-file")
    assert "nope" in err
    exits_2(capsys, [], {"LLAMA_ARG_API_KEY_FILE": str(tmp_path / "nope")}, naming="LLAMA_ARG_API_KEY_FILE")


def test_gpu_layers_forms():
    for raw, want in [("auto", "auto"), ("all", "all"), ("0", "0"), ("35", "35"), ("-1", "auto"), ("-2", "all")]:
        assert parse("-ngl", raw).n_gpu_layers == want
        assert parse(LLAMA_ARG_N_GPU_LAYERS=raw).n_gpu_layers == want


def test_reranking_implies_embeddings_and_rank_pooling():
    a = parse("--reranking")
    assert (a.reranking, a.embeddings, a.pooling) == (True, True, "rank")
    assert parse("--rerank", "--pooling", "last").pooling == "last"
    assert parse(LLAMA_ARG_RERANKING="1").pooling == "rank"
    assert parse("--embeddings").pooling is None


def test_spellings_llama_server_accepts():
    assert parse("--ctx_size", "64", "--n_gpu_layers=3").ctx_size == 64  # '_' read as '-'
    assert parse("--n_gpu_layers=3").n_gpu_layers == "3"
    a = parse("-fa", "-c", "8")  # a bare -fa, as older scripts pass it
    assert (a.flash_attn, a.ctx_size) == ("on", 8)
    assert parse("-fa", "1").flash_attn == "on" and parse(LLAMA_ARG_FLASH_ATTN="off").flash_attn == "off"
    assert parse("--temp", "-1").temp == 0.0  # llama.cpp clamps the temperature at 0
    assert parse("-np", "-3").parallel == -1  # any negative count is auto
    assert parse("-c", "1", "-c", "2").ctx_size == 2
    assert parse("--chat-template-kwargs", "{}", LLAMA_CHAT_TEMPLATE_KWARGS='{"a": 1}').chat_template_kwargs == {}
    both = {"LLAMA_ARG_CHAT_TEMPLATE_KWARGS": '{"new": 1}', "LLAMA_CHAT_TEMPLATE_KWARGS": '{"old": 1}'}
    assert parse(**both).chat_template_kwargs == {"new": 1}


def test_paths_are_checked(tmp_path, capsys):
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{{ messages }}")
    a = parse("--slot-save-path", str(tmp_path), "--chat-template-file", str(tpl))
    assert (a.slot_save_path, a.chat_template_file) == (str(tmp_path), str(tpl))
    assert parse(LLAMA_ARG_CHAT_TEMPLATE_FILE=str(tpl)).chat_template_file == str(tpl)
    exits_2(capsys, ["--slot-save-path", str(tpl)], naming="--slot-save-path")
    exits_2(capsys, ["--chat-template-file", str(tmp_path / "none.jinja")], naming="--chat-template-file")


BAD = [
    (["-c", "abc"], "-c/--ctx-size"), (["--ctx-size", "-5"], "--ctx-size"), (["-c", "1.5"], "--ctx-size"),
    (["--port", "-1"], "--port"), (["--port", "70000"], "--port"), (["-ngl", "lots"], "--n-gpu-layers"),
    (["-ngl", "1.5"], "--n-gpu-layers"), (["-dev", "GPU0"], "--device"), (["--pooling", "max"], "--pooling"), (["-np", "0"], "--parallel"),
    (["--chat-template-kwargs", "{bad"], "--chat-template-kwargs"), (["--chat-template-kwargs", "[1]"], "--chat-template-kwargs"),
    (["--top-p", "2"], "--top-p"), (["--min-p", "x"], "--min-p"), (["--temp", "nan"], "--temp"), (["-b", "0"], "--batch-size"),
    (["--reasoning-format", "r1"], "--reasoning-format"), (["-fa", "maybe"], "--flash-attn"), (["-s", "-2"], "--seed"),
    (["-n", "-2"], "--predict"), (["-to", "x"], "--timeout"), (["-m"], "--model"), (["--no-such-flag"], "--no-such-flag"),
    (["--ctx"], "--ctx"),  # no abbreviations: llama-server has none
    (["--metrics=1"], "--metrics"),
]


@pytest.mark.parametrize("argv,naming", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_flag_values_exit_2_naming_the_flag(argv, naming, capsys):
    exits_2(capsys, argv, naming=naming)


BAD_ENV = [
    ("LLAMA_ARG_CTX_SIZE", "abc"), ("LLAMA_ARG_PORT", "-3"), ("LLAMA_ARG_N_GPU_LAYERS", "many"),
    ("LLAMA_ARG_POOLING", "max"), ("LLAMA_ARG_CHAT_TEMPLATE_KWARGS", "{bad"), ("LLAMA_CHAT_TEMPLATE_KWARGS", "1"),
    ("LLAMA_ARG_ENDPOINT_METRICS", "maybe"), ("LLAMA_ARG_JINJA", "yes please"), ("LLAMA_ARG_NO_ENDPOINT_SLOTS", "2"),
    ("LLAMA_ARG_TOP_P", "1.5"), ("LLAMA_ARG_N_PARALLEL", "0"),
]


@pytest.mark.parametrize("name,value", BAD_ENV, ids=[b[0] for b in BAD_ENV])
def test_bad_env_values_exit_2_naming_the_variable(name, value, capsys):
    exits_2(capsys, [], {name: value}, naming=name)


def test_flag_beating_env_is_reported_on_stderr(capsys):
    assert parse("-c", "64", LLAMA_ARG_CTX_SIZE="abc").ctx_size == 64  # a bad but overridden variable is not read
    assert "LLAMA_ARG_CTX_SIZE" in capsys.readouterr().err


# ---- through the command: python -m service.args ARGS... prints the ServerArgs as JSON


def run(*args, env=None):
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_ARG_", "LLAMA_API_KEY"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "service.args", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_parsed_args_as_json():
    out = run("-m", "m.gguf", "-c", "128", "--api-key", "a,b", "--no-slots", env={"LLAMA_ARG_N_PARALLEL": "3"})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == {**json.loads(json.dumps(dataclasses.asdict(ServerArgs()))), "model": "m.gguf", "ctx_size": 128,
                   "api_keys": ["a", "b"], "slots": False, "parallel": 3}


def test_cli_help_documents_every_flag_default_and_env():
    out = run("--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: llama-server")
    for f in FLAGS:
        for name in (*f.names, *f.neg, *f.env, *f.neg_env()):
            assert name in out.stdout, name
    for text in ("(default: 2048)", "(default: 3600)", "(default: 127.0.0.1)", "(default: 8080)", "(default: auto)",
                 "(default: penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature)", "LLAMA_API_KEY",
                 "(no effect in llamajit: llamajit has no ggml host buffers to bypass)",
                 "(no effect in llamajit: not implemented yet)", "(default: 4, 0 = unlimited)",
                 "(not available in llamajit yet: this multimodal option (--mmproj itself works",
                 "(not available in llamajit yet: this speculative decoding option (only --spec-type ngram-simple "
                 "and draft-simple, their sizes, -md, -ngld, -ctkd and -ctvd work); turning it off is accepted"):
        assert text in " ".join(out.stdout.split()), text  # (wrapped lines joined)
    assert run("-h").stdout == out.stdout == run("--usage").stdout


def test_cli_version_unknown_flag_and_bad_value():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"llamajit {__version__}"
    out = run("--no-such-flag")
    assert out.returncode == 2 and "--no-such-flag" in out.stderr and out.stdout == ""
    out = run("-c", "abc")
    assert out.returncode == 2 and "-c/--ctx-size" in out.stderr and "'abc'" in out.stderr
    out = run(env={"LLAMA_ARG_CTX_SIZE": "abc"})
    assert out.returncode == 2 and "LLAMA_ARG_CTX_SIZE" in out.stderr


def test_log_level_from_log_disable_verbose_and_verbosity():
    import logging

    assert parse().log_level() == logging.INFO and parse("-lv", "3").log_level() == logging.INFO
    assert parse("-lv", "2").log_level() == logging.WARNING and parse("-lv", "1").log_level() == logging.ERROR
    assert parse("-lv", "0").log_level() == logging.CRITICAL
    assert parse("-lv", "4").log_level() == parse("-v").log_level() == logging.DEBUG
    assert parse("--log-disable", "-v").log_level() > logging.CRITICAL


def test_help_lists_what_loads():
    """-m's help names every architecture the loader takes and -mm's every projector type, as the loader
    and the projector reader list them (the flag tables write them out to keep --help light)."""
    from service.model.config import ARCHITECTURES
    from service.model.encoder_config import ENCODERS
    from service.vision.mmproj import SUPPORTED

    out = subprocess.run([sys.executable, "-m", "service.cli", "--help"], capture_output=True, text=True,
                         timeout=60).stdout
    flat = " ".join(out.split())
    assert "architectures: " + ", ".join(ARCHITECTURES + ENCODERS) + ")" in flat
    assert "projector types: " + ", ".join(SUPPORTED) + ")" in flat
