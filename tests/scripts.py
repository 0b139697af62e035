"""Run one program on the standard module and on plait's face, and compare what it prints."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_on_both(tmp_path, source: str, method: str, timeout: float) -> str:
    """Run ``source`` as a script once importing each module; return the common stdout."""
    outputs = {}
    for module in ("multiprocessing", "plait.multiprocessing"):
        script = tmp_path / f"program_on_{module.replace('.', '_')}.py"
        script.write_text(textwrap.dedent(source.format(module=module)))
        run = subprocess.run(
            [sys.executable, str(script), method],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
        assert run.returncode == 0, f"{module}: {run.stderr}"
        outputs[module] = run.stdout
    assert outputs["plait.multiprocessing"] == outputs["multiprocessing"], outputs
    return outputs["multiprocessing"]
