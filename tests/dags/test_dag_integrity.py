"""The DAG folder parses cleanly and wires the five stages in order."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"inexchange_dispatch"}


def test_tasks_in_order(dagbag) -> None:
    dag = dagbag.dags["inexchange_dispatch"]
    order = ["preflight", "recheck_waiting", "extract", "validate", "plan_batches", "submit", "await_delivery", "report"]
    assert set(dag.task_ids) == {*order, "watcher"}
    for upstream, downstream in zip(order, order[1:]):
        assert dag.get_task(upstream).downstream_task_ids - {"watcher"} == {downstream}
    assert dag.get_task("report").trigger_rule == "all_done"


def test_a_watcher_turns_the_run_red_when_any_stage_fails(dagbag) -> None:
    """report runs after a failure (all_done) and would leave the run green; the watcher is the other
    leaf, downstream of every stage, and fails whenever one of them did."""
    dag = dagbag.dags["inexchange_dispatch"]
    watcher = dag.get_task("watcher")
    assert watcher.upstream_task_ids == set(dag.task_ids) - {"watcher", "report"}
    assert watcher.trigger_rule == "one_failed"
    assert watcher.retries == 0
    assert {task.task_id for task in dag.tasks if not task.downstream_task_ids} == {"report", "watcher"}


def test_schedule_owns_whole_days(dagbag) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    dag = dagbag.dags["inexchange_dispatch"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.catchup is False
    assert dag.doc_md and "InExchange" in dag.doc_md


def test_operators_and_sensor(dagbag) -> None:
    from inexchange.operators.submit import SubmitInvoicesOperator
    from inexchange.sensors.delivery import DeliveryStatusSensor

    dag = dagbag.dags["inexchange_dispatch"]
    submit = dag.get_task("submit")  # mapped over the batches plan_batches returns
    assert submit.operator_class is SubmitInvoicesOperator
    assert dag.params["batch_size"] == 2000
    sensor = dag.get_task("await_delivery")
    assert isinstance(sensor, DeliveryStatusSensor)


# ---- nothing depends on a setting only the demo makes ------------------------------------------
def _scheduler_view(dag):
    """The DAG as the dag-processor stores it and the scheduler reads it."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_the_submit_tasks_need_no_pool_of_their_own(dagbag) -> None:
    """A fresh Airflow has only default_pool: the submit tasks use it, capped at API_SLOTS at once."""
    dag = _scheduler_view(dagbag.dags["inexchange_dispatch"])
    submit = dag.get_task("submit")
    assert submit.pool == "default_pool"
    assert submit.max_active_tis_per_dag == 4
    assert {task.pool for task in dag.tasks} == {"default_pool"}


def test_every_pool_the_dag_uses_exists_in_a_fresh_airflow(dagbag, airflow_db: Path) -> None:
    """What the scheduler checks before it schedules a task: its pool exists (else "non-existent pool")."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{airflow_db / 'airflow.db'}")  # migrated by `airflow db migrate`, no more
    try:
        with engine.connect() as conn:
            pools = {row[0] for row in conn.execute(text("SELECT pool FROM slot_pool"))}
    finally:
        engine.dispose()
    assert {task.pool for task in _scheduler_view(dagbag.dags["inexchange_dispatch"]).tasks} <= pools


def test_a_team_opts_in_to_a_pool_through_the_airflow_config() -> None:
    """``[inexchange] api_pool`` names a pool the team created; the pool's slots are then the only cap."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import sys, json; from airflow.dag_processing.dagbag import DagBag;"
        "t = DagBag(dag_folder=sys.argv[1]).dags['inexchange_dispatch'].get_task('submit');"
        "print(json.dumps([t.pool, t.max_active_tis_per_dag]))"
    )
    env = {**os.environ, "AIRFLOW__INEXCHANGE__API_POOL": "inexchange_api"}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "inexchange_dispatch.py")],
                         capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["inexchange_api", None]


