# The reference notebook of transformer_vit_gpt, written as percent-format Python (docs/notebooks.md).
# `dlgrade release` builds the student's transformer_vit_gpt.ipynb from it (solution regions become TODOs)
# and the graders import its definitions the way a submitted notebook is graded: imports, classes and
# functions only; the cells that download data, train or plot are not run by the grader.

# %% [markdown]
# # Transformers from scratch: attention, a Vision Transformer and DialogueGPT
#
# Work through the cells in order. Cells marked **TODO** are yours; everything else is given.
# The grader reads this notebook's classes (not its outputs), so keep the class and method names,
# the arguments and the return values exactly as given. Your written answers go in the cells that
# start with **Answer to ...**; replace `_Your answer here._` with your answer and keep the label.
#
# Problem 1 has no code: answer it in the cells below.

# %% [markdown]
# ## Problem 1: RNNs versus attention (written)
#
# See the handout for the questions (a)-(f).

# %% [markdown]
# **Answer to P1(a):**
# BEGIN SOLUTION
# h_2 = W_h W_x x_1 + W_x x_2 and y_2 = phi_y(W_y (W_h W_x x_1 + W_x x_2)).
# END SOLUTION

# %% [markdown]
# **Answer to P1(b):**
# BEGIN SOLUTION
# h_3 = W_h^2 W_x x_1 + W_h W_x x_2 + W_x x_3 and y_3 = phi_y(W_y h_3).
# END SOLUTION

# %% [markdown]
# **Answer to P1(c):**
# BEGIN SOLUTION
# h_T = sum_{t=1}^{T} W_h^{T-t} W_x x_t and y_T = phi_y(W_y h_T).
# END SOLUTION

# %% [markdown]
# **Answer to P1(d):**
# BEGIN SOLUTION
# x_1 reaches y_T through W_h^{T-1}: it vanishes when the spectral radius of W_h is below 1 and explodes when
# it is above 1, so for long sequences the first input is forgotten (or swamps everything).
# END SOLUTION

# %% [markdown]
# **Answer to P1(e):**
# BEGIN SOLUTION
# RNN: O(T) operations, one step after the other. Self-attention: O(T^2) (every pair of positions). The
# attention scores of all pairs are independent of each other, so parallel hardware computes them at once
# (two matrix products), while an RNN must wait for h_{t-1} before it can compute h_t.
# END SOLUTION

# %% [markdown]
# **Answer to P1(f):**
# BEGIN SOLUTION
# An RNN: its memory and time per step are constant, while attention needs O(T^2) time and memory for
# the scores (and O(T) memory per step for the keys and values when generating).
# END SOLUTION

# %%
# Setup. In Colab: Runtime > Change runtime type > GPU. The grader does not run this cell.
# !pip install nltk
import math
import os
import re

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from nltk.tokenize import word_tokenize

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# %%
import nltk

nltk.download("punkt_tab")  # the sentence splitter word_tokenize uses

# %% [markdown]
# ## Problem 2: a Transformer
#
# Shapes: B batch, T sequence length. `attn_mask` is a (B, T, T) tensor of 0s and 1s, or None:
# `attn_mask[b, i, j] == 0` means that token i must not attend to token j (its weight A[b, i, j] is 0).
#
# **TODO P2(a)**: `AttentionHead`. **TODO P2(b)**: `MultiHeadedAttention`. **TODO P2(c)**: `Transformer`.

# %%
class AttentionHead(nn.Module):
    """One head of self-attention: queries, keys and values are linear maps dim -> n_hidden."""

    def __init__(self, dim, n_hidden):
        super().__init__()
        # Create the linear layers self.W_K, self.W_Q and self.W_V (dim -> n_hidden).
        # BEGIN SOLUTION stub: pass
        self.W_K = nn.Linear(dim, n_hidden)
        self.W_Q = nn.Linear(dim, n_hidden)
        self.W_V = nn.Linear(dim, n_hidden)
        self.scale = 1.0 / math.sqrt(n_hidden)
        # END SOLUTION

    def forward(self, x, attn_mask):
        """x (B, T, dim), attn_mask (B, T, T) of {0, 1} or None -> (out (B, T, n_hidden), alpha (B, T, T)).

        alpha holds the attention weights after the softmax: alpha[b, i, j] is how much token i takes from token j.
        """
        # BEGIN SOLUTION
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)  # (B, T, n_hidden) each
        scores = torch.bmm(q, k.transpose(1, 2)) * self.scale  # (B, T, T)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask == 0, float("-inf"))
        alpha = torch.softmax(scores, dim=-1)  # (B, T, T), each row sums to 1
        attn_output = torch.bmm(alpha, v)  # (B, T, n_hidden)
        # END SOLUTION
        return attn_output, alpha


