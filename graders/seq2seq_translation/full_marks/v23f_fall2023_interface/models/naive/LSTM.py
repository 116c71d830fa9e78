"""A long short-term memory layer built from raw parameters.

The gates follow the usual equations with weights applied on the right (x @ W):

    i_t = sigmoid(x_t W_ii + b_ii + h_{t-1} W_hi + b_hi)
    f_t = sigmoid(x_t W_if + b_if + h_{t-1} W_hf + b_hf)
    g_t = tanh(x_t W_ig + b_ig + h_{t-1} W_hg + b_hg)
    o_t = sigmoid(x_t W_io + b_io + h_{t-1} W_ho + b_ho)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)
"""

import torch
import torch.nn as nn


class LSTM(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

        # For each gate, in the order i, f, g, o, create with nn.Parameter: the input weight
        # (input_size, hidden_size), its bias (hidden_size,), the hidden weight
        # (hidden_size, hidden_size) and its bias (hidden_size,), in that order.
        # init_hidden() below fills them in, so their initial values do not matter here.
        # i_t: input gate
        self.Wii = nn.Parameter(torch.Tensor(input_size, hidden_size))
        self.bii = nn.Parameter(torch.Tensor(hidden_size))
        self.Whi = nn.Parameter(torch.Tensor(hidden_size, hidden_size))
        self.bhi = nn.Parameter(torch.Tensor(hidden_size))
        # f_t: the forget gate
        self.Wif = nn.Parameter(torch.Tensor(input_size, hidden_size))
        self.bif = nn.Parameter(torch.Tensor(hidden_size))
        self.Whf = nn.Parameter(torch.Tensor(hidden_size, hidden_size))
        self.bhf = nn.Parameter(torch.Tensor(hidden_size))
        # g_t: the cell gate
        self.Wig = nn.Parameter(torch.Tensor(input_size, hidden_size))
        self.big = nn.Parameter(torch.Tensor(hidden_size))
        self.Whg = nn.Parameter(torch.Tensor(hidden_size, hidden_size))
        self.bhg = nn.Parameter(torch.Tensor(hidden_size))
        # o_t: the output gate
        self.Wio = nn.Parameter(torch.Tensor(input_size, hidden_size))
        self.bio = nn.Parameter(torch.Tensor(hidden_size))
        self.Who = nn.Parameter(torch.Tensor(hidden_size, hidden_size))
        self.bho = nn.Parameter(torch.Tensor(hidden_size))

        self.init_hidden()

    def init_hidden(self):
        """Re-initialise every parameter: xavier-uniform matrices, zero vectors."""
        for p in self.parameters():
            if p.data.ndimension() >= 2:
                nn.init.xavier_uniform_(p.data)
            else:
                nn.init.zeros_(p.data)

    def forward(self, x):
        """Run the layer over a whole sequence, starting from zero states.

        Args:
            x: (B, T, input_size).

        Returns:
            (h_t, c_t): the hidden and cell states after the last step, each (B, hidden_size).
        """
        h_t, c_t = None, None
        bs, seq_sz, _ = x.size()
        h_t = torch.zeros(bs, self.hidden_size).to(x.device)
        c_t = torch.zeros(bs, self.hidden_size).to(x.device)
        for t in range(seq_sz):
            x_t = x[:, t, :]
            i_t = torch.sigmoid(torch.matmul(x_t, self.Wii) + self.bii + torch.matmul(h_t, self.Whi) + self.bhi)
            f_t = torch.sigmoid(torch.matmul(x_t, self.Wif) + self.bif + torch.matmul(h_t, self.Whf) + self.bhf)
            g_t = torch.tanh(torch.matmul(x_t, self.Wig) + self.big + torch.matmul(h_t, self.Whg) + self.bhg)
            o_t = torch.sigmoid(torch.matmul(x_t, self.Wio) + self.bio + torch.matmul(h_t, self.Who) + self.bho)
            c_t = f_t * c_t + i_t * g_t
            h_t = o_t * torch.tanh(c_t)
        return (h_t, c_t)
