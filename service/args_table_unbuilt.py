"""llama-server flags for features llamajit does not have yet (Effect.UNBUILT).

Using one exits 2 naming the feature (service.args), rather than starting a server that
silently lacks it. A spelling or value that asks for the feature to be off (--no-mmproj,
--no-spec-draft-backend-sampling, a negative --adaptive-target) asks for what llamajit already does: it is
accepted and logged like an INERT flag (`off`, `off_why`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from service.args_conv import csv_keys, float_in, int_in, text
from service.args_spec import Effect, Flag, Kind, switch, toggle, value

_MM = "this multimodal option (--mmproj itself works: a local gemma3 projector)"
_CV = "control vectors (--control-vector)"
_SPEC = ("this speculative decoding option (only --spec-type ngram-simple and draft-simple, their sizes, -md, "
         "-ngld, -ctkd and -ctvd work)")
_MCP = "MCP servers (--mcp-servers-*)"
_ROPE = "RoPE/YaRN scaling overrides (--rope-*, --yarn-*)"
_PLACE = "per-tensor placement (-ot, --cpu-moe, --n-cpu-moe, --n-cpu-ffn)"
_REMOVED = "speculative decoding (llama-server removed this flag as well: use {})"
_INT = int_in()
_FLOAT = float_in()

_NO_SPEC = "llamajit samples a draft model's tokens on the host, so there is no draft sampling to move"


def _pairs(sep: str, what: str) -> Callable[[str], str]:
    """A comma-separated list whose items each hold `sep` (-ot PATTERN=TYPE, --override-kv KEY=TYPE:VALUE,
    --lora-scaled FNAME:SCALE); kept as text, checked for shape only."""
    def conv(s: str) -> str:
        for item in csv_keys(s) or [""]:
            if sep not in item:
                raise ValueError(f"invalid value {s!r}: expected {what}")
        return s
    return conv


def _is_negative(v: Any) -> bool:
    return v < 0


def _is_false(v: object) -> bool:
    return v is False


def _unbuilt(row: Flag, why: str, off=None, off_why: str = "") -> Flag:
    return replace(row, effect=Effect.UNBUILT, why=why, off=off, off_why=off_why)


def _val(why: str, dest: str, names: str, env: str, help: str, conv: Callable[[str], Any] = _INT,
         metavar: Any = "N") -> Flag:
    return _unbuilt(value(dest, names, env, help, conv, metavar), why)


def _sw(why: str, dest: str, names: str, help: str, env: str = "") -> Flag:
    return _unbuilt(switch(dest, names, env, help), why)


def _spec(dest: str, names: str, env: str, help: str, conv: Callable[[str], Any] = _INT, metavar: str = "N") -> Flag:
    return _val(_SPEC, dest, names, env, help, conv, metavar)


def _removed(dest: str, names: str, env: str, instead: str) -> Flag:
    return _val(_REMOVED.format(instead), dest, names, env, "removed from llama-server")


_ROWS: tuple[Flag, ...] = (
    _sw("listing the model cache (-cl/--cache-list)", "cache_list", "-cl --cache-list",
        "list the models in the cache and exit"),
    # -- model changes
    _val(_ROPE, "rope_scaling", "--rope-scaling", "LLAMA_ARG_ROPE_SCALING_TYPE", "RoPE scaling: none, linear or yarn",
         text, "{none,linear,yarn}"),
    _val(_ROPE, "rope_scale", "--rope-scale", "LLAMA_ARG_ROPE_SCALE", "RoPE context scaling factor", _FLOAT),
    _val(_ROPE, "rope_freq_base", "--rope-freq-base", "LLAMA_ARG_ROPE_FREQ_BASE", "RoPE base frequency", _FLOAT),
    _val(_ROPE, "rope_freq_scale", "--rope-freq-scale", "LLAMA_ARG_ROPE_FREQ_SCALE", "RoPE frequency scaling factor",
         _FLOAT),
    _val(_ROPE, "yarn_orig_ctx", "--yarn-orig-ctx", "LLAMA_ARG_YARN_ORIG_CTX", "YaRN original context"),
    _val(_ROPE, "yarn_ext_factor", "--yarn-ext-factor", "LLAMA_ARG_YARN_EXT_FACTOR", "YaRN extrapolation mix",
         _FLOAT),
    _val(_ROPE, "yarn_attn_factor", "--yarn-attn-factor", "LLAMA_ARG_YARN_ATTN_FACTOR", "YaRN attention scale",
         _FLOAT),
    _val(_ROPE, "yarn_beta_slow", "--yarn-beta-slow", "LLAMA_ARG_YARN_BETA_SLOW", "YaRN high correction dim", _FLOAT),
    _val(_ROPE, "yarn_beta_fast", "--yarn-beta-fast", "LLAMA_ARG_YARN_BETA_FAST", "YaRN low correction dim", _FLOAT),
    _val("model metadata overrides (--override-kv)", "override_kv", "--override-kv", "", "override model metadata",
         _pairs("=", "KEY=TYPE:VALUE,..."), "KEY=TYPE:VALUE,..."),
    _val(_PLACE, "override_tensor", "-ot --override-tensor", "LLAMA_ARG_OVERRIDE_TENSOR", "buffer type per tensor "
         "name pattern", _pairs("=", "<pattern>=<buffer type>,..."), "<tensor name pattern>=<buffer type>,..."),
    _sw(_PLACE, "cpu_moe", "-cmoe --cpu-moe", "keep all MoE weights on the CPU", "LLAMA_ARG_CPU_MOE"),
    _val(_PLACE, "n_cpu_moe", "-ncmoe --n-cpu-moe", "LLAMA_ARG_N_CPU_MOE", "keep the MoE weights of the first N "
         "layers on the CPU", int_in(0)),
    _val(_PLACE, "n_cpu_ffn", "-ncffn --n-cpu-ffn", "LLAMA_ARG_N_CPU_FFN", "keep the dense FFN weights of the first N "
         "layers on the CPU", int_in(0)),
    _val(_CV, "control_vector", "--control-vector", "", "control vector(s), comma-separated", text, "FNAME"),
    _val(_CV, "control_vector_scaled", "--control-vector-scaled", "", "control vector(s) with a scale",
         _pairs(":", "FNAME:SCALE,..."), "FNAME:SCALE,..."),
    _unbuilt(Flag("control_vector_layer_range", ("--control-vector-layer-range",), (), Kind.PAIR, "layers the control "
                  "vectors apply to, inclusive", _INT, metavar=("START", "END")), _CV),
    _val("model download by URL (-mu/--model-url)", "model_url", "-mu --model-url", "LLAMA_ARG_MODEL_URL",
         "model download URL (default: unused)", text, "MODEL_URL"),
    _val("Docker Hub models (-dr/--docker-repo)", "docker_repo", "-dr --docker-repo", "LLAMA_ARG_DOCKER_REPO",
         "Docker Hub model (default: unused)", text, "[<repo>/]<model>[:quant]"),
    _unbuilt(value("adaptive_target", "--adaptive-target", "", "adaptive-p target probability (negative = disabled) "
                   "(default: -1.00)", _FLOAT), "the adaptive-p sampler (--adaptive-target)", _is_negative,
             "a negative --adaptive-target turns adaptive-p off, and llamajit has none"),
    # -- speculative decoding
    _spec("spec_draft_hf", "--spec-draft-hf -hfd -hfrd --hf-repo-draft", "LLAMA_ARG_SPEC_DRAFT_HF_REPO",
          "draft model repository (default: unused)", text, "<user>/<model>[:quant]"),
    _spec("spec_draft_threads", "--spec-draft-threads -td --threads-draft", "", "draft threads (default: same as "
          "--threads)"),
    _spec("spec_draft_threads_batch", "--spec-draft-threads-batch -tbd --threads-batch-draft", "", "draft batch "
          "threads (default: same as --threads-draft)"),
    _spec("spec_draft_cpu_mask", "--spec-draft-cpu-mask -Cd --cpu-mask-draft", "", "draft CPU mask (default: same as "
          "--cpu-mask)", text, "M"),
    _spec("spec_draft_cpu_range", "--spec-draft-cpu-range -Crd --cpu-range-draft", "", "draft CPU range", text,
          "lo-hi"),
    _spec("spec_draft_cpu_strict", "--spec-draft-cpu-strict --cpu-strict-draft", "", "draft strict CPU placement "
          "(default: same as --cpu-strict)", _INT, "<0|1>"),
    _spec("spec_draft_prio", "--spec-draft-prio --prio-draft", "", "draft thread priority (default: 0)"),
    _spec("spec_draft_poll", "--spec-draft-poll --poll-draft", "", "draft polling (default: same as --poll)", _INT,
          "<0|1>"),
    _spec("spec_draft_cpu_mask_batch", "--spec-draft-cpu-mask-batch -Cbd --cpu-mask-batch-draft", "", "draft batch "
          "CPU mask (default: same as --cpu-mask)", text, "M"),
    _spec("spec_draft_cpu_strict_batch", "--spec-draft-cpu-strict-batch --cpu-strict-batch-draft", "", "draft batch "
          "strict CPU placement (default: --cpu-strict-draft)", _INT, "<0|1>"),
    _spec("spec_draft_prio_batch", "--spec-draft-prio-batch --prio-batch-draft", "", "draft batch thread priority "
          "(default: 0)"),
    _spec("spec_draft_poll_batch", "--spec-draft-poll-batch --poll-batch-draft", "", "draft batch polling (default: "
          "--poll-draft)", _INT, "<0|1>"),
    _spec("spec_draft_override_tensor", "--spec-draft-override-tensor -otd --override-tensor-draft", "", "draft "
          "buffer type per tensor name pattern", text, "<tensor name pattern>=<buffer type>,..."),
    _sw(_SPEC, "spec_draft_cpu_moe", "--spec-draft-cpu-moe -cmoed --cpu-moe-draft", "keep the draft's MoE weights on "
        "the CPU", "LLAMA_ARG_SPEC_DRAFT_CPU_MOE"),
    _spec("spec_draft_n_cpu_moe", "--spec-draft-n-cpu-moe --spec-draft-ncmoe -ncmoed --n-cpu-moe-draft",
          "LLAMA_ARG_SPEC_DRAFT_N_CPU_MOE", "draft MoE layers kept on the CPU"),
    _spec("spec_synth_len", "--spec-synth-len", "LLAMA_ARG_SPEC_SYNTH_LEN", "synthetic acceptance length "
          "(benchmarking)", _FLOAT, "L"),
    _spec("spec_synth_rates", "--spec-synth-rates", "LLAMA_ARG_SPEC_SYNTH_RATES", "synthetic acceptance rates "
          "(benchmarking)", text, "P0,P1,..."),
    _spec("spec_draft_p_split", "--spec-draft-p-split --draft-p-split", "LLAMA_ARG_SPEC_DRAFT_P_SPLIT", "split "
          "probability (default: 0.10)", _FLOAT, "P"),
    _unbuilt(toggle("spec_draft_backend_sampling", "--spec-draft-backend-sampling", "--no-spec-draft-backend-sampling",
                    "LLAMA_ARG_SPEC_DRAFT_BACKEND_SAMPLING", "draft sampling on the backend (default: enabled)"),
             _SPEC, _is_false, _NO_SPEC),
    _spec("spec_draft_device", "--spec-draft-device -devd --device-draft", "", "draft devices (default: follows "
          "--device)", text, "<dev1,dev2,..>"),
    *(_spec(f"spec_ngram_{k}".replace("-", "_"), f"--spec-ngram-{k}", "", f"ngram drafting: {k} (default: {d})")
      for k, d in (("mod-n-min", 48), ("mod-n-max", 64), ("mod-n-match", 24), ("map-k-size-n", 12), ("map-k-size-m", 48),
                   ("map-k-min-hits", 1), ("map-k4v-size-n", 12), ("map-k4v-size-m", 48), ("map-k4v-min-hits", 1))),
    _removed("draft_max", "--draft --draft-n --draft-max", "LLAMA_ARG_DRAFT_MAX",
             "--spec-draft-n-max or --spec-ngram-mod-n-max"),
    _removed("draft_min", "--draft-min --draft-n-min", "LLAMA_ARG_DRAFT_MIN",
             "--spec-draft-n-min or --spec-ngram-mod-n-min"),
    *(_removed(f"spec_ngram_{k}".replace("-", "_"), f"--spec-ngram-{k}", "", f"the respective --spec-ngram-*-{k}")
      for k in ("size-n", "size-m", "min-hits")),
    _spec("lookup_cache_static", "-lcs --lookup-cache-static", "", "static lookup cache", text, "FNAME"),
    _spec("lookup_cache_dynamic", "-lcd --lookup-cache-dynamic", "", "dynamic lookup cache", text, "FNAME"),
    _sw(_SPEC, "spec_default", "--spec-default", "the default speculative decoding settings"),
    _sw(_SPEC, "fim_qwen_7b_spec", "--fim-qwen-7b-spec", "Qwen 2.5 Coder 7B with a 0.5B draft"),
    _sw(_SPEC, "fim_qwen_14b_spec", "--fim-qwen-14b-spec", "Qwen 2.5 Coder 14B with a 0.5B draft"),
    # -- multimodal
    _val(_MM, "mmproj_url", "-mmu --mmproj-url", "LLAMA_ARG_MMPROJ_URL", "multimodal projector URL", text, "URL"),
    _val(_MM, "mmproj_device", "-mmdev --mmproj-device", "MTMD_BACKEND_DEVICE", "device for the projector (default: "
         "follows --device)", text, "DEVICE"),
    _val(_MM, "image_min_tokens", "--image-min-tokens", "LLAMA_ARG_IMAGE_MIN_TOKENS", "fewest tokens per image "
         "(default: read from model)"),
    _val(_MM, "image_max_tokens", "--image-max-tokens", "LLAMA_ARG_IMAGE_MAX_TOKENS", "most tokens per image "
         "(default: read from model)"),
    _val(_MM, "mtmd_batch_max_tokens", "--mtmd-batch-max-tokens", "LLAMA_ARG_MTMD_BATCH_MAX_TOKENS", "image tokens "
         "per batch (default: 1024)"),
    _val(_MM, "video_fps", "--video-fps", "LLAMA_ARG_VIDEO_FPS", "video frame rate (default: 4.0)", _FLOAT),
    _val(_MM, "video_timestamp_interval", "--video-timestamp-interval", "LLAMA_ARG_VIDEO_TIMESTAMP_INTERVAL",
         "ms between video timestamps (default: 5000)"),
    _val(_MM, "video_ffmpeg_dir", "--video-ffmpeg-dir", "LLAMA_ARG_VIDEO_FFMPEG_DIR", "where ffmpeg is (default: "
         "search in PATH)", text, "DIR"),
    _sw(_MM, "vision_gemma_4b_default", "--vision-gemma-4b-default", "Gemma 3 4B with vision"),
    _sw(_MM, "vision_gemma_12b_default", "--vision-gemma-12b-default", "Gemma 3 12B with vision"),
    # -- several models, agents
    _val(_MCP, "mcp_servers_config", "--mcp-servers-config", "LLAMA_ARG_MCP_SERVERS_CONFIG", "file of MCP servers "
         "(default: none)", text, "PATH"),
    _val(_MCP, "mcp_servers_json", "--mcp-servers-json", "LLAMA_ARG_MCP_SERVERS_JSON", "MCP servers, inline JSON "
         "(default: none)", text, "JSON"),
    # -- presets of models llamajit cannot run yet
    _sw("the EmbeddingGemma model architecture (gemma-embedding)", "embd_gemma_default", "--embd-gemma-default",
        "EmbeddingGemma 300M"),
    _sw("the Qwen3 MoE model architecture (qwen3moe)", "fim_qwen_30b_default", "--fim-qwen-30b-default",
        "Qwen 3 Coder 30B A3B"),
    _sw("the gpt-oss model architecture", "gpt_oss_20b_default", "--gpt-oss-20b-default", "gpt-oss-20b"),
    _sw("the gpt-oss model architecture", "gpt_oss_120b_default", "--gpt-oss-120b-default", "gpt-oss-120b"),
)

UNBUILT_FLAGS: tuple[Flag, ...] = _ROWS