# %%
class MultiHeadedAttention(nn.Module):
    """num_heads independent AttentionHeads; their outputs are concatenated and projected back to dim."""

    def __init__(self, dim, n_hidden, num_heads):
        super().__init__()
        # Create num_heads AttentionHead(dim, n_hidden) in an nn.ModuleList, and the output projection W_O.
        # BEGIN SOLUTION stub: pass
        self.heads = nn.ModuleList([AttentionHead(dim, n_hidden) for _ in range(num_heads)])
        self.W_O = nn.Linear(num_heads * n_hidden, dim)
        # END SOLUTION

    def forward(self, x, attn_mask):
        """x (B, T, dim) -> (out (B, T, dim), alphas (B, num_heads, T, T))."""
        # BEGIN SOLUTION
        results = [head(x, attn_mask) for head in self.heads]
        concat = torch.cat([out for out, _ in results], dim=-1)  # (B, T, num_heads * n_hidden)
        attn_output = self.W_O(concat)  # (B, T, dim)
        attn_alphas = torch.stack([alpha for _, alpha in results], dim=1)  # (B, num_heads, T, T)
        # END SOLUTION
        return attn_output, attn_alphas


# %%
class FFN(nn.Module):
    """Given: LayerNorm, then Linear -> GELU -> Linear, back to dim."""

    def __init__(self, dim, n_hidden):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, n_hidden), nn.GELU(), nn.Linear(n_hidden, dim))

    def forward(self, x):
        return self.net(x)


class AttentionResidual(nn.Module):
    """Given: attention with a residual connection, then the FFN with a residual connection."""

    def __init__(self, dim, attn_dim, mlp_dim, num_heads):
        super().__init__()
        self.attn = MultiHeadedAttention(dim, attn_dim, num_heads)
        self.ffn = FFN(dim, mlp_dim)

    def forward(self, x, attn_mask):
        attn_out, alphas = self.attn(x, attn_mask)
        x = attn_out + x
        x = self.ffn(x) + x
        return x, alphas


# %%
class Transformer(nn.Module):
    """num_layers AttentionResidual layers, applied one after the other."""

    def __init__(self, dim, attn_dim, mlp_dim, num_heads, num_layers):
        super().__init__()
        # Create num_layers AttentionResidual(dim, attn_dim, mlp_dim, num_heads) in an nn.ModuleList.
        # BEGIN SOLUTION stub: pass
        self.layers = nn.ModuleList([AttentionResidual(dim, attn_dim, mlp_dim, num_heads) for _ in range(num_layers)])
        # END SOLUTION

    def forward(self, x, attn_mask, return_attn=False):
        """x (B, T, dim) -> (x (B, T, dim), alphas (B, num_layers, num_heads, T, T) if return_attn else None)."""
        # BEGIN SOLUTION
        per_layer = []
        for layer in self.layers:
            x, layer_alphas = layer(x, attn_mask)
            per_layer.append(layer_alphas)
        attn_maps = torch.stack(per_layer, dim=1) if return_attn else None  # (B, L, H, T, T)
        # END SOLUTION
        return x, attn_maps


# %% [markdown]
# Public tests for Problem 2: they check the sizes of the outputs, and test 3 checks the attention
# pattern of a mask where each token sees itself and the token before it. The grader's hidden tests
# check the values too.

