"""One chat rendering rule for every model: training, the local engine and TGI render prompts the same way.

Every prompt of this project starts with a system message. Chat templates disagree about it: some take it
as it is, some refuse it (``Conversation roles must alternate``), and Mistral's v0.3 template writes it only
when the user turn is the *last* message, so the prompt alone (``add_generation_prompt``) and prompt +
completion render differently and completion-only masking covers the wrong span. Base models ship no
template at all. The rule, decided by probing the template itself (never by model name):

1. the tokenizer has a template that renders a sample system + user prompt with the system text, and the
   prompt alone is a token prefix of prompt + answer: keep it (``native``);
2. the template fails that check, but passes it once the system message is folded into the first user
   turn (system text, a blank line, the user text): wrap it so it folds (``folded``);
3. no template, or neither works: the project's own template (``own``): Mistral's [INST] format when the
   tokenizer has ``[INST]``/``[/INST]`` tokens (the system text opens the user turn, as mistral-common
   renders v3), else a plain generic one (``SYSTEM``/``USER``/``ASSISTANT`` lines).

:func:`apply_chat_rule` sets the chosen template on the tokenizer, which then travels with every adapter
saved from it, so inference reloads exactly what training used. Endpoints that apply their own template
server-side (OpenAI-compatible, Mistral) get :func:`fold_system` messages when asked to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
SYSTEM_ROLE_MODES = ("auto", "keep", "fold")
FOLD_SEPARATOR = "\n\n"

# Distinctive strings that no template writes by itself, so finding them in a rendering proves placement. The
# answer opens as every real answer does ('{"thought_process"'), so a token merge across the prompt/answer
# boundary shows up in the probe exactly as it would in training.
PROBE_SYSTEM = "Probe instructions: answer in JSON."
PROBE_USER = "Probe premise and hypothesis."
PROBE_ANSWER = '{"thought_process": "probe", "predicted_label": 1}'

# Mistral's v3 instruct format (mistral-common's rendering of Mistral-7B-Instruct-v0.3): the system text
# opens the last user turn, the answer follows [/INST] after a space and ends with </s>.
MISTRAL_INST_TEMPLATE = (
    "{{ bos_token }}"
    "{% set system = messages | selectattr('role', 'equalto', 'system') | map(attribute='content') | list %}"
    "{% set turns = messages | rejectattr('role', 'equalto', 'system') | list %}"
    "{% set last_user = namespace(index=-1) %}"
    "{% for message in turns %}{% if message.role == 'user' %}{% set last_user.index = loop.index0 %}{% endif %}"
    "{% endfor %}"
    "{% for message in turns %}"
    "{% if message.role == 'user' %}[INST] "
    "{% if loop.index0 == last_user.index and system %}{{ system | join('\n\n') }}\n\n{% endif %}"
    "{{ message.content }}[/INST]"
    "{% elif message.role == 'assistant' %}"
    " {% generation %}{{ message.content }}{{ eos_token }}{% endgeneration %}"
    "{% endif %}{% endfor %}"
)

# For tokenizers without any chat tokens: labelled lines; the answer starts right after "ASSISTANT:\n".
GENERIC_TEMPLATE = (
    "{{ bos_token or '' }}"
    "{% for message in messages %}"
    "{% if message.role == 'system' %}SYSTEM:\n{{ message.content }}\n\n"
    "{% elif message.role == 'user' %}USER:\n{{ message.content }}\n\n"
    "{% elif message.role == 'assistant' %}ASSISTANT:\n"
    "{% generation %}{{ message.content }}{{ eos_token }}{% endgeneration %}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:\n{% endif %}"
)

# Put in front of a template that cannot take a system role: the same conversation with the system text
# folded into the first user turn (a top-level ``set`` replaces the variable the rest of the template reads).
FOLD_PREFIX = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- if messages | length > 1 and messages[1]['role'] == 'user' -%}"
    "{%- set messages = [{'role': 'user', 'content': messages[0]['content'] + '\\n\\n' + messages[1]['content']}]"
    " + messages[2:] -%}"
    "{%- else -%}"
    "{%- set messages = [{'role': 'user', 'content': messages[0]['content']}] + messages[1:] -%}"
    "{%- endif -%}"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class ChatRule:
    rule: str  # native | folded | own
    template: str
    reason: str  # why the tokenizer's own template was not kept as it is ("" when native)


def fold_system(messages: Sequence[dict[str, str]]) -> Messages:
    """The conversation with a leading system message folded into the first user turn."""
    messages = [dict(message) for message in messages]
    if not messages or messages[0].get("role") != "system":
        return messages
    system = messages[0]["content"]
    if len(messages) > 1 and messages[1].get("role") == "user":
        return [{"role": "user", "content": system + FOLD_SEPARATOR + messages[1]["content"]}, *messages[2:]]
    return [{"role": "user", "content": system}, *messages[1:]]


def probe_messages() -> tuple[Messages, Messages]:
    prompt = [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": PROBE_USER}]
    return prompt, prompt + [{"role": "assistant", "content": PROBE_ANSWER}]


def template_problem(tokenizer, template: str | None) -> str | None:
    """Why ``template`` cannot render this project's prompts for training and inference alike, or None.

    It must render the probe conversation with and without the answer, keep the system text in both,
    and the prompt alone must be a token prefix of prompt + answer (TRL masks the prompt by that prefix).
    """
    if not template:
        return "no chat template"
    prompt, full = probe_messages()
    try:
        prompt_text = tokenizer.apply_chat_template(
            prompt, chat_template=template, tokenize=False, add_generation_prompt=True
        )
        full_text = tokenizer.apply_chat_template(full, chat_template=template, tokenize=False)
        prompt_ids = tokenizer.apply_chat_template(
            prompt, chat_template=template, tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        full_ids = tokenizer.apply_chat_template(full, chat_template=template, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"it cannot render a system message ({first_line})"
    if PROBE_SYSTEM not in prompt_text or PROBE_SYSTEM not in full_text:
        return (
            "it drops the system message when the answer follows"
            if PROBE_SYSTEM in prompt_text
            else "it drops the system message"
        )
    if PROBE_ANSWER.strip("{}") not in full_text:
        return "it drops the assistant answer"
    if list(full_ids[: len(prompt_ids)]) != list(prompt_ids) or len(full_ids) <= len(prompt_ids):
        return "the prompt alone is not a prefix of prompt + answer"
    return None


def own_template(tokenizer) -> str:
    """The project's template for a tokenizer: Mistral's [INST] format if it has those tokens, else generic."""
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = set(getattr(tokenizer, "get_added_vocab", dict)() or {})
    vocab = tokenizer.get_vocab()
    has_inst = all(
        token in vocab and (token in special or token in added or _is_control(tokenizer, token))
        for token in ("[INST]", "[/INST]")
    )
    return MISTRAL_INST_TEMPLATE if has_inst else GENERIC_TEMPLATE


def _is_control(tokenizer, token: str) -> bool:
    """A SentencePiece control piece ([INST] in Mistral's v3 vocabulary) encodes as one id from text."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    return len(ids) == 1


def choose_rule(tokenizer) -> ChatRule:
    template = _template_text(tokenizer)
    problem = template_problem(tokenizer, template)
    if problem is None:
        return ChatRule("native", template, "")
    if template:
        folded = FOLD_PREFIX + template
        if template_problem(tokenizer, folded) is None:
            return ChatRule("folded", folded, problem)
    own = own_template(tokenizer)
    own_problem = template_problem(tokenizer, own)
    if own_problem is not None:
        raise ValueError(
            f"tokenizer {tokenizer.name_or_path!r}: the project's own chat template does not "
            f"render either ({own_problem})"
        )
    return ChatRule("own", own, problem)


def apply_chat_rule(tokenizer):
    """Set the template the rule chooses on ``tokenizer`` (in place, idempotent) and return the tokenizer."""
    if not hasattr(tokenizer, "chat_template") or _is_mistral_common_backend(tokenizer):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} takes no chat template "
            "(mistral-common backend); load the model's Hub tokenizer files instead, or for "
            "Mistral-7B-v0.3 the 'mistral-common:v3' tokenizer"
        )
    chosen = choose_rule(tokenizer)
    if chosen.rule != "native":
        log.info("chat template of %s: %s (%s)", tokenizer.name_or_path, chosen.rule, chosen.reason)
    tokenizer.chat_template = chosen.template
    return tokenizer


