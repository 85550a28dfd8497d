"""A damaged run checkpoint is skipped for the newest intact one, with a warning (issue 15)."""
import logging
import os

import jax.numpy as jnp
import numpy as np
import pytest

from xprompt_jax.errors import CheckpointError
from xprompt_jax.run.checkpoints import RunCheckpoints


def _state(value):
    return {"prompt": jnp.full((4, 8), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _saved(tmp_path, steps):
    checkpoints = RunCheckpoints(str(tmp_path), keep=5)
    for step in steps:
        checkpoints.save(step, _state(step), {"step": step})
    checkpoints.wait()
    return checkpoints


def _damage(tmp_path, step):
    """Truncate every data file of one checkpoint, as a full disk or a bad copy leaves it."""
    for root, _, files in os.walk(tmp_path / "checkpoints" / str(step) / "state"):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(3)


def test_the_newest_intact_checkpoint_is_restored_and_the_bad_one_named(tmp_path, caplog):
    checkpoints = _saved(tmp_path, [2, 4])
    _damage(tmp_path, 4)
    with caplog.at_level(logging.WARNING, logger="xprompt_jax"):
        logging.getLogger("xprompt_jax").addHandler(caplog.handler)
        try:
            state, position = RunCheckpoints(str(tmp_path), keep=5).restore(_state(0))
        finally:
            logging.getLogger("xprompt_jax").removeHandler(caplog.handler)
    assert position == {"step": 2}
    np.testing.assert_array_equal(np.asarray(state["prompt"]), np.full((4, 8), 2.0))
    assert "checkpoints/4 is damaged" in caplog.text
    checkpoints.close()


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
    _saved(tmp_path, [2]).close()
    _damage(tmp_path, 2)
    with pytest.raises(CheckpointError, match="no intact checkpoint under .*start this run afresh"):
        RunCheckpoints(str(tmp_path), keep=5).restore(_state(0))
