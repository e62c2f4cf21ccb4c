"""The volume catalogue: valid entries are served, every broken file is named and left out."""

from datetime import date

from datalabs_volumes.catalogue import VolumeCatalogue
from datalabs_volumes.models import Access
from tests.helpers import volume_yaml, write


def problems_of(cat):
    return [str(p) for p in cat.problems]


def test_valid_volumes_are_loaded_with_their_fields(tmp_path):
    write(
        tmp_path,
        "rosetta/volumes/psa.yaml",
        volume_yaml(
            "psa",
            extra="""\
description: PDS4 bundle
access:
  groups: [team]
  users: [carol]
  embargo_until: 2030-01-01
versions:
  - name: v1
  - name: v2
    default: true
    source: {type: pvc, claim: archive, subPath: psa/v2}
""",
        ),
    )
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    assert problems_of(cat) == []
    vol = cat.entries["psa"]
    assert vol.mission == "rosetta"  # from the folder, as the field is absent
    assert vol.file == "rosetta/volumes/psa.yaml"
    assert vol.access == Access(("team",), ("carol",), date(2030, 1, 1))
    assert vol.default_version.name == "v2"
    assert vol.default_version.source.claim == "archive"
    assert vol.version("v1").source.path == "psa"


def test_broken_yaml_is_reported_with_line_and_the_rest_is_served(tmp_path):
    write(tmp_path, "m/volumes/good.yaml", volume_yaml("good"))
    write(tmp_path, "m/volumes/bad.yaml", "id: bad\ntitle: [unclosed\n")
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    assert list(cat.entries) == ["good"]
    [problem] = problems_of(cat)
    assert problem.startswith("m/volumes/bad.yaml: (yaml): not valid YAML at line")


def test_unknown_and_missing_fields_are_named(tmp_path):
    write(
        tmp_path, "m/volumes/typo.yaml", "id: typo\ntitel: Oops\nsource: {type: local, path: x}\n"
    )
    write(tmp_path, "m/volumes/nosource.yaml", "id: nosource\ntitle: No source\n")
    write(tmp_path, "m/volumes/nfs.yaml", "id: nfs\ntitle: N\nsource: {type: nfs, path: /x}\n")
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    found = problems_of(cat)
    assert (
        "m/volumes/typo.yaml: titel: unknown field (known: access, description, id, "
        "mission, mount_path, source, title, versions)" in found
    )
    assert "m/volumes/typo.yaml: title: required field is missing" in found
    assert "m/volumes/nosource.yaml: source: required field is missing" in found
    assert "m/volumes/nfs.yaml: source.server: required field is missing" in found
    assert cat.entries == {}


def test_duplicate_ids_keep_the_first_file_and_name_both(tmp_path):
    write(tmp_path, "a/volumes/one.yaml", volume_yaml("same"))
    write(tmp_path, "b/volumes/two.yaml", volume_yaml("same", path="other"))
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    assert cat.entries["same"].file == "a/volumes/one.yaml"
    assert problems_of(cat) == [
        "b/volumes/two.yaml: id: duplicate volume id 'same': already defined in "
        "a/volumes/one.yaml; this file is ignored"
    ]


def test_duplicate_keys_in_one_file_are_refused(tmp_path):
    write(tmp_path, "m/volumes/dup.yaml", volume_yaml("dup") + "title: Again\n")
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    assert cat.entries == {}
    assert "duplicate key 'title'" in problems_of(cat)[0]


def test_path_traversal_in_ids_paths_and_subpaths_is_refused(tmp_path):
    write(tmp_path, "m/volumes/a.yaml", volume_yaml("../etc"))
    write(tmp_path, "m/volumes/b.yaml", volume_yaml("b", path="../../etc"))
    write(tmp_path, "m/volumes/c.yaml", volume_yaml("c", path="/etc"))
    write(
        tmp_path,
        "m/volumes/d.yaml",
        "id: d\ntitle: D\nsource: {type: pvc, claim: archive, subPath: a/../../b}\n",
    )
    write(
        tmp_path,
        "m/volumes/e.yaml",
        "id: e\ntitle: E\nsource: {type: nfs, server: nfs.example, path: /exports/../etc}\n",
    )
    write(
        tmp_path,
        "m/volumes/Upper Case.yaml",
        "title: no id field\nsource: {type: local, path: x}\n",
    )
    write(tmp_path, "m/volumes/f.yaml", volume_yaml("f", extra="mount_path: ../up\n"))
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    assert cat.entries == {}
    fields = {(p.file, p.field) for p in cat.problems}
    assert fields == {
        ("m/volumes/a.yaml", "id"),
        ("m/volumes/b.yaml", "source.path"),
        ("m/volumes/c.yaml", "source.path"),
        ("m/volumes/d.yaml", "source.subPath"),
        ("m/volumes/e.yaml", "source.path"),
        ("m/volumes/Upper Case.yaml", "id"),
        ("m/volumes/f.yaml", "mount_path"),
    }


def test_bad_embargo_date_and_wrong_types(tmp_path):
    write(
        tmp_path,
        "m/volumes/a.yaml",
        volume_yaml("a", extra="access: {embargo_until: 2030-02-31}\n"),
    )
    write(tmp_path, "m/volumes/b.yaml", "- just\n- a list\n")
    write(tmp_path, "m/volumes/c.yaml", "")
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    assert problems_of(cat) == [
        "m/volumes/a.yaml: access.embargo_until: not a real date (YYYY-MM-DD)",
        "m/volumes/b.yaml: (top level): expected a mapping of fields, got list",
        "m/volumes/c.yaml: (top level): expected a mapping of fields, got nothing",
    ]


def test_added_changed_and_removed_files_are_seen_without_restart(tmp_path):
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    assert cat.entries == {}
    path = write(tmp_path, "m/volumes/v.yaml", volume_yaml("v"))
    cat.refresh()
    assert cat.entries["v"].title == "Volume v"
    path.write_text(volume_yaml("v").replace("Volume v", "Renamed volume"))
    cat.refresh()
    assert cat.entries["v"].title == "Renamed volume"
    path.unlink()
    cat.refresh()
    assert cat.entries == {}


def test_access_rules():
    everyone = Access()
    team = Access(groups=("team",), users=("carol",))
    embargoed = Access(groups=("team",), embargo_until=date(2030, 1, 1))
    closed = Access(embargo_until=date(2030, 1, 1))
    before, after = date(2029, 12, 31), date(2030, 1, 1)
    assert everyone.allows("bob", [], before)
    assert team.allows("alice", ["team"], before) and team.allows("carol", [], before)
    assert not team.allows("bob", ["other"], before)
    assert embargoed.allows("alice", ["team"], before)
    assert not embargoed.allows("bob", [], before)
    assert embargoed.allows("bob", [], after)
    assert not closed.allows("alice", ["team"], before) and closed.allows("bob", [], after)
