"""errors.py: the user's errors are the builtins a caller expects, and each reads as one line."""

import ml_collections
import pytest

from amobilenet_jax import errors


@pytest.mark.parametrize(
    "error,builtin",
    [
        (errors.ConfigError, ValueError),
        (errors.DataError, ValueError),
        (errors.DataNotFoundError, FileNotFoundError),
        (errors.CheckpointError, RuntimeError),
        (errors.NonFiniteError, FloatingPointError),
        (errors.RunNotFoundError, FileNotFoundError),
    ],
)
def test_each_error_is_the_users_and_the_builtin_a_caller_catches(error, builtin):
    assert issubclass(error, errors.UserError) and issubclass(error, builtin)


def test_one_line_keeps_the_first_and_last_lines_of_a_long_message():
    wrapped = ValueError("could not parse the config:\n  Traceback ...\n    File 'x.py'\n  bad value 'abc'\n")
    assert errors.one_line(wrapped) == "could not parse the config: bad value 'abc'"
    assert errors.one_line(ValueError("  ")) == "ValueError"
    assert errors.Interrupted("stopped", 143).exit_code == 143


def test_one_line_names_a_misspelt_config_field_and_the_hint():
    config = ml_collections.ConfigDict({"model": {"cbam": True}})
    config.lock()
    with pytest.raises(AttributeError) as misspelt:
        config.model.cbma = False
    assert errors.one_line(misspelt.value) == "no config field 'cbma' (did you mean \"cbam\"?)"
    assert errors.one_line(KeyError("'nope'")) == "no config field 'nope'"


def test_bad_config_line_names_the_override_that_caused_it():
    argv = ["main", "--config", "c.py", "--config.model.cbma=False", "--config.seed=1"]
    misspelt = AttributeError('Key "cbma" does not exist. Did you mean "cbam"?')
    line = errors.bad_config_line(misspelt, argv)
    assert line == "error: bad config in --config.model.cbma=False: no config field 'cbma' (did you mean \"cbam\"?)"
    assert (
        errors.bad_config_line(ValueError("could not convert"), argv)
        == "error: bad config: ValueError: could not convert"
    )


def test_a_warning_is_one_line_without_this_codebases_file():
    line = errors.warning_line(UserWarning("the data set\n  has 3 bad rows"), UserWarning, "/x/train.py", 12)
    assert line == "warning: the data set has 3 bad rows\n"
