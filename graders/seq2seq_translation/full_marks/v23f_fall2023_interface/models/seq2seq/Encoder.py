"""The encoder of the sequence-to-sequence translator."""

import torch
import torch.nn as nn


class Encoder(nn.Module):
    """Embeds a source sentence and runs a recurrent layer over it.

    Besides the per-position outputs it returns a hidden state already mapped to the
    decoder's size, so that the decoder can start from it.
    """

    def __init__(self, input_size, emb_size, encoder_hidden_size, decoder_hidden_size, dropout=0.2, model_type="RNN"):
        super().__init__()
        self.input_size = input_size
        self.emb_size = emb_size
        self.encoder_hidden_size = encoder_hidden_size
        self.decoder_hidden_size = decoder_hidden_size
        self.model_type = model_type

        # Create, in this order:
        #   1. an embedding of the source vocabulary (input_size) into emb_size;
        #   2. nn.RNN or nn.LSTM (by model_type), emb_size -> encoder_hidden_size, batch_first=True;
        #   3. Linear(encoder_hidden, encoder_hidden), ReLU, Linear(encoder_hidden, decoder_hidden);
        #   4. a dropout layer with probability `dropout`.
        self.embedding = nn.Embedding(self.input_size, self.emb_size)
        if self.model_type == "RNN":
            self.recurrent = nn.RNN(self.emb_size, self.encoder_hidden_size, batch_first=True)
        else:
            self.recurrent = nn.LSTM(self.emb_size, self.encoder_hidden_size, batch_first=True)
        self.fc1 = nn.Linear(self.encoder_hidden_size, self.encoder_hidden_size)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(self.encoder_hidden_size, self.decoder_hidden_size)
        self.drop = nn.Dropout(dropout)

    def forward(self, input):
        """Encode a batch of source sentences.

        Args:
            input: (B, T) token ids.

        Returns:
            output: (B, T, encoder_hidden_size), the recurrent layer's outputs.
            hidden: (1, B, decoder_hidden_size) = tanh(Linear(ReLU(Linear(last hidden)))).
                For an LSTM, hidden is the pair (that h, c) with the cell state c returned
                exactly as the LSTM produced it.
        """
        x = self.drop(self.embedding(input))
        output, hidden = self.recurrent(x)
        if self.model_type == "LSTM":
            h, c = hidden
            h = torch.tanh(self.fc2(self.act(self.fc1(h))))
            hidden = (h, c)
        else:
            hidden = torch.tanh(self.fc2(self.act(self.fc1(hidden))))
        return output, hidden
