"""Atomic replacement (bnexp/files.py): the file is synced, renamed, and then its folder is
synced, so that the rename itself survives a crash."""
import os
import stat

from bnexp import files


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    """The real fsync and rename run; a wrapper notes what each was applied to, in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", "folder" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "metrics.json"
    files.write_json_atomic(target, {"a": 1})
    assert [e[:2] for e in events] == [("fsync", "file"), ("rename", str(target)),
                                       ("fsync", "folder")]
    assert events[0][2] == target.stat().st_ino and events[2][2] == tmp_path.stat().st_ino
    assert os.listdir(tmp_path) == ["metrics.json"]
