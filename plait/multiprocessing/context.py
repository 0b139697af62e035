"""Drop-in face of ``multiprocessing.context``; the code lives in ``plait.process.context``.

plait's contexts are instances of the standard ``multiprocessing.context.BaseContext``,
so ``isinstance(ctx, multiprocessing.context.BaseContext)`` holds for them too.
"""

from plait._core.errors import AuthenticationError as AuthenticationError
from plait._core.errors import BufferTooShort as BufferTooShort
from plait._core.errors import ProcessError as ProcessError
from plait._core.errors import TimeoutError as TimeoutError
from plait.process import context as _plait_context
from plait.process import process as process
from plait.process.context import BaseContext as BaseContext
from plait.process.context import DefaultContext as DefaultContext
from plait.process.context import ForkContext as ForkContext
from plait.process.context import ForkProcess as ForkProcess
from plait.process.context import ForkServerContext as ForkServerContext
from plait.process.context import ForkServerProcess as ForkServerProcess
from plait.process.context import SpawnContext as SpawnContext
from plait.process.context import SpawnProcess as SpawnProcess
from plait.process.context import assert_spawning as assert_spawning
from plait.process.context import get_spawning_popen as get_spawning_popen
from plait.process.process import Process as Process

__all__ = ()

_default_context = _plait_context._default_context
_concrete_contexts = _plait_context._concrete
