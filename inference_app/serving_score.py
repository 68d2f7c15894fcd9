"""`POST /score`, compatible with Azure ML online-endpoint clients.

Accepted bodies and answers (the shapes Azure ML's chat and text-generation deployments use, which
clients such as LangChain's `AzureMLChatOnlineEndpoint` / `AzureMLOnlineEndpoint` parse):

* `{"text": "..."}` — one user turn through the chat template → `{"output": "..."}`
* `{"input_data": {"input_string": [{"role", "content"}, ...], "parameters": {...}}}` — a
  conversation through the chat template → `{"output": "..."}`
* `{"input_data": {"input_string": [[{"role", "content"}, ...], ...], "parameters": {...}}}` —
  a list of conversations, each through the chat template → `[{"0": "..."}, ...]`, one entry per
  conversation, in order.
* `{"input_data": {"input_string": ["prompt", ...], "parameters": {...}}}` — raw prompts (text
  generation, no template) → `[{"0": "..."}, ...]`, one entry per prompt.

`parameters`: `temperature`, `top_p`, `do_sample` (false = greedy; when absent, sampling follows
`temperature`), `max_new_tokens`.
"""

from __future__ import annotations

from inference_app.engine.base import GenerationRequest
from inference_app.errors import BadRequestError
from inference_app.generation import GenerationService, SamplingChoices
from inference_app.protocol import ChatMessage, ScoreOutput, ScoreParameters, ScoreRequest


class ScoreService:
    def __init__(self, generation: GenerationService) -> None:
        self.generation = generation

    async def score(
        self, body: ScoreRequest, request_id: str
    ) -> ScoreOutput | list[dict[str, str]]:
        self.generation.ensure_ready()
        if body.text is not None:
            return ScoreOutput(
                output=await self._chat(
                    [{"role": "user", "content": body.text}], ScoreParameters(), request_id, "text"
                )
            )
        if body.input_data is None:  # ScoreRequest's validator requires text or input_data
            raise BadRequestError("give 'text' or 'input_data'", param="input_data")
        inputs, parameters = body.input_data.input_string, body.input_data.parameters
        if all(isinstance(item, ChatMessage) for item in inputs):
            messages = [
                item.as_template_message() for item in inputs if isinstance(item, ChatMessage)
            ]
            text = await self._chat(messages, parameters, request_id, "input_data.input_string")
            return ScoreOutput(output=text)
        if all(isinstance(item, list) for item in inputs):
            conversations = [
                [message.as_template_message() for message in item]
                for item in inputs
                if isinstance(item, list)
            ]
            texts = await self._conversations(conversations, parameters, request_id)
            return [{"0": text} for text in texts]
        prompts = [item for item in inputs if isinstance(item, str)]
        texts = await self._prompts(
            [(prompt, f"input_data.input_string[{i}]") for i, prompt in enumerate(prompts)],
            parameters,
            request_id,
        )
        return [{"0": text} for text in texts]

    def _choices(self, parameters: ScoreParameters) -> SamplingChoices:
        greedy = parameters.do_sample is False or (
            parameters.do_sample is None and not parameters.temperature
        )
        return SamplingChoices(
            max_tokens=parameters.max_new_tokens,
            temperature=0.0 if greedy else (parameters.temperature or 1.0),
            top_p=parameters.top_p,
        )

    async def _chat(
        self,
        messages: list[dict[str, str]],
        parameters: ScoreParameters,
        request_id: str,
        param: str,
    ) -> str:
        gen = self.generation
        model = gen.default_model()
        prompt = await gen.render_chat(messages)
        ids = await gen.tokenize_prompt(prompt, param)
        sampling = gen.sampling(self._choices(parameters), len(ids))
        [result] = await gen.collect(gen.requests(request_id, prompt, ids, sampling, model, 1))
        return result.text

    async def _conversations(
        self,
        conversations: list[list[dict[str, str]]],
        parameters: ScoreParameters,
        request_id: str,
    ) -> list[str]:
        prompts = [
            (await self.generation.render_chat(messages), f"input_data.input_string[{i}]")
            for i, messages in enumerate(conversations)
        ]
        return await self._prompts(prompts, parameters, request_id)

    async def _prompts(
        self, prompts: list[tuple[str, str]], parameters: ScoreParameters, request_id: str
    ) -> list[str]:
        """Generates for every (prompt, its param name) together, answers in order."""
        gen = self.generation
        model = gen.default_model()
        requests: list[GenerationRequest] = []
        for i, (prompt, param) in enumerate(prompts):
            ids = await gen.tokenize_prompt(prompt, param)
            sampling = gen.sampling(self._choices(parameters), len(ids))
            requests += gen.requests(f"{request_id}-p{i}", prompt, ids, sampling, model, 1)
        return [result.text for result in await gen.collect(requests)]
