# Lets nltk.word_tokenize run where NLTK's data cannot be downloaded (the grader's sandbox, an offline laptop).
#
# word_tokenize first splits the text into sentences with the Punkt model `punkt_tab` (which
# nltk.download("punkt_tab") fetches), then splits each sentence into words. When that model is not
# installed, this installs an empty one: Punkt with no learned abbreviations, collocations or sentence
# starters. The two agree on every text without a full stop: Punkt's learned parameters only decide
# what a word ending in "." means, while "?" and "!" always end a sentence. The graded dialogue has no
# full stops (datagen.py), so it is tokenized exactly as with the real model. Where the real model is
# installed (Colab after nltk.download), it is used unchanged.
def _offline_punkt():
    import atexit
    import os
    import shutil
    import tempfile

    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    root = tempfile.mkdtemp(prefix="nltk_data_")
    atexit.register(shutil.rmtree, root, True)  # four empty files; gone when Python exits
    model = os.path.join(root, "tokenizers", "punkt_tab", "english")
    os.makedirs(model)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        with open(os.path.join(model, name), "w", encoding="utf-8"):
            pass
    nltk.data.path.append(root)


_offline_punkt()
del _offline_punkt
