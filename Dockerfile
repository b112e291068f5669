# One image for every role: `serving serve` (model server), `serving transform`, `serving router`,
# `serving operator` and `serving storage pull` (the storage-initializer init container).
# Not built in this repository's CI (no container runtime there); the Helm chart and the operator only
# reference it. Build: docker build -t ghcr.io/serving-dev/serving:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY serving ./serving
COPY runtimes ./runtimes
COPY transformers ./transformers
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[kubernetes]"

FROM python:3.11-slim
# libgomp: xgboost and onnxruntime need OpenMP at run time.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin serving
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl && rm -rf /wheels
USER 1000
# The pods mount an emptyDir at /tmp (read-only root filesystem); caches go there.
ENV HOME=/tmp SERVING_CACHE_DIR=/tmp/cache PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["serving"]
CMD ["--help"]
