"""The pytest plugin of plait: each ``async def`` test runs as the main task of its own
``plait.coro`` kernel.

Installed with plait (entry point ``pytest11``), or loaded with ``-p plait.pytest_plugin``.

Which tests. An ``async def`` test function, unless a marker of another async framework
(``asyncio``, ``trio``, ``anyio``, ...) claims it, or it is a method of a
``unittest.TestCase``: those keep their own runner. The marker ``@pytest.mark.plait``
says "plait" outright and takes the kernel's options, as in
``@pytest.mark.plait(clock="autojump")`` on a test of a retry that gives up after a
minute. ``clock`` is ``"autojump"`` (a ``MockClock`` that jumps to the next timer
whenever the kernel idles, ``autojump_threshold=0``), ``"mock"`` (a stopped one) or a
``MockClock``, a template: each test (say, under a module's ``pytestmark``) gets a new
clock with its rate and threshold, starting at its time, so no test inherits another's;
``slow_step`` and ``max_threads`` are handed to ``plait.coro.run``. A thread's or a
child process's work counts as idle time to the kernel, so a test that awaits one inside
a timeout scope wants ``clock=MockClock(autojump_threshold=...)`` above that work's time.
A synchronous test under the marker (say, through a module's ``pytestmark``) runs as
usual.

Hypothesis. A ``@given`` test with an ``async def`` body runs each example in a kernel of
its own (a new mock clock each time when the marker names one); it takes synchronous
fixtures only, since hypothesis runs many examples under one setup of them.

Clock fixtures. ``plait_mock_clock`` (stopped: the test moves it with ``jump()``) and
``plait_autojump_clock`` give the test a ``MockClock``, and the test's kernel runs on it;
so does any fixture whose value is a ``MockClock``. One test, one clock: a marker's clock
and a different fixture clock, or two fixture clocks, are an error.

Async fixtures. pytest sets fixtures up one by one before the call, outside any kernel.
For a test of this plugin, an ``async def`` fixture (returning or yielding its value) is
set up later, inside the test's kernel: at pytest's setup the plugin records the fixture
function and its arguments in a placeholder (``_Deferred``); at the call the kernel's main
task sets the placeholders up in pytest's order (a placeholder among another's arguments
becomes its value), runs the test, then finishes the yielding fixtures in reverse order.
An error in that finish is reported by pytest as an error at the test's teardown, as for
a synchronous fixture, and does not hide the test's own outcome.
Fixtures and test share one kernel, so a fixture may spawn tasks, open servers, hold
sockets the test uses. Limits follow, each refused with an error that names the
fixture: an async fixture is function-scoped (a kernel lives for one test); a
synchronous fixture cannot take an async one (it is set up before the kernel starts),
nor can ``request.getfixturevalue`` ask for one once the kernel runs; and an async
fixture's ``MockClock`` cannot be the kernel's clock (return it from a synchronous one).
An async fixture of a test class runs on the test's instance, as a synchronous one does.

Tasks left running. When the test and its fixtures are done, the tasks they left
running (a server in ``accept``, a sleeper) are cancelled, and their ``finally`` blocks
run before the kernel ends: a test never waits for them. A task that crashed and was
never joined fails a test that passed otherwise, with its exception (in an exception
group of all such tasks): outside a test the kernel only logs it, and an assertion that
failed in a spawned task would pass unseen. An error in an async fixture's setup fails
the test (it is set up in the test's call) rather than erroring it.

Cost. Loading the plugin imports pytest and the standard library only (on 3.10 also the
``exceptiongroup`` backport, which pytest uses there); ``plait.coro`` is imported by the
first test the plugin runs, so a test run without such tests pays nothing.
"""

from __future__ import annotations

import functools
import inspect
import sys
import unittest
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest.fixtures import SubRequest

if sys.version_info < (3, 11):  # a dependency of pytest there too
    from exceptiongroup import BaseExceptionGroup

__all__ = ["plait_autojump_clock", "plait_mock_clock"]

# Markers of other async test plugins: a test carrying one belongs to that plugin.
_FOREIGN_MARKERS = ("asyncio", "trio", "anyio", "curio", "tornado", "gen_test", "twisted")
_OPTIONS = ("clock", "slow_step", "max_threads")


