"""The Kubernetes adapter: the kopf operator that runs ResearchRuns in a cluster, each node a Job.

Modules, from the outside in:

- ``running``: start kopf (``serve``), for the CLI and ``python -m kubescientist.adapters.kube``.
- ``handlers``: the kopf handlers (a daemon per ResearchRun, an index of ExperimentNodes, nudges).
- ``reconciling``: one pass over one run: fold finished pods, ask the engine for work, create, report.
- ``outcomes``: what a node's Job and pod say (succeeded, buggy, infrastructure, stalled), pure.
- ``statuses``: ExperimentNode and ResearchRun status and conditions, pure.
- ``manifests``: the ExperimentNodes and Jobs the operator creates, pure.
- ``templates``: a run's template read from a ConfigMap or S3, stored content-addressed.
- ``persistence``: the engine's state in S3 (journal, bookkeeping), loaded after a restart.
- ``records``: the run folder the writeup and review pods read, packed.
- ``storage``: the run's objects in S3 (journal, code, outputs, paper) and presigned URLs.
- ``clients``: the Kubernetes API calls, as JSON.
- ``config``: the operator's installation settings (images, timings), from the environment.
- ``naming``: names, labels and annotations.
- ``publishing``: the entrypoint of the writeup and review pods.

Run the operator with ``python -m kubescientist.adapters.kube``.
"""
