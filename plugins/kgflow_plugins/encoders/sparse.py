"""Sparse products over a fixed edge pattern, with gradients to the dense side.

KGAT and KGIN multiply a sparse matrix whose pattern never changes (the graph) and whose values
change at most once per epoch (attention) with the node embeddings, once per training batch. A
CSR product is the fastest way on CPUs; its backward needs the transpose, which is precomputed
here once, so no dense ``N x N`` matrix ever exists.
"""
from __future__ import annotations

import warnings

import torch


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": only its matmul is used
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape)


class _FixedSpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transpose: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.transpose = transpose
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, None, ctx.transpose @ grad


class FixedPattern(torch.nn.Module):
    """The edges ``row -> col`` of an ``n_rows x n_cols`` matrix, stored in CSR order, plus the
    permutation to the transpose's CSR order. Values passed to :meth:`matmul` are in CSR order
    (:attr:`order` maps input edges to it)."""

    def __init__(self, row: torch.Tensor, col: torch.Tensor, n_rows: int, n_cols: int) -> None:
        super().__init__()
        self.shape = (n_rows, n_cols)
        order = torch.argsort(row * n_cols + col, stable=True)
        row_s, col_s = row[order], col[order]
        t_order = torch.argsort(col_s * n_rows + row_s, stable=True)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("row", row_s, persistent=False)
        self.register_buffer("col", col_s, persistent=False)
        self.register_buffer("crow", self._pointers(row_s, n_rows), persistent=False)
        self.register_buffer("t_order", t_order, persistent=False)
        self.register_buffer("t_col", row_s[t_order], persistent=False)
        self.register_buffer("t_crow", self._pointers(col_s[t_order], n_cols), persistent=False)

    @staticmethod
    def _pointers(sorted_rows: torch.Tensor, n: int) -> torch.Tensor:
        counts = torch.bincount(sorted_rows, minlength=n)
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def __len__(self) -> int:
        return len(self.row)

    def matmul(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for ``A`` with these (constant, CSR-ordered) values; gradient flows to ``x``."""
        values = values.detach().to(x.dtype)
        matrix = _csr(self.crow, self.col, values, self.shape)
        transpose = _csr(self.t_crow, self.t_col, values[self.t_order], (self.shape[1], self.shape[0]))
        return _FixedSpMM.apply(matrix, transpose, x)

    def row_softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax of CSR-ordered edge scores over each row's edges."""
        n = self.shape[0]
        top = torch.full((n,), float("-inf"), dtype=scores.dtype, device=scores.device)
        top = top.scatter_reduce(0, self.row, scores, reduce="amax", include_self=True)
        exp = (scores - top[self.row]).exp()
        total = torch.zeros(n, dtype=scores.dtype, device=scores.device).index_add_(0, self.row, exp)
        return exp / total[self.row]


CHUNK = 1 << 15  # facts per step: bounds the per-fact temporaries to CHUNK x d floats


class _RelationalMean(torch.autograd.Function):
    """``out[h] = mean over facts (h, r, t) of x[t] * rel[r]`` without keeping the per-fact
    products for the backward pass (they are recomputed, a chunk of facts at a time): KGIN's
    aggregation in memory proportional to the nodes, not the facts."""

    @staticmethod
    def forward(ctx, x, rel, head, tail, etype, scale, n_out):  # type: ignore[override]
        out = x.new_zeros(n_out, x.shape[1])
        for lo in range(0, len(head), CHUNK):
            hi = lo + CHUNK
            message = x.index_select(0, tail[lo:hi])
            message.mul_(rel.index_select(0, etype[lo:hi]))
            out.index_add_(0, head[lo:hi], message)
        out.mul_(scale)
        ctx.save_for_backward(x, rel, head, tail, etype, scale)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, rel, head, tail, etype, scale = ctx.saved_tensors
        grad = grad * scale
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        grad_rel = torch.zeros_like(rel) if ctx.needs_input_grad[1] else None
        for lo in range(0, len(head), CHUNK):
            hi = lo + CHUNK
            per_fact = grad.index_select(0, head[lo:hi])
            if grad_x is not None:
                grad_x.index_add_(0, tail[lo:hi], per_fact * rel.index_select(0, etype[lo:hi]))
            if grad_rel is not None:
                per_fact.mul_(x.index_select(0, tail[lo:hi]))
                grad_rel.index_add_(0, etype[lo:hi], per_fact)
        return grad_x, grad_rel, None, None, None, None, None


def relational_mean(x: torch.Tensor, rel: torch.Tensor, head: torch.Tensor, tail: torch.Tensor,
                    etype: torch.Tensor, n_out: int) -> torch.Tensor:
    """For each of ``n_out`` heads, the mean of ``x[tail] * rel[type]`` over its facts (0 if none)."""
    count = torch.bincount(head, minlength=n_out).clamp(min=1).to(x.dtype).unsqueeze(1)
    return _RelationalMean.apply(x, rel, head, tail, etype, 1.0 / count, n_out)
