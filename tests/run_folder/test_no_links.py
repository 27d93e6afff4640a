"""No file of ofakd's folders is written through a symbolic link (issue 29): the writers of run_folder refuse one."""

from __future__ import annotations

import os

import pytest

from ofakd.run_folder import FolderLock, write_text
from ofakd.run_folder.atomic import remove_temporaries, temporary_name
from ofakd.run_folder.no_links import LinkRefused, open_to_append


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside.txt"
    path.write_text("the user's\n")
    return path


def test_an_atomic_write_refuses_a_link_in_place_of_the_file(tmp_path, outside):
    (tmp_path / "summary.json").symlink_to(outside)
    with pytest.raises(LinkRefused, match=r"summary.json is a symbolic link; ofakd never writes through a link"):
        write_text(tmp_path / "summary.json", "{}")
    assert outside.read_text() == "the user's\n" and (tmp_path / "summary.json").is_symlink()


def test_a_link_placed_where_the_temporary_file_goes_is_not_followed(tmp_path, outside):
    temporary_name(tmp_path / "config.yaml").symlink_to(outside)  # as if planted for this process id
    write_text(tmp_path / "config.yaml", "a: 1\n")
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n" and outside.read_text() == "the user's\n"
    assert not (tmp_path / "config.yaml").is_symlink()


def test_appending_metrics_refuses_a_link(tmp_path, outside):
    (tmp_path / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(LinkRefused, match="metrics.jsonl is a symbolic link"):
        open_to_append(tmp_path / "metrics.jsonl")
    assert outside.read_text() == "the user's\n"


@pytest.mark.parametrize("mode", ["flock", "lease"])
def test_a_lock_file_that_is_a_link_is_refused(tmp_path, outside, mode):
    (tmp_path / "run.lock").symlink_to(outside)
    with pytest.raises(LinkRefused, match="run.lock is a symbolic link"):
        FolderLock(tmp_path / "run.lock", "run folder", mode=mode).acquire()
    assert outside.read_text() == "the user's\n"


def test_remove_temporaries_removes_only_temporary_files(tmp_path, outside):
    (tmp_path / ".last.pt.tmp-123").write_bytes(b"x")
    temporary_name(tmp_path / "last.prev.pt").symlink_to(outside)
    (tmp_path / "last.pt").write_bytes(b"y")
    (tmp_path / ".notes").write_text("the user's hidden file")
    removed = remove_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([".last.pt.tmp-123", f".last.prev.pt.tmp-{os.getpid()}"])
    assert sorted(os.listdir(tmp_path)) == [".notes", "last.pt", "outside.txt"]
    assert outside.read_text() == "the user's\n"


def test_a_tune_folders_study_db_that_is_a_link_is_refused(tmp_path, outside):
    from ofakd.tuning.study import storage_url

    (tmp_path / "study.db").symlink_to(outside)
    with pytest.raises(LinkRefused, match="study.db is a symbolic link"):
        storage_url(None, tmp_path)
    assert storage_url(None, tmp_path / "new") == f"sqlite:///{(tmp_path / 'new' / 'study.db').absolute()}"
