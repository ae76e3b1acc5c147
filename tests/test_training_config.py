"""Training settings declared once: TrainConfig's validation, config files, the run's fingerprint,
and `patentclf train`'s flags built from the declarations (bad values: one line, before any model loads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.corpus import data
from patentclf.model.bundle import default_model_dir, read_info
from patentclf.model.heads import LossWeights
from patentclf.model.train_config import TrainConfig
from patentclf.training.trainer import TrainingError, claim_checkpoints, run_fingerprint

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def invoke(*args: str):
    # Wide enough that rich does not wrap the one-line error.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "bad",
    [
        dict(heads="all"),
        dict(label_smoothing=1.0),
        dict(prefix_loss_weight=-1),
        dict(prefix_tokens=[10, 5]),
        dict(prefix_tokens=[0, 5]),
        dict(prefix_tokens=[16, 32, 64]),
        dict(precision="fp8"),
        dict(quantize="3bit"),
        dict(learning_rate=0),
        dict(warmup_ratio=1.0),
        dict(lora_dropout=-0.1),
        dict(batch_size=0),
        dict(eval_batch_size=0),
        dict(target_modules=[]),
        dict(class_loss_weight=-0.5),
        dict(data=""),
        dict(no_such_setting=1),
    ],
)
def test_every_choice_is_validated_in_the_declaration(bad):
    with pytest.raises(ValidationError):
        TrainConfig(**bad)


def test_assignments_are_validated_too():
    config = TrainConfig()
    with pytest.raises(ValidationError):
        config.precision = "fp8"


def test_loss_weights_are_settings_with_the_heads_defaults():
    assert TrainConfig().loss_weights() == LossWeights()
    config = TrainConfig(sections_loss_weight=2.0, class_loss_weight=0.25, subclass_loss_weight=0.0, label_smoothing=0.1)
    assert config.loss_weights() == LossWeights(sections=2.0, classes=0.25, subclasses=0.0, label_smoothing=0.1)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_config_files_load(path):
    config = TrainConfig.from_file(path, epochs=2.0)
    assert config.epochs == 2.0 and config.prefix_tokens == (16, 64)


def test_config_files_yaml_or_json_with_overrides_and_one_line_errors(tmp_path):
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"lora_r": 4, "prefix_tokens": [8, 32], "tfidf_ensemble": False}))
    config = TrainConfig.load(as_json, lora_r=2, seed=None)  # None: a flag not given
    assert (config.lora_r, config.prefix_tokens, config.tfidf_ensemble, config.seed) == (2, (8, 32), False, 42)
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: -1\nlora_rank: 8\n")
    with pytest.raises(ValueError) as caught:
        TrainConfig.load(bad)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}: learning_rate: Input should be greater than 0") and "lora_rank" in message
    with pytest.raises(FileNotFoundError, match="not found"):
        TrainConfig.load(tmp_path / "missing.yaml")


def test_an_older_bundles_stored_settings_still_validate():
    """The shipped bundle was trained before tfidf_ensemble and the loss weights were settings: what it
    stored still reads as a TrainConfig, the new settings at their defaults."""
    stored = read_info(default_model_dir()).training.model_dump(mode="json")  # as the file holds it
    assert "tfidf_ensemble" not in stored and "class_loss_weight" not in stored
    config = TrainConfig.model_validate({k: v for k, v in stored.items() if k in TrainConfig.model_fields})
    assert config.lora_layers == stored["lora_layers"] and config.loss_weights() == LossWeights()


def small_splits() -> dict[str, data.Split]:
    return {
        "train": data.Split(texts=["a pump", "a lens"], labels=[5, 6], ids=["1", "2"]),
        "validation": data.Split(texts=["a valve"], labels=[5], ids=["3"]),
    }


def test_fingerprint_holds_the_loss_weights_but_not_where_or_how_a_run_is_evaluated():
    base = run_fingerprint(TrainConfig(), small_splits())
    assert base["settings"]["class_loss_weight"] == 0.5 and base["settings"]["prefix_tokens"] == [16, 64]
    assert run_fingerprint(TrainConfig(class_loss_weight=1.0), small_splits()) != base
    same = TrainConfig(output_dir="elsewhere", eval_batch_size=4, evaluate_test=False, tfidf_ensemble=False, command="x")
    assert run_fingerprint(same, small_splits()) == base


def test_resuming_refuses_a_different_run_and_restart_clears_it(tmp_path):
    folder = tmp_path / "checkpoints"
    first = {"settings": {"learning_rate": 1e-4, "epochs": 1}, "data": "abc"}
    assert claim_checkpoints(folder, first) is False
    (folder / "checkpoint-10").mkdir()
    assert claim_checkpoints(folder, first) is True
    changed = {"settings": {"learning_rate": 5e-4, "epochs": 1}, "data": "abd"}
    with pytest.raises(TrainingError, match="learning_rate.*training/validation data.*--restart"):
        claim_checkpoints(folder, changed)
    assert claim_checkpoints(folder, changed, restart=True) is False
    assert not (folder / "checkpoint-10").exists()
    unrecorded = tmp_path / "old"
    (unrecorded / "checkpoint-5").mkdir(parents=True)
    with pytest.raises(TrainingError, match="unrecorded"):
        claim_checkpoints(unrecorded, first)


def test_a_record_from_before_a_setting_existed_resumes_when_the_setting_is_at_its_default(tmp_path):
    folder = tmp_path / "checkpoints"
    now = run_fingerprint(TrainConfig(), small_splits())
    older = {"settings": {k: v for k, v in now["settings"].items() if not k.endswith("loss_weight")}, "data": now["data"]}
    older["settings"]["prefix_loss_weight"] = now["settings"]["prefix_loss_weight"]
    claim_checkpoints(folder, older)
    (folder / "checkpoint-10").mkdir()
    assert claim_checkpoints(folder, now) is True
    with pytest.raises(TrainingError, match="changed: class_loss_weight"):
        claim_checkpoints(folder, run_fingerprint(TrainConfig(class_loss_weight=1.0), small_splits()))


def test_train_has_a_flag_for_every_setting():
    command = typer.main.get_command(app).commands["train"]
    flags = {param.name for param in command.params}
    assert set(TrainConfig.model_fields) - {"command"} <= flags
    help_text = invoke("train", "--help").output
    for flag in ("--eval-batch-size", "--weight-decay", "--warmup-ratio", "--no-normalize", "--no-evaluate-test"):
        assert flag in help_text
    for flag in ("--prefix-tokens", "--no-tfidf-ensemble", "--sections-loss-weight", "--class-loss-weight", "--output"):
        assert flag in help_text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--learning-rate", "-1"], "error: learning_rate: Input should be greater than 0 (given -1.0)"),
        (["--prefix-tokens", "10", "5"], "error: prefix_tokens: must be LOW HIGH with 1 <= LOW <= HIGH (given (10, 5))"),
        (["--warmup-ratio", "1.5"], "error: warmup_ratio: Input should be less than 1 (given 1.5)"),
        (["--config", "no-such.yaml"], "error: config file no-such.yaml not found"),
    ],
)
def test_a_bad_train_value_is_one_line_before_anything_loads(args, message, tmp_path):
    # A base model that does not exist: had anything loaded, the error would be about it.
    result = invoke("train", "--base-model", str(tmp_path / "no-model"), "--output-dir", str(tmp_path / "out"), *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert error_lines(result) == [message]
    assert not (tmp_path / "out").exists()


def test_a_bad_choice_is_refused_by_the_flag_parser(tmp_path):
    for flag, value in (("--precision", "fp8"), ("--heads", "all"), ("--quantize", "3bit")):
        result = invoke("train", "--base-model", str(tmp_path / "no-model"), flag, value)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"Invalid value for '{flag}'" in result.output and value in result.output


def test_a_bad_config_file_value_names_the_file(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("heads: all\n")
    result = invoke("train", "--config", str(config))
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: {config}: heads: Input should be 'auto' or 'section' (given 'all')"]


@pytest.mark.parametrize(
    "args", [["--long-text", "foo"], ["--engine", "spark"], ["--batch-size", "0"], ["--actors", "0", "--engine", "ray"]]
)
def test_predict_refuses_a_bad_option_before_loading_the_model(args, tmp_path):
    result = invoke("predict", "--model", str(tmp_path / "no-model"), *args, "some text")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for '{args[0]}'" in result.output


def test_train_flags_and_a_config_file_reach_the_run(tmp_path, toy_hierarchy_data, tiny_base_model):
    """A real tiny run through the CLI: the file's settings, the flags over them (the once-missing ones
    and the loss weights among them) end up in the bundle's record and its model card."""
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 1\nbatch_size: 16\nlearning_rate: 5.0e-3\nclass_loss_weight: 0.1\nlora_r: 4\n")
    out = tmp_path / "model"
    # fmt: off
    result = invoke(
        "train", "--config", str(config), "--data", str(toy_hierarchy_data), "--base-model", str(tiny_base_model),
        "--output", str(out), "--max-length", "32", "--train-limit", "64", "--eval-limit", "16", "--precision", "fp32",
        "--class-loss-weight", "0.75", "--subclass-loss-weight", "0.25", "--sections-loss-weight", "2",
        "--eval-batch-size", "8", "--weight-decay", "0.01", "--warmup-ratio", "0.1", "--no-normalize",
        "--no-evaluate-test", "--prefix-tokens", "4", "8", "--prefix-loss-weight", "0.5", "--no-tfidf-ensemble",
    )
    # fmt: on
    assert result.exit_code == 0, result.output
    training = read_info(out).training.model_dump(mode="json")
    expected = dict(
        epochs=1.0, batch_size=16, lora_r=4, class_loss_weight=0.75, subclass_loss_weight=0.25, sections_loss_weight=2.0,
        eval_batch_size=8, weight_decay=0.01, warmup_ratio=0.1, normalize=False, evaluate_test=False,
        prefix_tokens=[4, 8], tfidf_ensemble=False,
    )  # fmt: skip
    assert {k: training[k] for k in expected} == expected
    assert set(read_info(out).metrics) == {"validation"}  # --no-evaluate-test
    assert not (out / "tfidf.safetensors").exists()  # --no-tfidf-ensemble
    assert '"class_loss_weight": 0.75' in (out / "README.md").read_text()
