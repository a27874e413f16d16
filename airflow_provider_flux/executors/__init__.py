"""Airflow task instances run as Flux jobs (:class:`.flux.FluxExecutor`)."""
