"""glow_engine.device: how the device is named for people."""

import pytest
import torch

from glow_engine.device import Ranks, describe, pick_device, rendezvous_timeout, torchrun_ranks
from glow_engine.errors import UserError


def test_cpu_thread_count_reads_as_english(monkeypatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert describe(torch.device("cpu")) == "CPU (1 thread)"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert describe(torch.device("cpu")) == "CPU (2 threads)"
    assert pick_device("cpu") == torch.device("cpu")


TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"}


def _environment(monkeypatch, **values: str) -> None:
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("stray", [{"RANK": "1"}, {"WORLD_SIZE": "2"},
                                   {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"},
                                   {k: v for k, v in TORCHRUN.items()
                                    if k != "TORCHELASTIC_RUN_ID"}])
def test_a_stray_rank_outside_torchrun_is_ignored_with_a_warning(monkeypatch, capsys,
                                                                 stray: dict) -> None:
    _environment(monkeypatch, **stray)
    assert torchrun_ranks() == Ranks(0, 1, 0)
    err = capsys.readouterr().err
    assert err.startswith("warning: ignoring") and "not started by torchrun" in err
    assert err.count("\n") == 1


def test_torchrun_ranks_are_read_from_all_its_variables(monkeypatch, capsys) -> None:
    _environment(monkeypatch, **TORCHRUN)
    assert torchrun_ranks() == Ranks(1, 2, 1) and capsys.readouterr().err == ""
    _environment(monkeypatch)
    assert torchrun_ranks() == Ranks() and capsys.readouterr().err == ""
    for bad in ({"RANK": "2"}, {"RANK": "-1"}, {"WORLD_SIZE": "two"}, {"MASTER_PORT": "x"}):
        _environment(monkeypatch, **{**TORCHRUN, **bad})
        with pytest.raises(UserError, match="torchrun's"):
            torchrun_ranks()


def test_the_rendezvous_deadline_is_a_number_of_seconds(monkeypatch) -> None:
    monkeypatch.setenv("DPGLOW_RENDEZVOUS_TIMEOUT", "7.5")
    assert rendezvous_timeout().total_seconds() == 7.5
    for bad in ("soon", "0", "-3", "inf", "nan"):
        monkeypatch.setenv("DPGLOW_RENDEZVOUS_TIMEOUT", bad)
        with pytest.raises(UserError, match="DPGLOW_RENDEZVOUS_TIMEOUT"):
            rendezvous_timeout()