# %%
def test_transformer_sizes():
    B, T, dim = 2, 6, 16
    x = torch.randn(B, T, dim)
    head = AttentionHead(dim, 8)
    out, alpha = head(x, None)
    assert out.shape == (B, T, 8) and alpha.shape == (B, T, T), "test 1: AttentionHead output sizes"
    mha = MultiHeadedAttention(dim, 8, num_heads=3)
    out, alphas = mha(x, None)
    assert out.shape == (B, T, dim) and alphas.shape == (B, 3, T, T), "test 2: MultiHeadedAttention output sizes"
    # test 3: token i may attend to tokens i - 1 and i only
    mask = (torch.tril(torch.ones(T, T)) - torch.tril(torch.ones(T, T), diagonal=-2)).expand(B, T, T)
    model = Transformer(dim, 8, 32, num_heads=3, num_layers=2)
    y, A = model(x, mask, return_attn=True)
    assert y.shape == (B, T, dim) and A.shape == (B, 2, 3, T, T), "test 3: Transformer output sizes"
    masked = (mask == 0)[:, None, None].expand_as(A)  # (B, L, H, T, T)
    assert torch.all(A[masked] == 0), "test 3: a masked-out token received attention"
    assert torch.allclose(A.sum(-1), torch.ones(B, 2, 3, T)), "test 3: attention rows must sum to 1"
    print("Problem 2 public tests passed")


test_transformer_sizes()

# %% [markdown]
# ## Problem 3: a Vision Transformer
#
# **TODO P3(a)**: `PatchEmbed` with an `nn.Conv2d` whose kernel size and stride are both `patch_size`.
# `VisionTransformer` is given.

# %%
class PatchEmbed(nn.Module):
    """Cut an image into patch_size x patch_size patches and project each to nout: (B, nin, S, S) -> (B, (S/p)^2, nout)."""

    def __init__(self, img_size, patch_size, nin=3, nout=128):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        # BEGIN SOLUTION stub: pass
        self.proj = nn.Conv2d(nin, nout, kernel_size=patch_size, stride=patch_size)
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION
        grid = self.proj(x)  # (B, nout, S/p, S/p)
        patches = grid.flatten(2).transpose(1, 2)  # (B, (S/p)^2, nout), patches row by row
        # END SOLUTION
        return patches


# %%
class VisionTransformer(nn.Module):
    """Given: patch embedding + learned positions, a learned class token in front, the Transformer, a linear head."""

    def __init__(self, n_channels, nout, img_size, patch_size, dim, attn_dim, mlp_dim, num_heads, num_layers):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, n_channels, dim)
        self.pos_E = nn.Embedding((img_size // patch_size) ** 2, dim)  # one learned vector per patch position
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.transformer = Transformer(dim, attn_dim, mlp_dim, num_heads, num_layers)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, nout))

    def forward(self, img, return_attn=False):
        """img (B, n_channels, S, S) -> (logits (B, nout), alphas (B, L, H, N + 1, N + 1) or None)."""
        embs = self.patch_embed(img)  # (B, N, dim)
        B, N, _ = embs.shape
        embs = embs + self.pos_E(torch.arange(N, device=embs.device))  # (B, N, dim)
        x = torch.cat([self.cls_token.expand(B, -1, -1), embs], dim=1)  # (B, N + 1, dim), class token first
        x, alphas = self.transformer(x, None, return_attn=return_attn)
        logits = self.head(x[:, 0])  # read out the class token
        return logits, alphas


# %%
def test_vit_sizes():
    images = torch.randn(2, 3, 32, 32)
    patches = PatchEmbed(32, 4, 3, 128)(images)
    assert patches.shape == (2, 64, 128), "PatchEmbed: (B, 3, 32, 32) with 4x4 patches must give (B, 64, 128)"
    vit = VisionTransformer(3, 10, 32, 4, 64, 16, 128, num_heads=2, num_layers=2)
    logits, alphas = vit(images, return_attn=True)
    assert logits.shape == (2, 10) and alphas.shape == (2, 2, 2, 65, 65), "VisionTransformer output sizes"
    print("Problem 3 public tests passed")


test_vit_sizes()

# %% [markdown]
# **Answer to P3(b):**
# BEGIN SOLUTION
# Use a position code computed from the position instead of a table: e.g. the sinusoidal encoding of
# "Attention is all you need" (sines and cosines of the position at geometric frequencies), or relative
# positions added to the attention scores; both are defined for any position.
# END SOLUTION

