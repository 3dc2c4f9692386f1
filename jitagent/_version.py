"""The version of the ``jitagent-core`` distribution: its one source (``pyproject.toml`` reads it)."""

__version__ = "0.1.0"
DISTRIBUTION = "jitagent-core"   # the name pip knows; the import name is ``jitagent``
