"""Dynamic batching: concurrent requests merged into one teacher forward.

A GPU computes a forward of 256 images in about the time it takes for 8, so a server that runs
each small request alone leaves most of it idle. With batching on, every validated request
goes to one queue; a single worker thread takes the oldest, waits at most ``max_wait``
seconds for more (or until ``max_images`` are gathered), runs one forward on the
concatenation and hands each request its own rows. Inference servers (Triton, TorchServe) do
the same with the same two knobs.

Guarantees kept from the unbatched server:

* every request gets exactly its own rows, in order (equal to a lone forward up to the float
  tolerance of a larger matmul; the teacher is in eval mode, so no batch statistics mix);
* requests are validated *before* they are queued, so a bad body is a 4xx for that request
  alone; if the merged forward raises anyway, each request of that batch is run again alone,
  and only the ones that fail alone get the error;
* a request whose deadline passed while it waited (its future was cancelled) is skipped;
* a request larger than ``max_images`` is run alone, in forwards of ``max_images`` images.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from .logs import SERVER_LOGGER

log = logging.getLogger(SERVER_LOGGER)

GuideFn = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass
class _Item:
    x: torch.Tensor
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


@dataclass
class ForwardCounter:
    """Forwards run and images they held, for ``/healthz`` (forwards < requests: batches formed)."""

    forwards: int = 0
    forward_images: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, images: int) -> None:
        with self.lock:
            self.forwards += 1
            self.forward_images += images

    def to_dict(self) -> dict:
        with self.lock:
            return {"forwards": self.forwards, "forward_images": self.forward_images}


class Batcher:
    """One worker thread that merges queued requests into forwards of ``guide``.

    ``submit(x)`` returns a :class:`concurrent.futures.Future` of ``(logits, features)`` on the
    CPU; cancelling it before its forward starts removes the request from the batch.
    """

    def __init__(self, guide: GuideFn, max_images: int, max_wait: float, counter: ForwardCounter) -> None:
        if max_images < 1 or not max_wait >= 0:
            raise ValueError(f"dynamic batching needs max_images >= 1 and max_wait >= 0, got {max_images}, {max_wait}")
        self.guide, self.max_images, self.max_wait, self.counter = guide, max_images, max_wait, counter
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._carry: _Item | None = None  # the request that did not fit into the last batch
        self._thread = threading.Thread(target=self._run, name="lnpt-batcher", daemon=True)
        self._thread.start()

    def submit(self, x: torch.Tensor) -> Future:
        item = _Item(x)
        self._queue.put(item)
        return item.future

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            if batch:
                self._forward(batch)

    def _next(self, timeout: float | None) -> _Item | None:
        """The carried-over request, else the next queued one (``queue.Empty`` after ``timeout``)."""
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        return self._queue.get(timeout=timeout)

    def _gather(self) -> list[_Item] | None:
        """Requests for one forward (live ones only); ``None`` once :meth:`close` was called."""
        first = self._next(None)
        if first is None:
            return None
        batch = [first] if first.future.set_running_or_notify_cancel() else []
        images = sum(len(i.x) for i in batch)
        deadline = time.monotonic() + self.max_wait
        while images < self.max_images:
            try:
                item = self._next(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:  # closing: serve this batch, stop at the next gather
                self._queue.put(None)
                break
            if images and images + len(item.x) > self.max_images:
                self._carry = item  # first of the next batch
                break
            if item.future.set_running_or_notify_cancel():
                batch.append(item)
                images += len(item.x)
        return batch

    def _forward(self, batch: list[_Item]) -> None:
        try:
            outs = self._guide_split(torch.cat([i.x for i in batch]) if len(batch) > 1 else batch[0].x)
        except Exception as exc:  # noqa: BLE001  (one request's inputs may break the teacher)
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            log.warning("merged forward failed; running its requests alone",
                        extra={"fields": {"requests": len(batch), "error": repr(exc)}})
            for item in batch:
                self._alone(item)
            return
        start = 0
        for item in batch:
            n = len(item.x)
            item.future.set_result((outs[0][start:start + n], outs[1][start:start + n]))
            start += n

    def _alone(self, item: _Item) -> None:
        try:
            item.future.set_result(self._guide_split(item.x))
        except Exception as exc:  # noqa: BLE001
            item.future.set_exception(exc)

    def _guide_split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forwards of at most ``max_images`` images, outputs on the CPU as float32."""
        logits, features = [], []
        for chunk in torch.split(x, self.max_images):
            lg, ft = self.guide(chunk)
            self.counter.add(len(chunk))
            logits.append(lg.detach().float().cpu())
            features.append(ft.detach().float().cpu())
        if len(logits) == 1:
            return logits[0], features[0]
        return torch.cat(logits), torch.cat(features)
