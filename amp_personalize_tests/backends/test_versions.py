"""Model versions on disk: the live one and the newest few are kept, the rest deleted."""

from datetime import datetime, timedelta, timezone

from amp_personalize.backends.versions import (
    KEEP_VERSIONS,
    latest_version,
    prune_versions,
    publish_version,
)

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def train(models, at):
    return publish_version(models, at, "local", {}, {}, lambda d: (d / "model.npz").write_bytes(b"weights")).version


def test_old_versions_are_deleted_but_the_newest_few(tmp_path):
    """QA: every training kept its folder for good (11 MB each for the demo, daily)."""
    models = tmp_path / "models"
    (models / "my-notes").mkdir(parents=True)  # not a version's name: left alone
    versions = [train(models, START + timedelta(days=d)) for d in range(KEEP_VERSIONS + 2)]
    on_disk = sorted(p.name for p in models.iterdir() if p.is_dir())
    assert on_disk == [*versions[-KEEP_VERSIONS:], "my-notes"] and latest_version(models) == versions[-1]
    assert (models / versions[-1] / "model.npz").read_bytes() == b"weights"


def test_the_live_version_is_kept_however_old(tmp_path):
    """LATEST pointed back at an old version by hand (a rollback) keeps that version."""
    models = tmp_path / "models"
    first = train(models, START)
    for d in range(1, KEEP_VERSIONS + 3):  # newer finished versions, LATEST still on the first
        newer = models / f"{START + timedelta(days=d):%Y%m%dT%H%M%SZ}-abcdef"
        newer.mkdir()
        (newer / "meta.json").write_text("{}")
    deleted = prune_versions(models)
    assert len(deleted) == 2 and first not in deleted and (models / first / "model.npz").exists()
    assert len([p for p in models.iterdir() if p.is_dir()]) == KEEP_VERSIONS + 1


def test_unfinished_folders_are_left_to_their_training_then_cleared(tmp_path):
    """Review: a folder being written by another training (no meta.json yet) was deletable, and
    killed trainings' folders counted toward the versions kept."""
    import os
    import time

    models = tmp_path / "models"
    # Named after every finished version: counted, they would push finished ones out (review).
    writing, killed = (models / f"{START + timedelta(days=KEEP_VERSIONS + d):%Y%m%dT%H%M%SZ}-abcdef" for d in (1, 2))
    for folder in (writing, killed):
        folder.mkdir(parents=True)
    hours_ago = time.time() - 2 * 3600
    os.utime(killed, (hours_ago, hours_ago))
    versions = [train(models, START + timedelta(days=d)) for d in range(KEEP_VERSIONS)]
    assert writing.is_dir() and not killed.exists()
    assert all((models / v).is_dir() for v in versions)  # five finished versions, the unfinished not counted
