"""The simulated Flux broker, split by the Flux service it plays, as flux-core splits
``src/modules/``: :mod:`.job_info`, :mod:`.job_manager` (with job-ingest and the
journal), :mod:`.job_list`, and the simulator's own :mod:`.controls`, around the
server in :mod:`.server` that routes requests and posts events.

It serves the RPCs the provider sends to a real broker, with the same semantics
(see ``src/modules/job-info/watch.c`` and ``guest_watch.c`` in flux-core):

- ``job-info.eventlog-watch`` replays an eventlog from its first event, then streams
  new ones; the main eventlog ends (ENODATA) after ``clean``, a guest eventlog
  waits for the job to start and ends once the job is inactive. Unknown job or
  path: ENOENT (a path is waited for with the WAITCREATE flag).
- ``job-info.eventlog-watch-cancel`` ends the named stream with ENODATA.
- ``job-info.lookup`` (eventlogs, and ``jobspec`` as job-ingest stored it),
  ``job-info.stats-get``, ``job-manager.submit`` and ``job-manager.raise`` (what
  ``flux cancel`` sends).
- ``job-list.list``, answered in one response (see :mod:`.job_list`).
- ``job-manager.events-journal`` (see :mod:`.job_manager`), its ``-cancel``, and
  ``job-manager.stats-get`` (the journal's listener count).
- A client that disconnects loses its watchers and journals, as on a real broker.

Requests carry the credentials of a handle opened with ``FLUX_HANDLE_USERID`` /
``FLUX_HANDLE_ROLEMASK`` (a ``cred`` object); one without them comes from the
instance owner. A guest (no owner role) is refused what flux-core 0.88.0 refuses
it: owner-only services, and other users' jobs (see :meth:`.SimulatedBroker.allowed`).

A job's ``attributes.system.simulator`` options shape it: ``scenario`` (the
recording it replays), ``hold_before``, ``private`` and ``output`` (lines its tasks
write while it runs; see :class:`.jobs.OutputOption`).

``sim.*`` topics script it from tests: submit a scenario and hold it before an
event, release it, post an event now, drop every connection.
"""

from airflow_provider_flux.testing.broker.server import SimulatedBroker

__all__ = ["SimulatedBroker"]
