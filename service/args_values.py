"""ServerArgs: the parsed command line, one field per flag of the table (service.args_spec),
with current llama-server's defaults (common/common.h). Comments name the flag where the field
name does not; "no effect" fields are accepted and stored only (see the INERT table).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

AUTO_PARALLEL_SLOTS = 4  # llama-server: "n_parallel is set to auto, using n_parallel = 4 and kv_unified = true"
DEFAULT_SAMPLERS = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature")
DEFAULT_DRY_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")


@dataclass(frozen=True)
class ServerArgs:
    # -- model and context
    model: str | None = None
    alias: tuple[str, ...] = ()  # -a a,b: the first is the name the API reports
    tags: tuple[str, ...] = ()
    hf_repo: str | None = None
    hf_file: str | None = None
    hf_token: str | None = None  # -hft, else HF_TOKEN
    offline: bool = False
    ctx_size: int = 0  # 0 = the model's training context
    n_predict: int = -1  # -1 = until end of generation or context
    parallel: int = -1  # -1 = auto, see resolved_parallel()
    batch_size: int = 2048
    ubatch_size: int = 512
    threads: int = -1  # <= 0: all cores
    n_gpu_layers: str = "auto"  # "N", "auto" or "all"
    device: str | None = None  # "none" or "CUDA0[,CUDA1..]"
    list_devices: bool = False
    warmup: bool = True
    escape: bool = True  # -e: escapes in --dry-sequence-breaker
    # -- server
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: tuple[str, ...] = ()  # --api-key and --api-key-file together; empty = no authentication
    embeddings: bool = False  # True also when reranking (llama-server sets both)
    reranking: bool = False
    pooling: str | None = None  # None = the model's; "rank" when reranking and none given
    metrics: bool = False
    props: bool = False
    slots: bool = True
    slot_save_path: str | None = None
    jinja: bool = True
    chat_template: str | None = None
    chat_template_file: str | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    reasoning_format: str = "auto"
    verbose: bool = False
    verbosity: int = 3  # -lv: 0 generic, 1 error, 2 warning, 3 info, 4+ debug
    log_disable: bool = False
    # -- server-wide sampling defaults (see sampling_defaults())
    samplers: tuple[str, ...] = DEFAULT_SAMPLERS  # --samplers / --sampling-seq, canonical names
    seed: int = -1  # -1 (or 0xFFFFFFFF) = random
    ignore_eos: bool = False
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    top_nsigma: float = -1.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    typical: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = 64
    dry_sequence_breakers: tuple[str, ...] = DEFAULT_DRY_SEQUENCE_BREAKERS  # escapes processed (-e)
    dynatemp_range: float = 0.0
    dynatemp_exp: float = 1.0
    mirostat: int = 0
    mirostat_lr: float = 0.1  # eta
    mirostat_ent: float = 5.0  # tau
    min_keep: int = 0
    logit_bias: tuple[tuple[int, float], ...] = ()
    grammar: str | None = None  # --grammar / --grammar-file (the later of it and json_schema wins)
    json_schema: dict[str, Any] | None = None  # -j / -jf
    # -- llamajit's own
    n_probs_max: int = 100  # cap on a request's n_probs / top_logprobs
    drain_timeout: int = 30  # SIGTERM grace for requests in flight, seconds
    log_prompts: bool = False  # include prompt text in request logs
    max_queue: int = 0  # tasks that may wait beyond the slots; 0: no bound
    # -- no effect in llamajit (see service/args_table_inert.py for why)
    cpu_mask: str = ""
    cpu_range: str | None = None
    cpu_strict: int = 0
    prio: int = 0
    poll: int = 50
    cpu_mask_batch: str | None = None  # None = same as --cpu-mask (and so on for *_batch)
    cpu_range_batch: str | None = None
    cpu_strict_batch: int | None = None
    prio_batch: int = 0
    poll_batch: int | None = None
    numa: str | None = None
    swa_full: bool = False
    flash_attn: str = "auto"
    perf: bool = True  # llama-server's help prints "default: false" but timings are on (it prints no_perf)
    kv_offload: bool = True
    repack: bool = True
    no_host: bool = False
    defrag_thold: str | None = None
    rpc: str | None = None
    load_mode: str = "auto"
    mlock: bool = False
    mmap: bool = True
    lazy_mode: str = "auto"
    split_mode: str = "layer"
    tensor_split: tuple[float, ...] = ()
    main_gpu: int = 0
    fit: str = "on"
    fit_target: tuple[int, ...] = (1024,)
    fit_ctx: int = 4096
    check_tensors: bool = False
    op_offload: bool = True
    ctx_checkpoints: int = 32
    checkpoint_min_step: int = 8192
    log_jsonl: bool = False
    log_colors: str = "auto"
    log_prefix: bool = False
    log_timestamps: bool = False
    adaptive_decay: float = 0.9
    # -- no effect yet: llama-server behaviour still to be wired up (flip the row to WORKS)
    threads_batch: int | None = None  # None = same as --threads
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    log_file: str | None = None
    log_prompts_dir: str | None = None
    backend_sampling: bool = False
    keep: int = 0
    cache_ram: int = 8192  # MiB
    kv_unified_flag: bool | None = None  # -kvu / -no-kvu; None = on when -np is auto (see kv_unified())
    kv_unified_per_slot: int | None = None
    cache_idle_slots: bool = True
    context_shift: bool = False
    reverse_prompt: tuple[str, ...] = ()  # -r, repeatable
    special: bool = False
    spm_infill: bool = False
    cont_batching: bool = True
    embd_normalize: int = 2
    reuse_port: bool = False
    static_path: str = ""  # --path
    cors_origins: str = "*"
    cors_methods: str = "GET, POST, DELETE, OPTIONS"
    cors_headers: str = "*"
    cors_credentials: bool = True
    api_prefix: str = ""
    webui: bool = True
    ui_config: str | None = None  # --ui-config JSON or the text of --ui-config-file
    ui_mcp_proxy: bool = False
    tools: tuple[str, ...] = ()
    tools_runtime: str | None = None
    agent: bool = False
    ssl_key_file: str | None = None
    ssl_cert_file: str | None = None
    timeout: int = 3600  # read/write, seconds
    sse_ping_interval: int = 30
    threads_http: int = -1
    cache_prompt: bool = True
    cache_reuse: int = 0
    media_path: str | None = None
    mmproj: str | None = None  # --mmproj: the multimodal projector file
    mmproj_auto: bool = True  # --no-mmproj: load no projector even when --mmproj is given
    mmproj_offload: bool = True
    reasoning: str = "auto"  # -rea on|off|auto
    reasoning_effort: str = "default"
    reasoning_budget: int = -1
    reasoning_budget_message: str | None = None
    reasoning_preserve: bool = True
    skip_chat_parsing: bool = False
    prefill_assistant: bool = True
    slot_prompt_similarity: float = 0.1
    sleep_idle_seconds: int = -1
    lora: tuple[tuple[str, float], ...] = ()  # (file, scale) of each --lora adapter (scale 1)
    lora_scaled: tuple[tuple[str, float], ...] = ()  # ... and of each --lora-scaled one; ids: these after --lora's
    lora_init_without_apply: bool = False
    models_dir: str | None = None  # router mode (service.router): where models come from
    models_preset: str | None = None
    models_max: int = 4
    models_autoload: bool = True
    # -- speculative decoding (service/args_table_spec.py)
    spec_type: tuple[str, ...] = ("none",)  # --spec-type: none, ngram-simple, draft-simple
    spec_ngram_simple_size_n: int = 12  # the n-gram looked up in the token history
    spec_ngram_simple_size_m: int = 48  # the most tokens drafted after it
    spec_ngram_simple_min_hits: int = 1  # no effect (see its row)
    spec_draft_model: str | None = None  # -md: the draft model of --spec-type draft-simple
    spec_draft_ngl: str = "auto"  # -ngld: its layers on the GPU ("N", "auto" or "all")
    spec_draft_type_k: str = "f16"  # -ctkd: the draft model's KV cache types
    spec_draft_type_v: str = "f16"  # -ctvd
    spec_draft_n_max: int = 3  # its most tokens per draft
    spec_draft_n_min: int = 0  # its fewest (a shorter draft is dropped)
    spec_draft_p_min: float = 0.0  # the least probability of a drafted token (greedy)
    # (spelling given, why it changes nothing) for each such flag or variable given: logged at startup
    no_effect: tuple[tuple[str, str], ...] = ()

    def resolved_parallel(self) -> int:
        """Number of slots. llama-server's rule for -np -1 (its default): 4 slots, and the KV
        cache is unified, i.e. all slots share the one ctx_size pool (see kv_unified()); an
        explicit -np N gives N slots and splits ctx_size evenly between them."""
        return AUTO_PARALLEL_SLOTS if self.parallel < 0 else self.parallel

    def kv_unified(self) -> bool:
        """True when the slots share one context pool (-kvu; without -kvu/-no-kvu, llama-server's
        auto -np), rather than each slot getting ctx_size / parallel tokens."""
        return self.parallel < 0 if self.kv_unified_flag is None else self.kv_unified_flag

    def log_level(self) -> int:
        """The logging threshold: --log-disable, then -v, then -lv (llama.cpp's verbosity scale)."""
        if self.log_disable:
            return logging.CRITICAL + 1
        if self.verbose or self.verbosity >= 4:
            return logging.DEBUG
        return {3: logging.INFO, 2: logging.WARNING, 1: logging.ERROR}.get(self.verbosity, logging.CRITICAL)

    def sampling_defaults(self, n_vocab: int | None = None, n_ctx: int | None = None):
        """The SamplingParams every request starts from (a request's own fields override them),
        as llama-server copies its CLI sampling into each task. With n_vocab, --logit-bias ids
        outside the vocabulary are dropped, as llama-server drops them in requests; with n_ctx,
        the look-back windows are capped at the context, as for requests."""
        from service.sampling import SamplingParams

        def window(n: int) -> int:
            return min(n, n_ctx) if n_ctx is not None else n

        bias = tuple((t, b) for t, b in self.logit_bias if n_vocab is None or t < n_vocab)
        return SamplingParams(
            seed=self.seed, min_keep=self.min_keep, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
            xtc_probability=self.xtc_probability, xtc_threshold=self.xtc_threshold, typical_p=self.typical,
            temperature=self.temp, dynatemp_range=self.dynatemp_range, dynatemp_exponent=self.dynatemp_exp,
            repeat_last_n=window(self.repeat_last_n), repeat_penalty=self.repeat_penalty,
            frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
            dry_multiplier=self.dry_multiplier, dry_base=self.dry_base, dry_allowed_length=self.dry_allowed_length,
            dry_penalty_last_n=window(self.dry_penalty_last_n), dry_sequence_breakers=self.dry_sequence_breakers,
            mirostat=self.mirostat, mirostat_tau=self.mirostat_ent, mirostat_eta=self.mirostat_lr,
            top_n_sigma=self.top_nsigma, ignore_eos=self.ignore_eos, logit_bias=bias, samplers=self.samplers)

    def default_structured(self):
        """The StructuredOutput of requests that bring no grammar, schema or response_format of
        their own (llama-server keeps its CLI grammar in each task unless the request replaces it);
        None without --grammar or --json-schema."""
        from service.sampling.structured import StructuredOutput

        if self.json_schema is not None:
            return StructuredOutput(schema=self.json_schema, field="--json-schema")
        if self.grammar is not None:
            return StructuredOutput(grammar=self.grammar, field="--grammar")
        return None
