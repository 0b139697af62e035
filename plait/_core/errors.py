"""The exception classes ``multiprocessing`` users catch, as the standard classes.

DESIGN.md's rule: an exception a user already catches by its standard name is the
standard class (or a subclass of it), so ``except multiprocessing.AuthenticationError``
in a program keeps working after it switches to plait, whichever of the two raised.
These are therefore the classes of ``multiprocessing.context`` themselves. That module is
imported for its classes only; it starts nothing (no resource tracker, no threads), and
a lean child imports it only when it first needs an error of this family
(``plait.process`` does not import this module).

Every layer above ``_core`` raises these and re-exports them; none defines its own copy.
New failures (``WorkerLostError``, ``OwnerDiedError``, ...) subclass the nearest of these
in their own layer.
"""

from __future__ import annotations

from multiprocessing import context as _standard

__all__ = ["ProcessError", "BufferTooShort", "AuthenticationError", "TimeoutError"]

ProcessError = _standard.ProcessError
BufferTooShort = _standard.BufferTooShort
AuthenticationError = _standard.AuthenticationError
TimeoutError = _standard.TimeoutError  # noqa: A001 - the standard module's own name
