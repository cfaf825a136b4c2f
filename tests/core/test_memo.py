"""The bounded tensor memo: made once per key, dropped least recently used past its
byte budget, a view counted by its whole storage."""

from __future__ import annotations

import threading

import torch

from core.memo import TensorMemo


def test_a_kept_value_is_made_once():
    memo: TensorMemo[torch.Tensor] = TensorMemo(budget=1 << 20)
    made: list[str] = []

    def make(key: str):
        def go() -> torch.Tensor:
            made.append(key)
            return torch.zeros(4)

        return go

    first = memo.get("a", make("a"))
    assert memo.get("a", make("a")) is first and made == ["a"]
    memo.get("b", make("b"))
    assert made == ["a", "b"] and len(memo) == 2 and memo.nbytes == 32


def test_the_least_recently_used_go_past_the_budget():
    memo: TensorMemo[torch.Tensor] = TensorMemo(budget=100)  # three 32-byte tensors
    for key in "abc":
        memo.get(key, lambda: torch.zeros(8))
    memo.get("a", lambda: torch.ones(8))  # a is now the most recent
    memo.get("d", lambda: torch.zeros(8))  # b goes
    remade: list[str] = []
    for key in "acd":
        memo.get(key, lambda k=key: remade.append(k) or torch.zeros(8))
    assert remade == [] and len(memo) == 3 and memo.nbytes == 96
    memo.get("b", lambda: torch.zeros(8))  # a, the least recently asked for, goes
    assert len(memo) == 3 and memo.nbytes == 96
    assert memo.get("a", lambda: torch.full((8,), 7.0))[0] == 7.0


def test_the_newest_is_kept_even_over_the_budget_and_a_view_counts_its_storage():
    memo: TensorMemo[torch.Tensor] = TensorMemo(budget=64)
    base = torch.zeros(100, 10)
    view = memo.get("view", lambda: base[:, :1])  # 100 numbers shown, 1000 kept alive
    assert memo.nbytes == 4000 and len(memo) == 1 and memo.get("view", torch.ones) is view
    memo.get("small", lambda: torch.zeros(2))
    assert len(memo) == 1 and memo.nbytes == 8


def test_threads_share_one_memo():
    memo: TensorMemo[torch.Tensor] = TensorMemo(budget=1 << 20)
    out: list[torch.Tensor] = []

    def ask() -> None:
        for i in range(50):
            out.append(memo.get(i % 5, lambda i=i: torch.full((3,), float(i % 5))))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 200 and len(memo) == 5 and memo.nbytes == 5 * 12
    assert all(float(t[0]) == i % 5 for i, t in zip(list(range(50)) * 4, out))
