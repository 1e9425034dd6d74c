"""``nndoctor init``: write a deliberately lightweight first model for the user's data.

sources.py reads DATA (with the very loader code the written file will contain), infer.py says what
the data is (task, shapes, classes), render.py writes the file, advice.py says what to do next.
"""
from nndoctor.scaffold.advice import next_steps
from nndoctor.scaffold.infer import Profile, infer_profile
from nndoctor.scaffold.render import Written, write_setup_file
from nndoctor.scaffold.sources import ScaffoldError, Source, open_source

__all__ = ["ScaffoldError", "Source", "open_source", "Profile", "infer_profile", "Written", "write_setup_file",
           "next_steps"]
