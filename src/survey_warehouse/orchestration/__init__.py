"""Orchestration: the DAGs' steps and callbacks, and running them; the top of the package (the command line,
survey_warehouse.cli, stands on it).

- `pipeline`: the steps of the survey_waves DAG as plain functions
- `runtime`: the environment Airflow and dbt run with, the dbt manifest, Airflow's metadata and pool (`make setup`)
- `runner`: running the DAGs in this process (`make run`) or in a fresh one
- `notify`: the DAGs' callbacks and the overdue check: telling a wave's owner
- `watcher_events`: fewer XCom writes from the dbt build
- `local_airflow`: Airflow on the embedded default in one command (`make airflow`)
"""
