"""Tool turns through the chat template: the text a turn appends, and the check that a whole trajectory's tokens
equal the template's render of its final conversation (tokens and image placeholders)."""

from __future__ import annotations

from dataclasses import dataclass

from verlvl.models.vision_inputs import expand_image_placeholders


class TrajectoryMismatch(ValueError):
    """The tokens a multi-turn rollout built differ from the chat template's render of its conversation."""


SENTINEL = "\u0001verlvl-assistant-{}\u0001"


@dataclass
class Segment:
    """A run of a trajectory: `model` tokens (sampled, loss on) or template / tool tokens (loss off)."""

    ids: list[int]
    model: bool
    end_text: str = ""  # a model run that ended its turn: the text of its end token (Qwen: '<|im_end|>')


class ChatTurns:
    """Renders conversations with the model's chat template (the processor's, else the tokenizer's) and turns
    template text into trainer-view tokens (each image placeholder expanded to its image's token count)."""

    def __init__(self, tokenizer, processor=None, template_kwargs: dict | None = None):
        self.tokenizer, self.owner = tokenizer, processor if processor is not None else tokenizer
        self.template_kwargs = dict(template_kwargs or {})
        self.image_token = getattr(processor, "image_token", "<|image_pad|>") if processor is not None else None
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token) if self.image_token else None
        self.turn_end_text = self._turn_end()
        end_ids = self.encode(self.turn_end_text)
        self.turn_end_id = end_ids[0] if end_ids else None  # <|im_end|> for Qwen: what ends an assistant turn

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.owner.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False,
                                              **self.template_kwargs)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def expand(self, ids: list[int], counts: list[int]) -> list[int]:
        """One placeholder per image -> each image's token count (`counts`, in order); all must be used."""
        try:
            return expand_image_placeholders(ids, self.image_token_id, counts)
        except ValueError as e:
            raise TrajectoryMismatch(str(e)) from None

    def _turn_end(self) -> str:
        """The text the template writes after an assistant message's content (Qwen: '<|im_end|>\\n')."""
        probe = "verlvl-probe"
        text = self.render([{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}], False)
        return text[text.rindex(probe) + len(probe):]

    def tool_turn_text(self, before: list[dict], added: list[dict], model_end_text: str) -> str:
        """What follows the model's last token when `added` (tool messages) join the conversation `before` (which
        ends with the model's assistant message), up to the next assistant header: the rest of the turn end the
        model did not write (Qwen: '\\n' after its '<|im_end|>'), the tool turn(s) and the generation prompt."""
        old = self.render(before, False)
        new = self.render(before + added, True)
        if not new.startswith(old):
            raise TrajectoryMismatch("the chat template renders the earlier conversation differently once a tool turn "
                                     "is added, so the trajectory cannot grow turn by turn")
        if not self.turn_end_text.startswith(model_end_text):
            raise TrajectoryMismatch(f"the model ended its turn with {model_end_text!r} but the template ends it with "
                                     f"{self.turn_end_text!r}")
        return self.turn_end_text[len(model_end_text):] + new[len(old):]

    # ---------------------------------------------------------------- the check
    def check(self, messages: list[dict], segments: list[Segment], counts: list[int], where: str) -> None:
        """The trajectory (segments in order: the prompt, then model and template runs) against the template's
        render of `messages` (the prompt's messages, then assistant / tool messages; each assistant content is
        the model's decoded tokens without its turn-end token). Template text is compared token for token
        (image placeholders expanded to `counts`), the model's runs stand for themselves; the sequence ends with
        the model's last token, where the template would go on."""
        contents = [m["content"] for m in messages if m["role"] == "assistant"]
        marked, k = [], 0
        for m in messages:
            if m["role"] == "assistant":
                marked.append({**m, "content": SENTINEL.format(k)})
                k += 1
            else:
                marked.append(m)
        pieces, rest = [], self.render(marked, False)
        for k in range(len(contents)):
            head, found, rest = rest.partition(SENTINEL.format(k))
            if not found:
                raise TrajectoryMismatch(f"{where}: the chat template drops or rewrites assistant message {k}")
            pieces.append(head)
        if "".join(p + c for p, c in zip(pieces, contents)) + rest != self.render(messages, False):
            raise TrajectoryMismatch(f"{where}: the chat template changes assistant messages' content, so the model's "
                                     "tokens cannot be checked against it")
        runs = [s for s in segments if s.model]
        if len(runs) != len(contents):
            raise TrajectoryMismatch(f"{where}: {len(runs)} model turns in the tokens, {len(contents)} assistant "
                                     "messages in the conversation")
        expected, first_image = [], 0
        for k, piece in enumerate(pieces):
            if k > 0:
                end = runs[k - 1].end_text
                if not piece.startswith(end):
                    raise TrajectoryMismatch(f"{where}: model turn {k - 1} ended with {end!r}, the template ends it "
                                             f"with {piece[:len(end) + 8]!r}")
                piece = piece[len(end):]
            ids = self.encode(piece)
            n = sum(1 for t in ids if t == self.image_token_id)
            expected.extend(self.expand(ids, counts[first_image:first_image + n]))
            first_image += n
            expected.extend(runs[k].ids)
        if first_image != len(counts):
            raise TrajectoryMismatch(f"{where}: the template renders {first_image} image placeholders for "
                                     f"{len(counts)} images")
        actual = [t for s in segments for t in s.ids]
        if expected != actual:
            at = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))

            def show(ids):
                return self.tokenizer.decode(ids[max(0, at - 8):at + 8])

            raise TrajectoryMismatch(
                f"{where}: the rollout's tokens differ from the chat template's render of the final conversation at "
                f"token {at} (rollout {len(actual)} tokens, template {len(expected)}): rollout {show(actual)!r} vs "
                f"template {show(expected)!r}")
