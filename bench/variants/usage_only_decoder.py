"""steer with the OpenAI Chat decoder reading only ``usage``: the clock, gaps and chunk count stay, the
content is not read or kept (nothing to estimate from: the workload reports usage).

``bench/inprocess.py --variant bench/variants/usage_only_decoder.py``: what reading and keeping the
content costs in situ (bench/README.md, "Where the in-situ time goes").
"""

from steer.providers.openai import ChatDecoder, usage_from


def _decode(self, chunk, asm):
    usage = chunk.usage
    if usage is not None:
        asm.usage = usage_from(asm, usage)


def apply():
    saved = ChatDecoder.__dict__["decode"]
    ChatDecoder.decode = _decode

    def undo():
        ChatDecoder.decode = saved
    return undo
