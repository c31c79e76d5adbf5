"""The data layer: readers for the corpora's on-disk formats, the tokenisation conventions, synthetic error
injection, hub loading, and the builder of instruction-tuning mixes (`writetune.data.build`)."""

from writetune.data.readers import READERS, DataError, DataFormatError, Example, MissingDataError
from writetune.data.tokenization import detokenize, match_key, tokenize_ptb

__all__ = [
    "READERS",
    "DataError",
    "DataFormatError",
    "Example",
    "MissingDataError",
    "detokenize",
    "match_key",
    "tokenize_ptb",
]
