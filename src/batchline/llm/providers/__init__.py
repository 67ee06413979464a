"""Provider protocols other than OpenAI's chat completions (which ``ChatModel`` speaks
natively): Anthropic's Messages API."""

from batchline.llm.providers.anthropic import (
    ANTHROPIC_URL,
    ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    AnthropicTransport,
    from_anthropic,
    to_anthropic,
)

__all__ = [
    "ANTHROPIC_URL",
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicTransport",
    "from_anthropic",
    "to_anthropic",
]
