"""Mémoire: a transparent, OpenAI-compatible LLM proxy with long-term memory.

The Python SDK::

    from memoire import Memoire

    memoire = Memoire()  # MEMOIRE_API_KEY, MEMOIRE_BASE_URL
    client = memoire.wrap(openai.OpenAI())
"""

from memoire.sdk import Memoire, MemoireAPIError

__version__ = "0.1.0"

__all__ = ["Memoire", "MemoireAPIError", "__version__"]
