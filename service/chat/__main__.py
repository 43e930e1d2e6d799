"""Entry point of the render worker process (see worker.py); not a user command."""

from .worker import serve

serve()
