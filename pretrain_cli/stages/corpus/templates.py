"""The template policy: which wikitext templates render text, and how; every other one is dropped.

    >>> call = TemplateCall("convert", ("10", "km"), {"abbr": "on"})
    >>> DEFAULT_POLICY.rule_for("Convert").render(call)
    '10 km (6.2 mi)'
    >>> policy = load_template_policy(Path("templates.yaml"))  # templates: {ship: "format {1} {2}"}

A policy maps a template name (lower case, "_" read as a space; a key ending in "-*" covers a
family such as `lang-fr`, `lang-de` …) to a rule: a small named renderer written as a string, so a
user's YAML file can extend or override the defaults. Templates with no rule are dropped, which is
what infoboxes, navboxes, citations, hatnotes and maintenance tags need. The renderers turn one
call into the text a reader sees on the page: `{{convert|10|km}}` → "10 kilometres (6.2 mi)",
`{{lang-fr|texte}}` → "French: texte", `{{birth date|1900|1|2}}` → "January 2, 1900".
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import yaml

from pretrain_cli.errors import UserError


@dataclass(frozen=True)
class TemplateCall:
    """One use of a template: `{{convert|10|km|abbr=on}}` is ("convert", ("10", "km"), {"abbr": "on"})."""

    name: str  # normalised
    args: tuple[str, ...]  # positional, stripped; "2=x" fills the second
    named: Mapping[str, str]

    def arg(self, n: int) -> str:
        """The n-th positional argument (1-based), "" when absent."""
        return self.args[n - 1] if 0 < n <= len(self.args) else ""


Renderer = Callable[[TemplateCall], str]


@dataclass(frozen=True)
class Rule:
    """A parsed rule string: `spec` is what the user wrote, `render` what it does."""

    spec: str
    render: Renderer = field(compare=False, repr=False)


def normalise_name(name: str) -> str:
    """The policy key of a template name: "Template:Birth_date " → "birth date"."""
    name = " ".join(name.replace("_", " ").split()).lower()
    for prefix in ("template:", "subst:", "safesubst:", "msg:"):
        name = name.removeprefix(prefix).lstrip()
    return name


class TemplatePolicy(Mapping[str, Rule]):
    """An immutable mapping: normalised template name → Rule. Pickles as its rule strings."""

    def __init__(self, rules: Mapping[str, str]) -> None:
        # Bad rule strings raise ValueError here; load_template_policy turns them into UserErrors.
        parsed = {normalise_name(name): parse_rule(spec) for name, spec in rules.items()}
        self._rules = MappingProxyType(dict(sorted(parsed.items())))
        self._lookups: dict[str, Rule | None] = {}

    def __getitem__(self, name: str) -> Rule:
        return self._rules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemplatePolicy) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().items()))

    def __repr__(self) -> str:
        return f"TemplatePolicy({len(self)} rules)"

    def __reduce__(self) -> tuple[type[TemplatePolicy], tuple[dict[str, str]]]:
        return TemplatePolicy, (self.as_dict(),)  # renderers are closures; their specs rebuild them

    def as_dict(self) -> dict[str, str]:
        """{name: rule string}, sorted by name: stable, for manifests and config hashes."""
        return {name: rule.spec for name, rule in self._rules.items()}

    def updated(self, rules: Mapping[str, str]) -> TemplatePolicy:
        """A new policy with `rules` added, or replacing the rules of the same names."""
        return TemplatePolicy({**self.as_dict(), **rules})

    def rule_for(self, raw_name: str) -> Rule | None:
        """The rule for a template name as written on the page, or None: the template is dropped."""
        if raw_name in self._lookups:
            return self._lookups[raw_name]
        name = normalise_name(raw_name)
        rule = self._rules.get(name)
        if rule is None and "-" in name:
            rule = self._rules.get(name[:name.index("-") + 1] + "*")  # lang-fr → lang-*
        if len(self._lookups) > 50_000:  # pages can invent names without end; keep the memo bounded
            self._lookups.clear()
        self._lookups[raw_name] = rule
        return rule


def load_template_policy(path: Path | None) -> TemplatePolicy:
    """DEFAULT_POLICY, extended or overridden by the YAML file at `path` (`templates: {NAME: RULE}`)."""
    if path is None:
        return DEFAULT_POLICY
    how = 'write it as `templates: {"lang-*": drop, "ship": "format {1} {2}"}` (see docs/corpus.md)'
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such template policy file; check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the template policy ({err}); pass a UTF-8 YAML file") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise UserError(f"{path}: not valid YAML{at}; {how}") from None
    rules = data.get("templates") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) != {"templates"} or not isinstance(rules or {}, dict):
        raise UserError(f"{path}: expected one key, `templates`, holding a mapping of template names "
                        f"to rules; {how}")
    rules = rules or {}  # "templates:" with nothing under it changes nothing
    problems = []
    for name, spec in rules.items():
        if not isinstance(name, str) or not normalise_name(name):
            problems.append(f"template name {name!r} is not a non-empty string")
        elif not isinstance(spec, str):
            problems.append(f"template {name!r}: rule {spec!r} is not a string")
        else:
            try:
                parse_rule(spec)
            except ValueError as err:
                problems.append(f"template {name!r}: {err}")
    if problems:
        raise UserError(f"{path}: {'; '.join(problems)}; valid rules: {VALID_RULES}")
    return DEFAULT_POLICY.updated(rules)


# --- rules -----------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def parse_rule(spec: str) -> Rule:
    """A Rule from its string, e.g. "arg 2", "join , ", "literal –"; ValueError if there is none."""
    word, _, rest = spec.partition(" ")
    if word in _RENDERERS and not rest.strip():
        return Rule(spec, _RENDERERS[word])
    if word == "arg" and rest.strip().isdecimal() and int(rest) > 0:
        n = int(rest)
        return Rule(spec, lambda call: call.arg(n))
    if word == "named" and rest.strip():
        key = rest.strip()
        return Rule(spec, lambda call: call.named.get(key) or call.arg(1))
    if word == "join":
        return Rule(spec, lambda call: rest.join(arg for arg in call.args if arg))
    if word == "literal" and rest:
        return Rule(spec, lambda call: rest)
    if word == "format" and rest:
        return Rule(spec, lambda call: _PLACEHOLDER.sub(
            lambda m: call.arg(int(m[1])) if m[1].isdecimal() else call.named.get(m[1], ""), rest))
    raise ValueError(f"unknown rule {spec!r}")


def _drop(call: TemplateCall) -> str:
    return ""


def _first(call: TemplateCall) -> str:
    return call.arg(1)


def _last(call: TemplateCall) -> str:
    return call.args[-1] if call.args else ""


# --- languages -------------------------------------------------------------------------------------

# English names Wikipedia shows for {{lang-xx}} and {{langx|xx}}; a code not here shows the text alone.
LANGUAGE_NAMES = {
    "af": "Afrikaans", "akk": "Akkadian", "aln": "Gheg Albanian", "am": "Amharic", "ang": "Old English",
    "ar": "Arabic", "arc": "Aramaic", "az": "Azerbaijani", "be": "Belarusian", "ber": "Berber",
    "bg": "Bulgarian", "bn": "Bengali", "bo": "Tibetan", "br": "Breton", "bs": "Bosnian", "ca": "Catalan",
    "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "egy": "Egyptian", "el": "Greek",
    "en": "English", "enm": "Middle English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fil": "Filipino", "fo": "Faroese", "fr": "French",
    "fro": "Old French", "fy": "West Frisian", "ga": "Irish", "gd": "Scottish Gaelic", "gl": "Galician",
    "got": "Gothic", "grc": "Ancient Greek", "gu": "Gujarati", "ha": "Hausa", "haw": "Hawaiian",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "ig": "Igbo", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "ku": "Kurdish",
    "kw": "Cornish", "ky": "Kyrgyz", "la": "Latin", "lb": "Luxembourgish", "lo": "Lao", "lt": "Lithuanian",
    "lv": "Latvian", "mi": "Māori", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese", "nah": "Nahuatl",
    "nb": "Norwegian Bokmål", "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian",
    "non": "Old Norse", "oc": "Occitan", "ota": "Ottoman Turkish", "pa": "Punjabi", "pi": "Pali",
    "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "qu": "Quechua", "rm": "Romansh", "ro": "Romanian",
    "ru": "Russian", "rus": "Russian", "sa": "Sanskrit", "sco": "Scots", "se": "Northern Sami",
    "si": "Sinhala", "sk": "Slovak", "sl": "Slovene", "so": "Somali", "sq": "Albanian", "sr": "Serbian",
    "sv": "Swedish", "sw": "Swahili", "syc": "Syriac", "ta": "Tamil", "te": "Telugu", "tg": "Tajik",
    "th": "Thai", "tk": "Turkmen", "tl": "Tagalog", "tr": "Turkish", "ug": "Uyghur", "uk": "Ukrainian",
    "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "xh": "Xhosa", "yi": "Yiddish", "yo": "Yoruba",
    "zh": "Chinese", "zu": "Zulu",
}
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]+)*")


def _langx(call: TemplateCall) -> str:
    """{{lang-fr|texte}} and {{langx|fr|texte}} → "French: texte" (+ ", romanized: …", ", lit. '…'")."""
    if call.name.startswith("lang-"):
        code, rest = call.name[len("lang-"):], call.args
    else:
        code, rest = call.arg(1).lower(), call.args[1:]
    text, translit, literal = (*rest, "", "", "")[:3]
    if not text:
        return ""
    label = call.named.get("label") or LANGUAGE_NAMES.get(code) or LANGUAGE_NAMES.get(code.split("-")[0])
    shown = f"{label}: {text}" if label and label != "none" else text
    if translit := call.named.get("translit") or translit:
        shown += f", romanized: {translit}"
    if literal := call.named.get("lit") or literal:
        shown += f", lit. '{literal}'"
    return shown


def _ipa(call: TemplateCall) -> str:
    """{{IPA|/ˈpærɪs/}} as written; {{IPA-fr|paʁi|}} and {{IPA|fr|paʁi}} → "[paʁi]" (labels left out)."""
    if call.name.startswith("ipa-"):
        text = call.arg(1)
    elif len(call.args) > 1 and _LANGUAGE_CODE.fullmatch(call.arg(1)) and call.arg(2):
        text = call.arg(2)
    else:
        return call.arg(1)
    return text if not text or text[0] in "/[" else f"[{text}]"


# Labels {{IPAc-en}} prints before a transcription ("UK:", "pronounced") rather than sounds.
_IPAC_LABELS = frozenset({"lang", "pron", "local", "ipa", "also", "uk", "us", "ca", "au", "nz", "ie",
                          "za", "in", "audio"})


def _ipac(call: TemplateCall) -> str:
    """{{IPAc-en|ˈ|p|ær|ɪ|s}} → "/ˈpærɪs/": the pieces joined, "_" a space, labels left out."""
    sounds = "".join(piece for piece in call.args if piece.lower() not in _IPAC_LABELS)
    return f"/{sounds.replace('_', ' ').strip()}/" if sounds.strip() else ""


def _respell(call: TemplateCall) -> str:
    """{{respell|PAIR|iss}} → "PAIR-iss"."""
    return "-".join(arg for arg in call.args if arg).replace("_", " ")


def _nihongo(call: TemplateCall) -> str:
    """{{nihongo|Tokyo|東京|Tōkyō}} → "Tokyo (東京, Tōkyō)"."""
    extra = ", ".join(arg for arg in call.args[1:3] if arg)
    return f"{call.arg(1)} ({extra})" if extra else call.arg(1)


def _ill(call: TemplateCall) -> str:
    """{{ill|Title|de|Titel}} → "Title"; the older {{ill|de|Title|display|Titel}} → "display"."""
    if shown := call.named.get("lt"):
        return shown
    if _LANGUAGE_CODE.fullmatch(call.arg(1)) and call.arg(2):
        return call.arg(3) or call.arg(2)
    return call.arg(1)


def _quote(call: TemplateCall) -> str:
    """{{quote|text|author}} → the text as a paragraph of its own: a block quotation."""
    text = call.named.get("text") or call.named.get("quote") or call.arg(1)
    return f"\n\n{text}\n\n" if text else ""


# --- dates -----------------------------------------------------------------------------------------

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
_MONTH_NUMBER = {name.lower(): i for i, name in enumerate(MONTHS, 1)}
_YES = frozenset({"y", "yes", "1", "true", "on"})


def _month(text: str) -> int:
    text = text.strip().lower()
    number = int(text) if text.isdecimal() else _MONTH_NUMBER.get(text, 0)
    return number if 1 <= number <= 12 else 0


def _day_first(call: TemplateCall, default: bool) -> bool:
    if call.named.get("df", "").lower() in _YES:
        return True
    return False if call.named.get("mf", "").lower() in _YES or call.named.get("df") == "US" else default


def _format_date(year: str, month: str, day: str, day_first: bool) -> str | None:
    """"1900", "January 1900", "January 2, 1900" or "2 January 1900"; None if not a date."""
    if not year.lstrip("-").isdecimal():
        return None
    if not month:
        return year
    number = _month(month)
    if not number:
        return None
    if not day:
        return f"{MONTHS[number - 1]} {year}"
    if not day.isdecimal():
        return None
    month = MONTHS[number - 1]
    return f"{int(day)} {month} {year}" if day_first else f"{month} {int(day)}, {year}"


def _date(call: TemplateCall) -> str:
    """{{birth date|1900|1|2}} → "January 2, 1900" (df=y: "2 January 1900"). {{death date and age}}'s
    six numbers add "(aged N)"; a living person's age is left out: it depends on the day it is read."""
    shown = _format_date(call.arg(1), call.arg(2), call.arg(3), _day_first(call, default=False))
    if shown is None:
        return " ".join(arg for arg in call.args[:3] if arg)
    ends = [call.args[:3], call.args[3:6]]
    if len(call.args) >= 6 and all(part.isdecimal() for end in ends for part in end):
        (y1, m1, d1), (y0, m0, d0) = ([int(part) for part in end] for end in ends)
        shown += f" (aged {y1 - y0 - ((m1, d1) < (m0, d0))})"
    return shown


