"""
### survey_waves

Loads one wave of the survey of digitalisation leadership in Finland's 20 largest cities per run, and publishes
the marts when every gate passes.

plan -> load the file into raw -> GX gate on the raw wave -> accept it as the candidate -> record the build (which
load of every wave it is made from) -> dbt build (Cosmos) -> GX gate on the marts -> publish (the build's
candidates become their waves' current loads). One run per wave year (the year
of the logical date, or the `wave_year` param). A year without a wave spec in config/waves/ (2017), or a wave
whose inputs have not changed since the published marts were built, ends skipped. When any step fails,
`record_failure` keeps the reason with the load; the published marts and the other waves stay as they were.

A run started with `{"defer_build": true}` stops after accepting its load: the load waits as a candidate and the
next run that builds publishes it with its own wave. `make run` uses this to catch up several waves with one
build; when that build fails, it runs each of them again on its own, so only a bad wave is held back.

A wave's file dropped into the inbox (<inbox>/<year>/) starts its wave's run at once (an AssetWatcher, run by
`airflow triggerer`): the run takes the delivery (moved under the run's own name in the inbox, if it is still the
file announced) and reads it there; publishing puts exactly that file at the wave spec's `file:`, and a rejection
leaves it back in the inbox with <file>.rejected.txt beside it saying why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, LoadMode, TestBehavior, TestIndirectSelection
from cosmos.profiles import PostgresUserPasswordProfileMapping
from great_expectations_provider.operators.validate_checkpoint import GXValidateCheckpointOperator

from survey_warehouse.operations.inbox_trigger import inbox_asset
from survey_warehouse.orchestration import notify, pipeline, watcher_events
from survey_warehouse.publishing.assets import SURVEY_MARTS
from survey_warehouse.settings import DBT_PROFILE

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
DBT_TARGET = os.environ.get("SURVEY_DBT_TARGET", "duckdb")  # duckdb (embedded) or postgres (scale-out)
# DuckDB allows one writer: every task that opens it takes the single slot of this pool. PostgreSQL takes many.
watcher_events.install()  # the dbt build writes to XCom only the events its sensors read
WAREHOUSE_POOL = os.environ.get(
    "SURVEY_WAREHOUSE_POOL", "duckdb_warehouse" if DBT_TARGET == "duckdb" else "default_pool"
)


def _producer_first(group: DbtTaskGroup) -> None:
    """The sensors of a watcher-mode group start once its producer (the one `dbt build`) has ended.

    Cosmos wires this for a DbtDag, not for a DbtTaskGroup, where the first sensors become ready with the producer:
    under `airflow dags test` (ready tasks run one at a time, in no fixed order) a sensor started first waits
    forever. The first sensors keep the group's upstream task and run when both are done and one succeeded, so a
    failed build still lets every sensor report its node's state, and a failed raw gate starts none."""
    tasks = list(group.iter_tasks())
    ids = {t.task_id for t in tasks}
    producer = next(t for t in tasks if t.task_id == f"{group.group_id}.dbt_producer_watcher")
    for task_ in tasks:
        task_.pool = producer.pool  # a retried sensor runs dbt itself: it must wait for the warehouse too
        if task_ is not producer and task_.upstream_task_ids.isdisjoint(ids):
            producer >> task_
            task_.trigger_rule = TriggerRule.ALL_DONE_MIN_ONE_SUCCESS


class PostgresProfileMapping(PostgresUserPasswordProfileMapping):
    """Cosmos' PostgreSQL profile, also for a connection without a password, as local servers are set up (trust or
    peer authentication, ~/.pgpass): the password is then PGPASSWORD's, or empty, and libpq looks in ~/.pgpass."""

    required_fields = ["host", "user", "dbname"]  # noqa: RUF012 (as Cosmos declares it)

    def get_dbt_value(self, name: str) -> Any:
        value = super().get_dbt_value(name)
        if name == "password" and value is None:
            return os.environ.get("PGPASSWORD", "")
        return value


