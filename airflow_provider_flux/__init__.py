"""Apache Airflow provider for the Flux resource manager."""

__version__ = "0.5.0"
