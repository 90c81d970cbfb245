"""The README stays true to the code."""

from pathlib import Path

from fanout.config import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    """Each Settings field appears as its FANOUT_ variable in the README."""
    missing = [name for name in Settings.model_fields if f"FANOUT_{name.upper()}" not in README]
    assert [] == missing
