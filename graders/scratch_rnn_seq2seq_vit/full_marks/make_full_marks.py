"""Writes the full-marks submissions of scratch_rnn_seq2seq_vit: correct notebooks written unlike the reference.

Each folder holds the three notebooks, with the outputs a real run leaves in them (the training logs and final
metrics that the handout requires in the training cells, each folder in its own style):

- ``reference_with_logs``: the reference notebooks as the course would release its solution, with the logs;
- ``loops_and_other_layouts``: step-by-step loops, transposed weights, a masked recurrence instead of a gather,
  rounding up, an encoder returning nested tuples, a one-token-at-a-time decoder with [context ; state], separate
  q/k/v layers without biases, the class token appended at the end and read there, positions as (N + 1, dim);
- ``fused_vectorised``: pad_sequence and ceil in collate, W_hh used transposed, gather, a dict from the encoder,
  scaled dot-product attention in the decoder, a fused per-head qkv layout, raw parameters;
- ``messy_colab``: shaped like a real Colab download: pip installs, a Drive mount, TensorBoard magics, a draft class
  superseded by the final one, classes mixed with training code in one cell, long logs, plots.

Run from the project root:

    .venv/bin/python graders/scratch_rnn_seq2seq_vit/full_marks/make_full_marks.py

`dlgrade validate scratch_rnn_seq2seq_vit` grades every folder here and requires full marks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from dlgrade.markers import keep_solutions  # noqa: E402
from dlgrade.notebook import percent  # noqa: E402

STEMS = ("hw4_rnn", "hw4_seq2seq", "hw4_vit")

# ============================================================================ loops and other layouts

LOOPS = {
    "hw4_rnn": {
        "collate_batch": '''
def collate_batch(batch):
    labels, texts, lens = [], [], []
    for (_label, _text) in batch:
        labels.append(_label)
        ids = text_pipeline(_text)
        texts.append(ids)
        lens.append(len(ids))
    avg_len = math.ceil(sum(lens) / len(lens))   # average length, rounded up
    padded = []
    for ids in texts:
        ids = ids[:avg_len]
        padded.append(ids + [PAD_IDX] * (avg_len - len(ids)))
    text = torch.tensor(padded, dtype=torch.int64).t().contiguous()   # (L, B)
    lengths = torch.tensor([min(n, avg_len) for n in lens], dtype=torch.int64)
    return text.to(device), torch.tensor(labels, dtype=torch.int64).to(device), lengths.to(device)
''',
        "RNN": '''
class RNN(nn.Module):
    def __init__(self, vocab_size, input_size, hidden_size, num_class, dropout_ratio=0.5):
        super().__init__()
        self.hidden_size = hidden_size
        self.dropout_ratio = dropout_ratio
        self.embedding = nn.Embedding(vocab_size, input_size)
        # weights stored as (out, in), like nn.Linear, and used transposed
        self.W_xh = nn.Parameter(torch.Tensor(hidden_size, input_size))
        self.b_xh = nn.Parameter(torch.Tensor(hidden_size))
        self.W_hh = nn.Parameter(torch.Tensor(hidden_size, hidden_size))
        self.b_hh = nn.Parameter(torch.Tensor(hidden_size))
        self.W_hy = nn.Parameter(torch.Tensor(num_class, hidden_size))
        self.b_hy = nn.Parameter(torch.Tensor(num_class))
        self.init_parameters()

    def init_parameters(self):
        """Given: every parameter but the embedding uniform in [-1/sqrt(hidden_size), 1/sqrt(hidden_size)]."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, weight in self.named_parameters():
            if not name.startswith("embedding"):
                nn.init.uniform_(weight, -bound, bound)

    def forward(self, inputs, length):
        seq_len, batch_size = inputs.size()
        emb = self.embedding(inputs)
        h_t = torch.zeros(batch_size, self.hidden_size, device=inputs.device)
        for t in range(seq_len):
            new_h = torch.tanh(emb[t] @ self.W_xh.t() + self.b_xh + h_t @ self.W_hh.t() + self.b_hh)
            still_reading = (t < length).unsqueeze(1)          # stop updating after the last real token
            h_t = torch.where(still_reading, new_h, h_t)
        if self.training:
            mask = torch.bernoulli(torch.full_like(h_t, 1 - self.dropout_ratio))
            h_t = h_t * mask / (1 - self.dropout_ratio)
        scores = h_t @ self.W_hy.t() + self.b_hy
        return torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)

    def compute_loss(self, prediction, label):
        log_p = torch.log(prediction.gather(1, label.unsqueeze(1)) + 1e-10)
        loss = -log_p.mean()
        n_correct = (torch.max(prediction, 1)[1] == label).sum()
        return loss, n_correct
