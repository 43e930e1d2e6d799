"""The flags that work in llamajit as in llama-server (Effect.WORKS), plus llamajit's own.

Each row: ServerArgs field, names, LLAMA_ARG_* variables, help, converter, metavar. Defaults are
the ServerArgs fields' (service/args_values.py). Sampling rows set the server-wide defaults of
every request; a request's own field overrides them (ServerArgs.sampling_defaults).
"""

from __future__ import annotations

from service.args_conv import (
    choice, csv_keys, devices, dry_base, dry_breaker, existing_dir, file_text, float_in, gpu_layers, int_in,
    json_object, json_schema_file, keys_from_file, logit_bias, name_set, parallel, readable_file, repeat_penalty,
    sampler_letters, samplers, text,
)
from service.args_spec import OURS, PRESETS, SAMPLING, SERVER, Flag, Kind, append, switch, toggle, value

# What loads (service.model.config.ARCHITECTURES, then encoder_config.ENCODERS; tests/test_args.py
# checks the two agree): written out so that --help does not import the model package.
LOADS = ("llama", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "qwen2moe", "qwen3moe", "granite", "olmo2", "smollm3",
         "gpt-oss", "bert", "nomic-bert", "jina-bert-v2")

_UINT = int_in(0, None, "a non-negative integer")
_POS = int_in(1, None, "a positive integer")
_WINDOW = int_in(0, None, "a non-negative integer (0 = disabled)")  # llama.cpp refuses -1 here, unlike requests
_UNIT = float_in(0.0, 1.0)
_NONNEG = float_in(0.0)
_ANY = float_in()


def _preset(dest: str, help: str, **fields) -> Flag:
    """A flag that stands for a model and its settings (llama-server's --fim-qwen-*-default)."""
    return Flag(dest, (f"--{dest.replace('_', '-')}",), (), Kind.PRESET, help, group=PRESETS, const=fields)


def _fim_qwen(size: str) -> dict:
    return dict(hf_repo=f"ggml-org/Qwen2.5-Coder-{size.upper()}-Q8_0-GGUF", hf_file=f"qwen2.5-coder-{size}-q8_0.gguf",
                port=8012, ubatch_size=1024, batch_size=1024, ctx_size=0, cache_reuse=256)


