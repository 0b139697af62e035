"""Where each name of the ``multiprocessing`` API lives in plait: one static table.

Contexts (``plait.process.context``) and the ``plait.multiprocessing`` face both read it
and import a name's module on its first use. The modules are named as strings: they sit
in the layers above this one, which this layer never imports at load time (the standard
package's context does the same, importing ``.queues`` or ``.pool`` inside its methods).
This module imports nothing, so the face can read the table without the context classes,
which subclass the standard ``BaseContext`` and so import ``multiprocessing``.
"""

__all__ = ["API_HOMES", "CONTEXT_KEYWORD", "SUBMODULES"]

# Name of the multiprocessing API -> the plait module that defines it, for every name a
# context offers that lives above the process layer.
API_HOMES = {
    "Pipe": "plait.ipc.connection",
    "Lock": "plait.ipc.synchronize",
    "RLock": "plait.ipc.synchronize",
    "Condition": "plait.ipc.synchronize",
    "Semaphore": "plait.ipc.synchronize",
    "BoundedSemaphore": "plait.ipc.synchronize",
    "Event": "plait.ipc.synchronize",
    "Barrier": "plait.ipc.synchronize",
    "Queue": "plait.ipc.queues",
    "JoinableQueue": "plait.ipc.queues",
    "SimpleQueue": "plait.ipc.queues",
    "Value": "plait.ipc.sharedctypes",
    "Array": "plait.ipc.sharedctypes",
    "RawValue": "plait.ipc.sharedctypes",
    "RawArray": "plait.ipc.sharedctypes",
    "Pool": "plait.pool.pool",
    "Manager": "plait.managers",
}

# The names above that take the context they are made from, under this keyword.
CONTEXT_KEYWORD = {"Pool": "context", "Manager": "ctx"}

# The submodules of the standard package, each with a face ``plait.multiprocessing.<name>``
# (``dummy.connection`` is a submodule of ``dummy``): the face imports them on first use,
# and ``plait.patch()`` patches each.
SUBMODULES = (
    "connection",
    "context",
    "dummy",
    "forkserver",
    "heap",
    "managers",
    "pool",
    "popen_fork",
    "popen_forkserver",
    "popen_spawn_posix",
    "popen_spawn_win32",
    "process",
    "queues",
    "reduction",
    "resource_sharer",
    "resource_tracker",
    "shared_memory",
    "sharedctypes",
    "spawn",
    "synchronize",
    "util",
)
