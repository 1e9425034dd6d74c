"""The live driver: ``Monitor`` (the hub of the live watchers), ``nndoctor run`` (``runner.py``) and the
events the framework callbacks translate into (``events.py``)."""
