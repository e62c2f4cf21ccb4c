"""The pure parts of a run's RO-Crate: which files a job names, on which volume, and how."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from datalabs_pipelines.crate import (
    FileFacts,
    VolumeRef,
    build_crate,
    describe_path,
    job_paths,
    volume_of,
)


def test_job_paths_follow_every_file_field(tmp_path):
    job = {
        "table": {"class": "File", "path": "rel/a.csv"},
        "many": [
            {"class": "File", "location": "file:///v/b%20c.fits"},
            {
                "class": "File",
                "path": "/v/d.lbl",
                "secondaryFiles": [{"class": "File", "path": "/v/d.img"}],
            },
        ],
        "folder": {
            "class": "Directory",
            "path": "/v/dir",
            "listing": [{"class": "File", "path": "/v/dir/e"}],
        },
        "record": {"nested": {"class": "File", "location": "/v/f"}},
        "text": "not a file",
        "remote": {"class": "File", "location": "https://example.org/x"},
    }
    assert sorted(job_paths(job, str(tmp_path))) == sorted(
        [
            ("table", str(tmp_path / "rel" / "a.csv")),
            ("many", "/v/b c.fits"),
            ("many", "/v/d.lbl"),
            ("many", "/v/d.img"),
            ("folder", "/v/dir"),
            ("folder", "/v/dir/e"),
            ("record", "/v/f"),
        ]
    )


def test_volume_of_resolves_links_and_refuses_look_alike_prefixes(tmp_path):
    psa = tmp_path / "data" / "psa"
    (psa / "sub").mkdir(parents=True)
    (tmp_path / "data" / "psa2").mkdir()
    (psa / "sub" / "x.fits").write_bytes(b"x")
    (tmp_path / "link.fits").symlink_to(psa / "sub" / "x.fits")
    volumes = [VolumeRef("psa", str(psa))]
    assert volume_of(str(tmp_path / "link.fits"), volumes) == (volumes[0], "sub/x.fits")
    assert volume_of(str(tmp_path / "data" / "psa2" / "y"), volumes) is None


def test_describe_path_hashes_only_under_the_limit(tmp_path):
    small = tmp_path / "small"
    small.write_bytes(b"12345")
    facts = describe_path(str(small), checksum_limit=5)
    assert facts == FileFacts(
        path=str(small),
        is_dir=False,
        size=5,
        mtime=os.stat(small).st_mtime,
        sha1=hashlib.sha1(b"12345").hexdigest(),
    )
    assert describe_path(str(small), checksum_limit=4).sha1 is None
    assert describe_path(str(small), checksum_limit=-1).sha1 is not None
    missing = describe_path(str(tmp_path / "gone"), checksum_limit=-1)
    assert (missing.size, missing.mtime, missing.sha1) == (None, None, None)


def test_crate_of_a_run_with_an_archive_input_and_a_text_input():
    volume = VolumeRef("psa", "/home/u/data/psa", "PSA", "3")
    facts = FileFacts("/home/u/data/psa/a/x.fits", False, 7, 0.0, None)
    crate = build_crate(
        run_id="0123456789abcdef",
        pipeline="m/p",
        workflow_file="workflow/p.cwl",
        job={"image": {"class": "File", "path": facts.path}, "label": "t"},
        inputs=[("image", facts)],
        volumes=[volume],
        outputs={"n": 3},
        root="/runs/0123456789abcdef",
        state="failed",
        started=1.0,
        finished=2.0,
    )
    by_id = {e["@id"]: e for e in crate["@graph"]}
    assert by_id["file:///home/u/data/psa/a/x.fits"] == {
        "@id": "file:///home/u/data/psa/a/x.fits",
        "@type": "File",
        "name": "psa:a/x.fits",
        "exampleOfWork": [{"@id": "#input-image"}],
        "contentSize": "7",
        "dateModified": "1970-01-01T00:00:00+00:00",
        "isPartOf": {"@id": "#volume-psa"},
        "volumePath": "a/x.fits",
    }
    assert by_id["#pv-label"]["value"] == "t"
    assert by_id["#pv-output-n"]["value"] == 3
    action = by_id["#run-0123456789abcdef"]
    assert action["object"] == [{"@id": "#pv-label"}, {"@id": "file:///home/u/data/psa/a/x.fits"}]
    assert action["result"] == [{"@id": "#pv-output-n"}]
    assert action["actionStatus"] == {"@id": "http://schema.org/FailedActionStatus"}
    assert by_id["workflow/p.cwl"]["input"] == [{"@id": "#input-image"}, {"@id": "#input-label"}]
    assert by_id["./"]["mainEntity"] == {"@id": "workflow/p.cwl"}
    assert Path(by_id["./"]["hasPart"][0]["@id"]) == Path("workflow/p.cwl")
