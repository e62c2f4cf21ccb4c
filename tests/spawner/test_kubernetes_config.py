"""The z2jh values shipped for operators load and select the Datalabs spawner."""

from importlib.metadata import entry_points
from pathlib import Path

import yaml
from traitlets.config import Config

from datalabs_spawner import broker
from datalabs_spawner.spawner import DatalabsKubeSpawner, DatalabsLocalSpawner

REPO = Path(__file__).resolve().parents[2]


def test_values_extra_config_selects_the_datalabs_spawner():
    values = yaml.safe_load((REPO / "config" / "kubernetes" / "values.yaml").read_text())
    snippet = values["hub"]["extraConfig"]["datalabs"]
    c = Config()
    exec(compile(snippet, "values.yaml:hub.extraConfig.datalabs", "exec"), {"c": c})
    assert c.JupyterHub.spawner_class == "datalabs"
    assert c.DatalabsSpawnerMixin.catalogue_dirs == ["/srv/datalabs/catalogue"]
    assert c.DatalabsKubeSpawner.archive_claim == "datalabs-archive"
    # Sessions ask the broker which volumes the user may read: it must be served on this hub.
    assert c.JupyterHub.extra_handlers == broker.default_handlers
    # Every option the snippet sets exists on the spawner (a typo would be silently ignored)
    traits = set(DatalabsKubeSpawner.class_trait_names(config=True))
    for section in ("DatalabsSpawnerMixin", "DatalabsKubeSpawner"):
        assert set(c[section]) <= traits, set(c[section]) - traits
    mounts = values["hub"]["extraVolumeMounts"]
    assert mounts[0]["mountPath"] == "/srv/datalabs/catalogue"


def test_spawner_entry_points_resolve():
    eps = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    assert eps["datalabs"].load() is DatalabsKubeSpawner
    assert eps["datalabs-local"].load() is DatalabsLocalSpawner
