"""Chat templates of instruct models, rendered in a sandboxed Jinja environment (as transformers renders them).

A template comes from the model's files (tokenizer_config.json's "chat_template" or chat_template.jinja) and is
untrusted: the sandbox refuses attribute access to internals, and the environment is immutable (templates cannot
change lists or dicts they are given)::

    >>> render_chat("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}",
    ...             [{"role": "user", "content": "Hi"}])
    '<|user|>Hi'
"""

import json

from engine.errors import UserError


class ChatTemplateError(UserError):
    """A chat template that cannot be rendered (bad syntax, a raise_exception in the template, a sandbox refusal)."""


def render_chat(template: str, messages: list[dict], *, add_generation_prompt: bool = True,
                bos_token: str | None = None, eos_token: str | None = None, **extra) -> str:
    """The prompt text a chat template makes of ``messages`` ([{"role": ..., "content": ...}, ...])."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ChatTemplateError(f"the chat template refused: {message}")

    def tojson(value, indent=None, ensure_ascii=False, **_):
        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)

    def strftime_now(fmt):
        import datetime
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                bos_token=bos_token or "", eos_token=eos_token or "", **extra)
    except ChatTemplateError:
        raise
    except TemplateError as e:
        raise ChatTemplateError(f"the chat template cannot be rendered: {e}") from None
    except Exception as e:  # noqa: BLE001 - template code fails in whatever way it fails
        raise ChatTemplateError(f"the chat template failed: {type(e).__name__}: {e}") from None
