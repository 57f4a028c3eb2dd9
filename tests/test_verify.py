"""Under-trained tokens on a model trained here (tests/trained.py): the score finds the tokens
its training text never held, `vocabmap verify` confirms them by asking the model and does not
confirm frequent tokens, an encoder gets its one line, and the page colours by the verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from job import source, tokens, undertrained, verify
from job.config import ModelConfig, VerifyConfig
from job.render import raster
from tests import chromium
from tests.conftest import FAST_TOML
from tests.numeric import Record, seed
from tests.trained import (
    Trained,
    frequent_words,
    output_matrix,
    precision_at_count,
    trained_gpt2,
)

FAST = FAST_TOML.replace(
    'auto_zooms = 2\nzooms = [{{ name = "days", anchor = "monday", neighbours = 12 }}]',
    "auto_zooms = 1\nundertrained_zoom = 100")
TOP = 260  # candidates verified: more than the never-seen tokens (about 210 of 2,040)


@pytest.fixture(scope="module")
def tied() -> Trained:
    return trained_gpt2(tied=True, seed=seed(0))


@pytest.fixture(scope="module")
def untied() -> Trained:
    return trained_gpt2(tied=False, seed=seed(0))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "job", *args], capture_output=True,
                          text=True, timeout=900)


def _score(model: Trained, matrix: np.ndarray | None = None,
           output: np.ndarray | None = None) -> tuple[float, object]:
    """Precision at their count of the never-seen tokens, by the score of ``matrix`` (the
    input matrix when None; with ``output``, the untied score of both), the reference rows
    left out."""
    emb = source.load(ModelConfig(id=str(model.path)))
    table = tokens.build_table(emb.tokenizer, emb.matrix.shape[0],
                               tokens.vocab_file_tokens(emb.path))
    result = undertrained.score(emb.matrix if matrix is None else matrix, table,
                                table.attrs["family"], output=output)
    return precision_at_count(result.undertrained, model.never_seen, result.reference_ids), result


@pytest.mark.numeric
def test_score_finds_the_never_seen_tokens(tied: Trained, untied: Trained,
                                           record_property: Record) -> None:
    assert set(tied.extra) <= set(tied.never_seen) and len(tied.never_seen) > 100
    precision, result = _score(tied)
    record_property("tied_input", precision)
    assert result.reference == "unreachable_bytes"  # bytes UTF-8 never uses: never seen
    assert set(result.reference_ids) <= set(tied.never_seen)
    assert precision >= 0.85  # measured 0.965, 0.975, 0.934 (seed sets 0, 1, 2)
    precision, _ = _score(untied)
    record_property("untied_input", precision)
    assert precision >= 0.93  # measured 0.995, 0.990, 0.980
    # the output matrix of the untied model, scored the same way (the paper's main matrix)
    precision, _ = _score(untied, output_matrix(untied.path))
    record_property("untied_output", precision)
    assert precision >= 0.55  # measured 0.803, 0.692, 0.793
    # what `run` scores an untied model by: the larger of both matrices' scores
    precision, both = _score(untied, output=output_matrix(untied.path))
    record_property("untied_both", precision)
    assert both.facts["combination"] == undertrained.COMBINATION
    assert precision >= 0.93  # measured 0.995, 0.990, 0.980: as the input matrix alone


@pytest.fixture(scope="module")
def verified_run(tied: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tied model mapped with ``[verify] enabled``: `run` verifies it after the map."""
    folder = tmp_path_factory.mktemp("verify")
    config = folder / "fast.toml"
    config.write_text(FAST.format(model=tied.path, out=folder / "runs") +
                      f"\n[verify]\nenabled = true\ntop = {TOP}\ndevice = \"cpu\"\n",
                      encoding="utf-8")
    proc = _run("run", str(config))
    assert proc.returncode == 0, proc.stderr
    assert f"verify: {TOP} tested" in proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.mark.numeric
