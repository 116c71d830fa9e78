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
        self.embeddingL = nn.Embedding(self.input_size, self.hidden_dim)
        self.posembeddingL = nn.Embedding(self.max_length, self.hidden_dim)

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
        self.linear1 = nn.Linear(self.hidden_dim, self.dim_feedforward)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(self.dim_feedforward, self.hidden_dim)
        self.layernorm = nn.LayerNorm(self.hidden_dim)

        # Deliverable 4: the final layer, Linear(hidden_dim, output_size).
        self.fc_out = nn.Linear(self.hidden_dim, self.output_size)

    def forward(self, inputs):
        """(B, T) token ids -> (B, T, output_size) scores (not normalised)."""
        embeddings = self.embed(inputs)
        attention = self.multi_head_attention(embeddings)
        ff = self.feedforward_layer(attention)
        outputs = self.final_layer(ff)
        return outputs

    def embed(self, inputs):
        """(B, T) token ids -> (B, T, hidden_dim): token embedding plus the embedding of each position 0..T-1."""
        pos = torch.arange(0, inputs.shape[1]).unsqueeze(0).repeat(inputs.shape[0], 1).to(inputs.device)
        embeddings = self.embeddingL(inputs) + self.posembeddingL(pos)
        return embeddings

    def multi_head_attention(self, inputs):
        """(B, T, hidden_dim) -> (B, T, hidden_dim).

        Each head h computes softmax(Q_h K_h^T / sqrt(dim_k)) V_h; the heads are concatenated
        (head 1 first), projected by `attention_head_projection`, added to the inputs and
        normalised by `norm_mh`.
        """
        q1, k1, v1 = self.q1(inputs), self.k1(inputs), self.v1(inputs)
        q2, k2, v2 = self.q2(inputs), self.k2(inputs), self.v2(inputs)
        att1 = self.softmax(torch.bmm(q1, k1.permute(0, 2, 1)) / np.sqrt(self.dim_k))
        att2 = self.softmax(torch.bmm(q2, k2.permute(0, 2, 1)) / np.sqrt(self.dim_k))
        head1 = torch.bmm(att1, v1)
        head2 = torch.bmm(att2, v2)
        outputs = self.attention_head_projection(torch.cat((head1, head2), dim=2))
        outputs = self.norm_mh(outputs + inputs)
        return outputs

    def feedforward_layer(self, inputs):
        """(B, T, hidden_dim) -> (B, T, hidden_dim): LayerNorm(inputs + Linear(ReLU(Linear(inputs))))."""
        out = self.linear2(self.relu(self.linear1(inputs)))
        outputs = self.layernorm(out + inputs)
        return outputs

    def final_layer(self, inputs):
        """(B, T, hidden_dim) -> (B, T, output_size) scores."""
        outputs = self.fc_out(inputs)
        return outputs


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
        self.transformer = nn.Transformer(d_model=self.hidden_dim, nhead=self.num_heads, num_encoder_layers=num_layers_enc,
                                          num_decoder_layers=num_layers_dec, dim_feedforward=self.dim_feedforward,
                                          dropout=dropout, batch_first=True)
        self.srcembeddingL = nn.Embedding(self.input_size, self.hidden_dim)
        self.tgtembeddingL = nn.Embedding(self.output_size, self.hidden_dim)
        self.srcposembeddingL = nn.Embedding(self.max_length, self.hidden_dim)
        self.tgtposembeddingL = nn.Embedding(self.max_length, self.hidden_dim)
        self.fc = nn.Linear(self.hidden_dim, self.output_size)

    def forward(self, src, tgt):
        """Scores for every target position.

        Args:
            src: (B, T) source token ids; tgt: (B, T) target token ids.

        Returns:
            (B, T, output_size). The decoder reads `add_start_token(tgt)` (tgt shifted right
            behind a start token) under a causal mask, so position t sees target tokens before
            t only; padding (`ignore_index`) of source and shifted target is masked out.
        """
        tgt = self.add_start_token(tgt)
        src_pos = torch.arange(src.shape[1], device=src.device).unsqueeze(0).expand(src.shape[0], -1)
        tgt_pos = torch.arange(tgt.shape[1], device=src.device).unsqueeze(0).expand(tgt.shape[0], -1)
        src_emb = self.srcembeddingL(src) + self.srcposembeddingL(src_pos)
        tgt_emb = self.tgtembeddingL(tgt) + self.tgtposembeddingL(tgt_pos)
        tgt_mask = self.transformer.generate_square_subsequent_mask(tgt.shape[1]).to(src.device)  # float, -inf above the diagonal
        src_key_padding_mask = (src == self.pad_idx)
        tgt_key_padding_mask = (tgt == self.pad_idx)
        out = self.transformer(src_emb, tgt_emb, tgt_mask=tgt_mask, src_key_padding_mask=src_key_padding_mask,
                               tgt_key_padding_mask=tgt_key_padding_mask)
        outputs = self.fc(out)
        return outputs

    def generate_translation(self, src):
        """Greedy translation, one target position at a time.

        Args:
            src: (B, T) source token ids.

        Returns:
            (B, T, output_size): at step t the model is run on the tokens chosen at steps
            0..t-1 and its scores at position t are kept; their arg-max becomes token t.
        """
        # position 0 stays <sos>; positions 1..T-1 are filled with the model's arg-max, one at a time
        batch_size, seq_len = src.shape
        tgt = torch.full((batch_size, seq_len), self.pad_idx, dtype=torch.long, device=src.device)
        tgt[:, 0] = 2
        outputs = torch.zeros(batch_size, seq_len, self.output_size, device=src.device)
        for t in range(1, seq_len):
            out = self.forward(src, tgt)
            outputs[:, t] = out[:, t]
            tgt[:, t] = out[:, t].argmax(dim=-1)
        return outputs

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
