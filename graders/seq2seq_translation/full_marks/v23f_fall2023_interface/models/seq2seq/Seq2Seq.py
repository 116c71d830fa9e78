"""The sequence-to-sequence model, in the Fall 2023 / Summer 2024 style (attention given to Seq2Seq)."""

import torch
import torch.nn as nn


class Seq2Seq(nn.Module):
    def __init__(self, encoder, decoder, device, attention=False):
        super(Seq2Seq, self).__init__()
        self.device = device
        self.encoder = encoder.to(device)
        self.decoder = decoder.to(device)
        self.attention = attention

    def forward(self, source, out_seq_len=None):
        batch_size = source.shape[0]
        if out_seq_len is None:
            out_seq_len = source.shape[1]
        outputs = torch.zeros(batch_size, out_seq_len, self.decoder.output_size, device=source.device)
        encoder_outputs, hidden = self.encoder(source)
        input = source[:, 0].unsqueeze(1)
        for t in range(out_seq_len):
            output, hidden = self.decoder(input, hidden, encoder_outputs, attention=self.attention)
            outputs[:, t, :] = output
            input = output.argmax(1).unsqueeze(1)
        return outputs
