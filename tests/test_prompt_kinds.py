"""Prompt kinds: one spec class per kind and a registry. The stored dict (run_config.json's ``prompt``) is
exactly what the single 13-field PromptSpec wrote, so runs written before the split still resume."""
import dataclasses
import glob
import os
import re

import jax
import numpy as np
import pytest

from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import t5_config
from xprompt_jax.prompted import build_prompted_t5
from xprompt_jax.prompts import kinds
from xprompt_jax.prompts.kinds import PromptSpecBase, make_spec, register_kind
from xprompt_jax.prompts.modules import Prompt

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "xprompt_jax", "gin")

COMMON = {"length": 100, "init": "sampled_vocabulary", "init_scale": 0.5, "population_size": 5000, "init_file": None,
          "pieces": 16, "combine": "prefix"}
# (fields, to_dict()) pairs printed by make_spec(**fields).to_dict() of the single-dataclass PromptSpec
# (commit ac9ed6f), key order included: these dicts are in run_config.json files that must still resume.
BEFORE_THE_SPLIT = [
    ({}, COMMON),
    (dict(kind="prompt", length=4, init="file", init_file="/tmp/p.npy", pieces=2, combine="before_eos"),
     {"length": 4, "init": "file", "init_scale": 0.5, "population_size": 5000, "init_file": "/tmp/p.npy",
      "pieces": 2, "combine": "before_eos"}),
    (dict(kind="ept"), {**COMMON, "kind": "ept", "rank": 1}),
    (dict(kind="ept", length=10, rank=3, init="uniform", init_scale=0.25),
     {"length": 10, "init": "uniform", "init_scale": 0.25, "population_size": 5000, "init_file": None,
      "pieces": 16, "combine": "prefix", "kind": "ept", "rank": 3}),
    (dict(kind="ptuning"), {**COMMON, "kind": "ptuning", "hidden": None, "ptuning_encoder": "mlp", "lstm_layers": 2}),
    (dict(kind="ptuning", ptuning_encoder="lstm", hidden=7, lstm_layers=3, length=5),
     {"length": 5, "init": "sampled_vocabulary", "init_scale": 0.5, "population_size": 5000, "init_file": None,
      "pieces": 16, "combine": "prefix", "kind": "ptuning", "hidden": 7, "ptuning_encoder": "lstm",
      "lstm_layers": 3}),
    (dict(kind="resprompt"), {**COMMON, "kind": "resprompt", "hidden": None, "resprompt_separate": False}),
    (dict(kind="resprompt", hidden=400, resprompt_separate=True, population_size=77),
     {"length": 100, "init": "sampled_vocabulary", "init_scale": 0.5, "population_size": 77, "init_file": None,
      "pieces": 16, "combine": "prefix", "kind": "resprompt", "hidden": 400, "resprompt_separate": True}),
]


@pytest.mark.parametrize("fields,stored", BEFORE_THE_SPLIT)
def test_to_dict_is_what_the_single_prompt_spec_stored(fields, stored):
    spec = make_spec(**fields)
    assert list(spec.to_dict().items()) == list(stored.items())   # same keys, values and order
    assert make_spec(**stored) == spec                             # a stored run_config rebuilds it
    assert spec.kind == fields.get("kind", "prompt")
    for name, value in fields.items():
        assert getattr(spec, name) == value


def test_every_kind_is_registered_with_its_own_class():
    assert set(kinds.KINDS) >= {"prompt", "ept", "ptuning", "resprompt"}
    classes = [kinds.KINDS[k] for k in ("prompt", "ept", "ptuning", "resprompt")]
    assert len(set(classes)) == 4 and all(issubclass(c, PromptSpecBase) for c in classes)
    assert kinds.KINDS["ept"].own_fields() == ("rank",)
    assert kinds.KINDS["ptuning"].own_fields() == ("hidden", "ptuning_encoder", "lstm_layers")
    assert kinds.KINDS["resprompt"].own_fields() == ("hidden", "resprompt_separate")
    assert kinds.KINDS["prompt"].own_fields() == ()


