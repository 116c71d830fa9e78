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
        # BEGIN SOLUTION stub: pass
        self.embedding = nn.Embedding(output_size, emb_size)
        if model_type == "RNN":
            self.rnn = nn.RNN(emb_size, decoder_hidden_size, batch_first=True)
        else:
            self.rnn = nn.LSTM(emb_size, decoder_hidden_size, batch_first=True)
        self.linear = nn.Linear(decoder_hidden_size, output_size)
        self.log_softmax = nn.LogSoftmax(dim=1)
        self.dropout = nn.Dropout(dropout)
        if attention:
            self.attention_linear = nn.Linear(encoder_hidden_size + emb_size, emb_size)
        # END SOLUTION

    def compute_attention(self, hidden, encoder_outputs):
        """Attention of the decoder state over the encoder outputs.

        Args:
            hidden: (1, B, H), the decoder's hidden state (the query).
            encoder_outputs: (B, T, H), the keys.

        Returns:
            (B, 1, T): softmax over the T positions of the cosine similarity between the
            query and each encoder output.
        """
        # BEGIN SOLUTION
        query = hidden.transpose(0, 1)  # (B, 1, H)
        dots = torch.bmm(query, encoder_outputs.transpose(1, 2))  # (B, 1, T)
        norms = query.norm(dim=2, keepdim=True) * encoder_outputs.norm(dim=2).unsqueeze(1)  # (B, 1, T)
        cosine = dots / norms.clamp_min(1e-8)  # (B, 1, T)
        return torch.softmax(cosine, dim=2)  # (B, 1, T)
        # END SOLUTION

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
        # BEGIN SOLUTION
        embedded = self.dropout(self.embedding(input))  # (B, 1, emb)
        if attention or self.attention:
            query = hidden[0] if self.model_type == "LSTM" else hidden  # (1, B, dec_h); LSTM: h only
            weights = self.compute_attention(query, encoder_outputs)  # (B, 1, T)
            context = torch.bmm(weights, encoder_outputs)  # (B, 1, enc_h)
            embedded = self.attention_linear(torch.cat((context, embedded), dim=2))  # (B, 1, emb)
        output, hidden = self.rnn(embedded, hidden)  # (B, 1, dec_h)
        output = self.log_softmax(self.linear(output[:, 0, :]))  # (B, output_size)
        return output, hidden
        # END SOLUTION
