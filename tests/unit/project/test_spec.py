"""The project file: the minimal contract accepted as written, every broken file named by file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from loopline.project import ProjectError, discover, load_file, load_project, model_names, project_names, resolve
from loopline.project.loader import search_roots

pytestmark = pytest.mark.unit

# The contract from the model-projects issue, exactly as written (comments included).
MINIMAL = """\
project: shop                        # [a-z][a-z0-9_]*: names DAGs, assets, store folders, MLflow experiment
start_date: 2021-01-01               # first day of data
sources:                             # raw tables, read one day at a time; {ds} is the day, YYYY-MM-DD
  orders:
    uri: "file:///srv/data/orders/ds={ds}/orders.parquet"
    format: parquet                  # parquet | csv
features:
  version: 1
  keys: [order_id]
  columns:                           # taken as they are from the (only) source table
    - {name: channel, kind: categorical}
    - {name: country, kind: categorical}
    - {name: basket_value, kind: numeric}
    - {name: items, kind: numeric}
models:
  returned:
    task: binary_classification
    label: {column: returned, positive: "yes"}
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / name / "project.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_minimal_file_is_accepted_as_written_with_documented_defaults(tmp_path: Path) -> None:
    project = load_file(write(tmp_path, "shop", MINIMAL))
    model = project.models["returned"]
    assert project.project == "shop" and str(project.start_date) == "2021-01-01"
    assert project.features.version == "1" and project.features.keys == ["order_id"]
    assert project.sources["orders"].kind == "files"
    assert [c.resolved_dtype for c in project.features.columns] == ["string", "string", "float64", "float64"]
    assert model.gate_metric == "roc_auc" and model.higher_is_better
    assert model.training.window_days == 60 and model.training.validation_days == 7
    assert model.drift.psi_bands == (0.1, 0.2) and model.schedules.retrain == "0 4 * * 1"
    assert project.model_features("returned") == ["channel", "country", "basket_value", "items"]
    assert project.label_columns() == ["returned"]


def test_one_naming_scheme_derives_every_name(tmp_path: Path) -> None:
    project = load_file(write(tmp_path, "shop", MINIMAL))
    p, m = project_names(project), model_names(project, "returned")
    assert (p.features_dag, p.features_dataset, p.experiment) == ("shop.features", "shop/features", "loopline/shop")
    assert [m.dag(s) for s in ("score", "drift", "retrain", "rollback")] == [
        "shop.returned.score", "shop.returned.drift", "shop.returned.retrain", "shop.returned.rollback"]
    assert (m.registered_model, m.predictions_dataset, m.drift_dataset) == (
        "shop.returned", "shop/returned/predictions", "shop/returned/drift")
    assert m.tags == ["loopline", "project:shop", "model:returned"]


