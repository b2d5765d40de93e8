"""The extraction LLM: one client per provider family, behind one small interface.

* OpenAI, Gemini and OpenRouter (their OpenAI-compatible endpoints), and any OpenAI-compatible server
  (Ollama, vLLM) go through the ``openai`` SDK, with JSON-schema structured output (or JSON mode).
* Anthropic goes through the ``anthropic`` SDK, with the schema as a forced tool's input.

The SDKs' own retries are off: the extractor decides what to retry. Transport failures, timeouts, rate
limits and error statuses all become :class:`LLMUnavailable`; the job is then retried later, and the
exchange stays pending, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import anthropic
import msgspec
import openai

from memory.config import LLMConfig
from memory.errors import LLMUnavailable

#: Each provider's public endpoint and a small current model, used when the config names none.
DEFAULTS: dict[str, tuple[str | None, str]] = {
    "openai": ("https://api.openai.com/v1", "gpt-4.1-mini"),
    "anthropic": (None, "claude-haiku-4-5"),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta/openai/", "gemini-2.5-flash"),
    "openrouter": ("https://openrouter.ai/api/v1", "openai/gpt-4.1-mini"),
    "openai-compatible": (None, "llama3.1"),
}


#: Statuses that mean the provider refused this request (too long, malformed), not that it is down.
REJECTED_STATUSES = frozenset({400, 413, 422})


class Rejected(Exception):
    """The provider refused this particular request; asking again will not help."""


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    """The answer hit the output-token limit, so it is likely cut short."""


class LLM(Protocol):
    @property
    def model(self) -> str: ...

    async def complete(self, system: str, user: str, schema: dict[str, Any]) -> Completion: ...

    async def close(self) -> None: ...


class OpenAIChat:
    def __init__(self, config: LLMConfig) -> None:
        base_url, model = DEFAULTS[config.provider]
        self._model = config.model or model
        self._config = config
        self._client = openai.AsyncOpenAI(
            api_key=config.api_key or "unset",
            base_url=config.base_url or base_url,
            timeout=config.timeout,
            max_retries=0,
        )

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, system: str, user: str, schema: dict[str, Any]) -> Completion:
        response_format: Any = (
            {"type": "json_schema", "json_schema": {"name": "facts", "schema": schema, "strict": False}}
            if self._config.structured_output == "json_schema"
            else {"type": "json_object"}
        )
        try:
            reply = await self._client.chat.completions.create(
                model=self._model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                response_format=response_format,
                temperature=0,
                max_tokens=self._config.max_output_tokens,
            )
        except openai.APIStatusError as exc:
            _raise_for(exc.status_code, exc.message, exc)
        except openai.APIError as exc:
            raise LLMUnavailable(f"extraction LLM unreachable: {type(exc).__name__}") from exc
        if not reply.choices:
            return Completion(text="", model=reply.model or self._model, usage=_usage(reply.usage))
        choice = reply.choices[0]
        return Completion(
            text=choice.message.content or "",
            model=reply.model or self._model,
            usage=_usage(reply.usage),
            truncated=choice.finish_reason == "length",
        )

    async def close(self) -> None:
        await self._client.close()


class AnthropicChat:
    _TOOL = "record_facts"

    def __init__(self, config: LLMConfig) -> None:
        self._model = config.model or DEFAULTS["anthropic"][1]
        self._config = config
        self._client = anthropic.AsyncAnthropic(
            api_key=config.api_key or "unset",
            base_url=config.base_url,
            timeout=config.timeout,
            max_retries=0,
        )

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, system: str, user: str, schema: dict[str, Any]) -> Completion:
        tool: Any = {"name": self._TOOL, "description": "Record the extracted facts.", "input_schema": schema}
        try:
            reply = await self._client.messages.create(
                model=self._model,
                system=system,
                messages=[{"role": "user", "content": user}],
                tools=[tool],
                tool_choice={"type": "tool", "name": self._TOOL},
                max_tokens=self._config.max_output_tokens,
            )
        except anthropic.APIStatusError as exc:
            _raise_for(exc.status_code, exc.message, exc)
        except anthropic.APIError as exc:
            raise LLMUnavailable(f"extraction LLM unreachable: {type(exc).__name__}") from exc
        usage = {
            "prompt_tokens": reply.usage.input_tokens,
            "completion_tokens": reply.usage.output_tokens,
            "total_tokens": reply.usage.input_tokens + reply.usage.output_tokens,
        }
        text = ""
        for block in reply.content:
            if block.type == "tool_use" and block.name == self._TOOL:
                text = msgspec.json.encode(block.input).decode()
                break
            if block.type == "text":
                text += block.text
        return Completion(
            text=text, model=reply.model, usage=usage, truncated=reply.stop_reason == "max_tokens"
        )

    async def close(self) -> None:
        await self._client.close()


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    return {
        "prompt_tokens": int(usage.prompt_tokens or 0),
        "completion_tokens": int(usage.completion_tokens or 0),
        "total_tokens": int(usage.total_tokens or 0),
    }


def _raise_for(status: int, message: str, exc: Exception) -> NoReturn:
    text = f"extraction LLM answered {status}: {_brief(message)}"
    if status in REJECTED_STATUSES:
        raise Rejected(text) from exc
    raise LLMUnavailable(text) from exc


def _brief(message: str) -> str:
    return message if len(message) <= 200 else message[:200] + "…"


def create(config: LLMConfig) -> LLM | None:
    """The configured extraction LLM, or None when ``llm.provider`` is ``none``."""
    if config.provider == "none":
        return None
    if config.provider == "anthropic":
        return AnthropicChat(config)
    return OpenAIChat(config)
