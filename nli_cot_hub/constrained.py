"""JSON-schema-constrained decoding for the local engine, built on llguidance.

Every stage's answer is a flat JSON object (``prompts.COT_SCHEMA``, ``reflect_schema(label)``,
``JUDGE_SCHEMA``; the fine-tuned answer has the CoT schema's shape). A :class:`SchemaLogitsProcessor`
masks, at every step and for every row of a batch, the tokens the row's schema does not allow, so
the answer is valid JSON with labels and scores from the schema's enums and ranges.

Three decisions on top of the plain schema (:func:`decoding_schema`, :class:`CompiledSchema`):

* Fixed separators ``", "`` and ``": "`` and no other whitespace between JSON tokens: the layout of
  ``json.dumps``, which the fine-tuning completions and the few-shot examples use, and no free
  whitespace that a small model can repeat until the budget runs out.
* String values may not hold a quote, a backslash, a control character or two spaces in a row. No
  escapes means a quote always ends the string (so the closing below takes one token), and no
  newline or space runs means no whitespace loops inside a thought either.
* The token budget: an answer cut off mid-string would not parse, so when a row's remaining tokens
  reach the schema's ``reserve`` it switches to closing: inside a string only a token starting with
  a quote is allowed, forced text (keys, separators) is written with the grammar's own forced
  tokens, and an optional property is skipped by closing the object. ``reserve`` is measured by
  running exactly that closing from the very first token (the longest way to close) plus slack, so
  every state closes within it. A ``maxLength`` derived from the budget would have to assume one
  character per token to be safe, which leaves a 48-token answer a thought of a few characters;
  closing on demand leaves the whole rest of the budget to the thought.
* Several strings in one answer (reflection: error analysis, then the improved thought; judge:
  analysis, then an optional improved thought) share the budget: string value k of n is closed once
  the answer has used k+1 n-ths of the tokens left after ``reserve``, so the first cannot starve the
  next. Because strings hold no quote, ``: "`` in the answer marks exactly the openings of string values.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "
# No quote or backslash (so no escapes), no control characters (newlines, tabs), no two spaces in a row.
STRING_PATTERN = r'^( ?[^"\\\x00-\x1f\x7f ])* ?$'
QUOTE, CLOSE_BRACE = ord('"'), ord("}")
VALUE_OPENING = KEY_SEPARATOR.encode() + b'"'
# Extra tokens on top of the measured closing: a quote token that differs from the simulated one,
# forced text split differently after it, and the step at which closing starts.
RESERVE_SLACK = 4


class SchemaError(ValueError):
    """A schema the decoder cannot compile, or a token budget too small to close it."""


def decoding_schema(schema: dict) -> dict:
    """``schema`` with every string property restricted to :data:`STRING_PATTERN` (see module doc)."""
    schema = copy.deepcopy(schema)
    for spec in schema.get("properties", {}).values():
        if spec.get("type") == "string" and "pattern" not in spec and "enum" not in spec:
            spec["pattern"] = STRING_PATTERN
    return schema


def schema_key(schema: dict) -> str:
    return json.dumps(schema, sort_keys=True)


@dataclass
class TokenSets:
    """Vocabulary facts the closing step needs, computed once per tokenizer."""

    quote_start: object  # bool tensor [vocab]: the token's text starts with a quote
    brace_start: object  # bool tensor [vocab]: the token's text starts with a closing brace
    vocab_size: int


class Grammars:
    """The llguidance tokenizer of one model and the schemas compiled for it (cached)."""

    def __init__(self, tokenizer, eos_ids: Sequence[int], vocab_size: int):
        import llguidance
        import llguidance.hf
        import torch

        self.eos_ids = list(eos_ids)
        self.vocab_size = vocab_size
        self.lltokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=self.eos_ids)
        first_bytes = [self._first_byte(token) for token in range(vocab_size)]
        self.tokens = TokenSets(
            quote_start=torch.tensor([byte == QUOTE for byte in first_bytes], dtype=torch.bool),
            brace_start=torch.tensor([byte == CLOSE_BRACE for byte in first_bytes], dtype=torch.bool),
            vocab_size=vocab_size,
        )
        self._compiled: dict[str, CompiledSchema] = {}
        self._on_device: dict[str, TokenSets] = {}
        self.executor = llguidance.LLExecutor()

    def tokens_on(self, device) -> TokenSets:
        """The token sets on ``device`` (the scores' device), copied once."""
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = TokenSets(
                self.tokens.quote_start.to(device), self.tokens.brace_start.to(device), self.vocab_size
            )
        return self._on_device[key]

    def _first_byte(self, token: int) -> int | None:
        if self.lltokenizer.is_special_token(token):
            return None
        text = self.lltokenizer.decode_bytes([token])
        return text[0] if text else None

    def compile(self, schema: dict) -> CompiledSchema:
        key = schema_key(schema)
        if key not in self._compiled:
            from llguidance import LLMatcher

            grammar = LLMatcher.grammar_from_json_schema(
                decoding_schema(schema),
                overrides={
                    "whitespace_flexible": False,
                    "item_separator": ITEM_SEPARATOR,
                    "key_separator": KEY_SEPARATOR,
                },
            )
            error = LLMatcher.validate_grammar(grammar, self.lltokenizer)
            if error:
                raise SchemaError(f"cannot compile JSON schema {schema.get('title', '')!r}: {error}")
            strings = sum(spec.get("type") == "string" for spec in schema.get("properties", {}).values())
            compiled = CompiledSchema(self, grammar, schema.get("title", "schema"), string_values=strings)
            total, opened = closing_path(compiled)
            compiled.reserve = total + RESERVE_SLACK
            compiled.reserve_inside = [total - step + RESERVE_SLACK for step in opened]
            self._compiled[key] = compiled
        return self._compiled[key]


@dataclass
class CompiledSchema:
    grammars: Grammars = field(repr=False)
    grammar: str = field(repr=False)
    title: str = "schema"
    string_values: int = 0  # string properties, in the order the answer writes them
    reserve: int = 0  # tokens that always suffice to close a valid answer from any state
    # The same from inside string value k (the rest of the closing path after it); values the closing
    # path skips (optional ones) fall back to the last known entry.
    reserve_inside: list[int] = field(default_factory=list)

    def reserve_after(self, values_opened: int) -> int:
        """Tokens that suffice to close once ``values_opened`` string values have been opened."""
        if values_opened == 0 or not self.reserve_inside:
            return self.reserve
        return self.reserve_inside[min(values_opened, len(self.reserve_inside)) - 1]

    def matcher(self):
        from llguidance import LLMatcher

        matcher = LLMatcher(self.grammars.lltokenizer, self.grammar, log_level=0)
        if matcher.is_error():
            raise SchemaError(f"{self.title}: {matcher.get_error()}")
        return matcher


def allowed_tokens(matcher, vocab_size: int):
    """The grammar's mask for ``matcher``'s next token as a bool tensor [vocab]."""
    import llguidance.torch

    bitmask = llguidance.torch.allocate_token_bitmask(1, vocab_size)
    llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
    return unpack_bitmask(bitmask, vocab_size)[0]


def unpack_bitmask(bitmask, vocab_size: int):
    """llguidance's int32 bitmask [rows, words] (bit i of word w = token 32w+i) as bool [rows, vocab]."""
    import torch

    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    return bits.view(bitmask.shape[0], -1)[:, :vocab_size].bool()


def closing_mask(matcher, allowed, inside_string: bool, tokens: TokenSets):
    """Narrow the grammar's ``allowed`` mask to the shortest way to a complete answer.

    Forced text is written with the grammar's first forced token; inside a string, a token starting
    with a quote ends it; elsewhere a closing brace is preferred (skips optional properties). Where
    the narrowing would allow nothing, the grammar's mask stands.
    """
    forced = matcher.compute_ff_tokens()
    if forced:
        only = allowed.new_zeros(allowed.shape)
        only[forced[0]] = True
        return only
    for preferred in (tokens.quote_start,) if inside_string else (tokens.brace_start,):
        narrowed = allowed & preferred
        if narrowed.any():
            return narrowed
    return allowed


def closing_path(compiled: CompiledSchema, limit: int = 512) -> tuple[int, list[int]]:
    """Close the answer from its first token, as the processor would: the steps to EOS, and the step
    after which each string value was opened (the longest way to close from inside it)."""
    tokens = compiled.grammars.tokens
    lltokenizer = compiled.grammars.lltokenizer
    matcher = compiled.matcher()
    text = bytearray()
    opened: list[int] = []
    for step in range(1, limit + 1):
        allowed = allowed_tokens(matcher, tokens.vocab_size)
        narrowed = closing_mask(matcher, allowed, text.count(b'"') % 2 == 1, tokens)
        candidates = narrowed.nonzero().flatten().tolist()
        if any(token in compiled.grammars.eos_ids for token in candidates):
            return step, opened
        # The shortest token text is the slowest way through, so the count is an upper bound.
        token = min(candidates, key=lambda t: len(lltokenizer.decode_bytes([t])))
        text += lltokenizer.decode_bytes([token])
        if text.count(VALUE_OPENING) > len(opened):
            opened.append(step)
        if not matcher.consume_token(token):
            break
    raise SchemaError(
        f"{compiled.title}: the answer cannot be closed within {limit} tokens "
        f"({matcher.get_error() or 'no end reached'})"
    )


class SchemaLogitsProcessor:
    """A transformers logits processor: row r of the batch follows ``schemas[r]`` (None: free).

    It keeps one llguidance matcher per row, feeds it each sampled token, and masks the scores;
    from ``max_new_tokens - reserve`` on, a row closes its answer (see the module doc).
    """

    def __init__(self, schemas: Sequence[CompiledSchema | None], max_new_tokens: int):
        self.schemas = list(schemas)
        self.max_new_tokens = max_new_tokens
        for compiled in self.schemas:
            if compiled is not None and compiled.reserve > max_new_tokens:
                raise SchemaError(
                    f"a budget of {max_new_tokens} new tokens is too small for {compiled.title}: "
                    f"closing an empty answer can take {compiled.reserve}; raise the token cap"
                )
        self.matchers = [None if compiled is None else compiled.matcher() for compiled in self.schemas]
        self.texts = [bytearray() for _ in self.schemas]
        self.done = [compiled is None for compiled in self.schemas]
        self.prompt_width: int | None = None

    def __call__(self, input_ids, scores):
        import torch

        rows = input_ids.shape[0]
        if rows != len(self.schemas):
            raise SchemaError(f"the batch has {rows} rows but {len(self.schemas)} schemas were given")
        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1]
        else:
            self._consume(input_ids[:, -1].tolist())
        step = input_ids.shape[1] - self.prompt_width
        remaining = self.max_new_tokens - step
        active = [row for row in range(rows) if not self.done[row]]
        if not active:
            return scores
        grammars = next(c for c in self.schemas if c is not None).grammars
        vocab = grammars.vocab_size
        import llguidance.torch

        # Masks are computed on the CPU (in parallel across rows) and unpacked where the scores are.
        bitmask = llguidance.torch.allocate_token_bitmask(rows, vocab)
        llguidance.torch.fill_next_token_bitmask_par(
            grammars.executor, [(self.matchers[row], row) for row in active], bitmask
        )
        allowed = unpack_bitmask(bitmask.to(scores.device, non_blocking=True), vocab)
        tokens = grammars.tokens_on(scores.device)
        for row in active:
            compiled, text = self.schemas[row], self.texts[row]
            inside_string = text.count(b'"') % 2 == 1
            if remaining <= compiled.reserve_after(text.count(VALUE_OPENING)):
                allowed[row] = closing_mask(self.matchers[row], allowed[row], inside_string, tokens)
            elif inside_string and self._string_share_used(compiled, text, step):
                narrowed = allowed[row] & tokens.quote_start
                if narrowed.any():
                    allowed[row] = narrowed
        mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
        mask[:, :vocab] = ~allowed
        mask[[row for row in range(rows) if self.done[row]]] = False
        return scores.masked_fill(mask, float("-inf"))

    def _string_share_used(self, compiled: CompiledSchema, text: bytearray, step: int) -> bool:
        """Inside string value k of n (not the last): has the answer used k+1 n-ths of its free tokens?"""
        opening = text.rfind(b'"')
        if text[max(0, opening - 2) : opening + 1] != VALUE_OPENING:
            return False  # inside a key
        index = text.count(VALUE_OPENING) - 1
        if index >= compiled.string_values - 1:
            return False
        free = self.max_new_tokens - compiled.reserve
        return step >= free * (index + 1) // compiled.string_values

    def _consume(self, tokens: list[int]) -> None:
        for row, token in enumerate(tokens):
            if self.done[row]:
                continue
            matcher = self.matchers[row]
            grammars = self.schemas[row].grammars
            if token in grammars.eos_ids or not matcher.consume_token(token):
                if matcher.is_error():
                    log.warning("constrained row %d left its grammar: %s", row, matcher.get_error())
                self.done[row] = True
                continue
            self.texts[row] += grammars.lltokenizer.decode_bytes([token])
