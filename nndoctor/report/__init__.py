"""The Report (model.py) and its views: terminal (rich), HTML (self-contained), plots, the JSON schema,
and console.py (writing a report out, progress while checks run). Imports nothing above core."""
from nndoctor.report.model import Report

__all__ = ["Report"]
