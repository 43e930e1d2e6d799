"""Prompts of a chosen length in tokens, different on every request.

Every prompt is a fresh random run of common English words, so no request can reuse
another's KV cache prefix and each one pays for its whole prefill, as distinct users do.
The word count that gives the wanted number of tokens is calibrated once against the
server's own tokenizer (POST /tokenize, llama-server's route); a server without it gets
the rough rule of one token per common word.
"""

from __future__ import annotations

import logging
import random

import requests

WORDS = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government number "
    "night point home water room mother area money story fact month lot right study book eye job word "
    "business issue side kind head house service friend father power hour game line end member law car "
    "city community name president team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason research girl guy "
    "moment air teacher force education foot boy age policy music market sense nation plan college "
    "interest death experience effect use class control care field development role effort rate heart "
    "drug show leader light voice wife police mind price report decision son view relationship town road "
    "arm difference value building action model season society tax director position player record paper "
    "space ground form event official matter center couple site project activity star table need court "
    "oil situation cost industry figure street image phone data picture practice piece land product "
    "doctor wall patient worker news test movie north love support technology step baby computer type "
    "attention film tree source organization hair window evidence population truth song"
).split()

# The instruction keeps generations on topic; its own tokens count towards the length.
LEAD = "Write a short story that uses these words:"

log = logging.getLogger("loadtests.prompts")


class PromptMaker:
    """Random prompts of about `tokens` tokens (at least the lead sentence)."""

    def __init__(self, tokens: int, seed: int | None = None):
        self.tokens = max(1, tokens)
        self.words_per_token = 1.0
        self.rng = random.Random(seed)

    def calibrate(self, base_url: str, headers: dict, timeout: float = 10.0) -> bool:
        """Fit words per token on the server's tokenizer; False (and the 1:1 rule) without /tokenize."""
        sample = " ".join(random.Random(0).choice(WORDS) for _ in range(400))
        try:
            r = requests.post(base_url.rstrip("/") + "/tokenize", json={"content": " " + sample},
                              headers=headers, timeout=timeout)
            n = len(r.json()["tokens"]) if r.status_code == 200 else 0
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            log.warning("prompt length not calibrated (%s): one token per word assumed", e)
            return False
        if n <= 0:
            log.warning("prompt length not calibrated (/tokenize status %s)", r.status_code)
            return False
        self.words_per_token = 400 / n
        return True

    def n_words(self) -> int:
        lead_tokens = len(LEAD.split()) / self.words_per_token
        return max(1, round((self.tokens - lead_tokens) * self.words_per_token))

    def make(self) -> str:
        return LEAD + " " + " ".join(self.rng.choice(WORDS) for _ in range(self.n_words())) + "."