# %%
# Data: CIFAR-10 in its binary version. Each record is 1 label byte and 3072 pixel bytes (the red, green
# and blue 32x32 planes, row by row). The grader does not run this cell's download.
def load_cifar10_binary(folder, train=True):
    """Images (N, 3, 32, 32) float in [0, 1] and labels (N,) long from CIFAR-10's data_batch_*.bin / test_batch.bin."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    raw = np.concatenate([np.fromfile(os.path.join(folder, name), dtype=np.uint8) for name in names])
    if raw.size % 3073:
        raise ValueError(f"{folder}: {raw.size} bytes is not a whole number of 3073-byte CIFAR-10 records")
    records = raw.reshape(-1, 3073)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return images, labels


# %%
# !wget -nc -q https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz && tar -xzf cifar-10-binary.tar.gz
train_images, train_labels = load_cifar10_binary("cifar-10-batches-bin", train=True)
val_images, val_labels = load_cifar10_binary("cifar-10-batches-bin", train=False)
cifar_mean = train_images.mean(dim=(0, 2, 3), keepdim=True)
cifar_std = train_images.std(dim=(0, 2, 3), keepdim=True)

# %%
# Given: train the ViT (about 5 minutes on a Colab GPU).
vit = VisionTransformer(3, 10, 32, 4, dim=128, attn_dim=64, mlp_dim=128, num_heads=4, num_layers=6).to(device)
optimizer = torch.optim.AdamW(vit.parameters(), lr=1e-3, weight_decay=0.05)
for epoch in range(20):
    vit.train()
    order = torch.randperm(len(train_images))
    for i in range(0, len(order), 128):
        idx = order[i : i + 128]
        x = (train_images[idx] - cifar_mean) / cifar_std
        if torch.rand(()) < 0.5:
            x = x.flip(-1)  # random horizontal flips
        logits, _ = vit(x.to(device))
        loss = F.cross_entropy(logits, train_labels[idx].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    vit.eval()
    with torch.no_grad():
        correct = sum(int((vit(((val_images[i : i + 500] - cifar_mean) / cifar_std).to(device))[0].argmax(-1).cpu()
                           == val_labels[i : i + 500]).sum()) for i in range(0, len(val_images), 500))
    print(f"epoch {epoch}: validation accuracy {correct / len(val_images):.3f}")

# %% [markdown]
# **Answer to P3(c):**
# BEGIN SOLUTION
# (the validation accuracy printed by the last epoch)
# END SOLUTION

# %%
# Given: the class token's attention, averaged over heads and layers, for 10 validation images.
import matplotlib.pyplot as plt

with torch.no_grad():
    _, alphas = vit(((val_images[:10] - cifar_mean) / cifar_std).to(device), return_attn=True)
cls_attention = alphas.mean(dim=(1, 2))[:, 0, 1:].reshape(10, 8, 8).cpu()
fig, axes = plt.subplots(2, 10, figsize=(20, 4))
for i in range(10):
    axes[0, i].imshow(val_images[i].permute(1, 2, 0))
    axes[1, i].imshow(cls_attention[i])
plt.show()

# %% [markdown]
# **Answer to P3(d):**
# BEGIN SOLUTION
# (include the heatmaps) The class token attends mostly to the patches of the object and little to the background.
# END SOLUTION

# %%
# Problem 4 data: a plain-text corpus of dialogue, one speaker's turn per block, blocks separated by blank lines.
def load_dialogues(path):
    """The blocks of a text file separated by blank lines, each stripped (e.g. "FIRST CITIZEN:\\nBefore we ...")."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [block.strip() for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


# %% [markdown]
# ## Problem 4: DialogueGPT
#
# **TODO P4(a)**: `MyTokenizer.encode` and `MyTokenizer.decode`. P4(b): read `DialogueDataset`.
# **TODO P4(c)**: `DialogueGPT.__init__` and `forward`. **TODO P4(d)**: `DialogueLoss`.

# %%
# !wget -nc -q https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
all_dialogues = load_dialogues("input.txt")
print(len(all_dialogues), "dialogues; the first:", all_dialogues[0])

