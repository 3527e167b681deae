"""Local mode: the whole search on one machine, each node a sandboxed subprocess, no cluster, no LLM."""
