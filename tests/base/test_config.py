"""The config system: layering, unknown keys with suggestions, type errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth import config
from hearth.config import GenerationSettings, Section, Settings
from hearth.errors import ConfigError


class Training(Section):
    learning_rate: float = 3e-4
    batch_size: int = 8


class Recipe(Section):
    training: Training = Training()
    name: str = "demo"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_layers_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "training:\n  learning_rate: 0.1\n  batch_size: 4\nname: from-file\n")
    env = {"HEARTH_TRAINING__BATCH_SIZE": "16", "HEARTH_HOME": "/ignored", "HEARTH_NAME": "from-env"}
    cfg = config.load(Recipe, path, ["training.learning_rate=3e-5"], env=env)
    assert cfg.training.learning_rate == pytest.approx(3e-5)
    assert cfg.training.batch_size == 16
    assert cfg.name == "from-env"


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "training:\n  learnig_rate: 0.1\n")
    with pytest.raises(ConfigError) as err:
        config.load(Recipe, path, env={})
    assert "unknown key 'training.learnig_rate'" in err.value.message
    assert "did you mean 'learning_rate'?" in err.value.message
    assert str(path) in err.value.message


def test_unknown_override_names_the_override() -> None:
    with pytest.raises(ConfigError) as err:
        config.load(Recipe, None, ["training.batchsize=3"], env={})
    assert "command-line override" in err.value.message
    assert "batch_size" in err.value.message


def test_type_error_names_file_key_and_expected_type(tmp_path: Path) -> None:
    path = write(tmp_path, "training:\n  learning_rate: fast\n")
    with pytest.raises(ConfigError) as err:
        config.load(Recipe, path, env={})
    msg = err.value.message
    assert str(path) in msg and "training.learning_rate" in msg and "valid number" in msg and "'fast'" in msg


def test_env_type_error_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        config.load(Recipe, None, env={"HEARTH_TRAINING__BATCH_SIZE": "many"})
    assert "HEARTH_TRAINING__BATCH_SIZE" in err.value.message


def test_impossible_values_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        config.load(Settings, None, ["generation.temperature=-1", "generation.top_p=2"], env={})
    assert "generation.temperature" in err.value.message and "generation.top_p" in err.value.message


def test_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML at line 2"):
        config.load(Recipe, write(tmp_path, "name: a\n  bad: [\n"), env={})
    with pytest.raises(ConfigError, match="must hold a mapping"):
        config.load(Recipe, write(tmp_path, "- a\n- b\n"), env={})
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(Recipe, tmp_path / "missing.yaml", env={})
    with pytest.raises(ConfigError, match="not key=value"):
        config.load(Recipe, None, ["justakey"], env={})


def test_nested_dict_sections_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  ollama:\n    base_url: http://x/v1\n    modle: q\n")
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        config.load(Settings, path, env={})


def test_describe_lists_every_key_with_description() -> None:
    rows = {key: (kind, default, desc) for key, kind, default, desc in config.describe(Settings)}
    assert rows["generation.temperature"][0] == "number"
    assert rows["generation.temperature"][1] == "0.7"
    assert all(desc for key, (_, _, desc) in rows.items() if key.startswith("generation."))
    assert set(GenerationSettings.model_fields) <= {k.split(".", 1)[1] for k in rows if k.startswith("generation.")}


def test_settings_reads_hearth_yaml_from_home(home: Path) -> None:
    (home / "hearth.yaml").write_text("generation:\n  max_tokens: 12\n")
    assert config.settings().generation.max_tokens == 12