# dbt's profile: the DuckDB file from profiles.yml, or PostgreSQL from Airflow's connection `survey_warehouse`
PROFILE = (
    ProfileConfig(
        profile_name=DBT_PROFILE,
        target_name="postgres",
        profile_mapping=PostgresProfileMapping(conn_id="survey_warehouse", profile_args={"schema": "public"}),
    )
    if DBT_TARGET == "postgres"
    else ProfileConfig(
        profile_name=DBT_PROFILE, target_name=DBT_TARGET, profiles_yml_filepath=DBT_PROJECT / "profiles.yml"
    )
)


@dag(
    dag_id="survey_waves",
    # 1 June (the spring field period of a wave has closed), and at once when a wave's file is dropped into the inbox
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 1 6 *", timezone="Europe/Helsinki"), assets=inbox_asset()
    ),
    start_date=pendulum.datetime(2016, 1, 1, tz="Europe/Helsinki"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("SURVEY_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=5),
    },
    params={
        "wave_year": Param(
            None, type=["null", "integer"], description="Load this wave instead of the logical date's year"
        ),
        pipeline.HOLD_OUT_WAITING_PARAM: Param(
            False,
            type="boolean",
            description="Build this wave alone: loads of other waves waiting for a build stay waiting (`make run` "
            "does this when a catch-up's build failed, to find the wave that broke it)",
        ),
        pipeline.CURRENT_LOADS_ONLY_PARAM: Param(
            False,
            type="boolean",
            description="Load nothing: build the marts from every wave's current load, the loads waiting for a build "
            "held out (`make run` does this when a catch-up's build failed: if this build fails too, no new wave's "
            "data is the cause, and the waves are not run again one by one)",
        ),
        pipeline.DEFER_BUILD_PARAM: Param(
            False,
            type="boolean",
            description="Load and gate the wave, then leave it waiting: the next run that builds publishes it with "
            "its own wave (`make run` does this for all but the last of several waves to catch up)",
        ),
    },
    doc_md=__doc__,
    tags=["survey", "warehouse"],
)
def survey_waves() -> None:
    @task(
        task_id=pipeline.PLAN_TASK_ID,
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="What the run has to do: nothing (skipped), rebuild the marts, withdraw the wave from them (its spec "
        "says `withdrawn`), or load the wave's file.",
    )
    def plan_wave(**context: Any) -> dict[str, Any]:
        return pipeline.plan_run(
            pipeline.wave_year_of_run(context),
            pipeline.delivery_of_run(context),
            current_loads_only=bool((context.get("params") or {}).get(pipeline.CURRENT_LOADS_ONLY_PARAM)),
        )

    @task(
        task_id=pipeline.LOAD_TASK_ID,
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="Load the file as delivered into raw (a no-op when it and its reading are unchanged).",
    )
    def load_raw_wave(plan: Any) -> dict[str, Any]:  # the plan's XCom
        return pipeline.load_raw_wave(plan["wave_year"], plan.get("delivery"), plan.get("action"))

    validate_raw_wave = GXValidateCheckpointOperator(
        task_id="validate_raw_wave",
        configure_checkpoint=pipeline.raw_wave_checkpoint_for_run,
        context_type="file",
        configure_file_data_context=pipeline.gx_file_context,
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="Great Expectations gate on exactly this load (expectations/raw_load.json, raw_wave.json).",
    )

    @task(pool=WAREHOUSE_POOL, doc_md="The load passed its gate: the candidate the marts are built from.")
    def accept_raw_wave(loaded: Any) -> str:  # the load's XCom
        return pipeline.accept_raw_wave(loaded)

    @task.short_circuit(
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="Build in this run, unless it was started with `defer_build`: then the load waits for a later run's "
        "build, and every step after this one is skipped.",
    )
    def build_in_this_run(loaded: Any, **context: Any) -> bool:  # the load's XCom
        return pipeline.build_in_this_run(loaded, context)

    @task(
        task_id=pipeline.BEGIN_BUILD_TASK_ID,
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="Record which load of every wave the build is made from, and the dbt project's fingerprint, before "
        "dbt reads anything: staging builds from exactly these loads, and publishing promotes exactly these.",
    )
    def begin_build(loaded: Any, **context: Any) -> dict[str, Any]:  # the load's XCom
        return pipeline.begin_build(loaded, context)

    dbt_build = DbtTaskGroup(
        group_id="dbt_build",
        # partial_parse=False: every build parses the project in its own temporary copy. A parse kept from an earlier
        # build (Cosmos's cache, AIRFLOW__COSMOS__CACHE_DIR) names that build's copy, deleted since, as the folder of
        # every file it re-parsed there: after a seed changed, a later build read the seed from a folder that was gone.
        project_config=ProjectConfig(
            dbt_project_path=DBT_PROJECT,
            manifest_path=DBT_PROJECT / "target" / "manifest.json",
            install_dbt_deps=False,
            partial_parse=False,
        ),
        profile_config=PROFILE,
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.AFTER_EACH),
        # WATCHER: one `dbt build` (the producer, the only task that opens the warehouse) and, per model or seed, a
        # sensor for its run and one for its tests, each reporting its node's own state from the producer's events.
        # The producer is never retried: a retried producer skips itself and would hide a failed build.
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            test_indirect_selection=TestIndirectSelection.BUILDABLE,
            # its error (a full disk, a refused connection, the failed model's message) is kept for record_failure
            setup_operator_args={"retries": 0, "on_failure_callback": pipeline.keep_the_error_of},
        ),
        operator_args={
            "pool": WAREHOUSE_POOL,
            "poke_interval": 1,
            # no dbt.log: it would go to the temporary copy of the project Cosmos deletes after the task, and its
            # debug lines (every query) cost the build a third of its time; the task log has dbt's output
            "dbt_cmd_global_flags": ["--log-level-file", "none"],
        },
    )

    validate_marts = GXValidateCheckpointOperator(
        task_id="validate_marts",
        configure_checkpoint=pipeline.marts_checkpoint_for_run,
        context_type="file",
        configure_file_data_context=pipeline.gx_file_context,
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="Great Expectations gate on the marts as just built (expectations/marts/).",
    )

    @task(
        pool=WAREHOUSE_POOL,
        retries=0,
        on_success_callback=notify.on_published,  # the owner gets a receipt
        on_failure_callback=notify.on_run_failed,
        outlets=[SURVEY_MARTS],  # an asset event per publication: DAGs scheduled on it run after it
        doc_md="Publish the marts (a new file swapped in, or a schema swap) and make the candidate current.",
    )
    def publish_marts(build: Any, **context: Any) -> dict[str, Any]:  # begin_build's XCom
        return pipeline.publish_marts(
            context["run_id"], build, pipeline.delivery_of_run(context), outlet_events=context["outlet_events"]
        )

    @task(
        pool=WAREHOUSE_POOL,
        trigger_rule="one_failed",
        retries=0,
        on_success_callback=notify.on_run_failed,  # the owner hears why, with the reason this task recorded
        on_failure_callback=notify.on_run_failed,
        doc_md="Some step failed: keep the reason with the run's load; nothing is published.",
    )
    def record_failure(**context: Any) -> str:
        return pipeline.record_failure(**context)

    plan = plan_wave()
    loaded = load_raw_wave(plan)
    accepted = accept_raw_wave(loaded)
    build_now = build_in_this_run(loaded)
    build = begin_build(loaded)
    published = publish_marts(build)
    loaded >> validate_raw_wave >> accepted >> build_now >> build >> dbt_build >> validate_marts >> published
    _producer_first(dbt_build)
    # publish_marts records its own failure; it stays a leaf, so a failed run ends failed
    [plan, loaded, validate_raw_wave, accepted, build_now, build, dbt_build, validate_marts] >> record_failure()


survey_waves()
