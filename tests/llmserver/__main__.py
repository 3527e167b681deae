"""Run the scripted server on its own: ``python -m tests.llmserver`` prints its base URL, then serves."""

from __future__ import annotations

import sys
import threading

from tests.llmserver.server import ScriptedLLMServer


def main() -> int:
    with ScriptedLLMServer() as server:
        print(server.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
