"""The run directory under failure: no debris after an early error, unwritable and full output
folders (real read-only and full tmpfs mounts where root allows), one writer at a time
(real processes racing and killed), reruns after a kill, and pictures that say what they show.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from job import cli, rundir
from job import config as config_mod
from job.runread import Manifest


def one_error(code: int, err: str) -> str:
    """The single ``vocabmap: error:`` line of a failed command (exit 2, no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("vocabmap: error:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def run_main(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = cli.main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def folder_of(config: Path, out: Path | None = None) -> Path:
    cfg = config_mod.with_overrides(config_mod.load(config), None, str(out) if out else None)
    return rundir.run_dir(cfg.models[0], cfg)


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mount a tmpfs with the given options under ``tmp_path``; skips where that fails."""
    mounted: list[Path] = []

    def do(name: str, options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a file system needs root")
        path = tmp_path / name
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(path)
        return path

    yield do
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` with one file, then give ``leave`` bytes back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    written = 0
    try:
        while True:
            written += os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(written - leave, 0))
    return filler


# --- 1. an early failure leaves no folder ---------------------------------------------------


@pytest.mark.parametrize("model", ["missing", "no-weights"])
def test_failed_model_load_leaves_no_run_folder(model: str, fast_config: Path, bert_dir: Path,
                                                tmp_path: Path, capsys: pytest.CaptureFixture,
                                                ) -> None:
    path = tmp_path / model
    if model == "no-weights":  # config.json and tokenizer, but no weights
        path.mkdir()
        for f in bert_dir.iterdir():
            if not f.name.startswith("model"):
                (path / f.name).write_bytes(f.read_bytes())
    code, _, err = run_main(str(fast_config), "--model", str(path), capsys=capsys)
    one_error(code, err)
    assert not (tmp_path / "runs").exists()  # neither the run folder nor output.dir

    out = tmp_path / "kept"  # an output folder that exists keeps its files, gets nothing new
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_main(str(fast_config), "--model", str(path), "--out", str(out),
                            capsys=capsys)
    one_error(code, err)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# --- 2. an output folder that cannot be created or written -----------------------------------


def test_out_under_a_regular_file(fast_config: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_main(str(fast_config), "--out", str(blocker / "runs"), capsys=capsys)
    line = one_error(code, err)
    assert line == (f"vocabmap: error: cannot create the run directory "
                    f"{folder_of(fast_config, blocker / 'runs')}: {blocker} is a file, not a "
                    "folder; choose --out elsewhere")
    assert "stage load" not in caplog.text  # checked before the model is loaded
    assert blocker.read_text() == "not a folder" and not (tmp_path / "runs").exists()


def test_read_only_out(fast_config: Path, tmp_path: Path, mount: Callable[[str, str], Path],
                       capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ro = mount("ro", "size=1m,ro")
    for out in (ro, ro / "runs"):
        code, _, err = run_main(str(fast_config), "--out", str(out), capsys=capsys)
        line = one_error(code, err)
        assert line == (f"vocabmap: error: cannot create the run directory "
                        f"{folder_of(fast_config, out)}: read-only file system; choose --out "
                        "elsewhere (a folder you can write)")
    # the run directory exists (an earlier run) but its file system is now read-only
    done = mount("done", "size=1m")
    folder_of(fast_config, done).mkdir()
    remount(done, "ro")
    code, _, err = run_main(str(fast_config), "--out", str(done), capsys=capsys)
    line = one_error(code, err)
    assert line == (f"vocabmap: error: cannot write in the run directory "
                    f"{folder_of(fast_config, done)}: read-only file system; choose --out "
                    "elsewhere or make it writable")
    assert "stage load" not in caplog.text
    assert list(ro.iterdir()) == [] and not (tmp_path / "runs").exists()


# --- 3. a full disk --------------------------------------------------------------------------


def test_full_disk_before_the_layout_is_written(fast_config: Path,
                                                mount: Callable[[str, str], Path],
                                                capsys: pytest.CaptureFixture) -> None:
    out = mount("full", "size=1m")
    fill(out, leave=4096)  # room for the lock file, not for layout.parquet
    code, _, err = run_main(str(fast_config), "--out", str(out), capsys=capsys)
    line = one_error(code, err)
    folder = folder_of(fast_config, out)
    assert line == (f"vocabmap: error: cannot write {folder}/layout.parquet: no space left on "
                    "device; free space or choose --out elsewhere")
    assert [p.name for p in out.iterdir()] == ["filler"]  # no run folder, no temporary file


def test_full_disk_while_drawing_keeps_the_layout_for_the_rerun(
        fast_config: Path, mount: Callable[[str, str], Path], capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out = mount("small", "size=1m")  # the layout and PNGs fit, the 1.5 MB map.html does not
    code, _, err = run_main(str(fast_config), "--out", str(out), capsys=capsys)
    line = one_error(code, err)
    folder = folder_of(fast_config, out)
    assert line == (f"vocabmap: error: cannot write {folder}/map.html: no space left on "
                    "device; free space or choose --out elsewhere")
    assert not temp_files(out) and not (folder / "map.html").exists()
    assert not rundir.is_complete(folder)  # no manifest: the folder does not look finished
    assert (folder / "layout.parquet").is_file() and (folder / "facts.json").is_file()

    remount(out, "size=16m")
    code, printed, err = run_main(str(fast_config), "--out", str(out), capsys=capsys)
    assert code == 0, err
    assert "reusing the finished layout" in caplog.text
    assert rundir.is_complete(folder) and (folder / "map.html").is_file()


# --- 4. one writer per run directory ---------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from job import rundir
with rundir.claim(Path(sys.argv[1]), wait=0):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    if sys.argv[3] == "fail":
        raise SystemExit(3)
"""


def hold_lock(folder: Path, seconds: float, then: str = "ok") -> subprocess.Popen[str]:
    """Another process that claims ``folder``, sleeps, then ends (or fails)."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds), then],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_lock_refuses_then_frees_when_the_holder_is_killed(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "m-abc"
    child = hold_lock(folder, 60)
    holder = f"pid {child.pid} on host {platform.node()} since "
    for live in (None, folder / ".layout.parquet.x1.tmp"):  # the holder's file being written
        if live:
            live.write_bytes(b"half")
        with (pytest.raises(rundir.RunDirError, match=re.escape(f"in use by {holder}")) as err,
              rundir.claim(folder, wait=0)):
            pass
        assert str(err.value).endswith("wait for that job to end, or set VOCABMAP_LOCK_WAIT "
                                       "to wait longer")
        # the refused run leaves the holder's lock file and files alone
        assert json.loads((folder / rundir.LOCK).read_text())["pid"] == child.pid
        assert live is None or live.exists()
    child.send_signal(signal.SIGKILL)
    child.wait()
    # the kernel released the dead holder's lock: claimed at once, long before the wait ends
    # (no timing asserted: a busy machine may take a moment)
    with rundir.claim(folder, wait=120):
        assert not live.exists()  # now stale: cleaned by the new holder
        assert json.loads((folder / rundir.LOCK).read_text())["pid"] == os.getpid()


def test_lock_waits_for_the_holder_and_logs_who_it_is(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    folder = tmp_path / "m-abc"
    child = hold_lock(folder, 1.5)
    with rundir.claim(folder, wait=60):
        assert child.wait(timeout=10) == 0  # it had let go
    assert (f"waiting for the run directory lock held by pid {child.pid} on host "
            f"{platform.node()} since ") in caplog.text


def test_lock_survives_the_holder_removing_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "m-abc"
    child = hold_lock(folder, 1.0, then="fail")  # fails with an empty folder: removes it
    with rundir.claim(folder, wait=60):
        assert child.wait(timeout=10) == 3
        lock = folder / rundir.LOCK
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        (folder / "layout.parquet").write_bytes(b"x")
    assert (folder / "layout.parquet").is_file()


def start_run(config: Path, log: Path, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "job", "run", str(config)],
                            stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                            env={**os.environ, **(env or {})})


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_jobs_on_one_run_directory_take_turns(fast_config: Path, tmp_path: Path) -> None:
    folder = folder_of(fast_config)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    waiting = f"waiting for the run directory lock held by pid {os.getpid()} "
    with rundir.claim(folder, wait=0):  # hold it until both jobs wait, then let them race
        jobs = [start_run(fast_config, log) for log in logs]
        wait_for(lambda: all(waiting in log.read_text() for log in logs), "both jobs to wait")
    outs = [job.communicate(timeout=300)[0] for job in jobs]
    texts = [log.read_text() for log in logs]
    for job, out, text in zip(jobs, outs, texts, strict=True):
        assert job.returncode == 0, text
        assert "Traceback" not in text and out.strip().splitlines()[-1] == str(folder)
    assert sum("reusing the finished layout" in t for t in texts) == 1  # the later one
    assert sum("stage layout: " in t for t in texts) == 1
    assert rundir.is_complete(folder) and not temp_files(folder)


def test_job_killed_while_holding_the_lock_leaves_a_run_the_rerun_finishes(
        fast_config: Path, tmp_path: Path) -> None:
    folder = folder_of(fast_config)
    job = start_run(fast_config, tmp_path / "killed.log")
    wait_for(lambda: (folder / "layout.parquet").is_file(), "the layout")  # now drawing
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not rundir.is_complete(folder)
    rerun = start_run(fast_config, tmp_path / "rerun.log", {"VOCABMAP_LOCK_WAIT": "0"})
    out = rerun.communicate(timeout=300)[0]
    text = (tmp_path / "rerun.log").read_text()
    assert rerun.returncode == 0, text
    assert "waiting for" not in text and out.strip().splitlines()[-1] == str(folder)
    assert rundir.is_complete(folder) and not temp_files(folder)


# --- 5. a rerun after a kill at any step -----------------------------------------------------


def test_rerun_after_a_kill_between_any_two_files(fast_config: Path,
                                                  capsys: pytest.CaptureFixture,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Files land as layout.parquet, facts.json, pictures, manifest.json (each atomically):
    every prefix a kill can leave is reused or redone."""
    caplog.set_level(logging.INFO)
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    folder = folder_of(fast_config)
    manifest = Manifest.read(folder)

    # killed after the layout, before its facts: the layout is not trusted
    for name in ("facts.json", "manifest.json", "overview.png"):
        (folder / name).unlink()
    (folder / ".facts.json.k1.tmp").write_text("{")
    caplog.clear()
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    assert "reusing" not in caplog.text and "stage layout: " in caplog.text
    assert Manifest.read(folder).value("layout_reused") is False

    # facts from an older layout whose layout.parquet was deleted: both are redone
    (folder / "layout.parquet").unlink()
    caplog.clear()
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    assert "stage layout: " in caplog.text

    # killed while drawing (layout and facts there, no manifest): reuse, draw, finish
    (folder / "manifest.json").unlink()
    (folder / "zoom_days.png").unlink()
    (folder / ".map.html.k2.tmp").write_text("<html")
    caplog.clear()
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    assert "reusing the finished layout" in caplog.text
    assert "pictures up to date" not in caplog.text
    assert rundir.is_complete(folder) and (folder / "zoom_days.png").is_file()
    assert not temp_files(folder)
    assert set(Manifest.read(folder).data) == set(manifest.data)


# --- 6., 7. pictures that say what they show; 8. one count per zoom --------------------------

OTHER_RENDER = """[render]
width = 300
height = 300
auto_zooms = 0
undertrained_zoom = 0
html = false
zooms = [{ name = "corner", box = [-100, 0, -100, 0] }]

[output]"""


def test_render_settings_decide_the_pictures(fast_config: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    folder = folder_of(fast_config)
    (folder / "notes.txt").write_text("mine")
    (folder / "overview-old.png").write_bytes(b"mine too")
    first = Manifest.read(folder)
    stamp = (folder / "overview.png").stat().st_mtime_ns

    caplog.clear()  # same settings: the pictures are reused
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    assert "pictures up to date" in caplog.text
    assert (folder / "overview.png").stat().st_mtime_ns == stamp

    other = tmp_path / "other.toml"  # same layout key, other render settings
    text = fast_config.read_text()
    other.write_text(re.sub(r"\[render\].*\[output\]", OTHER_RENDER, text, flags=re.S))
    caplog.clear()
    code, out, err = run_main(str(other), capsys=capsys)
    assert code == 0, err
    assert out.strip() == str(folder)
    assert "render settings differ from the run directory's: redrawing pictures" in caplog.text
    # the earlier render's zooms and page are gone
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "facts.json", "layout.parquet", "manifest.json", "neighbours.parquet", "notes.txt",
        "overview-old.png", "overview.png", "undertrained.csv", "zoom_corner.png"]
    manifest = Manifest.read(folder)
    assert manifest.value("config", "render", "width") == 300
    assert manifest.value("rendered", "files") == ["overview.png", "zoom_corner.png"]
    assert manifest.value("render_state", "settings") != first.value("render_state", "settings")
    assert (manifest.value("render_state", "layout_sha256")
            == first.value("render_state", "layout_sha256"))

    caplog.clear()  # the first config again: its pictures come back, the last run wins
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    assert "redrawing pictures" in caplog.text
    assert (folder / "zoom_days.png").is_file() and not (folder / "zoom_corner.png").exists()


def test_zoom_counts_agree_in_title_log_and_manifest(fast_config: Path,
                                                     capsys: pytest.CaptureFixture,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    code, _, err = run_main(str(fast_config), capsys=capsys)
    assert code == 0, err
    manifest = Manifest.read(folder_of(fast_config))
    zooms = manifest.value("rendered", "zooms")
    assert len(zooms) == 4  # 1 anchor, the most under-trained tokens, 2 automatic
    label, n = manifest.value("model", "label"), manifest.value("selection", "selected")
    for z in zooms:  # the title names the model and its token count, then the zoom's
        assert z["title"] == (f"{label}: {n:,} tokens · {z['name']}: {z['points']:,} shown, "
                              f"{z['labels']} labelled")
        logged = re.search(rf"zoom {re.escape(z['name'])} \(.*?\): (\d+) tokens, (\d+) labels",
                           caplog.text)
        assert logged and (int(logged[1]), int(logged[2])) == (z["points"], z["labels"])


def test_manifest_reader_names_the_run_directory_and_the_missing_key(tmp_path: Path) -> None:
    from job.runread import Manifest

    rundir.write_json(tmp_path / rundir.MANIFEST, {"model": {"id": "m"}, "config": {}})
    manifest = Manifest.read(tmp_path)
    assert manifest.value("model", "id") == "m"
    with pytest.raises(rundir.RunDirError, match=r"has no 'model\.path'"):
        _ = manifest.model
    with pytest.raises(rundir.RunDirError, match=re.escape(str(tmp_path)) + r".*'config\.layout'"):
        _ = manifest.metric  # no silent "cosine"
    with pytest.raises(rundir.RunDirError, match="cannot read"):
        Manifest.read(tmp_path / "nowhere")
    assert Manifest.read_if_any(tmp_path / "nowhere") is None


def test_a_failed_write_is_one_message_that_keeps_its_cause(tmp_path: Path) -> None:
    """Every file-system error becomes a message through one function (job.errors.file_error):
    the path, the cause in words and the fix; the OSError stays behind it for --debug."""
    import errno

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    target = tmp_path / "layout.parquet"
    with pytest.raises(rundir.RunDirError) as caught:
        rundir.atomic_write(target, full)
    assert str(caught.value) == (f"cannot write {target}: no space left on device; free space "
                                 "or choose --out elsewhere")
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert not temp_files(tmp_path) and not target.exists()
