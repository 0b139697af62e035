"""Targets for spawned children that must stay lean: this module imports only ``sys``,
so what such a child has loaded is what plait loaded (a test module would bring pytest)."""

import sys


def meet_and_report_imports(cond, barrier, conn, names):
    """Notify ``cond``, pass ``barrier``, then send which of ``names`` are loaded."""
    with cond:
        cond.notify_all()
    barrier.wait(30)
    conn.send([name for name in names if name in sys.modules])
    conn.close()
