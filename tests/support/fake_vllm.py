"""A loopback server answering as vLLM's OpenAI server does for scoring: ``/v1/models`` with
``max_model_len``, and ``/v1/completions`` with ``prompt_logprobs`` computed by a real (tiny)
causal LM: for each prompt (token ids), ``[None, {"<id>": {"logprob", "rank", "decoded_token"}},
...]``, the prompt token's own entry first, then the top ``prompt_logprobs`` others.
"""

from __future__ import annotations

import threading

import torch

from tests.support.loopback import JSONHandler, LoopbackServer


class FakeVLLM(LoopbackServer):
    def __init__(self, model_dir: str, served_name: str | None = None, port: int = 0):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.name, self.root = served_name or model_dir, model_dir
        self.requests: list[dict] = []
        self._lock = threading.Lock()  # one forward at a time, as one GPU would
        fake = self

        class Handler(JSONHandler):
            def do_GET(self):
                if self.path != "/v1/models":
                    return self._send(404, {"error": "not found"})
                self._send(200, {"object": "list", "data": [{"id": fake.name, "object": "model", "root": fake.root,
                                                             "max_model_len": 4096}]})

            def do_POST(self):
                body = self._body()
                fake.requests.append(body)
                if body.get("model") != fake.name:
                    return self._send(404, {"object": "error", "message": f"The model `{body.get('model')}` does "
                                            "not exist.", "type": "NotFoundError", "code": 404})
                prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
                choices = [{"index": i, "text": "x", "logprobs": None, "finish_reason": "length",
                            "prompt_logprobs": fake.prompt_logprobs(ids, body.get("prompt_logprobs") or 0)}
                           for i, ids in enumerate(prompts)]
                self._send(200, {"id": "cmpl-fake", "object": "text_completion", "model": fake.name,
                                 "choices": choices, "usage": {"prompt_tokens": sum(map(len, prompts)),
                                                               "completion_tokens": len(prompts)}})

        self.url = self._listen(port, Handler) + "/v1"

    def prompt_logprobs(self, ids: list[int], top: int) -> list:
        with self._lock, torch.no_grad():
            logits = self.model(torch.tensor([ids])).logits[0].float()
        lps = torch.log_softmax(logits, dim=-1)
        out: list = [None]
        for p in range(1, len(ids)):
            row, tid = lps[p - 1], ids[p]
            entry = {str(tid): self._entry(row, tid)}
            for other in torch.topk(row, top).indices.tolist() if top else []:
                entry.setdefault(str(other), self._entry(row, other))
            out.append(entry)
        return out

    def _entry(self, row: torch.Tensor, tid: int) -> dict:
        lp = row[tid].item()
        return {"logprob": lp, "rank": int((row > lp).sum().item()) + 1,
                "decoded_token": self.tokenizer.decode([tid])}
