"""Chat templates written out in Python (no jinja, no transformers), and SPIRAL's prompts.

Each template renders a list of messages (``{"role": ..., "content": ...}``, roles ``system``,
``user``, ``assistant``) to the exact string the model's official jinja template gives, so prompts
built here tokenize to the same ids as ``transformers``' ``apply_chat_template`` (tests check it):

  qwen      ChatML with no default system message: SPIRAL's format (SPIRAL.md section 3). Equals
            Qwen3's template for conversations that end on a user turn and carry no ``<think>``.
  qwen3     Qwen3's template: ``<think>`` blocks are dropped from assistant turns before the last
            user query and a final assistant turn is written with its (possibly empty) think block.
  qwen2.5   Qwen2.5-Instruct's template: a default system message when none is given.
  llama3    Meta-Llama-3-Instruct: ``<|begin_of_text|>``, role headers, stripped contents.
  llama3.1  Llama 3.1/3.2/3.3-Instruct: as llama3 plus the system header with the knowledge and
            today dates (``date_string`` defaults to the template's own "26 Jul 2024").
  none      raw text: the contents joined by blank lines, for base models without chat tokens.

Tool calls and tool roles are not supported (SPIRAL does not use them).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Mapping, Sequence

Message = Mapping[str, str]
ROLES = ("system", "user", "assistant")

SPIRAL_GAME_INSTRUCTION = (
    "You are playing a two-player zero-sum game. Make valid actions to win.\n"
    "Observation: {observation}\n"
    "Please reason step by step, and put your final answer within \\boxed{}.")
GENERAL_INSTRUCTION = ("Question: {question}\n"
                       "Please reason step by step, and put your final answer within \\boxed{}.")

QWEN2_5_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
LLAMA3_1_DEFAULT_DATE = "26 Jul 2024"


def _check_messages(messages: Sequence[Message]) -> list[Message]:
  """The messages as a list, after checking roles and contents; raises a clear ValueError."""
  if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
    raise ValueError("messages must be a list of {'role', 'content'} dicts, got "
                     f"{type(messages).__name__}")
  if not messages:
    raise ValueError("messages is empty; pass at least one "
                     "{'role': 'user', 'content': ...} message")
  for i, message in enumerate(messages):
    if not isinstance(message, Mapping):
      raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got "
                       f"{type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
      raise ValueError(f"messages[{i}]['role'] is {role!r}; the templates here support {ROLES}")
    if not isinstance(message.get("content"), str):
      raise ValueError(f"messages[{i}]['content'] must be a str, got "
                       f"{type(message.get('content')).__name__}")
  return list(messages)


class ChatTemplate(abc.ABC):
  """A chat format: ``render`` gives the text; ``end_of_turn`` is the token that closes a turn."""

  name: str
  end_of_turn: ClassVar[str | None]

  @abc.abstractmethod
  def _render(self, messages: list[Message], add_generation_prompt: bool) -> str:
    """The text of checked messages."""

  def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """The prompt text; with ``add_generation_prompt`` it ends where the reply starts."""
    return self._render(_check_messages(messages), add_generation_prompt)


@dataclasses.dataclass(frozen=True)
class ChatML(ChatTemplate):
  """Qwen's ``<|im_start|>role\\ncontent<|im_end|>\\n`` format.

  default_system: the system turn written when the first message is not a system message.
  qwen3_thinking: Qwen3's handling of ``<think>...</think>`` in assistant turns.
  """
  name: str
  default_system: str | None = None
  qwen3_thinking: bool = False
  end_of_turn: ClassVar[str] = "<|im_end|>"

  def _render(self, messages: list[Message], add_generation_prompt: bool) -> str:
    parts = []
    if messages[0]["role"] == "system":
      parts.append(f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n")
    elif self.default_system is not None:
      parts.append(f"<|im_start|>system\n{self.default_system}<|im_end|>\n")
    last_query = _last_query_index(messages)
    for i, message in enumerate(messages):
      role, content = message["role"], message["content"]
      if role == "system" and i == 0:
        continue  # written above
      if role == "assistant" and self.qwen3_thinking:
        content = _qwen3_assistant_text(message, keep_think=i > last_query,
                                        is_last=i == len(messages) - 1)
      parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
    if add_generation_prompt:
      parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def _last_query_index(messages: list[Message]) -> int:
  """Index of the last user turn that is not a tool response (Qwen3's ``last_query_index``)."""
  for i in range(len(messages) - 1, -1, -1):
    content = messages[i]["content"]
    if messages[i]["role"] == "user" and not (content.startswith("<tool_response>") and
                                              content.endswith("</tool_response>")):
      return i
  return len(messages) - 1


def _qwen3_assistant_text(message: Message, keep_think: bool, is_last: bool) -> str:
  """An assistant turn's text under Qwen3's rules: reasoning shown only after the last query."""
  content = message["content"]
  reasoning = message.get("reasoning_content")
  if reasoning is None:
    reasoning = ""
    if "</think>" in content:
      head, content = content.split("</think>")[0], content.split("</think>")[-1].lstrip("\n")
      reasoning = head.rstrip("\n").split("<think>")[-1].lstrip("\n")
  if keep_think and (is_last or reasoning):
    return "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + content.lstrip("\n")
  return content


@dataclasses.dataclass(frozen=True)
class Llama3(ChatTemplate):
  """Llama 3's header format. date_string None: Llama 3.0 (no system header unless given);
  a date: Llama 3.1+ (a system header with the knowledge cut-off and that date, always)."""
  name: str
  date_string: str | None = None
  end_of_turn: ClassVar[str] = "<|eot_id|>"

  def _render(self, messages: list[Message], add_generation_prompt: bool) -> str:
    parts = ["<|begin_of_text|>"]
    if self.date_string is not None:
      system = ""
      if messages[0]["role"] == "system":
        system, messages = messages[0]["content"].strip(), messages[1:]
      parts.append("<|start_header_id|>system<|end_header_id|>\n\n"
                   "Cutting Knowledge Date: December 2023\n"
                   f"Today Date: {self.date_string}\n\n{system}<|eot_id|>")
    for message in messages:
      # jinja's ``trim`` is Python's ``str.strip``
      parts.append(f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n"
                   f"{message['content'].strip()}<|eot_id|>")
    if add_generation_prompt:
      parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


@dataclasses.dataclass(frozen=True)
class RawText(ChatTemplate):
  """No chat tokens: the contents joined by a blank line (one message is returned as is)."""
  name: str
  end_of_turn: ClassVar[None] = None

  def _render(self, messages: list[Message], add_generation_prompt: bool) -> str:
    del add_generation_prompt  # a raw prompt simply continues
    return "\n\n".join(message["content"] for message in messages)


TEMPLATES: dict[str, ChatTemplate] = {
    "qwen": ChatML("qwen"),
    "qwen3": ChatML("qwen3", qwen3_thinking=True),
    "qwen2.5": ChatML("qwen2.5", default_system=QWEN2_5_DEFAULT_SYSTEM),
    "llama3": Llama3("llama3"),
    "llama3.1": Llama3("llama3.1", date_string=LLAMA3_1_DEFAULT_DATE),
    "none": RawText("none"),
}


def get_template(template: str | ChatTemplate) -> ChatTemplate:
  """The template registered under a name (or the template itself)."""
  if isinstance(template, ChatTemplate):
    return template
  if template not in TEMPLATES:
    raise ValueError(f"template={template!r} is unknown; choose one of {sorted(TEMPLATES)} "
                     "or pass a ChatTemplate")
  return TEMPLATES[template]


def apply_chat_template(messages: Sequence[Message], template: str | ChatTemplate = "qwen",
                        add_generation_prompt: bool = True) -> str:
  """The prompt text of ``messages`` in ``template`` (a registered name or a ChatTemplate)."""
  return get_template(template).render(messages, add_generation_prompt)


def spiral_instruction(observation: str) -> str:
  """SPIRAL's user message for a game observation (SPIRAL.md section 3), before templating."""
  return SPIRAL_GAME_INSTRUCTION.replace("{observation}", observation, 1)


def spiral_prompt(observation: str, template: str | ChatTemplate = "qwen") -> str:
  """The full prompt for one move: SPIRAL's instruction as the only (user) message, no system."""
  message = {"role": "user", "content": spiral_instruction(observation)}
  return apply_chat_template([message], template)


def general_prompt(question: str, template: str | ChatTemplate = "qwen") -> str:
  """The reference's math/general evaluation prompt (its ``qwen3_general`` template)."""
  content = GENERAL_INSTRUCTION.replace("{question}", question, 1)
  return apply_chat_template([{"role": "user", "content": content}], template)