def _as_of(call: TemplateCall) -> str:
    """{{as of|2011|6|20}} → "As of 20 June 2011"; lc=y starts it in lower case."""
    if alt := call.named.get("alt"):
        return alt
    when = _format_date(call.arg(1), call.arg(2), call.arg(3), _day_first(call, default=True))
    lead = "Since" if call.named.get("since", "").lower() in _YES else "As of"
    if call.named.get("lc", "").lower() in _YES:
        lead = lead.lower()
    return f"{lead} {when or call.arg(1)}"


# --- numbers ---------------------------------------------------------------------------------------

def _frac(call: TemplateCall) -> str:
    """{{frac|2}} → "1/2", {{frac|3|4}} → "3/4", {{frac|1|1|2}} → "1 1/2"."""
    args = [arg for arg in call.args if arg]
    if len(args) == 1:
        return f"1/{args[0]}"
    if len(args) == 2:
        return f"{args[0]}/{args[1]}"
    return f"{args[0]} {args[1]}/{args[2]}" if len(args) > 2 else ""


def _val(call: TemplateCall) -> str:
    """{{val|6.241|e=18}} → "6.241×10^18", {{val|1.00794|0.00007}} → "1.00794±0.00007", u= the unit."""
    shown = call.arg(1)
    if uncertainty := call.arg(2):
        if uncertainty.startswith("("):
            shown += uncertainty
        elif call.arg(3):
            shown += f"+{uncertainty.lstrip('+')}−{call.arg(3).lstrip('-−')}"
        else:
            shown += f"±{uncertainty}"
    if exponent := call.named.get("e"):
        shown += f"×10^{exponent}"
    if unit := call.named.get("u") or call.named.get("ul"):
        shown += f" {unit}"
    if per := call.named.get("up") or call.named.get("upl"):
        shown += f"/{per}"
    return shown


