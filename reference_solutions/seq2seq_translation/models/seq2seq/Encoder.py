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
        # BEGIN SOLUTION stub: pass
        self.embedding = nn.Embedding(input_size, emb_size)
        if model_type == "RNN":
            self.rnn = nn.RNN(emb_size, encoder_hidden_size, batch_first=True)
        else:
            self.rnn = nn.LSTM(emb_size, encoder_hidden_size, batch_first=True)
        self.linear1 = nn.Linear(encoder_hidden_size, encoder_hidden_size)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(encoder_hidden_size, decoder_hidden_size)
        self.dropout = nn.Dropout(dropout)
        # END SOLUTION

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
        # BEGIN SOLUTION
        embedded = self.dropout(self.embedding(input))  # (B, T, emb)
        output, hidden = self.rnn(embedded)  # (B, T, enc_h), (1, B, enc_h) or a pair of them
        if self.model_type == "RNN":
            hidden = torch.tanh(self.linear2(self.relu(self.linear1(hidden))))  # (1, B, dec_h)
        else:
            h, c = hidden
            hidden = (torch.tanh(self.linear2(self.relu(self.linear1(h)))), c)
        return output, hidden
        # END SOLUTION