''',
    },
    "hw4_seq2seq": {
        "LSTMEncoder": '''
class LSTMEncoder(nn.Module):
    def __init__(self, in_dim, emb_dim, hid_dim):
        super().__init__()
        self.embedding = nn.Embedding(in_dim, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hid_dim, batch_first=True)

    def forward(self, src):
        enc_out, (h, c) = self.lstm(self.embedding(src))
        return enc_out, (h, c)


class AttnLSTMDecoder(nn.Module):
    def __init__(self, emb_dim, hid_dim, out_dim, dropout):
        super().__init__()
        self.out_dim = out_dim
        self.embedding = nn.Embedding(out_dim, emb_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(emb_dim, hid_dim, batch_first=True)
        self.fc = nn.Linear(2 * hid_dim, out_dim)  # [decoder output ; attention context] -> scores of the next token

    def forward(self, token, state, enc_out):
        """One step: token (B,), state (h, c), enc_out (B, S, H) -> (scores (B, out_dim), new state, attention (B, S))."""
        x = self.dropout(self.embedding(token.unsqueeze(1)))          # (B, 1, E)
        out, state = self.lstm(x, state)                              # (B, 1, H)
        out = out.squeeze(1)                                          # (B, H)
        energy = torch.einsum("bh,bsh->bs", out, enc_out)
        alpha = torch.softmax(energy, dim=1)
        context = torch.einsum("bs,bsh->bh", alpha, enc_out)
        return self.fc(torch.cat((context, out), dim=1)), state, alpha   # context first: my own order
''',
        "LSTMSeq2Seq": '''
class LSTMSeq2Seq(nn.Module):
    def __init__(self, in_dim, out_dim, emb_dim, hid_dim, device, dropout=0.5):
        super().__init__()
        self.encoder = LSTMEncoder(in_dim, emb_dim, hid_dim)
        self.decoder = AttnLSTMDecoder(emb_dim, hid_dim, out_dim, dropout)
        self.out_dim = out_dim
        self.device = device

    def forward(self, src, trg):
        batch_size, max_len = trg.shape
        outputs = torch.zeros(batch_size, self.out_dim, max_len, device=self.device)
        enc_out, state = self.encoder(src)
        for t in range(1, max_len):
            scores, state, _ = self.decoder(trg[:, t - 1], state, enc_out)   # teacher forcing
            outputs[:, :, t] = scores
        return outputs
''',
    },
    "hw4_vit": {
        "Patchification": '''
class Patchification(nn.Module):
    def __init__(self, in_channels, patch_size, embedding_dim):
        super().__init__()
        self.conv = nn.Conv2d(in_channels=in_channels, out_channels=embedding_dim,
                              kernel_size=(patch_size, patch_size), stride=(patch_size, patch_size))

    def forward(self, x):
        y = self.conv(x)
        B, D, H, W = y.shape
        return y.permute(0, 2, 3, 1).reshape(B, H * W, D)
''',
        "MLP": '''
class MLP(nn.Module):
    def __init__(self, dim, hidden_dim, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    """Multi-head attention with separate query/key/value layers (no biases), heads computed one by one."""

    def __init__(self, dim, num_heads, dropout=0.0):
        super().__init__()
        assert dim % num_heads == 0
        self.h = num_heads
        self.d_k = dim // num_heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        Q, K, V = self.to_q(x), self.to_k(x), self.to_v(x)
        heads = []
        for i in range(self.h):
            sl = slice(i * self.d_k, (i + 1) * self.d_k)
            weights = torch.softmax(Q[..., sl] @ K[..., sl].transpose(1, 2) / math.sqrt(self.d_k), dim=-1)
            heads.append(self.drop(weights) @ V[..., sl])
        return self.drop(self.to_out(torch.cat(heads, dim=-1)))
''',
        "Block": '''
class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_dim, dropout=0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = Attention(dim, num_heads, dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.feed_forward = MLP(dim, mlp_dim, dropout)

    def forward(self, x):
        h = x + self.attention(self.ln_1(x))
        return h + self.feed_forward(self.ln_2(h))
''',
        "ViT": '''
class ViT(nn.Module):
    def __init__(self, image_shape, patch_size, num_classes, dim, num_heads, depth, mlp_dim, dropout=0.0):
        super().__init__()
        channels, height, width = image_shape
        num_patches = (height // patch_size) * (width // patch_size)
        self.patchify = Patchification(channels, patch_size, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(num_patches + 1, dim) * 0.02)   # (N + 1, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.patchify(x)
        cls = self.cls_token.repeat(tokens.shape[0], 1, 1)
        tokens = torch.cat([tokens, cls], dim=1)          # my class token goes last ...
        tokens = self.dropout(tokens + self.pos_embedding.unsqueeze(0))
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.head(self.norm(tokens)[:, -1])         # ... and is read there
''',
    },
}
LOOPS_TEXT = {  # (old, new) replacements in the reference source
    "hw4_rnn": [
        ("""        optimizer.zero_grad()
        prediction = model(text, length)
        loss, n_correct = model.compute_loss(prediction, label)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        scheduler.step()""",
         """        optimizer.zero_grad()
        prediction = model(text, length)
        loss, n_correct = model.compute_loss(prediction, label)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.1)
        optimizer.step()
        scheduler.step()  # OneCycleLR: once per batch"""),
        ("""            prediction = model(text, length)
            loss, n_correct = model.compute_loss(prediction, label)
            total_loss""",
         """            loss, n_correct = model.compute_loss(model(text, length), label)
            total_loss"""),
    ],
}

# ============================================================================ fused and vectorised

FUSED = {
    "hw4_rnn": {
        "collate_batch": '''
def collate_batch(batch):
    labels = torch.tensor([lab for lab, _ in batch])
    seqs = [torch.tensor(text_pipeline(txt), dtype=torch.long) for _, txt in batch]
    L = int(round(sum(len(s) for s in seqs) / len(seqs)))
    seqs = [s[:L] for s in seqs]
    lengths = torch.tensor([len(s) for s in seqs])
    text = torch.nn.utils.rnn.pad_sequence(seqs, padding_value=PAD_IDX)       # (longest kept, B)
    if text.shape[0] < L:
        text = torch.cat([text, torch.full((L - text.shape[0], len(seqs)), PAD_IDX)], dim=0)
    return text.to(device), labels.to(device), lengths.to(device)
''',
        "RNN": '''
class RNN(nn.Module):
    def __init__(self, vocab_size, input_size, hidden_size, num_class, dropout_ratio=0.5):
        super().__init__()
        self.hidden_size = hidden_size
        self.dropout_ratio = dropout_ratio
        self.embedding = nn.Embedding(vocab_size, input_size)
        self.W_xh = nn.Parameter(torch.zeros(input_size, hidden_size))
        self.W_hh = nn.Parameter(torch.zeros(hidden_size, hidden_size))
        self.W_hy = nn.Parameter(torch.zeros(hidden_size, num_class))
        self.b_xh = nn.Parameter(torch.zeros(hidden_size))
        self.b_hh = nn.Parameter(torch.zeros(hidden_size))
        self.b_hy = nn.Parameter(torch.zeros(num_class))
        self.init_parameters()

    def init_parameters(self):
        """Given: every parameter but the embedding uniform in [-1/sqrt(hidden_size), 1/sqrt(hidden_size)]."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, weight in self.named_parameters():
            if not name.startswith("embedding"):
                nn.init.uniform_(weight, -bound, bound)

    def forward(self, inputs, length):
        xw = self.embedding(inputs) @ self.W_xh + self.b_xh + self.b_hh     # all input terms at once: (L, B, H)
        h = xw.new_zeros(inputs.shape[1], self.hidden_size)
        hs = []
        for x_t in xw:
            h = torch.tanh(x_t + h @ self.W_hh.T)     # my W_hh is used transposed: the same network
            hs.append(h)
        hs = torch.stack(hs, dim=1)                   # (B, L, H)
        index = (length - 1).view(-1, 1, 1).expand(-1, 1, self.hidden_size).long()
        h_last = hs.gather(1, index).squeeze(1)
        if self.training and self.dropout_ratio > 0:
            h_last = h_last * (torch.rand(h_last.shape, device=h_last.device) > self.dropout_ratio) / (1 - self.dropout_ratio)
        return torch.softmax(h_last @ self.W_hy + self.b_hy, 1)

    def compute_loss(self, prediction, label):
        B = prediction.shape[0]
        loss = -torch.log(prediction[range(B), label]).sum() / B
        return loss, int(torch.sum(prediction.argmax(-1) == label))
''',
    },
    "hw4_seq2seq": {
        "LSTMEncoder": '''
class LSTMEncoder(nn.Module):
    def __init__(self, in_dim, emb_dim, hid_dim):
        super().__init__()
        self.embedding = nn.Embedding(in_dim, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hid_dim, batch_first=True)

    def forward(self, src):
        outputs, (h, c) = self.lstm(self.embedding(src))
        return {"outputs": outputs, "hidden": h, "cell": c}


class AttnLSTMDecoder(nn.Module):
    def __init__(self, emb_dim, hid_dim, out_dim, dropout):
        super().__init__()
        self.out_dim = out_dim
        self.embedding = nn.Embedding(out_dim, emb_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(emb_dim, hid_dim, batch_first=True)
        self.fc = nn.Linear(2 * hid_dim, out_dim)  # [decoder output ; attention context] -> scores of the next token

    def forward(self, inputs, enc):
        """All teacher-forced steps at once: inputs (B, T) -> scores (B, T, out_dim)."""
        s, _ = self.lstm(self.dropout(self.embedding(inputs)), (enc["hidden"], enc["cell"]))
        e = enc["outputs"]
        # dot products, scaled like in "Attention Is All You Need" (still dot-product attention)
        a = torch.softmax(s @ e.transpose(1, 2) / math.sqrt(s.size(-1)), dim=2)
        return self.fc(torch.cat([s, a @ e], dim=2))
''',
        "LSTMSeq2Seq": '''
class LSTMSeq2Seq(nn.Module):
    def __init__(self, in_dim, out_dim, emb_dim, hid_dim, device, dropout=0.5):
        super().__init__()
        self.encoder = LSTMEncoder(in_dim, emb_dim, hid_dim)
        self.decoder = AttnLSTMDecoder(emb_dim, hid_dim, out_dim, dropout)
        self.out_dim = out_dim
        self.device = device

    def forward(self, src, trg):
        batch_size, max_len = trg.shape
        outputs = torch.zeros(batch_size, self.out_dim, max_len, device=self.device)
        scores = self.decoder(trg[:, :-1], self.encoder(src))
        outputs[:, :, 1:] = scores.permute(0, 2, 1)
        return outputs
''',
    },
    "hw4_vit": {
        "Attention": '''
class Attention(nn.Module):
    def __init__(self, dim, num_heads, dropout=0.0):
        super().__init__()
        self.heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, N, D = x.shape
        hd = D // self.heads
        # per head: [q_h | k_h | v_h] next to each other in the fused output
        q, k, v = self.qkv(x).view(B, N, self.heads, 3, hd).permute(3, 0, 2, 1, 4)
        w = torch.einsum("bhid,bhjd->bhij", q, k) * hd ** -0.5
        w = self.dropout(w.softmax(-1))
        y = torch.einsum("bhij,bhjd->bhid", w, v)
        return self.dropout(self.out(y.permute(0, 2, 1, 3).reshape(B, N, D)))
''',
        "ViT": '''
class ViT(nn.Module):
    def __init__(self, image_shape, patch_size, num_classes, dim, num_heads, depth, mlp_dim, dropout=0.0):
        super().__init__()
        channels, height, width = image_shape
        num_patches = (height // patch_size) * (width // patch_size)
        self.patchify = Patchification(channels, patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        B = x.size(0)
        z = torch.cat((self.cls_token.expand(B, 1, -1), self.patchify(x)), dim=1)
        z = self.dropout(z + self.pos_embedding)
        for block in self.blocks:
            z = block(z)
        cls_out = self.norm(z)[:, 0]
        return self.head(cls_out)
''',
    },
}

# ============================================================================ a real Colab notebook, messy

DRAFT_RNN = '''
# first attempt -- reads the last row of the batch (wrong for padded texts!), fixed below
class RNN(nn.Module):
    def __init__(self, vocab_size, input_size, hidden_size, num_class, dropout_ratio=0.5):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, input_size)
        self.W_xh = nn.Parameter(torch.randn(input_size, hidden_size) * 0.1)
        self.W_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) * 0.1)
        self.W_hy = nn.Parameter(torch.randn(hidden_size, num_class) * 0.1)
        self.b_xh = nn.Parameter(torch.zeros(hidden_size))
        self.b_hh = nn.Parameter(torch.zeros(hidden_size))
        self.b_hy = nn.Parameter(torch.zeros(num_class))

    def forward(self, inputs, length):
        h = torch.zeros(inputs.shape[1], self.W_hh.shape[0], device=inputs.device)
        for x in self.embedding(inputs):
            h = torch.tanh(x @ self.W_xh + self.b_xh + h @ self.W_hh + self.b_hh)
        return torch.softmax(h @ self.W_hy + self.b_hy, dim=-1)

m = RNN(len(vocab), 32, 64, 4)
print(m(torch.randint(0, 100, (7, 2)), torch.tensor([7, 3])).shape)
'''
DRAFT_ATTENTION = '''
# vanilla attention first (only 5 points!) -- the multi-head version is further down
class Attention(nn.Module):
    def __init__(self, dim, num_heads, dropout=0.0):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)

    def forward(self, x):
        a = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2) / math.sqrt(x.shape[-1]), dim=-1)
        return a @ self.v(x)

print(Attention(64, 4)(torch.randn(2, 5, 64)).shape)
'''
MESSY_EXTRA = {  # stem -> [(after the cell whose source starts with this text, code cells to insert)]
    "hw4_rnn": [
        ("# Setup.", ["!pip install -q torchtext==0.17.0 portalocker\n!nvidia-smi",
                      "from google.colab import drive\ndrive.mount('/content/drive')\n%cd /content/drive/MyDrive/ML_DL/hw4",
                      "%load_ext tensorboard\nimport matplotlib.pyplot as plt\nfrom tqdm.notebook import tqdm\n"
                      "import torchtext\nprint(torchtext.__version__)"]),
        ("PAD_IDX = ", [DRAFT_RNN.strip("\n")]),
    ],
    "hw4_seq2seq": [
        ("# Setup.", ["!nvidia-smi",
                      "from google.colab import drive\ndrive.mount('/content/drive')\n%cd /content/drive/MyDrive/ML_DL/hw4\n!ls data",
                      "import random\nimport numpy as np\nimport pandas as pd\nSEED = 1234\nrandom.seed(SEED); torch.manual_seed(SEED)"]),
    ],
    "hw4_vit": [
        ("# Setup.", ["!nvidia-smi\n!pip list | grep torch",
                      "from google.colab import drive\ndrive.mount('/content/drive', force_remount=True)",
                      "%matplotlib inline\n%cd /content/drive/MyDrive/ML_DL/hw4/vit"]),
        ("class Patchification(", [DRAFT_ATTENTION.strip("\n")]),
    ],
}
MESSY_TAIL = {
    "hw4_rnn": ["%tensorboard --logdir runs",
                "plt.figure(figsize=(8, 4))\nplt.plot(train_accs, label='train')\nplt.plot(valid_accs, label='valid')\n"
                "plt.legend(); plt.title('accuracy'); plt.show()",
                "torch.save(model.state_dict(), '/content/drive/MyDrive/ML_DL/hw4/rnn_best.pt')"],
    "hw4_seq2seq": ["for s in ['I am hungry.', 'Where is the station?', 'He runs every morning.']:\n"
                    "    print(s, '->', translate(model, s))"],
    "hw4_vit": ["torch.save(model.state_dict(), 'vit_final.pt')\n!cp vit_final.pt /content/drive/MyDrive/"],
}
MESSY_RNN_TRAINING = '''%%time
# hyper-parameter search: I tried SGD(lr=5) + StepLR, Adam(1e-3), Adam + OneCycle; the last one is the best
EPOCHS = 12
BATCH_SIZE = 64
LR = 3e-3
train_loader = DataLoader(train_data, batch_size=BATCH_SIZE, shuffle=True, collate_fn=collate_batch)
valid_loader = DataLoader(valid_data, batch_size=BATCH_SIZE, collate_fn=collate_batch)
test_loader = DataLoader(test_data, batch_size=BATCH_SIZE, collate_fn=collate_batch)
train_accs, valid_accs = [], []
for opt_name in ["adam_onecycle"]:
    model = RNN(len(vocab), 100, 128, 4, dropout_ratio=0.25).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=EPOCHS * len(train_loader))
    writer = SummaryWriter(f"runs/{opt_name}")
    for epoch in tqdm(range(1, EPOCHS + 1)):
        tr_loss, tr_acc = train(model, train_loader, optimizer, scheduler)
        va_loss, va_acc = evaluate(model, valid_loader)
        train_accs.append(tr_acc); valid_accs.append(va_acc)
        writer.add_scalar("train/loss", tr_loss, epoch); writer.add_scalar("valid/acc", va_acc, epoch)
        print(f"[{opt_name}] epoch {epoch}: train_loss={tr_loss:.3f} train_acc={tr_acc:.3f} valid_acc={va_acc:.3f}")
te_loss, te_acc = evaluate(model, test_loader)
print(f"test accuracy = {te_acc * 100:.2f} %")
'''


# ============================================================================ outputs of the training cells


def rnn_log(style: str, rng: random.Random) -> str:
    lines, acc = [], 0.45
    epochs = 12 if style == "messy" else 10
    for e in range(1, epochs + 1):
        acc = min(0.88, acc + (0.89 - acc) * 0.35 + rng.uniform(-0.01, 0.01))
        loss = -math.log(acc) * 0.9
        if style == "messy":
            lines.append(f"[adam_onecycle] epoch {e}: train_loss={loss:.3f} train_acc={acc + 0.03:.3f} valid_acc={acc:.3f}")
        elif style == "loops":
            lines.append(f"Epoch {e}/{epochs} - loss: {loss:.4f} - acc: {acc + 0.02:.4f} - val_loss: {loss * 1.1:.4f} - "
                         f"val_acc: {acc:.4f}")
        else:
            lines.append(f"| epoch {e:2d} | {rng.uniform(40, 55):5.1f}s | train loss {loss:.4f} acc {acc + 0.02:.3f} "
                         f"| valid loss {loss * 1.1:.4f} acc {acc:.3f} |")
    final = {"messy": f"test accuracy = {100 * (acc - 0.01):.2f} %", "loops": f"TEST ACC: {acc - 0.012:.4f}",
             "fused": f"Test accuracy: {100 * (acc - 0.008):.1f}%"}.get(style, f"Test accuracy: {100 * (acc - 0.01):.1f}%")
    return "\n".join(lines) + "\n" + final + "\n"


def seq2seq_log(style: str, rng: random.Random) -> str:
    lines, ppl = [], 60.0
    for e in range(1, 16):
        ppl = max(3.2, ppl * 0.72 + rng.uniform(-0.2, 0.2))
        valid = ppl * 1.35 + 1.1
        if style == "loops":
            lines.append(f"epoch {e:02d} train_ppl={ppl:.2f} val_ppl={valid:.2f} lr={2e-3 * min(1, e / 5):.5f}")
        else:
            lines.append(f"Epoch {e:02d} ({rng.randint(60, 80)}s): train PPL {ppl:7.3f} | valid PPL {valid:7.3f} | "
                         f"lr {2e-3 * math.sin(math.pi * e / 16):.2e}")
    final = {"loops": f"test PPL = {valid * 1.02:.2f}", "messy": f"Test perplexity: {valid * 1.01:.3f}  (loss "
             f"{math.log(valid * 1.01):.3f})"}.get(style, f"Test perplexity: {valid * 1.01:.3f}")
    return "\n".join(lines) + "\n" + final + "\n"


def vit_log(style: str, rng: random.Random) -> str:
    lines, acc = [], 0.3
    for e in range(1, 41):
        acc = min(0.80, acc + (0.80 - acc) * 0.12 + rng.uniform(-0.008, 0.008))
        loss = 2.3 * (1 - acc) + 0.6
        if style == "messy":
            lines.append(f"100%|██████████| 391/391 [00:{rng.randint(30, 45)}<00:00, {rng.uniform(8, 12):.2f}it/s]")
            lines.append(f"ep {e} loss {loss:.3f} acc {100 * acc:.2f}")
        elif style == "loops":
            lines.append(f"[{e:02d}/40] train_loss: {loss:.4f}  test_accuracy: {100 * acc:.2f}%")
        else:
            lines.append(f"epoch {e:2d}/40 | loss {loss:.4f} | test acc {acc:.4f} | {rng.randint(40, 50)}s")
    final = {"messy": f"FINAL TEST ACC: {100 * acc:.2f}%", "loops": f"Final accuracy on the test set: {acc:.4f}"}.get(
        style, f"Final test accuracy: {100 * acc:.2f}%")
    return "\n".join(lines) + "\n" + final + "\n"


LOGS = {"hw4_rnn": rnn_log, "hw4_seq2seq": seq2seq_log, "hw4_vit": vit_log}
TRAINING_CELL = {"hw4_rnn": "for epoch in range(1, EPOCHS + 1):", "hw4_seq2seq": "for epoch in range(1, EPOCHS + 1):",
                 "hw4_vit": "for epoch in range(1, EPOCHS + 1):"}


# ============================================================================ building


def _png() -> str:
    """A real (tiny) PNG, repeated in outputs like a notebook full of plots."""
    return base64.b64encode(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5d0ba770000000049454e44ae426082")).decode()


def source(stem: str) -> str:
    return keep_solutions((ROOT / "reference_solutions" / "scratch_rnn_seq2seq_vit" / f"{stem}.py").read_text())


def replaced(stem: str, classes: dict[str, str], text_edits: list[tuple[str, str]] | None = None) -> list[dict]:
    """The reference notebook's cells (as JSON) with whole definitions replaced: a cell that starts with the
    definition is cut there up to the next top-level statement of another definition, so given neighbours stay."""
    text = source(stem)
    for old, new in text_edits or []:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    cells = json.loads(percent.build(percent.parse(text)))["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        new = replace_definitions(src, classes) if classes else src
        if new != src:
            cell["source"] = new.splitlines(True)
    return cells


def replace_definitions(src: str, classes: dict[str, str]) -> str:
    """Replace the top-level definitions named in ``classes`` inside one cell's source; a replacement text may hold
    several definitions (e.g. MLP and Attention), each of which then replaces its namesake."""
    import ast

    try:
        tree = ast.parse(src)
    except SyntaxError:  # a cell with shell escapes or magics: no definitions to replace
        return src
    lines = src.split("\n")
    pieces: list[str] = []
    done: set[str] = set()
    last = 0
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and any(node.name in code_names(c) or node.name == n
                                                                      for n, c in classes.items()):
            start = node.lineno - 1 - len(node.decorator_list)
            pieces.append("\n".join(lines[last:start]))
            for n, code in classes.items():
                if (n == node.name or node.name in code_names(code)) and n not in done:
                    pieces.append(code.strip("\n"))
                    done.add(n)
            last = node.end_lineno or node.lineno
    pieces.append("\n".join(lines[last:]))
    return "\n".join(p for p in pieces if p.strip()).strip("\n")


def code_names(code: str) -> set[str]:
    import ast

    return {n.name for n in ast.parse(code).body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}


def _code(source_text: str, outputs: list | None = None) -> dict:
    return {"cell_type": "code", "execution_count": None,
            "metadata": {"id": hashlib.sha256(source_text.encode()).hexdigest()[:12]},
            "outputs": outputs or [], "source": source_text.splitlines(True)}


def with_outputs(stem: str, cells: list[dict], style: str, seed: int) -> list[dict]:
    """Execution counts on every code cell, and the training log on the training cell (a plot after plotting code)."""
    rng = random.Random(seed)
    count = 0
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        count += 1
        cell["execution_count"] = count
        src = "".join(cell["source"])
        if TRAINING_CELL[stem] in src or "for opt_name in" in src:
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": LOGS[stem](style, rng).splitlines(True)}]
        elif "public tests passed" in src or "public test passed" in src:
            line = next(x for x in src.splitlines() if "passed" in x).split('"')[1]
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": [line + "\n"]}]
        if "plt.show()" in src:
            cell["outputs"].append({"data": {"image/png": _png() * 40, "text/plain": ["<Figure size 800x400 with 1 Axes>"]},
                                    "metadata": {}, "output_type": "display_data"})
    return cells


def notebook(cells: list[dict], colab: bool = False) -> bytes:
    nb = {"cells": cells, "metadata": percent.METADATA, "nbformat": 4, "nbformat_minor": 5}
    if colab:
        for cell in cells:
            cell.pop("id", None)
        nb["metadata"] = {"accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"},
                          "kernelspec": {"display_name": "Python 3", "name": "python3"}, "language_info": {"name": "python"}}
        nb["nbformat_minor"] = 0
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()


def messy(stem: str) -> list[dict]:
    cells = json.loads(percent.build(percent.parse(source(stem))))["cells"]
    out = []
    for cell in cells:
        src = "".join(cell["source"])
        if stem == "hw4_rnn" and cell["cell_type"] == "code" and src.startswith("EPOCHS, BATCH_SIZE, LR"):
            out.append(_code(MESSY_RNN_TRAINING.strip("\n")))
            continue
        if stem == "hw4_rnn" and cell["cell_type"] == "code" and src.startswith("# %load_ext tensorboard"):
            continue
        if stem == "hw4_seq2seq" and cell["cell_type"] == "code" and src.startswith("def run_epoch("):
            # the student pasted the model classes into the training cell again before training
            classes = [c for c in cells if "".join(c["source"]).startswith("class LSTMSeq2Seq(")]
            out.append(_code("".join(classes[0]["source"]) + "\n\n\n" + src))
            continue
        out.append(_code(src) if cell["cell_type"] == "code" else cell)
        for start, extra in MESSY_EXTRA.get(stem, []):
            if cell["cell_type"] == "code" and src.startswith(start):
                out += [_code(s) for s in extra]
    out += [_code(s) for s in MESSY_TAIL.get(stem, [])]
    return out


def write(folder: str, stem: str, data: bytes) -> None:
    (HERE / folder).mkdir(exist_ok=True)
    (HERE / folder / f"{stem}.ipynb").write_bytes(data)


def main() -> None:
    for k, stem in enumerate(STEMS):
        ref = json.loads(percent.build(percent.parse(source(stem))))["cells"]
        write("reference_with_logs", stem, notebook(with_outputs(stem, ref, "reference", 10 + k)))
        loops = replaced(stem, LOOPS.get(stem, {}), LOOPS_TEXT.get(stem))
        write("loops_and_other_layouts", stem, notebook(with_outputs(stem, loops, "loops", 20 + k)))
        fused = replaced(stem, FUSED.get(stem, {}))
        write("fused_vectorised", stem, notebook(with_outputs(stem, fused, "fused", 30 + k)))
        write("messy_colab", stem, notebook(with_outputs(stem, messy(stem), "messy", 40 + k), colab=True))
    print("wrote", ", ".join(sorted(p.name for p in HERE.iterdir() if p.is_dir())))


if __name__ == "__main__":
    main()
