"""Trains the byte-level BPE tokenizer that tiny synthetic models ship with."""
from __future__ import annotations

import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|end|>"]
CORPUS = os.path.join(os.path.dirname(__file__), "corpus.txt")


def train_byte_level_bpe(vocab_size: int, corpus_path: str = CORPUS, *, texts=None, special_tokens=SPECIAL_TOKENS,
                         min_frequency: int = 2) -> Tokenizer:
    """A GPT-2-style byte-level BPE (ByteLevel pre-tokenizer and decoder, the full byte alphabet) trained on `texts`,
    or on the lines of `corpus_path`; the special tokens take ids 0.. in their order."""
    if texts is None:
        with open(corpus_path, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok
