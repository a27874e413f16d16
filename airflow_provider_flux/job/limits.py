"""How much one request may ask of Flux and of the triggerer, by default.

A DAG run's ``conf`` is user input: a templated job list, job array, jobspec, event
name or job ID comes from whoever may trigger the DAG. Each limit here refuses more,
when the request is parsed, before anything is expanded or submitted. The provider's
``[flux]`` configuration section changes them (``airflow_provider_flux.config``).
"""

from __future__ import annotations

# Jobs one task may wait on or submit (a job list, a job array).
MAX_JOBS = 10_000
# Bytes of one jobspec, as JSON.
MAX_JOBSPEC_BYTES = 1 << 20
# Characters of an event name, an eventlog path, or a job ID as text.
MAX_NAME_LENGTH = 256
# Bytes of a match context, as JSON.
MAX_MATCH_CONTEXT_BYTES = 4096
# Characters of a value echoed into a message.
ECHO_LENGTH = 80


def shorten(text: str, length: int = ECHO_LENGTH) -> str:
    """``text``, cut to about ``length`` characters (saying how long it was) for
    messages and logs: a value from user input is not echoed whole."""
    if len(text) <= length:
        return text
    return f"{text[: length - 20]}... ({len(text)} characters)"
