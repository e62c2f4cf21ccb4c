"""DatalabsKubeSpawner: pod manifests against the official schema, the lifecycle against kmock.

No Kubernetes runs here: every manifest is validated with kubernetes-validate (strict), and the
spawn lifecycle runs against the API emulator of tests/k8s_emulator.py, with the test playing
the kubelet.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_validate.utils import latest_version
from tornado import web

from datalabs_spawner.spawner import DatalabsKubeSpawner
from tests.helpers import datalab_yaml, write

if TYPE_CHECKING:
    from tests.k8s_fixtures import K8sAPI

pytest_plugins = ["tests.k8s_fixtures"]

OPERATOR_VOLUMES = [{"name": "shared", "nfs": {"server": "home.example.org", "path": "/home"}}]
OPERATOR_MOUNTS = [{"name": "shared", "mountPath": "/home/jovyan/shared"}]


@pytest.fixture
def catalogue_dir(tmp_path):
    cat = tmp_path / "catalogue"
    write(
        cat,
        "rosetta/datalabs/planetary.yaml",
        datalab_yaml(
            "Planetary",
            """\
default_url: /lab
resources: {cpu_limit: 2, mem_limit: 4G, mem_guarantee: 1G}
default_volumes: [psa]
options:
  image_versions:
    - {name: "2", image: example/planetary:2, default: true}
    - {name: "1", image: example/planetary:1}
""",
        ),
    )
    write(
        cat,
        "rosetta/volumes/psa.yaml",
        """\
id: psa
title: PSA
source: {type: nfs, server: nfs.example.org, path: /exports/psa}
""",
    )
    write(
        cat,
        "juice/volumes/spice.yaml",
        """\
id: spice
title: SPICE
source: {type: pvc, claim: archive, subPath: "juice/{kernels}"}
""",
    )
    write(
        cat,
        "esasky/volumes/cat.yaml",
        """\
id: cat
title: Catalogue
source: {type: local, path: esasky/cat}
""",
    )
    write(
        cat,
        "rosetta/volumes/secret.yaml",
        """\
