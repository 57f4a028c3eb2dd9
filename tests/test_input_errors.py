"""Bad input never crashes and never lies (issue 11, input side): each case ends with one
``vocabmap: error:`` line and exit code 2, no traceback and no written file, or runs and says
what it did in the log and the manifest. Every case uses real files: tiny models the tests
build and then damage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from job import cli, runread, source
from job.config import ModelConfig
from job.runread import Manifest
from tests.conftest import FAST_TOML

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "job", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)


def error_line(stderr: str) -> str:
    """The one error line of a failed command; fails the test on a traceback or a second
    error line."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("vocabmap: error:")]
    assert len(errors) == 1, stderr
    assert stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def config(tmp_path: Path, model: Path, extra: str = "", name: str = "c.toml") -> Path:
    """The fast test config for ``model``, output under ``tmp_path/runs``, plus ``extra``
    TOML lines appended to its tables."""
    text = FAST_TOML.format(model=model, out=tmp_path / "runs")
    for line in extra.strip().splitlines():
        table, _, setting = line.partition(" ")
        if f"[{table}]\n" not in text:
            text += f"\n[{table}]\n"
        text = text.replace(f"[{table}]\n", f"[{table}]\n{setting}\n", 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def copy_model(bert_dir: Path, folder: Path, *skip: str) -> Path:
    shutil.copytree(bert_dir, folder, ignore=shutil.ignore_patterns(*skip) if skip else None)
    return folder


def manifest_of(stdout: str) -> tuple[Path, Manifest]:
    folder = Path(stdout.strip().splitlines()[-1])
    return folder, Manifest.read(folder)


# --- 1. one base class, one line, the traceback behind --debug -----------------------------

def test_user_errors_share_one_base_class() -> None:
    from job.compare import CompareError
    from job.config import ConfigError
    from job.contextual import CorpusError
    from job.errors import VocabmapError
    from job.render.zooms import ZoomError
    from job.source import SourceError

    for error in (ConfigError, SourceError, ZoomError, CompareError, CorpusError):
        assert issubclass(error, VocabmapError), error


def test_config_error_is_one_line_and_debug_adds_the_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[layout]\nperplexityy = 5\n", encoding="utf-8")
    assert cli.main(["check", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == (
        "vocabmap: error: unknown key 'layout.perplexityy'; allowed keys in [layout]: backend, "
        "metric, perplexity, n_iter, early_exaggeration_iter, early_exaggeration, "
        "learning_rate, seed, deterministic, knn, n_jobs")
    assert cli.main(["--debug", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.rstrip().splitlines()[-1].startswith("vocabmap: error: unknown key")


def test_config_that_is_not_utf8_is_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[model]\nid = 'caf\xe9'\n".encode("latin-1"))
    assert cli.main(["check", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"vocabmap: error: {path}: not a UTF-8 text file; save the config as UTF-8 TOML")


def test_os_error_is_one_line(fast_config: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An error of the machine that no stage turned into a message of its own (the run
    directory's cases are in tests/test_rundir.py) still ends as one line."""
    import errno

    from job import pipeline

    where = tmp_path / "somewhere"

    def full_disk(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pipeline, "run_model", full_disk)
    code = cli.main(["run", str(fast_config)])
    line = error_line(capsys.readouterr().err)
    assert code == 2
    assert line == (f"vocabmap: error: {where}: no space left on device; free space or "
                    "choose --out elsewhere")


# --- 2. weights without tokenizer files; a tokenizer much smaller than the matrix ---------

def test_folder_without_tokenizer_files_is_an_error(bert_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    folder = copy_model(bert_dir, tmp_path / "weights-only", "tokenizer*", "vocab.txt",
                        "special_tokens_map.json")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    path = config(tmp_path, folder)
    expected = (f"vocabmap: error: no tokenizer files (tokenizer.json, vocab.txt, vocab.json, "
                f"tokenizer.model, …) in {folder}; save the model's tokenizer there with "
                f"tokenizer.save_pretrained('{folder}')")
    assert cli.main(["check", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == expected
    assert cli.main(["run", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == expected
    assert files_under(tmp_path / "runs") == []


def test_tokenizer_much_smaller_than_the_matrix_is_warned(
        bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = copy_model(bert_dir, tmp_path / "small-tokenizer", "tokenizer.json")
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (folder / "vocab.txt").write_text("\n".join(lines[:100]) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="job.source"):
        emb = source.load(ModelConfig(id=str(folder)))
    stored = len(lines)
    assert emb.matrix.shape[0] == 100 and emb.padding_rows == stored - 100
    assert (f"the tokenizer has 100 ids but the embedding matrix {stored} rows: {stored - 100} "
            f"rows ({100 * (stored - 100) / stored:.0f} %) are left out as padding"
            ) in caplog.text


def test_hub_ids_with_dots_are_not_paths(tmp_path: Path) -> None:
    assert source.local_folder(ModelConfig(id="Qwen/Qwen2.5-0.5B")) is None  # a hub id
    with pytest.raises(source.SourceError, match="does not exist; check the path"):
        source.local_folder(ModelConfig(id="weights/model.safetensors"))


# --- 3. a duplicated vocab.txt line ----------------------------------------------------------

def test_duplicated_vocab_line_keeps_every_id_and_text(bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_model(bert_dir, tmp_path / "dup-vocab", "tokenizer.json")
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    the, dup = lines.index("the"), lines.index("with")
    lines[dup] = "the"  # the file now lists "the" twice
    (folder / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_cli("run", str(config(tmp_path, folder)))
    assert proc.returncode == 0, proc.stderr
    run, manifest = manifest_of(proc.stdout)
    table = runread.layout(run).set_index("token_id")
    assert len(table) == len(lines)
    for i in (the, dup):
        assert table.loc[i, ["token", "display", "category"]].tolist() == ["the", "the", "word"]
    assert not table["token"].str.startswith("<unused:").any()
    assert manifest.value("vocabulary", "duplicate_strings") == {
        "ids": 2, "first_ids": [the, dup], "examples": ["the"]}
    assert manifest.value("vocabulary", "ids_without_token") == {"ids": 0, "first_ids": []}
    assert f"vocabulary: 2 ids share their token string with another id (ids [{the}, {dup}]"\
        in proc.stderr


# --- 4. perplexity against the number of selected tokens -----------------------------------

def test_explicit_perplexity_too_large_is_an_error(bert_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = config(tmp_path, bert_dir)
    path.write_text(path.read_text().replace("perplexity = 5", "perplexity = 500"))
    n = len(source.load_tokenizer(bert_dir))
    limit = int((n - 1) / 3 * 100) / 100
    expected = (f"vocabmap: error: layout.perplexity = 500 is too large for the {n} selected "
                f"tokens: t-SNE uses 3 x perplexity neighbours per token, so it can be at most "
                f"(n - 1) / 3 = {limit:g}; set layout.perplexity <= {limit:g} or select more "
                "tokens")
    assert cli.main(["check", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == expected
    assert cli.main(["run", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == expected
    assert files_under(tmp_path / "runs") == []


def test_default_perplexity_is_lowered_for_a_tiny_selection(bert_dir: Path,
                                                            tmp_path: Path) -> None:
    words = "monday|tuesday|friday|king|queen|man|woman|tokyo|paris|japan|france|world"
    path = config(tmp_path, bert_dir, f'tokens select = "regex"\ntokens regex = "^({words})$"')
    path.write_text(path.read_text().replace("perplexity = 5\n", ""))  # the default, 30
    proc = run_cli("run", str(path))
    assert proc.returncode == 0, proc.stderr
    _, manifest = manifest_of(proc.stdout)
    assert manifest.value("selection", "selected") == 12
    lowered = manifest.value("selection", "perplexity_lowered")
    assert (lowered["configured"], lowered["used"]) == (30.0, 3.6667)
    assert manifest.value("backend", "effective_params", "perplexity") == pytest.approx(11 / 3)
    assert "layout.perplexity lowered from 30 to 3.6667" in proc.stderr


# --- 5. a non-finite embedding row -----------------------------------------------------------

def test_non_finite_rows_are_an_error_not_a_crash(bert_dir: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = copy_model(bert_dir, tmp_path / "nan-model")
    weights = load_file(folder / "model.safetensors")
    matrix = weights["embeddings.word_embeddings.weight"]
    matrix[5, 3], matrix[17, 0], matrix[30, 7] = np.nan, np.inf, -np.inf
    matrix[40] = 0.0  # a zero row is finite and fine
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    proc = run_cli("run", str(config(tmp_path, folder)))
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc.stderr) == (
        f"vocabmap: error: 3 embedding rows are not finite (NaN or inf; ids 5, 17, 30); the "
        f"checkpoint in {folder} is damaged: re-download it, or leave those ids out with "
        "[tokens] select")
    assert "stage knn" not in proc.stderr
    assert files_under(tmp_path / "runs") == []


def test_zero_rows_normalise_to_zero_not_nan() -> None:
    from job.knn import l2_normalise

    x = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalise(x), [[0.0, 0.0], [0.6, 0.8]], rtol=1e-6)


# --- 6. a truncated or corrupt safetensors file ----------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_safetensors_is_one_line(bert_dir: Path, tmp_path: Path, damage: str,
                                         capsys: pytest.CaptureFixture) -> None:
    folder = copy_model(bert_dir, tmp_path / f"{damage}-model")
    weights = folder / "model.safetensors"
    if damage == "truncated":
        os.truncate(weights, weights.stat().st_size // 2)
        why = "Error while deserializing header: incomplete metadata, file not fully covered"
    else:
        weights.write_bytes(b"this is not a safetensors file" * 100)
        why = "Error while deserializing header: header too large"
    assert cli.main(["run", str(config(tmp_path, folder))]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"vocabmap: error: {weights} is not a valid safetensors file (truncated or corrupt? "
        f"{why}); re-download it")
    assert files_under(tmp_path / "runs") == []


# --- 7. anchors a model does not have --------------------------------------------------------

def test_missing_anchor_is_skipped_and_recorded(bert_dir: Path, tmp_path: Path) -> None:
    path = config(tmp_path, bert_dir, 'render anchors = ["zebra", "king"]')
    proc = run_cli("run", str(path))
    assert proc.returncode == 0, proc.stderr
    run, manifest = manifest_of(proc.stdout)
    assert manifest.value("rendered", "skipped_zooms") == [{
        "name": "zebra", "anchor": "zebra",
        "why": "anchor token 'zebra' is not in this vocabulary (or not selected)"}]
    assert "zoom 'zebra' not drawn: anchor token 'zebra' is not in this vocabulary" in proc.stderr
    assert (run / "zoom_king.png").is_file() and not (run / "zoom_zebra.png").exists()


def test_required_anchor_fails_before_the_layout(bert_dir: Path, tmp_path: Path) -> None:
    path = config(tmp_path, bert_dir)
    path.write_text(path.read_text().replace(
        'anchor = "monday", neighbours = 12 }', 'anchor = "zebra", required = true }'))
    expected = ("vocabmap: error: render.zooms 'days' is required, but its anchor token "
                "'zebra' is not in this vocabulary (or not selected); pick a token that the "
                "model's tokenizer has as a single token")
    check = run_cli("check", str(path))
    assert check.returncode == 2 and error_line(check.stderr) == expected
    proc = run_cli("run", str(path))
    assert proc.returncode == 2 and error_line(proc.stderr) == expected
    assert "stage tokens" in proc.stderr and "stage knn" not in proc.stderr
    assert files_under(tmp_path / "runs") == []


# --- 8. check runs every check that needs no weights ----------------------------------------

@pytest.mark.parametrize(("extra", "message"), [
    ('tokens select = "regex"\ntokens regex = "(unclosed"',
     "tokens.regex '(unclosed' is not a valid regex (missing ), unterminated subpattern at "
     "position 0); fix the pattern (Python re syntax)"),
    ('layout backend = "cuml"',
     "layout.backend = 'cuml' needs a CUDA GPU: cupy is not installed; run on a GPU node or "
     "set backend = 'auto' or 'opentsne'"),
    ('render anchors = ["days"]',
     "render zoom names ['days'] are used more than once (in zooms or anchors); give each "
     "zoom its own name"),
])
def test_check_rejects_what_run_would(bert_dir: Path, tmp_path: Path, extra: str, message: str,
                                      capsys: pytest.CaptureFixture) -> None:
    from job.gpu import cuda_available

    if "cuml" in extra and cuda_available()[0]:
        pytest.skip("a CUDA device is present")
    assert cli.main(["check", str(config(tmp_path, bert_dir, extra))]) == 2
    assert error_line(capsys.readouterr().err) == f"vocabmap: error: {message}"


def test_check_rejects_a_missing_corpus(bert_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "ctx.toml"
    path.write_text(f'[[models]]\nid = "{bert_dir}"\nembeddings = "contextual"\n'
                    f'[contextual]\ncorpus = ["{tmp_path / "nope.txt"}"]\n', encoding="utf-8")
    assert cli.main(["check", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"vocabmap: error: corpus file '{tmp_path / 'nope.txt'}' not found; check "
        "[contextual] corpus")


def test_check_says_what_it_checked(bert_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    path = config(tmp_path, bert_dir, 'layout backend = "opentsne"')
    assert cli.main(["check", str(path)]) == 0
    n = len(source.load_tokenizer(bert_dir))
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: OK: 1 model(s); layout backend: opentsne (requested)",
        f"  model 0: {bert_dir}: {n:,} tokens (wordpiece), {n:,} selected"]
    assert cli.main(["check", "--count", str(path)]) == 0
    assert capsys.readouterr().out == "1\n"


def test_check_warns_about_one_failing_model_of_several(bert_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """As `run` maps the other models (and a Slurm array gives each its own task), one bad
    model of several is a warning; the count is still every model."""
    path = tmp_path / "two.toml"
    path.write_text(f'[[models]]\nid = "{bert_dir}"\n[[models]]\nid = "{tmp_path / "gone"}"\n',
                    encoding="utf-8")
    assert cli.main(["check", "--count", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "2\n"
    assert captured.err.strip() == (
        f"vocabmap: warning: model 1 ({tmp_path / 'gone'}) would fail: model folder "
        f"'{tmp_path / 'gone'}' does not exist; check the path")


# --- 10. a new user's first minutes ---------------------------------------------------------

def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "check", "render", "compare"):
        assert f"\n    {command} " in out
    assert "``" not in out


def test_no_opentsne_chatter_on_a_run(fast_config: Path) -> None:
    proc = run_cli("run", str(fast_config))
    assert proc.returncode == 0, proc.stderr
    assert "KNN index provided" not in proc.stderr
