"""The exception classes ``multiprocessing`` users catch, as plait's own classes.

plait does not import ``multiprocessing`` (it is the peer we measure against, and its
import costs a child process time), so these classes mirror the standard hierarchy
instead of reusing it: ``ProcessError`` derives from ``Exception`` and the others from
``ProcessError``, exactly as in ``multiprocessing.context``. A program that catches them
by the names ``plait.multiprocessing`` exports keeps working; a handler written as
``except multiprocessing.AuthenticationError`` does not catch plait's class.

Every layer above ``_core`` raises these and re-exports them; none defines its own copy.
"""

from __future__ import annotations

__all__ = ["ProcessError", "BufferTooShort", "AuthenticationError"]


class ProcessError(Exception):
    """Base class of the errors of processes and the channels between them."""


class BufferTooShort(ProcessError):
    """``recv_bytes_into`` got a message longer than the buffer; ``args[0]`` holds it."""


class AuthenticationError(ProcessError):
    """The peer of a connection failed to prove it holds the shared authentication key."""
