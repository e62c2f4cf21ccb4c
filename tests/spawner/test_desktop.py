"""Desktop datalabs: what a ``kind: desktop`` entry becomes locally and on Kubernetes.

The browser test (tests/e2e/test_desktop.py) shows TOPCAT itself; these check the pieces: the
environment that carries the application, the profile KubeSpawner gets, the pod it builds
(validated against the Kubernetes schema), and that an earlier desktop leaves nothing in the
environment of the user's next, notebook, session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes_validate
from kubernetes_asyncio.client import ApiClient

from datalabs_spawner.catalogue import Catalogue, build_datalab
from datalabs_spawner.desktop import COMMAND_ENV, SESSION_SCRIPT, XSTARTUP_ENV, desktop_env
from datalabs_spawner.examples import install_examples
from datalabs_spawner.options import Who, make_profile_list, resolve_choice
from datalabs_spawner.spawner import DatalabsKubeSpawner, DatalabsLocalSpawner

pytest_plugins = ["tests.k8s_fixtures"]

REPO = Path(__file__).resolve().parents[2]
DEMO_CATALOGUE = REPO / "config" / "catalogue"


def datalab(kind="desktop", **doc):
    base = {"title": "T", "kind": kind, "image": "img:1"}
    if kind != "notebook":
        base["default_url"] = "/desktop/"
    return build_datalab({**base, **doc}, "m", "lab", "m/datalabs/lab.yaml")


def test_desktop_env_carries_the_application_as_json_and_the_session_script():
    env = desktop_env(datalab(command=["topcat", "-f", "votable"]), str(SESSION_SCRIPT))
    assert env == {
        COMMAND_ENV: '["topcat", "-f", "votable"]',
        XSTARTUP_ENV: str(SESSION_SCRIPT),
    }
    # Without a command the image's own default application is kept (no empty override)
    assert desktop_env(datalab()) == {}
    assert desktop_env(datalab("notebook", command=["x"])) == {}


def test_session_script_is_an_executable_that_vncserver_can_run():
    assert os.access(SESSION_SCRIPT, os.X_OK)
    assert SESSION_SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


def test_demo_topcat_profile_has_image_default_url_and_app_in_the_environment():
    catalogue = Catalogue([DEMO_CATALOGUE])
    catalogue.refresh()
    topcat = catalogue.datalabs.entries["topcat"]
    [profile] = make_profile_list([topcat])
    assert profile["kubespawner_override"] == {
        "image": "datalabs/topcat:4.8",
        "default_url": "/desktop/",
        "cpu_limit": 1.0,
        "mem_limit": "2G",
        # Not "cmd": that would replace jupyterhub-singleuser with TOPCAT and no server would
        # answer the hub.
        "environment": {COMMAND_ENV: '["topcat"]'},
    }


def test_profile_doubles_braces_for_kubespawner_and_keeps_cmd_for_other_kinds():
    [desk] = make_profile_list([datalab(command=["app", "--title={user}"])])
    assert desk["kubespawner_override"]["environment"] == {
        COMMAND_ENV: '["app", "--title={{user}}"]'
    }
    [app] = make_profile_list([datalab("app", command=["voila", "--port=8888"])])
    assert app["kubespawner_override"]["cmd"] == ["voila", "--port=8888"]
    assert "environment" not in app["kubespawner_override"]


async def test_kubernetes_pod_of_the_topcat_datalab(k8s_api):
    spawner = k8s_api.make_spawner(
        DatalabsKubeSpawner,
        user="alice",
        catalogue_dirs=[str(DEMO_CATALOGUE)],
        archive_claim="datalabs-archive",
    )
    spawner.user_options = {"profile": "topcat"}
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    container = pod.spec.containers[0]
    assert container.image == "datalabs/topcat:4.8"
    # The image's own command (jupyterhub-singleuser) starts; TOPCAT comes from the environment
    assert container.command is None
    env = {e.name: e.value for e in container.env}
    assert json.loads(env[COMMAND_ENV]) == ["topcat"]
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/desktop/"
    assert {m.mount_path for m in container.volume_mounts} >= {"/home/jovyan/data/esasky-catalogue"}
    manifest = ApiClient().sanitize_for_serialization(pod)
    kubernetes_validate.validate(manifest, "1.30", strict=True)


async def test_kubernetes_notebook_after_a_desktop_has_no_application_left(k8s_api):
    # JupyterHub keeps one spawner per user across sessions, and KubeSpawner merges profile
    # environments into it: the desktop's application must not reach the next session.
    spawner = k8s_api.make_spawner(
        DatalabsKubeSpawner, user="alice", catalogue_dirs=[str(DEMO_CATALOGUE)]
    )
    spawner.user_options = {"profile": "topcat", "volumes": []}
    await spawner.load_user_options()
    assert COMMAND_ENV in spawner.environment
    spawner.user_options = {"profile": "astronomy-lab", "volumes": []}
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    assert COMMAND_ENV not in {e.name for e in pod.spec.containers[0].env}
    assert pod.spec.containers[0].image == "datalabs/astronomy-lab:1.0"


def test_local_desktop_environment_does_not_outlive_the_desktop_session(hub_user, tmp_path):
    user = hub_user("alice")
    spawner = user._new_spawner(
        "",
        spawner_class=DatalabsLocalSpawner,
        catalogue_dirs=[str(DEMO_CATALOGUE)],
        pipeline_run_slots_dir=str(tmp_path / "run-slots"),
    )
    catalogue = Catalogue([DEMO_CATALOGUE])
    catalogue.refresh()
    spawner.choice = resolve_choice({"profile": "topcat"}, catalogue, Who("alice"))
    env = spawner.get_env()
    assert json.loads(env[COMMAND_ENV]) == ["topcat"]
    assert env[XSTARTUP_ENV] == str(SESSION_SCRIPT)
    spawner.choice = resolve_choice({"profile": "astronomy-lab"}, catalogue, Who("alice"))
    env = spawner.get_env()
    assert COMMAND_ENV not in env
    # JupyterLab's Desktop launcher still gets our session script (openbox, and the watchdog)
    assert env[XSTARTUP_ENV] == str(SESSION_SCRIPT)


def test_examples_are_copied_once_and_never_overwrite_the_users_files(tmp_path):
    source = tmp_path / "examples" / "lab"
    (source / "sub").mkdir(parents=True)
    (source / "a.ipynb").write_text("original a")
    (source / "sub" / "b.txt").write_text("original b")
    secret = tmp_path / "secret"
    secret.write_text("not an example")
    (source / "link").symlink_to(secret)
    target = tmp_path / "workspace" / "examples" / "lab"

    copied = install_examples(source, target)
    assert sorted(p.relative_to(target).as_posix() for p in copied) == ["a.ipynb", "sub/b.txt"]
    assert not (target / "link").exists()  # links are not followed out of the folder

    (target / "a.ipynb").write_text("edited by the user")
    (target / "sub" / "b.txt").unlink()
    copied = install_examples(source, target)
    assert [p.relative_to(target).as_posix() for p in copied] == ["sub/b.txt"]
    assert (target / "a.ipynb").read_text() == "edited by the user"
    assert install_examples(tmp_path / "missing", target) == []


def test_demo_examples_exist_for_the_datalabs_that_open_them():
    catalogue = Catalogue([DEMO_CATALOGUE])
    catalogue.refresh()
    coverage = catalogue.datalabs.entries["juice-coverage"]
    opened = coverage.default_url.removeprefix("/lab/tree/examples/")
    assert (REPO / "config" / "notebooks" / opened).is_file()
    assert (REPO / "config" / "notebooks" / "planetary-lab" / "rosetta_pds4.ipynb").is_file()