def _template_text(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one renders chat
        template = template.get("default")
    return template or None


def _is_mistral_common_backend(tokenizer) -> bool:
    return type(tokenizer).__name__ == "MistralCommonBackend"


def render_prompt(tokenizer, messages: Messages) -> str:
    """The inference prompt text (the tokenizer must have been through :func:`apply_chat_rule`)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer, conversations: Sequence[Messages]) -> list[list[int]]:
    """Prompt token ids exactly as training tokenized the prompt part of each example."""
    return [
        list(
            tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True)[
                "input_ids"
            ]
        )
        for messages in conversations
    ]


def adds_bos(tokenizer) -> bool:
    """Whether encoding plain text adds a BOS token (as TGI's router does with the served tokenizer)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos_id


def without_leading_bos(tokenizer, text: str) -> str:
    """``text`` minus the BOS the template wrote, when the tokenizer adds its own on encoding: a server
    that tokenizes the prompt (TGI's ``/generate``) would otherwise start it with two."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and adds_bos(tokenizer):
        return text[len(bos) :]
    return text


def fold_for_endpoint(model: str | None, system_role: str = "auto") -> bool:
    """Whether to send an endpoint (which applies its own template server-side) folded messages.

    ``keep``/``fold`` decide outright. ``auto`` applies the rule to the served model's tokenizer when it
    can be read without the network (a folder, ``embedded``, or the Hugging Face cache): fold when its
    template cannot take the system message as it is; keep when the tokenizer is unknown here (hosted
    APIs such as Mistral's place the system message themselves).
    """
    if system_role not in SYSTEM_ROLE_MODES:
        raise ValueError(f"system role mode must be one of {SYSTEM_ROLE_MODES}, not {system_role!r}")
    if system_role != "auto":
        return system_role == "fold"
    tokenizer = _offline_tokenizer(model)
    if tokenizer is None:
        return False
    try:
        return choose_rule(tokenizer).rule != "native"
    except ValueError:  # not even the project's template renders with it: folding is the safe form
        return True


def _offline_tokenizer(model: str | None):
    from pathlib import Path

    from transformers import AutoTokenizer

    from nli_cot_hub.models import EMBEDDED_ALIASES, resolve_model

    if not model:
        return None
    try:
        if model in EMBEDDED_ALIASES or Path(model).is_dir():
            return AutoTokenizer.from_pretrained(resolve_model(model))
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError):
        return None
