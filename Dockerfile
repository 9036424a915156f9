# syntax=docker/dockerfile:1
# multi-task-transformer: the binaries, libtorch 2.4.0 and all-MiniLM-L6-v2 in one image.
#   docker build -t multi-task-transformer .                               # VARIANT=cuda (default)
#   docker build -t multi-task-transformer:cpu --build-arg VARIANT=cpu .   # no CUDA libraries
#   docker run --rm -v "$PWD/runs:/app/runs" --user "$(id -u):$(id -g)" multi-task-transformer
#                                       # task4; the checkpoint lands in ./runs/task4 on the host
#   docker run --rm multi-task-transformer task1        # or task2, task3, mtt ..., embed ..., doctor
#   docker run --rm --gpus all multi-task-transformer task4 --device cuda     # cuda variant
# cuda: the PyPI wheel's CUDA 12.1 runtime libraries, for --gpus all. cpu: binaries linked
# without libtorch_cuda, and only the two small CUDA files libtorch_cpu.so itself needs.
# No network is needed at run time.
ARG VARIANT=cuda

FROM docker.io/library/rust:1-slim-bookworm AS build
ARG VARIANT
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Downloads are cached in build-cache mounts, never in a layer; pip keeps no cache of its own.
ENV CARGO_HOME=/usr/local/cargo MTT_CACHE_DIR=/var/cache/mtt PIP_NO_CACHE_DIR=1 \
    LIBTORCH=/opt/libtorch-${VARIANT}/torch LIBTORCH_CXX11_ABI=0
# libtorch and the model first: a code change reuses these layers.
COPY scripts/libtorch-site.sh scripts/setup.sh scripts/
RUN --mount=type=cache,target=/var/cache/mtt \
    bash scripts/libtorch-site.sh "$VARIANT" "/opt/libtorch-$VARIANT" \
 && bash scripts/setup.sh --model-only
COPY . .
# /dist mirrors the runtime image's small files: binaries, entry point, model, data. libtorch's
# libraries are copied straight from /opt (never duplicated inside this stage).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/var/cache/mtt-target \
    CARGO_TARGET_DIR="/var/cache/mtt-target/$VARIANT" cargo build --release --locked --bins \
 && mkdir -p /dist/usr/local/bin /dist/app \
 && for b in mtt task1 task2 task3 task4; do cp "/var/cache/mtt-target/$VARIANT/release/$b" /dist/usr/local/bin/; done \
 && cp scripts/docker-entrypoint.sh /dist/usr/local/bin/mtt-entrypoint \
 && cp -a models data /dist/app/

FROM docker.io/library/debian:bookworm-slim
ARG VARIANT
LABEL org.opencontainers.image.title="multi-task-transformer ($VARIANT)" \
      org.opencontainers.image.description="Sentence embeddings and multi-task classification (all-MiniLM-L6-v2) on libtorch 2.4.0"
# libgomp1: torch-sys links the system's OpenMP runtime (libtorch brings its own copy as well).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/mtt mtt \
 && mkdir -p /app/runs \
 && chown mtt:mtt /app/runs
# libtorch at the path the binaries' rpath names (torch/lib finds nvidia/ through its own rpath).
COPY --from=build /opt/libtorch-${VARIANT}/torch/lib /opt/libtorch-${VARIANT}/torch/lib
COPY --from=build /opt/libtorch-${VARIANT}/torch/build-version /opt/libtorch-${VARIANT}/torch/
COPY --from=build /opt/libtorch-${VARIANT}/nvidia /opt/libtorch-${VARIANT}/nvidia
COPY --from=build /dist/ /
WORKDIR /app
# Training output (runs/task3, runs/task4, mtt train --out runs/...) outlives the container.
VOLUME ["/app/runs"]
USER 10001:10001
ENTRYPOINT ["mtt-entrypoint"]
