"""The training parameters are listed once (TrainingConfig): a family's ``__init__`` can end
with ``**training_params`` and still show scikit-learn every parameter (issue #8 §5)."""

import dataclasses
import inspect

import pytest
import torch
from sklearn.base import clone

from genlab.models.neural import PRESET_CONTROLLED, TRAINING_PARAMS, NeuralGenerativeModel
from genlab.models.registry import get_model_class
from genlab.training import TrainingConfig
from genlab.training.config import model_training_fields


class Short(NeuralGenerativeModel):
    """A family written the short way (not registered)."""

    likelihood = "none"

    def __init__(self, hidden=8, *, scale=1.0, **training_params):
        self.hidden = hidden
        self.scale = scale
        self._set_training_params(training_params)


def test_the_list_is_the_config_fields():
    config_fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    assert TRAINING_PARAMS[0] == "preset" and len(TRAINING_PARAMS) == 21
    assert set(TRAINING_PARAMS[1:]) == config_fields - {"min_lr_ratio", "log_every"}
    assert set(PRESET_CONTROLLED) <= set(TRAINING_PARAMS)
    assert all(f.metadata["help"] for f in model_training_fields())
    for name in PRESET_CONTROLLED:  # None = "the preset's value" at the model level
        assert inspect.signature(NeuralGenerativeModel).parameters[name].default is None


def test_a_short_init_shows_every_parameter_to_scikit_learn():
    params = inspect.signature(Short).parameters
    assert list(params)[:2] == ["hidden", "scale"] and list(params)[2:] == list(TRAINING_PARAMS)
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in TRAINING_PARAMS)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    model = Short(hidden=4, lr=0.01, epochs=3)
    got = model.get_params()
    assert set(got) == {"hidden", "scale", *TRAINING_PARAMS}
    assert (
        got["hidden"] == 4
        and got["lr"] == 0.01
        and got["epochs"] == 3
        and got["batch_size"] == 64
        and got["preset"] == "auto"
    )
    twin = clone(model)
    assert twin is not model and twin.get_params() == got
    twin.set_params(batch_size=16, scale=2.0)
    assert twin.batch_size == 16 and twin.scale == 2.0 and model.batch_size == 64
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr_rate'"):
        Short(lr_rate=0.1)


class ShortWithOwnDefault(NeuralGenerativeModel):
    likelihood = "none"

    def __init__(self, hidden=8, *, grad_clip=1.0, **training_params):
        self.hidden = hidden
        self._set_training_params(training_params, grad_clip=grad_clip)


def test_a_family_may_change_a_default():
    params = inspect.signature(ShortWithOwnDefault).parameters
    assert list(params) == ["hidden", "grad_clip"] + [n for n in TRAINING_PARAMS if n != "grad_clip"]
    assert ShortWithOwnDefault().grad_clip == 1.0 and ShortWithOwnDefault(grad_clip=None).grad_clip is None
    assert ShortWithOwnDefault(grad_clip=0.5, lr=0.1).get_params()["grad_clip"] == 0.5
    assert clone(ShortWithOwnDefault(grad_clip=None)).grad_clip is None


#: the families that still list the parameters, and the defaults they change on purpose
LONG_FORM_OVERRIDES = {"vae": {}, "wae": {}, "diffusion": {"grad_clip": 1.0}}


def test_the_short_and_the_long_form_agree():
    """Families still listing every parameter (the long form) keep the table's defaults."""
    short = inspect.signature(Short).parameters
    for name, overrides in LONG_FORM_OVERRIDES.items():
        long = inspect.signature(get_model_class(name)).parameters
        expected = {n: overrides.get(n, short[n].default) for n in TRAINING_PARAMS}
        assert {n: long[n].default for n in TRAINING_PARAMS} == expected, name


def test_a_short_family_trains(digits):
    class TinyShort(Short):
        def _build_modules(self):
            self.network_ = _Tiny(int(self.hidden))

    model = TinyShort(hidden=4, max_steps=3, batch_size=16, device="cpu", val_fraction=0.0)
    model.fit(digits.images[:64])
    assert model.training_summary_["steps"] == 3 and model.training_config_["batch_size"] == 16


class _Tiny(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.lin = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Linear(hidden, 64))

    def forward(self, batch):
        x = batch["images"].flatten(1).float() / 255
        return ((self.lin(x) - x) ** 2).mean(), {}


def test_a_family_missing_the_parameters_is_refused():
    with pytest.raises(TypeError, match=r"\*\*training_params"):

        class Bad(NeuralGenerativeModel):
            def __init__(self, hidden=8):
                self.hidden = hidden
