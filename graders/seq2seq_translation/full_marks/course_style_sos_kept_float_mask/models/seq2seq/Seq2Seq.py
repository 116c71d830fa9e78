"""The sequence-to-sequence translator: an encoder, then a greedy decoding loop."""

import torch
import torch.nn as nn


class Seq2Seq(nn.Module):
    def __init__(self, encoder, decoder, device):
        super().__init__()
        self.device = device
        self.encoder = encoder.to(device)
        self.decoder = decoder.to(device)

    def forward(self, source):
        """Translate a batch greedily.

        Encode `source`, then run the decoder for as many steps as `source` has positions.
        The first decoder input is the start token `source[:, 0]`; every later input is the
        arg-max of the previous step's prediction (no teacher forcing).

        Args:
            source: (B, T) token ids, each row starting with the start token.

        Returns:
            (B, T, output_size): the decoder's log-probabilities at every step.
        """
        batch_size, seq_len = source.shape
        enc_out, hidden = self.encoder(source)
        token = source[:, 0:1]
        outputs = []
        for _ in range(seq_len):
            logp, hidden = self.decoder(token, hidden, enc_out)
            outputs.append(logp)
            token = torch.argmax(logp, dim=-1, keepdim=True)
        return torch.stack(outputs, dim=1)
