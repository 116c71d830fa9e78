# The reference notebook hw4_seq2seq.ipynb of scratch_rnn_seq2seq_vit, written as percent-format Python
# (docs/notebooks.md). `dlgrade release` builds the student's notebook from it (solution regions become TODOs);
# the graders import its definitions the way a submitted notebook is graded. The course's data module is
# data/data.py (released next to the notebook); the grader puts it on the path the same way (data_folder.py).

# %% [markdown]
# # Homework 4, Problem 2: translation with an attentional Seq2Seq model (30 points)
#
# An LSTM encoder reads the source sentence; an LSTM decoder writes the translation one token at a time and, at
# every step, looks back at all the encoder's outputs with **dot-product attention**: the decoder's current state
# is compared (by a dot product) with the encoder output of every source position, a softmax over the source
# positions turns the scores into weights, and the weighted sum of the encoder outputs (the *context*) joins the
# decoder state to predict the next token.
#
# Keep the `data` folder (with `data.py`) next to this notebook. The cells marked **TODO** are yours. The grader
# reads this notebook's classes (not its outputs), and the **output of the training cell**: your training log and
# the test perplexity must be printed there when you submit.

# %%
# Setup. The grader does not run this cell's calls.
import math
import sys
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

sys.path.append("data")
from data import EOS_IDX, PAD_IDX, SOS_IDX, make_loaders, tokenize  # noqa: E402 - after the path is set

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# %% [markdown]
# ## The data
#
# A tab-separated parallel corpus, one sentence pair per line (the English-French file of the Tatoeba project,
# `fra.txt` from manythings.org, works as is). `make_loaders` tokenizes it, keeps pairs of at most 12 tokens,
# splits it 80/10/10 and returns batch-first loaders: `src` is `(B, S)` and ends with `<eos>`; `trg` is `(B, T)`,
# starts with `<sos>` and ends with `<eos>`; both are padded with `PAD_IDX`.

# %%
# !wget -nc -q https://www.manythings.org/anki/fra-eng.zip && unzip -o -q fra-eng.zip fra.txt
train_loader, valid_loader, test_loader, src_vocab, trg_vocab = make_loaders("fra.txt", batch_size=128, max_len=12,
                                                                             min_freq=2, limit=60000)
print(len(src_vocab), "source tokens,", len(trg_vocab), "target tokens,", len(train_loader.dataset), "training pairs")

# %% [markdown]
# ### 2(a) The encoder and the decoder [10 points]
#
# Write `forward` of both modules, using the layers their `__init__` creates. What they take and return is up to
# you: return whatever your `LSTMSeq2Seq.forward` needs. The decoder must attend to the encoder's outputs with
# dot-product attention: with $s_t$ the decoder LSTM's output at step $t$ and $e_1, \dots, e_S$ the encoder's
# outputs, $a_{t,j} = \mathrm{softmax}_j(s_t \cdot e_j)$ (the weights of each step sum to 1 over the source
# positions), $c_t = \sum_j a_{t,j} e_j$, and the scores for the next token are `fc([s_t ; c_t])`.

# %%
class LSTMEncoder(nn.Module):
    def __init__(self, in_dim, emb_dim, hid_dim):
        super().__init__()
        self.embedding = nn.Embedding(in_dim, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hid_dim, batch_first=True)

    def forward(self, src):
        """src (B, S) token ids. Return what your LSTMSeq2Seq needs (e.g. all outputs and the final (h, c))."""
        # BEGIN SOLUTION
        embedded = self.embedding(src)  # (B, S, emb_dim)
        outputs, (hidden, cell) = self.lstm(embedded)  # (B, S, hid_dim); (1, B, hid_dim) each
        return outputs, hidden, cell
        # END SOLUTION


