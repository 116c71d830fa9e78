# Supplied by the autograder to hw4_rnn.ipynb: the names that the notebook's data cells would define.
#
# The cells that download the news corpus and build `tokenizer` and `vocab` from it are not run when the
# notebook is graded (docs/notebooks.md), so the grader defines these two names before your cells run:
#   tokenizer(text) -> list of lower-case tokens (the same rules as the notebook's BasicEnglishTokenizer)
#   vocab(tokens) -> list of ids, vocab[token] -> id, len(vocab); "<unk>" is 0 and "<pad>" is 1
# The vocabulary holds the words of the generated news snippets that the grader uses (datagen.py reads
# TOPIC_WORDS and FILLER_WORDS from here). A definition of the same name in your notebook wins, as it would
# when the notebook runs top to bottom.
# Standard library only: this file runs inside the grader's sandbox, before your notebook's code.

import re as _re

TOPIC_WORDS = {  # label (0-based) -> words that give a snippet its topic
    0: ["government", "minister", "election", "troops", "embassy", "treaty"],      # world
    1: ["coach", "season", "striker", "playoff", "stadium", "champion"],            # sports
    2: ["shares", "profit", "merger", "investors", "market", "quarterly"],          # business
    3: ["software", "browser", "satellite", "chip", "internet", "researchers"],    # science and technology
}
FILLER_WORDS = ["the", "a", "of", "in", "on", "said", "new", "after", "with", "for", "its", "will", "that", "as",
                "by", "from", "has", "this", "week", "report", "monday", "officials", "plans", "could", "more",
                "than", "over", "two", "first", "year"]
SPECIALS = ["<unk>", "<pad>"]

_SPACED = _re.compile(r"([.,!?()])")   # punctuation that becomes a token of its own
_DROPPED = _re.compile(r"[\"';:]")     # punctuation that is removed


def basic_english(text):
    """Lower-case the text, make . , ! ? ( ) tokens of their own, drop quotes, colons and semicolons, split on spaces."""
    text = _DROPPED.sub(" ", text.lower())
    return _SPACED.sub(r" \1 ", text).split()


class GradedVocab:
    """A fixed vocabulary: the specials, then every word of the generated snippets and ".", in sorted order."""

    def __init__(self, tokens):
        self.itos = list(SPECIALS) + sorted(set(tokens) - set(SPECIALS))
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.default_index = self.stoi["<unk>"]

    def __getitem__(self, token):
        return self.stoi.get(token, self.default_index)

    def __call__(self, tokens):
        return [self[t] for t in tokens]

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def get_itos(self):
        return list(self.itos)

    def get_stoi(self):
        return dict(self.stoi)

    def set_default_index(self, index):
        self.default_index = index


tokenizer = basic_english
vocab = GradedVocab([w for words in TOPIC_WORDS.values() for w in words] + FILLER_WORDS + ["."])
