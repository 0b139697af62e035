"""Thin adapters that put plait under libraries users already use.

- ``plait.integrations.joblib``: ``Parallel(backend="plait")`` on plait's Pool.

The other libraries (tqdm's ``process_map``, dask's process scheduler, pebble, the
standard ``concurrent.futures``) need no adapter: they run on plait under
``plait.patch()`` or ``python -m plait run`` (docs/under-libraries.md). Each module here
imports its library, so none is imported by ``import plait.integrations``.
"""
