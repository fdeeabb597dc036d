"""torch's intra-op thread count, set for one block only.

The count is process-wide: an encoder that set it once for itself changed it for
everything else in the process, and FAQ tuning's weights depend on it (they came out
different on one thread than on two). So each user sets it around its own work, and
the blocks take turns: two at once would each run on the other's count."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_turn = threading.RLock()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` intra-op threads inside the block, as it was after."""
    import torch

    with _turn:
        before = torch.get_num_threads()
        if before != n:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
