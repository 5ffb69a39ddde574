"""Stand-in for ml_collections (tests only): the ConfigDict that PXDesign's configs are.
See config_dict.py."""
from .config_dict import ConfigDict  # noqa: F401
