"""vLLM as the scorer: a vLLM OpenAI server scores through ``/v1/completions`` with
``prompt_logprobs``, the scored span found with the same tokenizer as reer's own scorer.

The scoring text is encoded here (``scorer.encoder``) and sent as token ids, so the server
scores exactly the tokens whose positions were found, whatever its own tokenization of a text
would be. Each request asks for one generated token (``max_tokens`` 1: vLLM requires at least
one) and the prompt token's log-probability alone (``prompt_logprobs`` 0); a step's candidates
go in one request, one prompt each. The score is the same clipped mean as reer's engine:
``mean(min(-logprob, 2))`` over the scored positions.

vLLM computes the whole prompt for every such request (it cannot return prompt log-probs from
its prefix cache, so the cache gives nothing here), and with prefix caching on, the log-probs it
returns can depend on request order (vLLM issue 42019): serve it with
``--no-enable-prefix-caching``.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx

from scorer.client import DEFAULT_SCORE_TIMEOUT_S, MAX_IN_FLIGHT, http_client
from scorer.encoder import Encoder, default_chat_format
from scorer.errors import ScorerError, ScorerUnavailable, ScoringInputError
from scorer.settings import ScorerSettings

MAX_NLL = 2.0  # every token's NLL is clipped here (reference section 4)


def clipped_mean(logprobs: list[float]) -> float:
    return sum(min(-lp, MAX_NLL) for lp in logprobs) / len(logprobs)


def prompt_logprob(entry: dict[str, Any] | None, token_id: int) -> float:
    """The prompt token's log-probability from one ``prompt_logprobs`` entry: ``{token_id:
    {logprob, rank, decoded_token}}`` (the token's own entry is always among them)."""
    if not entry or str(token_id) not in entry:
        raise ScorerError(f"vLLM's prompt_logprobs has no entry for prompt token {token_id}")
    value = entry[str(token_id)]
    return float(value["logprob"] if isinstance(value, dict) else value)


class VLLMScorer:
    """A scorer (``score_many``, ``check_many``) backed by a vLLM server at ``url`` (ending in /v1)."""

    def __init__(self, url: str, settings: ScorerSettings, tokenizer: str | None = None, token: str | None = None,
                 timeout_s: float = DEFAULT_SCORE_TIMEOUT_S):
        self.url = url.rstrip("/")
        self.settings = settings
        self.tokenizer_spec = tokenizer or settings.model
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = http_client(MAX_IN_FLIGHT, httpx.Timeout(timeout_s, connect=10.0), headers)
        self.model: str | None = None
        self.encoder: Encoder | None = None

    async def start(self) -> dict[str, Any]:
        """Find the served model and load the tokenizer; the server's model entry. The served
        name (or the path it was loaded from) must be the run's --scorer-model."""
        listed = (await self._get("/models")).get("data") or []
        entry = next((m for m in listed if self.settings.model in (m.get("id"), m.get("root"))), None)
        if entry is None:
            served = ", ".join(repr(m.get("id")) for m in listed) or "nothing"
            raise ScorerError(f"the vLLM server at {self.url} serves {served}, not this run's --scorer-model "
                              f"{self.settings.model!r}")
        self.model = entry["id"]
        from transformers import AutoConfig, AutoTokenizer  # only a vLLM scorer needs a tokenizer on this side

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_spec)
            model_type = getattr(AutoConfig.from_pretrained(self.tokenizer_spec), "model_type", None)
        except (OSError, ValueError) as exc:
            raise ScorerError(f"cannot load the tokenizer {self.tokenizer_spec!r} for the vLLM scorer (give "
                              f"--scorer-tokenizer a local copy of the served model's tokenizer): {exc}") from exc
        if not tokenizer.is_fast:
            raise ScorerError(f"{self.tokenizer_spec!r} has no fast tokenizer: reer needs offset mappings")
        s = self.settings
        self.encoder = Encoder(tokenizer, chat_format=s.chat_format or default_chat_format(tokenizer, model_type),
                               prompts_dir=s.prompts_dir, scoring_prompt=s.scoring_prompt,
                               max_context=s.max_context or entry.get("max_model_len"),
                               single_segment_answer=s.single_segment_answer)
        return entry

    async def score_many(self, question: str, thinkings: list[str], answer: str,
                         lang: str) -> list[float | ScoringInputError]:
        results: list[Any] = []
        encoded = []
        for thinking in thinkings:
            try:
                encoded.append(self.encoder.encode(question, thinking, answer, lang))
                results.append(None)
            except ScoringInputError as exc:
                results.append(exc)
        if encoded:
            scores = iter(await self._scores(encoded))
            results = [next(scores) if r is None else r for r in results]
        return results

    async def _scores(self, encoded: list) -> list[float | ScoringInputError]:
        """One request for a step's prompts; one the server finds too long fails alone."""
        body = {"model": self.model, "prompt": [e.ids for e in encoded], "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": 0}
        try:
            answer = await self._post("/completions", body)
        except ScoringInputError as exc:
            if len(encoded) == 1:
                return [exc]
            return [s for e in encoded for s in await self._scores([e])]
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(encoded):
            raise ScorerError(f"the vLLM server at {self.url} answered {len(choices)} choices for "
                              f"{len(encoded)} prompts")
        return [self._score(c, e) for c, e in zip(choices, encoded)]

    def _score(self, choice: dict, e) -> float:
        entries = choice.get("prompt_logprobs") or []
        if len(entries) != len(e.ids):
            raise ScorerError(f"the vLLM server at {self.url} gave prompt_logprobs for {len(entries)} tokens of a "
                              f"{len(e.ids)}-token prompt (is it a vLLM server, and does it allow prompt_logprobs?)")
        return clipped_mean([prompt_logprob(entries[p], e.ids[p]) for p in e.positions])

    async def check_many(self, items: list[tuple[str, str, str]]) -> list[int | ScoringInputError]:
        out: list[int | ScoringInputError] = []
        for question, answer, lang in items:
            try:
                out.append(len(self.encoder.encode(question, "", answer, lang)))
            except ScoringInputError as exc:
                out.append(exc)
        return out

    async def _get(self, path: str) -> dict:
        return await self._call("GET", path)

    async def _post(self, path: str, body: dict) -> dict:
        return await self._call("POST", path, body)

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            r = await self._http.request(method, f"{self.url}{path}", json=body)
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            raise ScorerUnavailable(f"the vLLM scorer at {self.url} did not answer: {exc!r}") from exc
        if r.status_code == 200:
            return r.json()
        text = r.text[:500]
        if r.status_code == 400 and "context" in text.lower():
            raise ScoringInputError(f"over the vLLM scorer's context: {text}")
        if r.status_code in (408, 429, 502, 503, 504):
            raise ScorerUnavailable(f"the vLLM scorer at {self.url} answered HTTP {r.status_code}: {text}")
        raise ScorerError(f"the vLLM scorer at {self.url} failed (HTTP {r.status_code}): {text}")

    async def aclose(self) -> None:
        await self._http.aclose()
