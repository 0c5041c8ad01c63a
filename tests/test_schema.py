"""Declared parameter schemas and capabilities: complete, consistent with ``__init__`` and
the methods, used for validation, and what ``genlab models --json`` prints."""

import inspect
import json

import pytest

from genlab import GenlabError
from genlab.cli import main
from genlab.models import get_model_class, list_models, make_model
from genlab.models.base import CAPABILITIES
from genlab.models.schema import Param

MODELS = sorted(list_models())
#: the methods each capability promises (interpolate: see the test)
METHODS = {
    "likelihood": ("score_samples", "score", "bits_per_dim"),
    "encode": ("encode",),
    "decode": ("decode",),
    "reconstruct": ("reconstruct",),
    "invert": ("invert",),
    "edit": ("edit",),
    "inpaint": ("inpaint",),
    "attributes": ("encode", "decode"),
}


@pytest.mark.parametrize("name", MODELS)
def test_schema_covers_exactly_the_parameters_with_the_same_defaults(name):
    cls = get_model_class(name)
    params = cls().get_params(deep=False)
    assert set(cls.parameter_schema) == set(params), f"{name}: schema and get_params() differ"
    signature = inspect.signature(cls.__init__).parameters
    for key, param in cls.parameter_schema.items():
        assert param.default == signature[key].default, (
            f"{name}.{key}: schema default {param.default!r} != __init__ default {signature[key].default!r}"
        )
        # every default is valid under its own declaration
        param.validate(key, signature[key].default)


@pytest.mark.parametrize("name", MODELS)
def test_capabilities_and_conditionings_match_the_model(name):
    cls = get_model_class(name)
    assert cls.capabilities <= CAPABILITIES
    assert ("likelihood" in cls.capabilities) == (cls.likelihood != "none")
    if "interpolate" in cls.capabilities:  # its own interpolate() or a latent path through encode/decode
        assert callable(getattr(cls, "interpolate", None)) or {"encode", "decode"} <= cls.capabilities
    for capability in cls.capabilities - {"interpolate"}:
        for method in METHODS[capability]:
            assert callable(getattr(cls, method, None)), f"{name} declares {capability} but has no {method}()"
    for method in ("encode", "invert", "edit", "inpaint", "interpolate"):
        if callable(getattr(cls, method, None)):
            assert method in cls.capabilities, f"{name} has {method}() but does not declare it"
    assert set(cls.conditionings) <= {"none", "label", "text"} and "none" in cls.conditionings
    if "condition" in cls.parameter_schema:
        assert cls.parameter_schema["condition"].choices == tuple(cls.conditionings)
    else:
        assert cls.conditionings == ("none",)
    assert "unconditional" in cls.sample_options


def test_models_json_lists_every_model(capsys):
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out) == MODELS
    diffusion = out["diffusion"]
    assert diffusion["likelihood"] == "bound" and diffusion["conditionings"] == ["none", "label", "text"]
    assert "inpaint" in diffusion["capabilities"]
    assert diffusion["sample_options"]["guidance"] == {
        "kind": "float",
        "default": None,
        "nullable": True,
        "help": diffusion["sample_options"]["guidance"]["help"],
        "low": 0.0,
        "low_inclusive": True,
        "high": 50.0,
        "high_inclusive": True,
    }
    assert out["gmm"]["parameters"]["n_components"]["low"] == 1
    assert out["kde"]["parameters"]["bandwidth"]["choices"] == ["scott", "silverman", "cv"]
    for name in MODELS:
        assert set(out[name]["parameters"]) == set(get_model_class(name)().get_params(deep=False))


def test_schema_validation_at_fit_and_in_make_model(tiny_images):
    with pytest.raises(GenlabError, match=r"n_components=0 must be >= 1"):
        get_model_class("gmm")(n_components=0).fit(tiny_images)
    with pytest.raises(GenlabError, match=r"gmm: n_components=2.5 must be an integer"):
        make_model("gmm", n_components=2.5)
    with pytest.raises(GenlabError, match=r"ema_decay=1.0 must be < 1"):
        make_model("vae", ema_decay=1.0)
    with pytest.raises(GenlabError, match=r"guidance=nan must be a finite number"):
        make_model("diffusion", guidance=float("nan"))
    with pytest.raises(GenlabError, match=r"covariance_type='spherical' is not valid; use one of 'full', 'diag'"):
        make_model("gaussian", covariance_type="spherical")


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "gmm", "-p", "n_components=0"], "n_components=0 must be >= 1"),
        (["fit", "diffusion", "-p", "guidance=60"], "guidance=60.0 must be <= 50"),
        (["fit", "vae", "-p", "latent_temperature=0"], "latent_temperature=0.0 must be > 0"),
        (["fit", "kde", "-p", "bandwidth=wide"], "bandwidth='wide' is not valid"),
        (
            ["fit", "gmm", "-p", "covariance_type=round"],
            "covariance_type='round' is not valid; use one of 'full', 'diag', 'spherical'",
        ),
    ],
)
def test_cli_reports_schema_errors(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_param_messages_and_json():
    p = Param("float", 0.5, low=0.0, high=1.0, low_inclusive=False, help="h")
    assert p.describe() == "a finite number in (0, 1]"
    with pytest.raises(GenlabError, match=r"x=0.0 must be > 0 \(out of range; expected a finite number in \(0, 1\]\)"):
        p.validate("x", 0)
    assert p.validate("x", 1) == 1.0 and isinstance(p.validate("x", 1), float)
    assert json.loads(json.dumps(p.to_json())) == {
        "kind": "float",
        "default": 0.5,
        "nullable": False,
        "help": "h",
        "low": 0.0,
        "low_inclusive": False,
        "high": 1.0,
        "high_inclusive": True,
    }
    with pytest.raises(GenlabError, match="must be True or False"):
        Param("bool", False).validate("flag", 1)
    with pytest.raises(GenlabError, match="is not valid"):
        Param("choice", "a", choices=("a", "b")).validate("c", True)
