"""The one record schema every stage reads and writes: a CoT annotation of one NLI pair."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["original", "reflected", "human"]
Status = Literal["ok", "repaired", "label-only", "failed"]


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class CoTRecord(BaseModel):
    """One pair with its reasoning. ``label`` is the gold label (1 entailment, 0 no entailment).

    ``status``: ``ok`` parsed as asked, ``repaired`` parsed after JSON repair, ``label-only`` a
    label but no usable thought, ``failed`` nothing usable (``error`` says why).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    premise: str
    hypothesis: str
    label: int | None = None
    thought_process: str | None = None
    predicted_label: int | None = None
    error_analysis: str | None = None
    source: Source = "original"
    model: str | None = None
    prompt_version: str | None = None
    reask_count: int = 0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    status: Status = "ok"
    error: str | None = None
    raw_output: str | None = None
    judge: dict | None = None
    # Self-consistency (predict --num-samples k): each sample's label (None: unparsed) and the
    # share of samples that voted for predicted_label.
    votes: list[int | None] | None = None
    vote_share: float | None = None
    # Log-probability read-out (predict --readout logprob): p(label = 1) from the two label tokens' probabilities.
    p_label_1: float | None = None
    # The command that wrote the record (generate, reflect, judge, predict, rationales); None in
    # stores written before records carried it.
    stage: str | None = None
    # Whether decoding was constrained to the answer's JSON schema (local engine); None: not known
    # (remote backends, records written before this field existed).
    constrained: bool | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def correct(self) -> bool | None:
        if self.label is None or self.predicted_label is None:
            return None
        return self.label == self.predicted_label

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, line: str) -> CoTRecord:
        return cls.model_validate_json(line)