class _Deferred:
    """An async fixture of a plait test, recorded at pytest's setup and set up inside the
    test's kernel; ``value`` holds its result there."""

    __slots__ = ("name", "func", "kwargs", "value", "generator")

    def __init__(self, name: str, func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.name = name
        self.func = func
        self.kwargs = kwargs
        self.value: Any = None
        self.generator: Any = None

    def __repr__(self) -> str:
        return f"<async fixture {self.name!r}, set up inside the test's plait kernel>"

    async def set_up(self) -> None:
        kwargs = {name: _value(arg) for name, arg in self.kwargs.items()}
        if not inspect.isasyncgenfunction(self.func):
            self.value = await self.func(**kwargs)
            return
        self.generator = self.func(**kwargs)
        try:
            self.value = await self.generator.__anext__()
        except StopAsyncIteration:
            self.generator = None
            raise ValueError(f"async fixture {self.name!r} did not yield a value") from None

    async def tear_down(self) -> None:
        try:
            await self.generator.__anext__()
        except StopAsyncIteration:
            return
        await self.generator.aclose()
        pytest.fail(f"async fixture {self.name!r} has more than one 'yield'", pytrace=False)


_DEFERRED = pytest.StashKey[list[_Deferred]]()
_STARTED = pytest.StashKey[bool]()  # the test's kernel runs: too late to defer a fixture


def _value(arg: Any) -> Any:
    return arg.value if isinstance(arg, _Deferred) else arg


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "plait(clock=None, slow_step=None, max_threads=16): run this async def test as the "
        "main task of a plait.coro kernel; clock='autojump', 'mock' or a MockClock runs the "
        "kernel's timers on a mock clock",
    )


def _claimed(item: pytest.Item) -> bool:
    """Whether this plugin runs ``item``: an ``async def`` test no other plugin claims."""
    if not isinstance(item, pytest.Function):
        return False
    if item.cls is not None and issubclass(item.cls, unittest.TestCase):
        return False  # unittest runs its own (IsolatedAsyncioTestCase: on asyncio)
    if not (inspect.iscoroutinefunction(item.obj) or _hypothesis_body(item.obj)):
        return False
    return not any(item.get_closest_marker(name) for name in _FOREIGN_MARKERS)


def _hypothesis_body(test: Any) -> Any:
    """The ``async def`` body of a hypothesis ``@given`` test, or None."""
    body = getattr(getattr(test, "hypothesis", None), "inner_test", None)
    return body if inspect.iscoroutinefunction(body) else None


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: SubRequest) -> Any:
    """Defer an async fixture of a plait test into its kernel; refuse what cannot be."""
    item = getattr(request, "_pyfuncitem", None)
    if item is None or not _claimed(item):
        return None
    func = fixturedef.func
    if not (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)):
        for name in fixturedef.argnames:
            if isinstance(request.getfixturevalue(name), _Deferred):
                pytest.fail(
                    f"fixture {fixturedef.argname!r} is synchronous but takes the async "
                    f"fixture {name!r}, which plait sets up later, inside the test's kernel: "
                    f"make {fixturedef.argname!r} async too",
                    pytrace=False,
                )
        return None
    if fixturedef.scope != "function":
        pytest.fail(
            f"async fixture {fixturedef.argname!r} has scope {fixturedef.scope!r}, but "
            "plait runs each test in a kernel of its own: an async fixture must be "
            "function-scoped (a synchronous fixture of a wider scope is fine)",
            pytrace=False,
        )
    if item.stash.get(_STARTED, False):
        pytest.fail(
            f"async fixture {fixturedef.argname!r} was asked for after the test's kernel "
            "started (request.getfixturevalue in an async test or fixture): plait sets "
            "async fixtures up before the test runs; name it among the test's arguments",
            pytrace=False,
        )
    kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
    deferred = _Deferred(fixturedef.argname, _bound(func, request.instance), kwargs)
    fixturedef.cached_result = (deferred, fixturedef.cache_key(request), None)
    item.stash.setdefault(_DEFERRED, []).append(deferred)
    return deferred


def _bound(func: Callable[..., Any], instance: Any) -> Callable[..., Any]:
    """A fixture function defined in the test's class, bound to the test's instance, as
    pytest binds a synchronous one: pytest may hand it over bound to the instance it
    made at collection, or (older pytest) not bound at all."""
    if instance is None:
        return func
    owner = getattr(func, "__self__", None)
    if owner is not None:
        return func.__func__.__get__(instance) if isinstance(instance, type(owner)) else func
    if getattr(type(instance), func.__name__, None) is func:
        return func.__get__(instance)
    return func


