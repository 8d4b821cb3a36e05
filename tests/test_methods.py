"""The method table decides what a model has and how it trains; nothing asks a method's name."""

import numpy as np
import pytest
from helpers import episode, small_model

from mgml_tf.methods import METHODS, get_method


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_builds_what_its_row_says(name):
    method = METHODS[name]
    model = small_model(method=name)
    assert model.use_memory == method.uses_memory
    assert (model.memory is not None) == method.uses_memory
    tr, te = episode(np.random.default_rng(0))
    if method.meta_learns:
        with pytest.raises(ValueError, match="needs a meta-test batch"):
            model.compute_meta_gradients(tr)
        _, _, updates = model.compute_meta_gradients(tr, te)
        assert "outer_loss" in updates["terms"]
    else:
        _, _, updates = model.compute_meta_gradients(tr)
        assert "outer_loss" not in updates["terms"]
    assert ("div_cls" in updates["terms"]) == method.uses_memory


def test_unknown_method_is_one_line_naming_the_choices():
    with pytest.raises(ValueError, match=r"unknown method 'maml'; choose one of \['mgml', 'baseline', 'mldg'"):
        get_method("maml")
    with pytest.raises(ValueError, match="unknown method 'maml'"):
        small_model(method="maml")
