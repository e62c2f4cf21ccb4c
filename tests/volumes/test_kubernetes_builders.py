"""Pod volumes for hosted volumes: whole expected objects, and the official schema (strict)."""

import pytest

from datalabs_volumes.models import Volume, VolumeSource, choose
from datalabs_volumes.mount.kubernetes import (
    UnmountableVolume,
    merge_named,
    pod_volume,
    pod_volume_mount,
    session_volumes,
)


def vol(vid, source, **kw):
    return choose(Volume(id=vid, title=vid, mission="m", source=source, **kw))


NFS = vol("psa", VolumeSource("nfs", server="nfs.example.org", path="/exports/psa"))
PVC = vol("spice", VolumeSource("pvc", claim="archive", sub_path="spice/v2"))
LOCAL = vol("cat", VolumeSource("local", path="esasky/cat"), mount_path="catalogue")


def test_nfs_volume_is_read_only():
    assert pod_volume(NFS) == {
        "name": "dlv-psa",
        "nfs": {"server": "nfs.example.org", "path": "/exports/psa", "readOnly": True},
    }
    assert pod_volume_mount(NFS, "/home/jovyan/data") == {
        "name": "dlv-psa",
        "mountPath": "/home/jovyan/data/psa",
        "readOnly": True,
    }


def test_pvc_volume_with_subpath_is_read_only():
    assert pod_volume(PVC) == {
        "name": "dlv-spice",
        "persistentVolumeClaim": {"claimName": "archive", "readOnly": True},
    }
    assert pod_volume_mount(PVC, "/data") == {
        "name": "dlv-spice",
        "mountPath": "/data/spice",
        "readOnly": True,
        "subPath": "spice/v2",
    }


def test_local_volume_needs_the_archive_claim():
    with pytest.raises(UnmountableVolume, match="archive_claim"):
        pod_volume(LOCAL)
    assert pod_volume(LOCAL, "datalabs-archive")["persistentVolumeClaim"] == {
        "claimName": "datalabs-archive",
        "readOnly": True,
    }
    assert pod_volume_mount(LOCAL, "/data") == {
        "name": "dlv-cat",
        "mountPath": "/data/catalogue",
        "readOnly": True,
        "subPath": "esasky/cat",
    }


def test_merge_keeps_operator_volumes_and_replaces_ours_from_a_previous_start():
    operator_list = [{"name": "home", "emptyDir": {}}]
    first, _ = session_volumes([NFS, PVC], "/data")
    merged = merge_named(operator_list, first, "datalabs-")
    assert [v["name"] for v in merged.values()] == ["home", "dlv-psa", "dlv-spice"]
    second, _ = session_volumes([PVC], "/data")
    again = merge_named(merged, second, "datalabs-")
    assert [v["name"] for v in again.values()] == ["home", "dlv-spice"]
    operator_dict = {"shared": {"name": "shared", "nfs": {"server": "s", "path": "/p"}}}
    assert list(merge_named(operator_dict, second, "datalabs-")) == ["shared", "datalabs-spice"]
    with pytest.raises(UnmountableVolume, match="dlv-spice"):
        merge_named([{"name": "dlv-spice", "emptyDir": {}}], second, "datalabs-")
