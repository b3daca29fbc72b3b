"""The template policy: every rule and renderer on real enwiki snippets, the user's YAML file, and the
docs table of the defaults, which must list exactly what the code does."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from pretrain_cli.errors import UserError
from pretrain_cli.stages.corpus.templates import (
    DEFAULT_POLICY,
    TemplateCall,
    TemplatePolicy,
    load_template_policy,
    normalise_name,
    parse_rule,
)
from pretrain_cli.stages.corpus.wikitext import wikitext_to_paragraphs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "corpus.md"


def clean(wikitext: str, policy: TemplatePolicy = DEFAULT_POLICY) -> str:
    return "\n".join(wikitext_to_paragraphs(wikitext, policy))


@pytest.mark.parametrize(("wikitext", "expected"), [
    # the Module:Convert default: input spelled out, output abbreviated, about the input's precision
    ("{{convert|10|km}}", "10 kilometres (6.2 mi)"),
    ("{{convert|10|km|abbr=on}}", "10 km (6.2 mi)"),
    ("{{convert|100|km}}", "100 kilometres (62 mi)"),
    ("{{convert|1.234|km}}", "1.234 kilometres (0.767 mi)"),
    ("At {{convert|1300|mi|km}}", "At 1,300 miles (2,100 km)"),
    ("With an area of {{convert|2381741|km2|sqmi|0}}, Algeria",
     "With an area of 2,381,741 square kilometres (919,595 sq mi), Algeria"),
    ("It is less than {{convert|72|km|mi|0|abbr=on}} from [[Italy]]",
     "It is less than 72 km (45 mi) from Italy"),
    ("averaged {{convert|0.16|to|0.33|m2}} in size",
     "averaged 0.16 to 0.33 square metres (1.7 to 3.6 sq ft) in size"),
    ("a {{convert|1|USgal|L}} of milk", "a 1 US gallon (3.8 L) of milk"),
    ("a rate of {{convert|4400000|oilbbl/d}} would",
     "a rate of 4,400,000 barrels per day (700,000 m³/d) would"),
    ("Wyoming, at {{convert|5.8|PD/sqmi}}.", "Wyoming, at 5.8 inhabitants per square mile (2.2/km²)."),
    ("contains {{convert|1000000|MT|ST|lk=out}} of", "contains 1,000,000 tonnes (1,100,000 short tons) of"),
    ("{{convert|9|ft/s|m/s|abbr=on}}", "9 ft/s (2.7 m/s)"),
    ("manages {{convert|87|e6acre|e6ha|abbr=off}}, or", "manages 87 million acres (35 million hectares), or"),
    # temperatures are affine and keep their symbols; a change of temperature is not
    ("temperature is {{convert|−80|°F}} in", "temperature is −80 °F (−62 °C) in"),
    ("be {{convert|-100|C|F}}.", "be −100 °C (−148 °F)."),
    ("from {{convert|26.7|°C|1}} to", "from 26.7 °C (80.1 °F) to"),
    ("about {{convert|5|C-change|0|abbr=on}} higher", "about 5 °C (9 °F) higher"),
    ("{{convert|5|C-change}}", "5 °C (9.0 °F)"),
    # ranges, composite input, several targets, precision and significant figures
    ("approximately {{convert|7|–|10|kg|lb}}, sometimes",
     "approximately 7–10 kilograms (15–22 lb), sometimes"),
    ("between {{convert|110|and|125|mph|km/h|abbr=on}}.", "between 110 and 125 mph (180 and 200 km/h)."),
    ("{{convert|60|and(-)|80|kg}}", "60 and 80 kilograms (130–180 lb)"),
    ("{{convert|25|by|36|cm|0|abbr=on}}", "25 by 36 cm (10 by 14 in)"),
    ("At {{convert|6|ft|4|in|cm|0}},", "At 6 feet 4 inches (193 cm),"),
    ("width of about {{convert|860|nmi|km mi|-1}}.", "width of about 860 nautical miles (1,590 km; 990 mi)."),
    ("soared from {{convert|-19|to|22|C|F|sigfig=2}} in", "soared from −19 to 22 °C (−2.2 to 72 °F) in"),
    # abbr=, adj=, sp=, disp=, order=
    ("crossed the {{convert|100|km|nmi|sp=us|abbr=off}} line",
     "crossed the 100 kilometers (54 nautical miles) line"),
    ("a {{convert|300|m|ft|adj=on|sp=us}} diameter crater", "a 300-meter (980 ft) diameter crater"),
    ("just {{convert|8|mi|km|sp=us|disp=or|abbr=on}} inside", "just 8 mi or 13 km inside"),
    ("{{convert|60.7|nmi|km|order=flip|sp=us}}", "112 kilometers (60.7 nmi)"),
    ("15.7 trillion cubic feet ({{convert|15700|ft3|disp=output number only}} bn m<sup>3</sup>)",
     "15.7 trillion cubic feet (440 bn m3)"),
    ("{{convert|10|km|disp=out}}", "6.2 mi"),
    # what it cannot convert, it shows as written
    ("{{convert|10|furlongs}}", "10 furlongs"),
    ("{{convert|10|km|furlongs}}", "10 kilometres"),
    ("{{convert|1+1/2|mi|km}}", "1+1/2 mi"),
    # and no page can make it fail: absurd sizes and precisions are bounded
    ("{{convert|" + "9" * 400 + "|km}}", f"{int('9' * 400):,} km"),
    ("{{convert|1|km|sigfig=400}}", "1 kilometre (0.62137119223733400 mi)"),
    ("{{convert|2.5|C-change|F-change|0}}", "2.5 °C (5 °F)"),  # 4.5 rounds half up
])
def test_convert_names_renders_as_module_convert(wikitext: str, expected: str) -> None:
    assert clean(wikitext, DEFAULT_POLICY.updated({"convert": "convert-names"})) == expected


@pytest.mark.parametrize(("wikitext", "expected"), [
    ("{{convert|10|km}}", "10 km (6.2 mi)"),
    ("{{convert|10|km|mi}}", "10 km (6.2 mi)"),
    ("At {{convert|1300|mi|km}}", "At 1,300 mi (2,100 km)"),
    ("{{convert|5|-|7|C}}", "5–7 °C (41–45 °F)"),
    ("{{convert|10|km|abbr=off}}", "10 kilometres (6.2 miles)"),
    ("{{cvt|60|kg}}", "60 kg (130 lb)"),
])
def test_convert_abbreviates_both_sides_by_default(wikitext: str, expected: str) -> None:
    assert clean(wikitext) == expected


@pytest.mark.parametrize(("wikitext", "expected"), [
    ("officially known as the Republic of Albania ({{lang-sq|Republika e Shqipërisë}})",
     "officially known as the Republic of Albania (Albanian: Republika e Shqipërisë)"),
    ("{{lang-grc-gre|Ἀριστοτέλης}}", "Ancient Greek: Ἀριστοτέλης"),
    ("excellent ({{lang-ru|link=no|отлично}})", "excellent (Russian: отлично)"),
    ("{{lang-pa|ਅਲਹੁ|ਅਲਾਹ}}", "Punjabi: ਅਲਹੁ, romanized: ਅਲਾਹ"),
    ("{{lang-brh|براهوئي|links=no}}", "براهوئي"),  # a code with no name in the table: the text alone
    ("{{langx|fr|texte}}", "French: texte"),
    ("{{langx|de|Lebensraum|lit=living space}}", "German: Lebensraum, lit. 'living space'"),
    ("{{lang-fr|texte|label=none}}", "texte"),
    ("the Greek {{lang|grc|ἀναρχία}}, i.e.", "the Greek ἀναρχία, i.e."),
    ("{{rtl-lang|ar|الكيمياء}} and {{Script|Copt|Ⲁ ⲁ}}", "الكيمياء and Ⲁ ⲁ"),
    ("Algeria ({{lang-ar|الجزائر}} {{transl|ar|al-Jazā'ir}})", "Algeria (Arabic: الجزائر al-Jazā'ir)"),
    ("{{transl|ar|ALA|''Allāh''}}", "Allāh"),
    ("{{Nihongo|'''Aikido'''|合気道|Aikidō|lead=yes}} is", "Aikido (合気道, Aikidō) is"),
])
def test_languages(wikitext: str, expected: str) -> None:
    assert clean(wikitext) == expected


@pytest.mark.parametrize(("wikitext", "expected"), [
    ("'''Albedo''' ({{IPAc-en|æ|l|ˈ|b|iː|d|oʊ}}; {{respell|al|BEE|doh}})",
     "Albedo (/ælˈbiːdoʊ/; al-BEE-doh)"),
    ("{{IPAc-en|ˈ|p|ær|ɪ|s}} {{respell|PAIR|iss}}", "/ˈpærɪs/ PAIR-iss"),
    ("{{IPAc-en|US|b|ɪ|ˈ|t|juː|m|ə|n|,_|b|aɪ|-}}", "/bɪˈtjuːmən, baɪ-/"),
    ("{{IPAc-en|audio=En-us-ASCII.ogg|ˈ|æ|s|k|i}}", "/ˈæski/"),
    ("{{IPA|/[[Open front unrounded vowel|a]]/}}", "/a/"),
    ("{{IPA-fr|alɛ̃ kɔn|lang}} and {{IPA-de|tʃ|}}", "[alɛ̃ kɔn] and [tʃ]"),
    ("{{IPA|fr|paʁi}}", "[paʁi]"),
])
def test_pronunciation(wikitext: str, expected: str) -> None:
    assert clean(wikitext) == expected


@pytest.mark.parametrize(("wikitext", "expected"), [
    ("'''Abraham Lincoln''' ({{IPAc-en|ˈ|eɪ|b|r|ə|h|æ|m|_|ˈ|l|ɪ|ŋ|k|ən}}; February 12, 1809&nbsp;– "
     "{{death date and age|1865|4|15|1809|2|12}})",
     "Abraham Lincoln (/ˈeɪbrəhæm ˈlɪŋkən/; February 12, 1809 – April 15, 1865 (aged 56))"),
    ("{{Birth date|df=yes|1879|3|14}}", "14 March 1879"),
    ("{{Death date and age|df=yes|1955|4|18|1879|3|14}}", "18 April 1955 (aged 76)"),
    ("{{death date and age|1993|2|28|1900|3|1}}", "February 28, 1993 (aged 92)"),  # a day before the birthday
    ("{{birth date and age|1970|04|29}}", "April 29, 1970"),  # the age depends on the day it is read
    ("{{Start date and age|1918|05|14|paren=yes}}", "May 14, 1918"),
    ("{{start date|1918|5}} and {{end date|1918}}", "May 1918 and 1918"),
    ("{{birth date|c. 1900}}", "c. 1900"),  # not a date it can read: shown as written
    ("{{As of|2011|June|20}}", "As of 20 June 2011"),
    ("{{as of|2014|lc=y}}, and {{as of|2010|10|7|df=US}}", "as of 2014, and As of October 7, 2010"),
    ("{{start-date|July 16, 1969, 13:32:00|timezone=yes}}", "July 16, 1969, 13:32:00"),
    ("{{OldStyleDate|February 2|1905|January 20}}", "February 2 [O.S. January 20] 1905"),
])
def test_dates(wikitext: str, expected: str) -> None:
    assert clean(wikitext) == expected


@pytest.mark.parametrize(("wikitext", "expected"), [
    ("{{frac|3}}, {{frac|3|2}}, {{frac|1|1|2}}", "1/3, 3/2, 1 1/2"),
    ("{{val|1.00794|0.00007}} or {{val|1.00794|(7)}}", "1.00794±0.00007 or 1.00794(7)"),
    ("{{val|6.241|e=18}} and {{val|0.99985|u=A}} and {{val|1.2|+0.1|-0.2}}",
     "6.241×10^18 and 0.99985 A and 1.2+0.1−0.2"),
    ("about 6{{e|24}} kg", "about 6×10^24 kg"),
    ("{{circa|3000}} BC, for {{US$|2 billion}}", "c. 3000 BC, for US$2 billion"),
    ("{{chem|CH|3|COO|−}} and {{chem|Cs|2|O}}", "CH3COO− and Cs2O"),
    ("HA<sup>+</sup> {{eqm}} H<sup>+</sup> + A", "HA+ ⇌ H+ + A"),
])
def test_numbers_and_symbols(wikitext: str, expected: str) -> None:
    assert clean(wikitext) == expected


def test_block_quotations_are_paragraphs_of_their_own() -> None:
    text = ("Lincoln wrote: {{quote|My paramount object in this struggle is to save the Union.}} He "
            "signed.\n{{quote box|width=300px|quote=If I were not a physicist, I would probably be a "
            "musician.|source=Albert Einstein}}\n{{bquote|The first essential in chemistry is that thou "
            "shouldest perform practical work}}")
    assert wikitext_to_paragraphs(text) == [
        "Lincoln wrote:", "My paramount object in this struggle is to save the Union.", "He signed.",
        "If I were not a physicist, I would probably be a musician.",
        "The first essential in chemistry is that thou shouldest perform practical work"]


@pytest.mark.parametrize(("wikitext", "expected"), [
    ("for {{nowrap|[[Pope Clement IV]]}}", "for Pope Clement IV"),
    ("{{smaller|(for ''Brave New World'')}}", "(for Brave New World)"),
    ("{{resize|120%|جمهوری اسلامی افغانستان}}", "جمهوری اسلامی افغانستان"),
    ("{{flag|Georgia (U.S. state)|name=Georgia}} and {{flag|Andorra}}", "Georgia and Andorra"),
    ("{{flagicon|South Korea}} Seoul", "Seoul"),
    ("the {{ill|de|Gymnasium Ernestinum Gotha|Gymnasium Ernestinum Gotha|Gymnasium illustre zu Gotha}}",
     "the Gymnasium Ernestinum Gotha"),
    ("{{ill|Cercle de l'Union|fr|Cercle de l'Union}}", "Cercle de l'Union"),
    ("{{HMS|Ajax|22|6}} and {{USS|Hornet|CV-12|6}}", "HMS Ajax and USS Hornet"),
    ("{{bibleref|Mark|3:25|9}}", "Mark 3:25"),
    ("{{hlist |[[Logic]] |Ethics |[[Rhetoric]]}}", "Logic, Ethics, Rhetoric"),
    ("pressing {{keypress|Ctrl|^}}", "pressing Ctrl+^"),
    ("{{angbr|a}} and {{vr|ai}}", "⟨a⟩ and ai"),
    ("3500&nbsp;{{sc|bc}}, 3500{{nbsp}}BC, 1914{{ndash}}1918, Paris{{snd}}London, war{{mdash}}its",
     "3500 bc, 3500 BC, 1914–1918, Paris – London, war—its"),
    ("from ''Eagle''{{'s}} footpads and ''[[GQ]]''{{'}}s critic", "from Eagle's footpads and GQ's critic"),
    ("commanding: 'To a gas chamber—go!{{' \"}}", "commanding: 'To a gas chamber—go!'\""),
])
def test_text_carrying_templates(wikitext: str, expected: str) -> None:
    assert clean(wikitext) == expected


@pytest.mark.parametrize("wikitext", [
    "{{cite web | author = Anon | year = 2004 | title = English Letter Frequency}}",
    "{{Infobox country\n| conventional_long_name = Republic of Albania\n| image_flag = Flag.svg\n}}",
    "{{sfn|Barnes|1995|p=9}}{{citation needed|date=November 2015}}{{rp|xxi}}",
    "{{Main|Banu Hilal}}\n{{see also|Historical anthropology}}\n{{Coord|13|19|N|169|9|W|type:event}}",
    "{{Navboxes|list1={{Anarchism}}}}{{Authority control}}{{Use dmy dates|date=June 2013}}",
    "{{#tag:ref|[[Roger Federer]] has since surpassed this feat.|group=lower-alpha}}",
])
def test_templates_without_a_rule_are_dropped(wikitext: str) -> None:
    assert clean(wikitext) == ""


def test_names_are_matched_as_mediawiki_matches_them() -> None:
    assert normalise_name("Template:Birth_date ") == "birth date"
    assert normalise_name(" Lang\n") == "lang"
    rule = DEFAULT_POLICY.rule_for("Template:Birth_date_and_age")
    assert rule is not None and rule.spec == "date"
    assert DEFAULT_POLICY.rule_for("Lang-fr") is DEFAULT_POLICY["lang-*"]  # a family
    assert DEFAULT_POLICY.rule_for("lang") is DEFAULT_POLICY["lang"]  # the exact name comes first
    assert DEFAULT_POLICY.rule_for("IPAc-en") is DEFAULT_POLICY["ipac-*"]
    assert DEFAULT_POLICY.rule_for("cite web") is None and DEFAULT_POLICY.rule_for("s-bef") is None


@pytest.mark.parametrize(("spec", "call", "expected"), [
    ("drop", TemplateCall("x", ("a",), {}), ""),
    ("first", TemplateCall("x", ("a", "b"), {}), "a"),
    ("last", TemplateCall("x", ("a", "b"), {}), "b"),
    ("arg 2", TemplateCall("x", ("a", "b"), {}), "b"),
    ("arg 3", TemplateCall("x", ("a", "b"), {}), ""),
    ("named text", TemplateCall("x", ("a",), {"text": "t"}), "t"),
    ("named text", TemplateCall("x", ("a",), {}), "a"),
    ("join", TemplateCall("x", ("H", "2", "O"), {}), "H2O"),
    ("join , ", TemplateCall("x", ("a", "", "b"), {}), "a, b"),
    ("literal –", TemplateCall("x", (), {}), "–"),
    ("format {1} at {site}", TemplateCall("x", ("Plato",), {"site": "IEP"}), "Plato at IEP"),
    ("format {2}{missing}", TemplateCall("x", ("a",), {}), ""),
])
def test_generic_rules(spec: str, call: TemplateCall, expected: str) -> None:
    assert parse_rule(spec).render(call) == expected


@pytest.mark.parametrize("spec", ["", "firstt", "arg", "arg 0", "arg two", "named", "literal", "format",
                                  "convert metric", "first second"])
def test_unknown_rules_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown rule"):
        parse_rule(spec)


def test_policy_is_an_immutable_picklable_mapping() -> None:
    assert len(DEFAULT_POLICY) > 100 and "convert" in DEFAULT_POLICY
    with pytest.raises(TypeError):
        DEFAULT_POLICY["convert"] = parse_rule("drop")  # type: ignore[index]
    rules = DEFAULT_POLICY.as_dict()
    rules["convert"] = "drop"  # a copy: the policy is unchanged
    assert DEFAULT_POLICY["convert"].spec == "convert"
    assert list(DEFAULT_POLICY.as_dict()) == sorted(DEFAULT_POLICY.as_dict())
    # Workers receive the policy pickled: it travels as its rule strings and renders the same.
    copy = pickle.loads(pickle.dumps(DEFAULT_POLICY))
    assert copy == DEFAULT_POLICY and hash(copy) == hash(DEFAULT_POLICY)
    assert clean("{{convert|10|km}}", copy) == "10 km (6.2 mi)"
    updated = DEFAULT_POLICY.updated({"Lang": "drop", "ship": "format {1} {2}"})
    assert updated["lang"].spec == "drop" and updated["ship"].spec == "format {1} {2}"
    assert updated != DEFAULT_POLICY and DEFAULT_POLICY["lang"].spec == "arg 2"


def test_yaml_file_extends_and_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text('templates:\n  lang-*: drop\n  Ship: "format {1} {2}"\n  hlist: "join ; "\n',
                    encoding="utf-8")
    policy = load_template_policy(path)
    assert load_template_policy(None) is DEFAULT_POLICY
    assert policy.as_dict() == {**DEFAULT_POLICY.as_dict(), "lang-*": "drop", "ship": "format {1} {2}",
                                "hlist": "join ; "}
    text = "Albania ({{lang-sq|Shqipëri}}) sent {{ship|HMS|Victory}}: {{hlist|a|b}}, {{convert|10|km}}"
    assert clean(text, policy) == "Albania sent HMS Victory: a; b, 10 km (6.2 mi)"


@pytest.mark.parametrize(("content", "needles"), [
    ("templates:\n  ship: formatt {1}\n",
     ["template 'ship'", "unknown rule 'formatt {1}'", "valid rules: arg N"]),
    ("templates:\n  ship: [first]\n  sclass: arg 0\n",
     ["template 'ship': rule ['first'] is not a string", "template 'sclass': unknown rule 'arg 0'"]),
    ("templates:\n  42: first\n  '': drop\n", ["template name 42 is not a non-empty string",
                                                  "template name '' is not"]),
    ("templates: [ship]\n", ["expected one key, `templates`"]),
    ("template:\n  ship: first\n", ["expected one key, `templates`"]),
    ("", ["expected one key, `templates`"]),
    ("templates:\n  ship: first\n bad indent: x\n", ["not valid YAML at line 3"]),
])
def test_bad_policy_files_name_file_template_and_fix(tmp_path: Path, content: str,
                                                     needles: list[str]) -> None:
    path = tmp_path / "my-templates.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_template_policy(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such template policy file"):
        load_template_policy(tmp_path / "absent.yaml")


def docs_policy_rows() -> list[tuple[list[str], str, str, str]]:
    """(template names, rule, example, rendering) of each row of the docs' default policy table."""
    text = DOCS.read_text(encoding="utf-8")
    table = text[text.index("| templates | rule | example | renders |"):].split("\n\n")[0]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        names, rule, example, rendered = (re.findall(r"`([^`]*)`", cell) for cell in cells)
        rows.append((names, rule[0], example[0], rendered[0]))
    return rows


DOCS_ROWS = docs_policy_rows()


def test_docs_table_lists_every_default_template_with_its_rule() -> None:
    documented = {name: rule for names, rule, _, _ in DOCS_ROWS for name in names}
    assert sum(len(names) for names, *_ in DOCS_ROWS) == len(documented)  # no name twice
    assert documented == DEFAULT_POLICY.as_dict()


@pytest.mark.parametrize(("names", "rule", "example", "rendered"), DOCS_ROWS,
                         ids=[names[0] for names, *_ in DOCS_ROWS])
def test_docs_examples_render_as_documented(names: list[str], rule: str, example: str, rendered: str) -> None:
    assert clean(example) == rendered