def _mutate(path: list[Any], value: Any = None, *, delete: bool = False) -> Any:
    def apply(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return apply


BROKEN = [
    # (case, mutation, key path the message must name, words it must say)
    ("unknown key", _mutate(["sourcs"], {}), "sourcs", "did you mean 'sources'"),
    ("unknown nested key", _mutate(["models", "returned", "lable"], {}), "models.returned.lable",
     "did you mean 'label'"),
    ("unknown task", _mutate(["models", "returned", "task"], "multiclas"), "models.returned.task",
     "binary_classification"),
    ("label is a feature", _mutate(["models", "returned", "label", "column"], "channel"),
     "models.returned.label.column", "also a feature column"),
    ("bad dotted path", _mutate(["features", "build"], "features.build"), "features.build", "module:function"),
    ("unknown module", _mutate(["features", "build"], "no_such_module_x:build"), "features.build", "neither a file"),
    ("bad cron", _mutate(["models", "returned", "schedules"], {"retrain": "0 4 * *"}),
     "models.returned.schedules.retrain", "cron"),
    ("bad project name", _mutate(["project"], "Shop-1"), "project", "lower-case"),
    ("empty feature list", _mutate(["features", "columns"], []), "features.columns", "at least 1"),
    ("no positive value", _mutate(["models", "returned", "label", "positive"], delete=True), "models.returned",
     "label.positive is required"),
    ("metric of another task", _mutate(["models", "returned", "metric"], "rmse"), "models.returned", "not a binary"),
    ("infinite PSI band", _mutate(["models", "returned", "drift"], {"psi_bands": [0.1, float("inf")]}),
     "models.returned.drift.psi_bands", "finite"),
    ("negative cooldown", _mutate(["models", "returned", "drift"], {"cooldown_days": -1}),
     "models.returned.drift.cooldown_days", "greater than or equal"),
    ("negative seed", _mutate(["models", "returned", "training"], {"seed": -3}), "models.returned.training.seed",
     "greater than or equal"),
    ("unknown column kind", _mutate(["features", "columns", 0, "kind"], "text"), "features.columns.0.kind", "numeric"),
    ("stray source key", _mutate(["sources", "orders", "table"], "x.y.z"), "sources.orders", "does not apply"),
    ("uri without day", _mutate(["sources", "orders", "uri"], "file:///srv/orders.parquet"), "sources.orders", "{ds}"),
    ("model subset unknown", _mutate(["models", "returned", "features"], ["nope"]), "models.returned.features",
     "not feature columns"),
    ("label is a key", _mutate(["models", "returned", "label", "column"], "order_id"), "models.returned.label.column",
     "key column"),
    ("validation window too long",
     _mutate(["models", "returned", "training"], {"window_days": 7, "validation_days": 7}),
     "models.returned.training", "must be smaller"),
    ("bad model name", _mutate(["models", "Returned Items"], {"task": "regression", "label": {"column": "x"}}),
     "models", "lower-case"),
    ("positive not among label values", _mutate(["models", "returned", "label", "values"], ["no", "maybe"]),
     "models.returned", "not among label.values"),
    ("one label value", _mutate(["models", "returned", "label", "values"], ["yes"]), "models.returned",
     "holds one value"),
    ("label range on a binary", _mutate(["models", "returned", "label", "range"], [0, 1]), "models.returned",
     "label.range applies to regression"),
    ("label values on a regression",
     _mutate(["models", "late"], {"task": "regression", "label": {"column": "delay", "values": [1, 2]}}),
     "models.late", "label.values applies to binary"),
    ("empty label range",
     _mutate(["models", "late"], {"task": "regression", "label": {"column": "delay", "range": [5, 1]}}),
     "models.late", "is empty"),
    ("two sources without a builder", _mutate(["sources", "customers"], {"uri": "file:///c/ds={ds}.csv"}), "",
     "features.build"),
]


@pytest.mark.parametrize(("case", "mutate", "key", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_project_file_gets_a_message_naming_the_file_and_the_key(
    tmp_path: Path, case: str, mutate: Any, key: str, words: str
) -> None:
    doc = yaml.safe_load(MINIMAL)
    mutate(doc)
    path = write(tmp_path, "shop", yaml.safe_dump(doc))
    with pytest.raises(ProjectError) as err:
        load_file(path)
    text = str(err.value)
    assert text.startswith(str(path)), text
    assert f"{key}:" in text if key else True, text
    assert words in text, text
    assert any(k == key or k.startswith(key) for k, _ in err.value.problems), err.value.problems


@pytest.mark.parametrize("text", [
    "project: shop\nsources: [unclosed\n",             # unreadable YAML
    "- just\n- a list\n",                              # not a mapping
    "project: shop\n\tstart_date: 2021-01-01\n",        # a tab
])
def test_unreadable_yaml_names_the_file_and_where(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "shop", text)
    with pytest.raises(ProjectError, match=str(path)):
        load_file(path)


def test_a_broken_project_never_hides_the_others_and_duplicate_names_are_errors(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "shop", MINIMAL)
    write(a, "broken", MINIMAL.replace("task: binary_classification", "task: nope"))
    write(b, "shop_again", MINIMAL)
    write(b, "other", MINIMAL.replace("project: shop ", "project: other "))
    found = {f.path.parent.name: f for f in discover([a, b])}
    assert found["other"].project is not None
    assert found["broken"].error is not None and "models.returned.task" in str(found["broken"].error)
    for name in ("shop", "shop_again"):
        assert found[name].error is not None and "project names must be unique" in str(found[name].error)


def test_projects_are_found_on_loopline_projects_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "mine", "shop", MINIMAL)
    monkeypatch.setenv("LOOPLINE_PROJECTS_PATH", f"{tmp_path / 'nowhere'}:{tmp_path / 'mine'}")
    assert (tmp_path / "mine").resolve() in search_roots()
    assert load_project("shop").project == "shop"
    with pytest.raises(LookupError, match="known projects"):
        load_project("no_such_project")


def test_project_modules_resolve_from_their_own_folder_without_clashing(tmp_path: Path) -> None:
    projects = []
    for name, value in (("one", 1), ("two", 2)):
        folder = tmp_path / name
        text = MINIMAL.replace("project: shop ", f"project: {name} ").replace(
            "features:\n  version: 1\n", "features:\n  version: 1\n  build: \"features:build\"\n")
        write(tmp_path, name, text)
        (folder / "helpers.py").write_text(f"VALUE = {value}\n")
        (folder / "features.py").write_text(textwrap.dedent("""\
            from .helpers import VALUE

            def build(tables, ds):
                return VALUE
        """))
        projects.append(load_file(folder / "project.yaml"))
    assert [resolve(p, "features.build")({}, None) for p in projects] == [1, 2]
    broken = projects[0].model_copy(update={"features": projects[0].features.model_copy(
        update={"build": "features:bulid"})})
    broken._path = projects[0].path
    with pytest.raises(ProjectError, match="did you mean 'build'"):
        resolve(broken, "features.build")


def test_the_readme_reference_is_the_generated_one() -> None:
    from loopline.project.reference import BEGIN, END, reference

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    body = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert body.strip() == reference().strip(), "README is stale: paste `loopline project reference` there"


def test_the_shipped_projects_are_valid_and_flights_is_one_of_them() -> None:
    found = discover(search_roots({}))
    assert "flights" in {f.project.project for f in found if f.project}
    for f in found:
        assert f.error is None, f.error
    flights = next(f.project for f in found if f.project and f.project.project == "flights")
    assert {m.task for m in flights.models.values()} == {"binary_classification", "regression"}