id: secret
title: Secret
source: {type: nfs, server: nfs.example.org, path: /exports/secret}
access: {groups: [rosetta-team]}
""",
    )
    return cat


def make(k8s_api: K8sAPI, catalogue_dir, user="alice", groups=(), **traits):
    from tests.k8s_fixtures import MockUser

    # The rclone sidecar is left out here (the emulator serves no Secrets); its pod parts are
    # checked below and on the real API server in tests/k8s/test_rclone_sidecar_on_cluster.py.
    traits.setdefault("rclone_sidecar", False)
    return k8s_api.make_spawner(
        DatalabsKubeSpawner,
        user=MockUser(user, groups=groups),
        catalogue_dirs=[str(catalogue_dir)],
        catalogue_refresh_seconds=0,
        archive_claim="datalabs-archive",
        volumes=list(OPERATOR_VOLUMES),
        volume_mounts=list(OPERATOR_MOUNTS),
        **traits,
    )


async def validated(pod) -> dict:
    """The pod as the API server receives it, checked against the official schema (strict)."""
    async with ApiClient() as client:
        manifest = client.sanitize_for_serialization(pod)
    kubernetes_validate.validate(manifest, latest_version(), strict=True)
    return manifest


async def test_pod_has_read_only_volumes_merged_with_the_operators(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir)
    spawner.user_options = {
        "profile": "planetary",
        "image": "1",
        "volumes": ["psa", "spice", "cat"],
    }
    await spawner.load_user_options()
    pod = await validated(await spawner.get_pod_manifest())
    spec = pod["spec"]
    assert {v["name"]: v for v in spec["volumes"]} == {
        "shared": OPERATOR_VOLUMES[0],
        "dlv-psa": {
            "name": "dlv-psa",
            "nfs": {"server": "nfs.example.org", "path": "/exports/psa", "readOnly": True},
        },
        "dlv-spice": {
            "name": "dlv-spice",
            "persistentVolumeClaim": {"claimName": "archive", "readOnly": True},
        },
        "dlv-cat": {
            "name": "dlv-cat",
            "persistentVolumeClaim": {"claimName": "datalabs-archive", "readOnly": True},
        },
        # the session's own catalogue (test_the_session_gets_the_catalogue_configmap...)
        "datalabs-catalogue": {
            "name": "datalabs-catalogue",
            "configMap": {"name": "datalabs-catalogue", "optional": True},
        },
    }
    [container] = spec["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["shared"] == OPERATOR_MOUNTS[0]
    assert mounts["dlv-psa"] == {
        "name": "dlv-psa",
        "mountPath": "/home/jovyan/data/psa",
        "readOnly": True,
    }
    # Literal braces in a subPath survive KubeSpawner's template expansion
    assert mounts["dlv-spice"] == {
        "name": "dlv-spice",
        "mountPath": "/home/jovyan/data/spice",
        "readOnly": True,
        "subPath": "juice/{kernels}",
    }
    assert mounts["dlv-cat"]["subPath"] == "esasky/cat"
    # The datalab's profile: image version, resources, default URL
    assert container["image"] == "example/planetary:1"
    # KubeSpawner turns "4G" into bytes (binary units)
    assert container["resources"]["limits"] == {"cpu": 2.0, "memory": 4 * 2**30}
    assert container["resources"]["requests"] == {"memory": 2**30}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/lab"
    described = json.loads(env["DATALABS_VOLUMES"])
    assert [(v["id"], v["path"]) for v in described] == [
        ("psa", "/home/jovyan/data/psa"),
        ("spice", "/home/jovyan/data/spice"),
        ("cat", "/home/jovyan/data/cat"),
    ]
    assert env["DATALABS_DATALAB"] == "planetary"


async def test_forbidden_volume_is_refused_and_no_pod_is_made(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir, user="bob")
    spawner.user_options = {"profile": "planetary", "volumes": ["psa", "secret"]}
    with pytest.raises(web.HTTPError) as err:
        await spawner.start()
    assert err.value.status_code == 403
    assert "Volume 'secret'" in str(err.value)
    assert k8s_api.emulator.list_pods(k8s_api.namespace) == []


async def test_group_member_gets_the_restricted_volume(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir, groups=["rosetta-team"])
    spawner.user_options = {"volumes": ["secret"]}
    await spawner.load_user_options()
    pod = await validated(await spawner.get_pod_manifest())
    assert "dlv-secret" in {v["name"] for v in pod["spec"]["volumes"]}


async def test_local_volume_without_archive_claim_is_refused(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir)
    spawner.archive_claim = ""
    spawner.user_options = {"volumes": ["cat"]}
    with pytest.raises(web.HTTPError, match="archive_claim"):
        await spawner.load_user_options()


async def test_lifecycle_start_poll_stop_and_restart_keeps_the_volumes(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir)
    spawner.user_options = {"profile": "planetary", "volumes": ["psa", "spice"]}
    for round_ in range(2):
        k8s_api.start_kubelet(spawner.pod_name)
        async with asyncio.timeout(30):
            url = await spawner.start()
            assert url.startswith("http://")
            assert await spawner.poll() is None
        pod = k8s_api.emulator.get_pod(k8s_api.namespace, spawner.pod_name)
        await validated(pod)
        names = [v["name"] for v in pod["spec"]["volumes"]]
        # the same volumes on the restart, neither lost nor doubled, the operator's kept
        assert sorted(names) == ["datalabs-catalogue", "dlv-psa", "dlv-spice", "shared"], (
            round_,
            names,
        )
        async with asyncio.timeout(30):
            await spawner.stop()
        assert k8s_api.emulator.get_pod(k8s_api.namespace, spawner.pod_name) is None
        assert await spawner.poll() is not None


async def test_form_and_profile_list_follow_the_catalogue(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir, user="bob")
    profiles = spawner.profile_list(spawner)
    assert [p["slug"] for p in profiles] == ["planetary"]
    html = await spawner.get_options_form()
    assert 'value="psa"' in html and 'value="secret"' not in html
    # a newly published datalab appears without a restart
    write(catalogue_dir, "juice/datalabs/juice.yaml", datalab_yaml("JUICE"))
    assert [p["slug"] for p in spawner.profile_list(spawner)] == ["juice", "planetary"]


async def test_catalogue_profiles_win_over_z2jh_empty_profile_list(k8s_api, catalogue_dir):
    # Zero to JupyterHub's hub config copies `singleuser.profileList` (default []) into
    # c.KubeSpawner.profile_list; a config value beats a subclass's @default, so without the
    # spawner's own check every spawn failed with "No such profile".
    from traitlets.config import Config

    config = Config()
    config.KubeSpawner.profile_list = []
    spawner = make(k8s_api, catalogue_dir, config=config)
    assert [p["slug"] for p in spawner.profile_list(spawner)] == ["planetary"]
    spawner.user_options = {"profile": "planetary", "volumes": ["psa"]}
    await spawner.load_user_options()
    pod = await validated(await spawner.get_pod_manifest())
    assert pod["spec"]["containers"][0]["image"] == "example/planetary:2"


async def test_a_hand_written_profile_list_is_replaced_by_the_catalogue(
    k8s_api, catalogue_dir, caplog
):
    from traitlets.config import Config

    config = Config()
    config.KubeSpawner.profile_list = [{"display_name": "Hand-made", "slug": "hand"}]
    spawner = make(k8s_api, catalogue_dir, config=config)
    assert [p["slug"] for p in spawner.profile_list(spawner)] == ["planetary"]
    assert "profile_list is derived from the datalab catalogue" in caplog.text


async def test_the_pod_with_the_rclone_sidecar_is_valid_kubernetes(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir, rclone_sidecar=True, credentials_master_key="m" * 44)
    spawner.user_options = {"profile": "planetary", "image": "1", "volumes": ["psa"]}
    for _ in range(2):  # a second start replaces our parts instead of adding more
        await spawner.load_user_options()
        pod = await validated(await spawner.get_pod_manifest())
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["datalabs-rclone"]
    names = [v["name"] for v in spec["volumes"]]
    assert len(names) == len(set(names))
    assert {"shared", "dlv-psa", "datalabs-remote", "datalabs-session-secret"} <= set(names)
    [user] = spec["containers"]
    assert "m" * 44 not in json.dumps(pod)
    assert {e["name"] for e in user["env"]} >= {
        "DATALABS_RCLONE_SOCKET",
        "DATALABS_CREDENTIALS_KEY_FILE",
    }


CATALOGUE_ITEMS = [
    {"key": "rosetta__volumes__psa.yaml", "path": "rosetta/volumes/psa.yaml"},
    {"key": "rosetta__datalabs__planetary.yaml", "path": "rosetta/datalabs/planetary.yaml"},
]


@pytest.mark.parametrize("sidecar", [False, True])
async def test_the_session_gets_the_catalogue_configmap_read_only_at_its_catalogue_dir(
    k8s_api, catalogue_dir, sidecar
):
    spawner = make(
        k8s_api,
        catalogue_dir,
        rclone_sidecar=sidecar,
        session_catalogue_configmap="mission-files",
        session_catalogue_items=CATALOGUE_ITEMS,
    )
    spawner.user_options = {"profile": "planetary", "volumes": ["psa"]}
    for _ in range(2):  # a restart replaces the catalogue's parts instead of adding more
        await spawner.load_user_options()
        pod = await validated(await spawner.get_pod_manifest())
    spec = pod["spec"]
    catalogue = [v for v in spec["volumes"] if "configMap" in v]
    assert catalogue == [
        {
            "name": "datalabs-catalogue",
            "configMap": {"name": "mission-files", "optional": True, "items": CATALOGUE_ITEMS},
        }
    ]
    # the operator's own volume is still there
    assert {"shared", "dlv-psa"} <= {v["name"] for v in spec["volumes"]}
    [user] = spec["containers"]
    mounts = [m for m in user["volumeMounts"] if m["name"] == "datalabs-catalogue"]
    assert mounts == [
        {"name": "datalabs-catalogue", "mountPath": "/srv/datalabs/catalogue", "readOnly": True}
    ]
    env = {e["name"]: e.get("value") for e in user["env"]}
    assert json.loads(env["DATALABS_CATALOGUE_DIRS"]) == ["/srv/datalabs/catalogue"]
    # the sidecar never sees the catalogue: it reads none
    for init in spec.get("initContainers", []):
        assert "datalabs-catalogue" not in {m["name"] for m in init.get("volumeMounts", [])}


async def test_no_session_catalogue_when_the_configmap_option_is_empty(k8s_api, catalogue_dir):
    spawner = make(k8s_api, catalogue_dir, session_catalogue_configmap="")
    spawner.user_options = {"profile": "planetary", "volumes": ["psa"]}
    await spawner.load_user_options()
    pod = await validated(await spawner.get_pod_manifest())
    assert not [v for v in pod["spec"]["volumes"] if "configMap" in v]
    [user] = pod["spec"]["containers"]
    assert "DATALABS_CATALOGUE_DIRS" not in {e["name"] for e in user["env"]}


async def test_a_session_with_the_run_claims_runs_its_pipelines_on_the_cluster(
    k8s_api, catalogue_dir
):
    """``run_work_claims`` also tells the session's Pipelines panel to use the cluster: the
    claims alone left every run in the pod."""
    spawner = make(k8s_api, catalogue_dir, run_work_claims=True)
    spawner.user_options = {"profile": "planetary", "volumes": ["psa"]}
    await spawner.load_user_options()
    pod = await validated(await spawner.get_pod_manifest())
    [user] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in user["env"]}
    assert env["DATALABS_PIPELINES_EXECUTOR"] == "kubernetes"
    # turned off since the last start: the next pod runs pipelines in the session again
    spawner.run_work_claims = False
    await spawner.load_user_options()
    pod = await validated(await spawner.get_pod_manifest())
    [user] = pod["spec"]["containers"]
    assert "DATALABS_PIPELINES_EXECUTOR" not in {e["name"] for e in user["env"]}


@pytest.mark.parametrize(
    "item, field",
    [
        ({"key": "rosetta/volumes/psa.yaml", "path": "rosetta/volumes/psa.yaml"}, "key"),
        ({"key": "psa.yaml", "path": "/etc/passwd"}, "path"),
        ({"key": "psa.yaml", "path": "rosetta/../../x"}, "path"),
        ({"key": "psa.yaml"}, "path"),
    ],
)
async def test_a_bad_catalogue_item_is_refused_naming_the_option_and_field(
    k8s_api, catalogue_dir, item, field
):
    from traitlets import TraitError

    with pytest.raises(TraitError) as e:
        make(k8s_api, catalogue_dir, session_catalogue_items=[item])
    assert f"DatalabsKubeSpawner.session_catalogue_items[0]: {field}:" in str(e.value)
