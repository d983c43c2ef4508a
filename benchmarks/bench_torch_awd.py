"""fastai's AWD-LSTM encoder in PyTorch, for the LM and classifier benchmarks' baselines.

Built from `torch.nn.LSTM`'s kernel (`torch._VF.lstm`, the call `nn.LSTM` makes) with fastai's
dropouts: embedding dropout over vocabulary rows, locked (variational) dropout on the input and
between layers, and weight dropout on each `W_hh`, drawn once per call. With
`weight_dropout=False` each layer is the `nn.LSTM` module's own call instead (its flattened
cuDNN weights, no weight dropout): the fastest PyTorch can run the recurrence, for the GPU check's
"no weight dropout" rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TorchAWDEncoder:
    emb: Any  # torch.nn.Parameter [vocab, emb]
    layers: list  # torch.nn.LSTM per layer
    dims: list[tuple[int, int]]
    device: Any
    weight_dropout: bool = True

    def parameters(self) -> list:
        return [self.emb] + [w for lstm in self.layers for w in lstm.parameters()]

    def zero_hidden(self, batch: int) -> list:
        import torch

        return [
            (
                torch.zeros(1, batch, n, device=self.device),
                torch.zeros(1, batch, n, device=self.device),
            )
            for _, n in self.dims
        ]

    def __call__(self, tokens, hidden: list, p: dict) -> tuple[Any, list]:
        """One forward over `tokens` [batch, time]: (last layer's output, detached new hidden)."""
        import torch

        F = torch.nn.functional
        vocab = self.emb.size(0)
        row_mask = self.emb.new_empty(vocab, 1).bernoulli_(1 - p["embed_p"]) / (1 - p["embed_p"])
        x = locked_dropout(F.embedding(tokens, self.emb * row_mask), p["input_p"])
        new_hidden = []
        for layer, lstm in enumerate(self.layers):
            if not self.weight_dropout:
                x, (h, c) = lstm(x, hidden[layer])
                new_hidden.append((h.detach(), c.detach()))
                if layer != len(self.layers) - 1:
                    x = locked_dropout(x, p["hidden_p"])
                continue
            w_hh = F.dropout(lstm.weight_hh_l0, p["weight_p"])
            weights = [lstm.weight_ih_l0, w_hh, lstm.bias_ih_l0, lstm.bias_hh_l0]
            x, h, c = torch._VF.lstm(x, hidden[layer], weights, True, 1, 0.0, True, False, True)
            new_hidden.append((h.detach(), c.detach()))
            if layer != len(self.layers) - 1:
                x = locked_dropout(x, p["hidden_p"])
        return x, new_hidden


def make_encoder(
    torch, dev, vocab: int, emb_sz: int, dims: list[tuple[int, int]], weight_dropout: bool = True
):
    emb = torch.nn.Parameter(torch.empty(vocab, emb_sz, device=dev).uniform_(-0.1, 0.1))
    layers = [torch.nn.LSTM(n_in, n_out, batch_first=True).to(dev) for n_in, n_out in dims]
    return TorchAWDEncoder(emb, layers, dims, dev, weight_dropout)


def locked_dropout(x, prob: float):
    """fastai's RNNDropout: one mask per sequence and feature, shared over time."""
    return x * (x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - prob) / (1 - prob))
