"""The decoder of the sequence-to-sequence translator, with optional cosine attention."""

import torch
import torch.nn as nn


class Decoder(nn.Module):
    """Predicts one target token per call from the previous token and the recurrent state."""

    def __init__(self, emb_size, encoder_hidden_size, decoder_hidden_size, output_size, dropout=0.2, model_type="RNN",
                 attention=False):
        super().__init__()
        self.emb_size = emb_size
        self.encoder_hidden_size = encoder_hidden_size
        self.decoder_hidden_size = decoder_hidden_size
        self.output_size = output_size
        self.model_type = model_type
        self.attention = attention

        # Create, in this order:
        #   1. an embedding of the target vocabulary (output_size) into emb_size;
        #   2. nn.RNN or nn.LSTM (by model_type), emb_size -> decoder_hidden_size, batch_first=True;
        #   3. Linear(decoder_hidden_size, output_size) followed by LogSoftmax over the vocabulary;
        #   4. a dropout layer with probability `dropout`;
        #   5. only when `attention`: Linear(encoder_hidden_size + emb_size, emb_size), which maps
        #      [context; embedded input] back to the embedding size.
        self.embedding = nn.Embedding(self.output_size, self.emb_size)
        self.recurrent = (nn.RNN if model_type == "RNN" else nn.LSTM)(self.emb_size, self.decoder_hidden_size, batch_first=True)
        self.out = nn.Linear(self.decoder_hidden_size, self.output_size)
        self.logsoftmax = nn.LogSoftmax(dim=-1)
        self.drop = nn.Dropout(dropout)
        if attention:
            self.attn_combine = nn.Linear(self.encoder_hidden_size + self.emb_size, self.emb_size)

    def compute_attention(self, hidden, encoder_outputs):
        """Attention of the decoder state over the encoder outputs.

        Args:
            hidden: (1, B, H), the decoder's hidden state (the query).
            encoder_outputs: (B, T, H), the keys.

        Returns:
            (B, 1, T): softmax over the T positions of the cosine similarity between the
            query and each encoder output.
        """
        q = hidden.permute(1, 0, 2)  # (B, 1, H)
        sim = torch.nn.functional.cosine_similarity(q, encoder_outputs, dim=-1)  # (B, T)
        attention = torch.softmax(sim, dim=-1).unsqueeze(1)  # (B, 1, T)
        return attention

    def forward(self, input, hidden, encoder_outputs=None, attention=False):
        """One decoding step.

        Args:
            input: (B, 1) token ids of the previous target token.
            hidden: (1, B, decoder_hidden_size), or the pair (h, c) for an LSTM.
            encoder_outputs: (B, T, encoder_hidden_size), needed with attention.
            attention: use attention at this step (as does `attention=True` in __init__).

        Returns:
            output: (B, output_size) log-probabilities of the next token.
            hidden: the new recurrent state, shaped like the one given.
        """
        emb = self.drop(self.embedding(input))
        if attention or self.attention:
            if self.model_type == "LSTM":
                att = self.compute_attention(hidden[0], encoder_outputs)
            else:
                att = self.compute_attention(hidden, encoder_outputs)
            context = att @ encoder_outputs
            emb = self.attn_combine(torch.cat([context, emb], dim=-1))
        out, hidden = self.recurrent(emb, hidden)
        output = self.logsoftmax(self.out(out.squeeze(1)))
        return output, hidden
