"""DAGs that submit jobs with FluxSubmitJobOperator. The run conf gives the command (what
real Flux runs) and the scenario (what the simulated instance replays)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator

START = datetime(2026, 1, 1)
# [START howto_simulator_scenario]
REQUEST = {
    "command": "{{ dag_run.conf['command'] }}",
    "duration": "{{ dag_run.conf.get('duration', '') }}",
    "environment": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
    "attributes": {"system.simulator.scenario": "{{ dag_run.conf.get('scenario', 'success') }}"},
}
# [END howto_simulator_scenario]

for dag_id, options in (
    ("flux_submit", {}),
    ("flux_submit_in_worker", {"deferrable": False, "poll_interval": 0.2}),
    ("flux_submit_small_log", {"output_limit": 8}),
    ("flux_submit_output_at_end", {"output_limit": 24, "stream_output": False}),
):
    with DAG(dag_id, schedule=None, start_date=START, catchup=False):

        @task
        def after(jobid: int) -> str:
            return f"job {jobid} done"

        after(FluxSubmitJobOperator(task_id="run", job_name=dag_id, **REQUEST, **options).output)

# Output to a file (what `flux submit --output=FILE` asks the job shell for).
with DAG("flux_submit_to_file", schedule=None, start_date=START, catchup=False):
    FluxSubmitJobOperator(
        task_id="run",
        command="echo to the file",
        environment={"PATH": "/usr/bin:/bin"},
        attributes={
            "system.shell.options.output.stdout": {
                "type": "file",
                "path": "{{ dag_run.conf['path'] }}",
            },
            "system.simulator.output": {"lines": 1, "redirect": "{{ dag_run.conf['path'] }}"},
        },
    )

with DAG("flux_submit_rejected", schedule=None, start_date=START, catchup=False):
    FluxSubmitJobOperator(task_id="run", jobspec='{"version": 1, "tasks": [], "attributes": {}}')

with DAG("flux_submit_timeout", schedule=None, start_date=START, catchup=False):
    FluxSubmitJobOperator(
        task_id="run",
        command="sleep 120",
        environment={"PATH": "/usr/bin:/bin"},
        # The simulated job runs until cancelled, like the real `sleep`.
        attributes={"system.simulator.hold_before": "finish"},
        execution_timeout=timedelta(seconds=2),
    )

# A job array: the job at index 7 exits 3 (real Flux runs the command; the simulator
# plays the scenario mapped to the job's FLUX_JOB_CC).
ARRAY_COMMAND = "sh -c 'echo sample {cc}; test $FLUX_JOB_CC -ne 7 || exit 3'"
for dag_id, options in (
    ("flux_submit_array", {}),
    ("flux_submit_array_in_worker", {"deferrable": False, "poll_interval": 0.2}),
):
    with DAG(dag_id, schedule=None, start_date=START, catchup=False):

        @task
        def count(jobids: list[int]) -> int:
            return len(jobids)

        array = FluxSubmitJobOperator(
            task_id="run",
            command=ARRAY_COMMAND,
            array=20,
            job_name="sample-{cc}",
            environment={"PATH": "/usr/local/bin:/usr/bin:/bin"},
            attributes={"system.simulator.scenarios": {"7": "exit-nonzero"}},
            **options,
        )
        count(array.output)
