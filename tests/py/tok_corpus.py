"""Deterministic test strings for the tokenizer oracle tests and the speed bench.

Every generator takes a random.Random and returns a list of str (valid Unicode, no
surrogates). `corpus(n, seed)` mixes them; `EDGE_CASES` are strings known to break
other implementations of the Qwen / Llama 3 split regex."""
import random

EDGE_CASES = [
    "\x1f-a", "¼-a", "Ⅵ-a", "\uFEFF//", "Cửa Việt", "a\xa0\xa0\x00b", "3333333",
    "", " ", "\n", "\r\n", "  \n\n  ", "a", "'s", "'S", "'ll've", "I'M", "don't", "DON'T",
    "y'all'd've", "’s", "\u017fs", "'ſ", "ǅ", "ﬁ", "e\u0301", "\u212b", "\uf900", "\u1100\u1161\u11a8",
    "\u180e", "\u200b", "\u2028", "\u3000x", "\x85", "\x0b\x0c", "\t\t\tx", " \t\n\r\x0b\x0c",
    "1 2  3   4", "١٢٣٤٥", "０１２３", "१२३", "½⅓¼", "²³", "x²", "ⅰⅱⅲ",
    "hello\u00a0world", "a\u0300\u0301\u0302\u0303", "\u0300abc", "🏳️‍🌈", "👨‍👩‍👧‍👦", "🇺🇸🇫🇷", "👍🏽", "1️⃣",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<think>",
    "</think>", "<|im_end", "<|im_end|>>", "<<|im_end|>", "<think></think>", "x<|eot_id|>y",
    "\U0010ffff", "\U000e0001", "\ufffd", "\ufdd0", "\x7f\x80\x9f", "a\x00\x00\x00b",
]

SCRIPTS = [
    (0x0041, 0x007A), (0x00C0, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0530, 0x058F),
    (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F), (0x0980, 0x09FF), (0x0E00, 0x0E7F),
    (0x10A0, 0x10FF), (0x1100, 0x11FF), (0xAC00, 0xD7A3), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
    (0x0300, 0x036F), (0x2000, 0x206F), (0x2190, 0x22FF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
    (0x0F00, 0x0FFF), (0x1780, 0x17FF), (0x1E00, 0x1EFF), (0xFF00, 0xFFEF), (0x20000, 0x2A6DF),
]

EMOJI_PARTS = ["👨", "👩", "👧", "👦", "🧑", "❤️", "🔥", "😀", "🏳️", "🌈", "🏴‍☠️", "✋"]
SKIN = ["\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]
FLAGS = ["US", "FR", "JP", "DE", "BR", "IN", "CN", "GB", "UA", "ZA"]
WORDS = ["the", "The", "THE", "hello", "world", "tokenizer", "naïve", "café", "straße", "日本語",
         "Привет", "مرحبا", "नमस्ते", "こんにちは", "안녕하세요", "ελληνικά", "x", "I", "a", "ok",
         "def", "return", "0x1F", "foo_bar", "__init__", "https://example.com/a?b=c&d=e", "@user",
         "#tag", "$100", "3.14159", "1,000,000", "e-mail", "C++", "it's", "we're", "they'll"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
SPACES = [" ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\xa0", "\u3000", "\u2028", "\x0b", "\x0c",
          "\x85", "\u2009", "   \n", " \n ", "\n   "]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
            "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_5|>", "<|im_start", "|>", "<|"]


def rand_cp(r):
    while True:
        if r.random() < 0.8:
            lo, hi = r.choice(SCRIPTS)
            c = r.randint(lo, hi)
        else:
            c = r.randint(1, 0x10FFFF) if r.random() < 0.3 else r.randint(1, 0xFFFF)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def g_unicode(r):
    return "".join(rand_cp(r) if r.random() < 0.85 else r.choice(SPACES) for _ in range(r.randint(1, 40)))


def g_emoji(r):
    out = []
    for _ in range(r.randint(1, 8)):
        k = r.random()
        if k < 0.3:
            out.append("\u200d".join(r.choice(EMOJI_PARTS) for _ in range(r.randint(2, 4))))
        elif k < 0.5:
            f = r.choice(FLAGS)
            out.append("".join(chr(0x1F1E6 + ord(ch) - 65) for ch in f))
        elif k < 0.7:
            out.append(r.choice(["👍", "✋", "🧑", "👋"]) + r.choice(SKIN))
        elif k < 0.8:
            out.append(r.choice("0123456789#*") + "\ufe0f\u20e3")
        else:
            out.append(r.choice(WORDS))
        if r.random() < 0.5:
            out.append(r.choice(SPACES))
    return "".join(out)


def g_space(r):
    return "".join(r.choice(SPACES) * r.randint(1, 5) + (r.choice(WORDS) if r.random() < 0.6 else "")
                   for _ in range(r.randint(1, 10)))


def g_digits(r):
    digs = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९", "¼½¾²³¹"]
    out = []
    for _ in range(r.randint(1, 6)):
        d = r.choice(digs)
        out.append("".join(r.choice(d) for _ in range(r.randint(1, 12))))
        out.append(r.choice(["", " ", ".", ",", "-", "x", "e", "a1", "\n"]))
    return "".join(out)


def g_contraction(r):
    out = []
    for _ in range(r.randint(1, 8)):
        w = r.choice(WORDS)
        c = r.choice(CONTRACTIONS)
        if r.random() < 0.4:
            c = c.upper()
        out.append(w + c + r.choice(["", " ", "'", "s", "\n", "!"]))
    return "".join(out)


def g_ascii(r):
    return "".join(chr(r.randint(0, 127)) for _ in range(r.randint(1, 60)))


def g_words(r):
    return "".join(r.choice(WORDS) + r.choice(SPACES[:4] + [",", ". ", "-", "/", "'", "\"", "(", ")"])
                   for _ in range(r.randint(1, 30)))


def g_special(r):
    out = []
    for _ in range(r.randint(1, 6)):
        out.append(r.choice([r.choice(SPECIALS), r.choice(WORDS), r.choice(SPACES), g_unicode(r)[:5]]))
    return "".join(out)


def g_nfc(r):
    bases = ["a", "e", "o", "u", "A", "ᄀ", "n", "c", "\u212b", "\uf900", "\u0344"]
    marks = ["\u0300", "\u0301", "\u0302", "\u0308", "\u0327", "\u0323", "\u1161", "\u11a8", "\u0345"]
    return "".join(r.choice(bases) + "".join(r.choice(marks) for _ in range(r.randint(0, 3)))
                   for _ in range(r.randint(1, 10)))


GENERATORS = [g_unicode, g_emoji, g_space, g_digits, g_contraction, g_ascii, g_words, g_special, g_nfc]


def corpus(n, seed=1234):
    r = random.Random(seed)
    out = list(EDGE_CASES)
    while len(out) < n:
        out.append(GENERATORS[len(out) % len(GENERATORS)](r))
    return out[:n]


def long_strings(seed=99):
    r = random.Random(seed)
    return ["a" * 100000, " " * 100000, "\n" * 100000, "1" * 100000, "ab" * 50000,
            "".join(rand_cp(r) for _ in range(100000)), "👍🏽" * 30000,
            " \n" * 50000, "x" + " " * 99998 + "y", "'s" * 50000]
