"""Passes from a layer: against the whole pass of the same edited model, every layer of
three architectures (GPT-2's learned positions included), and the block list put back."""

from __future__ import annotations

import pytest
import torch

from core.edit.hf import apply_edits, plain_model
from core.edit.prefix import logprobs_from, prefixes
from core.edit.prompts import logprobs, reference_ids
from core.edit.rank_one import Edit

TEXT = "the cat and a dog ran across the green field to the old house by the river " * 4


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_a_pass_from_a_layer_is_the_whole_pass(analyses, arch):
    a = analyses(arch)
    ids = reference_ids(a.model.tokenizer, [TEXT], seq_len=20, n_seqs=3)
    plain = plain_model(a)
    n = a.meta.n_layers
    starts = prefixes(plain, ids, range(n), batch=2)  # two batches: the windows joined
    assert sorted(starts) == list(range(n))
    for layer in range(n):
        start = starts[layer]
        assert start.embeds.shape == (3, 20, a.meta.d_model)
        # An edit of this layer: the blocks before it are the unedited model's.
        edited = apply_edits(a, [Edit("mlp_out", layer, None, 0), Edit("ov", layer, 1, 0)])
        want = logprobs(edited.model, ids)
        got = logprobs_from(edited.model, start)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        torch.testing.assert_close(
            logprobs_from(edited.model, start, slice(1, 3)), want[1:3], atol=1e-4, rtol=0
        )
        # The edit shows: the pass did run this layer's (edited) block.
        assert (want - logprobs(plain, ids)).abs().max() > 1e-3


def test_the_block_list_is_put_back_even_when_the_pass_fails(analyses):
    a = analyses("llama")
    ids = reference_ids(a.model.tokenizer, [TEXT], seq_len=12, n_seqs=1)
    model = apply_edits(a, [Edit("mlp_in", 1, None, 0)]).model
    blocks = list(model.model.layers)
    start = prefixes(plain_model(a), ids, [1])[1]
    logprobs_from(model, start)
    assert list(model.model.layers) == blocks
    bad = type(start)(1, ids, start.embeds[..., :-1])  # the wrong width
    with pytest.raises(RuntimeError):
        logprobs_from(model, bad)
    assert list(model.model.layers) == blocks
