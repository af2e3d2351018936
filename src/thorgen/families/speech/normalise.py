"""A small English text normaliser: the fallback when NeMo's (nemo_text_processing) is absent.

NeMo's own normaliser needs pynini, which has no aarch64 wheel, so on a Jetson Thor pip leaves it
out. A FastPitch with a character or phoneme tokenizer then drops every digit and symbol it has no
token for ("It costs $42" would be spoken "It costs"). This expands the common cases into words
first: whole numbers, decimals, ordinals, money, percentages, a few abbreviations and symbols.
Dates, times and units beyond these stay as written. Torch-free and dependency-free.
"""

from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
ABBREVIATIONS = {
    "mr.": "mister", "mrs.": "missus", "ms.": "miz", "dr.": "doctor", "st.": "saint", "jr.": "junior",
    "sr.": "senior", "prof.": "professor", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example",
    "i.e.": "that is", "approx.": "approximately", "no.": "number",
}
SYMBOLS = {"&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}

_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)"  # 1234 or 1,234 (a comma after a number stays punctuation)
_MONEY = re.compile(rf"([$€£])({_DIGITS})(?:\.(\d{{1,2}}))?")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I)
_DECIMAL = re.compile(rf"({_DIGITS})\.(\d+)")
_NUMBER = re.compile(_DIGITS)
_CURRENCY = {"$": ("dollar", "cent"), "€": ("euro", "cent"), "£": ("pound", "penny")}


def number_words(value: int) -> str:
    """0 -> "zero", 1234 -> "one thousand two hundred thirty four"."""
    if value < 0:
        return "minus " + number_words(-value)
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_words(rest) if rest else "")
    for scale, name in _SCALES:
        if value >= scale:
            head, rest = divmod(value, scale)
            return number_words(head) + " " + name + (" " + number_words(rest) if rest else "")
    raise AssertionError("unreachable")


def ordinal_words(value: int) -> str:
    words = number_words(value).split(" ")
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _money(match: re.Match[str]) -> str:
    unit, small = _CURRENCY[match.group(1)]
    whole = _int(match.group(2))
    words = f"{number_words(whole)} {unit}{'' if whole == 1 else 's'}"
    if match.group(3):
        cents = int(match.group(3).ljust(2, "0"))
        if cents:
            plural = "pence" if small == "penny" else "cents"
            words += f" {number_words(cents)} {small if cents == 1 else plural}"
    return words


def _decimal(match: re.Match[str]) -> str:
    return number_words(_int(match.group(1))) + " point " + " ".join(_ONES[int(d)] for d in match.group(2))


def normalise(text: str) -> str:
    """Spell out what a tokenizer without a normaliser would drop. Idempotent on plain words."""
    words = []
    for word in text.split(" "):
        words.append(ABBREVIATIONS.get(word.lower(), word))
    text = " ".join(words)
    text = _MONEY.sub(_money, text)
    text = _ORDINAL.sub(lambda m: ordinal_words(_int(m.group(1))), text)
    text = _DECIMAL.sub(_decimal, text)
    text = _NUMBER.sub(lambda m: number_words(_int(m.group(0))), text)
    for symbol, spoken in SYMBOLS.items():
        text = text.replace(symbol, spoken)
    return re.sub(r"\s+", " ", text).strip()
