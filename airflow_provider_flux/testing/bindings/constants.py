"""The subset of ``flux.constants`` that the provider uses, with flux-core's values."""

FLUX_POLLIN = 1
FLUX_POLLOUT = 2
FLUX_POLLERR = 4
FLUX_REACTOR_NOWAIT = 1
FLUX_REACTOR_ONCE = 2
FLUX_JOB_EVENT_WATCH_WAITCREATE = 1
FLUX_JOB_URGENCY_DEFAULT = 16
