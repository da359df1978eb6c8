"""steer reading every field as usual but keeping no text (only its length): the bound on what
``Pieces`` can save by keeping text cheaply (bench/README.md, "Keeping the text").

``bench/inprocess.py --variant bench/variants/text_not_kept.py``.
"""

from steer.providers.base import Assembly


def _add_text(self, choice, s):
    if s:
        self.chars += len(s)


def apply():
    saved = Assembly.__dict__["add_text"]
    Assembly.add_text = _add_text

    def undo():
        Assembly.add_text = saved
    return undo