def _kernel_options(item: pytest.Function) -> dict[str, Any]:
    """``plait.coro.run``'s keyword arguments for ``item``, from its marker and fixtures."""
    from plait.coro import MockClock

    marker = item.get_closest_marker("plait")
    args, options = (marker.args, dict(marker.kwargs)) if marker is not None else ((), {})
    unknown = sorted(set(options) - set(_OPTIONS))
    if args or unknown:
        pytest.fail(
            f"@pytest.mark.plait takes only the keyword options {', '.join(_OPTIONS)}; got "
            f"{args!r} {unknown!r}",
            pytrace=False,
        )
    clock = options.get("clock")
    if clock == "autojump":
        clock = MockClock(autojump_threshold=0)
    elif clock == "mock":
        clock = MockClock()
    elif isinstance(clock, MockClock):  # a template: each test starts on a clock of its own
        clock = MockClock(clock.rate, clock.autojump_threshold, clock.current_time())
    elif clock is not None:
        pytest.fail(
            f"@pytest.mark.plait(clock=...) takes 'autojump', 'mock' or a MockClock, got "
            f"{clock!r}",
            pytrace=False,
        )
    fixtures = {name: v for name, v in item.funcargs.items() if isinstance(v, MockClock)}
    clocks = {id(c): c for c in [clock, *fixtures.values()] if c is not None}
    if len(clocks) > 1:
        pytest.fail(
            f"test {item.name!r} gets more than one MockClock (from "
            f"{'the marker and ' if clock is not None else ''}the fixtures "
            f"{', '.join(sorted(fixtures))}); its kernel runs on one clock",
            pytrace=False,
        )
    options["clock"] = next(iter(clocks.values()), None)
    return options


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a plait test: its async fixtures, the test, their teardown, in one kernel."""
    if not _claimed(pyfuncitem):
        return None
    from plait import coro
    from plait.coro import traps

    options = _kernel_options(pyfuncitem)
    deferred = pyfuncitem.stash.get(_DEFERRED, [])
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    body = _hypothesis_body(pyfuncitem.obj)
    if body is not None:
        _run_examples(pyfuncitem, body, args, bool(deferred))
        return True

    teardown_errors: list[BaseException] = []

    async def main() -> None:
        pyfuncitem.stash[_STARTED] = True
        traps.kernel().kept_crashes = []  # see _raise_crashes
        ready: list[_Deferred] = []
        try:
            for fixture in deferred:
                await fixture.set_up()
                ready.append(fixture)
                _refuse_late_clock(fixture)
            await pyfuncitem.obj(**{name: _value(arg) for name, arg in args.items()})
        finally:
            for fixture in reversed(ready):
                if fixture.generator is not None:
                    try:
                        await fixture.tear_down()
                    except BaseException as e:  # the other fixtures still finish
                        teardown_errors.append(e)
            _cancel_left_behind()
        _raise_crashes()  # once the test passed: its own failure comes first

    main.__qualname__ = pyfuncitem.name  # the main task's name, in ps() and errors
    try:
        coro.run(main, **options)
    finally:
        # pytest reports a finalizer's error as an error at teardown, as for a
        # synchronous fixture, and the test's own outcome stays its own.
        for error in reversed(teardown_errors):
            pyfuncitem.addfinalizer(functools.partial(_reraise, error))
    return True


def _reraise(error: BaseException) -> None:
    raise error


def _refuse_late_clock(fixture: _Deferred) -> None:
    """An async fixture's MockClock comes when the test's kernel already runs on its own
    clock: it cannot drive it, and a test that trusted it would wait in real time."""
    from plait.coro import MockClock, traps

    clock = traps.kernel().mock_clock
    if isinstance(fixture.value, MockClock) and fixture.value is not clock:
        pytest.fail(
            f"async fixture {fixture.name!r} returned a MockClock, but the test's kernel "
            "had started on " + ("real time" if clock is None else "another clock") + ": "
            "make the fixture synchronous, so that the kernel starts on its clock",
            pytrace=False,
        )


def _raise_crashes() -> None:
    """Fail the test with the errors of the tasks it spawned that crashed and were never
    joined: outside a test the kernel logs them, and a failed assertion in a spawned task
    would pass unseen."""
    from plait.coro import traps

    crashed = [task for task in traps.kernel().kept_crashes or () if not task._observed]
    for task in crashed:
        task._observed = True
    if crashed:
        raise BaseExceptionGroup(
            "tasks of the test crashed and were never joined: "
            + ", ".join(f"task {task.id} ({task.name})" for task in crashed),
            [task._exception for task in crashed],
        )


def _cancel_left_behind() -> None:
    """Cancel the tasks the test and its fixtures left running (their ``finally``
    blocks run before the kernel ends): a server task left in ``accept`` would
    otherwise keep the test from ending, and a sleeper would make it last longer."""
    from plait.coro import TaskCancelled, traps

    kernel = traps.kernel()
    for task in list(kernel.tasks.values()):
        if task is not kernel.current:
            kernel.cancel(task, TaskCancelled("the test ended: a task it left running"))


def _run_examples(item: pytest.Function, body: Any, args: dict[str, Any], deferred: bool) -> None:
    """A hypothesis test: each example runs in a kernel of its own (with a new clock when
    the marker names one), through hypothesis' ``inner_test`` hook."""
    from plait import coro

    if deferred:
        pytest.fail(
            f"test {item.name!r} runs once per hypothesis example, each in a kernel of its "
            "own, but its async fixtures are set up once: give a @given test synchronous "
            "fixtures only",
            pytrace=False,
        )

    def example(*example_args: Any, **example_kwargs: Any) -> None:
        test = functools.partial(body, *example_args, **example_kwargs)
        coro.run(test, **_kernel_options(item))

    handle = item.obj.hypothesis
    handle.inner_test = example
    try:
        item.obj(**args)
    finally:
        handle.inner_test = body


@pytest.fixture
def plait_mock_clock() -> Any:
    """A stopped ``MockClock`` (time moves by its ``jump()``); the test's kernel runs on it."""
    from plait.coro import MockClock

    return MockClock()


@pytest.fixture
def plait_autojump_clock() -> Any:
    """A ``MockClock`` that jumps to the next timer whenever the test's kernel idles."""
    from plait.coro import MockClock

    return MockClock(autojump_threshold=0)
