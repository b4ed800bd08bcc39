"""Trains the byte-level BPE tokenizer that tiny synthetic models ship with."""
from __future__ import annotations

import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|end|>"]
CORPUS = os.path.join(os.path.dirname(__file__), "corpus.txt")


def train_byte_level_bpe(vocab_size: int, corpus_path: str = CORPUS) -> Tokenizer:
    with open(corpus_path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok
