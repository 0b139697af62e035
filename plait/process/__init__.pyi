"""Types of this package for checkers: the names its ``__getattr__`` loads on first use
(see ``__init__.py``), imported from where they live; ``tests/test_typing.py`` checks
that this list and the package agree."""

from plait.process.context import BaseContext as BaseContext
from plait.process.context import freeze_support as freeze_support
from plait.process.context import get_context as get_context
from plait.process.context import set_executable as set_executable
from plait.process.context import set_forkserver_preload as set_forkserver_preload
from plait.process.cpu import cpu_count as cpu_count
from plait.process.cpu import process_cpu_count as process_cpu_count
from plait.process.log import get_logger as get_logger
from plait.process.log import log_to_stderr as log_to_stderr
from plait.process.process import Process as Process
from plait.process.process import active_children as active_children
from plait.process.process import current_process as current_process
from plait.process.process import parent_process as parent_process
from plait.process.start import get_all_start_methods as get_all_start_methods
from plait.process.start import get_start_method as get_start_method
from plait.process.start import set_start_method as set_start_method
