"""The torchrun environment: a partial or malformed one is an error naming the variable, never a silent
single-process run or a traceback from deep inside torch.distributed."""
from __future__ import annotations

import pytest

from core.errors import InputError
from train.distributed import env_world, init_distributed

VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_torchrun_environment_is_one_process(env):
    assert env_world() == (0, 0, 1)


def test_a_full_torchrun_environment_is_read(env):
    for name, value in (("RANK", "3"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "4")):
        env.setenv(name, value)
    assert env_world() == (3, 1, 4)


@pytest.mark.parametrize("variables, words", [
    ({"RANK": "1"}, "RANK is set but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK must be an integer, got 'x'"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": ""}, "LOCAL_RANK must be an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK 2 is not in [0, 2)"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE must be at least 1, got 0"),
])
def test_a_partial_or_malformed_environment_names_the_variable(env, variables, words):
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(InputError) as err:
        env_world()
    assert words in str(err.value) and "torchrun" in str(err.value)


def test_several_processes_without_a_rendezvous_address_name_it(env):
    env.setenv("RANK", "0")
    env.setenv("WORLD_SIZE", "2")
    env.setenv("MASTER_PORT", "29500")
    with pytest.raises(InputError, match="MASTER_ADDR is not set"):
        init_distributed("cpu")