def test_verify_confirms_the_never_seen_tokens(verified_run: Path, tied: Trained,
                                               record_property: Record) -> None:
    result = pd.read_csv(verified_run / verify.CSV, keep_default_na=False)
    assert len(result) == TOP
    assert list(result.columns) == ["rank", "token_id", "display", "undertrained",
                                    "p_input_output", "p_assistant_explain", "p_repeats",
                                    "max_prob", "verified"]
    never = result["token_id"].isin(tied.never_seen).to_numpy()
    confirmed = result["verified"].isin(["strong", "weak"]).to_numpy()
    record_property("never_seen_tested", int(never.sum()))
    record_property("never_seen_confirmed", float(confirmed[never].mean()))
    record_property("seen_confirmed", float(confirmed[~never].mean()))
    assert never.sum() >= 100
    assert confirmed[never].mean() >= 0.95  # measured 1.0 (211 of 211) in seed sets 0, 1, 2
    # verdicts follow the paper's thresholds on the highest probability
    np.testing.assert_array_equal(result["verified"], [verify.verdict(p) for p in
                                                       result["max_prob"]])
    manifest = json.loads((verified_run / "manifest.json").read_text())
    facts = manifest["verified"]
    assert facts["tested"] == TOP and facts["device"] == "cpu" and facts["tokens_per_second"] > 0
    assert facts["strong"] + facts["weak"] + facts["no"] == TOP
    table = pd.read_parquet(verified_run / "layout.parquet")
    assert list(table["verified"].cat.categories) == list(verify.LEVELS)
    assert (table["verified"] != "not tested").sum() == TOP
    zoom = next(z for z in manifest["rendered"]["zooms"] if z["name"] == "undertrained")
    assert zoom["page_view"].startswith("map.html#color=verified&view=")


@pytest.mark.skipif(chromium.find_chromium() is None, reason="chromium is not installed; "
                    "`bash scripts/system-deps.sh` (as root) installs it")
