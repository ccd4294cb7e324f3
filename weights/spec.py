"""The pinned identity of the official weights and of bulktag's checkpoint format."""

from dataclasses import dataclass

CHECKPOINT_FORMAT = 1
ARCH = "resnet18"
NUM_CLASSES = 1000  # the official ImageNet layout
MIN_CLASSES = 2  # a custom fine-tuned ResNet-18 (weights.custom) has any N >= 2


@dataclass(frozen=True)
class WeightsSpec:
    """Where a published weights file lives and the digest it must have."""

    name: str
    url: str
    sha256: str

    @property
    def file_name(self) -> str:
        """torchvision's naming: the first 8 hex digits of the sha256 in the name."""
        return self.url.rsplit("/", 1)[-1]


# torchvision's ResNet18_Weights.IMAGENET1K_V1. torchvision itself only checks the
# 8-digit prefix in the file name; we pin the full digest.
IMAGENET1K_V1 = WeightsSpec(
    name="IMAGENET1K_V1",
    url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
    sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
)
