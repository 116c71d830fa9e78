"""Writes the full-marks notebooks of transformer_vit_gpt: correct solutions written unlike the reference.

Each is the reference notebook with some classes rewritten the way other students write them; `messy_colab`
is also shaped like a real Colab download (pip installs, a Drive mount, downloads, long training cells with
their outputs and images, a class defined twice, plots). Run from the project root:

    .venv/bin/python graders/transformer_vit_gpt/full_marks/make_full_marks.py

`dlgrade validate transformer_vit_gpt` grades every folder here and requires full marks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from dlgrade.markers import keep_solutions  # noqa: E402
from dlgrade.notebook import percent  # noqa: E402

NOTEBOOK = "transformer_vit_gpt.ipynb"

# ---------------------------------------------------------------------------- batched heads, bool masks, unfold

BATCHED = {
    "AttentionHead": '''
class AttentionHead(nn.Module):
    def __init__(self, dim, n_hidden):
        super().__init__()
        self.W_K = nn.Linear(dim, n_hidden, bias=False)
        self.W_Q = nn.Linear(dim, n_hidden, bias=False)
        self.W_V = nn.Linear(dim, n_hidden, bias=False)
        self.d_k = n_hidden

    def forward(self, x, attn_mask):
        Q, K, V = self.W_Q(x), self.W_K(x), self.W_V(x)
        logits = torch.einsum("btd,bsd->bts", Q, K) / self.d_k ** 0.5
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask.bool(), -1e9)   # a large negative number instead of -inf
        alpha = F.softmax(logits, dim=2)
        return torch.einsum("bts,bsd->btd", alpha, V), alpha
''',
    "MultiHeadedAttention": '''
class MultiHeadedAttention(nn.Module):
    """All heads at once: the heads' weights stacked into one batched product."""

    def __init__(self, dim, n_hidden, num_heads):
        super().__init__()
        self.heads = nn.ModuleList(AttentionHead(dim, n_hidden) for _ in range(num_heads))
        self.W_O = nn.Linear(num_heads * n_hidden, dim)
        self.n_hidden = n_hidden

    def forward(self, x, attn_mask):
        wq = torch.stack([h.W_Q.weight for h in self.heads])  # (H, n_hidden, dim)
        wk = torch.stack([h.W_K.weight for h in self.heads])
        wv = torch.stack([h.W_V.weight for h in self.heads])
        q = torch.einsum("btd,hkd->bhtk", x, wq)
        k = torch.einsum("btd,hkd->bhtk", x, wk)
        v = torch.einsum("btd,hkd->bhtk", x, wv)
        s = q @ k.transpose(-1, -2) / math.sqrt(self.n_hidden)  # (B, H, T, T)
        if attn_mask is not None:
            s = s.masked_fill(attn_mask.unsqueeze(1) == 0, float("-inf"))
        a = s.softmax(-1)
        heads = (a @ v).permute(0, 2, 1, 3).flatten(2)  # (B, T, H * n_hidden), head 0 first
        return self.W_O(heads), a
''',
    "PatchEmbed": '''
class PatchEmbed(nn.Module):
    """Patches cut with unfold and projected by a Linear layer (the same numbers as a strided convolution)."""

    def __init__(self, img_size, patch_size, nin=3, nout=128):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.p = patch_size
        self.linear = nn.Linear(nin * patch_size * patch_size, nout)

    def forward(self, x):
        cols = F.unfold(x, kernel_size=self.p, stride=self.p)  # (B, nin*p*p, patches)
        return self.linear(cols.transpose(1, 2))
''',
    "DialogueGPT": '''
