"""The training suite runs in .venv-train (PyTorch); elsewhere it is skipped, not failed."""

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
