"""Chat templates against ``transformers``' ``apply_chat_template`` running the official jinja templates.

The jinja texts below are the models' own ``chat_template`` strings (Qwen2.5-Instruct, Qwen3,
Meta-Llama-3-Instruct, Llama-3.1-Instruct), written out here so nothing is downloaded.
"""
import pytest
from hypothesis import given, settings, strategies as st

from spiral_jax.text import templates

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

QWEN2_5_JINJA = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

QWEN3_JINJA = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

LLAMA3_1_JINJA = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# The plain ChatML that SPIRAL's reference writes by hand (its apply_qwen3_template)
CHATML_JINJA = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
                "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

OFFICIAL = {"qwen": CHATML_JINJA, "qwen3": QWEN3_JINJA, "qwen2.5": QWEN2_5_JINJA,
            "llama3": LLAMA3_JINJA, "llama3.1": LLAMA3_1_JINJA}
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def hf_tokenizers():
  """One transformers tokenizer per template, carrying the official jinja text."""
  word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
  word_level.add_special_tokens(SPECIALS)
  out = {}
  for name, jinja in OFFICIAL.items():
    bos = "<|begin_of_text|>" if name.startswith("llama") else None
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token=bos)
    tok.chat_template = jinja
    out[name] = tok
  return out


def reference(hf_tokenizers, name, messages, add_generation_prompt=True, **kwargs):
  return hf_tokenizers[name].apply_chat_template(
      messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)


SYSTEM = {"role": "system", "content": "You judge games fairly."}
USER = {"role": "user", "content": "Observation: [0] | [1]\nYour move?"}
ASSISTANT = {"role": "assistant", "content": "I pick \\boxed{0}."}
USER2 = {"role": "user", "content": "  And now?  \n"}
CONVERSATIONS = {
    "single": [USER],
    "system": [SYSTEM, USER],
    "multi": [USER, ASSISTANT, USER2],
    "system_multi": [SYSTEM, USER, ASSISTANT, USER2],
    "late_system": [USER, ASSISTANT, SYSTEM, USER2],
    "ends_with_assistant": [SYSTEM, USER, ASSISTANT],
    "think_history": [USER, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA"}, USER2],
    "think_last": [USER, {"role": "assistant", "content": "<think>x</think>B"}],
    "reasoning_field": [USER, {"role": "assistant", "content": "C", "reasoning_content": "\nr\n"}],
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_matches_official_template(hf_tokenizers, name, case, add_generation_prompt):
  messages = CONVERSATIONS[case]
  ours = templates.apply_chat_template(messages, name, add_generation_prompt)
  assert ours == reference(hf_tokenizers, name, messages, add_generation_prompt)


def test_qwen_equals_qwen3_and_qwen2_5_where_they_agree(hf_tokenizers):
  """SPIRAL's 'qwen' is Qwen3's format for a user turn, and Qwen2.5's given a system turn."""
  for case in ("single", "multi", "system", "system_multi"):
    messages = CONVERSATIONS[case]
    expected = reference(hf_tokenizers, "qwen3", messages)
    assert templates.apply_chat_template(messages, "qwen") == expected
  for case in ("system", "system_multi", "ends_with_assistant"):
    messages = CONVERSATIONS[case]
    expected = reference(hf_tokenizers, "qwen2.5", messages)
    assert templates.apply_chat_template(messages, "qwen") == expected


def test_llama3_1_date_string(hf_tokenizers):
  custom = templates.Llama3("llama3.1-custom", date_string="01 Jan 2025")
  messages = CONVERSATIONS["system_multi"]
  assert (templates.apply_chat_template(messages, custom) ==
          reference(hf_tokenizers, "llama3.1", messages, date_string="01 Jan 2025"))


FRAGMENTS = ["<think>", "</think>", "\n", "\n\n", " ", "\t", "<tool_response>", "</tool_response>",
             "<|im_end|>", "\\boxed{", "}", "é", "漢"]
content = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)),
                   max_size=6).map("".join)
message = st.builds(lambda role, text: {"role": role, "content": text},
                    st.sampled_from(["system", "user", "assistant"]), content)


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(message, min_size=1, max_size=5), add_generation_prompt=st.booleans())
def test_random_conversations_match(hf_tokenizers, messages, add_generation_prompt):
  for name in ("qwen3", "qwen2.5", "llama3", "llama3.1"):
    ours = templates.apply_chat_template(messages, name, add_generation_prompt)
    assert ours == reference(hf_tokenizers, name, messages, add_generation_prompt), name
  if not any("</think>" in m["content"] for m in messages) and messages[-1]["role"] == "user":
    expected = reference(hf_tokenizers, "qwen3", messages)
    assert templates.apply_chat_template(messages, "qwen") == expected


SPIRAL_KUHN = ("<|im_start|>user\n"
               "You are playing a two-player zero-sum game. Make valid actions to win.\n"
               "Observation: [GAME] You are Player 0 in Kuhn Poker. {braces} \\boxed{x}\n"
               "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
               "<|im_start|>assistant\n")


def test_spiral_prompt_exact_text(hf_tokenizers):
  observation = "[GAME] You are Player 0 in Kuhn Poker. {braces} \\boxed{x}"
  assert templates.spiral_prompt(observation) == SPIRAL_KUHN
  user = [{"role": "user", "content": templates.spiral_instruction(observation)}]
  assert templates.spiral_prompt(observation) == reference(hf_tokenizers, "qwen3", user)
  assert templates.spiral_prompt(observation, "llama3") == reference(hf_tokenizers, "llama3", user)
  assert templates.spiral_prompt(observation, "none") == templates.spiral_instruction(observation)


def test_general_prompt():
  assert templates.general_prompt("What is 1+1?") == (
      "<|im_start|>user\nQuestion: What is 1+1?\nPlease reason step by step, and put your final "
      "answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n")


def test_none_template_joins_contents():
  joined = SYSTEM["content"] + "\n\n" + USER["content"]
  assert templates.apply_chat_template([SYSTEM, USER], "none") == joined
  raw = templates.apply_chat_template([USER], "none", add_generation_prompt=False)
  assert raw == USER["content"]


def test_end_of_turn_tokens():
  assert templates.get_template("qwen").end_of_turn == "<|im_end|>"
  assert templates.get_template("qwen3").end_of_turn == "<|im_end|>"
  assert templates.get_template("llama3").end_of_turn == "<|eot_id|>"
  assert templates.get_template("none").end_of_turn is None


@pytest.mark.parametrize("messages, match", [
    ([], "messages is empty"),
    ("hello", "must be a list"),
    ([{"role": "tool", "content": "x"}], r"messages\[0\]\['role'\] is 'tool'"),
    ([USER, {"role": "user"}], r"messages\[1\]\['content'\] must be a str"),
    ([USER, "hi"], r"messages\[1\] must be a dict"),
])
def test_bad_messages_raise_clear_errors(messages, match):
  with pytest.raises(ValueError, match=match):
    templates.apply_chat_template(messages, "qwen")


def test_unknown_template_names_the_choices():
  with pytest.raises(ValueError, match=r"template='gemma' is unknown; choose one of .*llama3"):
    templates.apply_chat_template([USER], "gemma")
