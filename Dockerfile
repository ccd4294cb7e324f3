# One image for worker, producer (and later beat/api). CPU PyTorch; official weights baked
# in at build time and verified against the sha256 pinned in weights/spec.py.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    BULKTAG_WEIGHTS=/opt/bulktag/weights/resnet18-imagenet1k-v1.pt

RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY producer ./producer
COPY weights ./weights
RUN pip install .

# Fails the build if the download does not match the pinned sha256.
RUN bulktag weights fetch -o "$BULKTAG_WEIGHTS"

RUN useradd --create-home bulktag
USER bulktag
CMD ["bulktag", "worker"]