# %%
class MyTokenizer:
    """Words and punctuation from nltk's word_tokenize, with three special tokens: start, pad and unk."""

    def __init__(self, raw_text):
        self.start_token, self.pad_token, self.unk_token = "<start>", "<pad>", "<unk>"
        words = sorted(set(word_tokenize(raw_text)))
        self.vocab = [self.start_token, self.pad_token, self.unk_token] + words  # id -> token
        self.token_to_id = {token: i for i, token in enumerate(self.vocab)}
        self.start_id, self.pad_id, self.unk_id = 0, 1, 2
        self.vocab_size = len(self.vocab)

    def encode(self, s):
        """A string -> LongTensor of token ids: the start id, then one id per word_tokenize token (unk if unknown)."""
        # BEGIN SOLUTION
        ids = [self.start_id] + [self.token_to_id.get(token, self.unk_id) for token in word_tokenize(s)]
        return torch.tensor(ids, dtype=torch.long)
        # END SOLUTION

    def decode(self, ids):
        """Token ids (a list or a 1-D tensor) -> their tokens joined with single spaces."""
        # BEGIN SOLUTION
        return " ".join(self.vocab[int(i)] for i in ids)
        # END SOLUTION

    def pad_examples(self, examples):
        """Given: right-pad 1-D LongTensors to one length -> (ids (B, T) long, mask (B, T) long, 0 on padding)."""
        T = max(len(e) for e in examples)
        ids = torch.full((len(examples), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(examples), T, dtype=torch.long)
        for i, e in enumerate(examples):
            ids[i, : len(e)] = e
            mask[i, : len(e)] = 1
        return ids, mask


# %%
def test_tokenizer():
    tok = MyTokenizer("Who goes there? Speak, friend!")
    ids = tok.encode("Speak, stranger!")
    assert ids.dtype == torch.long and int(ids[0]) == tok.start_id, "encode must begin with the start id"
    assert tok.decode(ids[1:]) == "Speak , <unk> !", "encode/decode: 'stranger' is unknown"
    print("Problem 4(a) public test passed")


test_tokenizer()

# %%
class DialogueDataset(torch.utils.data.Dataset):
    """Given: each item is a dialogue's token ids, cut to at most max_N tokens."""

    def __init__(self, tokenizer, lines, max_N):
        self.tokenizer, self.lines, self.max_N = tokenizer, lines, max_N

    def __len__(self):
        return len(self.lines)

    def __getitem__(self, i):
        return self.tokenizer.encode(self.lines[i])[: self.max_N]

    def collate_fn(self, batch):
        """A list of items -> {"input_ids": (B, T) long, "input_mask": (B, T) long}, right-padded, mask 0 on padding."""
        input_ids, input_mask = self.tokenizer.pad_examples(batch)
        return {"input_ids": input_ids, "input_mask": input_mask}


# %%
class DialogueGPT(nn.Module):
    """A GPT: token + learned position embeddings, a causally masked Transformer, a language-model head."""

    def __init__(self, vocab_size, max_N, dim, attn_dim, mlp_dim, num_heads, num_layers):
        super().__init__()
        self.max_N = max_N
        # Create the token embedding (vocab_size -> dim) and the learned position embedding (max_N positions).
        # BEGIN SOLUTION stub: pass
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Embedding(max_N, dim)
        # END SOLUTION
        self.transformer = Transformer(dim, attn_dim, mlp_dim, num_heads, num_layers)
        self.lm_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, vocab_size))

    def forward(self, input_ids, return_attn=False):
        """input_ids (B, T) with T <= max_N -> logits (B, T, vocab_size) (and the alphas when return_attn)."""
        B, T = input_ids.shape
        # Set x (B, T, dim): token embeddings plus position embeddings, and attn_mask: the causal mask.
        # BEGIN SOLUTION
        positions = torch.arange(T, device=input_ids.device)
        x = self.token_emb(input_ids) + self.pos_emb(positions)  # (B, T, dim)
        causal = torch.tril(torch.ones(T, T, device=input_ids.device))  # 1 where key j <= query i
        attn_mask = causal.unsqueeze(0).expand(B, T, T)  # (B, T, T)
        # END SOLUTION
        x, alphas = self.transformer(x, attn_mask, return_attn=return_attn)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        return (logits, alphas) if return_attn else logits

    @torch.no_grad()
    def generate(self, input_ids, num_tokens):
        """Given: greedy generation. input_ids (B, T0) -> (B, T0 + num_tokens), each new token the most likely one."""
        was_training = self.training
        self.eval()
        for _ in range(num_tokens):
            logits = self(input_ids[:, -self.max_N :])
            next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            input_ids = torch.cat([input_ids, next_id], dim=1)
        self.train(was_training)
        return input_ids


