"""Deterministic test strings for comparing tokenizers with Hugging Face `tokenizers`.

`texts(seed, n, specials)` gives n varied strings: many scripts, decomposed accents (so NFC has
work), emoji sequences, code, whitespace and digit runs, contractions in every case, special-token
text, random code points from the whole Unicode range, and long mixtures. `invalid_utf8(seed, n)`
gives byte strings that are not valid UTF-8, for the U+FFFD replacement rule.
"""

import random
import unicodedata

LATIN = ["café", "naïve", "Ångström", "façade", "señor", "Øresund", "straße", "Łódź", "İstanbul",
         "crème brûlée", "Dvořák", "Ærøskøbing", "ĳssel", "ﬁnancial", "Ǆemal", "Ħal Far"]
CYRILLIC = ["Привет, мир", "Съешь же ещё этих мягких французских булок", "ЁЖИК", "їжак", "Ґанок"]
GREEK = ["Καλημέρα κόσμε", "ΑΒΓΔ αβγδ", "ἀρχὴ ἥμισυ παντός", "ς σ Σ", "ΐ ΰ"]
ARABIC = ["مرحبا بالعالم", "السَّلَامُ عَلَيْكُمْ", "٠١٢٣٤٥٦٧٨٩", "كتاب", "ﻻ"]
HEBREW = ["שלום עולם", "בְּרֵאשִׁית", "ספר", "עִבְרִית"]
DEVANAGARI = ["नमस्ते दुनिया", "हिन्दी", "क़िला", "०१२३४५६७८९", "श्री"]
THAI = ["สวัสดีชาวโลก", "ภาษาไทย", "กรุงเทพมหานคร", "๑๒๓"]
CJK = ["你好，世界", "日本語のテキスト", "漢字かなカナ", "中文标点：“引号”《书名》",
       "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３", "㊗️", "𠀀𠀁𪚥", "々〆〤"]
HANGUL = ["안녕하세요 세계", "한국어", "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af",
          "ㄱㄴㄷ"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣", "❤️", "🧑🏿‍💻", "👩🏻‍❤️‍💋‍👨🏼",
         "🤷‍♀️", "🙂🙃", "✈", "☃︎", "🫠"]
CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    '{"key": [1, 2.5, null], "nested": {"a": "b"}}',
    "<div class=\"x\">&nbsp;</div>",
    "SELECT * FROM users WHERE id = 42;",
    "x=>x+1; let y = `tmpl ${x}`;",
    "#include <vector>\nint main() { return 0; }\n",
    "    if err != nil {\r\n        return err\r\n    }\r\n",
    "$ ls -la | grep '^d' > out.txt 2>&1",
    "a_b__c___d", "CamelCaseIdentifier", "snake_case_name", "http://example.com/path?q=1&r=2",
]
WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\n \n",
              "\u00a0", "\u3000", "\u2028", "\u2029", "\u180e", "\u200b", "\u2009", "\u202f",
              "\u0085", "\x0b", "\x0c", " \t \n\t"]
DIGITS = ["0", "7", "42", "123", "1234", "12345", "3.14159", "1,000,000", "2024-01-01", "٣٤٥",
          "१२३", "１２３", "²³", "Ⅻ", "½", "0x1F", "1e-10", "987654321098765"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M",
                "'LL", "'lL", "'D", "’s", "'ſ", "'K", "'x", "''", "don't", "I'M", "they're",
                "WE'VE", "you'll", "she'd", "it's", "O'Neil", "rock'n'roll"]
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world",
         "tokenizer", "HELLO", "a", "I", "supercalifragilisticexpialidocious", "ok", "x", "Zürich"]
PUNCT = [".", ",", "!", "?", "...", "—", "–", "-", "(", ")", "[", "]", "{", "}", "\"", "'", "«", "»",
         "“", "”", "‘", "’", "@", "#", "$", "%", "^", "&", "*", "~", "`", "|", "\\", "/", ":", ";",
         "<", ">", "=", "+", "_", "§", "¶", "•", "…", "‰", "€", "£", "¥", "©", "®", "™", "°", "±"]
COMBINING = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u030a", "\u0323", "\u0345",
             "\u0334", "\u05b0", "\u093c", "\u094d", "\u0e31", "\u302a", "\U0001d165", "\u20dd"]

SCRIPTS = [LATIN, CYRILLIC, GREEK, ARABIC, HEBREW, DEVANAGARI, THAI, CJK, HANGUL]


