"""From-scratch language models (Transformer, LSTM, CNN, Mamba, RWKV), their tokenizers and corpora."""

from hearth.scratch.load import find_run, load_run

__all__ = ["find_run", "load_run"]