# --- {{convert}} ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """A unit {{convert}} knows: SI value = (value + offset) × scale; conversions stay within a kind."""

    kind: str
    scale: float
    symbol: str
    name: str  # singular, British spelling; sp=us swaps "metre" for "meter"
    plural: str
    default: str = ""  # the target codes when the template names none
    offset: float = 0.0
    symbol_first: bool = False  # temperatures show their symbol where other units show their name


def _units() -> dict[str, Unit]:
    table: dict[str, Unit] = {}

    def add(codes: str, kind: str, scale: float, symbol: str, name: str, plural: str, default: str,
            offset: float = 0.0, symbol_first: bool = False) -> None:
        for code in codes.split():
            table[code] = Unit(kind, scale, symbol, name, plural, default, offset, symbol_first)

    mile, foot, inch, pound, gallon = 1609.344, 0.3048, 0.0254, 0.45359237, 0.003785411784
    add("m", "length", 1, "m", "metre", "metres", "ft")
    add("km", "length", 1e3, "km", "kilometre", "kilometres", "mi")
    add("cm", "length", 1e-2, "cm", "centimetre", "centimetres", "in")
    add("mm", "length", 1e-3, "mm", "millimetre", "millimetres", "in")
    add("Gm", "length", 1e9, "Gm", "gigametre", "gigametres", "mi")
    add("mi smi", "length", mile, "mi", "mile", "miles", "km")
    add("nmi", "length", 1852, "nmi", "nautical mile", "nautical miles", "km")
    add("yd", "length", 0.9144, "yd", "yard", "yards", "m")
    add("ft", "length", foot, "ft", "foot", "feet", "m")
    add("in", "length", inch, "in", "inch", "inches", "cm")
    add("fathom", "length", 1.8288, "fathom", "fathom", "fathoms", "m")
    add("AU", "length", 149_597_870_700, "AU", "astronomical unit", "astronomical units", "km")
    add("ly", "length", 9.4607304725808e15, "ly", "light-year", "light-years", "km")
    add("m2 sqm", "area", 1, "m²", "square metre", "square metres", "sqft")
    add("km2 sqkm", "area", 1e6, "km²", "square kilometre", "square kilometres", "sqmi")
    add("ha", "area", 1e4, "ha", "hectare", "hectares", "acre")
    add("sqmi mi2", "area", mile**2, "sq mi", "square mile", "square miles", "km2")
    add("sqft ft2", "area", foot**2, "sq ft", "square foot", "square feet", "m2")
    add("acre", "area", 4046.8564224, "acres", "acre", "acres", "ha")
    add("m3", "volume", 1, "m³", "cubic metre", "cubic metres", "cuft")
    add("km3", "volume", 1e9, "km³", "cubic kilometre", "cubic kilometres", "cumi")
    add("cumi", "volume", mile**3, "cu mi", "cubic mile", "cubic miles", "km3")
    add("cuft ft3", "volume", foot**3, "cu ft", "cubic foot", "cubic feet", "m3")
    add("L l", "volume", 1e-3, "L", "litre", "litres", "USgal")
    add("ml mL", "volume", 1e-6, "ml", "millilitre", "millilitres", "USoz")
    add("Ml ML", "volume", 1e3, "Ml", "megalitre", "megalitres", "USgal")
    add("USgal", "volume", gallon, "US gal", "US gallon", "US gallons", "L")
    add("impgal", "volume", 0.00454609, "imp gal", "imperial gallon", "imperial gallons", "L")
    add("USoz", "volume", gallon / 128, "US fl oz", "US fluid ounce", "US fluid ounces", "ml")
    add("oilbbl", "volume", 0.158987294928, "bbl", "barrel", "barrels", "m3")
    add("m3/d", "volume/d", 1, "m³/d", "cubic metre per day", "cubic metres per day", "oilbbl/d")
    add("oilbbl/d", "volume/d", 0.158987294928, "bbl/d", "barrel per day", "barrels per day", "m3/d")
    add("kg", "mass", 1, "kg", "kilogram", "kilograms", "lb")
    add("g", "mass", 1e-3, "g", "gram", "grams", "oz")
    add("mg", "mass", 1e-6, "mg", "milligram", "milligrams", "gr")
    add("gr", "mass", 6.479891e-5, "gr", "grain", "grains", "mg")
    add("t MT tonne", "mass", 1e3, "t", "tonne", "tonnes", "LT ST")
    add("lb", "mass", pound, "lb", "pound", "pounds", "kg")
    add("oz", "mass", pound / 16, "oz", "ounce", "ounces", "g")
    add("st", "mass", 14 * pound, "st", "stone", "stone", "kg")
    add("LT", "mass", 2240 * pound, "long tons", "long ton", "long tons", "t")
    add("ST", "mass", 2000 * pound, "short tons", "short ton", "short tons", "t")
    add("carat", "mass", 2e-4, "carats", "carat", "carats", "g")
    add("m/s", "speed", 1, "m/s", "metre per second", "metres per second", "ft/s")
    add("km/h", "speed", 1 / 3.6, "km/h", "kilometre per hour", "kilometres per hour", "mph")
    add("mph", "speed", mile / 3600, "mph", "mile per hour", "miles per hour", "km/h")
    add("ft/s", "speed", foot, "ft/s", "foot per second", "feet per second", "m/s")
    add("kn", "speed", 1852 / 3600, "kn", "knot", "knots", "km/h")
    add("W", "power", 1, "W", "watt", "watts", "hp")
    add("kW", "power", 1e3, "kW", "kilowatt", "kilowatts", "hp")
    add("hp", "power", 745.69987158227022, "hp", "horsepower", "horsepower", "kW")
    add("C °C", "temperature", 1, "°C", "degree Celsius", "degrees Celsius", "F", offset=273.15,
        symbol_first=True)
    add("F °F", "temperature", 5 / 9, "°F", "degree Fahrenheit", "degrees Fahrenheit", "C", offset=459.67,
        symbol_first=True)
    add("K", "temperature", 1, "K", "kelvin", "kelvins", "C", symbol_first=True)
    add("C-change", "temperature change", 1, "°C", "Celsius degree", "Celsius degrees", "F-change",
        symbol_first=True)
    add("F-change", "temperature change", 5 / 9, "°F", "Fahrenheit degree", "Fahrenheit degrees",
        "C-change", symbol_first=True)
    add("PD/km2", "density", 1e-6, "/km²", "inhabitant per square kilometre",
        "inhabitants per square kilometre", "PD/sqmi")
    add("PD/sqmi", "density", 1 / mile**2, "/sq mi", "inhabitant per square mile",
        "inhabitants per square mile", "PD/km2")
    return table