def nfd_variants(rng, s):
    return unicodedata.normalize(rng.choice(["NFD", "NFC", "NFKD", "NFD"]), s)


def random_code_point(rng):
    while True:
        block = rng.random()
        if block < 0.3:
            cp = rng.randrange(0x80, 0x800)
        elif block < 0.75:
            cp = rng.randrange(0x800, 0x10000)
        elif block < 0.95:
            cp = rng.randrange(0x10000, 0x30000)
        else:
            cp = rng.randrange(0x30000, 0x110000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def atom(rng, specials):
    kind = rng.randrange(16)
    if kind == 0:
        return nfd_variants(rng, rng.choice(rng.choice(SCRIPTS)))
    if kind == 1:
        return rng.choice(rng.choice(SCRIPTS))
    if kind == 2:
        return rng.choice(EMOJI)
    if kind == 3:
        return rng.choice(CODE)
    if kind == 4:
        return "".join(rng.choice(WHITESPACE) for _ in range(rng.randrange(1, 4)))
    if kind == 5:
        return rng.choice(DIGITS)
    if kind == 6:
        return rng.choice(WORDS) + rng.choice(CONTRACTIONS)
    if kind == 7 and specials:
        s = rng.choice(specials)
        # Whole, cut short, or doubled: near-misses must stay text.
        return rng.choice([s, s, s[:-1], s[1:], s + s, s.upper()])
    if kind == 8:
        return rng.choice(WORDS)
    if kind == 9:
        return rng.choice(PUNCT) * rng.randrange(1, 4)
    if kind == 10:
        return rng.choice(WORDS) + "".join(rng.choice(COMBINING) for _ in range(rng.randrange(1, 4)))
    if kind == 11:
        return "".join(random_code_point(rng) for _ in range(rng.randrange(1, 6)))
    if kind == 12:
        return " " * rng.randrange(1, 20) + rng.choice(WORDS)
    if kind == 13:
        return "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 12)))
    if kind == 14:
        return rng.choice(["\n", "\r\n", "\t", " "]) * rng.randrange(1, 6)
    return rng.choice(WORDS).capitalize()


def iter_texts(seed, specials=()):
    rng = random.Random(seed)
    yield from ["", " ", "  ", "\n", "a", "Hello world", " Hello world", "Hello  world\n\n",
                "Once upon a time", "I'm here. You're there. It's theirs.", "\t\tindented",
                "trailing space ", "ends with newline\n", "🙂", "👨‍👩‍👧‍👦 family"]
    yield from specials
    while True:
        if rng.random() < 0.05:
            # Long mixtures, up to a few KB.
            yield "".join(atom(rng, specials) for _ in range(rng.randrange(50, 400)))
        else:
            sep = rng.choice(["", " ", " ", "\n", "\t", ""])
            yield sep.join(atom(rng, specials) for _ in range(rng.randrange(1, 12)))


def texts(seed, n, specials=()):
    it = iter_texts(seed, specials)
    return [next(it) for _ in range(n)]


def invalid_utf8(seed, n):
    rng = random.Random(seed)
    pieces = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80",
              b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xfe", b"\xe2\x82",
              b"\xf0\x9f\x98", b"\xf0\x9f", b"\xc3", b"\xe2", b"\xf8\x88\x80\x80\x80",
              b"\xf0\x80\x80\x80"]
    valid = [t.encode() for t in ["abc", " ", "é", "€", "😀", "日本", "\n", "Hello", "'s", "12"]]
    out = []
    while len(out) < n:
        r = rng.random()
        if r < 0.4:
            b = b"".join(rng.choice(pieces + valid) for _ in range(rng.randrange(1, 8)))
        elif r < 0.7:
            b = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)))
        else:
            # A valid string cut at a random byte, with more after it.
            s = "".join(rng.choice(["é", "€", "😀", "日本語", "Привет", "abc"]) for _ in range(4))
            e = s.encode()
            cut = rng.randrange(1, len(e))
            b = e[:cut] + rng.choice(valid) + e[cut:cut + rng.randrange(0, 3)]
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            out.append(b)
    return out


if __name__ == "__main__":
    # A text of about --bytes bytes for timing encode: python3 tokenizer_corpus.py 1000000
    import sys
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    parts, total = [], 0
    for t in iter_texts(7):
        parts.append(t)
        total += len(t.encode())
        if total >= size:
            break
    sys.stdout.write("\n".join(parts))
