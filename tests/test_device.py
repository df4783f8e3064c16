"""glow_engine.device: how the device is named for people."""

import torch

from glow_engine.device import describe, pick_device


def test_cpu_thread_count_reads_as_english(monkeypatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert describe(torch.device("cpu")) == "CPU (1 thread)"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert describe(torch.device("cpu")) == "CPU (2 threads)"
    assert pick_device("cpu") == torch.device("cpu")
