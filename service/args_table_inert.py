"""llama-server flags llamajit accepts but that change nothing here (Effect.INERT), with why.

Two kinds of reason:
- a true one: the flag tunes something llamajit does not have (ggml's thread pool, several
  GPUs, libllama's buffers) or already always does (a full-size KV cache, fused attention);
- NOT_YET: behaviour llama-server has and llamajit will have; the ServerArgs field holds the
  value with llama-server's default, so wiring it up is: move the row to args_table_server.py, read the field.
Given on the command line or through its variable, each logs a warning at startup (service.cli).
"""

from __future__ import annotations

from dataclasses import replace

from service.args_conv import (
    choice, cpu_mask, cpu_range, csv_keys, file_text, float_in, float_list, int_in,
    int_list, numa, on_off, one, text, tri_state,
)
from service.args_spec import NOT_YET, Effect, Flag, append, optional, switch, toggle, value

_CPU = "llamajit's kernels run on Numba's thread pool, which it does not pin, prioritize or poll"
_ONE_GPU = "llamajit runs on one GPU (the first -dev device) and splits nothing across GPUs"
_FA = "attention is always llamajit's own fused kernel"
_PERF = "llamajit reports its timings in every response; there are no libllama timings to switch"
_KV_GPU = "the KV cache of GPU layers always stays on the GPU (llamajit has no host-side KV mode)"
_REPACK = "llamajit always lays weights out for its own kernels at load; ggml's repacking does not apply"
_NO_HOST = "llamajit has no ggml host buffers to bypass"
_DEFRAG = "deprecated and ignored by llama-server too; llamajit's KV cache needs no defragmentation"
_RPC = "llamajit runs on this machine only; no layers go to RPC servers"
_LOAD = "llamajit always memory-maps the GGUF file and prepares its weights at load"
_LAZY = "llamajit has no on-demand tensor reading: it maps the GGUF file and packs its matrices at load"
_NUMA = "llamajit does no NUMA-specific thread or memory placement"
_FIT = "llamajit never shrinks -c or -ngl to fit device memory: the given (or the model's) values are used"
_FIT_ONLY = "only used by --fit, which llamajit does not do"
_CHECK = "llamajit checks tensor shapes and types at load, not the values in them"
_OP = "ggml's host-op offload; llamajit runs each layer where -ngl puts it"
_SWA = "llamajit's KV cache is always full-size, sliding-window layers included"
_CKPT = ("checkpoints keep what a trimmed sliding-window cache forgets; llamajit's full-size cache keeps every "
         "position, so prompt prefixes are reused without them")
_JSONL = "llamajit always logs one JSON object per line, on stderr"
_COLORS = "llamajit's JSON log lines are never colored"
_FIELDS = "llamajit's JSON log lines always carry level and timestamp fields"
_ADAPTIVE = "only used by the adaptive-p sampler (--adaptive-target), which llamajit does not have"
_INT = int_in()
_UINT = int_in(0, None, "a non-negative integer")


def _inert(row: Flag, why: str) -> Flag:
    return replace(row, effect=Effect.INERT, why=why)