class AttnLSTMDecoder(nn.Module):
    def __init__(self, emb_dim, hid_dim, out_dim, dropout):
        super().__init__()
        self.out_dim = out_dim
        self.embedding = nn.Embedding(out_dim, emb_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(emb_dim, hid_dim, batch_first=True)
        self.fc = nn.Linear(2 * hid_dim, out_dim)  # [decoder output ; attention context] -> scores of the next token

    def forward(self, input, hidden, cell, encoder_outputs):
        """A suggestion: input (B, T) tokens, the LSTM state, encoder_outputs (B, S, hid_dim). Change the arguments
        and what you return as your LSTMSeq2Seq needs (one step at a time, or all T steps at once)."""
        # BEGIN SOLUTION
        embedded = self.dropout(self.embedding(input))  # (B, T, emb_dim)
        output, (hidden, cell) = self.lstm(embedded, (hidden, cell))  # (B, T, hid_dim)
        scores = torch.bmm(output, encoder_outputs.transpose(1, 2))  # (B, T, S): s_t . e_j
        weights = torch.softmax(scores, dim=-1)  # (B, T, S), each row sums to 1 over the source positions
        context = torch.bmm(weights, encoder_outputs)  # (B, T, hid_dim)
        prediction = self.fc(torch.cat([output, context], dim=-1))  # (B, T, out_dim)
        return prediction, hidden, cell, weights
        # END SOLUTION


# %% [markdown]
# ### 2(b) `LSTMSeq2Seq.forward` [10 points]
#
# `src` is `(B, S)`, `trg` is `(B, max_len)` and starts with `<sos>`. Encode the source, start the decoder from
# the encoder's final `(h, c)`, and decode with **teacher forcing**: the decoder's input at step `t` is the true
# previous token `trg[:, t - 1]` (not its own prediction). Return `outputs` of shape `(B, out_dim, max_len)`:
# `outputs[:, :, t]` holds the scores for `trg[:, t]` for `t >= 1`, computed from `trg[:, :t]` and the source;
# nothing predicts `<sos>`, so `outputs[:, :, 0]` stays zero. (This layout is the one `nn.CrossEntropyLoss` takes.)

# %%
class LSTMSeq2Seq(nn.Module):
    def __init__(self, in_dim, out_dim, emb_dim, hid_dim, device, dropout=0.5):
        super().__init__()
        self.encoder = LSTMEncoder(in_dim, emb_dim, hid_dim)
        self.decoder = AttnLSTMDecoder(emb_dim, hid_dim, out_dim, dropout)
        self.out_dim = out_dim
        self.device = device

    def forward(self, src, trg):
        """src (B, S), trg (B, max_len) -> outputs (B, out_dim, max_len); outputs[:, :, 0] stays zero."""
        batch_size, max_len = trg.shape
        outputs = torch.zeros(batch_size, self.out_dim, max_len, device=self.device)
        # BEGIN SOLUTION
        encoder_outputs, hidden, cell = self.encoder(src)
        # teacher forcing: all steps at once, step t reading trg[:, t - 1]
        prediction, _, _, _ = self.decoder(trg[:, :-1], hidden, cell, encoder_outputs)  # (B, max_len - 1, out_dim)
        outputs[:, :, 1:] = prediction.transpose(1, 2)
        # END SOLUTION
        return outputs


# %%
def test_seq2seq():
    torch.manual_seed(0)
    model = LSTMSeq2Seq(in_dim=20, out_dim=30, emb_dim=8, hid_dim=16, device=device, dropout=0.0).to(device)
    model.eval()
    src = torch.randint(4, 20, (3, 6), device=device)
    trg = torch.randint(4, 30, (3, 5), device=device)
    trg[:, 0] = SOS_IDX
    with torch.no_grad():
        outputs = model(src, trg)
        assert tuple(outputs.shape) == (3, 30, 5), "2(b): outputs must be (B, out_dim, max_len)"
        assert torch.all(outputs[:, :, 0] == 0), "2(b): nothing predicts <sos>: outputs[:, :, 0] stays zero"
        changed = trg.clone()
        changed[:, 3] = (changed[:, 3] + 1 - 4) % 26 + 4  # another token at position 3
        again = model(src, changed)
        assert torch.allclose(outputs[:, :, :4], again[:, :, :4], atol=1e-5), "2(b): step t may read trg[:, :t] only"
        assert not torch.allclose(outputs[:, :, 4], again[:, :, 4]), "2(b): step 4 reads the true token 3"
    print("2(a)-(b) public tests passed")


test_seq2seq()

# %% [markdown]
# ### 2(c) Training [10 points]
#
# Train the model, then plot the training and validation perplexities and the learning rate per epoch. The test
# perplexity must be **below 7**. Report your hyper-parameters and the test result in the cell at the end; keep the
# training log (one line per epoch) and the test perplexity in this cell's output: without them this part scores 0.

# %%
def run_epoch(model, loader, optimizer=None, scheduler=None):
    """One pass over `loader` (training when an optimizer is given) -> mean cross-entropy per target token."""
    criterion = nn.CrossEntropyLoss(ignore_index=PAD_IDX, reduction="sum")
    model.train(optimizer is not None)
    total, tokens = 0.0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for src, trg in loader:
            src, trg = src.to(device), trg.to(device)
            outputs = model(src, trg)  # (B, out_dim, max_len)
            loss = criterion(outputs[:, :, 1:], trg[:, 1:])
            n = int((trg[:, 1:] != PAD_IDX).sum())
            if optimizer is not None:
                optimizer.zero_grad()
                (loss / n).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            total, tokens = total + float(loss), tokens + n
    return total / tokens


EPOCHS, LR = 15, 2e-3
model = LSTMSeq2Seq(len(src_vocab), len(trg_vocab), emb_dim=256, hid_dim=512, device=device, dropout=0.3).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=LR)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=EPOCHS * len(train_loader))
history = {"train": [], "valid": [], "lr": []}
for epoch in range(1, EPOCHS + 1):
    start = time.time()
    train_ppl = math.exp(run_epoch(model, train_loader, optimizer, scheduler))
    valid_ppl = math.exp(run_epoch(model, valid_loader))
    history["train"].append(train_ppl)
    history["valid"].append(valid_ppl)
    history["lr"].append(scheduler.get_last_lr()[0])
    print(f"Epoch {epoch:02d} ({time.time() - start:.0f}s): train PPL {train_ppl:7.3f} | valid PPL {valid_ppl:7.3f} "
          f"| lr {history['lr'][-1]:.2e}")
