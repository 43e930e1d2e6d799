"""--models-preset files and the command lines of the router's model servers (service.router.preset)."""

from __future__ import annotations

import pytest

from service.args import parse_args
from service.router import preset


def write(tmp_path, text: str) -> str:
    p = tmp_path / "p.ini"
    p.write_text(text)
    return str(p)


def test_reads_llama_servers_ini(tmp_path):
    common, models = preset.read(write(tmp_path, """version = 1
; the global section
[*]
c = 8192
n-gpu-layers = 8

[ggml-org/MY-MODEL-GGUF:Q8_0]
chat-template = chatml
jinja = true
# short, long and variable spellings
c = 4096
LLAMA_ARG_CACHE_RAM = 0
model-draft = ./a.gguf
model-draft = /abs/b.gguf
load-on-startup = true

[custom_model]
model = /models/x.gguf
"""))
    assert common == {"c": "8192", "n-gpu-layers": "8"}
    assert models["ggml-org/MY-MODEL-GGUF:Q8_0"] == {"chat-template": "chatml", "jinja": "true", "c": "4096",
                                                     "LLAMA_ARG_CACHE_RAM": "0", "model-draft": "/abs/b.gguf",
                                                     "load-on-startup": "true"}
    assert models["custom_model"] == {"model": "/models/x.gguf"}


@pytest.mark.parametrize("text,msg", [("[m]\nbogus = 1\n", "[m] bogus: not a llama-server flag"),
                                      ("[m]\nLLAMA_ARG_BOGUS = 1\n", "LLAMA_ARG_BOGUS"),
                                      ("[m\nc = 1\n", "--models-preset")])
def test_a_bad_file_names_what_is_wrong(tmp_path, text, msg):
    with pytest.raises(preset.PresetError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        preset.read(write(tmp_path, text))
    with pytest.raises(preset.PresetError, match="--models-preset"):
        preset.read(str(tmp_path / "missing.ini"))


def test_options_become_flags_that_parse_to_the_same_settings():
    argv = preset.to_argv({"c": "4096", "jinja": "true", "context-shift": "off", "LLAMA_ARG_CACHE_RAM": "0",
                           "no-context-shift": "false", "no-warmup": "1", "ngl": "0",
                           "load-on-startup": "true", "alias": "x", "port": "1", "api-key": "k"}, skip={"alias"})
    a = parse_args(argv, {})
    assert (a.ctx_size, a.jinja, a.context_shift, a.cache_ram, a.warmup, a.n_gpu_layers) == (4096, True, True, 0,
                                                                                            False, "0")
    assert "--alias" not in argv and "--port" not in argv and "--api-key" not in argv


def test_the_routers_own_flags_are_stripped_with_their_values():
    argv = ["--models-dir", "d", "-c", "512", "--host=0.0.0.0", "--port", "80", "--api-key", "k", "--metrics",
            "--no-models-autoload", "--models_max", "2", "--api-prefix", "/p", "-a", "name", "--temp", "0.5"]
    out = preset.strip(argv, preset.RESERVED | {"alias"})
    assert out == ["-c", "512", "--metrics", "--temp", "0.5"]


def test_the_children_do_not_inherit_the_routers_own_variables():
    env = preset.child_environ({"LLAMA_API_KEY": "k", "LLAMA_ARG_PORT": "80", "LLAMA_ARG_MODELS_DIR": "d",
                                "LLAMA_ARG_NO_MODELS_AUTOLOAD": "1", "LLAMA_ARG_CTX_SIZE": "64", "PATH": "/bin"})
    assert env == {"LLAMA_ARG_CTX_SIZE": "64", "PATH": "/bin"}
