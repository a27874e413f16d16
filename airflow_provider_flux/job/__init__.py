"""The Flux job model, with no Airflow in it: job IDs and lists of them, eventlog
events, how a job ended, and its output as lines."""

from airflow_provider_flux.job.ending import JobEnding, describe_wait_status, exit_code
from airflow_provider_flux.job.event import JobEvent, parse_eventlog
from airflow_provider_flux.job.jobid import ENCODINGS, format_jobid, parse_jobid
from airflow_provider_flux.job.jobid_list import pack_jobids, parse_jobids, unpack_jobids
from airflow_provider_flux.job.output import (
    DEFAULT_OUTPUT_LIMIT,
    OutputLines,
    OutputProgress,
    format_output,
)

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "ENCODINGS",
    "JobEnding",
    "JobEvent",
    "OutputLines",
    "OutputProgress",
    "describe_wait_status",
    "exit_code",
    "format_jobid",
    "format_output",
    "pack_jobids",
    "parse_eventlog",
    "parse_jobid",
    "parse_jobids",
    "unpack_jobids",
]