UNITS = _units()
# Multiplier prefixes {{convert}} puts on some units: "e6acre", "Moilbbl", "Tcuft", "koilbbl/d".
_MULTIPLIERS = {"e3": (1e3, "thousand"), "k": (1e3, "thousand"), "e6": (1e6, "million"),
                "M": (1e6, "million"), "e9": (1e9, "billion"), "G": (1e9, "billion"),
                "e12": (1e12, "trillion"), "T": (1e12, "trillion")}
_MULTIPLIED = re.compile(r"(e3|e6|e9|e12|k|M|G|T)(oilbbl/d|oilbbl|cuft|USgal|m3|acre|ha|km2|carat)")


@lru_cache(maxsize=1024)
def _unit(code: str) -> Unit | None:
    """The Unit a {{convert}} code names, multiplied ones ("e6acre": million acres) included."""
    if code in UNITS:
        return UNITS[code]
    match = _MULTIPLIED.fullmatch(code)
    if match is None:
        return None
    (factor, word), base = _MULTIPLIERS[match[1]], UNITS[match[2]]
    # A million acres is best shown as a million hectares, not as plain hectares.
    millions = match[1] in ("e6", "M") and base.default in ("ha", "acre")
    default = f"e6{base.default}" if millions else base.default
    return Unit(base.kind, base.scale * factor, f"{word} {base.symbol}", f"{word} {base.plural}",
                f"{word} {base.plural}", default)