def test_the_sensor_defers_by_the_dags_own_param(dagbag, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not by ``[operators] default_deferrable``, False in a generated airflow.cfg; a run may turn it off."""
    import copy

    from airflow.sdk import conf

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert conf.getboolean("operators", "default_deferrable") is False
    dag = dagbag.dags["inexchange_dispatch"]
    param = dag.params.get_param("deferrable")
    assert (param.value, param.schema["type"]) == (True, "boolean")

    def rendered(conf: dict) -> tuple[bool, str]:
        sensor = copy.deepcopy(dag.get_task("await_delivery"))
        params = copy.deepcopy(dag.params)
        params.update(conf)
        # as the worker renders it before execute (a dict's get() stands for the Variables)
        sensor.render_template_fields({"params": params.validate(), "var": {"value": {}}})
        sensor._use_rendered_settings()
        return sensor.deferrable, sensor.mode

    assert dag.get_task("await_delivery").deferrable == "{{ params.deferrable }}"
    assert rendered({}) == (True, "poke")
    assert rendered({"deferrable": False}) == (False, "reschedule")


def test_manual_run_params_and_the_report_asset(dagbag) -> None:
    from airflow.sdk import Asset

    dag = dagbag.dags["inexchange_dispatch"]
    assert (dag.params["invoice_numbers"], dag.params["dry_run"], dag.params["retry_rejected"]) == ([], False, True)
    assert dag.get_task("report").outlets == [Asset(name="inexchange_report", group="inexchange")]
    assert [link.name for link in dag.get_task("submit").operator_extra_links] == ["InExchange portal"]


def test_dag_file_has_no_top_level_io() -> None:
    """The DAG file imports neither pandas nor a database driver when parsed."""
    import subprocess
    import sys

    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "bad = [m for m in ('pandas', 'pandera', 'psycopg2', 'lxml') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "inexchange_dispatch.py")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_dag_file_loads_only_the_declarations_of_the_provider() -> None:
    """Parsing imports the operator's and the sensor's classes, not what they do when they run."""
    import subprocess
    import sys

    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('inexchange', 'airflow.providers.standard')))))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "inexchange_dispatch.py")],
                         capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    declarations = {"inexchange.operators.submit", "inexchange.operators.stages", "inexchange.sensors.delivery",
                    "inexchange.links.portal", "inexchange.notifications",
                    # leaves of the standard library only: the arguments' value helpers, the default time zone
                    "inexchange.values", "inexchange.times"}
    packages = {"inexchange", "inexchange.operators", "inexchange.sensors", "inexchange.links",
                "inexchange.get_provider_info"}  # the provider's metadata, should Airflow read it
    assert declarations <= loaded
    provider = {m for m in loaded if m.startswith("inexchange")}
    assert provider - declarations - packages == set()  # no hook, ledger, trigger, API types or run-time modules
    # nor Airflow's Python operator module, which @task would load (about half the parse time)
    assert "airflow.providers.standard.operators.python" not in loaded


def test_delivery_timeout_param_sets_the_sensors_timeout(dagbag) -> None:
    import copy
    from datetime import timedelta

    from airflow.sdk.exceptions import ParamValidationError

    from inexchange.values import as_delivery_timeout

    dag = dagbag.dags["inexchange_dispatch"]
    param = dag.params.get_param("delivery_timeout_minutes")
    assert param.value == 360
    assert param.schema["type"] == "integer" and param.schema["minimum"] == 1
    assert "await_delivery" in param.description and "recheck_waiting" in param.description
    sensor = dag.get_task("await_delivery")
    assert sensor.delivery_timeout == "{{ params.delivery_timeout_minutes * 60 }}"

    def rendered(conf: dict) -> timedelta:
        params = copy.deepcopy(dag.params)
        params.update(conf)
        return as_delivery_timeout(sensor.render_template(sensor.delivery_timeout, {"params": params.validate()}))

    assert rendered({}) == timedelta(hours=6)
    assert rendered({"delivery_timeout_minutes": 15}) == timedelta(minutes=15)
    for bad in (0, "15", 1.5):
        with pytest.raises(ParamValidationError):
            rendered({"delivery_timeout_minutes": bad})


def test_stages_return_their_summaries_and_read_the_run_params(dagbag) -> None:
    dag = dagbag.dags["inexchange_dispatch"]
    # a dict summary is pushed key by key too, as @task does for a function returning a dict
    assert {t: dag.get_task(t).multiple_outputs for t in ("recheck_waiting", "extract", "validate", "plan_batches",
                                                          "report")} == {
        "recheck_waiting": True, "extract": True, "validate": True, "plan_batches": False, "report": True,
    }
    plan, report = dag.get_task("plan_batches"), dag.get_task("report")
    assert (plan.batch_size, plan.dry_run_batches) == ("{{ params.batch_size }}", "{{ params.dry_run }}")
    assert report.fail_on_action_needed == "{{ params.fail_on_action_needed }}"
    assert dag.get_task("submit").expand_input.value.operator is plan  # mapped over plan_batches' XCom
