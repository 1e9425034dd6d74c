"""Views of a Report: terminal (rich), HTML (self-contained), and the JSON schema."""
