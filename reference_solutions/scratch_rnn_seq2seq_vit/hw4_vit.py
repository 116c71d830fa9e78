# The reference notebook hw4_vit.ipynb of scratch_rnn_seq2seq_vit, written as percent-format Python
# (docs/notebooks.md). `dlgrade release` builds the student's notebook from it (solution regions become TODOs);
# the graders import its definitions the way a submitted notebook is graded. This notebook may import only the
# modules its setup cell imports (assignment.toml's [[imports]] rule).

# %% [markdown]
# # Homework 4, Problem 3: a Vision Transformer (40 points)
#
# You will build a Vision Transformer (ViT) for CIFAR-10 from basic layers and train it. Follow the ViT paper
# (*An Image Is Worth 16x16 Words*, section 3.1 and its Figure 1) for the overall model, and *Attention Is All You
# Need* (sections 3.2 and 3.3) for multi-head attention and the position-wise feed-forward network. Where the two
# papers differ (the activation of the MLP, where the layer norms go), follow the ViT paper.
#
# **Rules** (breaking one gives 0 points for this problem):
#
# - do not import any module other than those of the setup cell below;
# - the only built-in layers you may use are `nn.Conv2d`, `nn.Linear`, activation layers (`nn.GELU`, ...) and
#   normalisation layers (`nn.LayerNorm`, ...); no attention or Transformer layers (`nn.MultiheadAttention`,
#   `nn.TransformerEncoderLayer`, `F.scaled_dot_product_attention`, ...), no `nn.Embedding`, no pooling layers.
#   Containers (`nn.ModuleList`, `nn.Sequential`), `nn.Parameter` and dropout are fine.
#
# The grader reads this notebook's classes (not its outputs), and the **output of the training cell**: the training
# log and the final test accuracy must be printed there when you submit.

# %%
# Setup. These are the only modules this notebook may import.
# If your data is on Google Drive:
# from google.colab import drive
# drive.mount("/content/drive")
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# %% [markdown]
# ## The data
#
# CIFAR-10 in its *binary version* (`cifar-10-binary.tar.gz`): each record is one label byte followed by the
# 3072 pixel bytes of a 32x32 colour image, the red plane first, then green, then blue, each row by row.

