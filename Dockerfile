# One image for worker, beat, flower, api and the producer CLI. CPU PyTorch by default;
# official weights baked in at build time and verified against the sha256 pinned in
# weights/spec.py. GPU image: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# (compose's worker-gpu service does this).
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    BULKTAG_WEIGHTS=/opt/bulktag/weights/resnet18-imagenet1k-v1.pt

RUN pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY producer ./producer
COPY weights ./weights
RUN pip install ".[flower]"
# HEIC (pillow-heif), AVIF (Pillow's plugin) and camera RAW (rawpy) come as wheels that
# bundle libheif/libde265 and LibRaw: no system packages. Fail the build if one is missing.
RUN python -c "import pillow_heif, rawpy; from PIL import features; assert features.check('avif')"

# Fails the build if the download does not match the pinned sha256.
RUN bulktag weights fetch -o "$BULKTAG_WEIGHTS"

# beat keeps its state under /var/lib/bulktag (a volume inherits this ownership).
RUN useradd --create-home bulktag \
    && mkdir -p /var/lib/bulktag/uploads /etc/bulktag \
    && chown -R bulktag /var/lib/bulktag
USER bulktag
# 9808 worker metrics, 8080 HTTP API, 5555 Flower
EXPOSE 9808 8080 5555
CMD ["bulktag", "worker"]