# separator → (as written between input values, between converted values)
_RANGES = {"to": (" to ", " to "), "-": ("–", "–"), "–": ("–", "–"), "and": (" and ", " and "),
           "and(-)": (" and ", "–"), "to(-)": (" to ", "–"), "or": (" or ", " or "), "by": (" by ", " by "),
           "x": (" × ", " × "), "×": (" × ", " × "), "+/-": (" ± ", " ± "), "±": (" ± ", " ± ")}
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
_PRECISION = re.compile(r"-?\d")


def _number(text: str) -> float | None:
    text = text.replace(",", "").replace("−", "-").strip()
    number = float(text) if _NUMBER.fullmatch(text) else math.inf
    return number if math.isfinite(number) else None  # 400 digits of nines is no number to convert


def _group(text: str) -> str:
    """"-1300.5" → "−1,300.5": thousands separators and a true minus sign, as {{convert}} prints them."""
    sign, text = ("−", text[1:]) if text[:1] in "-−" else ("", text)
    whole, dot, fraction = text.replace(",", "").partition(".")
    return f"{sign}{int(whole or 0):,}{dot}{fraction}" if whole.isdecimal() or not whole else sign + text


def _default_precision(text: str, value: float, out: float, source: Unit, target: Unit) -> int:
    """Module:Convert's default rounding: about the input's significant figures, at least two in the
    output (three in kelvins for a temperature)."""
    digits = text.replace(",", "").lstrip("-−")
    whole, dot, fraction = digits.partition(".")
    precision = len(fraction) if dot else -(len(whole) - len(whole.rstrip("0")))
    if source.kind == "temperature":
        kelvin = abs((value + source.offset) * source.scale)
        least = 2 - math.floor(math.log10(kelvin) + 1e-14) if kelvin > 1e-8 else 2
        adjust = 0.0
    else:
        if value == 0 or out == 0:
            return precision
        adjust = math.log10(abs(value / out)) + 0.06
        least = 1 - math.floor(math.log10(abs(out)) + 1e-14)
    return max(math.floor(precision + adjust), least)


