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
        # BEGIN SOLUTION stub: pass
        # input gate
        self.W_ii = nn.Parameter(torch.empty(input_size, hidden_size))
        self.b_ii = nn.Parameter(torch.empty(hidden_size))
        self.W_hi = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.b_hi = nn.Parameter(torch.empty(hidden_size))
        # forget gate
        self.W_if = nn.Parameter(torch.empty(input_size, hidden_size))
        self.b_if = nn.Parameter(torch.empty(hidden_size))
        self.W_hf = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.b_hf = nn.Parameter(torch.empty(hidden_size))
        # candidate cell (g)
        self.W_ig = nn.Parameter(torch.empty(input_size, hidden_size))
        self.b_ig = nn.Parameter(torch.empty(hidden_size))
        self.W_hg = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.b_hg = nn.Parameter(torch.empty(hidden_size))
        # output gate
        self.W_io = nn.Parameter(torch.empty(input_size, hidden_size))
        self.b_io = nn.Parameter(torch.empty(hidden_size))
        self.W_ho = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.b_ho = nn.Parameter(torch.empty(hidden_size))
        # END SOLUTION

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
        # BEGIN SOLUTION
        B, T, _ = x.shape
        h_t = x.new_zeros(B, self.hidden_size)  # (B, H)
        c_t = x.new_zeros(B, self.hidden_size)  # (B, H)
        for t in range(T):
            x_t = x[:, t, :]  # (B, input_size)
            i_t = torch.sigmoid(x_t @ self.W_ii + self.b_ii + h_t @ self.W_hi + self.b_hi)
            f_t = torch.sigmoid(x_t @ self.W_if + self.b_if + h_t @ self.W_hf + self.b_hf)
            g_t = torch.tanh(x_t @ self.W_ig + self.b_ig + h_t @ self.W_hg + self.b_hg)
            o_t = torch.sigmoid(x_t @ self.W_io + self.b_io + h_t @ self.W_ho + self.b_ho)
            c_t = f_t * c_t + i_t * g_t
            h_t = o_t * torch.tanh(c_t)
        return h_t, c_t
        # END SOLUTION
