# syntax=docker/dockerfile:1.7
# llamajit: llama.cpp's llama-server rebuilt in Python, as a container.
#
#   docker build -t llamajit:0.1.0 .                          # kernels precompiled, no model inside
#   docker build --build-arg BAKE_MODEL=1 -t llamajit:0.1.0 . # plus the default model at /models
#   docker build --build-arg EXTRAS=cuda -t llamajit:0.1.0-cuda .   # numba-cuda for the GPU profile
#
# The Helm chart's default (model.source=image) expects the BAKE_MODEL=1 image.
#
# Numba machine code is cached per CPU target (LLVM CPU name + feature string); a cached kernel
# is reused only where both match exactly. The image therefore pins the target instead of
# using the build machine's CPU, so its precompiled cache is valid on every node that has at
# least that target's instructions. The default, x86-64-v3 (AVX2/FMA/BMI2: Intel Haswell and
# AMD Zen or newer), runs on any current x86 server. For an AVX-512 VNNI fleet (Ice Lake,
# Sapphire Rapids, Zen 4) the int8 dot products are faster with
#   --build-arg NUMBA_CPU_NAME=icelake-server --build-arg NUMBA_CPU_FEATURES=+avx512vnni,+avx512bw
# (kernels/_jit.py looks for those two features by name). A node lacking a pinned instruction
# dies with SIGILL, so pin no higher than the oldest node. For arm64, NUMBA_CPU_NAME=generic.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment holding llamajit and its dependencies -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the wheel is built from: tests, models and tools stay out (see .dockerignore).
COPY pyproject.toml README.md ./
COPY kernels ./kernels
COPY service ./service
# EXTRAS: optional dependency groups of pyproject.toml, e.g. "cuda".
ARG EXTRAS=""
RUN pip install "/src${EXTRAS:+[${EXTRAS}]}" \
    && python -m compileall -q /opt/venv/lib

# ---- models: the default model, verified by sha256 (used to precompile; baked on request) --
FROM build AS models
COPY scripts/fetch_models.py /src/scripts/fetch_models.py
RUN python /src/scripts/fetch_models.py smollm2 --dir /models

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG NUMBA_CPU_NAME=x86-64-v3
ARG NUMBA_CPU_FEATURES=""
# Numeric ids, so the kubelet can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 llamajit \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin llamajit
COPY --from=build /opt/venv /opt/venv
# NUMBA_CACHE_DIR: where the precompiled kernels live in the image. Numba only uses a cache
# folder it can write to, so under a read-only root filesystem the pod copies this folder
# into a writable volume and points NUMBA_CACHE_DIR there (the chart's numba-cache init
# container); with a writable root it is used in place.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/opt/llamajit/numba-cache \
    NUMBA_CPU_NAME=${NUMBA_CPU_NAME} \
    NUMBA_CPU_FEATURES=${NUMBA_CPU_FEATURES} \
    NUMBA_SLP_VECTORIZE=1 \
    HF_HOME=/tmp/huggingface \
    LLAMA_ARG_HOST=0.0.0.0 \
    LLAMA_ARG_PORT=8080

# Precompile (service/precompile.py): load the default model and generate a few tokens for two
# sequences at once, one with the default sampler chain and one greedily ignoring EOS, which
# compiles the load-time packing, prefill, batched decode and sampler kernels for the pinned CPU
# target. The greedy sampler (temperature 0) is what the server's start-up warmup also runs
# (without it every pod's first start compiled a kernel); ignore_eos (a logit bias) is what the
# load tests send. The model is bind-mounted from its stage, not copied into a layer.
ARG PRECOMPILE=1
RUN --mount=type=bind,from=models,source=/models,target=/tmp/models <<'EOF'
set -eu
mkdir -p "${NUMBA_CACHE_DIR}"
if [ "${PRECOMPILE}" = "1" ]; then
  python -m service.precompile /tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf
fi
# Owned by the server's user: it adds the kernels it compiles later (other weight types).
chown -R 10001:10001 "${NUMBA_CACHE_DIR}"
EOF

# BAKE_MODEL=1: the default model at /models, where the chart's model.source=image looks.
ARG BAKE_MODEL=""
RUN --mount=type=bind,from=models,source=/models,target=/tmp/models \
    mkdir -p /models \
    && if [ -n "${BAKE_MODEL}" ]; then cp /tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf /models/; fi \
    && chmod -R a+rX /models

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# For plain `docker run`; Kubernetes uses the chart's probes instead. /health answers 503
# while the model loads, so the start period is generous.
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LLAMA_ARG_PORT', '8080'), timeout=2)"]
# SIGTERM drains in-flight requests, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["llama-server"]
CMD ["--model", "/models/SmolLM2-135M-Instruct.Q4_1.gguf"]