# Decimal rounds half up as Module:Convert does, and cannot overflow however many digits a page
# asks for; precision is bounded so that the digits stay within the context's.
_DECIMAL = decimal.Context(prec=1000, rounding=decimal.ROUND_HALF_UP)


def _rounded(value: float, precision: int) -> str:
    """`value` with `precision` decimals (negative: rounded to tens, hundreds …), as {{convert}} shows it."""
    precision = max(-400, min(precision, 400))
    exact = _DECIMAL.quantize(decimal.Decimal(repr(value)), decimal.Decimal(1).scaleb(-precision))
    return _group(format(abs(exact) if exact.is_zero() else exact, "f"))


def _spelled(mode: str, unit: Unit) -> bool:
    """Whether a side shows the unit's name: "name", "symbol", or "auto" (the name, except for the
    units shown by symbol even in running text: temperatures)."""
    return mode == "name" or (mode == "auto" and not unit.symbol_first)


def _abbreviation(abbr: str, disp: str, names: bool) -> tuple[str, str]:
    """How the input and the output side show their units, from abbr= and disp=; without abbr=,
    symbols on both sides unless `names` asks for Module:Convert's own default."""
    if abbr == "on" or (not abbr and not names):
        return "symbol", "symbol"
    if abbr == "off":
        return "name", "name"
    if abbr == "in":
        return "symbol", "name"
    return "auto", "auto" if disp == "or" else "symbol"


def _span(values: list[str], separators: list[str]) -> str:
    return values[0] + "".join(sep + value for sep, value in zip(separators, values[1:], strict=True))


