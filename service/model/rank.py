"""A reranker's classification head: hidden state of the last token -> relevance score.

llama.cpp's rank pooling: with `cls.weight` (and `cls.bias`) a dense layer and tanh first,
then `cls.output.weight` (and `cls.output.bias`); either alone is enough. The score is the
head's first output. Decoder models read the last token (the end of the pair prompt).
"""

from __future__ import annotations

import numpy as np

from kernels.dequant import dequantize


class RankHead:
    def __init__(self, dense, dense_b, out, out_b):
        self.dense, self.dense_b, self.out, self.out_b = dense, dense_b, out, out_b

    @classmethod
    def from_model(cls, model) -> RankHead | None:
        """The head from the GGUF file, or None when the model has none."""
        f = model.file

        def get(name):
            if name not in f.tensors:
                return None
            t = f.tensors[name]
            a = np.asarray(dequantize(f.data(name), t.qtype), np.float32)
            return a.reshape(t.shape[1], t.shape[0]) if len(t.shape) == 2 else a.ravel()  # (n_out, n_in) / (n)

        dense, out = get("cls.weight"), get("cls.output.weight")
        if dense is None and out is None:
            return None
        return cls(dense, get("cls.bias"), out, get("cls.output.bias"))

    def score(self, h: np.ndarray) -> float:
        """h: float32 (n_embd,) final-norm hidden state of the last token."""
        x = h.astype(np.float32)
        if self.dense is not None:
            x = self.dense @ x
            if self.dense_b is not None:
                x = x + self.dense_b
            x = np.tanh(x)
        if self.out is not None:
            x = self.out @ x
            if self.out_b is not None:
                x = x + self.out_b
        return float(np.ravel(x)[0])