# %%
def load_cifar10_binary(folder, train=True):
    """-> images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) long, from data_batch_1..5.bin or test_batch.bin."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    raw = np.concatenate([np.fromfile(os.path.join(folder, name), dtype=np.uint8) for name in names])
    if raw.size % 3073 != 0:
        raise ValueError(f"{folder}: {raw.size} bytes is not a whole number of 3073-byte CIFAR-10 records")
    records = raw.reshape(-1, 3073)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return images, labels


# %%
# !wget -nc -q https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz && tar -xzf cifar-10-binary.tar.gz
train_images, train_labels = load_cifar10_binary("cifar-10-batches-bin", train=True)
test_images, test_labels = load_cifar10_binary("cifar-10-batches-bin", train=False)
mean = train_images.mean(dim=(0, 2, 3), keepdim=True)
std = train_images.std(dim=(0, 2, 3), keepdim=True)
print(train_images.shape, test_images.shape)

# %% [markdown]
# ### 3(a) `Patchification` [5 points]
#
# Cut the image into non-overlapping `patch_size` x `patch_size` patches and project each one to `embedding_dim`
# numbers, with **one `nn.Conv2d`** (kernel size and stride both `patch_size`; nothing else). Return
# `(B, N, embedding_dim)` with the patches in row-major order (left to right, then top to bottom).

# %%
class Patchification(nn.Module):
    def __init__(self, in_channels, patch_size, embedding_dim):
        super().__init__()
        # BEGIN SOLUTION stub: pass
        self.proj = nn.Conv2d(in_channels, embedding_dim, kernel_size=patch_size, stride=patch_size)
        # END SOLUTION

    def forward(self, x):
        """x (B, C, H, W) -> (B, N, embedding_dim), N = (H / patch_size) * (W / patch_size)."""
        # BEGIN SOLUTION
        x = self.proj(x)  # (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)
        # END SOLUTION


# %% [markdown]
# ### 3(b) `MLP` and `Attention` [10 points for `Attention`; `MLP` counts in 3(c)]
#
# `MLP`: the position-wise feed-forward network, `Linear(dim, hidden_dim)`, GELU, `Linear(hidden_dim, dim)`
# (dropout after the activation and at the end).
#
# `Attention`: multi-head scaled dot-product self-attention. Project the tokens to queries, keys and values (`dim`
# each), split them into `num_heads` heads of `dim // num_heads` features, compute
# $\mathrm{softmax}(QK^\top / \sqrt{d_\text{head}})V$ in every head, concatenate the heads in order and apply an
# output projection `Linear(dim, dim)`. A correct *single-head* (vanilla) attention, which ignores `num_heads`,
# earns at most 5 of the 10 points.

# %%
class MLP(nn.Module):
    def __init__(self, dim, hidden_dim, dropout=0.0):
        super().__init__()
        # BEGIN SOLUTION stub: pass
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)
        # END SOLUTION

    def forward(self, x):
        """x (B, N, dim) -> (B, N, dim)."""
        # BEGIN SOLUTION
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
        # END SOLUTION


class Attention(nn.Module):
    def __init__(self, dim, num_heads, dropout=0.0):
        super().__init__()
        # BEGIN SOLUTION stub: pass
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)  # queries, keys and values of all heads at once
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)
        # END SOLUTION

    def forward(self, x):
        """x (B, N, dim) -> (B, N, dim)."""
        # BEGIN SOLUTION
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, nh, N, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, nh, N, hd) each
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, nh, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(B, N, C)  # (B, N, nh * hd), head 0 first
        return self.proj_drop(self.proj(out))
        # END SOLUTION


# %% [markdown]
# ### 3(c) `Block` [10 points]
#
# One encoder layer of the ViT (the grey box of the ViT paper's Figure 1), with the layer norms **before** each
# sub-layer and a residual connection around it: `x = x + Attention(LayerNorm(x))`, then
# `x = x + MLP(LayerNorm(x))` (two different layer norms).

# %%
class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_dim, dropout=0.0):
        super().__init__()
        # BEGIN SOLUTION stub: pass
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dropout)
        # END SOLUTION

    def forward(self, x):
        """x (B, N, dim) -> (B, N, dim)."""
        # BEGIN SOLUTION
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x
        # END SOLUTION


# %% [markdown]
# ### 3(d) `ViT` [10 points]
#
# In `__init__`, create `self.patchify` (your `Patchification`), `self.cls_token` (a learned `(1, 1, dim)`
# vector) and `self.pos_embedding` (a learned position embedding for the class token and every patch,
# `(1, N + 1, dim)`). In `forward`: patchify, put the class token in front of the patches, add the position
# embedding, apply dropout, the blocks and the final layer norm, and classify the **class token** with `head`.

# %%
class ViT(nn.Module):
    def __init__(self, image_shape, patch_size, num_classes, dim, num_heads, depth, mlp_dim, dropout=0.0):
        super().__init__()
        channels, height, width = image_shape
        num_patches = (height // patch_size) * (width // patch_size)
        # BEGIN SOLUTION stub: pass
        self.patchify = Patchification(channels, patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, num_patches + 1, dim))
        # END SOLUTION
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        """x (B, C, H, W) -> logits (B, num_classes)."""
        # BEGIN SOLUTION
        x = self.patchify(x)  # (B, N, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, dim)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding  # (B, N + 1, dim)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.head(x[:, 0])  # the class token
        # END SOLUTION


# %%
def test_vit():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32, device=device)
    patches = Patchification(3, 4, 64).to(device)(images)
    assert tuple(patches.shape) == (2, 64, 64), "3(a): 4x4 patches of a 32x32 image -> (B, 64, dim)"
    attention = Attention(64, num_heads=4).to(device)
    assert tuple(attention(patches).shape) == (2, 64, 64), "3(b): Attention keeps the shape (B, N, dim)"
    block = Block(64, num_heads=4, mlp_dim=128).to(device)
    assert tuple(block(patches).shape) == (2, 64, 64), "3(c): Block keeps the shape (B, N, dim)"
    model = ViT((3, 32, 32), 4, 10, dim=64, num_heads=4, depth=2, mlp_dim=128).to(device)
    assert tuple(model.pos_embedding.shape[-2:]) == (65, 64), "3(d): one position per patch and one for the class token"
    assert tuple(model(images).shape) == (2, 10), "3(d): ViT returns logits (B, num_classes)"
    print("Problem 3 public tests passed")


test_vit()

# %% [markdown]
# ### 3(e) Training [5 points]
#
# Train your ViT to at least **65%** test accuracy on CIFAR-10 (about 30 minutes on a Colab T4 with the settings
# below). The training log and the final test accuracy must be shown in the output of this cell, otherwise this
# part scores 0. The grader also trains your `ViT` for a short, fixed budget on generated images and checks that it
# learns.

# %%
def augment(x):
    """Random crops (4 pixels of zero padding) and horizontal flips, on a batch of normalised images."""
    B = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    i, j = np.random.randint(0, 9, size=2)
    x = padded[:, :, i : i + 32, j : j + 32]
    flip = torch.rand(B, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def evaluate(model, images, labels, batch_size=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = ((images[i : i + batch_size] - mean) / std).to(device)
            correct += int((model(x).argmax(-1).cpu() == labels[i : i + batch_size]).sum())
    return correct / len(images)


EPOCHS, BATCH_SIZE, LR = 40, 128, 1e-3
model = ViT((3, 32, 32), patch_size=4, num_classes=10, dim=192, num_heads=6, depth=6, mlp_dim=384, dropout=0.1).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
steps_per_epoch = math.ceil(len(train_images) / BATCH_SIZE)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=EPOCHS * steps_per_epoch)
history = []
for epoch in range(1, EPOCHS + 1):
    model.train()
    start, total_loss = time.time(), 0.0
    order = torch.randperm(len(train_images))
    for i in tqdm(range(0, len(order), BATCH_SIZE), leave=False):
        idx = order[i : i + BATCH_SIZE]
        x = augment(((train_images[idx] - mean) / std).to(device))
        loss = F.cross_entropy(model(x), train_labels[idx].to(device), label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += float(loss) * len(idx)
    acc = evaluate(model, test_images, test_labels)
    history.append(acc)
    print(f"epoch {epoch:2d}/{EPOCHS} | loss {total_loss / len(train_images):.4f} | test acc {acc:.4f} "
          f"| {time.time() - start:.0f}s")
print(f"Final test accuracy: {100 * evaluate(model, test_images, test_labels):.2f}%")

# %%
plt.plot(range(1, len(history) + 1), history)
plt.xlabel("epoch")
plt.ylabel("test accuracy")
plt.show()
