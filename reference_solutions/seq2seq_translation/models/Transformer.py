"""Transformer translators: a one-layer encoder written by hand, and a full encoder-decoder.

`TransformerTranslator` reads a source sentence and predicts, at every position, a target
token (an encoder only, so the output is as long as the input). Its attention is written out
head by head; `nn.MultiheadAttention` and the built-in Transformer layers are not used there.
`FullTransformerTranslator` wraps `nn.Transformer` with embeddings, masks and greedy decoding.
"""

import random

import numpy as np
import torch
import torch.nn as nn


class TransformerTranslator(nn.Module):
    """A single Transformer encoder layer with a linear output layer.

    embed -> multi-head self-attention (+ residual, LayerNorm) -> position-wise feed-forward
    (+ residual, LayerNorm) -> linear scores over the target vocabulary.
    """

    def __init__(self, input_size, output_size, device, hidden_dim=128, num_heads=2, dim_feedforward=2048, dim_k=96,
                 dim_v=96, dim_q=96, max_length=43):
        super().__init__()
        assert hidden_dim % num_heads == 0

        self.num_heads = num_heads
        self.word_embedding_dim = hidden_dim
        self.hidden_dim = hidden_dim
        self.dim_feedforward = dim_feedforward
        self.max_length = max_length
        self.input_size = input_size
        self.output_size = output_size
        self.device = device
        self.dim_k = dim_k
        self.dim_v = dim_v
        self.dim_q = dim_q

        seed_torch(0)

        # Deliverable 1: the token embedding `embeddingL` (input_size -> hidden_dim) and the
        # learned position embedding `posembeddingL` (max_length -> hidden_dim).
        # BEGIN SOLUTION stub: pass
        self.embeddingL = nn.Embedding(input_size, hidden_dim)
        self.posembeddingL = nn.Embedding(max_length, hidden_dim)
        # END SOLUTION

        # Deliverable 2: the layers of two attention heads (given).
        self.k1 = nn.Linear(self.hidden_dim, self.dim_k)
        self.v1 = nn.Linear(self.hidden_dim, self.dim_v)
        self.q1 = nn.Linear(self.hidden_dim, self.dim_q)

        self.k2 = nn.Linear(self.hidden_dim, self.dim_k)
        self.v2 = nn.Linear(self.hidden_dim, self.dim_v)
        self.q2 = nn.Linear(self.hidden_dim, self.dim_q)

        self.softmax = nn.Softmax(dim=2)
        self.attention_head_projection = nn.Linear(self.dim_v * self.num_heads, self.hidden_dim)
        self.norm_mh = nn.LayerNorm(self.hidden_dim)

        # Deliverable 3: the feed-forward layer: Linear(hidden_dim, dim_feedforward), ReLU,
        # Linear(dim_feedforward, hidden_dim), and its LayerNorm(hidden_dim).
        # BEGIN SOLUTION stub: pass
        self.ff_in = nn.Linear(hidden_dim, dim_feedforward)
        self.ff_relu = nn.ReLU()
        self.ff_out = nn.Linear(dim_feedforward, hidden_dim)
        self.norm_ff = nn.LayerNorm(hidden_dim)
        # END SOLUTION

        # Deliverable 4: the final layer, Linear(hidden_dim, output_size).
        # BEGIN SOLUTION stub: pass
        self.final = nn.Linear(hidden_dim, output_size)
        # END SOLUTION

    def forward(self, inputs):
        """(B, T) token ids -> (B, T, output_size) scores (not normalised)."""
        # BEGIN SOLUTION
        return self.final_layer(self.feedforward_layer(self.multi_head_attention(self.embed(inputs))))
        # END SOLUTION

    def embed(self, inputs):
        """(B, T) token ids -> (B, T, hidden_dim): token embedding plus the embedding of each position 0..T-1."""
        # BEGIN SOLUTION
        T = inputs.shape[1]
        positions = torch.arange(T, device=inputs.device)  # (T,)
        return self.embeddingL(inputs) + self.posembeddingL(positions).unsqueeze(0)  # (B, T, H)
        # END SOLUTION

    def multi_head_attention(self, inputs):
        """(B, T, hidden_dim) -> (B, T, hidden_dim).

        Each head h computes softmax(Q_h K_h^T / sqrt(dim_k)) V_h; the heads are concatenated
        (head 1 first), projected by `attention_head_projection`, added to the inputs and
        normalised by `norm_mh`.
        """
        # BEGIN SOLUTION
        heads = []
        for k, v, q in ((self.k1, self.v1, self.q1), (self.k2, self.v2, self.q2)):
            scores = q(inputs) @ k(inputs).transpose(1, 2) / self.dim_k ** 0.5  # (B, T, T)
            heads.append(self.softmax(scores) @ v(inputs))  # (B, T, dim_v)
        attended = self.attention_head_projection(torch.cat(heads, dim=2))  # (B, T, H)
        return self.norm_mh(inputs + attended)
        # END SOLUTION

    def feedforward_layer(self, inputs):
        """(B, T, hidden_dim) -> (B, T, hidden_dim): LayerNorm(inputs + Linear(ReLU(Linear(inputs))))."""
        # BEGIN SOLUTION
        return self.norm_ff(inputs + self.ff_out(self.ff_relu(self.ff_in(inputs))))
        # END SOLUTION

    def final_layer(self, inputs):
        """(B, T, hidden_dim) -> (B, T, output_size) scores."""
        # BEGIN SOLUTION
        return self.final(inputs)
        # END SOLUTION


