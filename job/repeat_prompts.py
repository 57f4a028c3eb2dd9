"""The prompts that ask a model to repeat a token, as token ids with the token put in by id.

After Land & Bartolo (2024), arXiv 2405.05417, section 3.3, and their code: magikarp's
``fishing.py`` (``VERIFICATION_PROMPTS``, ``verify_magikarp``). Each prompt is a preamble,
some repeated examples of the token being repeated, and the start of one more repetition;
the model's probability of producing the token next says whether it "knows" the token. The
three prompts below are the paper's three (a repeating device shown 20 times, an assistant
asked what a phrase means, the phrase repeated 50 times), written in this module's own form.

**The token goes in by id**, as magikarp substitutes a placeholder token's id: the text
around it is encoded in pieces and the token's id is put between them, so a token that no
text encodes to (a failed round trip) is still tested as itself.

**Chat models** (a tokenizer with a ``chat_template``): the preamble and the examples form
the user turn, rendered by the tokenizer's own template with the generation prompt, and the
repetition starts the assistant turn. Magikarp's ``fishing.py`` prompts every model as a base
model; putting the same text in a chat turn is this module's choice, so that an instruction
model is asked in the form it was trained on. **Base models**: the plain text, after the
tokenizer's beginning-of-text token when it adds one.

A prompt longer than the model's context keeps its end (the question and the last examples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOKEN = "{token}"  # where the token goes in a template's text
_MARK = "\u2063\u2063vocabmap-token\u2063\u2063"  # stands for the token inside a chat render


@dataclass(frozen=True)
class Template:
    """One way to ask: ``preamble``, ``repeats`` × (``question`` + ``answer``), ``question``,
    then ``answer`` up to the token."""

    name: str
    repeats: int
    preamble: str
    question: str
    answer: str

    def user_text(self) -> str:
        """Everything before the answer that the model completes."""
        return self.preamble + (self.question + self.answer) * self.repeats + self.question

    def answer_start(self) -> str:
        return self.answer[:self.answer.index(TOKEN)]


TEMPLATES = (
    Template("input_output", 20,
             "This device repeats its input exactly, as shown in these 100 identical trials.",
             "\nInput: «{token}»\nOutput:", " «{token}»"),
    Template("assistant_explain", 0,
             "This helpful assistant explains what a phrase means, replying with identical "
             "responses to identical questions for reliability.",
             "\nUser: What does 'edslfkj' mean?\nAssistant: 'edslfkj' has no specific meaning "
             "I am aware of.\nUser: what does '{token}' mean?\nAssistant:", " '{token}'"),
    Template("repeats", 50,
             "Below is the output, as you can see it's just giving the same phrase repeated "
             "indefinitely:\n", "{token}", "{token}"),
)


@dataclass(frozen=True)
class Prompt:
    """A template encoded around the token: ``pieces[0]``, token, ``pieces[1]``, token, …"""

    template: str
    pieces: tuple[tuple[int, ...], ...]

    def ids(self, token_id: int, limit: int) -> list[int]:
        """The prompt for ``token_id``, at most ``limit`` ids (its end kept)."""
        out: list[int] = list(self.pieces[0])
        for piece in self.pieces[1:]:
            out.append(token_id)
            out.extend(piece)
        return out[-limit:]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _text(template: Template, tokenizer: Any) -> tuple[str, bool]:
    """The prompt's text with ``_MARK`` where the token goes; and whether it starts with
    the special tokens the chat template wrote (then none are added)."""
    user = template.user_text().replace(TOKEN, _MARK)
    start = template.answer_start().replace(TOKEN, _MARK)
    if has_chat_template(tokenizer):
        chat = tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                             tokenize=False, add_generation_prompt=True)
        return str(chat) + start.lstrip(), True
    return user + start, False


def _begin_ids(tokenizer: Any) -> list[int]:
    """The beginning-of-text id the tokenizer puts before a text, if it puts one."""
    bos = getattr(tokenizer, "bos_token_id", None)
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return [bos] if bos is not None and probe and probe[0] == bos else []


def encode(template: Template, tokenizer: Any) -> Prompt:
    """``template`` for this tokenizer (see the module docstring)."""
    text, templated = _text(template, tokenizer)
    parts = text.split(_MARK)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] if p else [] for p in parts]
    if not templated:
        encoded[0] = _begin_ids(tokenizer) + encoded[0]
    return Prompt(template.name, tuple(tuple(int(i) for i in e) for e in encoded))


def prompts(tokenizer: Any) -> list[Prompt]:
    """Every template, encoded for ``tokenizer``."""
    return [encode(t, tokenizer) for t in TEMPLATES]
