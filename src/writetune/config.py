"""Reading YAML configuration files (recipes, task files, grids) with errors that name the file and the line or
the key.

Every configuration loader reads through `read_yaml_mapping` and validates into its pydantic model through
`validate` (`load_validated` does both), so a bad file reads the same whichever command was given it. Each loader
passes its own error class (a ValueError subclass), which the CLI prints as one line. The three recipes (the mix,
training and run recipes) share `RecipeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not validate; the message names the file."""


class RecipeError(ConfigError):
    """A recipe (mix, training or run) that cannot be used; the message names the file and the key."""


def read_yaml_mapping(path: str | Path, *, what: str, keys_hint: str, error: type[ValueError] = ConfigError,
                      empty_ok: bool = False) -> dict:
    """The mapping at the top of a YAML file; `what` names the kind of file ("recipe"). `keys_hint` (e.g. "name, sources, ...") completes the message when the
    file holds something else; an empty file is `{}` when `empty_ok`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read: {err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise error(f"{where}: not valid YAML: {getattr(err, 'problem', err)}") from err
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping with keys {keys_hint}")
    return data


def validate(model, data: object, where: str | Path, *, error: type[ValueError] = ConfigError,
             unknown_key: str | None = None, keep: Callable[[object], bool] = lambda part: True):
    """`data` validated into the pydantic `model`; a failure raises `error` with `validation_message`'s text (`where`
    names the file, `unknown_key` and `keep` are passed on)."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise error(validation_message(where, err, unknown_key=unknown_key, keep=keep)) from err


def load_validated(path: str | Path, model, *, what: str, keys_hint: str, error: type[ValueError] = ConfigError):
    """Read a YAML mapping and validate it into the pydantic `model`; any failure raises `error` naming the file."""
    return validate(model, read_yaml_mapping(path, what=what, keys_hint=keys_hint, error=error), path, error=error)


def validation_message(where: str | Path, err: ValidationError, *, unknown_key: str | None = None,
                       keep: Callable[[object], bool] = lambda part: True) -> str:
    """`where: key 'a.b': what is wrong` for the first error pydantic found. `keep` filters location parts (e.g.
    discriminator tags that are not keys the user wrote); `unknown_key`, when given, replaces pydantic's message for a
    key the schema lacks."""
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"] if keep(part)) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if unknown_key is not None and first["type"] == "extra_forbidden":
        message = unknown_key
    return f"{where}: key '{key}': {message}"
