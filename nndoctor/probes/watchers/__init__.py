"""Live watchers: one file per concern of a live training run, each a ``Watcher`` (``base.py``) that
only measures. The Monitor hub (``nndoctor/live/``) feeds them events; ``nndoctor/live/registry.py``
lists them next to the judges (``nndoctor/checks/``) that read what they measured."""