class FullTransformerTranslator(nn.Module):
    """`nn.Transformer` between learned source/target embeddings and a linear output layer."""

    def __init__(self, input_size, output_size, device, hidden_dim=128, num_heads=2, dim_feedforward=2048,
                 num_layers_enc=2, num_layers_dec=2, dropout=0.2, max_length=43, ignore_index=1):
        super().__init__()
        self.num_heads = num_heads
        self.word_embedding_dim = hidden_dim
        self.hidden_dim = hidden_dim
        self.dim_feedforward = dim_feedforward
        self.max_length = max_length
        self.input_size = input_size
        self.output_size = output_size
        self.device = device
        self.pad_idx = ignore_index

        seed_torch(0)

        # Create, in this order: nn.Transformer (d_model=hidden_dim, nhead=num_heads, the given
        # layer counts, dim_feedforward, dropout, batch_first=True); the embeddings
        # `srcembeddingL` (input_size), `tgtembeddingL` (output_size), `srcposembeddingL` and
        # `tgtposembeddingL` (max_length), all into hidden_dim; the output Linear(hidden_dim, output_size).
        # BEGIN SOLUTION stub: pass
        self.transformer = nn.Transformer(d_model=hidden_dim, nhead=num_heads, num_encoder_layers=num_layers_enc,
                                          num_decoder_layers=num_layers_dec, dim_feedforward=dim_feedforward,
                                          dropout=dropout, batch_first=True)
        self.srcembeddingL = nn.Embedding(input_size, hidden_dim)
        self.tgtembeddingL = nn.Embedding(output_size, hidden_dim)
        self.srcposembeddingL = nn.Embedding(max_length, hidden_dim)
        self.tgtposembeddingL = nn.Embedding(max_length, hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, output_size)
        # END SOLUTION

    def forward(self, src, tgt):
        """Scores for every target position.

        Args:
            src: (B, T) source token ids; tgt: (B, T) target token ids.

        Returns:
            (B, T, output_size). The decoder reads `add_start_token(tgt)` (tgt shifted right
            behind a start token) under a causal mask, so position t sees target tokens before
            t only; padding (`ignore_index`) of source and shifted target is masked out.
        """
        # BEGIN SOLUTION
        tgt = self.add_start_token(tgt)
        T_src, T_tgt = src.shape[1], tgt.shape[1]
        src_pos = torch.arange(T_src, device=src.device)
        tgt_pos = torch.arange(T_tgt, device=tgt.device)
        src_emb = self.srcembeddingL(src) + self.srcposembeddingL(src_pos)  # (B, T, H)
        tgt_emb = self.tgtembeddingL(tgt) + self.tgtposembeddingL(tgt_pos)  # (B, T, H)
        # True above the diagonal: position t may not attend to later positions
        causal = torch.triu(torch.ones(T_tgt, T_tgt, dtype=torch.bool, device=tgt.device), diagonal=1)  # (T, T)
        out = self.transformer(src_emb, tgt_emb, tgt_mask=causal, src_key_padding_mask=src == self.pad_idx,
                               tgt_key_padding_mask=tgt == self.pad_idx)
        return self.output_layer(out)  # (B, T, V)
        # END SOLUTION

    def generate_translation(self, src):
        """Greedy translation, one target position at a time.

        Args:
            src: (B, T) source token ids.

        Returns:
            (B, T, output_size): at step t the model is run on the tokens chosen at steps
            0..t-1 and its scores at position t are kept; their arg-max becomes token t.
        """
        # BEGIN SOLUTION
        B, T = src.shape
        tgt = torch.full((B, T), self.pad_idx, dtype=torch.long, device=src.device)  # (B, T), filled as we go
        outputs = torch.zeros(B, T, self.output_size, device=src.device)  # (B, T, V)
        for t in range(T):
            scores = self.forward(src, tgt)  # (B, T, V)
            outputs[:, t] = scores[:, t]
            tgt[:, t] = scores[:, t].argmax(dim=-1)
        return outputs
        # END SOLUTION

    def add_start_token(self, batch_sequences, start_token=2):
        """Shift each row right by one and put `start_token` in front (the last token drops off).

        A batch whose first two columns are already both `start_token` is taken as shifted
        and returned unchanged. E.g. [[2, 5, 6, 7]] -> [[2, 2, 5, 6]], and [[2, 2, 5, 6]] stays.
        """
        if batch_sequences.shape[1] >= 2 and bool((batch_sequences[:, :2] == start_token).all()):
            return batch_sequences
        starts = torch.full_like(batch_sequences[:, :1], start_token)  # (B, 1)
        return torch.cat((starts, batch_sequences[:, :-1]), dim=1)  # (B, T)


def seed_torch(seed=0):
    """Seed every random generator a model's initial weights can come from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
