"""Drop-in face of ``multiprocessing.dummy.connection``: connections between threads.

Re-exports only; the code and its explanation live in ``plait/threads/dummy_connection.py``.
"""

from plait.threads.dummy_connection import Client, Connection, Listener, Pipe, families

__all__ = ["Client", "Listener", "Pipe", "Connection", "families"]