class DialogueGPT(nn.Module):
    def __init__(self, vocab_size, max_N, dim, attn_dim, mlp_dim, num_heads, num_layers):
        super().__init__()
        self.max_N = max_N
        self.embedding = nn.Embedding(vocab_size, dim)
        self.positional = nn.Parameter(0.02 * torch.randn(1, max_N, dim))
        self.transformer = Transformer(dim, attn_dim, mlp_dim, num_heads, num_layers)
        self.lm_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, vocab_size))

    def forward(self, input_ids, return_attn=False):
        B, T = input_ids.shape
        x = self.embedding(input_ids) + self.positional[:, :T]
        attn_mask = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()[None]  # (1, T, T), bool
        x, alphas = self.transformer(x, attn_mask, return_attn=return_attn)
        logits = self.lm_head(x)
        return (logits, alphas) if return_attn else logits

    @torch.no_grad()
    def generate(self, input_ids, num_tokens):
        self.eval()
        for _ in range(num_tokens):
            logits = self(input_ids[:, -self.max_N :])
            input_ids = torch.cat([input_ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
        return input_ids
''',
    "DialogueLoss": '''
class DialogueLoss(nn.Module):
    def forward(self, logits, input_ids, inp_mask):
        targets = input_ids[:, 1:].masked_fill(inp_mask[:, 1:] == 0, -100)
        return F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100)
''',
}

# ---------------------------------------------------------------------------- other names, raw matrices, per-sequence loss

OTHER_NAMES = {
    "AttentionHead": '''
class AttentionHead(nn.Module):
    def __init__(self, dim, n_hidden):
        super().__init__()
        # the handout's orientation: Q = x W_Q with W_Q of size dim x d_k
        self.W_Q = nn.Parameter(torch.randn(dim, n_hidden) / math.sqrt(dim))
        self.W_K = nn.Parameter(torch.randn(dim, n_hidden) / math.sqrt(dim))
        self.W_V = nn.Parameter(torch.randn(dim, n_hidden) / math.sqrt(dim))

    def forward(self, x, attn_mask):
        queries = x @ self.W_Q
        keys = x @ self.W_K
        values = x @ self.W_V
        d_k = queries.size(-1)
        weights = queries @ keys.transpose(-2, -1) / math.sqrt(d_k)
        if attn_mask is not None:
            weights = torch.where(attn_mask > 0.5, weights, torch.full_like(weights, float("-inf")))
        weights = torch.exp(weights - weights.max(dim=-1, keepdim=True).values)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights @ values, weights
''',
    "MultiHeadedAttention": '''
class MultiHeadedAttention(nn.Module):
    def __init__(self, dim, n_hidden, num_heads):
        super().__init__()
        self.attention_heads = nn.ModuleList()
        for _ in range(num_heads):
            self.attention_heads.append(AttentionHead(dim, n_hidden))
        self.out = nn.Linear(n_hidden * num_heads, dim)

    def forward(self, x, attn_mask):
        outputs, maps = [], []
        for head in self.attention_heads:
            o, m = head(x, attn_mask)
            outputs.append(o)
            maps.append(m.unsqueeze(1))
        return self.out(torch.cat(outputs, dim=2)), torch.cat(maps, dim=1)
''',
    "Transformer": '''
class Transformer(nn.Module):
    def __init__(self, dim, attn_dim, mlp_dim, num_heads, num_layers):
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(num_layers):
            self.blocks.append(AttentionResidual(dim, attn_dim, mlp_dim, num_heads))

    def forward(self, x, attn_mask, return_attn=False):
        maps = []
        for block in self.blocks:
            x, a = block(x, attn_mask)
            if return_attn:
                maps.append(a)
        if not return_attn:
            return x, None
        return x, torch.stack(maps).permute(1, 0, 2, 3, 4)
''',
    "PatchEmbed": '''
class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, nin=3, nout=128):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.conv = nn.Conv2d(in_channels=nin, out_channels=nout, kernel_size=(patch_size, patch_size),
                              stride=(patch_size, patch_size))

    def forward(self, x):
        y = self.conv(x)
        B, C, H, W = y.shape
        return y.permute(0, 2, 3, 1).reshape(B, H * W, C)
''',
    "MyTokenizer": None,  # keep the given class, but with other encode/decode below
    "DialogueLoss": '''
class DialogueLoss(nn.Module):
    """Per-example mean over its real targets, then the mean over the batch."""

    def forward(self, logits, input_ids, inp_mask):
        log_probs = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        nll = -log_probs.gather(2, input_ids[:, 1:, None]).squeeze(2)
        keep = inp_mask[:, 1:].double()
        return ((nll * keep).sum(1) / keep.sum(1)).mean()
''',
}
OTHER_NAMES_TEXT = [
    ("        ids = [self.start_id] + [self.token_to_id.get(token, self.unk_id) for token in word_tokenize(s)]\n"
     "        return torch.tensor(ids, dtype=torch.long)",
     "        out = torch.zeros(1 + len(word_tokenize(s)), dtype=torch.int64)\n"
     "        for i, w in enumerate(word_tokenize(s)):\n"
     "            out[i + 1] = self.token_to_id[w] if w in self.token_to_id else self.unk_id\n"
     "        out[0] = self.start_id\n"
     "        return out"),
    ('        return " ".join(self.vocab[int(i)] for i in ids)',
     "        words = []\n        for i in list(ids):\n            words.append(self.vocab[int(i)])\n"
     '        return " ".join(words)'),
    ("        x = self.token_emb(input_ids) + self.pos_emb(positions)  # (B, T, dim)",
     "        x = self.token_emb(input_ids) + self.pos_emb(positions)[None, :, :]"),
    ("        attn_mask = causal.unsqueeze(0).expand(B, T, T)  # (B, T, T)",
     "        attn_mask = causal.repeat(B, 1, 1).float()"),
]

# ---------------------------------------------------------------------------- a real Colab notebook, messy

MESSY_BEFORE = [  # (after the cell whose source starts with this text, insert these cells)
    ("# Setup.", [
        ("code", "!pip install -q nltk torchinfo\n!nvidia-smi"),
        ("code", "from google.colab import drive\ndrive.mount('/content/drive')\n%cd /content/drive/MyDrive/hw3"),
        ("code", "import matplotlib.pyplot as plt\nfrom tqdm.notebook import tqdm\nfrom torchinfo import summary\nimport wandb\n"
                 "wandb.init(project='hw3-transformers')"),
    ]),
]
FIRST_TRY_HEAD = '''
# my first try (wrong: forgot the scale and the mask), fixed below
class AttentionHead(nn.Module):
    def __init__(self, dim, n_hidden):
        super().__init__()
        self.W_K = nn.Linear(dim, n_hidden)
        self.W_Q = nn.Linear(dim, n_hidden)
        self.W_V = nn.Linear(dim, n_hidden)

    def forward(self, x, attn_mask):
        alpha = torch.softmax(self.W_Q(x) @ self.W_K(x).transpose(1, 2), dim=-1)
        return alpha @ self.W_V(x), alpha

