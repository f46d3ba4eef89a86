"""What the store's query mixins share: its connection, its transactions, queuing a message.

``Store`` (store.py) provides them; the mixins only declare them for the type checker.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.store import _Transaction
    from receiver.store_types import NewMessage


class StoreMixin:
    _db: sqlite3.Connection

    if TYPE_CHECKING:

        def _tx(self) -> _Transaction: ...

        @staticmethod
        def _insert_message(
            db: sqlite3.Connection, m: NewMessage, now: float
        ) -> tuple[int, int]: ...