test_ppl = math.exp(run_epoch(model, test_loader))
print(f"Test perplexity: {test_ppl:.3f}")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.plot(history["train"], label="train")
left.plot(history["valid"], label="valid")
left.set_yscale("log")
left.set_title("perplexity")
left.legend()
right.plot(history["lr"])
right.set_title("learning rate")
plt.show()


# %%
def translate(model, sentence, max_len=20):
    """Given: greedy translation through LSTMSeq2Seq.forward (the prefix decoded so far is the teacher)."""
    model.eval()
    src = torch.tensor([src_vocab.encode(tokenize(sentence))], device=device)
    trg = torch.tensor([[SOS_IDX]], device=device)
    with torch.no_grad():
        for _ in range(max_len):
            scores = model(src, torch.cat([trg, trg[:, -1:]], dim=1))  # the last column is a placeholder
            next_id = scores[0, :, -1].argmax().view(1, 1)
            trg = torch.cat([trg, next_id], dim=1)
            if int(next_id) == EOS_IDX:
                break
    return " ".join(trg_vocab.decode(trg[0, 1:].tolist()))


for sentence in ["I am cold.", "She is reading a book.", "We will win."]:
    print(sentence, "->", translate(model, sentence))

# %% [markdown]
# **2(c) report:** your hyper-parameters and the result on the test set.
#
# BEGIN SOLUTION
# Embedding 256, hidden 512, dropout 0.3, Adam with a one-cycle schedule (max lr 2e-3) for 15 epochs, batch 128,
# gradient clipping at 1. Test perplexity: see the log above (below 7).
# END SOLUTION