head = AttentionHead(16, 8)
print(head(torch.randn(2, 5, 16), None)[0].shape)
'''
MIXED_TRAINING_CELL = '''%%time
class DialogueLoss(nn.Module):
    def forward(self, logits, input_ids, inp_mask):
        V = logits.size(-1)
        pred, tgt, m = logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1), inp_mask[:, 1:].reshape(-1)
        losses = F.cross_entropy(pred, tgt, reduction="none")
        return (losses * m).sum() / m.sum()

# quick overfitting check on 10 examples (takes a while)
small = DialogueDataset(tokenizer, all_dialogues[:10], max_N)
loader = torch.utils.data.DataLoader(small, batch_size=10, collate_fn=small.collate_fn)
gpt_small = DialogueGPT(tokenizer.vocab_size, max_N, 128, 32, 256, 4, 2).to(device)
opt = torch.optim.Adam(gpt_small.parameters(), 1e-3)
for step in tqdm(range(2000)):
    for b in loader:
        l = DialogueLoss()(gpt_small(b["input_ids"].to(device)), b["input_ids"].to(device), b["input_mask"].to(device))
        opt.zero_grad(); l.backward(); opt.step()
print(l.item())
plt.plot([1, 2, 3]); plt.show()
'''


def _png() -> str:
    """A real (tiny) PNG, repeated in outputs like a notebook full of plots."""
    return base64.b64encode(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5d0ba770000000049454e44ae426082")).decode()


def cells_of(text: str) -> list[percent.PercentCell]:
    return percent.parse(keep_solutions(text))


def replace_classes(cells, classes: dict[str, str | None]) -> list[percent.PercentCell]:
    out = []
    for c in cells:
        new = c
        for cls, code in classes.items():
            if code is not None and c.kind == "code" and c.source.lstrip().startswith(f"class {cls}("):
                new = percent.PercentCell("code", code.strip("\n"), c.line, c.tags)
        out.append(new)
    return out


def write(name: str, data: bytes) -> None:
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    (folder / NOTEBOOK).write_bytes(data)


def messy(cells) -> bytes:
    nb = json.loads(percent.build(cells))
    out = []
    count = 0
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and src.startswith("class AttentionHead("):
            out.append(_code(FIRST_TRY_HEAD.strip("\n")))
        if cell["cell_type"] == "code" and src.startswith("class DialogueLoss("):
            continue  # written in the training cell below instead
        out.append(cell)
        for start, extra in MESSY_BEFORE:
            if src.startswith(start):
                out += [_code(s) for _, s in extra]
        if cell["cell_type"] == "code" and src.startswith("class DialogueDataset("):
            out.append(_code("tokenizer = MyTokenizer(open('input.txt').read())\nmax_N = 128"))
            out.append(_code(MIXED_TRAINING_CELL.strip("\n")))
    for cell in out:
        if cell["cell_type"] == "code":
            count += 1
            cell["execution_count"] = count
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": [f"epoch {i}: loss {3 - i / 10:.3f}\n"
                                                                                    for i in range(20)]}]
            if "plt." in "".join(cell["source"]):
                cell["outputs"].append({"data": {"image/png": _png() * 50, "text/plain": ["<Figure size 2000x400>"]},
                                        "metadata": {}, "output_type": "display_data"})
    nb["cells"] = out
    nb["metadata"] = {"accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"},
                      "kernelspec": {"display_name": "Python 3", "name": "python3"}, "language_info": {"name": "python"}}
    nb["nbformat_minor"] = 0
    return (json.dumps(nb, indent=1) + "\n").encode()


def _code(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {"id": hashlib.sha256(source.encode()).hexdigest()[:12]},
            "outputs": [], "source": source.splitlines(True)}


def main() -> None:
    text = (ROOT / "reference_solutions" / "transformer_vit_gpt" / "transformer_vit_gpt.py").read_text()
    cells = cells_of(text)
    write("batched_heads_bool_mask_unfold", percent.build(replace_classes(cells, BATCHED)))
    other = text
    for old, new in OTHER_NAMES_TEXT:
        assert old in other, old
        other = other.replace(old, new)
    write("raw_matrices_other_names", percent.build(replace_classes(cells_of(other), OTHER_NAMES)))
    write("messy_colab", messy(cells))
    print("wrote", ", ".join(sorted(p.name for p in HERE.iterdir() if p.is_dir())))


if __name__ == "__main__":
    main()
