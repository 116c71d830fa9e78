"""CIFAR-10 read from its binary release (no torchvision needed).

The binary release ("CIFAR-10 binary version") holds `data_batch_1.bin` ... `data_batch_5.bin`
(10,000 training images each) and `test_batch.bin` (10,000 test images). Each file is a run of
3,073-byte records: one label byte (0-9), then the 32x32 image as 3,072 bytes, channel-major
(the 1,024 red values row by row, then green, then blue).
"""

import os

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32  # 3073
NUM_CLASSES = 10
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]

# per-channel statistics of the training images, on the [0, 1] scale
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def read_batch(path):
    """Read one binary batch file.

    Returns:
        (images, labels): uint8 (N, 3, 32, 32) and int64 (N,) NumPy arrays.

    Raises:
        ValueError: the size is not a whole number of records, or a label is not in 0-9.
    """
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % RECORD_BYTES != 0:
        raise ValueError(
            f"{path}: {data.size} bytes is not a whole number of {RECORD_BYTES}-byte records"
        )
    records = data.reshape(-1, RECORD_BYTES)  # (N, 3073)
    labels = records[:, 0].astype(np.int64)  # (N,)
    if labels.max() >= NUM_CLASSES:
        raise ValueError(f"{path}: label {labels.max()} is not a CIFAR-10 class (0-9)")
    images = records[:, 1:].reshape(-1, *IMAGE_SHAPE)  # (N, 3, 32, 32)
    return images, labels


def find_root(root):
    """Accept the folder of the .bin files or the folder that holds `cifar-10-batches-bin/`."""
    nested = os.path.join(root, "cifar-10-batches-bin")
    return nested if os.path.isdir(nested) else root


class CIFAR10(Dataset):
    """CIFAR-10 images as normalised float tensors.

    Args:
        root: folder of the binary files (or its parent, see `find_root`).
        split: "train" (the five data batches) or "test".
        mean, std: per-channel statistics used to normalise the [0, 1] pixels.
        augment: random horizontal flips and random 32x32 crops of the image padded by 4
            pixels (for training).

    Each item is (image, label): a float tensor (3, 32, 32) and an int.
    """

    def __init__(self, root, split="train", mean=CIFAR10_MEAN, std=CIFAR10_STD, augment=False):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        root = find_root(root)
        files = TRAIN_FILES if split == "train" else TEST_FILES
        batches = [read_batch(os.path.join(root, name)) for name in files]
        self.images = torch.from_numpy(np.concatenate([b[0] for b in batches]))  # (N, 3, 32, 32)
        self.labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))  # (N,)
        self.mean = torch.tensor(mean, dtype=torch.float).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float).view(3, 1, 1)
        self.augment = augment

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index].float() / 255.0  # (3, 32, 32)
        if self.augment:
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
            padded = torch.nn.functional.pad(image, (4, 4, 4, 4))  # (3, 40, 40)
            top, left = torch.randint(0, 9, (2,)).tolist()
            image = padded[:, top : top + 32, left : left + 32]  # (3, 32, 32)
        image = (image - self.mean) / self.std
        return image, int(self.labels[index])
