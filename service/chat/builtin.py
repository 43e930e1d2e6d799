"""Built-in chat templates, selectable with `--chat-template NAME`, and the choice of one for a
model file that carries none.

The names and the prompts they produce follow llama.cpp's built-in formats (src/llama-chat.cpp,
checked against tests/test-chat-template.cpp); ours are written as jinja so that one renderer, one
sandbox and one way of telling template text from message text serve every template. Like
llama.cpp's, they print no BOS (the tokenizer adds it where the vocabulary asks for one), so
/apply-template gives llama-server's text. One deliberate difference: a message with null content
prints as empty.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUILTIN", "builtin_names", "default_for"]

# Message text, null as empty; `| trim` where the family strips messages.
_C = "(message['content'] or '')"
_T = "((message['content'] or '') | trim)"


def _each(body: str, gen: str = "") -> str:
    tail = f"{{%- if add_generation_prompt -%}}{{{{- {gen} -}}}}{{%- endif -%}}\n" if gen else ""
    return f"{{%- for message in messages -%}}\n{body}\n{{%- endfor -%}}\n{tail}"


def _by_role(system: str, user: str, other: str) -> str:
    return (f"{{%- if message['role'] == 'system' -%}}{{{{- {system} -}}}}\n"
            f"{{%- elif message['role'] == 'user' -%}}{{{{- {user} -}}}}\n"
            f"{{%- else -%}}{{{{- {other} -}}}}{{%- endif -%}}")


def _llama2(sys_tags: bool, bos_in_history: bool, strip: bool) -> str:
    content = _T if strip else _C
    system = f"'<<SYS>>\\n' + {content} + '\\n<</SYS>>\\n\\n'" if sys_tags else f"{content} + '\\n'"
    reopen = "bos_token + '[INST] '" if bos_in_history else "'[INST] '"
    return ("{{- '[INST] ' -}}\n{%- set ns = namespace(open=true) -%}\n"
            "{%- for message in messages -%}\n"
            f"{{%- if not ns.open -%}}{{{{- {reopen} -}}}}{{%- set ns.open = true -%}}{{%- endif -%}}\n"
            f"{{%- if message['role'] == 'system' -%}}{{{{- {system} -}}}}\n"
            f"{{%- elif message['role'] == 'user' -%}}{{{{- {content} + ' [/INST]' -}}}}\n"
            f"{{%- else -%}}{{{{- {content} + '</s>' -}}}}{{%- set ns.open = false -%}}{{%- endif -%}}\n"
            "{%- endfor -%}\n")


def _mistral(lead: str, trail: str, trim_assistant: bool) -> str:
    # v1/v3/v3-tekken: a system message opens the [INST] block that the next user message closes.
    answer = _T if trim_assistant else _C
    return ("{%- set ns = namespace(open=false) -%}\n"
            "{%- for message in messages -%}\n"
            f"{{%- if not ns.open -%}}{{{{- '{lead}[INST]{trail}' -}}}}{{%- set ns.open = true -%}}"
            "{%- endif -%}\n"
            f"{{%- if message['role'] == 'system' -%}}{{{{- {_C} + '\\n\\n' -}}}}\n"
            f"{{%- elif message['role'] == 'user' -%}}{{{{- {_C} + '{lead}[/INST]' -}}}}\n"
            f"{{%- else -%}}{{{{- '{trail}' + {answer} + '</s>' -}}}}{{%- set ns.open = false -%}}"
            "{%- endif -%}\n{%- endfor -%}\n")


def _mistral_v7(sp: str) -> str:
    return _each(_by_role(f"'[SYSTEM_PROMPT]{sp}' + {_C} + '[/SYSTEM_PROMPT]'",
                          f"'[INST]{sp}' + {_C} + '[/INST]'",
                          f"'{sp}' + {_C} + '</s>'"))


_GEMMA = r"""{#- Gemma has no system turn: system text opens the next user turn, as in Gemma 3's template. -#}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- set ns.system = ns.system + ((message['content'] or '') | trim) -%}
{%- else -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<start_of_turn>' + role + '\n' -}}
{%- if ns.system and role != 'model' -%}
{{- ns.system + '\n\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{{- ((message['content'] or '') | trim) + '<end_of_turn>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}
"""

_ROLE = "message['role']"

BUILTIN: dict[str, str] = {
    "chatml": _each(f"{{{{- '<|im_start|>' + {_ROLE} + '\\n' + {_C} + '<|im_end|>\\n' -}}}}",
                    "'<|im_start|>assistant\\n'"),
    "llama2": _llama2(False, False, False),
    "llama2-sys": _llama2(True, False, False),
    "llama2-sys-bos": _llama2(True, True, False),
    "llama2-sys-strip": _llama2(True, False, True),
    "mistral-v1": _mistral(" ", " ", False),
    "mistral-v3": _mistral("", " ", True),
    "mistral-v3-tekken": _mistral("", "", False),
    "mistral-v7": _mistral_v7(" "),
    "mistral-v7-tekken": _mistral_v7(""),
    "llama3": _each(f"{{{{- '<|start_header_id|>' + {_ROLE} + '<|end_header_id|>\\n\\n' + {_T}"
                    " + '<|eot_id|>' -}}",
                    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n'"),
    "llama4": _each(f"{{{{- '<|header_start|>' + {_ROLE} + '<|header_end|>\\n\\n' + {_T}"
                    " + '<|eot|>' -}}",
                    "'<|header_start|>assistant<|header_end|>\\n\\n'"),
    "gemma": _GEMMA,
    "phi3": _each(f"{{{{- '<|' + {_ROLE} + '|>\\n' + {_C} + '<|end|>\\n' -}}}}",
                  "'<|assistant|>\\n'"),
    "phi4": _each(f"{{{{- '<|im_start|>' + {_ROLE} + '<|im_sep|>' + {_C} + '<|im_end|>' -}}}}",
                  "'<|im_start|>assistant<|im_sep|>'"),
    "falcon3": _each(f"{{{{- '<|' + {_ROLE} + '|>\\n' + {_C} + '\\n' -}}}}", "'<|assistant|>\\n'"),
    "zephyr": _each(f"{{{{- '<|' + {_ROLE} + '|>\\n' + {_C} + '<|endoftext|>\\n' -}}}}",
                    "'<|assistant|>\\n'"),
    "deepseek": _each(_by_role(_C, f"'### Instruction:\\n' + {_C} + '\\n'",
                               f"'### Response:\\n' + {_C} + '\\n<|EOT|>\\n'"),
                      "'### Response:\\n'"),
    "deepseek2": _each(_by_role(f"{_C} + '\\n\\n'", f"'User: ' + {_C} + '\\n\\n'",
                                f"'Assistant: ' + {_C} + '<｜end▁of▁sentence｜>'"),
                       "'Assistant:'"),
    "deepseek3": _each(_by_role(f"{_C} + '\\n\\n'", f"'<｜User｜>' + {_C}",
                                f"'<｜Assistant｜>' + {_C} + '<｜end▁of▁sentence｜>'"),
                       "'<｜Assistant｜>'"),
    "command-r": _each(_by_role(
        f"'<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + {_T} + '<|END_OF_TURN_TOKEN|>'",
        f"'<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + {_T} + '<|END_OF_TURN_TOKEN|>'",
        f"'<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' + {_T} + '<|END_OF_TURN_TOKEN|>'"),
        "'<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'"),
    "vicuna": _each(_by_role(f"{_C} + '\\n\\n'", f"'USER: ' + {_C} + '\\n'",
                             f"'ASSISTANT: ' + {_C} + '</s>\\n'"), "'ASSISTANT:'"),
    "vicuna-orca": _each(_by_role(f"'SYSTEM: ' + {_C} + '\\n'", f"'USER: ' + {_C} + '\\n'",
                                  f"'ASSISTANT: ' + {_C} + '</s>\\n'"), "'ASSISTANT:'"),
    "openchat": _each(_by_role(f"{_C} + '<|end_of_turn|>'",
                               f"'GPT4 Correct User: ' + {_C} + '<|end_of_turn|>'",
                               f"'GPT4 Correct ' + ({_ROLE}[:1] | upper) + {_ROLE}[1:] + ': ' + {_C}"
                               " + '<|end_of_turn|>'"),
                      "'GPT4 Correct Assistant:'"),
}

# general.architecture -> built-in, for model files without a template (llama.cpp falls back to
# chatml for every one of them; these families were never trained on chatml).
_BY_ARCH = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "phi3": "phi3", "llama4": "llama4", "command-r": "command-r", "cohere2": "command-r",
}


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def default_for(metadata: dict[str, Any]) -> str:
    """The built-in for a model file without `tokenizer.chat_template`."""
    return _BY_ARCH.get(str(metadata.get("general.architecture", "")), "chatml")
