"""llama-server's server flags that llamajit has wired up (Effect.WORKS): transport (addresses,
TLS, CORS, prefix, timeouts, HTTP threads, SSE pings), slots and the KV cache (prompt caching,
unified pool, context shift, RAM prompt cache, sleep, batching threads), chat (reasoning,
thinking budget, assistant prefill, chat parsing) and the Web UI (--ui, --path).

Each row: ServerArgs field, names, LLAMA_ARG_* variables, help, converter, metavar; defaults are
the ServerArgs fields' (service/args_values.py).
"""

from __future__ import annotations

from service.args_conv import existing_dir, float_in, int_in, lora_files, lora_scaled, sleep_seconds, text, tri_state
from service.args_spec import SERVER, Flag, optional, switch, toggle, value

_INT = int_in()
_UINT = int_in(0, None, "a non-negative integer")

SERVER_FLAGS: tuple[Flag, ...] = (
    value("threads_batch", "-tb --threads-batch", "", "threads for batch and prompt processing (default: same as "
           "--threads; at most the pool that --threads sizes)", _INT, group=SERVER),
    value("keep", "--keep", "", "tokens of the initial prompt kept when the context shifts (-1 = all)", _INT,
           group=SERVER),
    value("cache_ram", "-cram --cache-ram", "LLAMA_ARG_CACHE_RAM", "prompt cache size in MiB (-1 = no limit, 0 = "
           "disabled)", _INT, group=SERVER),
    toggle("kv_unified_flag", "-kvu --kv-unified", "-no-kvu --no-kv-unified", "LLAMA_ARG_KV_UNIFIED", "all slots share "
           "one context budget of -c tokens, enforced as llama-server does (here the cache memory itself is still "
           "allocated per slot; default: on when -np is auto)", group=SERVER),
    toggle("cache_idle_slots", "--cache-idle-slots", "--no-cache-idle-slots", "LLAMA_ARG_CACHE_IDLE_SLOTS", "save "
           "idle slots to the prompt cache on a new task", group=SERVER),
    value("cache_reuse", "--cache-reuse", "LLAMA_ARG_CACHE_REUSE", "min chunk size to reuse from the cache via KV "
          "shifting (0 = disabled; a request's n_cache_reuse overrides it)", _UINT, group=SERVER),
    toggle("context_shift", "--context-shift", "--no-context-shift", "LLAMA_ARG_CONTEXT_SHIFT", "shift the context "
           "on infinite generation", group=SERVER),
    toggle("cont_batching", "-cb --cont-batching", "-nocb --no-cont-batching", "LLAMA_ARG_CONT_BATCHING",
           "continuous batching", group=SERVER),
    switch("reuse_port", "--reuse-port", "LLAMA_ARG_REUSE_PORT", "let several sockets bind the same port",
           group=SERVER),
    value("cors_origins", "--cors-origins", "LLAMA_ARG_CORS_ORIGINS", "allowed CORS origins, comma-separated "
           "('localhost': local ones only)", text, "ORIGINS", group=SERVER),
    value("cors_methods", "--cors-methods", "LLAMA_ARG_CORS_METHODS", "allowed CORS methods", text, "METHODS",
           group=SERVER),
    value("cors_headers", "--cors-headers", "LLAMA_ARG_CORS_HEADERS", "allowed CORS headers", text, "HEADERS",
           group=SERVER),
    toggle("cors_credentials", "--cors-credentials", "--no-cors-credentials", "LLAMA_ARG_CORS_CREDENTIALS", "allow "
           "credentials for CORS", group=SERVER),
    value("api_prefix", "--api-prefix", "LLAMA_ARG_API_PREFIX", "path prefix to serve under, no trailing slash",
           text, "PREFIX", group=SERVER),
    value("ssl_key_file", "--ssl-key-file", "LLAMA_ARG_SSL_KEY_FILE", "PEM private key for HTTPS", text, "FNAME",
           group=SERVER),
    value("ssl_cert_file", "--ssl-cert-file", "LLAMA_ARG_SSL_CERT_FILE", "PEM certificate for HTTPS", text, "FNAME",
           group=SERVER),
    value("timeout", "-to --timeout", "LLAMA_ARG_TIMEOUT", "HTTP read/write timeout in seconds", _UINT, group=SERVER),
    value("sse_ping_interval", "--sse-ping-interval", "LLAMA_ARG_SSE_PING_INTERVAL", "seconds between SSE pings "
           "(-1 = none)", _INT, group=SERVER),
    value("threads_http", "--threads-http", "LLAMA_ARG_THREADS_HTTP", "threads for the HTTP side's blocking work "
           "(template rendering, grammar compiling); requests share one event loop (< 1: max(slots + 4, "
           "cores - 1))", _INT, group=SERVER),
    toggle("cache_prompt", "--cache-prompt", "--no-cache-prompt", "LLAMA_ARG_CACHE_PROMPT", "prompt caching",
           group=SERVER),
    optional("reasoning", "-rea --reasoning", "LLAMA_ARG_REASONING", "thinking in chats: on, off or auto",
           tri_state, "on", "[on|off|auto]", group=SERVER),
    value("reasoning_budget", "--reasoning-budget", "LLAMA_ARG_THINK_BUDGET", "thinking token budget (-1 = "
           "unlimited, 0 = none)", int_in(-1, None, "an integer >= -1"), group=SERVER),
    value("reasoning_budget_message", "--reasoning-budget-message", "LLAMA_ARG_THINK_BUDGET_MESSAGE", "text "
           "injected when the thinking budget runs out", text, "MESSAGE", group=SERVER),
    toggle("skip_chat_parsing", "--skip-chat-parsing", "--no-skip-chat-parsing", "LLAMA_ARG_SKIP_CHAT_PARSING",
           "everything the model writes goes to content", group=SERVER),
    toggle("prefill_assistant", "--prefill-assistant", "--no-prefill-assistant", "LLAMA_ARG_PREFILL_ASSISTANT",
           "continue a final assistant message", group=SERVER),
    value("slot_prompt_similarity", "-sps --slot-prompt-similarity", "", "how much a prompt must match a slot's to "
           "use that slot (0.0 = disabled)", float_in(), "SIMILARITY", group=SERVER),
    value("sleep_idle_seconds", "--sleep-idle-seconds", "", "idle seconds before the server sleeps (-1 = never)",
           sleep_seconds, "SECONDS", group=SERVER),
    value("media_path", "--media-path", "", "directory for loading local media files; files can be accessed via "
          "file:// URLs using relative paths (default: disabled)", existing_dir, "PATH", group=SERVER),
    # the Web UI (service.api.webui)
    toggle("webui", "--ui --webui", "--no-ui --no-webui", "LLAMA_ARG_UI LLAMA_ARG_WEBUI", "the Web UI at / (off: / "
           "is 404)", group=SERVER),
    value("static_path", "--path", "LLAMA_ARG_STATIC_PATH", "serve this directory's files instead of the built-in "
          "Web UI (its index.html at /)", existing_dir, "PATH", group=SERVER),
    toggle("ui_mcp_proxy", "--ui-mcp-proxy --webui-mcp-proxy", "--no-ui-mcp-proxy --no-webui-mcp-proxy",
           "LLAMA_ARG_UI_MCP_PROXY", "/cors-proxy, the Web UI's proxy for MCP servers (experimental; default: "
           "disabled, 403)", group=SERVER),
    # LoRA adapters (service.model.lora): ids are --lora's files, then --lora-scaled's. As in
    # llama-server, a repeated flag keeps its last value (use commas for several files).
    value("lora", "--lora", "", "LoRA adapter file (comma-separated for several; scale 1)", lora_files, "FNAME",
          group=SERVER),
    value("lora_scaled", "--lora-scaled", "", "LoRA adapter file with its scale (FNAME:SCALE,...)", lora_scaled,
          "FNAME:SCALE,...", group=SERVER),
    switch("lora_init_without_apply", "--lora-init-without-apply", "", "load the LoRA adapters at scale 0 (apply "
           "them later with POST /lora-adapters)", group=SERVER),
    # router mode (no -m): service.router
    value("models_dir", "--models-dir", "LLAMA_ARG_MODELS_DIR", "router mode: a directory of models, one .gguf or "
           "one subdirectory each (default: disabled)", text, "PATH", group=SERVER),
    value("models_preset", "--models-preset", "LLAMA_ARG_MODELS_PRESET", "router mode: INI file of model presets "
           "(default: disabled)", text, "PATH", group=SERVER),
    value("models_max", "--models-max", "LLAMA_ARG_MODELS_MAX", "router mode: models loaded at once; the least "
           "recently used idle one is unloaded to make room (default: 4, 0 = unlimited)", _UINT, group=SERVER),
    toggle("models_autoload", "--models-autoload", "--no-models-autoload", "LLAMA_ARG_MODELS_AUTOLOAD", "router "
           "mode: load a model when a request names it (default: enabled; ?autoload= per request)", group=SERVER),
    # multimodal input (service.vision): the projector of --mmproj encodes images on the CPU
    value("mmproj", "-mm --mmproj", "LLAMA_ARG_MMPROJ", "multimodal projector file (projector types: gemma3, mlp)", text,
          "FILE", group=SERVER),
    toggle("mmproj_auto", "--mmproj-auto", "--no-mmproj --no-mmproj-auto", "LLAMA_ARG_MMPROJ_AUTO", "use a projector "
           "file if available, useful when using -hf (default: enabled)", group=SERVER),
    toggle("mmproj_offload", "--mmproj-offload", "--no-mmproj-offload", "LLAMA_ARG_MMPROJ_OFFLOAD", "the projector on "
           "the GPU (default: enabled; llamajit's vision encoder always runs on the CPU)", group=SERVER),
)
