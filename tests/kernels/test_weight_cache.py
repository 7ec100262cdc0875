"""The kernels' weight layouts are built once and rebuilt whenever the weights change."""

from __future__ import annotations

import gc
import os
import weakref

import pytest
import torch

from nphmkit import NPHMConfig
from tests.helpers import assert_close
from tests.nphm.cases import make_inputs, make_model

pytest.importorskip("triton")
from nphmkit.kernels import available  # noqa: E402

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available() else "cuda"


def _counting_build(calls: list):
    def build():
        calls.append(1)
        return {"n": len(calls)}

    return build


def test_layouts_are_reused_until_a_weight_changes():
    from nphmkit.kernels.weight_cache import cached

    model = make_model(NPHMConfig.tiny())
    calls: list = []
    build = _counting_build(calls)
    first = cached(model.ensemble, ("a",), build)
    assert cached(model.ensemble, ("a",), build) is first and len(calls) == 1
    cached(model.ensemble, ("b", 16), build)  # another name: its own layout
    assert len(calls) == 2
    assert cached(model.ensemble, ("a",), build) is first  # still cached
    with torch.no_grad():
        model.ensemble.weights[1].mul_(1.5)  # in place: an optimizer step, load_state_dict
    assert cached(model.ensemble, ("a",), build) is not first and len(calls) == 3
    again = cached(model.ensemble, ("a",), build)
    model.ensemble.biases[0].data = model.ensemble.biases[0].data.clone()  # a new tensor behind the parameter
    latest = cached(model.ensemble, ("a",), build)
    assert latest is not again
    expression = cached(model.expression, ("e",), build)  # the expression's change is not the ensemble's
    with torch.no_grad():
        model.expression.layers[0].bias.add_(1.0)
    assert cached(model.ensemble, ("a",), build) is latest
    assert cached(model.expression, ("e",), build) is not expression


def test_inference_mode_weights_are_not_cached():
    """Tensors made under inference_mode have no version counter: an in-place change could not be seen."""
    from nphmkit.kernels.weight_cache import cached

    with torch.inference_mode():
        model = make_model(NPHMConfig.tiny())
    calls: list = []
    build = _counting_build(calls)
    cached(model.ensemble, ("a",), build)
    cached(model.ensemble, ("a",), build)
    assert len(calls) == 2


def test_layouts_go_with_their_model():
    from nphmkit.kernels import weight_cache

    model = make_model(NPHMConfig.tiny())
    weight_cache.cached(model.ensemble, ("a",), lambda: {"big": torch.zeros(10)})
    assert model.ensemble in weight_cache._store
    weight_cache.clear(model)  # the model and its submodules
    assert model.ensemble not in weight_cache._store
    weight_cache.cached(model.ensemble, ("a",), lambda: {"big": torch.zeros(10)})
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the cache does not keep a model alive


@pytest.mark.skipif(not available(), reason="triton kernels need a GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("design", ["scratch", "registers"])
def test_kernels_follow_weight_updates(design):
    """Queries after an in-place weight update use the new weights (no stale layout), in both designs."""
    from nphmkit import kernels

    with kernels.options(design=design, block_m=16, block_m_expression=16, chunk_points=0):
        model = make_model(NPHMConfig.tiny(), chunk_size=16).requires_grad_(False).to(DEVICE)
        x, z_id, z_ex = (t.to(DEVICE) for t in make_inputs(model, 1, 19, 2))
        with torch.no_grad():
            before = model.sdf(x, z_id, z_ex, backend="triton")
            for p in model.parameters():
                p.mul_(1.1)
            after = model.sdf(x, z_id, z_ex, backend="triton")
            ref = model.sdf(x, z_id, z_ex, backend="reference")
    assert (after - before).abs().max() > 1e-3
    assert_close(after, ref)
