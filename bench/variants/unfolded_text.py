"""steer as it kept streamed text before ``Pieces``: one list entry (one live string) per delta.

``bench/inprocess.py --variant bench/variants/unfolded_text.py`` times it next to the current tree.
"""

from steer.providers.base import Assembly, _join


def _add_text(self, choice, s):
    if not s:
        return
    chars = self.chars = self.chars + len(s)
    if chars <= self.max_chars:
        try:
            self.text[choice].append(s)
        except KeyError:
            self.text[choice] = [s]
    else:
        self.truncated = True
    if choice == 0 and self.text_sink is not None:
        self.text_sink(s)
    if self.deltas is not None:
        self.deltas.append(("text", s, choice, None, None, None))


def _joined_text(self, choice=0):
    return _join(self.text.get(choice, ()))


def _all_text(self):
    return "".join(_join(self.text[c]) for c in sorted(self.text))


def apply():
    saved = {name: Assembly.__dict__[name] for name in ("add_text", "joined_text", "all_text")}
    Assembly.add_text, Assembly.joined_text, Assembly.all_text = _add_text, _joined_text, _all_text

    def undo():
        for name, fn in saved.items():
            setattr(Assembly, name, fn)
    return undo
