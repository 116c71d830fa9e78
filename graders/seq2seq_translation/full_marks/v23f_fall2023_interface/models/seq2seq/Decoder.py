"""The decoder of the sequence-to-sequence translator, in the Fall 2023 / Summer 2024 style.

That term's Decoder takes no `attention` argument in __init__ and creates no attention layer:
`forward` receives the flag, and with attention the recurrent state (h, and c for an LSTM) is
replaced by the attention-weighted sum of the encoder outputs before the recurrent step.
"""

import torch
import torch.nn as nn


class Decoder(nn.Module):
    def __init__(self, emb_size, encoder_hidden_size, decoder_hidden_size, output_size, dropout=0.2, model_type="RNN"):
        super(Decoder, self).__init__()
        self.emb_size = emb_size
        self.encoder_hidden_size = encoder_hidden_size
        self.decoder_hidden_size = decoder_hidden_size
        self.output_size = output_size
        self.model_type = model_type

        self.embedding = nn.Embedding(output_size, emb_size)
        if model_type == "RNN":
            self.recurrent = nn.RNN(emb_size, decoder_hidden_size, batch_first=True)
        else:
            self.recurrent = nn.LSTM(emb_size, decoder_hidden_size, batch_first=True)
        self.linear = nn.Linear(decoder_hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)
        self.dropout = nn.Dropout(dropout)

    def compute_attention(self, hidden, encoder_outputs):
        # hidden (1, B, H), encoder_outputs (B, T, H) -> attention (B, 1, T)
        q = hidden.transpose(0, 1)
        num = torch.bmm(q, encoder_outputs.transpose(1, 2))
        den = torch.norm(q, dim=2, keepdim=True) * torch.norm(encoder_outputs, dim=2).unsqueeze(1)
        return torch.softmax(num / den, dim=2)

    def forward(self, input, hidden, encoder_outputs=None, attention=False):
        embedded = self.dropout(self.embedding(input))
        if attention:
            if self.model_type == "LSTM":
                h, c = hidden
                h = torch.bmm(self.compute_attention(h, encoder_outputs), encoder_outputs).transpose(0, 1)
                c = torch.bmm(self.compute_attention(c, encoder_outputs), encoder_outputs).transpose(0, 1)
                hidden = (h, c)
            else:
                hidden = torch.bmm(self.compute_attention(hidden, encoder_outputs), encoder_outputs).transpose(0, 1)
        output, hidden = self.recurrent(embedded, hidden)
        output = self.softmax(self.linear(output[:, 0, :]))
        return output, hidden
