"""A Python function called in a Flux job (``@task.flux``): what the job carries in
(the call) and what its output carries back (the result). No Airflow here."""