def test_page_colours_by_the_verdict(verified_run: Path) -> None:
    manifest = json.loads((verified_run / "manifest.json").read_text())
    view = next(z for z in manifest["rendered"]["zooms"]
                if z["name"] == "undertrained")["page_view"]

    async def opened(s: chromium.Session) -> object:
        import base64

        await s.evaluate("new Promise((r) => requestAnimationFrame(() => "
                         "requestAnimationFrame(() => r(1))))")
        png = base64.b64decode((await s.call("Page.captureScreenshot", format="png"))["data"])
        return [await s.evaluate("window.vocabmap.stats.colour"),
                await s.evaluate("document.getElementById('vocabmap-legend').innerText"),
                base64.b64encode(png).decode()]

    report = chromium.open_page(verified_run / "map.html", "window.vocabmap && "
                                "window.vocabmap.stats.updates > 0", {"opened": opened},
                                fragment="#" + view.split("#", 1)[1])
    assert report.errors == []
    colour, legend, png = report.values["opened"]
    assert colour == "verified"
    facts = manifest["verified"]
    assert f"strong ({facts['strong']:,})" in legend or facts["strong"] == 0
    assert f"weak ({facts['weak']:,})" in legend
    import base64
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")).astype(int)
    red = np.array([int(raster.VERIFIED_COLOURS["weak"][i:i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(img - red).max(axis=2) < 40).sum() > 20  # the zoom's confirmed tokens


def test_a_rerun_keeps_the_verdict_and_verify_asks_again(verified_run: Path,
                                                          tmp_path: Path) -> None:
    before = json.loads((verified_run / "manifest.json").read_text())["verified"]
    config = verified_run.parent.parent / "fast.toml"
    plain = tmp_path / "plain.toml"  # the same layout, without [verify]
    plain.write_text(config.read_text().split("[verify]")[0], encoding="utf-8")
    again = _run("run", str(plain))
    assert again.returncode == 0, again.stderr
    assert "reusing the finished layout" in again.stderr and "verify:" not in again.stderr
    assert json.loads((verified_run / "manifest.json").read_text())["verified"] == before
    table = pd.read_parquet(verified_run / "layout.parquet")
    assert (table["verified"] != "not tested").sum() == TOP
    # the command on its own, with a flag over the run's [verify] settings
    proc = _run("verify", str(verified_run), "--top", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(verified_run / verify.CSV)
    assert len(pd.read_csv(verified_run / verify.CSV)) == 20
    assert json.loads((verified_run / "manifest.json").read_text())["verified"]["top"] == 20


@pytest.mark.numeric
def test_frequent_tokens_are_not_confirmed(tied: Trained, record_property: Record) -> None:
    frequent = frequent_words(tied, 60)
    asker = verify.Asker.load(tied.path, VerifyConfig(device="cpu"))
    result = verify.ask(asker, frequent, VerifyConfig(device="cpu", batch_size=30))
    record_property("frequent_not_confirmed", float((result["verified"] == "no").mean()))
    assert (result["verified"] == "no").mean() >= 0.75  # measured 0.917, 0.900, 0.950


def test_an_encoder_gets_one_line(fast_config: Path) -> None:
    first = _run("run", str(fast_config))
    assert first.returncode == 0, first.stderr
    run = Path(first.stdout.strip().splitlines()[-1])
    before = (run / "manifest.json").read_bytes()
    proc = _run("verify", str(run))
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "vocabmap: verify: " + json.loads(before)["model"]["id"] + " (BertModel) has no "
        "language-model head to ask, so its candidates cannot be verified; nothing written"]
    assert not (run / verify.CSV).exists() and (run / "manifest.json").read_bytes() == before


def test_verify_of_a_folder_without_a_layout_is_one_error_line(tmp_path: Path) -> None:
    proc = _run("verify", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"vocabmap: error: {tmp_path} has no layout.parquet; give a run directory made by "
        "`python -m job run`"]


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _torch_cuda(), reason="torch sees no CUDA device")
def test_verify_on_cuda(tied: Trained) -> None:
    asker = verify.Asker.load(tied.path, VerifyConfig(device="cuda"))
    assert asker.device == "cuda"
    ids = tied.never_seen[:40] + frequent_words(tied, 40)
    result = verify.ask(asker, ids, VerifyConfig(device="cuda", batch_size=40))
    cpu = verify.ask(verify.Asker.load(tied.path, VerifyConfig(device="cpu")), ids,
                     VerifyConfig(device="cpu", batch_size=40))
    assert (result["verified"] == cpu["verified"]).mean() >= 0.95
    np.testing.assert_allclose(result["max_prob"], cpu["max_prob"], atol=1e-3)


def test_verify_settings_are_checked() -> None:
    from job import config

    cfg = config.from_dict({"verify": {"enabled": True, "top": 50}})
    assert cfg.verify.enabled and cfg.verify.top == 50 and cfg.verify.max_new_tokens == 3
    with pytest.raises(config.ConfigError, match=r"verify.top = 0 is not allowed; must be "):
        config.from_dict({"verify": {"top": 0}})
    with pytest.raises(config.ConfigError, match=r"verify.device = 'tpu' is not allowed"):
        config.from_dict({"verify": {"device": "tpu"}})


def test_verdicts_follow_the_papers_thresholds() -> None:
    # magikarp classify_verification: < 0.001 strong, up to 0.1 weak, above: not confirmed
    assert [verify.verdict(p) for p in (0.0, 0.00099, 0.001, 0.1, 0.1001, 0.95)] == [
        "strong", "strong", "weak", "weak", "no", "no"]


def test_prompts_put_the_token_in_by_id_with_or_without_a_chat_template(tied: Trained) -> None:
    from transformers import AutoTokenizer

    from job import repeat_prompts

    tokenizer = AutoTokenizer.from_pretrained(tied.path)
    token = tied.extra[0]  # never in any text: only its id can put it in a prompt
    base = repeat_prompts.encode(repeat_prompts.TEMPLATES[0], tokenizer).ids(token, 10_000)
    assert base.count(token) == 2 * 20 + 1  # 20 examples, then the question
    text = tokenizer.decode(base)
    assert text.startswith("This device repeats its input exactly")
    assert text.endswith(f"Input: «{tokenizer.decode([token])}»\nOutput: «")
    assert repeat_prompts.encode(repeat_prompts.TEMPLATES[0], tokenizer).ids(token, 50) == \
        base[-50:]  # a prompt longer than the context keeps its end
    tokenizer.chat_template = ("{% for m in messages %}<user>{{ m['content'] }}</user>"
                               "{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}")
    chat = repeat_prompts.encode(repeat_prompts.TEMPLATES[2], tokenizer).ids(token, 10_000)
    assert chat.count(token) == 2 * 50 + 1
    text = tokenizer.decode(chat)
    assert text.startswith("<user>Below is the output") and text.endswith("</user><bot>")


@pytest.mark.skipif(_torch_cuda(), reason="a CUDA device is present")
def test_cuda_asked_without_one_is_one_error(tied: Trained) -> None:
    with pytest.raises(verify.VerifyError, match="torch sees no CUDA device; set verify.device"):
        verify.Asker.load(tied.path, VerifyConfig(device="cuda"))