def _gin_prompt_fields():
    """Every ``xprompt_jax.PromptSpec.<field>`` a shipped gin file binds."""
    found = set()
    for path in glob.glob(os.path.join(GIN_DIR, "**", "*.gin"), recursive=True):
        with open(path) as f:
            found |= set(re.findall(r"^\s*xprompt_jax\.PromptSpec\.(\w+)\s*=", f.read(), re.M))
    return found


def test_make_spec_takes_every_field_the_gin_files_bind_for_every_kind():
    fields = _gin_prompt_fields()
    assert {"kind", "length", "rank", "hidden", "ptuning_encoder", "resprompt_separate"} <= fields
    defaults = {f.name: f.default for cls in kinds.KINDS.values() for f in dataclasses.fields(cls)}
    for kind in ("prompt", "ept", "ptuning", "resprompt"):
        # gin hands make_spec every bound field: at their defaults, fields of other kinds are ignored.
        spec = make_spec(kind, **{name: defaults[name] for name in fields - {"kind"}})
        assert spec.kind == kind and spec == make_spec(kind)


def test_a_field_of_another_kind_is_refused_unless_at_its_default():
    with pytest.raises(ConfigError, match=r"PromptSpec.rank = 2 does not apply to kind 'prompt' \(only to \['ept'\]\)"):
        make_spec(rank=2)
    with pytest.raises(ConfigError, match="PromptSpec.hidden = 5 does not apply to kind 'ept'"):
        make_spec(kind="ept", hidden=5)
    with pytest.raises(ConfigError, match="PromptSpec.resprompt_separate = True does not apply to kind 'ptuning'"):
        make_spec(kind="ptuning", resprompt_separate=True)
    with pytest.raises(ConfigError, match="unknown PromptSpec field 'lenght'"):
        make_spec(lenght=5)
    with pytest.raises(ConfigError, match="unknown PromptSpec.kind 'lora'"):
        make_spec(kind="lora")
    assert not hasattr(make_spec(rank=1, hidden=None, lstm_layers=2), "rank")   # defaults: dropped


def test_a_new_kind_is_one_class():
    """Registering a spec class is all a kind needs: make_spec builds it, the model uses its module."""
    config = t5_config("t5_1_1_prompt_tuning_test")
    frozen = {"token_embedder": {"embedding": np.zeros((config.vocab_size, config.emb_dim), np.float32)}}

    @register_kind("test_doubled")
    @dataclasses.dataclass(frozen=True)
    class DoubledSpec(PromptSpecBase):
        factor: float = 2.0

        def check(self):
            if self.factor <= 0:
                raise ConfigError(f"PromptSpec.factor must be positive, got {self.factor}")

        def build_module(self, width, init_fn):
            return Prompt(**{**self.module_args(width, init_fn),
                             "init_fn": lambda rng, shape: self.factor * init_fn(rng, shape)})
    try:
        spec = make_spec("test_doubled", length=3, pieces=2, init="uniform", factor=3.0)
        assert isinstance(spec, DoubledSpec) and spec.kind == "test_doubled"
        assert spec.to_dict() == {**COMMON, "length": 3, "init": "uniform", "pieces": 2, "kind": "test_doubled",
                                  "factor": 3.0}
        assert make_spec(**spec.to_dict()) == spec
        with pytest.raises(ConfigError, match="factor must be positive"):
            make_spec("test_doubled", factor=0.0)
        with pytest.raises(ConfigError, match="PromptSpec.factor = 3.0 does not apply to kind 'ept'"):
            make_spec("ept", factor=3.0)
        tripled = build_prompted_t5(config, spec, frozen).init(jax.random.PRNGKey(0))[0]["prompt"]["prompt"]
        plain = build_prompted_t5(config, make_spec(length=3, pieces=2, init="uniform"), frozen)
        plain_prompt = plain.init(jax.random.PRNGKey(0))[0]["prompt"]["prompt"]
        np.testing.assert_allclose(np.asarray(tripled), 3.0 * np.asarray(plain_prompt), rtol=1e-6)
        with pytest.raises(ValueError, match="already registered"):
            register_kind("ept")(DoubledSpec)
    finally:
        kinds.KINDS.pop("test_doubled", None)
