"""Run the operator: ``python -m kubescientist.adapters.kube (--namespace NS ... | --all-namespaces)``.

Settings come from ``KUBESCIENTIST_*`` variables (see ``config``); the API credentials from the pod's
service account in a cluster, or from ``$KUBECONFIG`` outside one.
"""

from __future__ import annotations

import argparse
import sys

from kubescientist.adapters.kube.running import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubescientist.adapters.kube", description=__doc__.split("\n")[0])
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", default=[], help="serve this namespace (repeatable; globs)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace")
    parser.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true", help="log each handler call")
    args = parser.parse_args(argv)
    serve(args.namespace, clusterwide=args.all_namespaces, liveness=args.liveness, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