# %%
class DialogueLoss(nn.Module):
    """Next-token cross-entropy: logits[:, i] predicts input_ids[:, i + 1]; padding targets are ignored."""

    def forward(self, logits, input_ids, inp_mask):
        """logits (B, T, V), input_ids (B, T), inp_mask (B, T) with 0 on padding -> the mean loss (a scalar)."""
        # BEGIN SOLUTION
        V = logits.shape[-1]
        predictions = logits[:, :-1].reshape(-1, V)  # (B * (T - 1), V): the last logit predicts nothing
        targets = input_ids[:, 1:].reshape(-1)  # the start token is never a target
        real = inp_mask[:, 1:].reshape(-1) != 0  # targets that are not padding
        loss = F.cross_entropy(predictions[real], targets[real])
        # END SOLUTION
        return loss


# %%
def test_gpt_sizes():
    gpt = DialogueGPT(vocab_size=50, max_N=12, dim=32, attn_dim=16, mlp_dim=64, num_heads=2, num_layers=2)
    ids = torch.randint(0, 50, (3, 10))
    logits = gpt(ids)
    assert logits.shape == (3, 10, 50), "DialogueGPT: logits must be (B, T, vocab_size)"
    loss = DialogueLoss()(logits, ids, torch.ones(3, 10))
    assert loss.dim() == 0, "DialogueLoss must return a scalar"
    print("Problem 4 public tests passed")


test_gpt_sizes()

# %%
# Given: build the data set and train DialogueGPT (about 30 minutes on a Colab GPU).
max_N = 128
tokenizer = MyTokenizer("\n\n".join(all_dialogues))
split = int(0.9 * len(all_dialogues))
train_set = DialogueDataset(tokenizer, all_dialogues[:split], max_N)
val_set = DialogueDataset(tokenizer, all_dialogues[split:], max_N)
train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, collate_fn=train_set.collate_fn)
val_loader = torch.utils.data.DataLoader(val_set, batch_size=32, collate_fn=val_set.collate_fn)
gpt = DialogueGPT(tokenizer.vocab_size, max_N, dim=256, attn_dim=64, mlp_dim=512, num_heads=4, num_layers=4).to(device)
criterion = DialogueLoss()
optimizer = torch.optim.AdamW(gpt.parameters(), lr=3e-4)
prompt = tokenizer.encode(all_dialogues[split][:20]).unsqueeze(0).to(device)
for epoch in range(10):
    gpt.train()
    for batch in train_loader:
        ids, mask = batch["input_ids"].to(device), batch["input_mask"].to(device)
        loss = criterion(gpt(ids), ids, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    gpt.eval()
    with torch.no_grad():
        val_loss = sum(float(criterion(gpt(b["input_ids"].to(device)), b["input_ids"].to(device), b["input_mask"].to(device)))
                       for b in val_loader) / len(val_loader)
    print(f"epoch {epoch}: validation loss {val_loss:.3f}")
    print(tokenizer.decode(gpt.generate(prompt, 30)[0].cpu()))

# %% [markdown]
# **Answer to P4(e):**
# BEGIN SOLUTION
# Generation is sequential: each new token needs a forward pass over the prefix, so T tokens cost T passes
# one after the other, while training computes all T positions in one parallel pass (the causal mask
# stands in for the missing future).
# END SOLUTION

# %% [markdown]
# **Answer to P4(f):**
# BEGIN SOLUTION
# Early generations repeat frequent tokens (commas, "the"); later ones have speaker names, line breaks in
# the right places and short phrases that read like English.
# END SOLUTION

# %%
print(tokenizer.decode(gpt.generate(prompt, 50)[0].cpu()))

# %% [markdown]
# **Answer to P4(g):**
# BEGIN SOLUTION
# (paste the 50 generated tokens)
# END SOLUTION
