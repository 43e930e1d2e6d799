"""llamajit's server side: CLI, HTTP app, schemas, engine and scheduler."""

__version__ = "0.1.0"