MAIN_FLAGS: tuple[Flag, ...] = (
    Flag("help", ("-h", "--help", "--usage"), (), Kind.EXIT, "print usage and exit", const="help"),
    Flag("version", ("--version",), (), Kind.EXIT, "print the version and exit", const="version"),
    Flag("completion_bash", ("--completion-bash",), (), Kind.EXIT, "print a bash completion script and exit",
         const="completion"),
    # -- model and context
    value("model", "-m --model", "LLAMA_ARG_MODEL", "model path (GGUF; architectures: " + ", ".join(LOADS) + ")", text,
          "FNAME"),
    value("alias", "-a --alias", "LLAMA_ARG_ALIAS", "model name(s) for the API, comma-separated", name_set, "STRING"),
    value("tags", "--tags", "LLAMA_ARG_TAGS", "model tags, comma-separated (informational)", name_set, "STRING"),
    value("hf_repo", "-hf -hfr --hf-repo", "LLAMA_ARG_HF_REPO", "Hugging Face repository <user>/<model>[:quant]; "
          "the quant picks the .gguf (Q4_K_M if left out, else the first file)", text, "<user>/<model>[:quant]"),
    value("hf_file", "-hff --hf-file", "LLAMA_ARG_HF_FILE", "file in --hf-repo (overrides its quant)", text, "FILE"),
    value("hf_token", "-hft --hf-token", "HF_TOKEN", "Hugging Face access token", text, "TOKEN"),
    switch("offline", "--offline", "LLAMA_ARG_OFFLINE", "no network access: -hf uses only the local cache"),
    value("ctx_size", "-c --ctx-size", "LLAMA_ARG_CTX_SIZE", "prompt context size, shared by all slots (0 = the "
          "model's)", _UINT),
    value("n_predict", "-n --predict --n-predict", "LLAMA_ARG_N_PREDICT", "tokens to predict when a request sets none "
          "(-1 = until end or context; a request may ask for more)", int_in(-1, None, "an integer >= -1")),
    value("parallel", "-np --parallel", "LLAMA_ARG_N_PARALLEL", "number of server slots (-1 = auto: 4 slots sharing "
          "one context)", parallel),
    value("batch_size", "-b --batch-size", "LLAMA_ARG_BATCH", "logical maximum batch size", _POS),
    value("ubatch_size", "-ub --ubatch-size", "LLAMA_ARG_UBATCH", "physical maximum batch size", _POS),
    value("threads", "-t --threads", "LLAMA_ARG_THREADS", "CPU threads for generation (<= 0: all cores; "
          "an encoder model computes with NumPy's BLAS, which this does not set)", int_in()),
    value("n_gpu_layers", "-ngl --gpu-layers --n-gpu-layers", "LLAMA_ARG_N_GPU_LAYERS", "layers to store in VRAM (the "
          "first N; 'all' adds the output head; 'auto': all when a CUDA device is present)", gpu_layers),
    value("device", "-dev --device", "LLAMA_ARG_DEVICE", "devices to offload to: CUDA0, CUDA1, ... (llamajit uses "
          "the first) or 'none'", devices, "<dev1,dev2,..>"),
    switch("list_devices", "--list-devices", "", "print the available devices and exit"),
    toggle("warmup", "--warmup", "--no-warmup", "", "run every kernel once before reporting ready (else the first "
           "request compiles them)"),
    toggle("escape", "-e --escape", "--no-escape", "", "process escapes (\\n, \\r, \\t, \\', \\\", \\\\, \\xHH) in "
           "--dry-sequence-breaker"),
    # -- server
    value("host", "--host", "LLAMA_ARG_HOST", "IP address to listen on", text, "HOST", group=SERVER),
    value("port", "--port", "LLAMA_ARG_PORT", "port to listen on (0 = any free port)",
          int_in(0, 65535, "a port number 0-65535"), "PORT", group=SERVER),
    append("api_key", "--api-key", "LLAMA_API_KEY", "API key(s), comma-separated", csv_keys, "KEY", group=SERVER),
    append("api_key_file", "--api-key-file", "LLAMA_ARG_API_KEY_FILE", "file of API keys, one per line ('#' lines "
           "are comments)", keys_from_file, "FNAME", group=SERVER),
    switch("embeddings", "--embedding --embeddings", "LLAMA_ARG_EMBEDDINGS", "enable the embedding endpoints",
           group=SERVER),
    switch("reranking", "--rerank --reranking", "LLAMA_ARG_RERANKING", "enable the reranking endpoint (implies "
           "--embeddings and --pooling rank)", group=SERVER),
    value("pooling", "--pooling", "LLAMA_ARG_POOLING", "embedding pooling (default: the model's)",
          choice("none", "mean", "cls", "last", "rank"), "{none,mean,cls,last,rank}", group=SERVER),
    switch("metrics", "--metrics", "LLAMA_ARG_ENDPOINT_METRICS", "enable the Prometheus /metrics endpoint",
           group=SERVER),
    switch("props", "--props", "LLAMA_ARG_ENDPOINT_PROPS", "allow changing global properties via POST /props",
           group=SERVER),
    toggle("slots", "--slots", "--no-slots", "LLAMA_ARG_ENDPOINT_SLOTS", "the /slots monitoring endpoint",
           group=SERVER),
    value("slot_save_path", "--slot-save-path", "", "directory to save slot KV caches in", existing_dir, "PATH",
          group=SERVER),
    toggle("jinja", "--jinja", "--no-jinja", "LLAMA_ARG_JINJA", "Jinja chat templates", group=SERVER),
    value("chat_template", "--chat-template", "LLAMA_ARG_CHAT_TEMPLATE", "chat template (default: the model's)", text,
          "JINJA_TEMPLATE", group=SERVER),
    value("chat_template_file", "--chat-template-file", "LLAMA_ARG_CHAT_TEMPLATE_FILE", "file holding the chat "
          "template", readable_file, "JINJA_TEMPLATE_FILE", group=SERVER),
    value("chat_template_kwargs", "--chat-template-kwargs", "LLAMA_ARG_CHAT_TEMPLATE_KWARGS LLAMA_CHAT_TEMPLATE_KWARGS",
          "extra template variables, a JSON object", json_object, "STRING", group=SERVER),
    value("reasoning_format", "--reasoning-format", "LLAMA_ARG_THINK", "where thoughts go: none, deepseek, "
          "deepseek-legacy or auto", choice("none", "deepseek", "deepseek-legacy", "auto"), "FORMAT", group=SERVER),
    switch("verbose", "-v --verbose --log-verbose", "", "log everything (debug level)", group=SERVER),
    value("verbosity", "-lv --verbosity --log-verbosity", "LLAMA_ARG_LOG_VERBOSITY", "log threshold: 0 generic, "
          "1 errors, 2 warnings, 3 info, 4+ debug", int_in(), group=SERVER),
    switch("log_disable", "--log-disable", "", "disable logging", group=SERVER),
    # -- sampling defaults of requests
    value("samplers", "--samplers", "", "sampler chain, names separated by ';'", samplers, "SAMPLERS", group=SAMPLING),
    value("seed", "-s --seed", "", "RNG seed (-1 = random)", int_in(-1, 0xFFFFFFFF, "an integer from -1 to "
          "4294967295"), "SEED", group=SAMPLING),
    value("samplers", "--sampler-seq --sampling-seq", "", "sampler chain as letters (edskypmxt)", sampler_letters,
          "SEQUENCE", group=SAMPLING),
    switch("ignore_eos", "--ignore-eos", "", "keep generating past end-of-generation tokens", group=SAMPLING),
    value("temp", "--temp --temperature", "LLAMA_ARG_TEMPERATURE", "temperature (negative = 0)",
          float_in(0.0, None, clamp_lo=True), group=SAMPLING),
    value("top_k", "--top-k", "LLAMA_ARG_TOP_K", "top-k sampling (0 or -1 = disabled)",
          int_in(-1, None, "an integer >= -1"), group=SAMPLING),
    value("top_p", "--top-p", "LLAMA_ARG_TOP_P", "top-p sampling (1.0 = disabled)", _UNIT, group=SAMPLING),
    value("min_p", "--min-p", "LLAMA_ARG_MIN_P", "min-p sampling (0.0 = disabled)", _UNIT, group=SAMPLING),
    value("top_nsigma", "--top-nsigma --top-n-sigma", "", "top-n-sigma sampling (-1.0 = disabled)", _ANY,
          group=SAMPLING),
    value("xtc_probability", "--xtc-probability", "", "XTC probability (0.0 = disabled)", _UNIT, group=SAMPLING),
    value("xtc_threshold", "--xtc-threshold", "", "XTC threshold (above 0.5 = disabled)", _UNIT, group=SAMPLING),
    value("typical", "--typical --typical-p", "", "locally typical sampling p (1.0 = disabled)", _UNIT,
          group=SAMPLING),
    value("repeat_last_n", "--repeat-last-n", "", "tokens the repetition penalties look back on (0 = disabled)",
          _WINDOW, group=SAMPLING),
    value("repeat_penalty", "--repeat-penalty", "LLAMA_ARG_REPEAT_PENALTY", "repetition penalty (1.0 = disabled)",
          repeat_penalty, group=SAMPLING),
    value("presence_penalty", "--presence-penalty", "LLAMA_ARG_PRESENCE_PENALTY", "presence penalty (0.0 = "
          "disabled)", _ANY, group=SAMPLING),
    value("frequency_penalty", "--frequency-penalty", "LLAMA_ARG_FREQUENCY_PENALTY", "frequency penalty (0.0 = "
          "disabled)", _ANY, group=SAMPLING),
    value("dry_multiplier", "--dry-multiplier", "", "DRY multiplier (0.0 = disabled)", _NONNEG, group=SAMPLING),
    value("dry_base", "--dry-base", "", "DRY base (values below 1.0 keep 1.75)", dry_base, group=SAMPLING),
    value("dry_allowed_length", "--dry-allowed-length", "", "DRY: repetitions this long go unpenalized", _UINT,
          group=SAMPLING),
    value("dry_penalty_last_n", "--dry-penalty-last-n", "", "DRY: tokens to scan for repetitions (0 = disabled)",
          _WINDOW, group=SAMPLING),
    append("dry_sequence_breakers", "--dry-sequence-breaker", "", "a DRY sequence breaker; repeat for more; the "
           "first one replaces the defaults (\\n : \" *), 'none' clears them", dry_breaker, "STRING", group=SAMPLING),
    value("dynatemp_range", "--dynatemp-range", "", "dynamic temperature range (0.0 = disabled)", _NONNEG,
          group=SAMPLING),
    value("dynatemp_exp", "--dynatemp-exp", "", "dynamic temperature exponent", _NONNEG, group=SAMPLING),
    value("mirostat", "--mirostat", "", "Mirostat (0 = disabled, 1 = Mirostat, 2 = Mirostat 2.0; replaces top-k, "
          "top-p and typical)", int_in(0, 2, "0, 1 or 2"), group=SAMPLING),
    value("mirostat_lr", "--mirostat-lr", "", "Mirostat learning rate (eta)", _NONNEG, group=SAMPLING),
    value("mirostat_ent", "--mirostat-ent", "", "Mirostat target entropy (tau)", _NONNEG, group=SAMPLING),
    value("min_keep", "--min-keep", "", "samplers keep at least this many tokens (older llama-server flag)", _UINT,
          group=SAMPLING),
    append("logit_bias", "-l --logit-bias", "", "bias a token id, e.g. 15043+1 or 15043-inf (never); repeat for "
           "more; ids outside the model's vocabulary are ignored", logit_bias, "TOKEN_ID(+/-)BIAS", group=SAMPLING),
    value("grammar", "--grammar", "", "GBNF grammar every request follows unless it brings its own", text,
          "GRAMMAR", group=SAMPLING),
    value("grammar", "--grammar-file", "", "file holding that grammar", file_text, "FNAME", group=SAMPLING),
    value("json_schema", "-j --json-schema", "", "JSON schema every request follows unless it brings its own "
          "grammar or schema", json_object, "SCHEMA", group=SAMPLING),
    value("json_schema", "-jf --json-schema-file", "", "file holding that JSON schema", json_schema_file, "FILE",
          group=SAMPLING),
    # -- llamajit's own
    value("n_probs_max", "--n-probs-max", "LLAMA_ARG_N_PROBS_MAX", "largest n_probs / top_logprobs a request may ask "
          "for", _UINT, group=OURS),
    value("drain_timeout", "--drain-timeout", "LLAMA_ARG_DRAIN_TIMEOUT", "on SIGTERM, seconds that requests in "
          "flight may take to finish before exit", _UINT, "SECONDS", group=OURS),
    value("max_queue", "--max-queue", "LLAMA_ARG_MAX_QUEUE", "requests that may wait for a slot; one more is "
          "answered 503 with Retry-After (0: no bound)", _UINT, "N", group=OURS),
    switch("log_prompts", "--log-prompts", "LLAMA_ARG_LOG_PROMPTS", "include prompt text in the request logs",
           group=OURS),
    # -- presets: a model from Hugging Face and its settings in one flag (later flags override them)
    _preset("fim_qwen_1.5b_default", "Qwen 2.5 Coder 1.5B for infill (downloads weights)", **_fim_qwen("1.5b")),
    _preset("fim_qwen_3b_default", "Qwen 2.5 Coder 3B for infill (downloads weights)", **_fim_qwen("3b")),
    _preset("fim_qwen_7b_default", "Qwen 2.5 Coder 7B for infill (downloads weights)", **_fim_qwen("7b")),
)
