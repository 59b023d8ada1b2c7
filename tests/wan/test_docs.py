"""docs/models.md keeps its table of differences from the Wan2.2 release complete."""

from __future__ import annotations

from pathlib import Path

MODELS_MD = Path(__file__).resolve().parents[2] / "docs" / "models.md"
HEADING = "## Differences from the Wan2.2 release"
# Every aspect of sampling the table must cover (a row whose topic starts with the word).
TOPICS = (
    "negative prompt",
    "image size",
    "solver",
    "timesteps",
    "shift",
    "boundary",
    "guidance",
    "frame count",
    "fps",
    "seed",
    "text",
    "precision",
    "offload",
)
STATUSES = ("removed", "same", "stays", "open")


def differences_table() -> list[list[str]]:
    text = MODELS_MD.read_text()
    assert HEADING in text, f"{MODELS_MD.name} has no '{HEADING}' section"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "the section has no table"
    header, _, *body = rows
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["topic", "the release", "here", "status"]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in body]


def test_differences_table_covers_every_topic_with_a_status() -> None:
    rows = differences_table()
    for topic in TOPICS:
        assert any(row[0].startswith(topic) for row in rows), f"no row for {topic!r}"
    for row in rows:
        assert len(row) == 4 and all(row), f"incomplete row: {row}"
        assert row[3].split(" ")[0].rstrip(";:") in STATUSES, f"status of {row[0]!r} must start with {STATUSES}"