def _measure(values: list[str], separators: list[str], unit: Unit, spelled: bool, adjective: bool,
             us: bool) -> str:
    """"10 to 20 kilometres", "6-foot", "5.8/km²"."""
    shown = _span(values, separators)
    if not spelled:
        return shown + unit.symbol if unit.symbol.startswith("/") else f"{shown} {unit.symbol}"
    one = len(values) == 1 and values[0].lstrip("−") in ("1", "1.0")
    name = unit.name if one or adjective else unit.plural
    if us:
        name = name.replace("metre", "meter").replace("litre", "liter")
    return f"{shown}-{name}" if adjective else f"{shown} {name}"


def _convert(call: TemplateCall, names: bool = False) -> str:
    """{{convert|10|km}} → "10 km (6.2 mi)", rounded like Module:Convert; with `names` the input unit
    is spelled out as Module:Convert shows it by default ("10 kilometres (6.2 mi)"). Handles ranges
    (10|to|20), composite input (6|ft|4|in), several targets
    ("km mi"), precision (|0, |-1, sigfig=), abbr=, adj=on, sp=us, disp= and order=flip. An unknown
    unit shows the input alone."""
    args = list(call.args)
    if not args:
        return ""
    texts, separators, i = args[:1], [], 1
    while i + 1 < len(args) and args[i] in _RANGES:
        separators.append(args[i])
        texts.append(args[i + 1])
        i += 2
    code = args[i] if i < len(args) else ""
    source, rest = _unit(code), args[i + 1:]
    parsed = [_number(text) for text in texts]
    shown_in = [_group(text) for text in texts]
    in_seps = [_RANGES[sep][0] for sep in separators]
    if source is None or None in parsed:
        return f"{_span(shown_in, in_seps)} {code}".strip()
    numbers = [number for number in parsed if number is not None]
    mode_in, mode_out = _abbreviation(call.named.get("abbr", ""), call.named.get("disp", ""), names)
    if _flipped(call):  # the conversion comes first, so it is the side spelled out
        mode_in, mode_out = mode_out, mode_in
    adjective = call.named.get("adj", "") in _YES
    us = call.named.get("sp", "") == "us"
    shown_source = _measure(shown_in, in_seps, source, _spelled(mode_in, source), adjective, us)
    # Composite input, {{convert|6|ft|4|in|cm}}: "6 feet 4 inches (193 cm)".
    subunit = _unit(rest[1]) if len(texts) == 1 and len(rest) > 1 and _number(rest[0]) is not None else None
    if subunit is not None and subunit.kind == source.kind and subunit.scale < source.scale:
        shown_source += " " + _measure([_group(rest[0])], [], subunit, _spelled(mode_in, subunit), False, us)
        total = numbers[0] * source.scale + float(_number(rest[0]) or 0) * subunit.scale
        # Precision follows the subunit, one digit finer, as Module:Convert does.
        texts, numbers, source, rest = [rest[0]], [total / subunit.scale], subunit, rest[2:]
        extra_digit = 1
    else:
        extra_digit = 0
    precision: int | None = None
    target_codes = rest[0] if rest else ""
    if _PRECISION.fullmatch(target_codes):
        target_codes, precision = "", int(target_codes)
    elif len(rest) > 1 and _PRECISION.fullmatch(rest[1]):
        precision = int(rest[1])
    targets = [_unit(target) for target in (target_codes or source.default).split()]
    if not targets or any(target is None or target.kind != source.kind for target in targets):
        return shown_source
    sigfig = call.named.get("sigfig", "")
    outputs = []
    for target in targets:
        assert target is not None
        converted = [(n + source.offset) * source.scale / target.scale - target.offset for n in numbers]
        if sigfig.isdecimal() and int(sigfig) > 0:  # each value to that many significant figures
            figures = min(int(sigfig), 17)  # all a float holds
            digits = [figures - 1 - math.floor(math.log10(abs(v))) if v else 0 for v in converted]
        else:  # one precision for a whole range, the finest any of its values needs
            shared = precision if precision is not None else extra_digit + max(
                _default_precision(t, n, v, source, target)
                for t, n, v in zip(texts, numbers, converted, strict=True))
            digits = [shared] * len(converted)
        outputs.append(_measure([_rounded(v, d) for v, d in zip(converted, digits, strict=True)],
                                [_RANGES[sep][1] for sep in separators], target,
                                _spelled(mode_out, target), False, us))
    return _arrange(call, shown_source, "; ".join(outputs))


def _flipped(call: TemplateCall) -> bool:
    return call.named.get("disp") == "flip" or call.named.get("order") == "flip"