_ROWS: tuple[tuple[Flag, str], ...] = (
    # -- CPU threads
    (value("cpu_mask", "-C --cpu-mask", "", "CPU affinity mask, hex", cpu_mask, "M"), _CPU),
    (value("cpu_range", "-Cr --cpu-range", "", "CPU range for affinity", cpu_range, "lo-hi"), _CPU),
    (value("cpu_strict", "--cpu-strict", "", "strict CPU placement", _UINT, "<0|1>"), _CPU),
    (value("prio", "--prio", "", "thread priority: -1 low, 0 normal, 1 medium, 2 high, 3 realtime",
           int_in(-1, 3, "an integer from -1 to 3")), _CPU),
    (value("poll", "--poll", "", "polling level while waiting for work (0 = none)", _UINT, "<0...100>"), _CPU),
    (value("cpu_mask_batch", "-Cb --cpu-mask-batch", "", "CPU affinity mask for batches (default: same as "
           "--cpu-mask)", cpu_mask, "M"), _CPU),
    (value("cpu_range_batch", "-Crb --cpu-range-batch", "", "CPU range for batches", cpu_range, "lo-hi"), _CPU),
    (value("cpu_strict_batch", "--cpu-strict-batch", "", "strict CPU placement for batches (default: same as "
           "--cpu-strict)", _INT, "<0|1>"), _CPU),
    (value("prio_batch", "--prio-batch", "", "batch thread priority: 0 normal, 1 medium, 2 high, 3 realtime",
           int_in(0, 3, "an integer from 0 to 3")), _CPU),
    (value("poll_batch", "--poll-batch", "", "polling for batches (default: same as --poll)", _INT, "<0|1>"), _CPU),
    (value("numa", "--numa", "LLAMA_ARG_NUMA", "NUMA strategy: distribute, isolate or numactl", numa, "TYPE"), _NUMA),
    # -- memory, devices, loading
    (switch("swa_full", "--swa-full", "LLAMA_ARG_SWA_FULL", "full-size sliding-window cache"), _SWA),
    (optional("flash_attn", "-fa --flash-attn", "LLAMA_ARG_FLASH_ATTN", "Flash Attention: on, off or auto",
              tri_state, "on", "[on|off|auto]"), _FA),
    (toggle("perf", "--perf", "--no-perf", "LLAMA_ARG_PERF", "libllama's internal timings"), _PERF),
    (toggle("kv_offload", "-kvo --kv-offload", "-nkvo --no-kv-offload", "LLAMA_ARG_KV_OFFLOAD", "KV cache "
            "offloading"), _KV_GPU),
    (toggle("repack", "--repack", "-nr --no-repack", "LLAMA_ARG_REPACK", "weight repacking"), _REPACK),
    (switch("no_host", "--no-host", "LLAMA_ARG_NO_HOST", "bypass the host buffer"), _NO_HOST),
    (value("defrag_thold", "-dt --defrag-thold", "LLAMA_ARG_DEFRAG_THOLD", "KV cache defragmentation threshold "
           "(deprecated)", text), _DEFRAG),
    (value("rpc", "--rpc", "LLAMA_ARG_RPC", "RPC servers, comma-separated host:port", text, "SERVERS"), _RPC),
    (value("load_mode", "-lm --load-mode", "LLAMA_ARG_LOAD_MODE", "model loading: auto, none, mmap, mlock, "
           "mmap+mlock or dio", choice("auto", "none", "mmap", "mlock", "mmap+mlock", "dio"), "MODE"), _LOAD),
    (switch("mlock", "--mlock", "LLAMA_ARG_MLOCK", "lock the model in RAM (older llama-server flag, now -lm)"), _LOAD),
    (toggle("mmap", "--mmap", "--no-mmap", "LLAMA_ARG_MMAP", "memory-map the model (older llama-server flag, now "
            "-lm)"), _LOAD),
    (value("lazy_mode", "-lzm --lazy-mode", "LLAMA_ARG_LAZY_MODE", "read some tensors on demand: on, auto or off",
           choice("on", "auto", "off"), "MODE"), _LAZY),
    (value("split_mode", "-sm --split-mode", "LLAMA_ARG_SPLIT_MODE", "how to split the model across GPUs: none, "
           "layer, row or tensor", choice("none", "layer", "row", "tensor"), "{none,layer,row,tensor}"), _ONE_GPU),
    (value("tensor_split", "-ts --tensor-split", "LLAMA_ARG_TENSOR_SPLIT", "share of the model per GPU, e.g. 3,1",
           float_list, "N0,N1,N2,..."), _ONE_GPU),
    (value("main_gpu", "-mg --main-gpu", "LLAMA_ARG_MAIN_GPU", "the GPU for the model (split-mode none) or for "
           "intermediate results (split-mode row)", _INT, "INDEX"), _ONE_GPU),
    (optional("fit", "-fit --fit", "LLAMA_ARG_FIT", "adjust unset arguments to fit device memory: on or off", on_off,
              "on", "[on|off]"), _FIT),
    (value("fit_target", "-fitt --fit-target", "LLAMA_ARG_FIT_TARGET", "MiB to leave free per device for --fit",
           int_list, "MiB0,MiB1,MiB2,..."), _FIT_ONLY),
    (value("fit_ctx", "-fitc --fit-ctx", "LLAMA_ARG_FIT_CTX", "smallest context --fit may choose", _INT), _FIT_ONLY),
    (switch("check_tensors", "--check-tensors", "", "check tensor data for invalid values"), _CHECK),
    (toggle("op_offload", "--op-offload", "--no-op-offload", "", "offload host tensor operations to the device"),
     _OP),
    (value("ctx_checkpoints", "-ctxcp --ctx-checkpoints --swa-checkpoints", "LLAMA_ARG_CTX_CHECKPOINTS", "context "
           "checkpoints per slot", _INT), _CKPT),
    (value("checkpoint_min_step", "-cms --checkpoint-min-step", "LLAMA_ARG_CHECKPOINT_MIN_SPACING_NT", "fewest tokens "
           "between checkpoints (0 = no minimum)", _UINT), _CKPT),
    # -- logging
    (value("log_file", "--log-file", "LLAMA_ARG_LOG_FILE", "also log to this file", text, "FNAME"), NOT_YET),
    (toggle("log_jsonl", "--log-jsonl", "--no-log-jsonl", "LLAMA_ARG_LOG_JSONL", "JSON lines on stdout"), _JSONL),
    (optional("log_colors", "--log-colors", "LLAMA_ARG_LOG_COLORS", "colored logs: on, off or auto", tri_state, "on",
              "[on|off|auto]"), _COLORS),
    (toggle("log_prefix", "--log-prefix", "--no-log-prefix", "LLAMA_ARG_LOG_PREFIX", "a prefix in log messages"),
     _FIELDS),
    (toggle("log_timestamps", "--log-timestamps", "--no-log-timestamps", "LLAMA_ARG_LOG_TIMESTAMPS", "timestamps in "
            "log messages"), _FIELDS),
    (value("log_prompts_dir", "--log-prompts-dir", "", "directory to log prompts to (debugging)", text, "PATH"),
     NOT_YET),
    # -- sampling
    (value("adaptive_decay", "--adaptive-decay", "", "adaptive-p decay rate", float_in()), _ADAPTIVE),
    (switch("backend_sampling", "-bs --backend-sampling", "LLAMA_ARG_BACKEND_SAMPLING", "sample on the backend "
            "(experimental)"), NOT_YET),
    # -- serving behaviour still to come
    (value("kv_unified_per_slot", "--kv-unified-per-slot", "LLAMA_ARG_KV_UNIFIED_PER_SLOT", "context per slot; "
           "without -c the shared pool is -np times this", _INT), NOT_YET),
    (append("reverse_prompt", "-r --reverse-prompt", "", "stop string of requests that bring none; repeat for more",
            one, "PROMPT"), NOT_YET),
    (switch("special", "-sp --special", "", "output special tokens as text"), NOT_YET),
    (switch("spm_infill", "--spm-infill", "", "suffix/prefix/middle order for /infill"), NOT_YET),
    (value("embd_normalize", "--embd-normalize", "", "default normalization of /embedding: -1 none, 0 max-abs int16, "
           "1 taxicab, 2 euclidean, >2 p-norm", _INT), NOT_YET),
    (value("ui_config", "--ui-config --webui-config", "LLAMA_ARG_UI_CONFIG", "Web UI default settings, JSON", text,
           "JSON"), NOT_YET),
    (value("ui_config", "--ui-config-file --webui-config-file", "LLAMA_ARG_UI_CONFIG_FILE", "file of Web UI default "
           "settings", file_text, "PATH"), NOT_YET),
    (value("tools", "--tools", "LLAMA_ARG_TOOLS", "built-in agent tools, comma-separated, or 'all' (experimental)",
           csv_keys, "TOOL1,TOOL2,..."), NOT_YET),
    (value("tools_runtime", "--tools-runtime", "LLAMA_ARG_TOOLS_RUNTIME", "where the built-in tools run "
           "(experimental)", text, "OPTION"), NOT_YET),
    (toggle("agent", "-ag --agent", "-no-ag --no-agent", "LLAMA_ARG_AGENT", "CORS proxy and all built-in tools "
            "(experimental)"), NOT_YET),
    (value("reasoning_effort", "--reasoning-effort", "LLAMA_ARG_REASONING_EFFORT", "reasoning effort for the "
           "template ('default' keeps the template's)", text, "LEVEL"), NOT_YET),
    (toggle("reasoning_preserve", "--reasoning-preserve", "--no-reasoning-preserve", "LLAMA_ARG_REASONING_PRESERVE",
            "keep earlier turns' reasoning in the history"), NOT_YET),
)

INERT_FLAGS: tuple[Flag, ...] = tuple(_inert(row, why) for row, why in _ROWS)
