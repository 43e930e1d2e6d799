"""Chat templates: from a list of messages to the prompt a model was trained on.

See template.py for the choice of template and rendering, rendered.py for tokenizing a prompt
without letting message text become control tokens, worker.py for why templates run in a child
process, builtin.py for the templates selectable by name.
"""

from .builtin import builtin_names
from .rendered import Rendered
from .template import ChatTemplate, TemplateError, TemplateRaised

__all__ = ["ChatTemplate", "Rendered", "TemplateError", "TemplateRaised", "builtin_names"]
