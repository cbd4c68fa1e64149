"""The one formatter per unit that pages, reports and messages share (issue #18)."""

from unet.units import bytes_text, clock_text, duration_text, estimate_text


def test_durations_read_as_a_user_says_them():
    assert duration_text(None) == "" and duration_text(44.6) == "45 s"
    assert duration_text(185) == "3 min 05 s" and duration_text(7620) == "2 h 07 min"
    assert estimate_text(45) == "45 s" and estimate_text(210) == "3.5 min"
    assert estimate_text(4320) == "72.0 min" and estimate_text(7200) == "2.0 h"
    assert clock_text(-3) == "0:00" and clock_text(245) == "4:05" and clock_text(3725) == "1:02:05"


def test_sizes_are_decimal_with_a_sensible_precision():
    assert bytes_text(512e6) == "512 MB" and bytes_text(1.5e9) == "1.5 GB" and bytes_text(24.4e9) == "24 GB"


def test_an_estimate_under_a_second_says_so_and_never_0_s():
    """Issue #25: the Model page said 'about 0 s per epoch'."""
    from unet.units import about_text

    assert estimate_text(0.09) == "under a second" and estimate_text(0.0) == "under a second"
    assert about_text(0.3) == "under a second" and about_text(90) == "about 1.5 min"


def test_counts_take_the_plural_except_for_one():
    from unet.units import count_text

    assert count_text(1, "held-back image") == "1 held-back image"
    assert count_text(2, "held-back image") == "2 held-back images" and count_text(0, "epoch") == "0 epochs"
    assert count_text(3, "class", "classes") == "3 classes"
