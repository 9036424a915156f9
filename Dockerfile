# multi-task-transformer: build and run image, mirroring scripts/setup.sh.
#   docker build -t multi_task_transformer .
#   docker run --rm multi_task_transformer            # Task 4 (layer-wise learning rates)
#   docker run --rm multi_task_transformer task1      # Task 1 (or task2, task3, mtt ...)
#   docker run --rm --gpus all multi_task_transformer task4 --device cuda
# The runtime stage bundles libtorch 2.4.0 (PyPI wheel torch==2.4.0, CUDA 12.1 runtime included)
# and the all-MiniLM-L6-v2 folder, so it needs no network at run time.

FROM rust:1-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# libtorch and the model first, so code changes do not redo the 2.5 GB download.
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh
COPY . .
RUN cargo build --release --bins \
 && mkdir -p /dist/bin /dist/site \
 && cp target/release/mtt target/release/task1 target/release/task2 target/release/task3 target/release/task4 /dist/bin/ \
 && site="$(dirname "$(readlink -f .libtorch)")" \
 && mkdir -p /dist/site/torch \
 && cp -a "$site/torch/lib" /dist/site/torch/lib \
 && cp -a "$site/nvidia" /dist/site/nvidia

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# torch/lib finds the CUDA libraries through its rpath ($ORIGIN/../../nvidia/...): keep that layout.
COPY --from=build /dist/site /opt/site
COPY --from=build /dist/bin /usr/local/bin
COPY --from=build /app/models /app/models
COPY --from=build /app/data /app/data
ENV LD_LIBRARY_PATH=/opt/site/torch/lib
WORKDIR /app
CMD ["task4"]
