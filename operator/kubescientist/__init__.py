"""kubescientist: an AI Scientist whose experiment tree search runs on Kubernetes or on one machine.

Layers, imported in one direction only (enforced by import-linter contracts in the test suite):
``core`` (pure engine: tree, stages, selection, budgets) <- ``agent`` (LLM work) <- ``adapters``
(the local runner, later the Kubernetes operator) <- ``cli``.
"""

__version__ = "0.1.0"
