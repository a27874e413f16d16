"""What the testing services share: a ``with`` block starts and stops them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, TypeVar

S = TypeVar("S", bound="Service")


class Service(ABC):
    """A process (or processes) a test starts, uses and stops."""

    @abstractmethod
    def start(self) -> Any:
        """Start, and wait until it serves."""

    @abstractmethod
    def stop(self) -> None:
        """Stop, and remove what it left on disk."""

    def __enter__(self: S) -> S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
