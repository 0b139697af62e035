"""What ``import plait.coro`` costs: asyncio, plait.pool and plait.process load only when a
name that needs them is first used (the asyncio bridges, ``run_in_process``, the
subprocesses), each time in a fresh interpreter, where nothing was imported before."""

from __future__ import annotations

import json

import pytest

from tests.support import run_python

pytestmark = pytest.mark.timeout(120)

HEAVY = ("asyncio", "plait.pool", "plait.process")

PROGRAM = """if True:
    import json, sys
    heavy = {heavy!r}
    def loaded():
        return [name for name in heavy if name in sys.modules]
    import plait.coro
    steps = {{"import plait.coro": loaded()}}
    {then}
    print(json.dumps(steps))
    """


def _loaded_after(then: str) -> dict[str, list[str]]:
    program = PROGRAM.format(heavy=HEAVY, then=then)
    done = run_python("-c", program, timeout=60, sys_path=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_import_plait_coro_loads_neither_asyncio_nor_the_pool_nor_processes():
    steps = _loaded_after(
        "from plait.coro import run, sleep, UniversalQueue, UniversalEvent\n"
        "    async def main():\n"
        "        q = UniversalQueue()\n"
        "        q.put(1)\n"
        "        await sleep(0)\n"
        "        return await q.get_async()\n"
        "    assert run(main) == 1\n"
        "    steps['a kernel and a universal queue'] = loaded()"
    )
    assert steps == {"import plait.coro": [], "a kernel and a universal queue": []}


@pytest.mark.parametrize(
    ("name", "brings"),
    [
        ("from_asyncio", ["asyncio"]),
        ("to_asyncio", ["asyncio"]),
        ("BridgeCancelled", ["asyncio"]),
        ("run_in_process", []),  # the pool is imported by the first call, which starts it
        ("Popen", ["plait.process"]),
        ("run_process", ["plait.process"]),
    ],
)
def test_a_name_loads_what_it_needs_when_first_used(name, brings):
    steps = _loaded_after(
        f"from plait.coro import {name}\n"
        f"    steps['first use'] = loaded()\n"
        f"    assert getattr(plait.coro, {name!r}) is {name}"
    )
    assert steps["import plait.coro"] == []
    assert steps["first use"] == brings


def test_every_name_of_all_is_there_and_in_dir():
    steps = _loaded_after(
        "names = plait.coro.__all__\n"
        "    steps['not in dir'] = sorted(set(names) - set(dir(plait.coro)))\n"
        "    steps['missing'] = [n for n in names if getattr(plait.coro, n, None) is None]\n"
        "    try:\n"
        "        plait.coro.no_such_name\n"
        "    except AttributeError as e:\n"
        "        steps['error'] = [str(e)]"
    )
    assert steps["missing"] == [] and steps["not in dir"] == []
    assert steps["error"] == ["module 'plait.coro' has no attribute 'no_such_name'"]
