"""MergeTemplate.filled_size: the UTF-8 size of a fill, without building it (dry runs size 100,000 messages)."""

import pytest

from campaign.errors import ContentError
from campaign.merge import MergeTemplate, escape_header, escape_html, escape_text

TEMPLATE = MergeTemplate("<p>Dear [[name|colleague]] – [[city]]</p>\n<a href=\"[[unsubscribe_url]]\">ﾘﾝｸ</a> 🏙")


@pytest.mark.parametrize("values", [
    {"name": "Ana & <b>Bob</b>", "city": "São Paulo", "unsubscribe_url": "https://x.example/u?t=a&b"},
    {"name": "", "city": "Đà Nẵng 🌆", "unsubscribe_url": ""},
    {"name": "Zofia Wiśniewska", "city": "Seoul", "unsubscribe_url": "https://x.example/u"},
])
@pytest.mark.parametrize("escape", [escape_html, escape_text, escape_header])
def test_filled_size_is_the_utf8_length_of_the_fill(values, escape):
    assert TEMPLATE.filled_size(values, escape) == len(TEMPLATE.fill(values, escape).encode("utf-8"))


def test_filled_size_of_a_text_without_placeholders_is_its_size():
    template = MergeTemplate("Smart cities – news")
    assert template.filled_size({}, escape_html) == len("Smart cities – news".encode("utf-8"))


def test_filled_size_refuses_a_missing_field_like_fill():
    with pytest.raises(ContentError, match=r"\[\[city\]\] has no value"):
        TEMPLATE.filled_size({"name": "Ana", "unsubscribe_url": ""}, escape_html)
