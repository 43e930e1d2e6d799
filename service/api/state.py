"""What the HTTP layer knows about the server: flags, the model once loaded, and its status.

Status (a state machine, advanced by the loader thread and by SIGTERM):

    LOADING --model ready--> READY --SIGTERM--> DRAINING --in-flight done or grace over--> exit
       |                                           ^
       +--load failed--> FAILED (process exits 1)  +-- (also from LOADING)

/health answers 503 in every state but READY; other routes answer 503 while LOADING and
DRAINING. The HTTP server runs on its own thread from the start, so /health answers while
the main thread loads the model and then runs the engine (see service.engine.engine on why
the main thread).

With --sleep-idle-seconds the engine unloads the model while idle (service.engine.power); the
status stays READY. Routes that need the model read `model`, which wakes it; /health, /props,
/models and /metrics read `loaded_model`, which does not (llama-server's split).
"""

from __future__ import annotations

import enum
import os
import threading
import time

import structlog

from service.args import ServerArgs

log = structlog.get_logger("llamajit.server")


class Status(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"


class ServerState:
    def __init__(self, args: ServerArgs):
        self.args = args
        self.status = Status.LOADING
        self._model = None  # service.model.model.Model once loaded
        self.engine = None  # service.engine.engine.Engine
        self.template = None  # service.chat.ChatTemplate
        self.n_slots = args.resolved_parallel()
        self.started = time.time()
        self.load_error: str | None = None
        self.in_flight = 0  # HTTP requests being answered (for the drain)
        self.build_info = ""
        self.rank_head = None  # service.model.rank.RankHead with --reranking
        self.media = None  # service.vision.media.Media with --mmproj
        self._ready = threading.Event()

    @property
    def model(self):
        """The model, for a request that needs it: a sleeping server starts waking. Its tokenizer and
        config stay while asleep, so the handler goes on at once; tasks it submits wait for the reload."""
        if self.engine is not None:
            self.engine.power.want()
        return self._model

    @property
    def loaded_model(self):
        """The model without waking it (None while loading): for what a sleeping server still answers."""
        return self._model

    @property
    def is_sleeping(self) -> bool:
        return self.engine is not None and self.engine.power.sleeping

    @property
    def alias(self) -> str:
        """The model's name in the API: llama-server keeps -a's aliases in a sorted set and takes
        the first; without one, the -hf repository or the model path."""
        return sorted(self.args.alias)[0] if self.args.alias else (self.args.hf_repo or self.args.model or "")

    def load(self) -> None:
        """Load the model and build the engine (the caller runs engine.run() on this same thread)."""
        from service.engine.engine import Engine
        from service.model.model import Model

        a = self.args
        t0 = time.perf_counter()
        if a.sleep_idle_seconds > 0:  # what the weights take comes back whole when the server sleeps
            from service.engine.power import prefer_mappings

            prefer_mappings()
        try:
            model = Model(a.model, n_ctx=self.slot_ctx(), n_seq=self.n_slots,
                          n_ctx_seq=self.slot_ctx(llamacpp=True),  # picks longrope's factors
                          max_batch=max(1, min(a.ubatch_size, a.batch_size)), n_gpu_layers=a.n_gpu_layers, device=a.device,
                          lora=tuple((f, 0.0 if a.lora_init_without_apply else sc) for f, sc in a.lora + a.lora_scaled))
            if model.placement.warning:
                log.warning(model.placement.warning, n_gpu_layers=a.n_gpu_layers)
            self.template = _template(a, model)
            if a.reranking:
                from service.model.config import ModelError
                from service.model.rank import RankHead

                self.rank_head = RankHead.from_model(model)
                if self.rank_head is None:
                    raise ModelError(f"{a.model}: --reranking needs a classification head (cls.weight or "
                                     "cls.output.weight); this model has none")
            self.media = _media(a, model)
            from service.engine.draft import load_draft

            engine = Engine(model, self.engine_config(model.n_ctx, load_draft(a, model, self.n_slots, a.warmup)))
            if a.warmup:  # kernels compiled (or loaded from the cache) before /health says ok
                engine.warmup()  # (--no-warmup: the first request pays for it instead)
        except Exception as e:  # a broken model file or template: reported, then the process exits 1
            self.load_error = f"{type(e).__name__}: {e}"
            self.status = Status.FAILED
            log.error("model load failed", error=self.load_error)
            self._ready.set()
            return
        self._model, self.engine = model, engine
        if self.status is Status.LOADING:
            self.status = Status.READY
        facts = {k: v for k, v in model.facts().items() if k in ("arch", "ftype", "n_params", "n_vocab", "n_ctx_train")}
        p = model.placement
        log.info("model loaded", model=a.model, seconds=round(time.perf_counter() - t0, 2), n_ctx=model.n_ctx,
                 warmup=a.warmup, slots=self.n_slots, n_gpu_layers=p.n_gpu, output_on_gpu=p.output_on_gpu,
                 device=p.device or "CPU", **facts)
        if not model.cfg.causal:  # service.model.encoder computes with NumPy, not the Numba kernels
            log.warning("encoder model: -t/-tb do not set its threads (NumPy's BLAS does; OPENBLAS_NUM_THREADS)",
                        arch=model.cfg.arch)
        self._ready.set()

    def engine_config(self, n_ctx: int, draft=None):
        """The flags the engine loop obeys; n_ctx: one slot's context (with unified KV, the pool);
        draft: the draft model (service.engine.draft) of -md with --spec-type draft-simple."""
        from service.engine.speculative import SpecConfig
        from service.engine.task import EngineConfig

        a = self.args
        spec = SpecConfig(a.spec_type, a.spec_ngram_simple_size_n, a.spec_ngram_simple_size_m, a.spec_draft_n_max,
                          a.spec_draft_n_min, a.spec_draft_p_min)
        if spec.on:
            log.info("speculative decoding", types=spec.name, size_n=spec.size_n, size_m=spec.size_m)
        return EngineConfig(
            n_slots=self.n_slots, n_predict_default=a.n_predict, cont_batching=a.cont_batching,
            ctx_shift=a.context_shift and self.media is None,  # llama-server: no context shift with multimodal
            similarity=a.slot_prompt_similarity, pool=n_ctx if a.kv_unified() else 0, cache_ram_mib=a.cache_ram,
            cache_idle_slots=a.cache_idle_slots, cache_reuse_ok=self.media is None,  # llama-server: none with multimodal
            sleep_idle_seconds=a.sleep_idle_seconds, t_start=self.started,
            max_queue=a.max_queue, spec=spec, draft=draft,
            **self._threads())

    def _threads(self) -> dict:
        """-t and -tb as Numba thread counts, within the pool Numba started with (NUMBA_NUM_THREADS,
        which service.cli sets from -t: a larger -tb cannot grow it, and is capped with a warning)."""
        import numba

        a = self.args
        if a.threads_batch is None:
            return {}
        pool = numba.config.NUMBA_NUM_THREADS
        t = a.threads if a.threads > 0 else pool
        tb = a.threads_batch if a.threads_batch > 0 else (os.cpu_count() or pool)  # llama.cpp: <= 0 is all cores
        if max(t, tb) > pool:
            log.warning("-t/-tb exceed Numba's thread pool: capped", threads=t, threads_batch=tb, pool=pool)
        return {"threads": min(t, pool), "threads_batch": min(tb, pool)}

    def slot_ctx(self, llamacpp: bool = False) -> int:
        """Context of one slot: the whole -c pool when slots share it (-kvu, or auto -np), else -c / -np.
        llamacpp: llama.cpp's n_ctx_seq instead, padded to 256 (what picks longrope's factors)."""
        from service.gguf_reader import read_gguf
        from service.model.config import config_from_metadata
        from service.model.weights import llamacpp_ctx_seq

        total = self.args.ctx_size
        if total <= 0:
            total = config_from_metadata(read_gguf(self.args.model).metadata, self.args.model).n_ctx_train
        if llamacpp:
            return llamacpp_ctx_seq(total, self.n_slots, self.args.kv_unified())
        return total if self.args.kv_unified() else max(1, total // self.n_slots)

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)


def _media(a: ServerArgs, model):
    """The projector of --mmproj (None without one, or with --no-mmproj)."""
    if not a.mmproj or not a.mmproj_auto:
        return None
    from service.model.config import ModelError
    from service.vision.media import Media, MediaError
    from service.vision.mmproj import MmprojError, load_mmproj

    if model.placement.n_gpu > 0:
        raise ModelError("--mmproj: image prompts run the text model on the CPU only here; add -ngl 0")
    try:
        vm = load_mmproj(a.mmproj, model.cfg.n_embd)
        tok = model.tokenizer
        media = Media(vm, lambda s: tok.tokenize(s, add_special=False, parse_special=True),
                      tok.bos_id if tok.add_bos else None)
    except (MmprojError, MediaError) as e:
        raise ModelError(str(e)) from None
    if a.warmup:  # the encoder's kernels compiled (or loaded from the cache) before /health says ok
        import numpy as np

        media.encoder.encode(np.zeros((3, vm.image_size, vm.image_size), np.float32))
    if a.context_shift:
        log.warning("ctx_shift is not supported by multimodal, it will be disabled")
    if a.cache_reuse:
        log.warning("cache_reuse is not supported by multimodal, it will be disabled")
    log.info("loaded multimodal model", mmproj=a.mmproj, projector=vm.projector, image_tokens=vm.n_tokens)
    return media


def _template(a: ServerArgs, model):
    from service.chat import ChatTemplate

    tok = model.tokenizer
    bos = tok.token_text(tok.bos_id) if tok.bos_id is not None and tok.bos_id >= 0 else ""
    eos = tok.token_text(tok.eos_id) if tok.eos_id is not None and tok.eos_id >= 0 else ""
    return ChatTemplate.from_model(model.file.metadata, name=a.chat_template, file=a.chat_template_file,
                                   bos_token=bos, eos_token=eos, kwargs=dict(a.chat_template_kwargs or {}))