def _arrange(call: TemplateCall, source: str, converted: str) -> str:
    disp = call.named.get("disp", "")
    if disp in ("output number only", "number"):
        return converted.split(" ")[0]
    if disp in ("out", "output only"):
        return converted
    first, second = (converted, source) if _flipped(call) else (source, converted)
    if disp == "or":
        return f"{first} or {second}"
    if disp == "comma":
        return f"{first}, {second}"
    if disp == "sqbr":
        return f"{first} [{second}]"
    return f"{first} ({second})"


_RENDERERS: dict[str, Renderer] = {
    "drop": _drop, "first": _first, "last": _last, "convert": _convert,
    "convert-names": lambda call: _convert(call, names=True), "langx": _langx, "ipa": _ipa,
    "ipac": _ipac, "respell": _respell, "quote": _quote, "date": _date, "as-of": _as_of, "frac": _frac,
    "nihongo": _nihongo, "val": _val, "ill": _ill,
}
VALID_RULES = ("arg N, named NAME, join SEP, literal TEXT, format TEXT (with {1} and {name} placeholders), "
               + ", ".join(_RENDERERS))


# --- the default policy: templates that carry running text on English Wikipedia ---------------------

DEFAULT_RULES: dict[str, str] = {
    # measurements and numbers
    "convert": "convert", "cvt": "convert",
    "val": "val", "e": "format ×10^{1}",
    "frac": "frac", "sfrac": "frac", "fraction": "frac",
    "circa": "format c. {1}", "c.": "format c. {1}",
    "us$": "format US${1}", "usd": "format US${1}", "a$": "format A${1}", "ca$": "format CA${1}",
    "€": "format €{1}", "eur": "format €{1}", "£": "format £{1}", "gbp": "format £{1}",
    "¥": "format ¥{1}", "jpy": "format ¥{1}", "inr": "format ₹{1}", "₹": "format ₹{1}",
    # languages, transliteration and pronunciation
    "lang": "arg 2", "rtl-lang": "arg 2", "native name": "arg 2", "script": "arg 2",
    "langx": "langx", "lang-*": "langx",
    "transl": "last", "transliteration": "last",
    "nihongo": "nihongo",
    "ipa": "ipa", "ipa-*": "ipa", "ipac-*": "ipac", "respell": "respell",
    # dates
    "birth date": "date", "birth date and age": "date", "bda": "date", "death date": "date",
    "death date and age": "date", "dda": "date", "start date": "date", "start date and age": "date",
    "end date": "date", "start-date": "first", "end-date": "first",
    # years: the age a reader sees depends on the day of reading, so only the year is kept
    "birth year": "first", "death year": "first", "birth year and age": "first",
    "death year and age": "first", "floruit": "format fl. {1}", "fl.": "format fl. {1}",
    "as of": "as-of",
    # quotations
    "quote": "quote", "cquote": "quote", "blockquote": "quote", "bquote": "quote", "quotation": "quote",
    "quote box": "quote", '"': 'format "{1}"',
    # text wrapped for layout, size or style
    "nowrap": "first", "nobr": "first", "small": "first", "smaller": "first", "midsize": "first",
    "big": "first", "large": "first", "larger": "first", "nobold": "first", "noitalic": "first",
    "center": "first", "sc": "first", "smallcaps": "first", "resize": "last",
    "abbr": "first", "sub": "first", "sup": "first", "math": "first", "mvar": "first", "var": "first",
    "vanchor": "first", "visible anchor": "first", "vr": "first", "script/arabic": "first",
    # names and links
    "ill": "ill", "interlanguage link": "ill",
    "flag": "named name", "flagcountry": "named name", "flagu": "named name",
    "hms": "format HMS {1}", "uss": "format USS {1}",
    "bibleref": "format {1} {2}", "oldstyledate": "format {1} [O.S. {3}] {2}",
    # lists and symbols
    "hlist": "join , ", "ubl": "join , ", "unbulleted list": "join , ", "flatlist": "join , ",
    "chem": "join", "keypress": "join +", "angbr": "format ⟨{1}⟩", "eqm": "literal ⇌",
    "nbsp": "literal &nbsp;", "spaces": "literal &nbsp;", "thinsp": "literal &nbsp;",
    "ndash": "literal –", "mdash": "literal —", "snd": "literal &nbsp;– ", "spaced ndash": "literal &nbsp;– ",
    "snds": "literal &nbsp;– ", "mdashb": "literal —",
    # An entity, as the real templates use, so that ''Eagle''{{'s}} is not read as bold markup.
    "'s": "literal &#39;s", "'": "literal &#39;", "' \"": "literal &#39;\"", "\" '": "literal \"&#39;",
}
DEFAULT_POLICY = TemplatePolicy(DEFAULT_RULES)
